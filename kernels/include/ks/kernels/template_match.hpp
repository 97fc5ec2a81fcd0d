#pragma once
// Template matching by peeling (kilosort4-algorithm.md §6): the learned templates, kept as
// spatial × temporal-PC coefficients U (K × C × P) over the temporal basis wPCA (P × nt), are
// correlated with a whitened batch through the PC basis; the best template and time above Th_learned
// are subtracted, their effect on every other template's correlation is removed with precomputed
// template cross-products, and the search repeats up to max_peels passes. Also the template
// similarity of §7.8, which the template clean-up and the merges use.
#include <cstdint>
#include <memory>
#include <vector>

#include "ks/device.hpp"

namespace ks::match {

// C_pq(l) = sum_tau wPCA[p, tau - l] * wPCA[q, tau] for l in [-nt, nt]:
// out[((l + nt) * P + p) * P + q], (2nt+1) x P x P.
std::vector<double> pc_lag_products(const float* wpca, int P, int nt);

// ctc[(a * K + b) * (2nt+1) + (l + nt)]: the inner product of template a centred at t0 + l with template
// b centred at t0 (whitened units squared). U is K x C x P.
std::vector<float> template_cross_products(const float* U, int K, int C, int P, const float* wpca, int nt);

// §7.8: sim[a * K + b] = max over l in [-nt, nt] of the normalised cross-correlation of templates a and b
// (1 on the diagonal, 0 for a zero template); lag[a * K + b] = the l of that maximum (template a centred at
// t0 + l best matches b at t0).
void template_similarity(const float* U, int K, int C, int P, const float* wpca, int nt, std::vector<float>* sim,
                         std::vector<int>* lag);

// Rows of the above, one at a time, while templates change one at a time (the merge walks): keeps the
// unit-norm templates' cross-product structure, so a row costs that row's products only. row(a) gives
// exactly row a of template_similarity for the templates as last set (sim_row, lag_row: K). One thread
// at a time (row uses a scratch buffer).
class SimilarityRows {
public:
    SimilarityRows(const float* U, int K, int C, int P, const float* wpca, int nt);
    ~SimilarityRows();
    SimilarityRows(const SimilarityRows&) = delete;
    SimilarityRows& operator=(const SimilarityRows&) = delete;
    void update(int k, const float* u);  // template k is now u (C x P)
    void row(int a, std::vector<float>* sim_row, std::vector<int>* lag_row);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// §5.9 clean-up before matching, step 1: shift every template in time (zero fill, then back to PC
// coefficients) so that its best match with the universal single-channel templates wtemp
// (n_wtemp x nt, trough at nt0min) is at lag 0, i.e. its trough sits at nt0min. Shifts of at most
// max_shift samples; returns each template's shift (0 = unchanged, U untouched).
std::vector<int> align_templates(float* U, int K, int C, int P, const float* wpca, int nt, const float* wtemp,
                                 int n_wtemp, int max_shift);

// §5.9 step 2: near-duplicate merge. Templates are visited by decreasing count; a template absorbs the
// most similar other template whose similarity is >= sim_threshold and whose norm differs by less than
// norm_ratio (|2(a-b)/(a+b)|), count-weighted, and is visited again. Returns, per input template, the
// kept template it ends in (renumbered 0..K'-1 in input order); U, K and counts are replaced by the kept ones.
std::vector<int> merge_near_duplicates(std::vector<float>& U, int& K, int C, int P, const float* wpca, int nt,
                                       std::vector<int64_t>& counts, double sim_threshold = 0.9,
                                       double norm_ratio = 0.2);

// Everything the peeling needs about a template set, computed once.
struct MatchTemplates {
    int K = 0, C = 0, P = 0, nt = 0, nC = 0;
    std::vector<float> U;              // K x C x P
    std::vector<float> wpca;           // P x nt
    std::vector<float> norm2;          // K: ||T_k||^2 (waveform energy)
    std::vector<int32_t> peak_chan;    // K: argmax_c sum_p U[k,c,p]^2 (iU)
    std::vector<int32_t> chans;        // K x nC: nearest channels of the peak channel (-1 = none)
    std::vector<float> ctc;            // K x K x (2nt+1)
    std::vector<float> wave;           // K x C x nt: full waveforms
    // Templates sharing one channel support, for the projection products.
    struct Group {
        std::vector<int> templates, channels;
        std::vector<float> coeffs;   // templates x (channels x P): U restricted to the group's channels
    };
    std::vector<Group> groups;
    std::vector<int> group_of;                  // K: group of each template (-1: zero template, never fitted)
    std::vector<int> fittable;                  // the templates in some group, ascending
    std::vector<std::vector<int>> overlapping;  // K: templates j with ctc[j, k, :] not all zero
};

// near_chans: C x nC, the nC nearest channels of each channel (same shank, nearest first, -1 padding).
MatchTemplates prepare_templates(const float* U, int K, int C, int P, const float* wpca, int nt,
                                 const int32_t* near_chans, int nC);

struct MatchArgs {
    const float* x = nullptr;     // C x ld_x whitened (drift-corrected) batch with context
    int64_t n_samples = 0, ld_x = 0;
    int nt0min = 20;              // trough index within a template
    // Spikes whose trough lies in [report_lo, report_hi) (buffer samples) are returned; all spikes found
    // anywhere in the buffer are peeled, so neighbours across a batch seam are handled alike by both batches.
    int64_t report_lo = 0, report_hi = 0;
    float Th_learned = 8;
    int max_peels = 100;
};

struct MatchedSpike {
    int64_t t_trough = 0;   // buffer sample of the template's trough
    int32_t k = 0;          // template
    float amp = 0;          // Bk / ||T_k||: the fit's size in whitened units (Kilosort4's st[:, 2])
    float scale = 0;        // Bk / ||T_k||^2: least-squares scale of the template (1 = template's size)
};

struct MatchStats {
    int passes = 0;         // peeling passes run
    int64_t n_found = 0;    // spikes peeled in the whole buffer (reported or not)
};

// Peels the batch; returns the reported spikes sorted by (t_trough, k) and, in *features (n x nC x P),
// each one's PC features on chans[k]: the residual (every peeled spike removed) plus its own template.
std::vector<MatchedSpike> match_batch(const Device& dev, const MatchTemplates& T, const MatchArgs& a,
                                      std::vector<float>* features, MatchStats* stats = nullptr);

#if KS_HAVE_CUDA
namespace cuda {
// Bk[k * n + t] for t in [t0, t1) on the GPU, the CPU's sums (common/template_match_body.hpp); Bk elsewhere 0.
void projections(const MatchTemplates& T, const float* x, int64_t n, int64_t ld_x, int64_t t0, int64_t t1, float* bk);
}  // namespace cuda
#endif

}  // namespace ks::match
