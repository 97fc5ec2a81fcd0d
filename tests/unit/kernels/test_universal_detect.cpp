// Universal-template detection (§4.4, §4.5) on synthetic whitened blocks: planted spikes (known
// trough times and contacts, far above threshold) in white Gaussian noise of SD 1 are each found once
// at the right time and grid centre; pure noise gives nothing at Th_universal = 9; results do not
// depend on the thread count; a spike at a batch edge is found exactly once across two batches.
// The optimised CPU backend (tiled, vectorised, one clone per instruction set, values above
// threshold kept per chunk) matches a plain loop over the definition bit for bit, for shapes that
// exercise its tile remainders; so does cpu::universal_finish (the CUDA backend's last step).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/universal_templates.hpp"
#include "ks/probe.hpp"

namespace {

using ks::kernels::UniversalDetectArgs;
using ks::kernels::UniversalGrid;
using ks::kernels::UniversalSpike;

constexpr int kNt = 61, kNt0min = 20, kNk = 6;

ks::Probe np1_section(int n) {
    const double xs[4] = {43, 11, 59, 27};
    ks::Probe p;
    p.name = "np1-section";
    for (int i = 0; i < n; ++i) {
        p.chanMap.push_back(i);
        p.xc.push_back(xs[i % 4]);
        p.yc.push_back(20.0 * (i / 2));
        p.kcoords.push_back(0);
    }
    return p;
}

// Six smooth unit-norm temporal templates with their trough or peak at nt0min.
std::vector<float> synthetic_wtemp() {
    std::vector<float> w(kNk * kNt);
    for (int k = 0; k < kNk; ++k) {
        const double width = 1.5 + 0.4 * k, sign = k < 3 ? -1.0 : 1.0;  // no two alike, even up to sign
        double norm2 = 0;
        for (int t = 0; t < kNt; ++t) {
            const double a = sign * (std::exp(-0.5 * std::pow((t - kNt0min) / width, 2)) -
                                     0.3 * std::exp(-0.5 * std::pow((t - kNt0min - 8.0) / 4.0, 2)));
            w[k * kNt + t] = static_cast<float>(a);
            norm2 += a * a;
        }
        for (int t = 0; t < kNt; ++t) w[k * kNt + t] = static_cast<float>(w[k * kNt + t] / std::sqrt(norm2));
    }
    return w;
}

struct Planted {
    int64_t t_trough;  // global sample of the trough
    int chan;
};

// White noise of SD 1 plus spikes: template 0 in time, amp * exp(-d^2 / 20^2) over the contacts.
std::vector<float> make_block(const ks::Probe& p, int64_t n, const std::vector<Planted>& spikes, float amp,
                              uint32_t seed, const std::vector<float>& wtemp) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(p.n_chan()) * n);
    for (auto& v : x) v = g(rng);
    for (const auto& s : spikes)
        for (int c = 0; c < p.n_chan(); ++c) {
            const double dx = p.xc[c] - p.xc[s.chan], dy = p.yc[c] - p.yc[s.chan];
            const float a = amp * static_cast<float>(std::exp(-(dx * dx + dy * dy) / 400.0));
            for (int tau = 0; tau < kNt; ++tau) {
                const int64_t t = s.t_trough - kNt0min + tau;
                if (t >= 0 && t < n) x[c * n + t] += a * wtemp[tau];
            }
        }
    return x;
}

std::vector<UniversalSpike> detect(const std::vector<float>& x, int n_chan, int64_t n, int64_t context,
                                   const UniversalGrid& g, const std::vector<float>& wtemp, float th = 9.f,
                                   const char* device = "cpu") {
    UniversalDetectArgs a;
    a.x = x.data();
    a.n_chan = n_chan;
    a.n_samples = n;
    a.ld_x = n;
    a.context = context;
    a.wtemp = wtemp.data();
    a.nk = kNk;
    a.nt = kNt;
    a.nt0min = kNt0min;
    a.grid = &g;
    a.Th_universal = th;
    return ks::kernels::detect_universal(ks::Device::open(device), a);
}

int centre_on(const UniversalGrid& g, const ks::Probe& p, int c) {
    for (int f = 0; f < g.n_pos; ++f)
        if (g.x_um[f] == p.xc[c] && g.y_um[f] == p.yc[c]) return f;
    return -1;
}

auto key(const UniversalSpike& s) {
    return std::make_tuple(s.t_center, s.t_trough, s.pos, s.size_template, s.sign, s.amp, s.x_um, s.y_um,
                           s.y_weighted_um);
}

TEST(UniversalDetect, PlantedSpikesFoundOnce) {
    const auto p = np1_section(64);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t ctx = kNt, n = 8000 + 2 * ctx;
    std::vector<Planted> planted;
    std::mt19937 rng(7);
    for (int j = 0; j < 18; ++j) planted.push_back({ctx + 200 + 420 * j, static_cast<int>(rng() % 64)});
    const auto x = make_block(p, n, planted, 30.f, 11, w);
    const auto found = detect(x, 64, n, ctx, g, w);
    ASSERT_EQ(found.size(), planted.size());
    for (size_t j = 0; j < planted.size(); ++j) {
        const auto& s = found[j];
        EXPECT_NEAR(static_cast<double>(s.t_trough), static_cast<double>(planted[j].t_trough), 1.0) << "spike " << j;
        EXPECT_EQ(s.t_trough, s.t_center - kNt / 2 + kNt0min);
        EXPECT_EQ(s.pos, centre_on(g, p, planted[j].chan)) << "spike " << j << " on channel " << planted[j].chan;
        EXPECT_EQ(s.sign, 1);  // template 0 itself: a positive projection onto the trough-down template
        EXPECT_EQ(s.size_template % kNk, 0);
        EXPECT_GT(s.amp, 20.f);
        EXPECT_DOUBLE_EQ(s.x_um, g.x_um[s.pos]);
        EXPECT_NEAR(s.y_weighted_um, p.yc[planted[j].chan], 20.0);
    }
}

TEST(UniversalDetect, ExactTemplateGivesItsAmplitude) {
    // No noise; the data are -20 x (envelope s = 2 of centre f) x wTEMP[4]. By Cauchy-Schwarz no
    // other (centre, size, template) projects as much, so As = 20 exactly there, with sign -1.
    const auto p = np1_section(32);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int f = 60, s = 2, k = 4, nC = g.n_chan_near;
    ASSERT_DOUBLE_EQ(g.y_um[f], 150.0);
    const int64_t ctx = kNt, n = 400 + 2 * ctx, trough = 250;
    std::vector<float> x(static_cast<size_t>(32) * n, 0.f);
    for (int i = 0; i < nC; ++i)
        for (int tau = 0; tau < kNt; ++tau)
            x[g.iC[f * nC + i] * n + trough - kNt0min + tau] = -20.f * g.g[(s * g.n_pos + f) * nC + i] * w[k * kNt + tau];
    const auto found = detect(x, 32, n, ctx, g, w);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].pos, f);
    EXPECT_EQ(found[0].t_trough, trough);
    EXPECT_EQ(found[0].size_template, s * kNk + k);
    EXPECT_EQ(found[0].sign, -1);
    EXPECT_NEAR(found[0].amp, 20.0, 1e-4);
}

TEST(UniversalDetect, PureNoiseGivesNothingAtNine) {
    const auto p = np1_section(16);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t ctx = kNt, n = 60000 + 2 * ctx;  // 2 s at 30 kHz
    const auto x = make_block(p, n, {}, 0.f, 3, w);
    EXPECT_EQ(detect(x, 16, n, ctx, g, w, 9.f).size(), 0u);
    // The statistic is in noise SD units: a low threshold does find noise events.
    EXPECT_GT(detect(x, 16, n, ctx, g, w, 3.5f).size(), 10u);
}

TEST(UniversalDetect, SameResultsForOneAndTwoThreads) {
    const auto p = np1_section(32);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t ctx = kNt, n = 6000 + 2 * ctx;
    std::vector<Planted> planted;
    for (int j = 0; j < 10; ++j) planted.push_back({ctx + 150 + 550 * j, (j * 7) % 32});
    const auto x = make_block(p, n, planted, 15.f, 5, w);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto one = detect(x, 32, n, ctx, g, w, 4.f);  // low threshold: many detections, near-ties included
    omp_set_num_threads(2);
    const auto two = detect(x, 32, n, ctx, g, w, 4.f);
    omp_set_num_threads(saved);
    ASSERT_GT(one.size(), planted.size());
    ASSERT_EQ(one.size(), two.size());
    for (size_t i = 0; i < one.size(); ++i) EXPECT_EQ(key(one[i]), key(two[i])) << "detection " << i;
}

TEST(UniversalDetect, CudaMatchesCpuBitForBit) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const auto p = np1_section(32);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t ctx = kNt, n = 6000 + 2 * ctx;
    std::vector<Planted> planted;
    for (int j = 0; j < 10; ++j) planted.push_back({ctx + 150 + 550 * j, (j * 7) % 32});
    const auto x = make_block(p, n, planted, 15.f, 5, w);
    const auto cpu = detect(x, 32, n, ctx, g, w, 4.f, "cpu");
    const auto gpu = detect(x, 32, n, ctx, g, w, 4.f, "cuda");
    ASSERT_GT(cpu.size(), planted.size());
    ASSERT_EQ(cpu.size(), gpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) EXPECT_EQ(key(cpu[i]), key(gpu[i])) << "detection " << i;
}

TEST(UniversalDetect, BatchEdgeSpikeFoundOnce) {
    const int C = 64;
    const auto p = np1_section(C);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t NT = 3000, ctx = kNt, total = 2 * NT;
    // Troughs straddling the boundary at NT: window centres (trough + 10) on both sides of it.
    // Contacts 4, 30, 60 (y = 40, 300, 600 µm) lie outside each other's 100-centre local-max
    // neighbourhoods; 30 and 34 (y = 300, 340) lie inside, 2 samples apart: only the larger of
    // those two is a local maximum.
    std::vector<Planted> planted = {{NT - 25, 4}, {NT - 11, 30}, {NT - 9, 34}, {NT + 3, 60}, {1000, 12}, {4500, 3}};
    const auto rec = make_block(p, total, planted, 25.f, 9, w);
    auto batch = [&](int b) {  // central [b NT, (b+1) NT) with ctx samples either side, zeros outside the file
        const int64_t n = NT + 2 * ctx;
        std::vector<float> x(static_cast<size_t>(C) * n, 0.f);
        for (int c = 0; c < C; ++c)
            for (int64_t t = 0; t < n; ++t) {
                const int64_t u = b * NT - ctx + t;
                if (u >= 0 && u < total) x[c * n + t] = rec[c * total + u];
            }
        std::vector<std::pair<int64_t, int>> out;
        for (const auto& s : detect(x, C, n, ctx, g, w)) out.emplace_back(b * NT + s.t_center - ctx, s.pos);
        return out;
    };
    auto both = batch(0);
    const auto b1 = batch(1);
    both.insert(both.end(), b1.begin(), b1.end());
    // The whole recording as one block (zeros as context) is the reference.
    const int64_t n = total + 2 * ctx;
    std::vector<float> whole(static_cast<size_t>(C) * n, 0.f);
    for (int c = 0; c < C; ++c)
        for (int64_t t = 0; t < total; ++t) whole[c * n + ctx + t] = rec[c * total + t];
    std::vector<std::pair<int64_t, int>> ref;
    for (const auto& s : detect(whole, C, n, ctx, g, w)) ref.emplace_back(s.t_center - ctx, s.pos);
    EXPECT_EQ(both, ref);
    // Every planted spike but one of the close pair appears exactly once.
    int near_edge = 0;
    for (const auto& [t, f] : both) {
        const int64_t trough = t - kNt / 2 + kNt0min;
        if (trough >= NT - 30 && trough <= NT + 10) ++near_edge;
    }
    EXPECT_EQ(near_edge, 3);
    EXPECT_EQ(both.size(), 5u);
}

TEST(UniversalDetect, EmptyNeighbourSlotsAndTinyProbe) {
    // 4 contacts: nearest_chans (10) and nearest_templates (100) exceed what exists; -1 slots are skipped.
    const auto p = np1_section(4);
    const auto g = ks::kernels::make_universal_grid(p, {});
    const auto w = synthetic_wtemp();
    const int64_t ctx = kNt, n = 1000 + 2 * ctx;
    const auto x = make_block(p, n, {{ctx + 500, 1}}, 30.f, 2, w);
    const auto found = detect(x, 4, n, ctx, g, w);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].t_trough, ctx + 500);
    EXPECT_EQ(found[0].pos, centre_on(g, p, 1));
}

// ---- the optimised CPU backend against a plain loop over the definition (§4.4, §4.5) ----------

// nk smooth unit-norm templates of nt taps peaking at nt0min, no two alike.
std::vector<float> smooth_wtemp(int nk, int nt, int nt0min) {
    std::vector<float> w(static_cast<size_t>(nk) * nt);
    for (int k = 0; k < nk; ++k) {
        const double width = 1.2 + 0.35 * k, sign = k % 2 ? 1.0 : -1.0;
        double norm2 = 0;
        for (int t = 0; t < nt; ++t) {
            const double a = sign * (std::exp(-0.5 * std::pow((t - nt0min) / width, 2)) -
                                     0.25 * std::exp(-0.5 * std::pow((t - nt0min - 6.0 - k) / 3.0, 2)));
            w[k * nt + t] = static_cast<float>(a);
            norm2 += a * a;
        }
        for (int t = 0; t < nt; ++t) w[k * nt + t] = static_cast<float>(w[k * nt + t] / std::sqrt(norm2));
    }
    return w;
}

// The statistic and the detections straight from §4.4-4.5, one float operation at a time in the
// order the interface fixes: B over tau ascending, A over the centre's slots ascending (skipping
// -1), As the max of |A| over (s, k); each multiply and add rounded separately (the build uses
// -ffp-contract=off). No tiles, no chunks, no vectors.
struct Plain {
    std::vector<float> as;            // F x n: the statistic
    std::vector<uint8_t> is_max;      // F x n: 1 at the detections
    std::vector<UniversalSpike> spikes;
};

Plain plain_detect(const UniversalDetectArgs& a) {
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, nC = g.n_chan_near, S = g.n_sizes, nk = a.nk, nt = a.nt, h = nt / 2;
    const int64_t n = a.n_samples;
    std::vector<float> B(static_cast<size_t>(a.n_chan) * nk * n);
    for (int c = 0; c < a.n_chan; ++c)
        for (int k = 0; k < nk; ++k)
            for (int64_t t = 0; t < n; ++t) {
                float acc = 0.f;
                for (int tau = 0; tau < nt; ++tau) {
                    const int64_t u = t - h + tau;
                    const float x = (u >= 0 && u < n) ? a.x[c * a.ld_x + u] : 0.f;
                    const float prod = a.wtemp[k * nt + tau] * x;
                    acc = acc + prod;
                }
                B[(static_cast<size_t>(c) * nk + k) * n + t] = acc;
            }
    auto A = [&](int f, int s, int k, int64_t t) {
        float acc = 0.f;
        for (int i = 0; i < nC; ++i) {
            const int c = g.iC[f * nC + i];
            if (c < 0) continue;
            const float prod = g.g[(static_cast<size_t>(s) * F + f) * nC + i] * B[(static_cast<size_t>(c) * nk + k) * n + t];
            acc = acc + prod;
        }
        return acc;
    };
    Plain r;
    auto& as = r.as;
    as.resize(static_cast<size_t>(F) * n);
    r.is_max.assign(as.size(), 0);
    for (int f = 0; f < F; ++f)
        for (int64_t t = 0; t < n; ++t) {
            float best = 0.f;
            for (int s = 0; s < S; ++s)
                for (int k = 0; k < nk; ++k) best = std::max(best, std::fabs(A(f, s, k, t)));
            as[f * n + t] = best;
        }
    for (int64_t t = a.context; t < n - a.context; ++t)
        for (int f = 0; f < F; ++f) {
            const float v = as[f * n + t];
            if (!(v > a.Th_universal)) continue;
            bool is_max = true;
            for (int j = 0; j < g.n_near && is_max; ++j) {
                const int q = g.iC2[f * g.n_near + j];
                if (q < 0) continue;
                for (int64_t u = std::max<int64_t>(0, t - a.nt0min); u <= std::min(n - 1, t + a.nt0min); ++u)
                    if (as[q * n + u] > v) is_max = false;
            }
            if (!is_max) continue;
            r.is_max[f * n + t] = 1;
            float bestv = -1.f;
            int code = 0, sign = 1;
            for (int s = 0; s < S; ++s)
                for (int k = 0; k < nk; ++k) {
                    const float x = A(f, s, k, t);
                    if (std::fabs(x) > bestv) {
                        bestv = std::fabs(x);
                        code = s * nk + k;
                        sign = x < 0 ? -1 : 1;
                    }
                }
            double wsum = 0, ysum = 0;
            for (int i = 0; i < nC; ++i) {
                const int c = g.iC[f * nC + i];
                if (c < 0) continue;
                const double w = std::max(0.0, sign * static_cast<double>(B[(static_cast<size_t>(c) * nk + code % nk) * n + t]));
                wsum += w;
                ysum += w * g.ch_y_um[c];
            }
            UniversalSpike sp;
            sp.t_center = t;
            sp.t_trough = t - h + a.nt0min;
            sp.pos = f;
            sp.size_template = code;
            sp.sign = sign;
            sp.amp = v;
            sp.x_um = g.x_um[f];
            sp.y_um = g.y_um[f];
            sp.y_weighted_um = wsum > 0 ? ysum / wsum : g.y_um[f];
            r.spikes.push_back(sp);
        }
    return r;
}

struct PlainCase {
    int n_chan;        // np1_section contacts
    int64_t n;         // samples in the block, context included
    int64_t ld_pad;    // extra row stride beyond n
    int nk, nt, nt0min;
    int sizes, nearest_chans;
    float th;
    uint32_t seed;
    std::string str() const {
        std::ostringstream o;
        o << "C=" << n_chan << " n=" << n << " ld=n+" << ld_pad << " nk=" << nk << " nt=" << nt << " nt0min=" << nt0min
          << " sizes=" << sizes << " nearest_chans=" << nearest_chans << " th=" << th << " seed=" << seed;
        return o.str();
    }
};

// Noise of SD 1 plus a few spikes of the first template; `ld` >= n pads each row with NaN, which
// must never be read.
std::vector<float> plain_block(const ks::Probe& p, const PlainCase& pc, const std::vector<float>& w) {
    const int64_t ld = pc.n + pc.ld_pad;
    std::mt19937 rng(pc.seed);
    std::normal_distribution<float> noise(0.f, 1.f);
    std::vector<float> x(static_cast<size_t>(p.n_chan()) * ld, std::numeric_limits<float>::quiet_NaN());
    for (int c = 0; c < p.n_chan(); ++c)
        for (int64_t t = 0; t < pc.n; ++t) x[c * ld + t] = noise(rng);
    for (int64_t tr = 40; tr < pc.n; tr += 173) {
        const int ch = static_cast<int>(rng() % p.n_chan());
        for (int c = 0; c < p.n_chan(); ++c) {
            const double dx = p.xc[c] - p.xc[ch], dy = p.yc[c] - p.yc[ch];
            const float amp = 12.f * static_cast<float>(std::exp(-(dx * dx + dy * dy) / 600.0));
            for (int tau = 0; tau < pc.nt; ++tau) {
                const int64_t t = tr - pc.nt0min + tau;
                if (t >= 0 && t < pc.n) x[c * ld + t] += amp * w[tau];
            }
        }
    }
    return x;
}

void expect_same_as_plain(const PlainCase& pc) {
    SCOPED_TRACE(pc.str());
    const auto p = np1_section(pc.n_chan);
    ks::kernels::UniversalGridSettings gs;
    gs.template_sizes = pc.sizes;
    gs.nearest_chans = pc.nearest_chans;
    gs.nearest_templates = 5;  // small neighbourhoods: many local maxima, so many values compared
    const auto g = ks::kernels::make_universal_grid(p, gs);
    const auto w = smooth_wtemp(pc.nk, pc.nt, pc.nt0min);
    const auto x = plain_block(p, pc, w);
    UniversalDetectArgs a;
    a.x = x.data();
    a.n_chan = pc.n_chan;
    a.n_samples = pc.n;
    a.ld_x = pc.n + pc.ld_pad;
    a.context = pc.nt0min + pc.nt / 2 + 3;
    a.wtemp = w.data();
    a.nk = pc.nk;
    a.nt = pc.nt;
    a.nt0min = pc.nt0min;
    a.grid = &g;
    a.Th_universal = pc.th;
    const auto plain = plain_detect(a);
    const auto& want = plain.spikes;
    ASSERT_GE(want.size(), 20u);  // low thresholds: many detections, near-ties included
    auto expect_same = [&](const std::vector<UniversalSpike>& got, const char* what) {
        ASSERT_EQ(got.size(), want.size()) << what;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(key(got[i]), key(want[i])) << what << ", detection " << i;
            ASSERT_EQ(std::signbit(got[i].amp), std::signbit(want[i].amp)) << what << ", detection " << i;
        }
    };
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    expect_same(ks::kernels::cpu::detect_universal(a), "CPU, 1 thread");
    omp_set_num_threads(2);
    expect_same(ks::kernels::cpu::detect_universal(a), "CPU, 2 threads");
    omp_set_num_threads(saved);
    // The CUDA backend's last step, on the dense statistic, with its local-max flags or without.
    expect_same(ks::kernels::cpu::universal_finish(a, plain.as.data(), nullptr), "universal_finish");
    expect_same(ks::kernels::cpu::universal_finish(a, plain.as.data(), plain.is_max.data()), "universal_finish, flags");
}

TEST(UniversalDetect, CpuMatchesPlainLoopDefaultShapes) {
    // KS4's shapes (nk 6, nt 61, 5 sizes, 10 channels); lengths below, at and across the CPU's
    // time chunks, none a multiple of a vector; one with padded rows.
    expect_same_as_plain({24, 700, 0, 6, 61, 20, 5, 10, 2.f, 1});
    expect_same_as_plain({40, 2011, 5, 6, 61, 20, 5, 10, 2.5f, 2});
    expect_same_as_plain({17, 801, 0, 6, 61, 20, 5, 10, 1.5f, 3});
    // Every value of As above threshold: the CPU keeps each chunk's As whole rather than as a list.
    expect_same_as_plain({24, 900, 2, 6, 61, 20, 5, 10, 0.f, 8});
}

TEST(UniversalDetect, CpuMatchesPlainLoopOtherShapes) {
    // Template counts and sizes that are not whole tiles, other clip lengths, more or fewer
    // channels per centre, and a probe smaller than nearest_chans (empty slots).
    expect_same_as_plain({20, 900, 3, 4, 41, 12, 3, 7, 2.f, 4});
    expect_same_as_plain({20, 1000, 0, 7, 31, 9, 7, 12, 2.f, 5});
    expect_same_as_plain({16, 650, 1, 1, 21, 5, 1, 4, 1.5f, 6});
    expect_same_as_plain({6, 1200, 0, 9, 61, 30, 6, 10, 2.f, 7});
}

}  // namespace
