// Template matching by peeling (kernels/template_match.hpp): lag products and template cross-products
// against direct sums, similarity, and the peeling itself on data made of known template placements:
// every spike found at its time with its template and scale, overlapping spikes separated, nothing
// lost or counted twice when the data are cut into batches with context.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <tuple>

#include "ks/device.hpp"
#include "ks/kernels/template_match.hpp"

namespace {

constexpr int P = 6, nt = 61, nt0min = 20, half = nt / 2;

// Orthonormal smooth basis: Gaussian-windowed cosines, Gram-Schmidt in double.
std::vector<float> make_basis() {
    std::vector<double> b(static_cast<size_t>(P) * nt);
    for (int p = 0; p < P; ++p)
        for (int t = 0; t < nt; ++t) {
            const double u = (t - nt0min) / 12.0;
            b[p * nt + t] = std::exp(-0.5 * u * u) * std::cos(0.35 * p * (t - nt0min)) + 0.01 * p * std::sin(0.1 * t);
        }
    for (int p = 0; p < P; ++p) {
        for (int q = 0; q < p; ++q) {
            double d = 0;
            for (int t = 0; t < nt; ++t) d += b[p * nt + t] * b[q * nt + t];
            for (int t = 0; t < nt; ++t) b[p * nt + t] -= d * b[q * nt + t];
        }
        double s = 0;
        for (int t = 0; t < nt; ++t) s += b[p * nt + t] * b[p * nt + t];
        for (int t = 0; t < nt; ++t) b[p * nt + t] /= std::sqrt(s);
    }
    return std::vector<float>(b.begin(), b.end());
}

// K templates on C channels, template k on channels [first, first + 4).
std::vector<float> make_templates(int K, int C, std::mt19937& rng) {
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> U(static_cast<size_t>(K) * C * P, 0.f);
    for (int k = 0; k < K; ++k) {
        const int first = (k * 3) % (C - 3);
        for (int c = first; c < first + 4; ++c)
            for (int p = 0; p < P; ++p) U[(static_cast<size_t>(k) * C + c) * P + p] = g(rng) * (p == 0 ? 6.f : 2.f);
    }
    return U;
}

std::vector<float> waveform(const std::vector<float>& U, const std::vector<float>& w, int k, int C) {
    std::vector<float> out(static_cast<size_t>(C) * nt, 0.f);
    for (int c = 0; c < C; ++c)
        for (int p = 0; p < P; ++p)
            for (int t = 0; t < nt; ++t) out[c * nt + t] += U[(static_cast<size_t>(k) * C + c) * P + p] * w[p * nt + t];
    return out;
}

std::vector<int32_t> near_chans(int C, int nC) {
    std::vector<int32_t> nc(static_cast<size_t>(C) * nC);
    for (int c = 0; c < C; ++c) {
        std::vector<int> idx(C);
        for (int i = 0; i < C; ++i) idx[i] = i;
        std::stable_sort(idx.begin(), idx.end(), [c](int a, int b) { return std::abs(a - c) < std::abs(b - c); });
        for (int i = 0; i < nC; ++i) nc[c * nC + i] = i < C ? idx[i] : -1;
    }
    return nc;
}

struct Spike {
    int64_t trough;
    int k;
    float scale;
};

// x (C x n): the spikes' templates placed with their trough at `trough`, plus Gaussian noise.
std::vector<float> synth(const std::vector<float>& U, const std::vector<float>& w, int C, int64_t n,
                         const std::vector<Spike>& spikes, float noise, std::mt19937& rng) {
    std::normal_distribution<float> g(0.f, noise);
    std::vector<float> x(static_cast<size_t>(C) * n, 0.f);
    if (noise > 0)
        for (auto& v : x) v = g(rng);
    for (const Spike& s : spikes) {
        const std::vector<float> wf = waveform(U, w, s.k, C);
        for (int c = 0; c < C; ++c)
            for (int t = 0; t < nt; ++t) {
                const int64_t i = s.trough - nt0min + t;
                if (i >= 0 && i < n) x[c * n + i] += s.scale * wf[c * nt + t];
            }
    }
    return x;
}

TEST(TemplateMatch, LagProductsAreBasisCrossCorrelations) {
    const auto w = make_basis();
    const auto cl = ks::match::pc_lag_products(w.data(), P, nt);
    ASSERT_EQ(cl.size(), static_cast<size_t>(2 * nt + 1) * P * P);
    for (int p = 0; p < P; ++p)
        for (int q = 0; q < P; ++q) EXPECT_NEAR(cl[(static_cast<size_t>(nt) * P + p) * P + q], p == q ? 1.0 : 0.0, 1e-5);
    // Lag 7, p=1, q=2 by hand: sum_tau w[1][tau - 7] w[2][tau].
    double s = 0;
    for (int tau = 7; tau < nt; ++tau) s += static_cast<double>(w[1 * nt + tau - 7]) * w[2 * nt + tau];
    EXPECT_NEAR(cl[(static_cast<size_t>(nt + 7) * P + 1) * P + 2], s, 1e-9);
    EXPECT_DOUBLE_EQ(cl[(static_cast<size_t>(0) * P + 1) * P + 2], 0.0);   // lag -nt: no overlap
}

TEST(TemplateMatch, CrossProductsAreWaveformInnerProducts) {
    std::mt19937 rng(3);
    const int K = 5, C = 12;
    const auto w = make_basis();
    const auto U = make_templates(K, C, rng);
    const auto ctc = ks::match::template_cross_products(U.data(), K, C, P, w.data(), nt);
    const int L = 2 * nt + 1;
    for (int a = 0; a < K; ++a)
        for (int b = 0; b < K; ++b) {
            const auto wa = waveform(U, w, a, C), wb = waveform(U, w, b, C);
            for (int l : {-nt, -30, -3, 0, 1, 17, nt}) {
                // template a centred at t0 + l against b centred at t0: sum_c sum_s wa[c, s - l] wb[c, s]
                double s = 0;
                for (int c = 0; c < C; ++c)
                    for (int t = 0; t < nt; ++t)
                        if (t - l >= 0 && t - l < nt) s += static_cast<double>(wa[c * nt + t - l]) * wb[c * nt + t];
                EXPECT_NEAR(ctc[(static_cast<size_t>(a) * K + b) * L + l + nt], s, 1e-3 * (1 + std::fabs(s)))
                    << a << " " << b << " lag " << l;
            }
        }
}

TEST(TemplateMatch, SimilarityIsOneOnTheDiagonalAndFindsTheLag) {
    std::mt19937 rng(5);
    const int C = 8;
    const auto w = make_basis();
    auto U = make_templates(2, C, rng);
    // Template 1 = template 0 scaled by 3: similarity 1 at lag 0.
    for (int i = 0; i < C * P; ++i) U[C * P + i] = 3.f * U[i];
    std::vector<float> sim;
    std::vector<int> lag;
    ks::match::template_similarity(U.data(), 2, C, P, w.data(), nt, &sim, &lag);
    EXPECT_NEAR(sim[0], 1.f, 1e-5);
    EXPECT_NEAR(sim[1], 1.f, 1e-5);
    EXPECT_EQ(lag[1], 0);
    // A template with no channel in common: similarity 0.
    std::vector<float> V(static_cast<size_t>(2) * 12 * P, 0.f);
    for (int p = 0; p < P; ++p) {
        V[(0 * 12 + 0) * P + p] = 1.f + p;
        V[(1 * 12 + 9) * P + p] = 2.f - p;
    }
    ks::match::template_similarity(V.data(), 2, 12, P, w.data(), nt, &sim, &lag);
    EXPECT_EQ(sim[1], 0.f);
}

// The merge walks keep one SimilarityRows in step with templates that change one at a time (merged into
// a new mean, zeroed, moved to other channels): each row must equal that row of a fresh
// template_similarity.
TEST(TemplateMatch, SimilarityRowsFollowTemplatesChangedOneAtATime) {
    std::mt19937 rng(11);
    const int K = 7, C = 16;
    const auto w = make_basis();
    auto U = make_templates(K, C, rng);
    ks::match::SimilarityRows rows(U.data(), K, C, P, w.data(), nt);
    auto expect_rows_fresh = [&](const char* when) {
        std::vector<float> s2;
        std::vector<int> l2;
        ks::match::template_similarity(U.data(), K, C, P, w.data(), nt, &s2, &l2);
        for (int a = 0; a < K; ++a) {
            std::vector<float> s1;
            std::vector<int> l1;
            rows.row(a, &s1, &l1);
            ASSERT_EQ(s1, std::vector<float>(s2.begin() + a * K, s2.begin() + (a + 1) * K)) << when << ", row " << a;
            ASSERT_EQ(l1, std::vector<int>(l2.begin() + a * K, l2.begin() + (a + 1) * K)) << when << ", row " << a;
        }
    };
    expect_rows_fresh("initial");
    const size_t D = static_cast<size_t>(C) * P;
    // 2 absorbs 3 (a weighted mean over both channel spans), 3 becomes zero.
    for (size_t i = 0; i < D; ++i) U[2 * D + i] = 0.6f * U[2 * D + i] + 0.4f * U[3 * D + i];
    std::fill(U.begin() + 3 * D, U.begin() + 4 * D, 0.f);
    rows.update(2, U.data() + 2 * D);
    rows.update(3, U.data() + 3 * D);
    expect_rows_fresh("after a merge");
    // 5 moves to other channels (the span shrinks and shifts): first/last channel kept right.
    std::fill(U.begin() + 5 * D, U.begin() + 6 * D, 0.f);
    for (int p = 0; p < P; ++p) U[5 * D + 14 * P + p] = 1.5f - 0.5f * p;
    rows.update(5, U.data() + 5 * D);
    expect_rows_fresh("after a move");
    // 1 grows over all channels, then is zeroed: its channel span must widen, then empty.
    for (int c = 0; c < C; ++c)
        for (int p = 0; p < P; ++p) U[1 * D + c * P + p] += 0.1f * (c + 1) * (p + 1);
    rows.update(1, U.data() + 1 * D);
    expect_rows_fresh("after growing");
    std::fill(U.begin() + 1 * D, U.begin() + 2 * D, 0.f);
    rows.update(1, U.data() + 1 * D);
    expect_rows_fresh("after zeroing");
    // The zeroed template: similarity 0 to everything.
    std::vector<float> s;
    std::vector<int> l;
    rows.row(3, &s, &l);
    for (float v : s) EXPECT_EQ(v, 0.f);
}

// Runs match_batch over [0, n) as one buffer with all of it reported.
std::vector<ks::match::MatchedSpike> match_all(const ks::match::MatchTemplates& T, const std::vector<float>& x,
                                               int64_t n, std::vector<float>* feat = nullptr) {
    ks::match::MatchArgs a;
    a.x = x.data();
    a.n_samples = a.ld_x = n;
    a.nt0min = nt0min;
    a.report_lo = 0;
    a.report_hi = n;
    a.Th_learned = 8;
    std::vector<float> f;
    return ks::match::match_batch(ks::Device::open("cpu", 1), T, a, feat ? feat : &f);
}

TEST(TemplateMatch, PeelsKnownSpikesExactlyIncludingOverlaps) {
    std::mt19937 rng(11);
    const int K = 6, C = 16, nC = 5;
    const auto w = make_basis();
    const auto U = make_templates(K, C, rng);
    const auto nc = near_chans(C, nC);
    const auto T = ks::match::prepare_templates(U.data(), K, C, P, w.data(), nt, nc.data(), nC);
    std::vector<Spike> truth;
    const int64_t n = 20000;
    // Fits of 12 to 15 whitened units, above Th_learned = 8 for every template.
    auto scale_for = [&](int k, float size) { return size / std::sqrt(T.norm2[k]); };
    for (int i = 0; i < 60; ++i) truth.push_back({400 + i * 300, i % K, scale_for(i % K, 12.f + 0.1f * (i % 30))});
    // Overlaps: another template 9 samples after some spikes, on shared channels. Greedy peeling
    // takes the larger one first with the overlap's share included, so their scales are only
    // approximate (as in Kilosort4); times and templates must still be right.
    std::set<int64_t> overlapped;
    for (int i = 0; i < 60; i += 5) {
        truth.push_back({400 + i * 300 + 9, (i + 1) % K, scale_for((i + 1) % K, 14.f)});
        overlapped.insert(400 + i * 300);
        overlapped.insert(400 + i * 300 + 9);
    }
    const auto x = synth(U, w, C, n, truth, 0.f, rng);
    std::vector<float> feat;
    const auto found = match_all(T, x, n, &feat);
    ASSERT_EQ(found.size(), truth.size());
    std::sort(truth.begin(), truth.end(), [](const Spike& a, const Spike& b) { return a.trough < b.trough; });
    for (size_t i = 0; i < truth.size(); ++i) {
        EXPECT_EQ(found[i].t_trough, truth[i].trough) << i;
        EXPECT_EQ(found[i].k, truth[i].k) << i;
        if (overlapped.count(truth[i].trough)) {
            EXPECT_NEAR(found[i].scale, truth[i].scale, 0.5 * truth[i].scale) << i;
            continue;
        }
        EXPECT_NEAR(found[i].scale, truth[i].scale, 2e-3) << i;
        EXPECT_NEAR(found[i].amp, truth[i].scale * std::sqrt(T.norm2[truth[i].k]), 2e-2);
    }
    // Features: the residual is ~0, so each spike's features are scale x its template on its channels
    // (overlapping pairs: their residual holds the scale errors, so not exactly).
    for (size_t i = 0; i < found.size(); ++i)
        if (!overlapped.count(found[i].t_trough))
        for (int j = 0; j < nC; ++j) {
            const int c = T.chans[found[i].k * nC + j];
            for (int p = 0; p < P; ++p)
                EXPECT_NEAR(feat[(i * nC + j) * P + p], found[i].scale * U[(static_cast<size_t>(found[i].k) * C + c) * P + p],
                            2e-2)
                    << i;
        }
    // peak_chan / chans: the first neighbour is the peak channel itself.
    for (int k = 0; k < K; ++k) EXPECT_EQ(T.chans[k * nC], T.peak_chan[k]);
}

TEST(TemplateMatch, BelowThresholdSpikesAreNotFitted) {
    std::mt19937 rng(13);
    const int K = 3, C = 10, nC = 4;
    const auto w = make_basis();
    auto U = make_templates(K, C, rng);
    const auto nc = near_chans(C, nC);
    const auto T = ks::match::prepare_templates(U.data(), K, C, P, w.data(), nt, nc.data(), nC);
    // A spike whose fit is 0.9 x Th_learned is not found; 1.2 x is.
    const float s_lo = 0.9f * 8 / std::sqrt(T.norm2[0]), s_hi = 1.2f * 8 / std::sqrt(T.norm2[0]);
    const auto x = synth(U, w, C, 3000, {{500, 0, s_lo}, {1500, 0, s_hi}}, 0.f, rng);
    const auto found = match_all(T, x, 3000);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].t_trough, 1500);
}

TEST(TemplateMatch, BatchesWithContextGiveTheSameSpikesAsOneBuffer) {
    std::mt19937 rng(17);
    const int K = 8, C = 24, nC = 6;
    const auto w = make_basis();
    const auto U = make_templates(K, C, rng);
    const auto nc = near_chans(C, nC);
    const auto T = ks::match::prepare_templates(U.data(), K, C, P, w.data(), nt, nc.data(), nC);
    const int64_t n = 40000;
    std::vector<Spike> truth;
    std::uniform_int_distribution<int> tk(0, K - 1);
    std::uniform_real_distribution<float> ts(0.7f, 1.3f);
    // Dense firing, with spikes placed on and around the seams of the batch sizes tried below.
    for (int64_t t = 300; t < n - 300; t += 97) truth.push_back({t, tk(rng), ts(rng)});
    for (int64_t seam : {3000, 6000, 7000, 9000, 12000, 14000, 21000, 28000, 35000})
        for (int d : {-31, -1, 0, 1, 2, 25})
            truth.push_back({seam + d, tk(rng), ts(rng)});
    const auto x = synth(U, w, C, n, truth, 0.3f, rng);
    const auto whole = match_all(T, x, n);
    EXPECT_GE(whole.size(), truth.size() * 9 / 10);   // dense overlaps: most, not all, are separable
    using Key = std::tuple<int64_t, int, float>;
    std::vector<Key> ref;
    for (const auto& s : whole) ref.emplace_back(s.t_trough, s.k, s.scale);
    for (int64_t batch : {3000, 7000}) {
        const int64_t context = 4 * nt;
        std::vector<Key> got;
        for (int64_t b0 = 0; b0 < n; b0 += batch) {
            const int64_t len = std::min(batch, n - b0), m = len + 2 * context;
            std::vector<float> xb(static_cast<size_t>(C) * m);
            for (int c = 0; c < C; ++c)
                for (int64_t i = 0; i < m; ++i)
                    xb[c * m + i] = x[c * n + std::clamp<int64_t>(b0 - context + i, 0, n - 1)];
            ks::match::MatchArgs a;
            a.x = xb.data();
            a.n_samples = a.ld_x = m;
            a.nt0min = nt0min;
            a.report_lo = context;
            a.report_hi = context + len;
            std::vector<float> f;
            for (const auto& s : ks::match::match_batch(ks::Device::open("cpu", 1), T, a, &f))
                got.emplace_back(b0 - context + s.t_trough, s.k, s.scale);
        }
        ASSERT_EQ(got.size(), ref.size()) << "batch " << batch;
        for (size_t i = 0; i < ref.size(); ++i) {
            EXPECT_EQ(std::get<0>(got[i]), std::get<0>(ref[i])) << "batch " << batch << " spike " << i;
            EXPECT_EQ(std::get<1>(got[i]), std::get<1>(ref[i])) << "batch " << batch << " spike " << i;
            EXPECT_NEAR(std::get<2>(got[i]), std::get<2>(ref[i]), 1e-4) << "batch " << batch << " spike " << i;
        }
    }
}

TEST(TemplateMatch, ThreadCountDoesNotChangeTheResult) {
    std::mt19937 rng(19);
    const int K = 7, C = 20, nC = 5;
    const auto w = make_basis();
    const auto U = make_templates(K, C, rng);
    const auto nc = near_chans(C, nC);
    const auto T = ks::match::prepare_templates(U.data(), K, C, P, w.data(), nt, nc.data(), nC);
    std::vector<Spike> truth;
    for (int64_t t = 200; t < 29000; t += 131) truth.push_back({t, static_cast<int>(t % K), 1.0f});
    const int64_t n = 30000;
    const auto x = synth(U, w, C, n, truth, 0.5f, rng);
    ks::match::MatchArgs a;
    a.x = x.data();
    a.n_samples = a.ld_x = n;
    a.nt0min = nt0min;
    a.report_hi = n;
    std::vector<float> f1, f2;
    const auto r1 = ks::match::match_batch(ks::Device::open("cpu", 1), T, a, &f1);
    const auto r2 = ks::match::match_batch(ks::Device::open("cpu", 2), T, a, &f2);
    ASSERT_EQ(r1.size(), r2.size());
    for (size_t i = 0; i < r1.size(); ++i) {
        EXPECT_EQ(r1[i].t_trough, r2[i].t_trough);
        EXPECT_EQ(r1[i].k, r2[i].k);
        EXPECT_EQ(r1[i].scale, r2[i].scale);
    }
    EXPECT_EQ(f1, f2);
}

TEST(TemplateMatch, CudaGivesTheCpuSpikes) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    std::mt19937 rng(23);
    const int K = 9, C = 32, nC = 6;
    const auto w = make_basis();
    const auto U = make_templates(K, C, rng);
    const auto nc = near_chans(C, nC);
    const auto T = ks::match::prepare_templates(U.data(), K, C, P, w.data(), nt, nc.data(), nC);
    std::vector<Spike> truth;
    std::uniform_int_distribution<int> tk(0, K - 1);
    for (int64_t t = 300; t < 59000; t += 113) truth.push_back({t, tk(rng), 1.0f});
    const int64_t n = 60000;
    const auto x = synth(U, w, C, n, truth, 0.5f, rng);
    ks::match::MatchArgs a;
    a.x = x.data();
    a.n_samples = a.ld_x = n;
    a.nt0min = nt0min;
    a.report_hi = n;
    std::vector<float> f1, f2;
    const auto r1 = ks::match::match_batch(ks::Device::open("cpu", 2), T, a, &f1);
    const auto r2 = ks::match::match_batch(ks::Device::open("cuda", 2), T, a, &f2);
    ASSERT_EQ(r1.size(), r2.size());
    for (size_t i = 0; i < r1.size(); ++i) {
        EXPECT_EQ(r1[i].t_trough, r2[i].t_trough);
        EXPECT_EQ(r1[i].k, r2[i].k);
        EXPECT_EQ(r1[i].scale, r2[i].scale);
    }
    EXPECT_EQ(f1, f2);
}

}  // namespace
