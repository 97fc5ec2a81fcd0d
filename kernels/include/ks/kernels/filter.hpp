#pragma once
// ks-filter's maths (kilosort4-algorithm.md sections 1-2, formats/filtered.md "Method"):
// Kilosort4's 3rd-order Butterworth high-pass, applied zero-phase as a forward-backward IIR in the
// time domain, then a per-sample common reference (median or mean across each shank's channels).
//
// Batch independence: the sorted range is cut into fixed blocks [k*block, (k+1)*block) counted from
// sample 0, and each block is filtered from `context` samples before it to `context` samples after
// it (edge copies beyond the range). An output sample therefore depends only on its absolute
// position, never on which batch asked for it: any split of [0, n_samples) into calls gives the
// same bits, on the CPU and on CUDA (same bodies, each floating-point step rounded explicitly).
#include <cstdint>
#include <string>

#include "ks/device.hpp"
#include "ks/dtype.hpp"

namespace ks::kernels {

// scipy.signal.butter(3, cutoff_hz, 'highpass', fs=fs_hz), designed here in double (analogue
// prototype, low-pass to high-pass, bilinear transform, as scipy does), and the cascade of
// sections that filters.
struct HighpassDesign {
    double fs_hz = 0;
    double cutoff_hz = 0;
    double b[4] = {};           // numerator, scipy's b
    double a[4] = {};           // denominator, scipy's a (a[0] = 1)
    double pole_radius = 0;     // largest |pole| (0.9691 at 300 Hz / 30 kHz)
    // Section 0: the complex pole pair with a double zero at z = 1 and the gain; section 1: the
    // real pole with a zero at z = 1. Each {b0, b1, b2, a1, a2}; section 1 has b2 = a2 = 0.
    // The recursion runs in double; samples are float32 between steps.
    double sections[2][5] = {};
    // Samples of context on each side of a block: ceil(ln(1e-8) / ln(pole_radius)), 587 at
    // 300 Hz / 30 kHz. The start-up transient of each pass decays to about 1e-8 of the signal by
    // then (measured truncation error < 1e-7 of the filtered RMS, formats/filtered.md "Method").
    int64_t context = 0;
    // Block length: max(8192, 4 * context rounded up to 1024), so the context adds at most half
    // the work (14% at 300 Hz / 30 kHz); a function of fs and cutoff only, never of batch_size.
    int64_t block = 0;
};

// Throws Error(usage) naming setting highpass_cutoff unless fs * 1e-5 <= cutoff < fs / 2 (below
// that the context would exceed ~10^6 samples), or setting fs when fs is not positive.
[[nodiscard]] HighpassDesign design_highpass(double fs_hz, double cutoff_hz);

enum class Reference { none, median, mean };
// "median", "mean", "none" (setting common_reference); anything else: Error(usage).
[[nodiscard]] Reference parse_reference(const std::string& name);
const char* reference_name(Reference r);

// Raw samples [begin, end) of the sorted range that filtering outputs [t0, t1) reads. They may
// extend before 0 and past n_samples: callers fill those with copies of sample 0 and n_samples - 1.
struct SampleRange {
    int64_t begin = 0, end = 0;
};
[[nodiscard]] SampleRange raw_range(const HighpassDesign& hp, int64_t t0, int64_t t1, int64_t n_samples);

// Channels of the reference groups (shanks) in compressed form: group g is
// channels[offsets[g] .. offsets[g + 1]). Channels in no group get no reference.
struct ReferenceGroups {
    const int* offsets = nullptr;   // n_groups + 1 entries
    const int* channels = nullptr;
    int n_groups = 0;
};

struct FilterArgs {
    // Raw input: interleaved samples as stored (host memory), samples [raw_t0, raw_t0 + raw_n) of
    // the sorted range, row_stride values per sample; must cover raw_range(hp, t0, t1, n_samples).
    Dtype dtype = Dtype::int16;      // int16, uint16, int32 or float32
    const void* raw = nullptr;
    int64_t raw_t0 = 0, raw_n = 0;
    int row_stride = 0;              // n_chan_bin
    const int* rows = nullptr;       // file row of each output channel (chanMap)
    int n_chan = 0;
    // Conversion as ks::Recording does it: ((x - offset) * scale + shift), negated when invert.
    float offset = 0, scale = 1, shift = 0;
    bool invert = false;

    const HighpassDesign* hp = nullptr;
    int64_t n_samples = 0;           // length of the sorted range: the last block ends there
    int64_t t0 = 0, t1 = 0;          // output samples [t0, t1) of the sorted range
    Reference reference = Reference::median;
    ReferenceGroups groups;
    float* out = nullptr;            // (t1 - t0) x n_chan floats, time-major: out[(t - t0) * n_chan + c]
};

// High-pass then common reference, on `dev`. CPU and CUDA give identical bits.
// CUDA failures throw Error(environment), device memory exhaustion Error(resources).
void filter_samples(const Device& dev, const FilterArgs& a);

// The two steps alone (unit tests, and callers that want one of them).
// highpass ignores a.reference; common_reference works in place on x (n_samples x n_chan, time-major).
void highpass(const Device& dev, const FilterArgs& a);
struct ReferenceArgs {
    float* x = nullptr;
    int64_t n_samples = 0;
    int n_chan = 0;
    Reference reference = Reference::median;
    ReferenceGroups groups;
};
void common_reference(const Device& dev, const ReferenceArgs& a);

namespace cpu {
void highpass(const FilterArgs& a);
void common_reference(const ReferenceArgs& a);
}  // namespace cpu
#if KS_HAVE_CUDA
namespace cuda {
void filter_samples(const FilterArgs& a);  // both steps, data kept on the GPU in between
void highpass(const FilterArgs& a);
void common_reference(const ReferenceArgs& a);
}  // namespace cuda
#endif

}  // namespace ks::kernels
