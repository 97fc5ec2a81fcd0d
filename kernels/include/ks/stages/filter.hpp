#pragma once
// ks-filter: the raw recording -> the filtered recording (kilosort4-algorithm.md sections 1-2,
// formats/filtered.md). Zero-phase 3rd-order Butterworth high-pass at highpass_cutoff, then a
// per-sample common reference per shank (median, mean or none), then Kilosort4's per-batch
// artifact zeroing; stored as float16. Apart from the artifact test, the output does not depend
// on batch_size or on the device, bit for bit.
//
// The driver lives in ks_kernels (not libcommon) because it calls the kernels.
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/filter.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks::filter {

struct Params {
    double fs = 30000;                       // Hz
    int64_t batch_size = 60000;              // NT: the unit of the artifact test and of progress
    double highpass_cutoff = 300;            // Hz
    kernels::Reference reference = kernels::Reference::median;
    double artifact_threshold = std::numeric_limits<double>::infinity();  // a batch with any |filtered value| >= this is zeroed

    // From resolved settings; throws Error(usage) naming the setting (common_reference choice).
    static Params from(const Settings& settings);
};

struct Inputs {
    std::string rec;     // the raw recording, or "-" for standard input (raw interleaved samples)
    std::vector<std::string> more_recs;   // further files sorted as one recording with rec, in order
    std::string probe;   // probe file or built-in name; "" takes <work>/probe.json
};

struct RunOptions {
    std::string work_dir;              // writes <work>/filter/; "" writes no files (stream only)
    std::FILE* stream_out = nullptr;   // --stdout: filtered float32 samples, interleaved time-major
    int stdin_fd = 0;                  // where "-" reads from
    std::string tool = "ks-filter";
    std::string command_line;
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_channels = 0;
    int64_t imin = 0, n_samples = 0;
    int64_t n_batches = 0;
    std::vector<int64_t> zeroed_batches;   // batches zeroed by artifact_threshold
    int64_t n_saturated = 0;               // values clamped to +-65504 for float16 storage
    std::vector<int> unreferenced_shanks;  // shanks (kcoords) of fewer than 3 channels: no reference
    kernels::HighpassDesign hp;
    double seconds = 0;                    // wall time of the filtering loop
};

// The whole stage. Resolves metadata beside the recording into `settings` (fs, n_chan_bin,
// data_dtype), loads the probe, filters every sample of [imin, imax), and writes
// <work>/filter/filtered.bin, filtered.json and, last, filter.json (the stage record); and/or
// streams float32 samples to options.stream_out. Throws Error(usage) for bad settings or input
// (the message names the file or setting), Error(resources) on a failed write, Error(environment)
// on a CUDA failure. A failure leaves no complete-looking output: stale outputs are removed first.
Summary run(const Inputs& in, Settings& settings, const Device& dev, const RunOptions& options);

}  // namespace ks::filter
