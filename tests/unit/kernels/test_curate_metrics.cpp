// ks-curate's spike-time metrics against closed forms (stages/curate.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ks/stages/curate.hpp"

namespace {

TEST(CurateMetrics, PresenceRatioCountsWholeBinsWithASpike) {
    // 250 s: four whole 60-s bins (the partial fifth is dropped); spikes in bins 0 and 2 only.
    EXPECT_DOUBLE_EQ(ks::curate::presence_ratio({1.0, 30.0, 130.0, 245.0}, 250.0), 0.5);   // 245 s is in the dropped bin
    EXPECT_DOUBLE_EQ(ks::curate::presence_ratio({1.0, 61.0, 121.0, 181.0}, 240.0), 1.0);
    EXPECT_DOUBLE_EQ(ks::curate::presence_ratio({}, 240.0), 0.0);
    EXPECT_TRUE(std::isnan(ks::curate::presence_ratio({1.0}, 59.0)));   // shorter than a bin
}

TEST(CurateMetrics, IsiViolationsFollowHillAndTheFraction) {
    // 10 spikes, two consecutive ISIs below 1.5 ms, T = 100 s: ratio = 2 * 100 / (2 * 100 * 0.0015).
    const std::vector<double> t = {1, 1.001, 2, 3, 3.0005, 4, 5, 6, 7, 8};
    double ratio, frac;
    ks::curate::isi_violations(t, 100.0, 0.0015, &ratio, &frac);
    EXPECT_NEAR(ratio, 2 * 100.0 / (2 * 100.0 * 0.0015), 1e-9);
    EXPECT_DOUBLE_EQ(frac, 0.2);
    ks::curate::isi_violations(t, 100.0, 0.0004, &ratio, &frac);   // a shorter refractory period: none
    EXPECT_EQ(ratio, 0.0);
    EXPECT_EQ(frac, 0.0);
}

TEST(CurateMetrics, AmplitudeCutoffSeesATruncatedDistribution) {
    std::mt19937_64 rng(3);
    std::normal_distribution<double> g(100.0, 15.0);
    std::vector<double> full, cut;
    for (int i = 0; i < 20000; ++i) {
        const double a = g(rng);
        full.push_back(a);
        if (a > 90) cut.push_back(a);   // a threshold at -0.67 SD: about a quarter of the spikes lost
    }
    const double c_full = ks::curate::amplitude_cutoff(full), c_cut = ks::curate::amplitude_cutoff(cut);
    EXPECT_LT(c_full, 0.02) << c_full;
    EXPECT_GT(c_cut, 0.1) << c_cut;
    EXPECT_LE(c_cut, 0.5);
    EXPECT_TRUE(std::isnan(ks::curate::amplitude_cutoff(std::vector<double>(100, 1.0))));   // too few
}

}  // namespace
