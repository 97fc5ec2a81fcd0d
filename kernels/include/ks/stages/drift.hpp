#pragma once
// ks-drift: probe motion from spikes detected with the universal templates on the whitened,
// uncorrected recording (kilosort4-algorithm.md sections 3-4), or taken from a file; writes
// <work>/drift/ (formats/motion.md) and a drift map picture. The correction itself is applied on the
// fly by the later stages (stages/batches.hpp: WhitenedBatches::use_motion).
#include <cstdint>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/drift_registration.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"
#include "ks/stages/universal.hpp"

namespace ks::drift {

struct StageParams {
    int64_t batch_size = 60000;
    RegistrationParams reg;               // nblocks, binning_depth, Th_universal, drift_smoothing
    double sig_interp_um = 20;
    UniversalParams universal;            // templates, grid, thresholds of the detection
    // The user set nblocks (not the default): then too few spikes is an error (exit 3), not a warning.
    bool nblocks_explicit = false;

    static StageParams from(const Settings& settings);
};

struct RunOptions {
    std::string motion_path;   // --motion: use this motion instead of estimating it
    bool draw_map = true;      // drift/drift_map.png
    std::string tool = "ks-drift";
    std::string command_line;
    std::string settings_json;
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    MotionStatus status = MotionStatus::ok;
    std::string source;        // "estimated", "external" or "none" (nblocks = 0)
    int n_batches = 0, n_blocks = 0;
    int64_t n_spikes = 0;      // detected (written to drift/spikes_*.npy)
    int64_t n_clips = 0;       // single-channel clips the universal templates were learned from
    double max_abs_shift_um = 0;
};

// The whole stage. Reads <work>/probe.json, filter/, whiten/ (whiten.json must exist); writes
// drift/{dshift,yblk,spikes_times,spikes_depth_um,spikes_amplitudes,wTEMP,wPCA}.npy, drift_map.png and,
// last, drift.json. Throws Error(usage) naming the missing or bad file or setting; Error(unsortable)
// when too few spikes were found and nblocks was set explicitly.
Summary run(const std::string& work_dir, const StageParams& params, const Device& dev, const RunOptions& options);

}  // namespace ks::drift
