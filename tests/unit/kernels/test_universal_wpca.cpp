// Temporal templates from data (§4.1): clip collection around isolated single-channel peaks, wPCA
// recovering a known basis, and k-means wTEMP recovering known shapes, deterministically.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <tuple>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/universal_templates.hpp"

namespace {

constexpr int kNt = 61;

// Three orthonormal smooth shapes (Gram-Schmidt of Gaussians and a Gaussian derivative).
std::vector<std::vector<double>> known_basis() {
    std::vector<std::vector<double>> b(3, std::vector<double>(kNt));
    for (int t = 0; t < kNt; ++t) {
        b[0][t] = -std::exp(-0.5 * std::pow((t - 20) / 2.0, 2));
        b[1][t] = (t - 20) * std::exp(-0.5 * std::pow((t - 20) / 3.0, 2));
        b[2][t] = std::exp(-0.5 * std::pow((t - 32) / 6.0, 2));
    }
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < i; ++j) {
            double d = 0;
            for (int t = 0; t < kNt; ++t) d += b[i][t] * b[j][t];
            for (int t = 0; t < kNt; ++t) b[i][t] -= d * b[j][t];
        }
        double n2 = 0;
        for (double v : b[i]) n2 += v * v;
        for (double& v : b[i]) v /= std::sqrt(n2);
    }
    return b;
}

double dot(const float* a, const std::vector<double>& b) {
    double d = 0;
    for (int t = 0; t < kNt; ++t) d += a[t] * b[t];
    return d;
}

TEST(UniversalWpca, RecoversKnownBasis) {
    const auto b = known_basis();
    std::mt19937 rng(3);
    std::normal_distribution<double> g(0, 1);
    std::vector<float> clips;
    for (int i = 0; i < 3000; ++i) {
        const double c0 = 3 * g(rng), c1 = 2 * g(rng), c2 = 1 * g(rng);
        std::vector<double> v(kNt);
        double n2 = 0;
        for (int t = 0; t < kNt; ++t) {
            v[t] = c0 * b[0][t] + c1 * b[1][t] + c2 * b[2][t];
            n2 += v[t] * v[t];
        }
        for (int t = 0; t < kNt; ++t) clips.push_back(static_cast<float>(v[t] / std::sqrt(n2)));
    }
    const auto pcs = ks::kernels::universal_wpca(clips, kNt, 4);
    ASSERT_EQ(pcs.size(), 4u * kNt);
    for (int p = 0; p < 3; ++p) {
        // Each of the first three PCs lies in the span of the basis (projection norm 1) ...
        double in_span = 0;
        for (int j = 0; j < 3; ++j) in_span += std::pow(dot(&pcs[p * kNt], b[j]), 2);
        EXPECT_NEAR(in_span, 1.0, 1e-4) << "PC " << p;
        // ... and the first one is the dominant direction.
    }
    EXPECT_GT(std::fabs(dot(&pcs[0], b[0])), 0.95);
    // Orthonormal rows; the 4th PC (no variance left) is orthogonal to the span.
    for (int p = 0; p < 4; ++p)
        for (int q = 0; q < 4; ++q) {
            double d = 0;
            for (int t = 0; t < kNt; ++t) d += static_cast<double>(pcs[p * kNt + t]) * pcs[q * kNt + t];
            EXPECT_NEAR(d, p == q ? 1.0 : 0.0, 1e-5);
        }
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(dot(&pcs[3 * kNt], b[j]), 0.0, 1e-3);
    // Sign convention: each row's largest-|value| entry is negative.
    for (int p = 0; p < 4; ++p) {
        int imax = 0;
        for (int t = 1; t < kNt; ++t)
            if (std::fabs(pcs[p * kNt + t]) > std::fabs(pcs[p * kNt + imax])) imax = t;
        EXPECT_LT(pcs[p * kNt + imax], 0.f);
    }
}

TEST(UniversalWtemp, RecoversShapesBothPolarities) {
    const auto b = known_basis();
    std::mt19937 rng(5);
    std::normal_distribution<double> g(0, 0.03);
    std::vector<float> clips;
    for (int i = 0; i < 1200; ++i) {
        const int shape = i % 3;
        const double sign = (i / 3) % 2 ? 1.0 : -1.0;
        std::vector<double> v(kNt);
        double n2 = 0;
        for (int t = 0; t < kNt; ++t) {
            v[t] = sign * b[shape][t] + g(rng);
            n2 += v[t] * v[t];
        }
        for (int t = 0; t < kNt; ++t) clips.push_back(static_cast<float>(v[t] / std::sqrt(n2)));
    }
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto w1 = ks::kernels::universal_wtemp(clips, kNt, 6, 1);
    omp_set_num_threads(2);
    const auto w2 = ks::kernels::universal_wtemp(clips, kNt, 6, 1);
    omp_set_num_threads(saved);
    EXPECT_EQ(w1, w2);
    // Each centre matches one of the six signed shapes, and all six are found.
    std::vector<int> seen(6, 0);
    for (int c = 0; c < 6; ++c) {
        double n2 = 0;
        for (int t = 0; t < kNt; ++t) n2 += static_cast<double>(w1[c * kNt + t]) * w1[c * kNt + t];
        EXPECT_NEAR(n2, 1.0, 1e-5);
        int match = -1;
        for (int s = 0; s < 3; ++s) {
            const double d = dot(&w1[c * kNt], b[s]);
            if (d > 0.99) match = 2 * s;
            if (d < -0.99) match = 2 * s + 1;
        }
        ASSERT_GE(match, 0) << "centre " << c << " matches no shape";
        ++seen[match];
    }
    for (int s = 0; s < 6; ++s) EXPECT_EQ(seen[s], 1) << "signed shape " << s;
}

TEST(UniversalWtemp, TooFewClipsIsUnsortable) {
    std::vector<float> clips(3 * kNt, 0.1f);
    try {
        ks::kernels::universal_wtemp(clips, kNt, 6);
        ADD_FAILURE() << "accepted 3 clips for 6 templates";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::unsortable);
    }
    EXPECT_THROW(ks::kernels::universal_wpca(clips, kNt, 6), ks::Error);
}

// A small block: noise far below threshold, plus narrow single-channel peaks.
std::vector<float> snippet_block(int C, int64_t n, const std::vector<std::tuple<int, int64_t, float>>& peaks) {
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.f, 0.3f);
    std::vector<float> x(static_cast<size_t>(C) * n);
    for (auto& v : x) v = g(rng);
    for (const auto& [c, t, a] : peaks)
        for (int d = -3; d <= 3; ++d) x[c * n + t + d] += a * std::exp(-0.5f * d * d);
    return x;
}

TEST(UniversalSnippets, IsolatedPeaksOnly) {
    const int C = 12;
    const int64_t n = 2000;
    // Kept: (3, 500) and (9, 1200). Not isolated: (5, 1500) and (7, 1520). Too near the start: (1, 40).
    const auto x = snippet_block(C, n, {{3, 500, -10.f}, {9, 1200, 8.f}, {5, 1500, -9.f}, {7, 1520, 9.f}, {1, 40, -12.f}});
    ks::kernels::SnippetCollector col(ks::kernels::SnippetSettings{});
    ASSERT_TRUE(col.add_batch(x.data(), C, n, n));
    ASSERT_EQ(col.n_clips(), 2);
    const int64_t expect_t[2] = {500, 1200};
    const int expect_c[2] = {3, 9};
    for (int i = 0; i < 2; ++i) {
        double n2 = 0;
        for (int t = 0; t < kNt; ++t) n2 += std::pow(static_cast<double>(x[expect_c[i] * n + expect_t[i] - 20 + t]), 2);
        for (int t = 0; t < kNt; ++t)
            EXPECT_NEAR(col.clips()[i * kNt + t], x[expect_c[i] * n + expect_t[i] - 20 + t] / std::sqrt(n2), 1e-6);
    }
    EXPECT_LT(col.clips()[20], 0.f);         // the trough of the first clip sits at nt0min
    EXPECT_GT(col.clips()[kNt + 20], 0.f);   // both polarities are kept
    // A batch that would overflow max_clips adds nothing.
    ks::kernels::SnippetSettings s;
    s.max_clips = 3;
    ks::kernels::SnippetCollector small(s);
    ASSERT_TRUE(small.add_batch(x.data(), C, n, n));
    EXPECT_FALSE(small.add_batch(x.data(), C, n, n));
    EXPECT_EQ(small.n_clips(), 2);
}

TEST(UniversalSnippets, BadSettings) {
    ks::kernels::SnippetSettings s;
    s.nt = 60;
    EXPECT_THROW(ks::kernels::SnippetCollector{s}, ks::Error);
    s = {};
    s.nt0min = 61;
    EXPECT_THROW(ks::kernels::SnippetCollector{s}, ks::Error);
}

}  // namespace
