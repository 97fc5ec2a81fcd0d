// Correlogram statistics (kernels/ccg.hpp) against an independent numpy computation of
// kilosort4-algorithm.md §7.2 (ccg_reference.py: all pairs, no sweep) and a closed form, and the rules
// built on them on trains whose answer is known: refractory or not, shared refractory period or not,
// duplicates, contamination, and the inputs that have no correlogram.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ks/kernels/ccg.hpp"
#include "test_support.hpp"

namespace {

using ks::ccg::ccg_stats;
using ks::ccg::Stats;
using Train = std::vector<double>;

// Poisson train at `rate` Hz over [t0, t0 + dur) s with a dead time after each spike (0: plain Poisson).
Train train(double rate, double dur, double dead, std::mt19937_64& rng, double t0 = 0) {
    std::exponential_distribution<double> e(rate);
    Train t;
    double x = t0 + e(rng);
    while (x < t0 + dur) {
        t.push_back(x);
        x += dead + e(rng);
    }
    return t;
}

Train merged(Train a, const Train& b) {
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    return a;
}

Stats stats_of(const Train& a, const Train& b, bool acg) {
    return ccg_stats(a.data(), static_cast<int64_t>(a.size()), b.data(), static_cast<int64_t>(b.size()), acg);
}

bool vetoed(const Train& a, const Train& b) {
    return ks::ccg::split_vetoed_by_refractory(a.data(), static_cast<int64_t>(a.size()), b.data(),
                                               static_cast<int64_t>(b.size()));
}

struct Case {
    const char* name;
    Train a, b;
    bool acg;
};

TEST(Ccg, StatisticsMatchAnIndependentAllPairsComputation) {
    if (std::system(KS_PYTHON " -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << KS_PYTHON << " has no numpy";
    std::mt19937_64 rng(7);
    const Train r1 = train(8, 120, 0.002, rng), r2 = train(5, 120, 0.002, rng), p1 = train(10, 120, 0, rng);
    const Train dirty = merged(r1, train(1.5, 120, 0, rng));
    Train half_a, half_b;   // alternate spikes of one refractory train
    for (size_t i = 0; i < r1.size(); ++i) (i % 2 ? half_b : half_a).push_back(r1[i]);
    // Lags at exact 1 ms multiples and at half bins (numpy and nearbyint both round halves to even).
    Train grid_a, grid_b;
    for (int i = 0; i < 2000; ++i) grid_a.push_back(0.0125 * i);
    for (int i = 0; i < 2000; ++i) grid_b.push_back(0.0125 * i + 0.0005);
    std::vector<Case> cases = {
        {"refractory ACG, 2 ms dead time", r1, r1, true},
        {"Poisson ACG", p1, p1, true},
        {"two independent refractory units", r1, r2, false},
        {"refractory train contaminated by a Poisson one, ACG", dirty, dirty, true},
        {"two halves sharing a refractory period", half_a, half_b, false},
        {"partly overlapping spans, T over the union", train(6, 60, 0.002, rng), train(9, 60, 0.002, rng, 40), false},
        {"half-bin lags", grid_a, grid_b, false},
        {"empty train", {}, r1, false},
        {"zero time span", {3.0, 3.0}, {3.0}, false},
    };
    ks::test::TempDir dir;
    {
        // 17 significant digits: Python's float() reads back the very same doubles.
        std::ofstream in(dir / "trains.txt");
        in.precision(17);
        for (const Case& c : cases) {
            for (double v : c.a) in << v << ' ';
            in << '|';
            for (double v : c.b) in << v << ' ';
            in << '\n';
        }
    }
    const std::string script = KS_FORMATS_DIR "/../tests/unit/kernels/ccg_reference.py";   // beside this file
    const std::string cmd =
        std::string(KS_PYTHON) + " " + script + " " + (dir / "trains.txt") + " " + (dir / "ref.txt");
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream ref(dir / "ref.txt");
    for (const Case& c : cases) {
        double want[5];
        for (double& w : want) ASSERT_TRUE(ref >> w) << c.name;
        const Stats s = stats_of(c.a, c.b, c.acg);
        const double got[5] = {s.R00, s.R01, s.Q00, s.R12, s.Q12};
        const char* names[5] = {"R00", "R01", "Q00", "R12", "Q12"};
        for (int i = 0; i < 5; ++i)
            EXPECT_NEAR(got[i], want[i], 1e-9 * std::max(1e-3, std::fabs(want[i]))) << c.name << ": " << names[i];
    }
    // The cases span the decisions, so agreement above covers both sides of each threshold.
    EXPECT_TRUE(ks::ccg::acg_refractory(stats_of(r1, r1, true), 0.2));
    EXPECT_FALSE(ks::ccg::acg_refractory(stats_of(p1, p1, true), 0.2));
    EXPECT_FALSE(ks::ccg::acg_refractory(stats_of(dirty, dirty, true), 0.2));
}

// A regular train, one spike every 20 ms: the ACG is K[20k] = N - |k|, so every §7.2 sum has a closed form.
TEST(Ccg, RegularTrainMatchesClosedForm) {
    const int N = 30;
    Train t;
    for (int i = 0; i < N; ++i) t.push_back(0.02 * i);
    const double T = t.back() - t.front(), pairs_per_s = static_cast<double>(N) * N / T;
    // S1 holds k = ±13..±24, S2 and S3 hold k = ±1, ±2 (lags 20 and 40 ms); nothing lies in 1..10 ms.
    const double far = 2.0 * (12 * N - (13 + 24) * 12 / 2), near = (N - 1) + (N - 2);
    const double Q00 = std::max(near / 40, far / 499), lam = 10 * Q00;
    const Stats s = stats_of(t, t, true);
    EXPECT_NEAR(s.R00, far / (499 * 1e-3 * pairs_per_s), 1e-12);
    EXPECT_NEAR(s.R01, near / (40 * 1e-3 * pairs_per_s), 1e-12);
    EXPECT_NEAR(s.Q00, Q00, 1e-12);
    EXPECT_EQ(s.R12, 0.0);
    // With empty central windows Q_i falls with i, so the minimum is at i = 10.
    EXPECT_NEAR(s.Q12, 0.5 * (1 + std::erf(-lam / std::sqrt(2 * lam + 1e-10))), 1e-15);
    EXPECT_GT(s.Q12, 1e-6);
}

TEST(Ccg, RefractoryRulesOnKnownTrains) {
    std::mt19937_64 rng(3);
    const Train r = train(10, 300, 0.003, rng), p = train(10, 300, 0, rng);
    const Stats sr = stats_of(r, r, true), sp = stats_of(p, p, true);
    EXPECT_TRUE(ks::ccg::acg_refractory(sr, 0.2)) << sr.R12 << " " << sr.Q12;
    EXPECT_TRUE(ks::ccg::acg_refractory(sr, 0.1)) << sr.R12 << " " << sr.Q12;
    EXPECT_FALSE(ks::ccg::acg_refractory(sp, 0.2)) << sp.R12 << " " << sp.Q12;
    EXPECT_LT(sr.R12, 0.05);         // a dead time longer than the 1..10 ms windows' first bins
    EXPECT_NEAR(sp.R12, 1.0, 0.3);   // Poisson: as many near-zero lags as the baseline predicts
    EXPECT_NEAR(sp.R00, 1.0, 0.1);
    // The two halves of one refractory train (alternate spikes) share its refractory period: a merge
    // pair, and a split the veto blocks.
    Train a, b;
    for (size_t i = 0; i < r.size(); ++i) (i % 2 ? b : a).push_back(r[i]);
    const Stats sab = stats_of(a, b, false);
    EXPECT_TRUE(ks::ccg::ccg_refractory(sab, 0.25)) << sab.R12 << " " << sab.Q12;
    EXPECT_TRUE(vetoed(a, b));
    // Two independent refractory units do not.
    const Train r2 = train(10, 300, 0.003, rng);
    const Stats s12 = stats_of(r, r2, false);
    EXPECT_FALSE(ks::ccg::ccg_refractory(s12, 0.25)) << s12.R12 << " " << s12.Q12;
    EXPECT_FALSE(vetoed(r, r2));
    // The veto's "or Q00 < 0.25": sparse trains whose shoulders average under 0.25 pairs per bin are
    // kept whole on R12 alone. One spike a second against the same 300 ms later: K[300] = 100 is the
    // only filled bin, so Q00 = 100/499, R12 = 0, and Q12 = ½ erfc(√(5 Q00)) ≈ 0.08 misses the merge rule.
    Train sparse, late;
    for (int i = 0; i < 100; ++i) {
        sparse.push_back(i);
        late.push_back(i + 0.3);
    }
    const Stats ss = stats_of(sparse, late, false);
    EXPECT_NEAR(ss.Q00, 100.0 / 499, 1e-12);
    EXPECT_EQ(ss.R12, 0.0);
    EXPECT_NEAR(ss.Q12, 0.5 * std::erfc(std::sqrt(5 * 100.0 / 499)), 1e-6);
    EXPECT_FALSE(ks::ccg::ccg_refractory(ss, 0.25));
    EXPECT_TRUE(vetoed(sparse, late));
}

TEST(Ccg, NoCorrelogramIsNeverRefractory) {
    const Train r = {0.1, 0.2, 0.5, 1.0};
    const Train same = {2.0, 2.0, 2.0};
    for (const Stats& s : {stats_of({}, r, false), stats_of(r, {}, false), stats_of({}, {}, true),
                           stats_of(same, same, true), stats_of(same, {2.0}, false)}) {
        EXPECT_EQ(s.R00, 0.0);
        EXPECT_EQ(s.R01, 0.0);
        EXPECT_EQ(s.Q00, 0.0);
        EXPECT_EQ(s.R12, 0.0);
        EXPECT_EQ(s.Q12, 0.0);
        EXPECT_TRUE(ks::ccg::undefined(s));
        EXPECT_FALSE(ks::ccg::acg_refractory(s, 0.2));
        EXPECT_FALSE(ks::ccg::ccg_refractory(s, 0.25));
    }
    EXPECT_FALSE(vetoed({}, r));
    EXPECT_FALSE(vetoed(r, {}));
    EXPECT_FALSE(vetoed(same, {2.0}));
    // Two spikes 1 s apart: a real (empty) correlogram, Q00 = 0 so Q12 = 0.5, not undefined.
    const Stats far = stats_of({0.0, 1.0}, {0.0, 1.0}, true);
    EXPECT_FALSE(ks::ccg::undefined(far));
    EXPECT_EQ(far.Q12, 0.5);
}

TEST(Ccg, UnsortedTrainIsABug) {
    const Train bad = {0.3, 0.1, 0.2}, ok = {0.1, 0.2};
    EXPECT_EQ(ks::test::exit_code_of([&] { stats_of(bad, ok, false); }), ks::Exit::internal);
    EXPECT_EQ(ks::test::exit_code_of([&] { stats_of(ok, bad, false); }), ks::Exit::internal);
}

TEST(Ccg, DuplicatesAreRemovedWithinAClusterOnly) {
    //                     t:   0  3  7  8  14 20 21 22
    const std::vector<int64_t> t = {0, 3, 7, 8, 14, 20, 21, 22};
    const std::vector<int32_t> c = {0, 0, 0, 1, 0, 1, 1, 0};
    // dup 7 (0.25 ms at 30 kHz, §7.4): cluster 0 keeps 0, drops 3 (3 < 7), keeps 7 (7 - 0 >= 7), keeps 14,
    // keeps 22; cluster 1 keeps 8, keeps 20, drops 21.
    EXPECT_EQ(ks::ccg::remove_duplicates(t.data(), c.data(), 8, 7), (std::vector<uint8_t>{1, 0, 1, 1, 1, 1, 0, 1}));
    EXPECT_EQ(ks::ccg::remove_duplicates(t.data(), c.data(), 8, 0), std::vector<uint8_t>(8, 1));
    EXPECT_EQ(ks::ccg::remove_duplicates(t.data(), c.data(), 8, -1), std::vector<uint8_t>(8, 1));
    // Measured from the last KEPT spike: 0, 4, 8 with dup 5 keeps 0 and 8 (8 - 0 >= 5), drops 4.
    const std::vector<int64_t> t2 = {0, 4, 8};
    const std::vector<int32_t> c2 = {0, 0, 0};
    EXPECT_EQ(ks::ccg::remove_duplicates(t2.data(), c2.data(), 3, 5), (std::vector<uint8_t>{1, 0, 1}));
    // Same-time spikes: the later one in the list is the duplicate in its own cluster, not across clusters.
    const std::vector<int64_t> t3 = {100, 100, 100, 106, 107};
    const std::vector<int32_t> c3 = {2, 0, 2, 0, 0};
    EXPECT_EQ(ks::ccg::remove_duplicates(t3.data(), c3.data(), 5, 7), (std::vector<uint8_t>{1, 1, 0, 0, 1}));
    EXPECT_TRUE(ks::ccg::remove_duplicates(t3.data(), c3.data(), 0, 7).empty());
}

TEST(Ccg, ContaminationAndGoodLabel) {
    std::mt19937_64 rng(5);
    const double fs = 30000;
    const Train r = train(10, 200, 0.003, rng), p = train(10, 200, 0, rng);
    std::vector<int64_t> t;
    std::vector<int32_t> c;
    // Cluster 1's spikes come after cluster 0's: the times need not be in order across clusters.
    for (double v : r) { t.push_back(static_cast<int64_t>(v * fs)); c.push_back(0); }
    for (double v : p) { t.push_back(static_cast<int64_t>(v * fs)); c.push_back(1); }
    for (int i = 0; i < 10; ++i) { t.push_back(1000 * i); c.push_back(2); }   // 10 spikes: too few
    for (int i = 0; i < 11; ++i) { t.push_back(5000); c.push_back(4); }       // 11 spikes, zero span
    std::vector<double> pct;
    std::vector<uint8_t> good;
    ks::ccg::contamination(t.data(), c.data(), static_cast<int64_t>(t.size()), 5, fs, 0.2, &pct, &good);
    ASSERT_EQ(pct.size(), 5u);
    ASSERT_EQ(good.size(), 5u);
    // Cluster 0 and 1: 100 R12 of their own ACG in seconds.
    for (int k = 0; k < 2; ++k) {
        Train s;
        for (size_t i = 0; i < t.size(); ++i)
            if (c[i] == k) s.push_back(static_cast<double>(t[i]) / fs);
        EXPECT_DOUBLE_EQ(pct[k], 100 * stats_of(s, s, true).R12) << k;
    }
    EXPECT_TRUE(good[0]);
    EXPECT_LT(pct[0], 5);
    EXPECT_FALSE(good[1]);
    EXPECT_GT(pct[1], 60);
    EXPECT_FALSE(good[2]);
    EXPECT_EQ(pct[2], 0.0);
    EXPECT_FALSE(good[3]);   // no spikes at all
    EXPECT_EQ(pct[3], 0.0);
    EXPECT_FALSE(good[4]);
    EXPECT_EQ(pct[4], 0.0);
    // The "more than 10 spikes" boundary: a train firing every 40 ms (1200 samples) is refractory
    // (R12 = 0, Q00 = (n-1)/40, Q12 = ½ erfc(√(5 Q00)) < 0.2) once it has 11 spikes; with 10 it is not judged.
    for (int n : {10, 11}) {
        std::vector<int64_t> tn;
        for (int i = 0; i < n; ++i) tn.push_back(1200 * i);
        const std::vector<int32_t> cn(n, 0);
        ks::ccg::contamination(tn.data(), cn.data(), n, 1, fs, 0.2, &pct, &good);
        EXPECT_EQ(pct[0], 0.0) << n;
        EXPECT_EQ(good[0], n == 11 ? 1 : 0) << n;
    }
}

}  // namespace

TEST(Ccg, PoissonTail) {
    using ks::ccg::poisson_cdf;
    EXPECT_NEAR(poisson_cdf(0, 1), std::exp(-1.0), 1e-12);
    EXPECT_NEAR(poisson_cdf(2, 1.5), std::exp(-1.5) * (1 + 1.5 + 1.125), 1e-12);
    EXPECT_NEAR(poisson_cdf(2.5, 1.5), poisson_cdf(2, 1.5), 1e-15);   // n counts whole events
    EXPECT_NEAR(poisson_cdf(100, 100), 0.526562, 1e-5);               // scipy.stats.poisson.cdf(100, 100)
    EXPECT_EQ(poisson_cdf(-1, 2), 0.0);
    EXPECT_EQ(poisson_cdf(5, 0), 1.0);
    EXPECT_EQ(poisson_cdf(1e6, 3), 1.0);
}

TEST(Ccg, GoodLabelWithTheExactTailNeedsEvidence) {
    const double fs = 30000;
    // 30 spikes every 200 ms: no lag under 200 ms, so R12 = 0; the only filled far-shoulder bins are ±400 ms
    // (28 pairs each way), Q00 = 56/499 and the best window (±10 ms) expects lambda = 10 Q00 = 1.12 pairs.
    // Seeing none has probability e^-1.12 = 0.33: no evidence of a refractory period at 0.2, although
    // Kilosort4's normal approximation, ½ erfc(√(lambda/2)) = 0.14, calls the unit good.
    std::vector<int64_t> t;
    for (int i = 0; i < 30; ++i) t.push_back(6000 * i);
    std::vector<double> s;
    for (int64_t v : t) s.push_back(static_cast<double>(v) / fs);
    const Stats st = stats_of(s, s, true);
    EXPECT_EQ(st.R12, 0.0);
    EXPECT_NEAR(st.Q00, 56.0 / 499, 1e-12);
    EXPECT_NEAR(st.Q12, 0.5 * std::erfc(std::sqrt(5 * 56.0 / 499)), 1e-9);
    EXPECT_NEAR(st.Q12_poisson, std::exp(-10 * 56.0 / 499), 1e-9);
    EXPECT_TRUE(ks::ccg::acg_refractory(st, 0.2));
    EXPECT_FALSE(ks::ccg::acg_refractory_poisson(st, 0.2));
    const std::vector<int32_t> c(t.size(), 0);
    std::vector<double> pct;
    std::vector<uint8_t> good;
    ks::ccg::contamination(t.data(), c.data(), static_cast<int64_t>(t.size()), 1, fs, 0.2, &pct, &good, false);
    EXPECT_TRUE(good[0]);
    ks::ccg::contamination(t.data(), c.data(), static_cast<int64_t>(t.size()), 1, fs, 0.2, &pct, &good, true);
    EXPECT_FALSE(good[0]);
    EXPECT_EQ(pct[0], 0.0);   // the contamination estimate itself is unchanged
    // A well-sampled refractory unit passes both tests, a Poisson one neither.
    std::mt19937_64 rng(11);
    const Train r = train(10, 200, 0.003, rng), p = train(10, 200, 0, rng);
    const Stats sr = stats_of(r, r, true), sp = stats_of(p, p, true);
    EXPECT_TRUE(ks::ccg::acg_refractory_poisson(sr, 0.2)) << sr.Q12_poisson;
    EXPECT_FALSE(ks::ccg::acg_refractory_poisson(sp, 0.2)) << sp.Q12_poisson;
}

namespace {

// Unit a fires every second (70 s), unit b 0.3 s after each of a's spikes and 0.3 s before: their
// correlogram has 139 pairs at ±300 ms and nothing within ±10 ms. The best window expects
// lambda = 10 Q00 = 10 * 139 / 499 = 2.79 pairs there: seeing none has probability e^-2.79 = 0.062,
// no evidence of a shared refractory period at 0.05, but Kilosort4's normal approximation gives 0.048.
void sparse_pair(std::vector<int64_t>* a, std::vector<int64_t>* b) {
    for (int k = 0; k < 70; ++k) {
        a->push_back(30000LL * k);
        b->push_back(30000LL * k + 9000);
        b->push_back(30000LL * k + 21000);
    }
    std::sort(b->begin(), b->end());
}

}  // namespace

TEST(Ccg, MergeTestWithTheExactTailNeedsEvidence) {
    std::vector<int64_t> a, b;
    sparse_pair(&a, &b);
    Train ta, tb;
    for (int64_t v : a) ta.push_back(v / 30000.0);
    for (int64_t v : b) tb.push_back(v / 30000.0);
    const Stats st = stats_of(ta, tb, false);
    EXPECT_EQ(st.R12, 0.0);
    EXPECT_NEAR(st.Q00, 139.0 / 499, 1e-12);
    EXPECT_NEAR(st.Q12, 0.5 * std::erfc(std::sqrt(5 * 139.0 / 499)), 1e-9);
    EXPECT_NEAR(st.Q12_poisson, std::exp(-10 * 139.0 / 499), 1e-9);
    EXPECT_TRUE(ks::ccg::ccg_refractory(st, 0.25));
    EXPECT_FALSE(ks::ccg::ccg_refractory_poisson(st, 0.25));
    // Two neurons sharing a refractory period over many spikes pass both.
    std::mt19937_64 rng(12);
    const Train one = train(20, 200, 0.003, rng);
    Train x, y;
    for (size_t i = 0; i < one.size(); ++i) (i % 2 ? x : y).push_back(one[i]);
    const Stats s2 = stats_of(x, y, false);
    EXPECT_TRUE(ks::ccg::ccg_refractory(s2, 0.25));
    EXPECT_TRUE(ks::ccg::ccg_refractory_poisson(s2, 0.25)) << s2.Q12_poisson;
}
