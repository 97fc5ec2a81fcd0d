#pragma once
// Kilosort4's post-processing of the final clustering (kilosort4-algorithm.md §7.3, §7.6, §7.7):
// merges of clusters that share a refractory period and look alike (and, beyond Kilosort4, of a drifting
// neuron's pieces and of units that are the same spikes found twice), spike positions, amplitudes.
// Duplicate removal, contamination and the good label are in ccg.hpp.
#include <cstdint>
#include <vector>

namespace ks::post {

struct MergeParams {
    double fs = 30000;
    double acg_threshold = 0.2;    // a cluster absorbs others only when its own ACG is refractory
    double ccg_threshold = 0.25;   // the pair's CCG must be refractory
    double min_similarity = 0.5;   // candidates in decreasing template similarity down to this
    // The pair's dip tested with the exact Poisson tail (ccg::ccg_refractory_poisson) instead of Kilosort4's
    // normal approximation, which at the few pairs of small units finds a dip where chance left one.
    bool exact_tail = false;
    // Second pass, beyond Kilosort4 (0 disables): a drifting neuron that the clustering cut into pieces
    // active at different times. Kilosort4's CCG test cannot merge those: pieces that rarely fire in the
    // same second leave the correlogram nearly empty, so its significance test (Q12 < 0.05) never passes.
    // Merged here when the templates are at least this similar, the pair shows no refractory violations
    // beyond ccg_threshold (R12 only) and their firing over time overlaps at most fragment_overlap.
    double fragment_similarity = 0;
    double fragment_overlap = 0.35;  // histogram intersection of the two spike-time profiles (0..1)
    // The drift correction leaves residual motion (a single block cannot follow non-rigid drift), so a
    // neuron's pieces can sit 10-30 µm apart and their templates differ by that shift. With a probe
    // geometry and fragment_max_shift_um > 0, the fragment pass compares a piece with the other moved
    // vertically by up to that much (kriging interpolation, steps of fragment_shift_step_um) and merges
    // at the best shift, the absorbed template moved back onto the absorbing one's position.
    double fragment_max_shift_um = 0;
    double fragment_shift_step_um = 5;
    double sig_interp_um = 20;       // kriging kernel width (the drift correction's sig_interp)
    std::vector<double> xc, yc;      // contact positions (µm), one per template channel (C)
    std::vector<int> kcoords;        // shank per channel: no shift moves a template across shanks
};

struct MergeResult {
    int K = 0;                       // clusters after the merges, renumbered 0..K-1 keeping their order
    std::vector<int32_t> into;       // per input cluster: the output cluster it is now part of
    std::vector<int32_t> shift;      // per input cluster: samples added to its spike times (0 unless absorbed)
    std::vector<int32_t> kept;       // per output cluster: the input cluster that survives as it
    int n_merges = 0;
    int n_fragment_merges = 0;       // of n_merges, those of the second pass
    int n_shifted_fragment_merges = 0;   // of n_fragment_merges, those at a non-zero vertical shift
};

// §7.3. times: spike times (samples) of every spike, any order; labels: 0..K-1. U: K x C x P templates
// (PC coefficients over wpca, P x nt), replaced by the merged ones (count-weighted averages, the absorbed
// template shifted in time to line up). Clusters are visited by decreasing spike count; only clusters
// with a refractory ACG absorb; candidates in decreasing similarity; the first whose CCG with the
// cluster is refractory is merged, its spike times shifted by the similarity's best lag, and the same
// cluster is visited again. Then, when p.fragment_similarity > 0, the same walk again with the fragment
// rule (MergeParams), comparing templates also under vertical shifts when fragment_max_shift_um > 0.
// The caller applies `into` and `shift` to the spikes.
MergeResult ccg_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                      std::vector<float>& U, int C, int P, const float* wpca, int nt, const MergeParams& p);

// Beyond Kilosort4: units that are the same spikes detected twice. When a neuron's footprint is wider
// than one template's channels, the matching can fit two templates to each of its spikes, giving two
// units whose spikes coincide at a fixed lag (SpikeInterface's remove_redundant_units finds the same).
struct RedundantParams {
    double fs = 30000;
    double fraction = 0.5;        // merged when at least this fraction of the smaller unit's spikes coincide
    double max_lag_ms = 1.0;      // the fixed lag is searched within +-max_lag_ms
    double tolerance_ms = 0.1;    // a coincidence: within +-tolerance_ms of that lag
    double max_distance_um = 200; // only units whose templates peak this close are compared
    // A unit joins only if its spikes that are not the shared ones keep the owner's refractory period
    // (their correlogram with the owner's spikes has R12 < ccg_threshold); else it loses only the
    // shared spikes. 0: no such test.
    double ccg_threshold = 0;
};

struct RedundantResult {
    MergeResult merge;               // as ccg_merge's; templates are not touched (the survivor keeps its own)
    std::vector<uint8_t> drop;       // per spike: a second detection of another unit's spike, removed
    int n_dropped_pairs = 0;         // unit pairs resolved by dropping the shared spikes
    int64_t n_dropped = 0;
    // Per output unit: what remains of a unit whose spikes were mostly another's (shared >= fraction of
    // it) but which did not join (its other spikes break the owner's refractory period). Its template
    // is mostly the other neuron's, so it is no unit of its own to call 'good'.
    std::vector<uint8_t> residue;
    int n_residues = 0;
};

// times/labels as ccg_merge's (any order); unit_x/unit_y: each cluster's template peak position (µm);
// unit_norm: its template's norm. Pairs whose shared spikes (at their best lag) are at least p.fraction
// of the smaller unit's, in decreasing fraction. The shared spikes belong to the unit with the larger
// template (the owner). When they are at least p.fraction of the other unit too, that unit is the same
// neuron seen twice and joins the owner (its times shifted by the lag, so duplicate removal then drops
// one of each shared spike); otherwise the other unit is a different neuron that also picked up some of
// the owner's spikes, and only those are dropped.
RedundantResult redundant_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                                const std::vector<double>& unit_x, const std::vector<double>& unit_y,
                                const std::vector<double>& unit_norm, const RedundantParams& p);

// m · u for a C x C matrix m (row-major) and a C x P template u (the fragment pass's vertical shifts).
std::vector<float> map_template(const float* m, const float* u, int C, int P);
// Similarity of two templates ua and ub (C x P PC coefficients over a P x nt basis whose lag products are
// match::pc_lag_products) as match::template_similarity defines it, for one pair. *lag: the best lag (ua
// centred at t0 + lag matches ub at t0).
float pair_similarity(const float* ua, const float* ub, int C, int P, const std::vector<double>& lag_products, int nt,
                      int* lag);

// Histogram intersection of two spike-time profiles over `bins` equal bins of [t0, t1] (each profile
// normalised to sum 1): 1 for the same firing over time, 0 for trains active at disjoint times.
double time_overlap(const std::vector<double>& a, const std::vector<double>& b, double t0, double t1, int bins);

// Beyond Kilosort4, for the 'good' label: a unit that is probably a piece of a larger good unit. The
// final clustering can cut one neuron into pieces (by residual motion, or a weak neuron's spikes into
// two feature clouds) that fire interleaved; Kilosort4's merge needs a significant shared refractory
// dip, which pieces of a few dozen to a few hundred spikes cannot show. A piece is a good unit whose
// template is at least `similarity` alike a larger good unit's (also under vertical shifts up to
// max_shift_um, same shank, peaks within max_shift_um + 40 µm) and whose spikes fall within
// ±window_ms of that unit's spikes at most ccg_threshold times as often as independent firing would
// give, where that is at least min_expected: the correlogram leans towards one neuron without
// proving it. Such a unit is left 'mua' rather than merged.
struct PieceParams {
    double fs = 30000;
    double similarity = 0;          // 0 disables
    double window_ms = 1.5;         // coincidence window, each side
    double min_expected = 0.5;      // independent firing must give at least this many coincidences
    double ccg_threshold = 0.25;    // at most this fraction of them may be seen
    double max_shift_um = 40, shift_step_um = 5, sig_interp_um = 20;
    std::vector<double> xc, yc;     // contact positions (µm) per template channel; empty: no geometry
    std::vector<int> kcoords;
};

// times/labels: every spike's time (samples) and unit (0..K-1); U: K x C x P templates (PCs over wpca,
// P x nt); good: the label so far. Returns per unit the larger good unit it is probably a piece of (the
// most similar such), or -1.
std::vector<int32_t> probable_pieces(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                                     const std::vector<float>& U, int C, int P, const float* wpca, int nt,
                                     const std::vector<uint8_t>& good, const PieceParams& p);

// Per unit k in 0..K-1, the median of values[index[i]] over the spikes i with labels[i] == k (the mean of
// the two middle values for an even count); 0 for a unit without spikes. index maps each spike to its
// row of values (e.g. the final spikes' rows in match/).
std::vector<double> unit_medians(const std::vector<int32_t>& labels, const std::vector<int64_t>& index,
                                 const std::vector<float>& values, int K);

// §7.6: a spike's position is the mean of its channels' positions weighted by the norm of its features
// there (features nC x P on channels chans[0..nC), chans[0] its template's peak channel); channels farther
// than position_limit_um from chans[0], or -1, weigh 0. All weights 0: the peak channel's position.
void spike_position(const float* features, const int32_t* chans, int nC, int P, const std::vector<double>& xc,
                    const std::vector<double>& yc, double position_limit_um, double* x_um, double* y_um);

}  // namespace ks::post
