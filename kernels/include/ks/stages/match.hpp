#pragma once
// ks-match: template matching with the templates ks-cluster learned (kilosort4-algorithm.md §5.9, §6).
// Cleans the templates up (trough aligned at nt0min, near-duplicates merged), then peels every chunk of
// the whitened, drift-corrected recording (kernels/template_match.hpp). Writes <work>/match/
// (formats/matches.md), streamed: memory holds one chunk and the templates, however long the recording.
#include <cstdint>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/probe.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks::matchstage {

struct StageParams {
    int64_t batch_size = 60000;     // the drift batches (motion is per batch)
    float Th_learned = 8;
    int max_peels = 100;
    int nearest_chans = 10;
    static StageParams from(const Settings& settings);
};

struct RunOptions {
    std::string tool = "ks-match";
    std::string command_line;
    std::string settings_json;
    ProgressMode progress = ProgressMode::none;
    int64_t chunk = 0;              // samples per matching chunk; 0 = batch_size. Results do not depend on it.
};

struct Summary {
    int n_templates_in = 0, n_templates = 0;   // before and after the clean-up
    int64_t n_spikes = 0;
    int n_chunks = 0;
    int max_passes = 0;
    bool drift_corrected = false;
};

// The nC nearest channels of every channel on its own shank, nearest first (ties: lower index),
// -1 where the shank has fewer: C x nC.
std::vector<int32_t> nearest_channels(const Probe& probe, int nC);

Summary run(const std::string& work_dir, const StageParams& params, const Device& dev, const RunOptions& options);

}  // namespace ks::matchstage
