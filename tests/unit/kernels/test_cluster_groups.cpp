// ks-cluster's grouping of grid positions (§5.1): one x centre on Neuropixels 1, y centres every
// 2·dmin, and groups that never mix shanks.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <vector>

#include "ks/kernels/universal_templates.hpp"
#include "ks/probe.hpp"
#include "ks/stages/cluster.hpp"

namespace {

struct Grid {
    std::vector<double> x, y;
    std::vector<int> shank;
};

Grid grid_of(const ks::Probe& p) {
    const auto g = ks::kernels::make_universal_grid(p, {});
    return {g.x_um, g.y_um, g.shank};
}

}  // namespace

TEST(ClusterGroups, Neuropixels1HasOneColumnOfCentresEvery40um) {
    const ks::Probe p = ks::Probe::builtin("neuropixels1");
    const Grid g = grid_of(p);
    int n = 0;
    const auto group = ks::clusterstage::group_positions(g.x, g.y, g.shank, p, 20.0, 0, &n);
    // y from 0 to 3820 µm: centres at 19, 59, ..., i.e. about 3840 / 40 = 96 of them, one x centre.
    EXPECT_GE(n, 94);
    EXPECT_LE(n, 97);
    // Each group spans about 40 µm of depth.
    std::map<int, std::pair<double, double>> span;
    for (size_t f = 0; f < group.size(); ++f) {
        ASSERT_GE(group[f], 0);
        auto it = span.find(group[f]);
        if (it == span.end()) span[group[f]] = {g.y[f], g.y[f]};
        else it->second = {std::min(it->second.first, g.y[f]), std::max(it->second.second, g.y[f])};
    }
    for (const auto& kv : span) EXPECT_LE(kv.second.second - kv.second.first, 41.0) << "group " << kv.first;
    // Groups are numbered by depth.
    for (size_t f = 1; f < group.size(); ++f)
        if (g.y[f] > g.y[f - 1] + 30) {
            EXPECT_GE(group[f], group[f - 1]);
        }
}

TEST(ClusterGroups, MultiShankGroupsNeverMixShanks) {
    const ks::Probe p = ks::Probe::builtin("neuropixels2-4shank");
    const Grid g = grid_of(p);
    int n = 0;
    const auto group = ks::clusterstage::group_positions(g.x, g.y, g.shank, p, 15.0, 0, &n);
    std::map<int, std::set<int>> shanks_of_group;
    for (size_t f = 0; f < group.size(); ++f) shanks_of_group[group[f]].insert(g.shank[f]);
    EXPECT_EQ(static_cast<int>(shanks_of_group.size()), n);
    for (const auto& kv : shanks_of_group) EXPECT_EQ(kv.second.size(), 1u) << "group " << kv.first;
    std::set<int> shanks(g.shank.begin(), g.shank.end());
    EXPECT_EQ(shanks.size(), 4u);
    // Even when asked for one x centre, shanks stay apart.
    const auto one = ks::clusterstage::group_positions(g.x, g.y, g.shank, p, 15.0, 1, &n);
    std::map<int, std::set<int>> s1;
    for (size_t f = 0; f < one.size(); ++f) s1[one[f]].insert(g.shank[f]);
    for (const auto& kv : s1) EXPECT_EQ(kv.second.size(), 1u);
}

TEST(ClusterGroups, XCentersSplitsTwoFarColumns) {
    // Two columns 300 µm apart on one shank (a 2-D array): x_centers = 2 separates them, the automatic
    // rule finds the two histogram peaks too.
    ks::Probe p;
    for (int c = 0; c < 40; ++c) {
        p.chanMap.push_back(c);
        p.xc.push_back(c % 2 ? 300.0 : 0.0);
        p.yc.push_back((c / 2) * 20.0);
        p.kcoords.push_back(0);
    }
    const Grid g = grid_of(p);
    for (int64_t xcent : {int64_t{2}, int64_t{0}}) {
        int n = 0;
        const auto group = ks::clusterstage::group_positions(g.x, g.y, g.shank, p, 20.0, xcent, &n);
        for (size_t f = 0; f < group.size(); ++f)
            for (size_t h = 0; h < group.size(); ++h)
                if (group[f] == group[h]) {
                    EXPECT_LT(std::abs(g.x[f] - g.x[h]), 150.0) << "x_centers " << xcent;
                }
    }
}
