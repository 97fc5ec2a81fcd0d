// Graph clustering (kilosort4-algorithm.md §5.3-§5.7): landmark thinning against numpy's values, the
// kNN against a brute-force double search (ties included), the efficient sweeps against the dense form,
// the bimodality score against numpy/scipy, and the whole pipeline on Gaussian blobs, judged by the
// adjusted Rand index against the true blobs.
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../test_support.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/kernels/graph_cluster.hpp"

namespace {

using ks::Device;
using ks::Exit;
using namespace ks::cluster;

// Gaussian blobs: n_per points around each centre (centres N(0, sep^2) per feature), unit spread.
struct Blobs {
    std::vector<float> X;
    std::vector<int> truth;
    int64_t n = 0;
};
// n_per rows of each label in random order (Fisher-Yates on our own draws), so that the landmarks,
// every k-th row, sample every blob whatever k is.
std::vector<int> shuffled_labels(int n_labels, int n_per, std::mt19937_64& rng) {
    std::vector<int> t;
    for (int c = 0; c < n_labels; ++c) t.insert(t.end(), n_per, c);
    for (size_t i = t.size(); i > 1; --i) std::swap(t[i - 1], t[rng() % i]);
    return t;
}

Blobs make_blobs(int n_blobs, int n_per, int D, double sep, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<double> centres(static_cast<size_t>(n_blobs) * D);
    for (auto& c : centres) c = sep * g(rng);
    Blobs b;
    b.n = static_cast<int64_t>(n_blobs) * n_per;
    b.truth = shuffled_labels(n_blobs, n_per, rng);
    for (int64_t i = 0; i < b.n; ++i)
        for (int d = 0; d < D; ++d) b.X.push_back(static_cast<float>(centres[b.truth[i] * D + d] + g(rng)));
    return b;
}

double comb2(double x) { return x * (x - 1) / 2; }

// Adjusted Rand index from the contingency table.
double adjusted_rand(const std::vector<int>& a, const std::vector<int>& b) {
    std::map<std::pair<int, int>, double> nij;
    std::map<int, double> ai, bj;
    for (size_t i = 0; i < a.size(); ++i) {
        nij[{a[i], b[i]}] += 1;
        ai[a[i]] += 1;
        bj[b[i]] += 1;
    }
    double sij = 0, sa = 0, sb = 0;
    for (auto& kv : nij) sij += comb2(kv.second);
    for (auto& kv : ai) sa += comb2(kv.second);
    for (auto& kv : bj) sb += comb2(kv.second);
    const double expected = sa * sb / comb2(static_cast<double>(a.size()));
    const double mx = 0.5 * (sa + sb);
    if (mx == expected) return 1.0;
    return (sij - expected) / (mx - expected);
}

int distinct(const std::vector<int>& v) {
    std::vector<int> s(v);
    std::sort(s.begin(), s.end());
    return static_cast<int>(std::unique(s.begin(), s.end()) - s.begin());
}

std::vector<int32_t> brute_knn(const std::vector<float>& X, int64_t n, int D, const std::vector<int64_t>& lm, int k) {
    std::vector<int32_t> kn;
    for (int64_t i = 0; i < n; ++i) {
        std::vector<std::pair<double, int32_t>> d;
        for (size_t s = 0; s < lm.size(); ++s) {
            double q = 0;
            for (int j = 0; j < D; ++j) {
                const double t = static_cast<double>(X[i * D + j]) - static_cast<double>(X[lm[s] * D + j]);
                q += t * t;
            }
            d.emplace_back(q, static_cast<int32_t>(s));
        }
        std::sort(d.begin(), d.end());
        for (int j = 0; j < k; ++j) kn.push_back(d[j].second);
    }
    return kn;
}

// ---- landmarks ----

TEST(GraphLandmarks, MatchesNumpyThinning) {
    // Expected values from Kilosort4's rule run in numpy (round(linspace(0, n1-1, n1-max)) removed).
    EXPECT_EQ(landmark_indices(6, 1, 3), (std::vector<int64_t>{1, 3, 4}));
    EXPECT_EQ(landmark_indices(12, 2, 3), (std::vector<int64_t>{2, 6, 8}));
    EXPECT_EQ(landmark_indices(23, 1, 9), (std::vector<int64_t>{1, 4, 6, 9, 11, 13, 16, 18, 21}));
    const auto a = landmark_indices(1000, 1, 600);
    ASSERT_EQ(a.size(), 600u);
    EXPECT_EQ(std::vector<int64_t>(a.begin(), a.begin() + 12),
              (std::vector<int64_t>{1, 2, 4, 6, 7, 9, 11, 12, 14, 16, 17, 19}));
    const auto b = landmark_indices(1000000, 20, 25000);
    ASSERT_EQ(b.size(), 25000u);
    EXPECT_EQ(b[0], 20);
    EXPECT_EQ(b[1], 60);
    EXPECT_EQ(b.back(), 999960);
}

TEST(GraphLandmarks, StrideAndNoCap) {
    EXPECT_EQ(landmark_indices(101, 20, 25000), (std::vector<int64_t>{0, 20, 40, 60, 80, 100}));
    EXPECT_EQ(landmark_indices(5, 1, 0).size(), 5u);
    EXPECT_EQ(landmark_indices(100000, 1, -1).size(), 100000u);
    EXPECT_EQ(landmark_indices(100, 1, 100).size(), 100u);  // at the cap: nothing removed
    EXPECT_TRUE(landmark_indices(0, 3, 10).empty());
    std::string msg;
    EXPECT_EQ(ks::test::exit_code_of([] { landmark_indices(10, 0, 5); }, &msg), Exit::usage);
    EXPECT_NE(msg.find("cluster_downsampling"), std::string::npos) << msg;
}

// ---- kNN ----

TEST(GraphKnn, MatchesBruteForceRandom) {
    for (int D : {1, 7, 33}) {
        std::mt19937_64 rng(11 + D);
        std::normal_distribution<float> g(0.f, 1.f);
        const int64_t n = 1300;  // not a multiple of the row block
        std::vector<float> X(static_cast<size_t>(n) * D);
        for (auto& x : X) x = g(rng);
        const auto lm = landmark_indices(n, 3, 0);
        for (int k : {1, 5, 10}) {
            const auto kn = knn_landmarks(Device::open("cpu", 1), X.data(), n, D, lm, k);
            EXPECT_EQ(kn, brute_knn(X, n, D, lm, k)) << "D=" << D << " k=" << k << " seed=" << 11 + D;
            for (size_t s = 0; s < lm.size(); ++s) EXPECT_EQ(kn[lm[s] * k], static_cast<int32_t>(s));
        }
    }
}

TEST(GraphKnn, CudaScreeningGivesTheCpuNeighbours) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    for (int D : {3, 60, 150}) {
        std::mt19937_64 rng(21 + D);
        std::normal_distribution<float> g(0.f, 1.f);
        const int64_t n = 5000;
        std::vector<float> X(static_cast<size_t>(n) * D);
        for (auto& x : X) x = std::round(g(rng) * 4.f) / 4.f;   // many ties
        const auto lm = landmark_indices(n, 2, 1500);
        for (int k : {1, 10, 40}) {
            EXPECT_EQ(knn_landmarks(Device::open("cuda", 2), X.data(), n, D, lm, k),
                      knn_landmarks(Device::open("cpu", 2), X.data(), n, D, lm, k))
                << "D=" << D << " k=" << k;
        }
    }
}

TEST(GraphKnn, TiesGoToLowerLandmark) {
    // Integer grid points (many equal distances) plus exact duplicate rows, and a block of identical
    // rows where every distance ties.
    std::mt19937_64 rng(3);
    std::uniform_int_distribution<int> u(-2, 2);
    const int D = 4;
    const int64_t n = 900;
    std::vector<float> X(static_cast<size_t>(n) * D);
    for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < D; ++d) X[i * D + d] = i >= 600 ? 7.f : static_cast<float>(u(rng));
    const auto lm = landmark_indices(n, 2, 0);
    for (int k : {3, 10, 40}) {
        for (int threads : {1, 3}) {
            const auto kn = knn_landmarks(Device::open("cpu", threads), X.data(), n, D, lm, k);
            EXPECT_EQ(kn, brute_knn(X, n, D, lm, k)) << "k=" << k << " threads=" << threads;
        }
    }
}

TEST(GraphKnn, LargeOffsetSmallSpread) {
    // Far from the origin, |x|^2 + |l|^2 - 2 x.l cancels badly in float: the double refinement decides.
    std::mt19937_64 rng(5);
    std::normal_distribution<float> g(0.f, 0.01f);
    const int D = 20;
    const int64_t n = 800;
    std::vector<float> X(static_cast<size_t>(n) * D);
    for (auto& x : X) x = 1000.f + g(rng);
    const auto lm = landmark_indices(n, 1, 0);
    EXPECT_EQ(knn_landmarks(Device::open("cpu", 2), X.data(), n, D, lm, 6), brute_knn(X, n, D, lm, 6));
}

TEST(GraphKnn, BadArguments) {
    std::vector<float> X(10 * 3, 1.f);
    const auto lm = landmark_indices(10, 5, 0);  // 2 landmarks
    std::string msg;
    EXPECT_EQ(ks::test::exit_code_of([&] { knn_landmarks(Device::open("cpu", 1), X.data(), 10, 3, lm, 3); }, &msg),
              Exit::usage);
    EXPECT_NE(msg.find("cluster_neighbors"), std::string::npos) << msg;
    EXPECT_EQ(ks::test::exit_code_of([&] { knn_landmarks(Device::open("cpu", 1), X.data(), 10, 3, lm, 0); }, &msg),
              Exit::usage);
}

// ---- seeding ----

TEST(GraphSeeding, PureLabelsDeterministicThreadIndependent) {
    // Four blobs on orthogonal axes at radius 50: a candidate from one blob explains nothing of the
    // others, so once every blob has a centre no label mixes blobs.
    const int D = 6, n_per = 400;
    std::mt19937_64 rng(9);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> X;
    std::vector<int> truth;
    for (int i = 0; i < n_per; ++i)
        for (int c = 0; c < 4; ++c) {
            for (int d = 0; d < D; ++d) X.push_back((d == c ? 50.f : 0.f) + g(rng));
            truth.push_back(c);
        }
    const int64_t n = 4 * n_per;
    const auto a = kmeanspp_init(X.data(), n, D, 20, 10, 42);
    EXPECT_EQ(a, kmeanspp_init(X.data(), n, D, 20, 10, 42));
    EXPECT_EQ(a, kmeanspp_init(Device::open("cpu", 3), X.data(), n, D, 20, 10, 42));
    std::map<int, int> blob_of;
    for (int64_t i = 0; i < n; ++i) {
        ASSERT_GE(a[i], 0);
        ASSERT_LT(a[i], 20);
        auto it = blob_of.emplace(a[i], truth[i]).first;
        EXPECT_EQ(it->second, truth[i]) << "label " << a[i] << " mixes blobs";
    }
    EXPECT_GE(distinct(a), 4);
    EXPECT_NE(a, kmeanspp_init(X.data(), n, D, 20, 10, 43));  // another seed draws other candidates
}

// §5.4 written out densely in double: every spike scored against every candidate each round, with
// the documented draw (Efraimidis-Spirakis keys log(u)/w from one mt19937_64, u = (bits53 + 0.5) 2^-53).
std::vector<int> dense_seeding(const std::vector<float>& X, int64_t n, int D, int rounds, int ncand, uint64_t seed) {
    std::vector<int> lab(n, 0);
    std::vector<double> v(n, 0), e(n, 0);
    for (int64_t i = 0; i < n; ++i)
        for (int d = 0; d < D; ++d) v[i] += static_cast<double>(X[i * D + d]) * X[i * D + d];
    std::mt19937_64 rng(seed);
    auto dot = [&](int64_t a, int64_t b) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += static_cast<double>(X[a * D + d]) * X[b * D + d];
        return s;
    };
    for (int j = 0; j < rounds; ++j) {
        std::vector<std::pair<double, int64_t>> keys;
        for (int64_t i = 0; i < n; ++i) {
            const double w = v[i] - e[i];
            if (!(w > 0)) continue;
            const double u = (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
            keys.emplace_back(std::log(u) / w, i);
        }
        if (keys.empty()) break;
        std::sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        const int nc = std::min<int>(ncand, static_cast<int>(keys.size()));
        int best = 0;
        double best_sum = -1;
        for (int c = 0; c < nc; ++c) {
            double sum = 0;
            for (int64_t i = 0; i < n; ++i) sum += std::max(0.0, 2 * dot(i, keys[c].second) - v[keys[c].second] - e[i]);
            if (sum > best_sum) best_sum = sum, best = c;
        }
        const int64_t cr = keys[best].second;
        for (int64_t i = 0; i < n; ++i) {
            const double g = 2 * dot(i, cr) - v[cr];
            if (g - e[i] > 0) lab[i] = j, e[i] = g;
        }
    }
    return lab;
}

TEST(GraphSeeding, MatchesDenseDouble) {
    // Overlapping blobs: the pruning skips some candidate blocks, never a positive gain.
    for (uint64_t seed : {7u, 8u}) {
        const Blobs b = make_blobs(4, 400, 8, 2.0, seed);
        const auto want = dense_seeding(b.X, b.n, 8, 40, 15, seed);
        EXPECT_EQ(kmeanspp_init(b.X.data(), b.n, 8, 40, 15, seed), want) << "seed " << seed;
        EXPECT_EQ(kmeanspp_init(Device::open("cpu", 3), b.X.data(), b.n, 8, 40, 15, seed), want) << "seed " << seed;
        EXPECT_GE(distinct(want), 20);
    }
}

TEST(GraphSeeding, ZeroDataKeepsLabelZero) {
    std::vector<float> X(50 * 3, 0.f);  // no variance to explain: no candidate has weight
    const auto a = kmeanspp_init(X.data(), 50, 3, 10, 5, 1);
    EXPECT_EQ(a, std::vector<int>(50, 0));
}

// ---- sweeps ----

// The dense form of §5.5 (an n x labels score array per step, first arg-max), written out plainly.
std::pair<std::vector<int>, std::vector<int>> dense_sweeps(const BipartiteGraph& g, std::vector<int> ci, int nl,
                                                           int sweeps) {
    const double coef = 1.0 / g.m;
    std::vector<int> cs(g.n_landmarks, 0);
    auto landmark_step = [&](int L) {
        std::vector<double> n_c(L, 0);
        for (int c : ci) n_c[c] += 1;
        std::vector<std::vector<double>> cnt(g.n_landmarks, std::vector<double>(L, 0));
        for (int64_t i = 0; i < g.n; ++i)
            for (int j = 0; j < g.k; ++j) cnt[g.kn[i * g.k + j]][ci[i]] += 1;
        for (int64_t s = 0; s < g.n_landmarks; ++s) {
            int best = 0;
            double bs = -1e300;
            for (int c = 0; c < L; ++c) {
                const double v = cnt[s][c] - coef * g.k_landmark[s] * n_c[c];
                if (v > bs) bs = v, best = c;
            }
            cs[s] = best;
        }
    };
    for (int t = 0; t < sweeps; ++t) {
        landmark_step(nl);
        std::vector<double> L_c(nl, 0);
        for (int c : cs) L_c[c] += 1;
        for (int64_t i = 0; i < g.n; ++i) {
            std::vector<double> cnt(nl, 0);
            for (int j = 0; j < g.k; ++j) cnt[cs[g.kn[i * g.k + j]]] += 1;
            int best = 0;
            double bs = -1e300;
            for (int c = 0; c < nl; ++c) {
                const double v = cnt[c] - coef * g.k_spike[i] * L_c[c];
                if (v > bs) bs = v, best = c;
            }
            ci[i] = best;
        }
    }
    std::vector<int> sorted(ci);
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (int& c : ci) c = static_cast<int>(std::lower_bound(sorted.begin(), sorted.end(), c) - sorted.begin());
    landmark_step(static_cast<int>(sorted.size()));
    return {ci, cs};
}

TEST(GraphSweeps, EfficientEqualsDense) {
    for (uint64_t seed : {1u, 2u, 3u}) {
        std::mt19937_64 rng(seed);
        const int64_t n = 400;
        const int k = 6;
        const auto lm = landmark_indices(n, 5, 0);
        const int ns = static_cast<int>(lm.size());
        // Random neighbours from a few "communities" so the sweeps have structure to find.
        std::vector<int32_t> kn;
        for (int64_t i = 0; i < n; ++i) {
            std::vector<int32_t> row;
            const int comm = static_cast<int>(i % 4);
            while (static_cast<int>(row.size()) < k) {
                int32_t s = static_cast<int32_t>(rng() % ns);
                if (rng() % 5 != 0) s = static_cast<int32_t>((s / 4) * 4 + comm) % ns;
                if (std::find(row.begin(), row.end(), s) == row.end()) row.push_back(s);
            }
            kn.insert(kn.end(), row.begin(), row.end());
        }
        const BipartiteGraph g = make_bipartite(kn, n, k, lm);
        std::vector<int> init(n);
        for (auto& c : init) c = static_cast<int>(rng() % 12);
        const auto dense = dense_sweeps(g, init, 30, 15);
        for (int threads : {1, 2}) {
            const SweepResult r = modularity_sweeps(Device::open("cpu", threads), g, init, 30, 15);
            EXPECT_EQ(r.spike_labels, dense.first) << "seed " << seed;
            EXPECT_EQ(r.landmark_labels, dense.second) << "seed " << seed;
            EXPECT_EQ(r.n_labels, distinct(dense.first));
        }
    }
}

TEST(GraphSweeps, DegreesDropSelfLinks) {
    // 4 spikes, landmarks {0, 2}, k = 2: every row links to both landmarks; rows 0 and 2 hold a self-link.
    const std::vector<int32_t> kn = {0, 1, 0, 1, 1, 0, 1, 0};
    const BipartiteGraph g = make_bipartite(kn, 4, 2, {0, 2});
    EXPECT_EQ(g.m, 6.0);
    EXPECT_EQ(g.k_spike, (std::vector<double>{1, 2, 1, 2}));
    EXPECT_EQ(g.k_landmark, (std::vector<double>{3, 3}));
    EXPECT_EQ(g.is_self, (std::vector<uint8_t>{1, 0, 0, 0, 1, 0, 0, 0}));
}

// ---- merge tree ----

TEST(GraphTree, FirstMergeIsLargestRatio) {
    const Blobs b = make_blobs(3, 300, 5, 1.5, 21);  // overlapping: ratios between all labels
    const auto lm = landmark_indices(b.n, 2, 0);
    const BipartiteGraph g = make_bipartite(knn_landmarks(Device::open("cpu", 1), b.X.data(), b.n, 5, lm, 8), b.n, 8, lm);
    std::vector<int> labels(b.n);
    for (int64_t i = 0; i < b.n; ++i) labels[i] = static_cast<int>((i / 7) % 6);
    std::vector<int> lml(lm.size());
    for (size_t s = 0; s < lm.size(); ++s) lml[s] = labels[lm[s]];
    const MergeTree t = merge_tree(g, labels, lml, 6);
    // The symmetrised ratio matrix written out directly from its definition.
    std::vector<std::vector<double>> cc(6, std::vector<double>(6, 0)), cn(6, std::vector<double>(6, 0));
    std::vector<double> ka(6, 0), kb(6, 0);
    for (int64_t i = 0; i < b.n; ++i) {
        ka[labels[i]] += g.k_spike[i];
        for (int j = 0; j < 8; ++j)
            if (!g.is_self[i * 8 + j]) cc[labels[i]][lml[g.kn[i * 8 + j]]] += 1;
    }
    for (size_t s = 0; s < lm.size(); ++s) kb[lml[s]] += g.k_landmark[s];
    double best = -1;
    int by = -1, bx = -1;
    for (int a = 0; a < 6; ++a)
        for (int c = 0; c < 6; ++c) {
            if (a == c) continue;
            const double r = (cc[a][c] + cc[c][a]) / (0.002 + (ka[a] * kb[c] + ka[c] * kb[a]) / g.m);
            if (r > best) best = r, by = a, bx = c;
        }
    ASSERT_EQ(t.child_x.size(), 5u);
    EXPECT_NEAR(t.lambda[0], best, 1e-12 * best);
    EXPECT_EQ(t.child_y[0], by);
    EXPECT_EQ(t.child_x[0], bx);
    EXPECT_EQ(t.size_leaves.back(), 6.0);
    std::vector<int> root = t.leaves.back();
    std::sort(root.begin(), root.end());
    EXPECT_EQ(root, (std::vector<int>{0, 1, 2, 3, 4, 5}));
    for (int m = 0; m < 5; ++m) {  // children exist before their parent
        EXPECT_LT(t.child_x[m], 6 + m);
        EXPECT_LT(t.child_y[m], 6 + m);
    }
}

// ---- bimodality ----

double numpy_score(const std::vector<double>& p) {
    ks::test::TempDir dir("ks_graph");
    {
        std::ofstream f(dir / "p.txt");
        f.precision(17);
        for (double v : p) f << v << "\n";
    }
    const std::string cmd = std::string(KS_PYTHON) +
                            " -c \"import numpy as np; from scipy.ndimage import gaussian_filter1d as g; "
                            "p=np.loadtxt('" + (dir / "p.txt") + "'); "
                            "h,_=np.histogram(p,np.linspace(-2,2,400)); h=g(h.astype('float64'),4); "
                            "i=np.argmin(h[175:225]); x=h[175+i]; "
                            "print(repr(1-max(x/np.max(h[:i+175]),x/np.max(h[i+175:]))))\"";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) return -100;
    char buf[128] = {0};
    const bool ok = fgets(buf, sizeof buf, pipe) != nullptr;
    pclose(pipe);
    return ok ? std::stod(buf) : -100;
}

TEST(GraphBimodality, ProjectionScoreMatchesScipy) {
    if (std::system(KS_PYTHON " -c 'import numpy, scipy.ndimage' >/dev/null 2>&1") != 0)
        GTEST_SKIP() << KS_PYTHON << " has no numpy or scipy";
    std::mt19937_64 rng(4);
    std::normal_distribution<double> g(0.0, 1.0);
    std::vector<std::vector<double>> cases(3);
    for (int i = 0; i < 3000; ++i) cases[0].push_back(0.4 * g(rng));                      // unimodal
    for (int i = 0; i < 3000; ++i) cases[1].push_back((i % 2 ? 0.9 : -0.9) + 0.3 * g(rng)); // two modes
    for (int i = 0; i < 3000; ++i) cases[2].push_back((i % 3 ? 0.6 : -0.7) + 0.5 * g(rng)); // overlapping
    cases[2].push_back(2.0);  // the last edge is inside the last bin
    cases[2].push_back(-2.5); // outside: not counted
    for (size_t c = 0; c < cases.size(); ++c) {
        const double want = numpy_score(cases[c]);
        ASSERT_GT(want, -50) << "python/numpy/scipy not runnable";
        EXPECT_NEAR(bimodality_score_of_projection(cases[c]), want, 1e-9) << "case " << c;
    }
    EXPECT_LT(bimodality_score_of_projection(cases[0]), 0.2);
    EXPECT_GT(bimodality_score_of_projection(cases[1]), 0.95);
}

TEST(GraphBimodality, FeatureScore) {
    const int D = 10;
    const Blobs far = make_blobs(2, 1500, D, 10.0, 8);
    std::vector<int64_t> a, b;
    for (int64_t i = 0; i < far.n; ++i) (far.truth[i] == 0 ? a : b).push_back(i);
    EXPECT_GT(bimodality_score(far.X.data(), D, a, b), 0.95);

    // One Gaussian cut by a hyperplane: the projection of a Gaussian is unimodal.
    const Blobs one = make_blobs(1, 4000, D, 0.0, 9);
    a.clear(), b.clear();
    for (int64_t i = 0; i < one.n; ++i) (one.X[i * D] > 0.3f ? a : b).push_back(i);
    EXPECT_LT(bimodality_score(one.X.data(), D, a, b), 0.4);
}

// ---- the whole pipeline ----

GraphClusterParams small_params() {
    GraphClusterParams p;
    p.cluster_downsampling = 2;  // keeps the tests quick; the method is the same
    return p;
}

TEST(GraphCluster, FiveBlobsRecovered) {
    const int D = 30;
    const Blobs b = make_blobs(5, 2000, D, 8.0, 1);
    const auto dev1 = Device::open("cpu", 1);
    const GraphClusterResult r = graph_cluster(dev1, b.X.data(), b.n, D, small_params());
    EXPECT_EQ(r.n_clusters, 5);
    EXPECT_EQ(distinct(r.labels), r.n_clusters);
    EXPECT_GE(adjusted_rand(r.labels, b.truth), 0.99);
    EXPECT_EQ(r.n_landmarks, 5000);
    EXPECT_GE(r.n_initial, 5);
    EXPECT_GE(r.n_after_sweeps, 5);
    EXPECT_EQ(r.n_splits_lambda + r.n_splits_bimodal, 4);
    for (int l : r.labels) ASSERT_TRUE(l >= 0 && l < r.n_clusters);

    // Determinism: same seed and threads 1 vs 2 give identical labels; another seed still finds the blobs.
    EXPECT_EQ(graph_cluster(Device::open("cpu", 2), b.X.data(), b.n, D, small_params()).labels, r.labels);
    GraphClusterParams p2 = small_params();
    p2.seed = 6;
    const GraphClusterResult r2 = graph_cluster(dev1, b.X.data(), b.n, D, p2);
    EXPECT_EQ(r2.n_clusters, 5);
    EXPECT_GE(adjusted_rand(r2.labels, b.truth), 0.99);
}

TEST(GraphCluster, DefaultParamsFiveBlobs) {
    const int D = 30;
    const Blobs b = make_blobs(5, 2000, D, 8.0, 2);
    const GraphClusterResult r = graph_cluster(Device::open("cpu", 2), b.X.data(), b.n, D, GraphClusterParams{});
    EXPECT_EQ(r.n_landmarks, 10000);
    EXPECT_EQ(r.n_clusters, 5);
    EXPECT_GE(adjusted_rand(r.labels, b.truth), 0.99);
}

TEST(GraphCluster, OneBlobStaysWhole) {
    const int D = 30;
    const Blobs b = make_blobs(1, 6000, D, 0.0, 3);
    const GraphClusterResult r = graph_cluster(Device::open("cpu", 2), b.X.data(), b.n, D, small_params());
    EXPECT_EQ(r.n_clusters, 1);
    EXPECT_EQ(r.labels, std::vector<int>(b.n, 0));
    if (r.n_after_sweeps > 1) {
        EXPECT_EQ(r.n_kept_whole, 1);  // the root fails the bimodality test
    }
}

TEST(GraphCluster, TwoOverlappingBlobs) {
    // Centres 7 sd apart along one axis in D = 30: the kNN graph links the blobs a little, the
    // projection's histogram has a clear valley.
    const int D = 30;
    std::mt19937_64 rng(12);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> X;
    const std::vector<int> truth = shuffled_labels(2, 3000, rng);
    for (int i = 0; i < 6000; ++i)
        for (int d = 0; d < D; ++d) X.push_back((d == 0 ? 7.f * truth[i] : 0.f) + g(rng));
    const GraphClusterResult r = graph_cluster(Device::open("cpu", 2), X.data(), 6000, D, small_params());
    EXPECT_EQ(r.n_clusters, 2);
    EXPECT_GE(adjusted_rand(r.labels, truth), 0.9);
}

TEST(GraphCluster, TooFewSpikesIsOneCluster) {
    const Blobs b = make_blobs(3, 300, 4, 10.0, 4);  // 900 < min_spikes 1000
    const GraphClusterResult r = graph_cluster(Device::open("cpu", 1), b.X.data(), b.n, 4, GraphClusterParams{});
    EXPECT_EQ(r.n_clusters, 1);
    EXPECT_EQ(r.labels, std::vector<int>(b.n, 0));
    EXPECT_EQ(r.n_landmarks, 0);  // nothing else computed
    const GraphClusterResult e = graph_cluster(Device::open("cpu", 1), nullptr, 0, 4, GraphClusterParams{});
    EXPECT_EQ(e.n_clusters, 0);
    EXPECT_TRUE(e.labels.empty());
}

TEST(GraphCluster, VetoKeepsNodeWhole) {
    const int D = 30;
    const Blobs b = make_blobs(5, 2000, D, 8.0, 5);
    GraphClusterParams p = small_params();
    p.split_lambda = -1;  // never split on lambda, so the veto is asked at the root
    int calls = 0;
    size_t root_total = 0;
    bool sorted_disjoint = true;
    const KeepWhole veto = [&](const std::vector<int64_t>& a, const std::vector<int64_t>& c) {
        if (calls++ == 0) root_total = a.size() + c.size();
        sorted_disjoint = sorted_disjoint && std::is_sorted(a.begin(), a.end()) && std::is_sorted(c.begin(), c.end());
        return true;
    };
    const GraphClusterResult r = graph_cluster(Device::open("cpu", 1), b.X.data(), b.n, D, p, veto);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(root_total, static_cast<size_t>(b.n));
    EXPECT_TRUE(sorted_disjoint);
    EXPECT_EQ(r.n_vetoed, 1);
    EXPECT_EQ(r.n_clusters, 1);

    // A veto that never fires changes nothing: bimodality alone separates the blobs.
    const KeepWhole never = [](const std::vector<int64_t>&, const std::vector<int64_t>&) { return false; };
    const GraphClusterResult r2 = graph_cluster(Device::open("cpu", 1), b.X.data(), b.n, D, p, never);
    EXPECT_EQ(r2.n_vetoed, 0);
    EXPECT_EQ(r2.n_clusters, 5);
    EXPECT_EQ(r2.n_splits_bimodal, 4);
    EXPECT_GE(adjusted_rand(r2.labels, b.truth), 0.99);
}

TEST(GraphCluster, BadParamsNameTheSetting) {
    const Blobs b = make_blobs(2, 1000, 3, 5.0, 6);
    const auto dev = Device::open("cpu", 1);
    auto code_and_msg = [&](GraphClusterParams p, std::string* msg) {
        return ks::test::exit_code_of([&] { graph_cluster(dev, b.X.data(), b.n, 3, p); }, msg);
    };
    std::string msg;
    GraphClusterParams p;
    p.cluster_neighbors = 0;
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("cluster_neighbors"), std::string::npos) << msg;
    p = GraphClusterParams{};
    p.cluster_downsampling = 0;
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("cluster_downsampling"), std::string::npos) << msg;
    p = GraphClusterParams{};
    p.max_cluster_subset = 5;
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("max_cluster_subset"), std::string::npos) << msg;
    p = GraphClusterParams{};
    p.cluster_downsampling = 500;  // 4 landmarks for 10 neighbours
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("cluster_neighbors"), std::string::npos) << msg;
    p = GraphClusterParams{};
    p.n_init = 0;
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("n_init"), std::string::npos) << msg;
    p = GraphClusterParams{};
    p.n_sweeps = -1;
    EXPECT_EQ(code_and_msg(p, &msg), Exit::usage);
    EXPECT_NE(msg.find("n_sweeps"), std::string::npos) << msg;
}

}  // namespace
