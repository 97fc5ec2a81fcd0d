// Landmarks and the exact spike -> landmark kNN (CPU; with a GPU the screening runs there,
// kernels/cuda/graph_knn.cu) of Kilosort4's graph clustering (kilosort4-algorithm.md
// §5.3, clustering_qr.neigh_mat). Kilosort4 asks faiss IndexFlatL2 on the CPU; here distances are
// screened in float with blocked matrix products (|x|^2 + |l|^2 - 2 x.l), each row keeps a short list
// of the best, and the final order is decided in double, so the answer is exact (ties to the lower
// landmark index) and each row's answer depends only on its own distances, whatever the threads.
#define EIGEN_DONT_PARALLELIZE  // threads come from our own OpenMP loops, results stay thread-independent
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/knn_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/graph_cluster.hpp"
#include "ks/kernels/graph_knn_cuda.hpp"

namespace ks::cluster {
namespace {

constexpr int64_t kRowBlock = 256;       // spikes per job
constexpr int64_t kLandmarkBlock = 1024; // landmarks per matrix product (the product fits in L2)

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Exact squared distance, summed in feature order so any two callers agree bit for bit.
double exact_dist2(const float* a, const float* b, int D) {
    double s = 0;
    for (int j = 0; j < D; ++j) {
        const double d = static_cast<double>(a[j]) - static_cast<double>(b[j]);
        s += d * d;
    }
    return s;
}

using Cand = kernels::body::KnnCand;

// The exact answer for row i from its screened list: the candidates within the float error margin
// of the k-th, re-ranked in double (a list whose last entry is still within the margin: every landmark).
void rerank(const float* X, int D, const std::vector<int64_t>& landmarks, int64_t i, const Cand* lst, int f, int cap,
            int k, double thr, std::vector<std::pair<double, int32_t>>& exact, int32_t* out) {
    const int64_t ns = static_cast<int64_t>(landmarks.size());
    const float* x = X + i * D;
    exact.clear();
    if (f == cap && static_cast<double>(lst[cap - 1].d) <= thr) {
        for (int64_t s = 0; s < ns; ++s) exact.emplace_back(exact_dist2(x, X + landmarks[s] * D, D), static_cast<int32_t>(s));
    } else {
        for (int c = 0; c < f && static_cast<double>(lst[c].d) <= thr; ++c)
            exact.emplace_back(exact_dist2(x, X + landmarks[lst[c].s] * D, D), lst[c].s);
    }
    KS_ASSERT(static_cast<int64_t>(exact.size()) >= k, "knn_landmarks: fewer candidates than k");
    std::partial_sort(exact.begin(), exact.begin() + k, exact.end());
    for (int j = 0; j < k; ++j) out[j] = exact[j].second;
}

float row_norm2(const float* x, int D) {
    double q = 0;
    for (int j = 0; j < D; ++j) q += static_cast<double>(x[j]) * x[j];
    return static_cast<float>(q);
}

}  // namespace

std::vector<int64_t> landmark_indices(int64_t n, int64_t downsampling, int64_t max_subset) {
    if (downsampling < 1)
        throw Error(Exit::usage, "cluster_downsampling: must be >= 1, got " + std::to_string(downsampling));
    std::vector<int64_t> idx;
    if (n <= 0) return idx;
    const int64_t n1 = (n + downsampling - 1) / downsampling;
    idx.reserve(static_cast<size_t>(n1));
    for (int64_t i = 0; i < n1; ++i) idx.push_back(i * downsampling);
    if (max_subset <= 0 || n1 <= max_subset) return idx;
    // Kilosort4's subsample_idx: remove round(linspace(0, n1 - 1, n2)) (numpy rounds half to even,
    // as nearbyint does in the default rounding mode).
    const int64_t n2 = n1 - max_subset;
    std::vector<uint8_t> drop(static_cast<size_t>(n1), 0);
    if (n2 == 1) {
        drop[0] = 1;
    } else {
        const double step = static_cast<double>(n1 - 1) / static_cast<double>(n2 - 1);
        for (int64_t i = 0; i < n2; ++i) {
            const double v = (i == n2 - 1) ? static_cast<double>(n1 - 1) : static_cast<double>(i) * step;
            drop[static_cast<size_t>(std::nearbyint(v))] = 1;
        }
    }
    std::vector<int64_t> kept;
    kept.reserve(static_cast<size_t>(max_subset) + 8);
    for (int64_t i = 0; i < n1; ++i)
        if (!drop[static_cast<size_t>(i)]) kept.push_back(idx[static_cast<size_t>(i)]);
    return kept;
}

std::vector<int32_t> knn_landmarks(const Device& dev, const float* X, int64_t n, int D,
                                   const std::vector<int64_t>& landmarks, int k) {
    const int64_t ns = static_cast<int64_t>(landmarks.size());
    if (k < 1) throw Error(Exit::usage, "cluster_neighbors: must be >= 1, got " + std::to_string(k));
    if (k > ns)
        throw Error(Exit::usage, "cluster_neighbors: " + std::to_string(k) + " neighbours asked but only " +
                                     std::to_string(ns) + " landmarks (see cluster_downsampling, max_cluster_subset)");
    if (D < 1) throw Error(Exit::usage, "features: need at least 1 feature per spike, got " + std::to_string(D));
    KS_ASSERT(ns <= INT32_MAX, "knn_landmarks: landmark count exceeds int32");
    std::vector<int32_t> kn(static_cast<size_t>(n) * k);
    if (n == 0) return kn;

    RowMatF L(ns, D);
    std::vector<float> nl(static_cast<size_t>(ns));
    double max_nl = 0;
    for (int64_t s = 0; s < ns; ++s) {
        KS_ASSERT(landmarks[s] >= 0 && landmarks[s] < n, "knn_landmarks: landmark index out of range");
        const float* x = X + landmarks[s] * D;
        double q = 0;
        for (int j = 0; j < D; ++j) {
            L(s, j) = x[j];
            q += static_cast<double>(x[j]) * x[j];
        }
        nl[s] = static_cast<float>(q);
        max_nl = std::max(max_nl, q);
    }

    // A list twice as long as k plus slack: if its last entry is still within the float error margin
    // of the k-th, the row falls back to an exact scan over every landmark.
    const int cap = 2 * k + 16;
    // |float distance - exact| <= (D + 5) u (|x|^2 + |l|^2) for any summation order; doubled for safety.
    const double margin_per_norm = (2.0 * D + 16.0) * std::ldexp(1.0, -24);
    const int64_t n_blocks = (n + kRowBlock - 1) / kRowBlock;
    const int threads = std::max(1, dev.threads());
#if KS_HAVE_CUDA
    if (dev.is_cuda() && cap <= 96) {   // longer lists (cluster_neighbors > 40) stay on the CPU
        // The GPU screens (float distances, same list logic); the host re-ranks exactly, so the
        // neighbours are the CPU's.
        constexpr int64_t kRows = 1 << 18;
        std::vector<Cand> lists;
        std::vector<int> fill;
        std::vector<float> nx;
        for (int64_t r0 = 0; r0 < n; r0 += kRows) {
            const int64_t rb = std::min(kRows, n - r0);
            lists.resize(static_cast<size_t>(rb) * cap);
            fill.assign(static_cast<size_t>(rb), 0);
            nx.resize(static_cast<size_t>(rb));
            for (int64_t r = 0; r < rb; ++r) nx[r] = row_norm2(X + (r0 + r) * D, D);
            cuda::screen_knn(X + r0 * D, rb, D, L.data(), nl.data(), ns, nx.data(), cap, lists.data(), fill.data());
#pragma omp parallel num_threads(threads)
            {
                std::vector<std::pair<double, int32_t>> exact;
#pragma omp for schedule(dynamic, 256)
                for (int64_t r = 0; r < rb; ++r) {
                    const double thr = static_cast<double>(lists[r * cap + k - 1].d) + 2.0 * margin_per_norm * (nx[r] + max_nl);
                    rerank(X, D, landmarks, r0 + r, lists.data() + r * cap, fill[r], cap, k, thr, exact,
                           kn.data() + static_cast<size_t>(r0 + r) * k);
                }
            }
        }
        return kn;
    }
#endif

#pragma omp parallel num_threads(threads)
    {
        RowMatF G(kRowBlock, kLandmarkBlock);
        std::vector<Cand> lists(static_cast<size_t>(kRowBlock) * cap);
        std::vector<int> fill(kRowBlock);
        std::vector<float> nx(kRowBlock);
        std::vector<std::pair<double, int32_t>> exact;
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t r0 = blk * kRowBlock;
            const int64_t rb = std::min(kRowBlock, n - r0);
            Eigen::Map<const RowMatF> Xb(X + r0 * D, rb, D);
            for (int64_t r = 0; r < rb; ++r) {
                nx[r] = row_norm2(X + (r0 + r) * D, D);
                fill[r] = 0;
            }
            for (int64_t s0 = 0; s0 < ns; s0 += kLandmarkBlock) {
                const int64_t sb = std::min(kLandmarkBlock, ns - s0);
                G.topLeftCorner(rb, sb).noalias() = Xb * L.middleRows(s0, sb).transpose();
                for (int64_t r = 0; r < rb; ++r) {
                    Cand* lst = lists.data() + r * cap;
                    const float* g = G.data() + r * kLandmarkBlock;
                    for (int64_t c = 0; c < sb; ++c)
                        kernels::body::knn_insert(lst, &fill[r], cap, kernels::body::knn_screen_dist(nx[r], nl[s0 + c], g[c]),
                                                  static_cast<int32_t>(s0 + c));
                }
            }
            for (int64_t r = 0; r < rb; ++r) {
                const double thr = static_cast<double>(lists[r * cap + k - 1].d) + 2.0 * margin_per_norm * (nx[r] + max_nl);
                rerank(X, D, landmarks, r0 + r, lists.data() + r * cap, fill[r], cap, k, thr, exact,
                       kn.data() + static_cast<size_t>(r0 + r) * k);
            }
        }
    }
    return kn;
}

}  // namespace ks::cluster
