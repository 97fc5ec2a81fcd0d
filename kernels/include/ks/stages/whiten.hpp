#pragma once
// ks-whiten: the whitening matrix from the filtered recording (kilosort4-algorithm.md sections
// 2.3-2.4, formats/whiten.md). Channel covariance from every nskip-th batch, then a local ZCA per
// channel over its whitening_range nearest channels of the same shank, with Kilosort4's
// regularisation (eigenvalue + 1e-6) and no gain, so whitened data has about unit noise variance
// and Kilosort4's thresholds (Th_universal, Th_learned, Th_single_ch) keep their meaning.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/probe.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks::whiten {

constexpr double kEigenEpsilon = 1e-6;   // added to each local eigenvalue (Kilosort4), squared input units
constexpr double kInverseRidge = 1e-5;   // whiten_inv = inv(W + 1e-5 I) (Kilosort4's whitening_mat_inv)
constexpr double kWhitenedScale = 200;   // whitened.bin stores round(200 * whitened) (Kilosort4's temp_wh.dat)

struct Params {
    int64_t batch_size = 60000;   // NT, samples per batch
    int64_t nskip = 25;           // batch stride of the covariance estimate
    int whitening_range = 32;     // channels per local neighbourhood (clipped to the shank's size)

    // From resolved settings (ranges were checked when they were set).
    static Params from(const Settings& settings);
};

// The batches whose samples feed the covariance: b = 0, nskip, 2*nskip, ... < n_batches - 1 as in
// Kilosort4 (the last, possibly short, batch is left out), except that a recording of one batch
// uses that batch. n_batches = ceil(n_samples / batch_size). Empty when n_samples <= 0.
std::vector<int64_t> covariance_batches(int64_t n_samples, int64_t batch_size, int64_t nskip);

// Reads samples [t0, t0 + n) of all channels as float32, channel-major: out[c * n + t].
using SampleReader = std::function<void(int64_t t0, int64_t n, float* out)>;

struct Covariance {
    int n_channels = 0;
    std::vector<double> cc;             // n_channels x n_channels, row-major: sum_b X_b X_bᵀ / n_samples_used
    int64_t n_samples_used = 0;         // sum of the used batches' lengths
    std::vector<int64_t> batches;       // covariance_batches(...)
};

// CC = sum_b X_b X_bᵀ / sum_b n_b over covariance_batches, X_b the batch's samples (no centring:
// the filtered recording is high-passed). float32 samples, float64 sums in a fixed order, so the
// result does not depend on the thread count or the device (kernels/covariance.hpp).
// Throws Error(usage) when n_samples <= 0.
Covariance estimate_covariance(const Device& dev, const SampleReader& read, int n_channels, int64_t n_samples,
                               const Params& params, Progress* progress = nullptr);

// For each channel j, the channels it is whitened against: the min(whitening_range, shank size)
// channels of j's shank (kcoords) nearest to j on (xc, yc), ordered by (distance, channel index),
// so j comes first unless another contact shares its position. Unlike Kilosort4, which ranks
// across shanks purely by distance, other shanks' channels are never neighbours.
std::vector<std::vector<int>> neighbourhoods(const Probe& probe, int whitening_range);

// Kilosort4's local ZCA: for each channel j, E D Eᵀ = CC[N_j, N_j] (double eigendecomposition of
// the neighbourhood in channel-index order, shared by channels whose neighbourhoods are one set),
// Z = E (max(D, 0) + eps)^(-1/2) Eᵀ, and row j of W is Z's row for j scattered into columns N_j
// (zero elsewhere). n x n row-major. A channel with zero variance gets W[j, j] = eps^(-1/2) = 1000
// and zeros elsewhere in its row: its (zero) samples stay zero. Never NaN for finite CC.
std::vector<double> local_zca(const std::vector<double>& cc, int n_channels,
                              const std::vector<std::vector<int>>& neighbours, double eps = kEigenEpsilon);

// inv(W + ridge I) in double (n x n row-major). Throws Error(unsortable) if it is singular.
std::vector<double> whitening_inverse(const std::vector<double>& w, int n_channels, double ridge = kInverseRidge);

struct RunOptions {
    bool write_whitened = false;              // also write whiten/whitened.{bin,json}
    std::string tool = "ks-whiten";
    std::string command_line;
    std::string settings_json;                // Settings::to_json("whiten"), for the stage record
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_channels = 0;
    int64_t n_samples_used = 0;
    std::vector<int64_t> batches;
    std::vector<int> flat_channels;           // zero variance in the covariance estimate
    int neighbourhood_min = 0, neighbourhood_max = 0;
};

// The whole stage: reads <work>/probe.json and <work>/filter/ (filter.json must exist: the filter
// stage finished), writes <work>/whiten/{covariance,whiten,whiten_inv}.npy (+ whitened.bin/.json
// with write_whitened) and, last, whiten/whiten.json. Throws Error(usage) naming the missing or
// inconsistent file or setting, Error(resources) on a failed write.
Summary run(const std::string& work_dir, const Params& params, const Device& dev, const RunOptions& options);

}  // namespace ks::whiten
