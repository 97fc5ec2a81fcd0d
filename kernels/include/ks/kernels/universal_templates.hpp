#pragma once
// Kilosort4's universal-template spike detection (docs/kilosort4-algorithm.md §4), shared by ks-drift
// and ks-detect: temporal templates learned from data (§4.1), the spatial grid of template centres
// and its envelopes (§4.2, §4.3), and the detection statistic with its local-maximum rules (§4.4,
// §4.5) on one whitened batch. Arrays and conventions: formats/universal-templates.md.
#include <cstdint>
#include <vector>

#include "ks/device.hpp"
#include "ks/probe.hpp"

namespace ks::kernels {

// ---- §4.2 / §4.3: grid of template centres -------------------------------------------------------

struct UniversalGridSettings {
    double dmin = 0;                   // vertical pitch (µm); <= 0 means auto (median unique-y step)
    double dminx = 32;                 // horizontal pitch (µm)
    double min_template_size = 10;     // smallest envelope sigma (µm); exponent -d^2/sigma^2
    int template_sizes = 5;            // envelope sizes sigma_s = min_template_size * (s + 1)
    double max_channel_distance = 32;  // drop centres whose nearest channel is farther (µm)
    int nearest_chans = 10;            // channels per centre
    int nearest_templates = 100;       // centres in the spatial local-max neighbourhood
};

// Centres are built per shank and never mix shanks: a centre's channels and its local-max
// neighbours all belong to its shank. Order: shank (ascending kcoords), then y, then x, ascending.
struct UniversalGrid {
    double dmin_um = 0;                // the dmin used (auto or given)
    int n_pos = 0;                     // F
    std::vector<double> x_um, y_um;    // F: centre positions
    std::vector<int> shank;            // F: kcoords value of the centre's shank
    int n_chan_near = 0;               // nC = nearest_chans
    std::vector<int> iC;               // F x nC, row-major: channel rows (probe order) by distance; -1 = none
    std::vector<double> ds_um2;        // F x nC: squared distances (µm^2); +inf where iC is -1
    int n_near = 0;                    // nearest_templates
    std::vector<int> iC2;              // F x n_near: centre indices by distance, itself first; -1 = none
    int n_sizes = 0;                   // template_sizes
    std::vector<float> g;              // n_sizes x F x nC: envelopes, unit L2 norm over nC (0 where iC is -1)
    std::vector<double> ch_y_um;       // per channel row (probe order): contact y, for y_weighted_um
};

// Throws Error(usage) naming the setting when a setting is out of range.
UniversalGrid make_universal_grid(const Probe& probe, const UniversalGridSettings& s);

// ---- §4.1: temporal templates from data --------------------------------------------------------

struct SnippetSettings {
    int nt = 61;                 // clip length (samples, odd)
    int nt0min = 20;             // peak index inside the clip
    float Th_single_ch = 6.f;    // |x| threshold (whitened SD units)
    int64_t max_clips = 500000;  // stop before the batch that would overflow
};

// Collects unit-norm single-channel clips around isolated threshold crossings, batch by batch.
// A peak: |x[c,t]| is the maximum of |x| over +-4 channel rows x +-5 samples and > Th_single_ch.
// Isolated: exactly one peak within +-6 rows x +-30 samples. Peaks in the first or last nt samples
// of the block are ignored. Clip: x[c, t - nt0min, t - nt0min + nt), scaled to unit L2 norm.
// Kilosort4 feeds whitened batches 0, 25, 50, ... (with their context); the caller picks them.
class SnippetCollector {
public:
    explicit SnippetCollector(const SnippetSettings& s);
    // x: n_chan x n_samples channel-major (row stride ld). Returns false (and adds nothing) when
    // this batch's clips would exceed max_clips; the caller should stop feeding batches then.
    bool add_batch(const float* x, int n_chan, int64_t n_samples, int64_t ld);
    int64_t n_clips() const { return static_cast<int64_t>(clips_.size()) / s_.nt; }
    const std::vector<float>& clips() const { return clips_; }  // n_clips x nt, row-major
    const SnippetSettings& settings() const { return s_; }

private:
    SnippetSettings s_;
    std::vector<float> clips_;
};

// wPCA: the top n_pcs right singular vectors of the (n_clips x nt) clip matrix, no mean-centring,
// as n_pcs x nt row-major orthonormal rows. Sign: each row's largest-|value| entry is negative.
// Throws Error(unsortable) when there are fewer clips than n_pcs.
std::vector<float> universal_wpca(const std::vector<float>& clips, int nt, int n_pcs);

// wTEMP: k-means (k-means++ seeding from std::mt19937(seed), `restarts` runs, lowest inertia kept)
// with n_templates centres on the clips; centres renormalised to unit L2 norm; n_templates x nt.
// Deterministic for a given seed, whatever the number of threads. Throws Error(unsortable) when
// there are fewer clips than n_templates.
std::vector<float> universal_wtemp(const std::vector<float>& clips, int nt, int n_templates, uint32_t seed = 1,
                                   int restarts = 10, int max_iter = 100);

// ---- §4.4 / §4.5: detection on one whitened batch ----------------------------------------------

struct UniversalDetectArgs {
    const float* x = nullptr;   // n_chan x n_samples, channel-major, row stride ld_x: one batch with context
    int n_chan = 0;
    int64_t n_samples = 0;
    int64_t ld_x = 0;
    int64_t context = 0;        // samples of context on each side; must be >= nt0min + nt/2
    const float* wtemp = nullptr;  // nk x nt, unit-norm rows
    int nk = 0, nt = 0, nt0min = 0;
    const UniversalGrid* grid = nullptr;
    float Th_universal = 9.f;
};

struct UniversalSpike {
    int64_t t_center = 0;  // sample index in the block of the nt-window centre (KS4's st time)
    int64_t t_trough = 0;  // t_center - nt/2 + nt0min: the template's trough/peak sample
    int pos = 0;           // grid centre index f
    int size_template = 0; // best s * nk + k (ties: the lowest)
    int sign = 1;          // sign of the projection at the best (s, k): -1 or +1
    float amp = 0;         // As[f, t] = max over (s, k) of |A| (whitened SD units), > Th_universal
    double x_um = 0, y_um = 0;  // centre position
    double y_weighted_um = 0;   // sum_i w_i yc[iC[i,f]], w_i ∝ relu(sign * B[iC[i,f], k, t]) (KS4 st col 1)
};

// Detections with t_center in [context, n_samples - context), sorted by (t_center, pos).
// A window's statistic depends only on the data within nt/2 + nt0min samples of it, and the local
// max compares against the context's statistic too (KS4 zeroes it), so a spike near a batch edge is
// found exactly once across adjacent batches. CPU results do not depend on the number of threads.
std::vector<UniversalSpike> detect_universal(const Device& dev, const UniversalDetectArgs& a);

namespace cpu {
std::vector<UniversalSpike> detect_universal(const UniversalDetectArgs& a);
// The CUDA backend's last step (the CPU backend uses an equivalent internal one): from As (F x n_samples) and, when not null, the local-max flags
// (F x n_samples, nonzero = detection; else they are computed here), the sorted spikes with their
// best (s, k), sign and weighted depth recomputed with the same arithmetic.
std::vector<UniversalSpike> universal_finish(const UniversalDetectArgs& a, const float* as, const uint8_t* is_max);
}
#if KS_HAVE_CUDA
namespace cuda {
std::vector<UniversalSpike> detect_universal(const UniversalDetectArgs& a);
}
#endif

}  // namespace ks::kernels
