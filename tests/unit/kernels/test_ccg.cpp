// Correlogram statistics (kernels/ccg.hpp) against an independent numpy computation of
// kilosort4-algorithm.md §7.2 (all pairs, no sweep), and the rules built on them on trains whose
// answer is known: refractory or not, shared refractory period or not, duplicates, contamination.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ks/kernels/ccg.hpp"
#include "test_support.hpp"

namespace {

using ks::ccg::ccg_stats;

// Poisson train at `rate` Hz over `dur` s with a dead time after each spike (0: plain Poisson).
std::vector<double> train(double rate, double dur, double dead, std::mt19937_64& rng) {
    std::exponential_distribution<double> e(rate);
    std::vector<double> t;
    double x = e(rng);
    while (x < dur) {
        t.push_back(x);
        x += dead + e(rng);
    }
    return t;
}

std::vector<double> merged(std::vector<double> a, const std::vector<double>& b) {
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    return a;
}

// §7.2 in numpy, from the doc's formulas: every pair, lag bins by rounding, shoulders and windows.
const char* kReference = R"PY(
import sys, math, numpy as np
def stats(a, b):
    T = max(a.max(), b.max()) - min(a.min(), b.min())
    d = b[None, :] - a[:, None]                       # b_j - a_i
    sel = (a[:, None] > b[None, :] - 0.5) & (a[:, None] <= b[None, :] + 0.5)
    lag = np.round(d[sel] / 1e-3).astype(int)
    K = np.bincount(lag + 500, minlength=1001)[:1001].astype(float)
    E = lambda nbins: nbins * 1e-3 * len(a) * len(b) / T
    S1 = np.r_[np.arange(-499, -250), np.arange(250, 500)] + 500
    S2 = np.arange(-50, -10) + 500
    S3 = np.arange(10, 50) + 500
    R00 = K[S1].sum() / E(len(S1))
    R01 = max(K[S2].sum() / E(40), K[S3].sum() / E(40))
    Q00 = max(K[S2].mean(), K[S3].mean(), K[S1].mean())
    K[500] = 0
    R, Q = [], []
    for i in range(1, 11):
        w = K[500 - i:500 + i + 1].sum()
        R.append(w / (2 * i * 1e-3 * len(a) * len(b) / T))
        lam = i * Q00
        Q.append(0.5 * (1 + math.erf((w / 2 - lam) / math.sqrt(2 * lam + 1e-10))))
    return R00, R01, Q00, min(R) / (1e-10 + max(R00, R01)), min(Q)
out = open(sys.argv[2], "w")
for line in open(sys.argv[1]):
    a_s, b_s = line.split("|")
    a = np.array([float(x) for x in a_s.split()]); b = np.array([float(x) for x in b_s.split()])
    out.write(" ".join("%.17g" % v for v in stats(a, b)) + "\n")
)PY";

TEST(Ccg, StatisticsMatchAnIndependentAllPairsComputation) {
    if (std::system(KS_PYTHON " -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << KS_PYTHON << " has no numpy";
    std::mt19937_64 rng(7);
    std::vector<std::pair<std::vector<double>, std::vector<double>>> cases;
    const auto r1 = train(8, 120, 0.002, rng), r2 = train(5, 120, 0.002, rng), p1 = train(10, 120, 0, rng);
    cases.emplace_back(r1, r1);                       // refractory ACG
    cases.emplace_back(p1, p1);                       // Poisson ACG
    cases.emplace_back(r1, r2);                       // two independent units
    cases.emplace_back(merged(r1, train(1, 120, 0, rng)), merged(r1, train(1, 120, 0, rng)));  // contaminated
    // Trains with exact 1 ms multiples and half-bin lags (rounding to even at the bin edges).
    std::vector<double> g, h;
    for (int i = 0; i < 2000; ++i) g.push_back(0.0125 * i);
    for (int i = 0; i < 2000; ++i) h.push_back(0.0125 * i + 0.0005);
    cases.emplace_back(g, h);
    ks::test::TempDir dir;
    {
        std::ofstream in(dir / "trains.txt");
        in.precision(17);
        for (const auto& [a, b] : cases) {
            for (double v : a) in << v << ' ';
            in << '|';
            for (double v : b) in << v << ' ';
            in << '\n';
        }
        std::ofstream(dir / "ref.py") << kReference;
    }
    ASSERT_EQ(std::system((std::string(KS_PYTHON) + " " + (dir / "ref.py") + " " + (dir / "trains.txt") + " " +
                           (dir / "ref.txt")).c_str()),
              0);
    std::ifstream ref(dir / "ref.txt");
    for (size_t c = 0; c < cases.size(); ++c) {
        // The trains as written (17 digits), so both sides see the same numbers.
        std::vector<double> a, b;
        {
            std::ostringstream os;
            os.precision(17);
            for (double v : cases[c].first) os << v << ' ';
            std::istringstream is(os.str());
            for (double v; is >> v;) a.push_back(v);
            std::ostringstream os2;
            os2.precision(17);
            for (double v : cases[c].second) os2 << v << ' ';
            std::istringstream is2(os2.str());
            for (double v; is2 >> v;) b.push_back(v);
        }
        const auto s = ccg_stats(a.data(), static_cast<int64_t>(a.size()), b.data(), static_cast<int64_t>(b.size()),
                                 &cases[c].first == &cases[c].second);
        double want[5];
        for (double& w : want) ref >> w;
        const double got[5] = {s.R00, s.R01, s.Q00, s.R12, s.Q12};
        for (int i = 0; i < 5; ++i) EXPECT_NEAR(got[i], want[i], 1e-9 * (1 + std::fabs(want[i]))) << "case " << c << " stat " << i;
    }
}

TEST(Ccg, RefractoryRulesOnKnownTrains) {
    std::mt19937_64 rng(3);
    const auto r = train(10, 300, 0.003, rng), p = train(10, 300, 0, rng);
    const auto sr = ccg_stats(r.data(), static_cast<int64_t>(r.size()), r.data(), static_cast<int64_t>(r.size()), true);
    const auto sp = ccg_stats(p.data(), static_cast<int64_t>(p.size()), p.data(), static_cast<int64_t>(p.size()), true);
    EXPECT_TRUE(ks::ccg::acg_refractory(sr, 0.2)) << sr.R12 << " " << sr.Q12;
    EXPECT_FALSE(ks::ccg::acg_refractory(sp, 0.2)) << sp.R12 << " " << sp.Q12;
    EXPECT_NEAR(sp.R12, 1.0, 0.3);   // Poisson: as many near-zero lags as the baseline predicts
    // The two halves of one refractory train (alternate spikes) share its refractory period.
    std::vector<double> a, b;
    for (size_t i = 0; i < r.size(); ++i) (i % 2 ? b : a).push_back(r[i]);
    const auto sab = ccg_stats(a.data(), static_cast<int64_t>(a.size()), b.data(), static_cast<int64_t>(b.size()), false);
    EXPECT_TRUE(ks::ccg::ccg_refractory(sab, 0.25)) << sab.R12 << " " << sab.Q12;
    EXPECT_TRUE(ks::ccg::split_vetoed_by_refractory(a.data(), static_cast<int64_t>(a.size()), b.data(),
                                                    static_cast<int64_t>(b.size())));
    // Two independent refractory units do not.
    const auto r2 = train(10, 300, 0.003, rng);
    const auto s12 = ccg_stats(r.data(), static_cast<int64_t>(r.size()), r2.data(), static_cast<int64_t>(r2.size()), false);
    EXPECT_FALSE(ks::ccg::ccg_refractory(s12, 0.25)) << s12.R12 << " " << s12.Q12;
    EXPECT_FALSE(ks::ccg::split_vetoed_by_refractory(r.data(), static_cast<int64_t>(r.size()), r2.data(),
                                                     static_cast<int64_t>(r2.size())));
    // Empty input or no time span: zeros, never refractory for a split.
    const auto s0 = ccg_stats(r.data(), 0, r.data(), 0, true);
    EXPECT_EQ(s0.R12, 0.0);
    EXPECT_FALSE(ks::ccg::split_vetoed_by_refractory(r.data(), 0, r2.data(), static_cast<int64_t>(r2.size())));
}

TEST(Ccg, DuplicatesAreRemovedWithinAClusterOnly) {
    //                     t:   0  3  7  8  14 20 21 22
    const std::vector<int64_t> t = {0, 3, 7, 8, 14, 20, 21, 22};
    const std::vector<int32_t> c = {0, 0, 0, 1, 0, 1, 1, 0};
    // dup 7: cluster 0 keeps 0, drops 3 (3 < 7), keeps 7 (7 - 0 >= 7), keeps 14, keeps 22; cluster 1 keeps
    // 8, keeps 20, drops 21.
    EXPECT_EQ(ks::ccg::remove_duplicates(t.data(), c.data(), 8, 7), (std::vector<uint8_t>{1, 0, 1, 1, 1, 1, 0, 1}));
    EXPECT_EQ(ks::ccg::remove_duplicates(t.data(), c.data(), 8, 0), std::vector<uint8_t>(8, 1));
    // Measured from the last KEPT spike: 0, 4, 8 with dup 5 keeps 0 and 8 (8 - 0 >= 5), drops 4.
    const std::vector<int64_t> t2 = {0, 4, 8};
    const std::vector<int32_t> c2 = {0, 0, 0};
    EXPECT_EQ(ks::ccg::remove_duplicates(t2.data(), c2.data(), 3, 5), (std::vector<uint8_t>{1, 0, 1}));
}

TEST(Ccg, ContaminationAndGoodLabel) {
    std::mt19937_64 rng(5);
    const double fs = 30000;
    const auto r = train(10, 200, 0.003, rng), p = train(10, 200, 0, rng);
    std::vector<int64_t> t;
    std::vector<int32_t> c;
    for (double v : r) { t.push_back(static_cast<int64_t>(v * fs)); c.push_back(0); }
    for (double v : p) { t.push_back(static_cast<int64_t>(v * fs)); c.push_back(1); }
    for (int i = 0; i < 10; ++i) { t.push_back(1000 * i); c.push_back(2); }   // 10 spikes: too few
    std::vector<double> pct;
    std::vector<uint8_t> good;
    ks::ccg::contamination(t.data(), c.data(), static_cast<int64_t>(t.size()), 4, fs, 0.2, &pct, &good);
    ASSERT_EQ(pct.size(), 4u);
    EXPECT_TRUE(good[0]);
    EXPECT_LT(pct[0], 5);
    EXPECT_FALSE(good[1]);
    EXPECT_GT(pct[1], 60);
    EXPECT_FALSE(good[2]);
    EXPECT_EQ(pct[2], 0.0);
    EXPECT_FALSE(good[3]);   // no spikes at all
    EXPECT_EQ(pct[3], 0.0);
}

}  // namespace
