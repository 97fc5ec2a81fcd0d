#pragma once
// ks-detect: Kilosort4's universal-template spike detection on the whitened, drift-corrected
// recording (kilosort4-algorithm.md §4), with the per-spike PC features ks-cluster clusters.
// Writes <work>/detect/ (formats/detections.md).
#include <cstdint>
#include <string>

#include "ks/device.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"
#include "ks/stages/universal.hpp"

namespace ks::detect {

struct StageParams {
    int64_t batch_size = 60000;
    UniversalParams universal;
    static StageParams from(const Settings& settings);
};

struct RunOptions {
    std::string tool = "ks-detect";
    std::string command_line;
    std::string settings_json;
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_batches = 0;
    int n_pos = 0;              // grid centres
    int64_t n_spikes = 0;
    int64_t n_clips = 0;
    bool drift_corrected = false;
};

// Reads <work>/probe.json, filter/, whiten/ and drift/ (drift.json must exist: ks-drift ran, with
// nblocks=0 when no correction is wanted). Throws Error(usage) naming the missing or bad file or
// setting; Error(unsortable) when no isolated spike waveform is found to learn the templates from.
Summary run(const std::string& work_dir, const StageParams& params, const Device& dev, const RunOptions& options);

}  // namespace ks::detect
