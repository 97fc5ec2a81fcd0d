#pragma once
// Kilosort4's graph clustering of one group's spike features (kilosort4-algorithm.md §5.3-§5.7):
// spike -> landmark kNN graph, k-means++-like seeding, bipartite modularity sweeps, greedy merge tree,
// and the top-down split decisions (merge lambda, optional refractoriness veto, bimodality).
// CPU; with a CUDA device the kNN screening runs on the GPU (same neighbours: the final order is
// decided in double on the host). The Device carries the thread count.
#include <cstdint>
#include <functional>
#include <vector>

#include "ks/device.hpp"

namespace ks::cluster {

struct GraphClusterParams {
    int cluster_neighbors = 10;          // k of the spike -> landmark kNN graph
    int64_t cluster_downsampling = 1;    // landmark stride
    int64_t max_cluster_subset = 25000;  // landmark cap (<= 0: no cap): thin evenly to about this many
    uint64_t seed = 5;                   // cluster_init_seed
    int n_init = 200;                    // rounds of the k-means++-like seeding (max initial labels)
    int n_candidates = 100;              // candidates drawn per round
    int n_sweeps = 200;                  // bipartite modularity sweeps
    double split_lambda = 0.2;           // split a tree node when its merge lambda is below this
    double bimodality_threshold = 0.6;   // split when the bimodality score is >= this
    int64_t min_spikes = 1000;           // fewer spikes: one cluster, nothing else computed
};

// Optional refractoriness veto used by the final clustering: called for a tree node about to be tested
// with the row indices of its two children's spikes; true = "cross-refractory, keep the node whole".
using KeepWhole = std::function<bool(const std::vector<int64_t>& a, const std::vector<int64_t>& b)>;

struct GraphClusterResult {
    std::vector<int> labels;  // n labels 0..n_clusters-1
    int n_clusters = 0;
    int64_t n_landmarks = 0;
    int n_initial = 0;        // distinct labels after seeding
    int n_after_sweeps = 0;   // distinct labels after the sweeps (tree leaves)
    // Split walk counts: split for a low merge lambda, split by bimodality, kept whole by bimodality
    // (score below the threshold), kept whole by the KeepWhole veto. Nodes below a kept node are not
    // visited and not counted.
    int n_splits_lambda = 0, n_splits_bimodal = 0, n_kept_whole = 0, n_vetoed = 0;
};

// X: n x D row-major float32 features (one row per spike). Deterministic for a given seed, whatever the
// number of threads. Throws Error(usage) on bad parameters (naming the setting: cluster_neighbors,
// cluster_downsampling, max_cluster_subset, ...), including settings that leave fewer landmarks than
// cluster_neighbors. n < min_spikes: every label 0 (n_clusters 1, or 0 when n == 0).
// Split walk (§5.7): keep_whole is asked only for nodes whose merge lambda is >= split_lambda, before
// the bimodality test; pass a veto that implements the intended rule or Kilosort4 v4.1.5's (never
// vetoes: pass nullptr).
GraphClusterResult graph_cluster(const Device& dev, const float* X, int64_t n, int D, const GraphClusterParams& p,
                                 const KeepWhole& keep_whole = nullptr);

// ---- The steps, exposed for tests ----

// §5.3: every `downsampling`-th row; above max_subset (> 0) landmarks, Kilosort4's evenly spaced
// removal of (count - max_subset) of them (positions round(linspace(0, count-1, removed)), half to
// even; coinciding positions remove one, so a few more than max_subset may stay). Ascending row indices.
std::vector<int64_t> landmark_indices(int64_t n, int64_t downsampling, int64_t max_subset);

// kn: n x k row-major, indices into the landmark list (not into X), nearest first; exact Euclidean,
// ties by lower landmark index. A landmark finds itself first. Distances are screened in float (blocked
// matrix products) and the final order is decided in double, sum over features in order of
// (x_j - l_j)^2. Requires 1 <= k <= landmarks.size().
std::vector<int32_t> knn_landmarks(const Device& dev, const float* X, int64_t n, int D,
                                   const std::vector<int64_t>& landmarks, int k);

// §5.4: greedy seeding. Each round draws n_candidates rows without replacement with probability
// proportional to w_i = max(v_i - e_i, 0) by Efraimidis-Spirakis keys log(u_i) / w_i (u_i =
// (bits + 0.5) 2^-53 with the top 53 bits of one std::mt19937_64 seeded with `seed`, drawn for every
// row with w_i > 0 in row order; the largest keys win, ties to the lower row; candidates are ordered by
// decreasing key, and the first of equal gain sums wins). Fewer rows with weight than n_candidates: all
// of them; none: the seeding stops. Gains are summed from float products in double; spike/candidate
// pairs that provably gain nothing (triangle inequality through the spike's current centre) are
// skipped. Returns n labels in 0..n_init-1 (0 also for never improved). The first overload runs on one
// thread; results do not depend on the thread count.
std::vector<int> kmeanspp_init(const float* X, int64_t n, int D, int n_init, int n_candidates, uint64_t seed);
std::vector<int> kmeanspp_init(const Device& dev, const float* X, int64_t n, int D, int n_init, int n_candidates,
                               uint64_t seed);

// The bipartite spike/landmark graph built from kn. The adjacency M is kn without the self-links
// (landmark s's own row pointing at s); degrees and m come from M, the label counts of the sweeps
// from kn itself (as Kilosort4 does).
struct BipartiteGraph {
    int64_t n = 0, n_landmarks = 0;
    int k = 0;
    std::vector<int32_t> kn;                 // n x k
    std::vector<uint8_t> is_self;            // n x k: 1 where kn[i,j] is i's own landmark (not in M)
    std::vector<int64_t> in_start, in_rows;  // CSR landmark -> spike rows i with s in kn[i] (self-links kept)
    std::vector<double> k_spike, k_landmark; // degrees in M
    double m = 0;                            // edges in M
};
BipartiteGraph make_bipartite(std::vector<int32_t> kn, int64_t n, int k, const std::vector<int64_t>& landmarks);

struct SweepResult {
    std::vector<int> spike_labels;     // n, renumbered 0..n_labels-1 in increasing old label order
    std::vector<int> landmark_labels;  // n_landmarks, recomputed once with the final spike labels
    int n_labels = 0;
};
// §5.5: n_sweeps alternating landmark/spike arg-max steps over labels 0..n_labels_max-1 with resolution
// lambda (scores in double; ties to the lowest label). Only the labels among a row's neighbours and the
// label with the smallest count can win, so a sweep is O(n k).
SweepResult modularity_sweeps(const Device& dev, const BipartiteGraph& g, std::vector<int> init_labels,
                              int n_labels_max, int n_sweeps, double lambda = 1.0);

// §5.6: greedy merge tree over n_leaves = n_labels leaves. Node ids: leaves 0..n_leaves-1, merge t
// creates node n_leaves + t from children child_x[t] (the larger row/col index of the merged pair) and
// child_y[t].
struct MergeTree {
    int n_leaves = 0;
    std::vector<int> child_x, child_y;             // n_leaves - 1 merges
    std::vector<double> lambda, size_leaves, m_loc; // merge statistics (Kilosort4's tstat)
    std::vector<std::vector<int>> leaves;          // 2 n_leaves - 1 nodes: their leaf labels (y's, then x's)
};
MergeTree merge_tree(const BipartiteGraph& g, const std::vector<int>& spike_labels,
                     const std::vector<int>& landmark_labels, int n_labels);

// §5.7 step 3: ridge-regularised, class-balanced least-squares projection of rows a (+1) and b (-1) of
// X (last column replaced by 1), then the histogram valley score. In [0, 1] for ordinary data; NaN
// when the histogram is empty around the valley on both sides (Kilosort4 then splits).
double bimodality_score(const float* X, int D, const std::vector<int64_t>& a, const std::vector<int64_t>& b);
// The score of a projection alone: 399 bins on [-2, 2], Gaussian smoothing sigma 4 bins (reflecting
// edges, radius 16, as scipy.ndimage.gaussian_filter1d), valley searched in bins 175..224.
double bimodality_score_of_projection(const std::vector<double>& p);

}  // namespace ks::cluster
