#pragma once
// Raw recordings: flat interleaved binary files (formats/recording.md). Read in batches with
// context on both sides, never whole. SpikeGLX (.meta) and Open Ephys (structure.oebin)
// metadata supply fs, n_chan_bin and gains when present.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ks/dtype.hpp"
#include "ks/probe.hpp"
#include "ks/settings.hpp"

namespace ks {

// What metadata beside a recording says. Every field is optional.
struct RecordingMetadata {
    std::string source;                 // "spikeglx" (path of .meta), "openephys" (path of .oebin), "" none
    std::string source_path;
    std::optional<double> fs;
    std::optional<int> n_chan_bin;
    std::optional<int> n_ephys_channels;  // channels that hold neural data (SpikeGLX: AP channels)
    std::optional<double> uv_per_bit;   // microvolts per integer step, when known
    std::optional<Dtype> dtype;
};

// Looks for "<name>.meta" (SpikeGLX) beside the file, or structure.oebin two folders up
// (Open Ephys binary: <rec>/continuous/<stream>/continuous.dat). Malformed metadata throws
// Error(usage) naming the metadata file; absent metadata returns an empty struct.
RecordingMetadata find_recording_metadata(const std::string& path);

// Puts metadata values into settings that the user did not set (fs, n_chan_bin, data_dtype).
// A user value that contradicts the metadata wins, with a warning.
void apply_metadata(const RecordingMetadata& meta, Settings& settings);

// A probe with fewer channels than the metadata's n_ephys_channels would silently leave
// neural channels unsorted: Error(usage) naming the probe and the metadata file.
void check_probe_against_metadata(const RecordingMetadata& meta, const Probe& probe);

struct RecordingInfo {
    std::string path;
    Dtype dtype = Dtype::int16;
    int n_chan_bin = 0;
    double fs = 30000;
    int64_t n_samples_file = 0;   // samples (time points) in the file
    int64_t imin = 0, imax = 0;   // the sorted range [imin, imax) in file samples (tmin, tmax)
    int64_t n_samples() const { return imax - imin; }
    double duration_s() const { return static_cast<double>(n_samples()) / fs; }
};

// Batch layout (Kilosort4's): batch b covers samples [b*NT, (b+1)*NT) of the sorted range,
// read with `nt` samples of context on both sides; the last batch may be shorter.
struct BatchLayout {
    int64_t batch_size = 60000;  // NT
    int64_t pad = 61;            // nt
    int64_t n_samples = 0;
    int64_t n_batches() const { return n_samples <= 0 ? 0 : (n_samples + batch_size - 1) / batch_size; }
    int64_t batch_start(int64_t b) const { return b * batch_size; }
    int64_t batch_length(int64_t b) const;  // central samples in batch b (NT except maybe the last)
};

class Recording {
public:
    // Opens `path` with the data settings (n_chan_bin, fs, data_dtype, tmin, tmax, shift, scale,
    // invert_sign) and the probe. Throws Error(usage) naming the file or setting: missing file,
    // empty file, size not a whole number of samples x n_chan_bin x itemsize, probe channels
    // beyond n_chan_bin, tmin >= tmax or beyond the end.
    Recording(const std::string& path, const Settings& settings, const Probe& probe);
    ~Recording();
    Recording(Recording&&) noexcept;
    Recording& operator=(Recording&&) noexcept;

    const RecordingInfo& info() const { return info_; }
    const Probe& probe() const { return probe_; }
    int n_channels() const { return probe_.n_chan(); }
    int64_t n_samples() const { return info_.n_samples(); }

    // Samples [t0, t0 + n) of the sorted range (0 = imin) on the probe's channels, as float32,
    // channel-major: out[c * n + t]. x -> (x [-32768 for uint16]) * scale + shift, negated when
    // invert_sign. Samples before 0 repeat sample 0, samples at or past n_samples() repeat the
    // last sample (Kilosort4's edge padding), so any t0/n is valid. Reads only what it needs.
    void read(int64_t t0, int64_t n, float* out) const;

    // Batch b of `layout` with its context: C x (batch_length(b) + 2*pad) floats, channel-major.
    void read_batch(const BatchLayout& layout, int64_t b, std::vector<float>& out) const;

    // Raw file rows (no channel selection, no conversion) for samples [t0, t0+n) in file
    // coordinates, interleaved as stored; n must lie inside the file.
    void read_raw(int64_t file_t0, int64_t n, void* out) const;

private:
    RecordingInfo info_;
    Probe probe_;
    double scale_ = 1, shift_ = 0;
    bool invert_ = false;
    int fd_ = -1;
};

}  // namespace ks
