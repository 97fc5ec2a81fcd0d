#pragma once
// Cross- and autocorrelogram statistics of Kilosort4 (kilosort4-algorithm.md §7.2) and what is
// decided with them: the refractory rules for the good label, merges and the splitter's veto
// (§5.7), duplicate removal (§7.4) and contamination (§7.5). CPU, deterministic.
#include <cstdint>
#include <vector>

namespace ks::ccg {

// §7.2's summaries of the correlogram of two trains (1 ms bins, lags -500..500).
struct Stats {
    double R00 = 0, R01 = 0, Q00 = 0, R12 = 0, Q12 = 0;
    // Q12 with the exact Poisson tail P(N <= n; lambda) in place of §7.2's normal approximation, which at
    // the few counts of a small unit's ACG is far too small (n = 0, lambda = 1: 0.16 instead of 0.37).
    double Q12_poisson = 0;
};

// P(N <= floor(n)) for N ~ Poisson(lam); 1 for lam <= 0.
[[nodiscard]] double poisson_cdf(double n, double lam);

// a, b: spike times in seconds, sorted ascending (for an autocorrelogram pass the same train twice and
// acg = true; the i == j pairs then count at lag 0 as §7.2 says). Time O(na + nb + pairs within ±0.5 s).
// An empty train or a zero time span has no correlogram: all statistics 0 (a state no real pair of
// trains reaches, since Q00 == 0 forces Q12 >= 0.5), and the rules below never call it refractory.
// A train out of order is a caller's bug: KS_ASSERT (Exit::internal).
[[nodiscard]] Stats ccg_stats(const double* a, int64_t na, const double* b, int64_t nb, bool acg);

// True when s is the all-zero result of an empty train or a zero time span.
[[nodiscard]] bool undefined(const Stats& s);

// §7.2's decisions; both false for undefined statistics (Kilosort4 never calls those refractory).
[[nodiscard]] bool acg_refractory(const Stats& s, double acg_threshold);   // R12 < acg_threshold and Q12 < 0.2
[[nodiscard]] bool ccg_refractory(const Stats& s, double ccg_threshold);   // R12 < ccg_threshold and Q12 < 0.05
// ccg_refractory with the exact tail: R12 < ccg_threshold and Q12_poisson < 0.05 (the merges' test).
[[nodiscard]] bool ccg_refractory_poisson(const Stats& s, double ccg_threshold);
// acg_refractory with the exact tail: R12 < acg_threshold and Q12_poisson < 0.2 (the 'good' label's test).
[[nodiscard]] bool acg_refractory_poisson(const Stats& s, double acg_threshold);

// §5.7's intended veto in the final clustering: true when the two sides of a split share a refractory
// period (R12 < 0.25 and (Q12 < 0.05 or Q00 < 0.25)), i.e. the split must not happen. An empty side or a
// zero time span: false, as the intended empty-input guard says.
[[nodiscard]] bool split_vetoed_by_refractory(const double* a, int64_t na, const double* b, int64_t nb);

// §7.4: t (samples, ascending, ties in any order), clu (>= 0); a spike is dropped when it lies fewer than
// dup_samples after the last kept spike of its own cluster. dup_samples <= 0 keeps all. Returns 1 = kept.
// Unsorted t or a negative clu: KS_ASSERT.
[[nodiscard]] std::vector<uint8_t> remove_duplicates(const int64_t* t, const int32_t* clu, int64_t n,
                                                   int64_t dup_samples);

// §7.5 for clusters 0..K-1: contam_pct[k] = 100 R12 of the cluster's ACG and good[k] = acg_refractory
// (exact_tail: acg_refractory_poisson); clusters with <= 10 spikes or a zero time span: 0 and not good.
// t in samples (any order), fs in Hz; clu outside 0..K-1: KS_ASSERT.
// good without exact_tail is also Kilosort4's is_ref for §7.3's merges (CCG.refract applies the same guard).
void contamination(const int64_t* t, const int32_t* clu, int64_t n, int K, double fs, double acg_threshold,
                   std::vector<double>* contam_pct, std::vector<uint8_t>* good, bool exact_tail = false);

}  // namespace ks::ccg
