#pragma once
// Probe-motion estimation from detected spikes (kilosort4-algorithm.md sections 3.2-3.5): per-batch
// 2-D fingerprints (depth x log-amplitude, log2(1 + count)), rigid alignment to an iteratively
// refined template, then block-wise nonrigid refinement with a 0.1-bin upsampled peak.
//
// CPU only (OpenMP over batches; results do not depend on the thread count): the fingerprints are
// small (n_batches x ~800 depth bins x 20) and the whole estimate costs ~1e10 flops for a long
// Neuropixels recording, once per sort (about 8 s on one core for 1800 batches x 766 bins,
// nblocks = 5).
//
// Usage: construct a DriftHistogram with the batch layout and the probe's depth range, stream the
// detected spikes into it batch by batch (add_spikes / add_batch; any order, any chunking), then
// estimate(). Only the histogram is kept, never the spikes.
//
// Sign convention (Kilosort4's): a batch whose spikes appear *higher* on the probe (larger y) by d µm
// than in the reference gets dshift = -d. The correction samples the data at y - dshift (kriging.hpp).
// The reference is the mean of the aligned fingerprints, so dshift is relative: a constant offset per
// block (the average motion at that block over the recording) is arbitrary.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ks::drift {

struct RegistrationParams {
    int nblocks = 1;                  // Kilosort4 `nblocks`; 0 = no drift correction
    double binning_depth = 5.0;       // depth bin width (µm)
    double Th_universal = 9.0;        // detection threshold: lower edge of the amplitude bins
    std::array<double, 3> drift_smoothing = {0.5, 0.5, 0.5};  // Gaussian σ over (shift, batch, block)
    // Too few spikes: fewer than this many binned spikes per batch on average gives zero motion and
    // MotionStatus::too_few_spikes. Not a Kilosort4 setting (Kilosort4 has no such check).
    double min_spikes_per_batch = 10.0;
};

// Fixed by Kilosort4's code, not settings.
constexpr int kAmplitudeBins = 20;        // log-spaced between Th_universal and 100
constexpr double kAmplitudeMax = 100.0;
constexpr int kRigidMaxShiftBins = 15;    // rigid search: integer shifts in [-15, 15] bins
constexpr int kRigidIterations = 10;      // the last iteration only rebuilds the template
constexpr int kBlockMaxShiftBins = 5;     // nonrigid search: [-5, 5] bins per block
constexpr int kUpsample = 10;             // fine shift in 1/10 bin

enum class MotionStatus : int {
    ok = 0,
    disabled = 1,         // nblocks = 0: dshift is all zeros and no correction should be applied
    too_few_spikes = 2,   // zero motion returned; the stage decides whether to go on uncorrected
};
const char* motion_status_name(MotionStatus s);

struct MotionEstimate {
    MotionStatus status = MotionStatus::ok;
    int n_batches = 0;
    int n_blocks = 0;                  // 2*nblocks - 1; 1 when nblocks = 0
    std::vector<double> dshift;        // n_batches x n_blocks, row-major, µm (sign: see top of file)
    std::vector<double> yblk;          // n_blocks block centres (µm), Kilosort4's definition
    std::vector<int> rigid_shift_bins; // n_batches: cumulative integer rigid shift (bins)
    std::vector<int64_t> spikes_per_batch;  // n_batches: binned spikes
    int64_t n_spikes_binned = 0;
    int64_t n_spikes_outside = 0;      // dropped: depth outside the probe's bins, or batch out of range
    int reference_batch = 0;           // seeds the rigid template: min(300, n_batches / 2), or the
                                       // nearest batch with spikes if that one has none
    std::vector<int> empty_batches;    // batches without spikes (their shift copies a neighbour's)

    double at(int batch, int block) const { return dshift[static_cast<size_t>(batch) * n_blocks + block]; }
};

// Depth bins: y0 = min(yc) - 1, n_y = 1 + ceil((max(yc) - y0) / binning_depth),
// row = floor((y - y0) / binning_depth); ysamp[k] = y0 + binning_depth * k - binning_depth / 2
// (Kilosort4's "centres": lower edge minus half a bin).
struct DepthBins {
    double y0_um = 0;
    double dd_um = 0;
    int n_y = 0;
    std::vector<double> ysamp;   // n_y
};
DepthBins depth_bins(double ymin_um, double ymax_um, double binning_depth);

// Blocks of yl = n_y / nblocks bins, starts round(linspace(0, n_y - yl, 2*nblocks - 1)) (numpy
// rounding: half to even). Returns the starts; yl through *block_len.
std::vector<int> block_starts(int n_y, int nblocks, int* block_len);

class DriftHistogram {
public:
    // ymin_um/ymax_um: min and max channel depth (yc) of the probe. batch_size: samples per batch
    // (used by add_spikes to map times to batches). Throws Error(usage) naming the setting for
    // nblocks < 0, binning_depth <= 0, Th_universal outside (0, 100), n_batches < 1,
    // batch_size < 1, ymax < ymin, or nblocks > n_y / 2 (blocks under 2 bins).
    DriftHistogram(int64_t batch_size, int n_batches, double ymin_um, double ymax_um,
                   const RegistrationParams& params);

    // Spikes of one batch. Depths outside the bins and non-finite values are dropped (counted).
    // Amplitudes below Th_universal go to the lowest amplitude bin, above 99 to the highest.
    void add_batch(int batch, const float* depth_um, const float* amplitude, int64_t n);
    // Spikes with times (samples from the first batch's start): batch = t / batch_size; times past
    // the last batch go to the last batch (its tail), negative times are dropped.
    void add_spikes(const int64_t* t_samples, const float* depth_um, const float* amplitude, int64_t n);

    MotionEstimate estimate() const;

    const DepthBins& bins() const { return bins_; }
    int n_batches() const { return n_batches_; }
    // Raw counts, n_batches x n_y x kAmplitudeBins, row-major.
    const std::vector<uint32_t>& counts() const { return counts_; }

private:
    int64_t batch_size_;
    int n_batches_;
    RegistrationParams p_;
    DepthBins bins_;
    std::vector<uint32_t> counts_;
    std::vector<int64_t> per_batch_;
    int64_t outside_ = 0;
};

// Estimation from the fingerprints F (n_batches x n_y x kAmplitudeBins, row-major, already
// log2(1 + count)): exposed for tests. empty[b] marks batches without spikes.
MotionEstimate register_fingerprints(const std::vector<double>& F, int n_batches, const DepthBins& bins,
                                     const RegistrationParams& params, const std::vector<bool>& empty);

// scipy.ndimage.gaussian_filter1d on one axis of a row-major 3-D array (dims d0 x d1 x d2), mode
// 'reflect', truncate 4: radius int(4σ + 0.5). σ <= 0 leaves the array unchanged. Exposed for tests.
void gaussian_filter_axis(std::vector<double>& a, const std::array<int, 3>& dims, int axis, double sigma);

}  // namespace ks::drift
