// The building blocks of ks-match-sessions against hand-computed or closed-form answers.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "ks/session_match.hpp"

using ks::sessions::Edge;

TEST(Hdbscan, TwoTightPairsAndANoisePoint) {
    // Points 0-1 and 2-3 are close pairs, 4 is far from everything.
    std::vector<Edge> e = {{0, 1, 0.1}, {2, 3, 0.12}, {1, 2, 0.9}, {0, 3, 0.95}, {3, 4, 3.0}};
    const auto l = ks::sessions::hdbscan(5, e, 5);
    EXPECT_EQ(l[0], l[1]);
    EXPECT_EQ(l[2], l[3]);
    EXPECT_NE(l[0], l[2]);
    EXPECT_EQ(l[0], 0);   // numbered by smallest point
    EXPECT_EQ(l[2], 1);
    EXPECT_EQ(l[4], -1);
}

TEST(Hdbscan, MaxClusterSizeKeepsClustersSmall) {
    // Three points close together: one cluster of 3 when allowed, else no cluster of 3.
    std::vector<Edge> e = {{0, 1, 0.1}, {1, 2, 0.11}, {0, 2, 0.12}, {2, 3, 5.0}, {3, 4, 0.1}};
    auto l = ks::sessions::hdbscan(5, e, 3);
    EXPECT_EQ(l[0], l[1]);
    EXPECT_EQ(l[1], l[2]);
    EXPECT_EQ(l[3], l[4]);
    EXPECT_NE(l[0], l[3]);
    l = ks::sessions::hdbscan(5, e, 2);
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 5; ++j)
            if (l[i] >= 0 && l[i] == l[j]) EXPECT_TRUE(i == j || (i < 3) == (j < 3)) << i << " " << j;
    int in_first = 0;
    for (int i = 0; i < 3; ++i) in_first += l[i] >= 0 && l[i] == l[(i + 1) % 3];
    EXPECT_LE(in_first, 1);   // at most one pair of the three shares a cluster
    EXPECT_EQ(l[3], l[4]);
}

TEST(Hdbscan, DisconnectedGraphAndTiesAreDeterministic) {
    std::vector<Edge> e = {{0, 1, 0.5}, {2, 3, 0.5}, {4, 5, 0.5}};
    const auto a = ks::sessions::hdbscan(6, e, 6);
    std::vector<Edge> r(e.rbegin(), e.rend());
    EXPECT_EQ(ks::sessions::hdbscan(6, r, 6), a);
    EXPECT_EQ(a, (std::vector<int>{0, 0, 1, 1, 2, 2}));
}

TEST(Lda, SeparatesTwoGaussianClassesLikeTheClosedForm) {
    std::mt19937 rng(3);
    std::normal_distribution<double> g(0, 1);
    std::vector<double> x;
    std::vector<uint8_t> y;
    for (int i = 0; i < 40000; ++i) {
        const bool c = i % 4 == 0;
        x.push_back((c ? 3.0 : 0.0) + g(rng));
        x.push_back((c ? 1.0 : 0.0) + 0.5 * g(rng));
        y.push_back(c);
    }
    std::vector<double> w;
    double b = 0;
    ASSERT_TRUE(ks::sessions::lda(x, y, 2, &w, &b));
    // Known covariance diag(1, 0.25): w = (3, 4), b = -0.5 (9 + 4) + log(1/3).
    EXPECT_NEAR(w[0], 3.0, 0.15);
    EXPECT_NEAR(w[1], 4.0, 0.2);
    EXPECT_NEAR(b, -6.5 + std::log(1.0 / 3.0), 0.35);
    std::vector<uint8_t> one(y.size(), 1);
    EXPECT_FALSE(ks::sessions::lda(x, one, 2, &w, &b));
}

TEST(RigidMotion, RecoversSessionPositionsFromPairs) {
    const std::vector<double> truth = {-10, 5, 20, -15};   // mean 0
    std::vector<int> a, b;
    std::vector<double> dy;
    for (int s = 0; s < 4; ++s)
        for (int t = s + 1; t < 4; ++t)
            for (int k = 0; k < 3; ++k) {
                a.push_back(s);
                b.push_back(t);
                dy.push_back(truth[t] - truth[s] + (k - 1) * 0.5);   // noise that cancels
            }
    const auto p = ks::sessions::rigid_motion(4, a, b, dy);
    for (int s = 0; s < 4; ++s) EXPECT_NEAR(p[s], truth[s], 1e-9);
}

TEST(MonopolarLocation, FindsAPointSourceNearAProbe) {
    std::vector<double> xc, yc, amp;
    const double x0 = 25, y0 = 130, z0 = 30, alpha = 5000;
    for (int row = 0; row < 10; ++row)
        for (int col = 0; col < 2; ++col) {
            xc.push_back(col * 32.0 + (row % 2) * 16.0);
            yc.push_back(60 + 20.0 * row);
            amp.push_back(alpha / std::sqrt(std::pow(xc.back() - x0, 2) + std::pow(yc.back() - y0, 2) + z0 * z0));
        }
    const auto loc = ks::sessions::monopolar_location(xc, yc, amp);
    EXPECT_NEAR(loc[0], x0, 0.05);
    EXPECT_NEAR(loc[1], y0, 0.05);
    EXPECT_NEAR(loc[2], z0, 0.1);
}

TEST(Autocorrelogram, PeriodicTrainPeaksAtItsPeriod) {
    std::vector<double> t;
    for (int i = 0; i < 200; ++i) t.push_back(i * 50.0);   // every 50 ms
    const auto acg = ks::sessions::autocorrelogram(t, 300, 0.0001);
    ASSERT_EQ(acg.size(), 600u);
    EXPECT_DOUBLE_EQ(acg[300 + 49], 1.0);   // lag +50 ms
    EXPECT_DOUBLE_EQ(acg[299 - 49], 1.0);   // lag -50 ms, mirrored
    EXPECT_DOUBLE_EQ(acg[300 + 48], 0.0);
    EXPECT_NEAR(acg[300 + 99], 198.0 / 199.0, 1e-12);   // 198 pairs at 100 ms, 199 at 50
    const auto isi = ks::sessions::isi_histogram(t, 100, 0.0001);
    EXPECT_NEAR(isi[50], 1.0, 1e-12);
    EXPECT_NEAR(std::accumulate(isi.begin(), isi.end(), 0.0), 1.0, 1e-12);
    const auto none = ks::sessions::autocorrelogram({}, 300, 5);
    EXPECT_EQ(none, std::vector<double>(600, 0.0));
}

TEST(Hdbscan, AChainThatShedsAStrayPointBecomesSelectable) {
    // Points 0..4 join one by one (a chain), point 5 joins them before they are complete; with at
    // most 5 per cluster the five still form a cluster once 5 has fallen out.
    std::vector<Edge> e = {{0, 1, 0.10}, {1, 2, 0.11}, {2, 3, 0.12}, {3, 4, 0.13}, {4, 5, 0.30}, {5, 6, 0.31}, {6, 7, 0.10}};
    const auto l = ks::sessions::hdbscan(8, e, 5);
    for (int i = 1; i < 5; ++i) EXPECT_EQ(l[i], l[0]) << i;
    EXPECT_GE(l[0], 0);
    EXPECT_NE(l[5], l[0]);
}
