#pragma once
// The filtered recording that ks-filter writes into the work folder and later stages read
// (formats/filtered.md): filter/filtered.bin (interleaved, time-major, probe channel order) plus
// filter/filtered.json (dtype, scale, channels, sample rate, time range, settings).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ks/dtype.hpp"

namespace ks {

struct FilteredInfo {
    int n_channels = 0;          // probe channels, in chanMap order
    int64_t n_samples = 0;       // samples of the sorted range [imin, imax) of the raw file
    double fs = 30000;
    int64_t imin = 0;            // raw-file sample index of filtered sample 0 (tmin)
    Dtype dtype = Dtype::int16;  // storage type of filtered.bin (ks-filter writes float16)
    double scale = 1;            // filtered value = stored value * scale (in the raw data's units after shift/scale)
};

// Format of filter/filtered.json this build writes and reads.
constexpr int kFilteredVersion = 1;

// Reader for <work>/filter/filtered.{bin,json}. Throws Error(usage) naming the file when missing,
// from another format version, or when the .bin size disagrees with the .json.
class FilteredRecording {
public:
    explicit FilteredRecording(const std::string& work_dir);
    ~FilteredRecording();
    FilteredRecording(const FilteredRecording&) = delete;
    FilteredRecording& operator=(const FilteredRecording&) = delete;

    const FilteredInfo& info() const { return info_; }
    int n_channels() const { return info_.n_channels; }
    int64_t n_samples() const { return info_.n_samples; }

    // Samples [t0, t0+n) as float32, channel-major out[c*n + t], multiplied by scale. Samples
    // outside [0, n_samples) repeat the edge sample (as ks::Recording). Thread-safe.
    void read(int64_t t0, int64_t n, float* out) const;

private:
    FilteredInfo info_;
    std::string bin_path_;
    int fd_ = -1;
};

// Parses and checks a filtered.json sidecar (formats/filtered.md "Readers must reject").
// Throws Error(usage) naming `path` and the field.
[[nodiscard]] FilteredInfo read_filtered_info(const std::string& path);

// IEEE binary16 ("float16", numpy's '<f2'), the storage type of filtered.bin. Conversions round
// to nearest, ties to even (numpy's, F16C's and CUDA's __float2half_rn). Values beyond
// +-65504 become +-inf: writers clamp first (kHalfMax).
constexpr float kHalfMax = 65504.0f;
[[nodiscard]] uint16_t float_to_half(float x);
[[nodiscard]] float half_to_float(uint16_t h);
// The same over arrays; F16C instructions where the CPU has them, identical results.
void floats_to_halves(const float* in, uint16_t* out, std::size_t n);
void halves_to_floats(const uint16_t* in, float* out, std::size_t n);

}  // namespace ks
