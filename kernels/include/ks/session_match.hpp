#pragma once
// Tracking units across recording sessions, as Kilomatch (pyKilomatch, now DANT) does, in its
// steps: per-unit features (location by monopolar triangulation, autocorrelogram, ISI histogram),
// pairwise similarities (waveform on the unit's nearest channels after motion correction, ACG,
// optional PETH; Fisher z of Pearson r), a weighted similarity whose weights and threshold are
// learned without labels (HDBSCAN on 1 / (1 + tanh S), then a two-class LDA on the clusters,
// alternated), the probe's rigid motion between sessions from the matched pairs, waveform
// correction by kriging, and auto-curation (one unit per session per identity, split on the
// threshold). Deterministic: no random starts (the motion least squares has a closed form).
// See formats/match-sessions.md and ../shared/docs/field-references.md section 1.
#include <cstdint>
#include <string>
#include <vector>

namespace ks::sessions {

// ---- building blocks (unit-tested) -------------------------------------------------------------

// HDBSCAN (Campello et al. 2013) over a sparse symmetric distance graph with min_samples = 1 (so the
// mutual reachability distance is the distance itself), min_cluster_size = 2, cluster selection by
// excess of mass, clusters of more than max_cluster_size points never selected (a cluster that sheds
// points one by one until it fits becomes a candidate from that level on). Pairs not listed
// are at infinite distance. Returns a label per point, -1 for noise, clusters numbered 0.. in order
// of their smallest point. Ties are broken by (distance, i, j), so the result is deterministic.
struct Edge {
    int i, j;
    double d;
};
std::vector<int> hdbscan(int n, std::vector<Edge> edges, int max_cluster_size);

// Two-class linear discriminant analysis (equal covariances, priors from the class sizes), as
// scikit-learn's LinearDiscriminantAnalysis: decision w.x + b > 0 for class 1. x is row-major
// (n, d). Returns false when a class is empty or the pooled covariance is singular.
bool lda(const std::vector<double>& x, const std::vector<uint8_t>& label, int d, std::vector<double>* w, double* b);

// Rigid probe positions p (one per session, mean 0) minimising sum over pairs of
// ((y_b - y_a) - (p[s_b] - p[s_a]))^2: a graph-Laplacian solve. Sessions that no pair connects to
// session 0's component keep the position of their own component's mean (0).
std::vector<double> rigid_motion(int n_sessions, const std::vector<int>& session_a, const std::vector<int>& session_b,
                                 const std::vector<double>& dy);

// Monopolar triangulation (Boussard et al. 2021): (x, y, z, alpha) minimising
// sum_c (a_c - alpha / sqrt((x - x_c)^2 + (y - y_c)^2 + z^2))^2 over the given channels, by
// Levenberg-Marquardt from the amplitude-weighted centre of mass, x and y kept within 100 µm of it
// and z within 200 µm of the probe. Returns {x, y, z}.
std::vector<double> monopolar_location(const std::vector<double>& xc, const std::vector<double>& yc,
                                       const std::vector<double>& amp);

// Autocorrelogram: lags -window..window ms in 1-ms bins without the zero bin (2 window values),
// each half smoothed by a Gaussian of sigma_ms, divided by its maximum (all zero without pairs).
std::vector<double> autocorrelogram(const std::vector<double>& spike_ms, int window_ms = 300, double sigma_ms = 5);
// ISI distribution: 0..window ms in 1-ms bins, a probability, smoothed by a Gaussian of sigma_ms.
std::vector<double> isi_histogram(const std::vector<double>& spike_ms, int window_ms = 100, double sigma_ms = 1);

// ---- the whole matcher ---------------------------------------------------------------------------

struct Input {
    std::vector<double> xc, yc;            // channel positions (µm), C
    int nt = 0;                            // samples per waveform
    std::vector<int> session;              // per unit, 0-based, contiguous
    std::vector<float> waveform;           // (n_units, C, nt) µV, unwhitened, on every channel
    std::vector<std::vector<double>> spike_ms;
    std::vector<double> peth;              // (n_units, n_peth) or empty
    int n_peth = 0;
    int n_sessions() const;
    int n_units() const { return static_cast<int>(session.size()); }
};

struct Params {
    int n_nearest_channels = 38;   // waveform similarity on this many channels nearest the peak
    int n_location_channels = 20;  // monopolar triangulation on this many
    double max_distance_um = 100;  // candidate pairs: corrected depths this close
    double max_shift_um = 150;     // the first motion estimate searches shifts up to this
    int n_iter = 10;               // HDBSCAN <-> LDA alternations per round
    int n_motion_rounds = 2;       // rounds of (cluster, estimate motion, correct waveforms)
    double kriging_sigma_x = 20, kriging_sigma_y = 30;   // µm
    bool use_peth = true;          // when the input has PETHs
};

struct Result {
    std::vector<std::string> features;          // "Waveform", "AutoCorr", ["PETH"]
    std::vector<double> weights;                // SimilarityWeights
    double threshold = 0;                       // SimilarityThreshold
    std::vector<double> motion;                 // per session, µm (probe position along y, mean 0)
    std::vector<double> location;               // (n, 3) x, y, z in each session's probe frame
    std::vector<int> peak_channel;              // per unit
    std::vector<int> waveform_channels;         // (n, n_nearest)
    std::vector<float> waveforms, waveforms_corrected;   // (n, n_nearest, nt)
    std::vector<double> auto_corr, isi;         // (n, 600), (n, 100)
    std::vector<float> similarity;              // (n, n) weighted similarity, -inf... 0 for non-candidates
    std::vector<int> idx_cluster;               // per unit: identity 1.., -1 unmatched
    int n_clusters = 0;
    int n_removed_same_session = 0, n_removed_split = 0;
    int n_candidate_pairs = 0;
};

Result match(const Input& in, const Params& p);

}  // namespace ks::sessions
