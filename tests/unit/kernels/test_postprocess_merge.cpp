// The final clustering's merges beyond Kilosort4 (kernels/postprocess.hpp): pieces of one drifting neuron
// firing at different times (the fragment pass of ccg_merge) and units that are the same spikes found
// twice (redundant_merge), on spike trains whose answer is known, with the cases that must not merge.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "ks/kernels/postprocess.hpp"
#include "ks/kernels/template_match.hpp"

namespace {

using ks::post::MergeParams;
using ks::post::RedundantParams;

constexpr double kFs = 30000;
constexpr int kC = 4, kP = 3, kNt = 61;

// Spike times (samples) of a neuron firing at `rate` Hz over [t0, t1) s with a 2 ms dead time.
std::vector<int64_t> neuron(double rate, double t0, double t1, std::mt19937_64& rng) {
    std::exponential_distribution<double> e(rate);
    std::vector<int64_t> t;
    for (double x = t0 + e(rng); x < t1; x += 0.002 + e(rng)) t.push_back(static_cast<int64_t>(x * kFs));
    return t;
}

// A temporal basis (P x nt) of smooth, distinct shapes, and a template per cluster on the first channels.
std::vector<float> basis() {
    std::vector<float> w(static_cast<size_t>(kP) * kNt);
    for (int p = 0; p < kP; ++p)
        for (int t = 0; t < kNt; ++t) {
            const double x = (t - 20.0) / 6.0;
            w[p * kNt + t] = static_cast<float>(std::exp(-x * x / 2) * std::cos(p * x));
        }
    return w;
}

std::vector<float> templates(const std::vector<std::vector<float>>& per_cluster) {
    std::vector<float> U;
    for (const auto& u : per_cluster) U.insert(U.end(), u.begin(), u.end());
    return U;
}

// Channel c carries amplitude amp[c] of the first basis shape.
std::vector<float> tmpl(std::vector<float> amp) {
    std::vector<float> u(static_cast<size_t>(kC) * kP, 0.f);
    for (int c = 0; c < kC; ++c) u[c * kP] = amp[c];
    return u;
}

void add(std::vector<int64_t>* times, std::vector<int32_t>* labels, const std::vector<int64_t>& t, int label) {
    times->insert(times->end(), t.begin(), t.end());
    labels->insert(labels->end(), t.size(), label);
}

TEST(TimeOverlap, SameFiringIsOneAndDisjointFiringIsZero) {
    std::vector<double> a, b, c;
    for (int i = 0; i < 1000; ++i) a.push_back(i * 0.12), b.push_back(i * 0.12 + 0.05);
    for (int i = 0; i < 500; ++i) c.push_back(60 + i * 0.12);
    EXPECT_NEAR(ks::post::time_overlap(a, b, 0, 120, 24), 1.0, 0.01);
    std::vector<double> first(a.begin(), a.begin() + 500);
    EXPECT_NEAR(ks::post::time_overlap(first, c, 0, 120, 24), 0.0, 1e-12);
    EXPECT_NEAR(ks::post::time_overlap(a, c, 0, 120, 24), 0.5, 0.01);
}

// A neuron that drifted: the clustering gave its first and second minute as two units with the same
// template. Kilosort4's test cannot merge them (no correlogram); the fragment pass does.
TEST(FragmentMerge, JoinsPiecesFiringAtDifferentTimes) {
    std::mt19937_64 rng(1);
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, neuron(8, 0, 60, rng), 0);
    add(&times, &labels, neuron(8, 60, 120, rng), 1);
    const std::vector<float> w = basis();
    MergeParams p;
    p.fs = kFs;
    p.fragment_similarity = 0;   // Kilosort4's merges only
    std::vector<float> U = templates({tmpl({5, 3, 1, 0}), tmpl({5, 3, 1, 0})});
    ks::post::MergeResult r = ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p);
    EXPECT_EQ(r.K, 2);
    EXPECT_EQ(r.n_merges, 0);

    p.fragment_similarity = 0.8;
    U = templates({tmpl({5, 3, 1, 0}), tmpl({5, 3, 1, 0})});
    r = ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p);
    EXPECT_EQ(r.K, 1);
    EXPECT_EQ(r.n_merges, 1);
    EXPECT_EQ(r.n_fragment_merges, 1);
    EXPECT_EQ(r.into[0], 0);
    EXPECT_EQ(r.into[1], 0);
    EXPECT_EQ(r.shift[1], 0);   // same template: no lag
    EXPECT_EQ(U.size(), static_cast<size_t>(kC) * kP);
}

TEST(FragmentMerge, KeepsNeuronsFiringTogetherAndUnlikeTemplatesApart) {
    std::mt19937_64 rng(2);
    const std::vector<float> w = basis();
    MergeParams p;
    p.fs = kFs;
    p.fragment_similarity = 0.8;
    {
        // Two neurons with the same template firing throughout: their firing overlaps and their
        // correlogram has no refractory dip.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(10, 0, 120, rng), 0);
        add(&times, &labels, neuron(10, 0, 120, rng), 1);
        std::vector<float> U = templates({tmpl({5, 3, 1, 0}), tmpl({5, 3, 1, 0})});
        const ks::post::MergeResult r = ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p);
        EXPECT_EQ(r.K, 2);
    }
    {
        // Disjoint in time but on other channels: not one neuron.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(8, 0, 60, rng), 0);
        add(&times, &labels, neuron(8, 60, 120, rng), 1);
        std::vector<float> U = templates({tmpl({5, 3, 0, 0}), tmpl({0, 0, 3, 5})});
        const ks::post::MergeResult r = ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p);
        EXPECT_EQ(r.K, 2);
    }
}

// A single column of contacts 20 µm apart, and a neuron's template on it: a Gaussian footprint
// (sd 15 µm) centred at depth y0 carrying the first basis shape.
constexpr int kColumn = 16;
MergeParams column_params() {
    MergeParams p;
    p.fs = kFs;
    p.fragment_similarity = 0.8;
    for (int c = 0; c < kColumn; ++c) p.xc.push_back(0), p.yc.push_back(20.0 * c), p.kcoords.push_back(0);
    return p;
}
// basis() with each shape scaled to unit norm, so that similarities are cosines (at most 1).
std::vector<float> unit_basis() {
    std::vector<float> w = basis();
    for (int p = 0; p < kP; ++p) {
        double n = 0;
        for (int t = 0; t < kNt; ++t) n += static_cast<double>(w[p * kNt + t]) * w[p * kNt + t];
        for (int t = 0; t < kNt; ++t) w[p * kNt + t] = static_cast<float>(w[p * kNt + t] / std::sqrt(n));
    }
    return w;
}
std::vector<float> column_template(double y0) {
    std::vector<float> u(static_cast<size_t>(kColumn) * kP, 0.f);
    for (int c = 0; c < kColumn; ++c) {
        const double d = (20.0 * c - y0) / 15.0;
        u[c * kP] = static_cast<float>(10 * std::exp(-d * d / 2));
    }
    return u;
}

TEST(PairSimilarity, IsTheTemplateSimilarityAndTheIdentityMapChangesNothing) {
    const std::vector<float> w = unit_basis();
    const std::vector<float> U = templates({column_template(100), column_template(125), column_template(300)});
    std::vector<float> sim;
    std::vector<int> lag;
    ks::match::template_similarity(U.data(), 3, kColumn, kP, w.data(), kNt, &sim, &lag);   // row 0: [0, 3)
    const std::vector<double> lp = ks::match::pc_lag_products(w.data(), kP, kNt);
    const size_t D = static_cast<size_t>(kColumn) * kP;
    for (int b = 0; b < 3; ++b) {
        int l = 99;
        EXPECT_NEAR(ks::post::pair_similarity(U.data(), U.data() + b * D, kColumn, kP, lp, kNt, &l), sim[b], 1e-5);
        EXPECT_EQ(l, lag[b]);
    }
    // The identity map changes nothing.
    std::vector<float> eye(static_cast<size_t>(kColumn) * kColumn, 0.f);
    for (int c = 0; c < kColumn; ++c) eye[c * kColumn + c] = 1;
    int l = 99;
    const std::vector<float> same = ks::post::map_template(eye.data(), U.data(), kColumn, kP);
    EXPECT_NEAR(ks::post::pair_similarity(same.data(), U.data() + D, kColumn, kP, lp, kNt, &l), sim[1], 1e-5);
}

// A neuron whose first and second minute were clustered apart 25 µm from each other (residual drift): the
// unshifted templates are too unlike for the fragment pass; compared under vertical shifts they are one.
TEST(FragmentMerge, JoinsPiecesOfANeuronThatMovedUnderAShift) {
    std::mt19937_64 rng(6);
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, neuron(8, 0, 60, rng), 0);
    add(&times, &labels, neuron(6, 60, 120, rng), 1);
    const std::vector<float> w = unit_basis();
    MergeParams p = column_params();
    std::vector<float> U = templates({column_template(140), column_template(165)});
    std::vector<float> sim;
    std::vector<int> lag;
    ks::match::template_similarity(U.data(), 2, kColumn, kP, w.data(), kNt, &sim, &lag);
    ASSERT_LT(sim[1], 0.8);   // the premise: unshifted, below fragment_similarity
    p.fragment_max_shift_um = 0;
    ks::post::MergeResult r = ks::post::ccg_merge(times, labels, 2, U, kColumn, kP, w.data(), kNt, p);
    EXPECT_EQ(r.K, 2);

    p.fragment_max_shift_um = 40;
    U = templates({column_template(140), column_template(165)});
    r = ks::post::ccg_merge(times, labels, 2, U, kColumn, kP, w.data(), kNt, p);
    EXPECT_EQ(r.K, 1);
    EXPECT_EQ(r.n_fragment_merges, 1);
    EXPECT_EQ(r.n_shifted_fragment_merges, 1);
    EXPECT_EQ(r.into[1], 0);
    EXPECT_EQ(r.shift[1], 0);
    // The absorbed template was moved back onto the larger piece's depth: the merged one peaks there.
    int peak = 0;
    for (int c = 0; c < kColumn; ++c)
        if (std::fabs(U[c * kP]) > std::fabs(U[peak * kP])) peak = c;
    EXPECT_EQ(peak, 7);   // 140 µm
}

TEST(FragmentMerge, AShiftDoesNotJoinNeuronsFiringTogetherOrFarApart) {
    std::mt19937_64 rng(7);
    const std::vector<float> w = unit_basis();
    MergeParams p = column_params();
    p.fragment_max_shift_um = 40;
    {
        // Two neurons 25 µm apart firing throughout: their firing overlaps.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(8, 0, 120, rng), 0);
        add(&times, &labels, neuron(8, 0, 120, rng), 1);
        std::vector<float> U = templates({column_template(140), column_template(165)});
        EXPECT_EQ(ks::post::ccg_merge(times, labels, 2, U, kColumn, kP, w.data(), kNt, p).K, 2);
    }
    {
        // Firing at different times but 100 µm apart: beyond the largest shift.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(8, 0, 60, rng), 0);
        add(&times, &labels, neuron(8, 60, 120, rng), 1);
        std::vector<float> U = templates({column_template(100), column_template(200)});
        EXPECT_EQ(ks::post::ccg_merge(times, labels, 2, U, kColumn, kP, w.data(), kNt, p).K, 2);
    }
    {
        // The same 25 µm apart on two shanks: no shift crosses shanks.
        MergeParams q = p;
        for (int c = kColumn / 2; c < kColumn; ++c) q.kcoords[c] = 1, q.xc[c] = 250, q.yc[c] -= 160;
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(8, 0, 60, rng), 0);
        add(&times, &labels, neuron(8, 60, 120, rng), 1);
        // Unit 0 near the top of shank 0, unit 1 near the bottom of shank 1 at about the same depth.
        std::vector<float> U = templates({column_template(120), column_template(180)});
        EXPECT_EQ(ks::post::ccg_merge(times, labels, 2, U, kColumn, kP, w.data(), kNt, q).K, 2);
    }
}

RedundantParams redundant_params() {
    RedundantParams p;
    p.fs = kFs;
    return p;
}

// Unit 1 is unit 0 found a second time (70% of unit 0's spikes, 5 samples later, with a little jitter)
// plus a few spikes of its own: it joins unit 0, shifted back by the lag, and its copies are dropped.
TEST(RedundantMerge, JoinsTheSameNeuronFoundTwice) {
    std::mt19937_64 rng(3);
    const std::vector<int64_t> a = neuron(10, 0, 100, rng);
    std::vector<int64_t> b;
    std::uniform_real_distribution<double> u(0, 1);
    std::uniform_int_distribution<int> jitter(-2, 2);
    int copies = 0;
    for (int64_t t : a)
        if (u(rng) < 0.7) b.push_back(t + 5 + jitter(rng)), ++copies;
    const std::vector<int64_t> own = neuron(1, 0, 100, rng);
    b.insert(b.end(), own.begin(), own.end());
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, a, 0);
    add(&times, &labels, b, 1);
    const ks::post::RedundantResult r =
        ks::post::redundant_merge(times, labels, 2, {0, 0}, {100, 140}, {10, 4}, redundant_params());
    EXPECT_EQ(r.merge.K, 1);
    EXPECT_EQ(r.merge.n_merges, 1);
    EXPECT_EQ(r.merge.into[1], 0);
    EXPECT_EQ(r.merge.shift[1], -5);
    ASSERT_EQ(r.merge.kept.size(), 1u);
    EXPECT_EQ(r.merge.kept[0], 0);
    EXPECT_EQ(r.n_dropped_pairs, 0);
    // Every copy is dropped (it lies within 1 ms of its original), and none of unit 0's spikes.
    int64_t dropped_a = 0, dropped_b = 0;
    for (size_t i = 0; i < times.size(); ++i) (labels[i] == 0 ? dropped_a : dropped_b) += r.drop[i];
    EXPECT_EQ(dropped_a, 0);
    EXPECT_GE(dropped_b, copies);
    EXPECT_LE(dropped_b, copies + 5);   // and at most a few of its own that fell by chance that close
    EXPECT_EQ(r.n_dropped, dropped_b);
}

// Unit 1 is another neuron (1000 spikes of its own) that also took 300 of unit 0's 400 spikes: those
// are dropped from it and nothing is merged.
TEST(RedundantMerge, DropsOnlyTheSharedSpikesOfAnotherNeuron) {
    std::mt19937_64 rng(4);
    const std::vector<int64_t> a = neuron(4, 0, 100, rng);
    std::vector<int64_t> b = neuron(10, 0, 100, rng);
    std::vector<char> copied(a.size(), 0);
    std::uniform_real_distribution<double> u(0, 1);
    int copies = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (u(rng) < 0.75) b.push_back(a[i]), copied[i] = 1, ++copies;
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, a, 0);
    add(&times, &labels, b, 1);
    const ks::post::RedundantResult r =
        ks::post::redundant_merge(times, labels, 2, {0, 0}, {100, 100}, {10, 4}, redundant_params());
    EXPECT_EQ(r.merge.K, 2);
    EXPECT_EQ(r.merge.n_merges, 0);
    EXPECT_EQ(r.n_dropped_pairs, 1);
    int64_t dropped_a = 0, dropped_b = 0;
    for (size_t i = 0; i < times.size(); ++i) (labels[i] == 0 ? dropped_a : dropped_b) += r.drop[i];
    EXPECT_EQ(dropped_a, 0);
    EXPECT_GE(dropped_b, copies);
    EXPECT_LE(dropped_b, copies + 5);
}

// Unit 1 holds copies of 70% of unit 0's spikes plus a second neuron's 5 Hz train: the copies are most
// of unit 1, but its other spikes fire inside unit 0's refractory period, so with the refractory test
// (ccg_threshold) it does not join: it loses the copies and what is left is marked a residue. Without
// the test (ccg_threshold 0) it joins as the copies alone would have it.
TEST(RedundantMerge, AUnitWhoseOtherSpikesBreakTheOwnersRefractoryPeriodDoesNotJoin) {
    std::mt19937_64 rng(8);
    const std::vector<int64_t> a = neuron(10, 0, 100, rng);
    std::vector<int64_t> b;
    std::uniform_real_distribution<double> u(0, 1);
    int copies = 0;
    for (int64_t t : a)
        if (u(rng) < 0.7) b.push_back(t + 3), ++copies;
    const std::vector<int64_t> other = neuron(5, 0, 100, rng);
    b.insert(b.end(), other.begin(), other.end());
    ASSERT_GT(copies, static_cast<int>(b.size()) / 2);   // the premise: the copies are most of unit 1
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, a, 0);
    add(&times, &labels, b, 1);
    RedundantParams p = redundant_params();
    p.ccg_threshold = 0.25;
    ks::post::RedundantResult r = ks::post::redundant_merge(times, labels, 2, {0, 0}, {100, 120}, {10, 4}, p);
    EXPECT_EQ(r.merge.K, 2);
    EXPECT_EQ(r.merge.n_merges, 0);
    EXPECT_EQ(r.n_dropped_pairs, 1);
    ASSERT_EQ(r.residue.size(), 2u);
    EXPECT_EQ(r.residue[0], 0);
    EXPECT_EQ(r.residue[1], 1);
    EXPECT_EQ(r.n_residues, 1);
    int64_t dropped_a = 0, dropped_b = 0;
    for (size_t i = 0; i < times.size(); ++i) (labels[i] == 0 ? dropped_a : dropped_b) += r.drop[i];
    EXPECT_EQ(dropped_a, 0);
    EXPECT_GE(dropped_b, copies);
    EXPECT_LE(dropped_b, copies + 5);

    p.ccg_threshold = 0;
    r = ks::post::redundant_merge(times, labels, 2, {0, 0}, {100, 120}, {10, 4}, p);
    EXPECT_EQ(r.merge.K, 1);
    EXPECT_EQ(r.n_residues, 0);
}

// Unit 1 is unit 0's copies plus a few of unit 0's spikes that only it caught (they keep unit 0's
// refractory period): with the refractory test it still joins.
TEST(RedundantMerge, AUnitWhoseOtherSpikesAreTheOwnersMissedOnesJoins) {
    std::mt19937_64 rng(9);
    const std::vector<int64_t> all = neuron(10, 0, 100, rng);
    std::vector<int64_t> a, b;
    std::uniform_real_distribution<double> u(0, 1);
    for (int64_t t : all) {
        const double x = u(rng);
        if (x < 0.85) a.push_back(t);
        if (x < 0.6 || x >= 0.85) b.push_back(t + 3);   // copies of 0.6, and the 0.15 that unit 0 missed
    }
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    add(&times, &labels, a, 0);
    add(&times, &labels, b, 1);
    RedundantParams p = redundant_params();
    p.ccg_threshold = 0.25;
    const ks::post::RedundantResult r = ks::post::redundant_merge(times, labels, 2, {0, 0}, {100, 120}, {10, 4}, p);
    EXPECT_EQ(r.merge.K, 1);
    EXPECT_EQ(r.merge.into[1], 0);
    EXPECT_EQ(r.n_residues, 0);
}

TEST(RedundantMerge, LeavesIndependentAndDistantUnitsAlone) {
    std::mt19937_64 rng(5);
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    const std::vector<int64_t> a = neuron(10, 0, 100, rng);
    add(&times, &labels, a, 0);
    add(&times, &labels, neuron(10, 0, 100, rng), 1);   // independent, same place
    add(&times, &labels, a, 2);                          // unit 0 again, but 500 µm away: not compared
    const ks::post::RedundantResult r =
        ks::post::redundant_merge(times, labels, 3, {0, 0, 0}, {100, 120, 600}, {10, 8, 6}, redundant_params());
    EXPECT_EQ(r.merge.K, 3);
    EXPECT_EQ(r.n_dropped, 0);
    for (int k = 0; k < 3; ++k) EXPECT_EQ(r.merge.into[k], k);
}

}  // namespace

// Kilosort4's merge with its normal approximation joins two small units whose correlogram is empty near
// zero by chance (ccg Ccg.MergeTestWithTheExactTailNeedsEvidence's pair); with the exact tail it does not.
TEST(CcgMerge, TheExactTailKeepsSmallUnitsWithoutEvidenceApart) {
    std::vector<int64_t> a, b, times;
    std::vector<int32_t> labels;
    for (int k = 0; k < 70; ++k) {
        a.push_back(30000LL * k);
        b.push_back(30000LL * k + 9000);
        b.push_back(30000LL * k + 21000);
    }
    add(&times, &labels, a, 0);
    add(&times, &labels, b, 1);
    const std::vector<float> w = basis();
    MergeParams p;
    p.fs = kFs;
    std::vector<float> U = templates({tmpl({5, 3, 1, 0}), tmpl({5, 3, 1, 0})});
    EXPECT_EQ(ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p).K, 1);
    p.exact_tail = true;
    U = templates({tmpl({5, 3, 1, 0}), tmpl({5, 3, 1, 0})});
    EXPECT_EQ(ks::post::ccg_merge(times, labels, 2, U, kC, kP, w.data(), kNt, p).K, 2);
}

namespace {

ks::post::PieceParams piece_params() {
    ks::post::PieceParams p;
    p.fs = kFs;
    p.similarity = 0.9;
    for (int c = 0; c < kColumn; ++c) p.xc.push_back(0), p.yc.push_back(20.0 * c), p.kcoords.push_back(0);
    return p;
}

// One neuron's spikes dealt to two units at random, `fraction` of them to unit 1.
void split_neuron(double fraction, std::mt19937_64& rng, std::vector<int64_t>* times, std::vector<int32_t>* labels) {
    std::uniform_real_distribution<double> u(0, 1);
    for (int64_t t : neuron(8, 0, 120, rng)) {
        times->push_back(t);
        labels->push_back(u(rng) < fraction ? 1 : 0);
    }
}

}  // namespace

// A neuron the clustering cut into a large unit and a small one 20 µm apart (motion), firing interleaved:
// the small one never fires within 1.5 ms of the large one where independent neurons would about 3
// times, and its template is the large one's moved by 20 µm: a probable piece.
TEST(ProbablePieces, ASmallPieceOfALargerGoodUnitIsFound) {
    std::mt19937_64 rng(11);
    std::vector<int64_t> times;
    std::vector<int32_t> labels;
    split_neuron(0.15, rng, &times, &labels);
    const std::vector<float> w = unit_basis();
    const std::vector<float> U = templates({column_template(140), column_template(160)});
    ks::post::PieceParams p = piece_params();
    std::vector<int32_t> parent = ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p);
    EXPECT_EQ(parent[0], -1);
    EXPECT_EQ(parent[1], 0);
    // Unshifted the templates are less alike than `similarity`: no piece without the shifts.
    p.max_shift_um = 0;
    parent = ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p);
    EXPECT_EQ(parent[1], -1);
    // Off, and no larger unit that is good: nothing.
    p = piece_params();
    p.similarity = 0;
    EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], -1);
    p = piece_params();
    EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {0, 1}, p)[1], -1);
}

TEST(ProbablePieces, TwinNeuronsTooFewSpikesAndUnlikeTemplatesAreNotPieces) {
    std::mt19937_64 rng(12);
    const std::vector<float> w = unit_basis();
    const ks::post::PieceParams p = piece_params();
    {
        // Two independent neurons with the same template: they fire within 1.5 ms of each other as often
        // as chance has it.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        add(&times, &labels, neuron(8, 0, 120, rng), 0);
        add(&times, &labels, neuron(2, 0, 120, rng), 1);
        const std::vector<float> U = templates({column_template(140), column_template(140)});
        EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], -1);
    }
    {
        // A piece of 15 spikes: independent firing would give 0.3 coincidences, so none seen says nothing.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        split_neuron(0.016, rng, &times, &labels);
        ASSERT_LT(std::count(labels.begin(), labels.end(), 1), 25);
        const std::vector<float> U = templates({column_template(140), column_template(140)});
        EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], -1);
    }
    {
        // One neuron's spikes, but templates 100 µm apart: beyond any shift (the distance filter).
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        split_neuron(0.15, rng, &times, &labels);
        const std::vector<float> U = templates({column_template(100), column_template(200)});
        EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], -1);
    }
    {
        // The same place, another waveform (the third basis shape): below `similarity` at every shift.
        std::vector<int64_t> times;
        std::vector<int32_t> labels;
        split_neuron(0.15, rng, &times, &labels);
        std::vector<float> other = column_template(140);
        for (int c = 0; c < kColumn; ++c) std::swap(other[c * kP], other[c * kP + 2]);
        const std::vector<float> U = templates({column_template(140), other});
        const std::vector<double> lp = ks::match::pc_lag_products(w.data(), kP, kNt);
        int l = 0;
        ASSERT_LT(ks::post::pair_similarity(U.data() + kColumn * kP, U.data(), kColumn, kP, lp, kNt, &l), 0.9);
        EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, U, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], -1);
        // The same templates for both: found (the premise of the case above).
        const std::vector<float> same = templates({column_template(140), column_template(140)});
        EXPECT_EQ(ks::post::probable_pieces(times, labels, 2, same, kColumn, kP, w.data(), kNt, {1, 1}, p)[1], 0);
    }
}

// The median amplitude behind the 'good' label's bound: per unit, over its spikes' rows of the values
// (the final spikes point into match/), odd and even counts, a unit without spikes, rows out of order.
TEST(UnitMedians, PerUnitMedianOverTheSpikesRows) {
    const std::vector<float> values = {9.0f, 30.0f, 8.5f, 12.0f, 10.0f, 1.0f, 50.0f};
    // unit 0: rows 0, 2, 4 -> 9, 8.5, 10 (median 9); unit 1: rows 1, 3, 6, 5 -> 30, 12, 50, 1 (median
    // (12 + 30) / 2); unit 2: no spikes.
    const std::vector<int32_t> labels = {0, 1, 0, 1, 0, 1, 1};
    const std::vector<int64_t> index = {0, 1, 2, 3, 4, 6, 5};
    const std::vector<double> med = ks::post::unit_medians(labels, index, values, 3);
    ASSERT_EQ(med.size(), 3u);
    EXPECT_DOUBLE_EQ(med[0], 9.0);
    EXPECT_DOUBLE_EQ(med[1], 21.0);
    EXPECT_DOUBLE_EQ(med[2], 0.0);
    // The median, not the mean: one large spike does not lift a unit whose spikes sit at the threshold.
    const std::vector<float> skewed = {8.2f, 8.4f, 8.6f, 60.0f, 8.3f};
    const std::vector<double> m2 = ks::post::unit_medians({0, 0, 0, 0, 0}, {0, 1, 2, 3, 4}, skewed, 1);
    EXPECT_FLOAT_EQ(static_cast<float>(m2[0]), 8.4f);
}
