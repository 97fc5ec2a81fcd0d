// ks::score: matching, assignment, the ground-truth metrics and the folder readers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ks/error.hpp"
#include "ks/npy.hpp"
#include "ks/score.hpp"

namespace fs = std::filesystem;
using ks::score::Sorting;

namespace {

constexpr double kFs = 30000.0;  // 0.4 ms = 12 samples

// Maximum matching between two spike lists under |a - b| <= delta, by augmenting paths
// (Kuhn's algorithm): the reference the greedy count must equal.
int64_t max_matching_brute(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t delta) {
    std::vector<int> match_b(b.size(), -1);
    std::function<bool(int, std::vector<char>&)> augment = [&](int i, std::vector<char>& seen) {
        for (std::size_t j = 0; j < b.size(); ++j) {
            if (std::llabs(a[i] - b[j]) > delta || seen[j]) continue;
            seen[j] = 1;
            if (match_b[j] < 0 || augment(match_b[j], seen)) {
                match_b[j] = i;
                return true;
            }
        }
        return false;
    };
    int64_t m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        std::vector<char> seen(b.size(), 0);
        m += augment(static_cast<int>(i), seen);
    }
    return m;
}

// A spike train with refractory gaps: n spikes, gaps uniform in [min_gap, max_gap].
std::vector<int64_t> train(std::mt19937_64& rng, int n, int64_t start, int64_t min_gap, int64_t max_gap) {
    std::uniform_int_distribution<int64_t> gap(min_gap, max_gap);
    std::vector<int64_t> t;
    int64_t x = start;
    for (int k = 0; k < n; ++k) {
        x += gap(rng);
        t.push_back(x);
    }
    return t;
}

// A sorting from per-unit trains.
Sorting from_trains(const std::vector<std::pair<int64_t, std::vector<int64_t>>>& units) {
    std::vector<int64_t> t, id;
    for (const auto& [u, tr] : units) {
        t.insert(t.end(), tr.begin(), tr.end());
        id.insert(id.end(), tr.size(), u);
    }
    Sorting s = Sorting::from_spikes(t, id);
    for (const auto& [u, tr] : units)  // units with no spikes stay listed
        if (!std::binary_search(s.units.begin(), s.units.end(), u)) {
            s.units.push_back(u);
            std::sort(s.units.begin(), s.units.end());
        }
    return s;
}

// Three well-separated true units (ids not contiguous), 1000 spikes each.
std::vector<std::pair<int64_t, std::vector<int64_t>>> three_units(std::mt19937_64& rng) {
    return {{3, train(rng, 1000, 0, 60, 3000)}, {17, train(rng, 1000, 5, 60, 3000)}, {1000, train(rng, 1000, 11, 60, 3000)}};
}

const ks::score::GtUnitScore& gt_unit(const ks::score::Result& r, int64_t id) {
    for (const auto& u : r.gt)
        if (u.id == id) return u;
    throw std::runtime_error("no gt unit " + std::to_string(id));
}
const ks::score::SortedUnitScore& sorted_unit(const ks::score::Result& r, int64_t id) {
    for (const auto& u : r.sorted)
        if (u.id == id) return u;
    throw std::runtime_error("no sorted unit " + std::to_string(id));
}

ks::Exit exit_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ks::Error& e) {
        return e.code();
    }
    return ks::Exit::ok;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ks::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

// ---- matching ----------------------------------------------------------------------------------

TEST(ScoreMatch, PairGreedyIsAMaximumMatching) {
    std::mt19937_64 rng(1);
    for (int trial = 0; trial < 300; ++trial) {
        // Bursty trains (gaps 0..20 samples) so several spikes compete within one window.
        const int64_t delta = trial % 7;
        auto a = train(rng, 1 + trial % 25, 0, 0, 20);
        auto b = train(rng, 1 + (trial * 7) % 25, 3, 0, 20);
        EXPECT_EQ(ks::score::count_matches_pair(a, b, delta), max_matching_brute(a, b, delta))
            << "trial " << trial << " delta " << delta;
    }
}

TEST(ScoreMatch, OnePassEqualsEveryPairCountedAlone) {
    std::mt19937_64 rng(2);
    for (int trial = 0; trial < 40; ++trial) {
        const int n_gt = 1 + trial % 5, n_so = 1 + (trial * 3) % 6;
        const int64_t delta = 1 + trial % 15;
        std::vector<std::pair<int64_t, std::vector<int64_t>>> gu, su;
        for (int u = 0; u < n_gt; ++u) gu.push_back({10 * u + 1, train(rng, 200, u, 1, 40)});
        for (int u = 0; u < n_so; ++u) su.push_back({-u, train(rng, 150 + 20 * u, u, 1, 50)});
        const Sorting gt = from_trains(gu), so = from_trains(su);
        const auto counts = ks::score::count_matches(gt, so, delta);
        std::size_t k = 0;
        for (int g = 0; g < n_gt; ++g)
            for (int s = 0; s < n_so; ++s) {
                const auto& ta = gu[g].second;
                const int64_t sid = so.units[s];
                const auto& tb = std::find_if(su.begin(), su.end(), [&](auto& p) { return p.first == sid; })->second;
                const int64_t expected = ks::score::count_matches_pair(ta, tb, delta);
                int64_t got = 0;
                if (k < counts.size() && counts[k].gt_index == g && counts[k].sorted_index == s) got = counts[k++].matches;
                EXPECT_EQ(got, expected) << "trial " << trial << " gt " << g << " sorted " << s << " delta " << delta;
            }
        EXPECT_EQ(k, counts.size()) << "unexpected extra pairs, trial " << trial;
    }
}

TEST(ScoreMatch, WindowIsInclusive) {
    EXPECT_EQ(ks::score::count_matches_pair({100}, {112}, 12), 1);
    EXPECT_EQ(ks::score::count_matches_pair({100}, {88}, 12), 1);
    EXPECT_EQ(ks::score::count_matches_pair({100}, {113}, 12), 0);
    EXPECT_EQ(ks::score::count_matches_pair({100}, {100}, 0), 1);
    // Each spike once: two sorted spikes near one true spike give one match.
    EXPECT_EQ(ks::score::count_matches_pair({100}, {99, 101}, 12), 1);
    EXPECT_EQ(ks::score::count_matches_pair({}, {1, 2}, 12), 0);
}

TEST(ScoreMatch, DeltaSamples) {
    EXPECT_EQ(ks::score::delta_samples(0.4, 30000), 12);
    EXPECT_EQ(ks::score::delta_samples(0.4, 32000), 12);  // 12.8 truncated, as int() does
    EXPECT_EQ(ks::score::delta_samples(0.1, 30000), 3);   // 3.0000000000000004 or 2.999... is 3
    EXPECT_EQ(ks::score::delta_samples(0.0, 30000), 0);
    EXPECT_EQ(ks::score::delta_samples(0.4, 25000), 10);
}

// ---- assignment --------------------------------------------------------------------------------

TEST(ScoreAssign, MatchesBruteForceOnSmallRandomMatrices) {
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    for (int trial = 0; trial < 400; ++trial) {
        const int n = 1 + trial % 6, m = 1 + (trial / 6) % 6;
        std::vector<double> w(static_cast<std::size_t>(n) * m);
        for (auto& x : w) {
            x = uni(rng);
            if (trial % 3 == 0) x = std::floor(x * 3) / 2;  // many ties and zeros
            if (trial % 5 == 0 && x < 0.5) x = 0;
        }
        const std::vector<int> col = ks::score::assign_max_weight(w, n, m);
        ASSERT_EQ(static_cast<int>(col.size()), n);
        double got = 0;
        std::vector<char> used(m, 0);
        int assigned = 0;
        for (int r = 0; r < n; ++r) {
            if (col[r] < 0) continue;
            ASSERT_LT(col[r], m);
            ASSERT_FALSE(used[col[r]]) << "column used twice, trial " << trial;
            used[col[r]] = 1;
            got += w[static_cast<std::size_t>(r) * m + col[r]];
            ++assigned;
        }
        EXPECT_EQ(assigned, std::min(n, m)) << "trial " << trial;
        // Brute force: every injective map of the smaller side into the larger.
        double best = -1;
        const int small = std::min(n, m), large = std::max(n, m);
        std::vector<int> perm(large);
        std::iota(perm.begin(), perm.end(), 0);
        do {
            double s = 0;
            for (int k = 0; k < small; ++k)
                s += n <= m ? w[static_cast<std::size_t>(k) * m + perm[k]] : w[static_cast<std::size_t>(perm[k]) * m + k];
            best = std::max(best, s);
        } while (std::next_permutation(perm.begin(), perm.end()));
        EXPECT_NEAR(got, best, 1e-12) << "trial " << trial << " (" << n << "x" << m << ")";
    }
}

TEST(ScoreAssign, EmptyAndDegenerate) {
    EXPECT_TRUE(ks::score::assign_max_weight({}, 0, 0).empty());
    EXPECT_EQ(ks::score::assign_max_weight({}, 2, 0), (std::vector<int>{-1, -1}));
    EXPECT_EQ(ks::score::assign_max_weight({}, 0, 3).size(), 0u);
    // The diagonal is not the best: 0.9 + 0.8 beats 1.0 + 0.
    EXPECT_EQ(ks::score::assign_max_weight({1.0, 0.9, 0.8, 0.0}, 2, 2), (std::vector<int>{1, 0}));
}

// ---- metrics -----------------------------------------------------------------------------------

TEST(ScoreCompare, GroundTruthAgainstItselfIsPerfect) {
    std::mt19937_64 rng(4);
    const Sorting gt = from_trains(three_units(rng));
    const auto r = ks::score::compare(gt, gt, kFs);
    ASSERT_EQ(r.gt.size(), 3u);
    EXPECT_EQ(r.delta_samples, 12);
    for (const auto& u : r.gt) {
        EXPECT_EQ(u.accuracy, 1.0) << "unit " << u.id;
        EXPECT_EQ(u.recall, 1.0);
        EXPECT_EQ(u.precision, 1.0);
        ASSERT_TRUE(u.sorted_unit.has_value());
        EXPECT_EQ(*u.sorted_unit, u.id);
        EXPECT_TRUE(u.well_detected);
        EXPECT_EQ(u.tp, 1000);
        EXPECT_EQ(u.fn, 0);
        EXPECT_EQ(u.fp, 0);
    }
    EXPECT_EQ(r.n_well_detected, 3);
    EXPECT_EQ(r.n_false_positive, 0);
    EXPECT_EQ(r.n_redundant, 0);
    EXPECT_EQ(r.n_overmerged, 0);
    EXPECT_EQ(r.n_bad, 0);
    EXPECT_EQ(r.mean_accuracy, 1.0);
    EXPECT_EQ(r.mean_accuracy_well, 1.0);
}

TEST(ScoreCompare, DroppingOneSpikeInFiveGivesRecallPointEight) {
    std::mt19937_64 rng(5);
    const auto units = three_units(rng);
    std::vector<std::pair<int64_t, std::vector<int64_t>>> kept;
    for (const auto& [id, tr] : units) {
        std::vector<int64_t> k;
        for (std::size_t i = 0; i < tr.size(); ++i)
            if (i % 5 != 2) k.push_back(tr[i]);
        kept.push_back({id + 100, k});  // other ids: pairing must not rely on equal ids
    }
    const auto r = ks::score::compare(from_trains(units), from_trains(kept), kFs);
    for (const auto& u : r.gt) {
        EXPECT_DOUBLE_EQ(u.recall, 0.8) << "unit " << u.id;
        EXPECT_DOUBLE_EQ(u.precision, 1.0);
        EXPECT_DOUBLE_EQ(u.accuracy, 0.8);  // 800 / (1000 + 800 - 800)
        EXPECT_EQ(u.tp, 800);
        EXPECT_EQ(u.fn, 200);
        EXPECT_EQ(*u.sorted_unit, u.id + 100);
        EXPECT_TRUE(u.well_detected);  // 0.8 >= 0.8
    }
    EXPECT_DOUBLE_EQ(r.mean_recall, 0.8);
    EXPECT_EQ(r.n_well_detected, 3);
    // A stricter threshold drops them all.
    ks::score::Params p;
    p.well_detected_score = 0.81;
    EXPECT_EQ(ks::score::compare(from_trains(units), from_trains(kept), kFs, p).n_well_detected, 0);
}

TEST(ScoreCompare, JitterBeyondTheWindowRemovesEveryMatch) {
    std::mt19937_64 rng(6);
    const auto units = three_units(rng);
    auto shifted = [&](int64_t by) {
        std::vector<std::pair<int64_t, std::vector<int64_t>>> out;
        for (const auto& [id, tr] : units) {
            std::vector<int64_t> t = tr;
            for (std::size_t i = 0; i < t.size(); ++i) t[i] += (i % 2 ? by : -by);
            out.push_back({id, t});
        }
        return from_trains(out);
    };
    const auto inside = ks::score::compare(from_trains(units), shifted(12), kFs);  // 0.4 ms exactly
    for (const auto& u : inside.gt) EXPECT_EQ(u.accuracy, 1.0) << "unit " << u.id;

    const auto outside = ks::score::compare(from_trains(units), shifted(13), kFs);
    EXPECT_TRUE(outside.pairs.empty());
    for (const auto& u : outside.gt) {
        EXPECT_FALSE(u.sorted_unit.has_value()) << "unit " << u.id;
        EXPECT_EQ(u.tp, 0);
        EXPECT_EQ(u.accuracy, 0.0);
        EXPECT_EQ(u.recall, 0.0);
        EXPECT_EQ(u.fn, 1000);
    }
    EXPECT_EQ(outside.n_well_detected, 0);
    EXPECT_EQ(outside.n_false_positive, 3);
    EXPECT_EQ(outside.n_bad, 3);
    EXPECT_EQ(outside.mean_accuracy, 0.0);
    EXPECT_TRUE(std::isnan(outside.mean_accuracy_well));
    // A wider window (0.5 ms = 15 samples) finds them again.
    ks::score::Params p;
    p.delta_ms = 0.5;
    EXPECT_EQ(ks::score::compare(from_trains(units), shifted(13), kFs, p).n_well_detected, 3);
}

// A unit found whole but timed 16 samples (0.53 ms) early, beyond the tolerance: a false positive by
// the standard definitions, flagged as matching its true unit at that offset; one beyond the searched
// offset, or a unit of unrelated spikes, is not flagged.
TEST(ScoreCompare, FalsePositiveUnitsAtAConstantOffsetAreFlagged) {
    std::mt19937_64 rng(21);
    const auto units = three_units(rng);
    std::vector<std::pair<int64_t, std::vector<int64_t>>> sorted;
    std::vector<int64_t> early = units[0].second, late = units[1].second;
    for (int64_t& t : early) t -= 16;
    for (int64_t& t : late) t += 45;   // 1.5 ms: beyond the 1 ms searched
    sorted.push_back({7, early});
    sorted.push_back({8, late});
    sorted.push_back({9, train(rng, 500, 3, 60, 3000)});
    sorted.push_back({10, units[2].second});
    const auto r = ks::score::compare(from_trains(units), from_trains(sorted), kFs);
    EXPECT_EQ(r.n_well_detected, 1);
    EXPECT_EQ(r.n_false_positive, 3);
    EXPECT_EQ(r.n_false_positive_offset, 1);
    const auto& u7 = sorted_unit(r, 7);
    EXPECT_TRUE(u7.false_positive);
    ASSERT_TRUE(u7.offset_gt_unit.has_value());
    EXPECT_EQ(*u7.offset_gt_unit, 3);
    EXPECT_EQ(u7.offset_samples, -16);
    EXPECT_EQ(u7.offset_score, 1.0);
    EXPECT_FALSE(sorted_unit(r, 8).offset_gt_unit.has_value());
    EXPECT_FALSE(sorted_unit(r, 9).offset_gt_unit.has_value());
    EXPECT_FALSE(sorted_unit(r, 10).offset_gt_unit.has_value());   // paired, not a false positive
    // The standard figures do not depend on the diagnosis; 2 ms finds unit 8 too; 0 switches it off.
    ks::score::Params p;
    p.offset_ms = 2;
    const auto r2 = ks::score::compare(from_trains(units), from_trains(sorted), kFs, p);
    EXPECT_EQ(r2.n_false_positive, 3);
    EXPECT_EQ(r2.n_false_positive_offset, 2);
    EXPECT_EQ(sorted_unit(r2, 8).offset_samples, 45);
    p.offset_ms = 0;
    EXPECT_EQ(ks::score::compare(from_trains(units), from_trains(sorted), kFs, p).n_false_positive_offset, 0);
    // An exact tolerance (0 samples) still finds the exact offset.
    p = {};
    p.delta_ms = 0;
    const auto r0 = ks::score::compare(from_trains(units), from_trains(sorted), kFs, p);
    EXPECT_EQ(r0.n_false_positive_offset, 1);
    EXPECT_EQ(sorted_unit(r0, 7).offset_samples, -16);
}

TEST(ScoreCompare, TwoTrueUnitsMergedIsOvermerged) {
    std::mt19937_64 rng(7);
    const auto units = three_units(rng);  // 3, 17, 1000
    std::vector<int64_t> merged = units[0].second;
    merged.insert(merged.end(), units[1].second.begin(), units[1].second.end());
    const Sorting so = from_trains({{50, merged}, {51, units[2].second}});
    const auto r = ks::score::compare(from_trains(units), so, kFs);
    // 1000 matches of 1000 + 2000 spikes: agreement 0.5 with each true unit.
    EXPECT_TRUE(sorted_unit(r, 50).overmerged);
    EXPECT_FALSE(sorted_unit(r, 51).overmerged);
    EXPECT_EQ(r.n_overmerged, 1);
    const auto& a = gt_unit(r, 3);
    const auto& b = gt_unit(r, 17);
    EXPECT_NE(a.sorted_unit.has_value(), b.sorted_unit.has_value());  // only one can take unit 50
    const auto& paired = a.sorted_unit ? a : b;
    EXPECT_EQ(*paired.sorted_unit, 50);
    EXPECT_DOUBLE_EQ(paired.accuracy, 0.5);
    EXPECT_DOUBLE_EQ(paired.recall, 1.0);
    EXPECT_DOUBLE_EQ(paired.precision, 0.5);
    EXPECT_FALSE(paired.well_detected);
    EXPECT_EQ(r.n_well_detected, 1);  // unit 1000
    EXPECT_EQ(r.n_redundant, 0);
    EXPECT_EQ(r.n_false_positive, 0);
}

TEST(ScoreCompare, UnitSplitInTwoIsRedundant) {
    std::mt19937_64 rng(8);
    const auto units = three_units(rng);
    std::vector<int64_t> big, small;
    for (std::size_t i = 0; i < units[0].second.size(); ++i) (i % 5 < 3 ? big : small).push_back(units[0].second[i]);
    const Sorting so = from_trains({{7, big}, {8, small}, {9, units[1].second}, {10, units[2].second}});
    const auto r = ks::score::compare(from_trains(units), so, kFs);
    const auto& u = gt_unit(r, 3);
    EXPECT_EQ(*u.sorted_unit, 7);
    EXPECT_DOUBLE_EQ(u.accuracy, 0.6);
    EXPECT_DOUBLE_EQ(u.recall, 0.6);
    EXPECT_DOUBLE_EQ(u.precision, 1.0);
    const auto& s8 = sorted_unit(r, 8);
    EXPECT_FALSE(s8.gt_unit.has_value());
    EXPECT_EQ(*s8.best_gt_unit, 3);
    EXPECT_DOUBLE_EQ(s8.best_score, 0.4);
    EXPECT_TRUE(s8.redundant);
    EXPECT_FALSE(s8.false_positive);
    EXPECT_TRUE(s8.bad);
    EXPECT_EQ(r.n_redundant, 1);
    EXPECT_EQ(r.n_false_positive, 0);
    EXPECT_EQ(r.n_bad, 1);
    EXPECT_EQ(r.n_overmerged, 0);
    EXPECT_EQ(r.n_well_detected, 2);
    // A split too small to be redundant (agreement 0.1 < 0.2) is a false positive.
    std::vector<int64_t> big2, tiny;
    for (std::size_t i = 0; i < units[0].second.size(); ++i) (i % 10 ? big2 : tiny).push_back(units[0].second[i]);
    const auto r2 = ks::score::compare(from_trains(units), from_trains({{7, big2}, {8, tiny}}), kFs);
    EXPECT_DOUBLE_EQ(sorted_unit(r2, 8).best_score, 0.1);
    EXPECT_TRUE(sorted_unit(r2, 8).false_positive);
    EXPECT_FALSE(sorted_unit(r2, 8).redundant);
    EXPECT_EQ(r2.n_false_positive, 1);
}

TEST(ScoreCompare, AssignmentIsOptimalNotGreedy) {
    // Blocks of spike times, each shared by some true and some sorted units (true units 1, 2 share
    // spikes). Agreements: (1,10) 45/80, (1,20) 45/90, (2,10) 35/65, (2,20) 35/75 < 0.5.
    // Taking the best pair first, (1,10), would leave unit 2 unpaired; the optimum pairs
    // 1-20 and 2-10 (0.5 + 0.538 > 0.5625).
    struct Block { int n; bool g1, g2, s10, s20; };
    const std::vector<Block> blocks = {
        {5, 1, 0, 0, 0}, {10, 1, 0, 1, 0}, {10, 1, 0, 0, 1}, {5, 1, 0, 1, 1}, {5, 0, 1, 1, 1},
        {5, 1, 1, 0, 0}, {10, 1, 1, 1, 0}, {10, 1, 1, 0, 1}, {20, 1, 1, 1, 1}, {10, 0, 0, 0, 1}};
    std::vector<int64_t> g1, g2, s10, s20;
    int64_t t = 1000;
    for (const auto& b : blocks)
        for (int k = 0; k < b.n; ++k, t += 1000) {
            if (b.g1) g1.push_back(t);
            if (b.g2) g2.push_back(t);
            if (b.s10) s10.push_back(t + 3);
            if (b.s20) s20.push_back(t - 3);
        }
    const auto r = ks::score::compare(from_trains({{1, g1}, {2, g2}}), from_trains({{10, s10}, {20, s20}}), kFs);
    EXPECT_EQ(*gt_unit(r, 1).sorted_unit, 20);
    EXPECT_EQ(*gt_unit(r, 2).sorted_unit, 10);
    EXPECT_DOUBLE_EQ(gt_unit(r, 1).accuracy, 0.5);
    EXPECT_DOUBLE_EQ(gt_unit(r, 2).accuracy, 35.0 / 65.0);
    EXPECT_EQ(*gt_unit(r, 1).best_sorted_unit, 10);  // best match differs from the pairing
    EXPECT_EQ(r.n_overmerged, 2);                     // both sorted units exceed 0.2 with both
}

TEST(ScoreCompare, EmptySorting) {
    std::mt19937_64 rng(9);
    const auto r = ks::score::compare(from_trains(three_units(rng)), Sorting{}, kFs);
    EXPECT_EQ(r.gt.size(), 3u);
    EXPECT_TRUE(r.sorted.empty());
    for (const auto& u : r.gt) {
        EXPECT_FALSE(u.sorted_unit.has_value());
        EXPECT_EQ(u.accuracy, 0.0);
        EXPECT_EQ(u.fn, 1000);
    }
    EXPECT_EQ(r.mean_accuracy, 0.0);
    EXPECT_EQ(r.n_false_positive + r.n_redundant + r.n_overmerged + r.n_bad, 0);
    // And an empty ground truth: means are undefined (NaN), every sorted unit a false positive.
    const auto r2 = ks::score::compare(Sorting{}, from_trains(three_units(rng)), kFs);
    EXPECT_TRUE(std::isnan(r2.mean_accuracy));
    EXPECT_EQ(r2.n_false_positive, 3);
}

TEST(ScoreCompare, SortedUnitWithNoSpikesAndSpikesOfUnlistedUnits) {
    std::mt19937_64 rng(10);
    const auto units = three_units(rng);
    Sorting so = from_trains({{-1, units[0].second}, {42, {}}, {99, units[1].second}});
    EXPECT_EQ(so.units, (std::vector<int64_t>{-1, 42, 99}));
    so.units = {-1, 42};  // unit 99 left out (as --good-only does): its spikes are ignored
    const auto r = ks::score::compare(from_trains(units), so, kFs);
    ASSERT_EQ(r.sorted.size(), 2u);
    EXPECT_EQ(sorted_unit(r, 42).n_spikes, 0);
    EXPECT_TRUE(sorted_unit(r, 42).false_positive);
    EXPECT_EQ(*gt_unit(r, 3).sorted_unit, -1);
    EXPECT_FALSE(gt_unit(r, 17).sorted_unit.has_value());
    EXPECT_EQ(r.n_false_positive, 1);
}

TEST(ScoreCompare, PartialGroundTruthReportsNoUnitClasses) {
    std::mt19937_64 rng(11);
    const auto units = three_units(rng);
    ks::score::Params p;
    p.exhaustive_gt = false;
    const auto r = ks::score::compare(from_trains(units), from_trains({{1, {5, 6000, 90000}}}), kFs, p);
    EXPECT_EQ(r.n_false_positive, 0);
    EXPECT_FALSE(r.sorted[0].false_positive);
    EXPECT_FALSE(r.sorted[0].bad);
}

TEST(ScoreCompare, AgreementAndBestMatchAgainstHandCounts) {
    // gt unit 1: 10 spikes; sorted unit 2 hits 6 of them and adds 4 others: 6 / (10 + 10 - 6).
    std::vector<int64_t> g, s;
    for (int k = 0; k < 10; ++k) g.push_back(1000 * (k + 1));
    for (int k = 0; k < 6; ++k) s.push_back(1000 * (k + 1) + 5);
    for (int k = 0; k < 4; ++k) s.push_back(50000 + 1000 * k);
    const auto r = ks::score::compare(from_trains({{1, g}}), from_trains({{2, s}}), kFs);
    ASSERT_EQ(r.pairs.size(), 1u);
    EXPECT_EQ(r.pairs[0].matches, 6);
    EXPECT_DOUBLE_EQ(r.pairs[0].agreement, 6.0 / 14.0);
    // 0.43 < match_score 0.5: not paired; best match all the same.
    EXPECT_FALSE(r.gt[0].sorted_unit.has_value());
    EXPECT_EQ(*r.gt[0].best_sorted_unit, 2);
    // Unpaired, best match of its own best: neither redundant nor false positive, still bad.
    EXPECT_FALSE(r.sorted[0].redundant);
    EXPECT_FALSE(r.sorted[0].false_positive);
    EXPECT_TRUE(r.sorted[0].bad);
}

TEST(ScoreCompare, BadParamsAreUsageErrors) {
    ks::score::Params p;
    p.delta_ms = -1;
    EXPECT_EQ(exit_of([&] { (void)ks::score::compare({}, {}, kFs, p); }), ks::Exit::usage);
    p = {};
    p.well_detected_score = 1.5;
    EXPECT_NE(message_of([&] { (void)ks::score::compare({}, {}, kFs, p); }).find("--well-detected"), std::string::npos);
    p = {};
    p.offset_ms = -1;
    EXPECT_NE(message_of([&] { (void)ks::score::compare({}, {}, kFs, p); }).find("--offset-ms"), std::string::npos);
    EXPECT_EQ(exit_of([&] { (void)ks::score::compare({}, {}, 0.0, {}); }), ks::Exit::usage);
    EXPECT_EQ(exit_of([&] { (void)ks::score::compare({}, {}, std::nan(""), {}); }), ks::Exit::usage);
}

// ---- readers -----------------------------------------------------------------------------------

class ScoreFolders : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::path(::testing::TempDir()) /
               ("ks_score_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    void text(const fs::path& p, const std::string& s) {
        fs::create_directories(p.parent_path());
        std::ofstream(p) << s;
    }
    fs::path dir_;
};

TEST_F(ScoreFolders, GroundTruthFromSimFolderOrItsGtFolder) {
    fs::create_directories(dir_ / "gt");
    ks::write_npy((dir_ / "gt" / "spike_times.npy").string(), std::vector<int64_t>{10, 20, 30});
    ks::write_npy((dir_ / "gt" / "spike_clusters.npy").string(), std::vector<int32_t>{4, 2, 4});
    text(dir_ / "params.json", "{\"fs\": 25000, \"n_chan_bin\": 4}");
    for (const fs::path& p : {dir_, dir_ / "gt"}) {
        const auto g = ks::score::read_ground_truth(p.string());
        EXPECT_EQ(g.fs_hz, 25000.0) << p;
        EXPECT_EQ(g.sorting.units, (std::vector<int64_t>{2, 4}));
        EXPECT_EQ(g.sorting.t_samples, (std::vector<int64_t>{10, 20, 30}));
        EXPECT_EQ(fs::path(g.spikes_dir), dir_ / "gt");
    }
    text(dir_ / "params.json", "{\"fs\": -3}");
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(dir_.string()); }).find("params.json"), std::string::npos);
    text(dir_ / "params.json", "{\"n_chan_bin\": 4}");
    EXPECT_EQ(ks::score::read_ground_truth(dir_.string()).fs_hz, 0.0);  // the tool then needs --fs
}

TEST_F(ScoreFolders, GroundTruthErrorsNameThePath) {
    const std::string missing = (dir_ / "nope").string();
    EXPECT_EQ(exit_of([&] { ks::score::read_ground_truth(missing); }), ks::Exit::usage);
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(missing); }).find(missing), std::string::npos);
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(dir_.string()); }).find("gt/spike_times.npy"), std::string::npos);
    fs::create_directories(dir_ / "gt");
    ks::write_npy((dir_ / "gt" / "spike_times.npy").string(), std::vector<int64_t>{10, 20, 30});
    ks::write_npy((dir_ / "gt" / "spike_clusters.npy").string(), std::vector<int32_t>{4, 2});
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(dir_.string()); }).find("2 spikes"), std::string::npos);
    ks::write_npy((dir_ / "gt" / "spike_times.npy").string(), std::vector<float>{10, 20});
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(dir_.string()); }).find("integer dtype"), std::string::npos);
    ks::write_npy((dir_ / "gt" / "spike_times.npy").string(), std::vector<int64_t>{10, -20});
    EXPECT_NE(message_of([&] { ks::score::read_ground_truth(dir_.string()); }).find("negative"), std::string::npos);
}

TEST_F(ScoreFolders, PhyFolderLabelsAndGoodOnly) {
    // Kilosort 2 style: uint64 (N, 1) times; clusters 0, 1, 5 (not contiguous).
    const std::vector<uint64_t> t = {100, 200, 300, 400, 500};
    ks::write_npy((dir_ / "spike_times.npy").string(), {5, 1}, t.data());
    ks::write_npy((dir_ / "spike_clusters.npy").string(), std::vector<uint32_t>{0, 1, 5, 5, 0});
    EXPECT_EQ(exit_of([&] { ks::score::read_sorting_folder(dir_.string(), true); }), ks::Exit::usage);  // no TSV

    text(dir_ / "cluster_KSLabel.tsv", "cluster_id\tKSLabel\n0\tgood\n1\tmua\n5\tgood\n");
    auto f = ks::score::read_sorting_folder(dir_.string(), true);
    EXPECT_EQ(f.sorting.units, (std::vector<int64_t>{0, 5}));
    EXPECT_EQ(f.all_units, (std::vector<int64_t>{0, 1, 5}));
    EXPECT_EQ(f.labels_from, "cluster_KSLabel.tsv");
    EXPECT_EQ(f.sorting.t_samples, (std::vector<int64_t>{100, 200, 300, 400, 500}));

    // The user's curation wins; 'unsorted' falls back to Kilosort's label.
    text(dir_ / "cluster_group.tsv", "cluster_id\tgroup\n0\tnoise\n1\tgood\n5\tunsorted\n");
    f = ks::score::read_sorting_folder(dir_.string(), true);
    EXPECT_EQ(f.sorting.units, (std::vector<int64_t>{1, 5}));
    EXPECT_EQ(f.labels, (std::vector<std::string>{"noise", "good", "good"}));
    EXPECT_EQ(f.labels_from, "cluster_group.tsv+cluster_KSLabel.tsv");

    f = ks::score::read_sorting_folder(dir_.string(), false);
    EXPECT_EQ(f.sorting.units, (std::vector<int64_t>{0, 1, 5}));
}

TEST_F(ScoreFolders, KilosortGroupFileWithKSLabelHeaderAndWorkFolder) {
    fs::create_directories(dir_ / "phy");
    ks::write_npy((dir_ / "phy" / "spike_times.npy").string(), std::vector<int64_t>{1, 2, 3});
    ks::write_npy((dir_ / "phy" / "spike_templates.npy").string(), std::vector<int32_t>{0, 1, 1});
    text(dir_ / "phy" / "cluster_group.tsv", "cluster_id\tKSLabel\r\n0\tmua\r\n1\tgood\r\n");
    const auto f = ks::score::read_sorting_folder(dir_.string(), true);  // work folder: phy/ inside
    EXPECT_EQ(fs::path(f.spikes_dir), dir_ / "phy");
    EXPECT_EQ(f.sorting.units, (std::vector<int64_t>{1}));
}

TEST_F(ScoreFolders, SortingErrors) {
    EXPECT_NE(message_of([&] { ks::score::read_sorting_folder(dir_.string(), false); }).find("spike_times.npy"),
              std::string::npos);
    ks::write_npy((dir_ / "spike_times.npy").string(), std::vector<int64_t>{1, 2, 3});
    EXPECT_NE(message_of([&] { ks::score::read_sorting_folder(dir_.string(), false); }).find("spike_clusters.npy"),
              std::string::npos);
    const std::vector<int32_t> two_d = {0, 1, 2, 3, 4, 5};
    ks::write_npy((dir_ / "spike_clusters.npy").string(), {3, 2}, two_d.data());
    EXPECT_NE(message_of([&] { ks::score::read_sorting_folder(dir_.string(), false); }).find("expected (N,)"),
              std::string::npos);
    ks::write_npy((dir_ / "spike_clusters.npy").string(), std::vector<int32_t>{0, 1, 1});
    text(dir_ / "cluster_KSLabel.tsv", "cluster_id\tKSLabel\n0\tgood\nx\tmua\n");
    const std::string m = message_of([&] { ks::score::read_sorting_folder(dir_.string(), true); });
    EXPECT_NE(m.find("cluster_KSLabel.tsv: line 3"), std::string::npos) << m;
    text(dir_ / "cluster_KSLabel.tsv", "cluster_id\tContamPct\n0\t1.0\n");
    EXPECT_NE(message_of([&] { ks::score::read_sorting_folder(dir_.string(), true); }).find("'KSLabel'"),
              std::string::npos);
}

TEST_F(ScoreFolders, ReportsCarryTheNumbers) {
    std::mt19937_64 rng(12);
    const auto units = three_units(rng);
    const auto r = ks::score::compare(from_trains(units), from_trains({{5, units[0].second}}), kFs);
    ks::score::ReportInfo info;
    info.gt_path = "sim";
    info.sorting_path = "phy";
    const std::string table = ks::score::format_table(r, info);
    EXPECT_NE(table.find("well detected"), std::string::npos);
    EXPECT_NE(table.find("1.000"), std::string::npos);
    const std::string json = ks::score::to_json(r, info);
    EXPECT_NE(json.find("\"format\": \"ks-score\""), std::string::npos) << json.substr(0, 200);
    EXPECT_NE(json.find("\"n_well_detected\": 1"), std::string::npos);
}
