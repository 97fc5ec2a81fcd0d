// Motion estimation (kilosort4-algorithm.md 3.2-3.5): bins, blocks and smoothing against numpy/scipy
// values, then the whole estimate on synthetic spike lists from a known population displaced by a
// known motion. Errors are compared after removing one constant per block: the reference is the
// mean aligned fingerprint, so the absolute offset of dshift is arbitrary.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/drift_registration.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/npy.hpp"

namespace {

using ks::drift::DriftHistogram;
using ks::drift::MotionEstimate;
using ks::drift::MotionStatus;
using ks::drift::RegistrationParams;

constexpr double kFs = 30000.0;
constexpr int64_t kBatch = 60000;  // 2 s
constexpr double kYmin = 0.0, kYmax = 1500.0;

// motion(t_s, y_um): displacement in µm, positive = the unit appears at larger y (ks-sim's sign).
using MotionFn = std::function<double(double, double)>;

struct Spikes {
    std::vector<int64_t> t;
    std::vector<float> y, amp;
};

// A population of units at fixed depths with log-uniform amplitudes firing as Poisson trains; each
// spike's depth is the unit's depth displaced by the motion at its time, plus localisation noise.
Spikes simulate(const MotionFn& motion, int n_batches, uint32_t seed, int n_units = 120, double rate_hz = 8.0,
                double loc_noise_um = 4.0) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> U(0.0, 1.0);
    std::normal_distribution<double> N(0.0, 1.0);
    const double dur = static_cast<double>(n_batches) * kBatch / kFs;
    Spikes s;
    for (int u = 0; u < n_units; ++u) {
        const double y = 100.0 + 1300.0 * U(rng);
        const double a = 12.0 * std::pow(60.0 / 12.0, U(rng));
        std::exponential_distribution<double> isi(rate_hz);
        for (double t = isi(rng); t < dur; t += isi(rng)) {
            s.t.push_back(static_cast<int64_t>(t * kFs));
            s.y.push_back(static_cast<float>(y + motion(t, y) + loc_noise_um * N(rng)));
            s.amp.push_back(static_cast<float>(a * std::exp(0.1 * N(rng))));
        }
    }
    // Time order, as a detector emits them.
    std::vector<size_t> idx(s.t.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s.t[a] < s.t[b]; });
    Spikes o;
    for (size_t i : idx) {
        o.t.push_back(s.t[i]);
        o.y.push_back(s.y[i]);
        o.amp.push_back(s.amp[i]);
    }
    return o;
}

struct Err {
    double rms = 0, max = 0;
};

// Truth: dshift = -motion at the batch's centre time. The estimate is evaluated where the correction
// uses it: interpolated from the blocks (channel_shifts) at depths 100, 150, .., 1400 µm. One offset
// per depth (the mean difference over batches) is removed before measuring.
Err motion_error(const MotionEstimate& m, const MotionFn& motion) {
    std::vector<double> depths;
    for (double y = 100.0; y <= 1400.0; y += 50.0) depths.push_back(y);
    const size_t nd = depths.size();
    std::vector<double> diff(static_cast<size_t>(m.n_batches) * nd);
    for (int b = 0; b < m.n_batches; ++b) {
        const std::vector<double> row(m.dshift.begin() + static_cast<size_t>(b) * m.n_blocks,
                                      m.dshift.begin() + static_cast<size_t>(b + 1) * m.n_blocks);
        const auto est = ks::drift::channel_shifts(row, m.yblk, depths);
        const double tc = (b + 0.5) * kBatch / kFs;
        for (size_t k = 0; k < nd; ++k) diff[b * nd + k] = est[k] + motion(tc, depths[k]);
    }
    Err e;
    double ss = 0;
    for (size_t k = 0; k < nd; ++k) {
        double mean = 0;
        for (int b = 0; b < m.n_batches; ++b) mean += diff[b * nd + k];
        mean /= m.n_batches;
        for (int b = 0; b < m.n_batches; ++b) {
            const double v = diff[b * nd + k] - mean;
            ss += v * v;
            e.max = std::max(e.max, std::abs(v));
        }
    }
    e.rms = std::sqrt(ss / (static_cast<double>(m.n_batches) * nd));
    return e;
}

MotionEstimate run(const Spikes& s, int n_batches, int nblocks) {
    RegistrationParams p;
    p.nblocks = nblocks;
    DriftHistogram h(kBatch, n_batches, kYmin, kYmax, p);
    // Streamed in chunks that do not follow batch edges.
    const int64_t n = static_cast<int64_t>(s.t.size());
    for (int64_t i = 0; i < n; i += 777) {
        const int64_t k = std::min<int64_t>(777, n - i);
        h.add_spikes(s.t.data() + i, s.y.data() + i, s.amp.data() + i, k);
    }
    return h.estimate();
}

// sparse: 30 units at 4 Hz with 10 µm localisation noise (~8 spikes per unit per batch), against
// 120 units at 8 Hz with 4 µm noise.
Err scenario(const char* name, const MotionFn& motion, int nblocks, bool sparse = false, int n_batches = 100) {
    const Spikes s = sparse ? simulate(motion, n_batches, 4321, 30, 4.0, 10.0) : simulate(motion, n_batches, 1234);
    const MotionEstimate m = run(s, n_batches, nblocks);
    EXPECT_EQ(m.status, MotionStatus::ok);
    EXPECT_EQ(m.n_batches, n_batches);
    EXPECT_EQ(m.n_blocks, 2 * nblocks - 1);
    const Err e = motion_error(m, motion);
    std::printf("[ drift    ] %-28s%s nblocks=%d  spikes=%zu  RMS %.2f µm  max %.2f µm\n", name,
                sparse ? " sparse" : "       ", nblocks, s.t.size(),
                e.rms, e.max);
    return e;
}

const double kPi = std::acos(-1.0);

}  // namespace

TEST(DriftBins, DepthBinsFollowKilosort4) {
    // Neuropixels 1.0 depths 20..3840 µm: y0 = 19, n_y = 1 + ceil(3821 / 5) = 766.
    const auto b = ks::drift::depth_bins(20.0, 3840.0, 5.0);
    EXPECT_DOUBLE_EQ(b.y0_um, 19.0);
    EXPECT_EQ(b.n_y, 766);
    EXPECT_DOUBLE_EQ(b.ysamp[0], 16.5);   // lower edge minus half a bin
    EXPECT_DOUBLE_EQ(b.ysamp[10], 66.5);
}

TEST(DriftBins, BlockStartsMatchNumpy) {
    // np.round(np.linspace(0, 766 - 153, 9)) and np.round(np.linspace(0, 301 - 60, 9)).
    int yl = 0;
    EXPECT_EQ(ks::drift::block_starts(766, 5, &yl), (std::vector<int>{0, 77, 153, 230, 306, 383, 460, 536, 613}));
    EXPECT_EQ(yl, 153);
    EXPECT_EQ(ks::drift::block_starts(301, 5, &yl), (std::vector<int>{0, 30, 60, 90, 120, 151, 181, 211, 241}));
    EXPECT_EQ(yl, 60);
    EXPECT_EQ(ks::drift::block_starts(301, 1, &yl), (std::vector<int>{0}));
    EXPECT_EQ(yl, 301);
}

TEST(DriftBins, GaussianFilterMatchesScipy) {
    // a = (np.arange(60) * 7 % 11).reshape(5, 4, 3); scipy.ndimage.gaussian_filter1d(a, 0.5, axis=...)
    auto make = [] {
        std::vector<double> a(60);
        for (int i = 0; i < 60; ++i) a[i] = (i * 7) % 11;
        return a;
    };
    const std::array<int, 3> dims = {5, 4, 3};
    const double ax0[] = {0.74779405, 6.57393305, 3.74779405, 9.57103053,
                          5.57393305, 2.74779405, 8.57103053, 4.57393305};
    const double ax1[] = {1.06952116, 6.89275763, 2.89275763, 8.82587513,
                          5.99973613, 1.99973613, 8.99736135, 5.00026387};
    const double ax2[] = {0.74779405, 5.82613899, 3.42606695, 9.57103053, 6.0, 2.42896947, 8.57103053, 5.0};
    const double* want[] = {ax0, ax1, ax2};
    for (int ax = 0; ax < 3; ++ax) {
        auto a = make();
        ks::drift::gaussian_filter_axis(a, dims, ax, 0.5);
        for (int i = 0; i < 8; ++i) EXPECT_NEAR(a[i], want[ax][i], 1e-7) << "axis " << ax << " i " << i;
    }
    // All three axes (scipy.ndimage.gaussian_filter(a, [0.5, 0.5, 0.5])): spot values.
    auto a = make();
    for (int ax = 0; ax < 3; ++ax) ks::drift::gaussian_filter_axis(a, dims, ax, 0.5);
    EXPECT_NEAR(a[0], 2.20153167, 1e-7);
    EXPECT_NEAR(a[13], 4.75206232, 1e-7);
    EXPECT_NEAR(a[59], 6.60982061, 1e-7);
    // Radius 6 > length 4: reflection wraps more than once. gaussian_filter1d([1,5,2,8], 1.5).
    std::vector<double> s = {1, 5, 2, 8};
    ks::drift::gaussian_filter_axis(s, {4, 1, 1}, 0, 1.5);
    const double w4[] = {2.80156608, 3.46528012, 4.47242161, 5.26073219};
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(s[i], w4[i], 1e-7);
}

TEST(DriftHistogram, BinsSpikesByDepthAndLogAmplitude) {
    RegistrationParams p;  // Th_universal 9, binning_depth 5
    DriftHistogram h(kBatch, 3, 0.0, 100.0, p);  // y0 = -1, n_y = 1 + ceil(101/5) = 22
    ASSERT_EQ(h.bins().n_y, 22);
    // column = int(1e-5 + 20 (log10(min(A, 99)) - log10 9) / (2 - log10 9))
    const float y[] = {-1.0f, 3.9f, 4.1f, 50.0f, 50.0f, 500.0f, -7.0f};
    const float a[] = {9.0f, 30.0f, 200.0f, 5.0f, 99.0f, 20.0f, 20.0f};
    h.add_batch(1, y, a, 7);
    const auto& c = h.counts();
    auto at = [&](int b, int row, int col) { return c[(static_cast<size_t>(b) * 22 + row) * 20 + col]; };
    const auto col = [](double A) {
        return static_cast<int>(1e-5 + 20 * (std::log10(std::min(A, 99.0)) - std::log10(9.0)) / (2 - std::log10(9.0)));
    };
    EXPECT_EQ(at(1, 0, 0), 1u);                 // y = -1 -> row 0, A = Th -> column 0
    EXPECT_EQ(at(1, 0, col(30.0)), 1u);         // (3.9 + 1) / 5 = 0.98 -> row 0
    EXPECT_EQ(at(1, 1, 19), 1u);                // A clipped to 99 -> column 19
    EXPECT_EQ(at(1, 10, 0), 1u);                // below Th -> lowest column
    EXPECT_EQ(at(1, 10, 19), 1u);
    EXPECT_EQ(col(30.0), 10);                   // (30/9)^2 = 100/9, so a = 0.5 exactly
    uint64_t total = 0;
    for (auto v : c) total += v;
    EXPECT_EQ(total, 5u);                       // y = 500 and y = -7 are outside the bins
    const auto m = h.estimate();
    EXPECT_EQ(m.n_spikes_binned, 5);
    EXPECT_EQ(m.n_spikes_outside, 2);
    EXPECT_EQ(m.spikes_per_batch, (std::vector<int64_t>{0, 5, 0}));
}

TEST(DriftHistogram, TimesMapToBatches) {
    RegistrationParams p;
    DriftHistogram h(100, 3, 0.0, 100.0, p);
    const int64_t t[] = {-5, 0, 99, 100, 250, 299, 300, 100000};
    const float y[8] = {50, 50, 50, 50, 50, 50, 50, 50};
    const float a[8] = {20, 20, 20, 20, 20, 20, 20, 20};
    h.add_spikes(t, y, a, 8);
    const auto m = h.estimate();
    // Negative times are dropped; times past the last batch go to the last batch.
    EXPECT_EQ(m.spikes_per_batch, (std::vector<int64_t>{2, 1, 4}));
    EXPECT_EQ(m.n_spikes_outside, 1);
}

TEST(DriftHistogram, RejectsBadSettings) {
    RegistrationParams p;
    auto code = [](auto&& f) {
        try {
            f();
        } catch (const ks::Error& e) {
            return e.code();
        }
        return ks::Exit::ok;
    };
    p.nblocks = -1;
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 1000, p); }), ks::Exit::usage);
    p = {};
    p.binning_depth = 0;
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 1000, p); }), ks::Exit::usage);
    p = {};
    p.Th_universal = 150;
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 1000, p); }), ks::Exit::usage);
    p = {};
    p.drift_smoothing = {0.5, -1, 0.5};
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 1000, p); }), ks::Exit::usage);
    p = {};
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 0, 0, 1000, p); }), ks::Exit::usage);
    EXPECT_EQ(code([&] { DriftHistogram(0, 10, 0, 1000, p); }), ks::Exit::usage);
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 100, 0, p); }), ks::Exit::usage);
    p.nblocks = 20;  // 22 bins / 20 blocks = 1 bin per block
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 100, p); }), ks::Exit::usage);
    p.nblocks = 11;
    EXPECT_EQ(code([&] { DriftHistogram(kBatch, 10, 0, 100, p); }), ks::Exit::ok);
}

TEST(DriftEstimate, NblocksZeroIsDisabled) {
    const Spikes s = simulate([](double, double) { return 0.0; }, 10, 7);
    const auto m = run(s, 10, 0);
    EXPECT_EQ(m.status, MotionStatus::disabled);
    EXPECT_EQ(m.n_blocks, 1);
    ASSERT_EQ(m.dshift.size(), 10u);
    for (double v : m.dshift) EXPECT_EQ(v, 0.0);
}

TEST(DriftEstimate, TooFewSpikesGivesZeroMotionAndFlag) {
    const Spikes s = simulate([](double t, double) { return t; }, 20, 7, 2, 1.0);  // ~4 spikes per batch
    const auto m = run(s, 20, 5);
    EXPECT_EQ(m.status, MotionStatus::too_few_spikes);
    EXPECT_EQ(m.n_blocks, 9);
    EXPECT_EQ(m.yblk.size(), 9u);
    ASSERT_EQ(m.dshift.size(), 20u * 9u);
    for (double v : m.dshift) EXPECT_EQ(v, 0.0);
}

TEST(DriftEstimate, ShapesAndBlockCentres) {
    const Spikes s = simulate([](double, double) { return 0.0; }, 12, 3);
    for (int nb : {1, 5}) {
        const auto m = run(s, 12, nb);
        EXPECT_EQ(m.status, MotionStatus::ok);
        EXPECT_EQ(m.n_blocks, 2 * nb - 1);
        EXPECT_EQ(m.dshift.size(), 12u * (2 * nb - 1));
        EXPECT_EQ(m.reference_batch, 6);
        // yblk = mean of ysamp over each block: ysamp = -1 + 5k - 2.5, n_y = 1 + ceil(1501/5) = 302.
        int yl = 0;
        const auto st = ks::drift::block_starts(302, nb, &yl);
        for (size_t k = 0; k < st.size(); ++k)
            EXPECT_NEAR(m.yblk[k], -3.5 + 5.0 * (st[k] + (yl - 1) / 2.0), 1e-9);
    }
}

TEST(DriftEstimate, SignConvention) {
    // Units appear 20 µm higher in the second half: dshift(second) - dshift(first) = -20.
    const MotionFn step = [](double t, double) { return t >= 100.0 ? 20.0 : 0.0; };
    const Spikes s = simulate(step, 100, 11);
    const auto m = run(s, 100, 1);
    double a = 0, b = 0;
    for (int i = 0; i < 40; ++i) a += m.at(i, 0) / 40;
    for (int i = 60; i < 100; ++i) b += m.at(i, 0) / 40;
    EXPECT_NEAR(b - a, -20.0, 2.0);
}

TEST(DriftEstimate, EmptyBatchesCopyANeighbour) {
    Spikes s = simulate([](double t, double) { return 0.2 * t; }, 30, 5);
    Spikes k;
    for (size_t i = 0; i < s.t.size(); ++i) {
        const int64_t b = s.t[i] / kBatch;
        if (b == 0 || b == 10 || b == 11) continue;
        k.t.push_back(s.t[i]);
        k.y.push_back(s.y[i]);
        k.amp.push_back(s.amp[i]);
    }
    const auto m = run(k, 30, 1);
    EXPECT_EQ(m.empty_batches, (std::vector<int>{0, 10, 11}));
    EXPECT_EQ(m.at(0, 0), m.at(1, 0));
    EXPECT_EQ(m.at(10, 0), m.at(9, 0));
    EXPECT_EQ(m.at(11, 0), m.at(9, 0));
    EXPECT_EQ(m.reference_batch, 15);
}

TEST(DriftEstimate, EmptyReferenceBatchFallsBackToANeighbour) {
    // Motion 0.2 µm/s over 60 s: truth dshift = -0.2 t relative to the reference's time.
    Spikes s = simulate([](double t, double) { return 0.2 * t; }, 30, 5);
    Spikes k;
    for (size_t i = 0; i < s.t.size(); ++i) {
        if (s.t[i] / kBatch == 15) continue;   // Kilosort4's reference batch (30 / 2)
        k.t.push_back(s.t[i]);
        k.y.push_back(s.y[i]);
        k.amp.push_back(s.amp[i]);
    }
    const auto m = run(k, 30, 1);
    EXPECT_EQ(m.reference_batch, 14);       // 14 and 16 are equally near: the earlier one
    // Registered to batch 14 (t = 29 s): no spurious -15-bin (-75 µm) offset.
    EXPECT_NEAR(m.at(14, 0), 0.0, 2.0);
    EXPECT_NEAR(m.at(0, 0) - m.at(29, 0), 0.2 * 58.0, 2.0);
}

// Thresholds: a few µm against the 20 µm channel pitch; measured values are printed ("[ drift ]").
TEST(DriftEstimate, NoMotion) {
    const MotionFn f = [](double, double) { return 0.0; };
    EXPECT_LT(scenario("none", f, 1).rms, 0.5);
    EXPECT_LT(scenario("none", f, 5).rms, 1.0);
    const Err sp = scenario("none", f, 1, true);
    EXPECT_LT(sp.rms, 1.5);
    EXPECT_LT(sp.max, 5.0);
}

TEST(DriftEstimate, SlowRigid30um) {
    const MotionFn f = [](double t, double) { return 30.0 * std::sin(2 * kPi * t / 200.0); };
    for (bool sparse : {false, true}) {
        const Err e = scenario("slow rigid +-30 um", f, 1, sparse);
        EXPECT_LT(e.rms, sparse ? 2.0 : 1.0);
        EXPECT_LT(e.max, 5.0);
        const Err e5 = scenario("slow rigid +-30 um", f, 5, sparse);
        EXPECT_LT(e5.rms, sparse ? 3.0 : 1.0);
        EXPECT_LT(e5.max, sparse ? 10.0 : 5.0);
    }
}

TEST(DriftEstimate, Step20um) {
    const MotionFn f = [](double t, double) { return t >= 100.0 ? 20.0 : 0.0; };
    for (bool sparse : {false, true}) {
        const Err e = scenario("step 20 um", f, 1, sparse);
        EXPECT_LT(e.rms, sparse ? 2.0 : 1.0);
        EXPECT_LT(e.max, 6.0);
    }
}

TEST(DriftEstimate, FastJitter) {
    // A random displacement (sd 4 µm) per batch, constant within each batch.
    std::vector<double> jit(100);
    std::mt19937 rng(99);
    std::normal_distribution<double> N(0.0, 4.0);
    for (double& v : jit) v = N(rng);
    const MotionFn f = [&jit](double t, double) { return jit[std::min<size_t>(99, static_cast<size_t>(t / 2.0))]; };
    EXPECT_LT(scenario("jitter sd 4 um", f, 1).rms, 1.0);
    EXPECT_LT(scenario("jitter sd 4 um", f, 1, true).rms, 2.5);   // the truth's own spread is 4 µm
}

TEST(DriftEstimate, NonrigidLinearInDepth) {
    // 0 µm at the bottom of the probe to ±30 µm at the top.
    const MotionFn f = [](double t, double y) { return (y / kYmax) * 30.0 * std::sin(2 * kPi * t / 200.0); };
    const Err e5 = scenario("nonrigid 0..30 um", f, 5);
    EXPECT_LT(e5.rms, 2.0);
    EXPECT_LT(e5.max, 6.0);
    const Err s5 = scenario("nonrigid 0..30 um", f, 5, true);
    EXPECT_LT(s5.rms, 4.0);
    const Err e1 = scenario("nonrigid 0..30 um (1 block)", f, 1);
    EXPECT_GT(e1.rms, 2 * e5.rms);  // one block cannot follow depth-dependent motion
}

namespace {

// Kilosort4's align_block2 as kilosort4-algorithm.md 3.3-3.4 describes it, written with numpy
// rolls and scipy's gaussian_filter (float64 throughout; Kilosort4 itself correlates in float32).
const char* kReferencePy = R"PY(
import sys, numpy as np
from scipy.ndimage import gaussian_filter
d, nblocks, dd = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
F = np.load(d + "/F.npy"); ysamp = np.load(d + "/ysamp.npy")
nb, ny = F.shape[0], F.shape[1]
G = F - F.mean(1, keepdims=True)
F0 = G[min(300, nb // 2)].copy()
dt = np.arange(-15, 16)
dall = np.zeros((10, nb))
for it in range(10):
    dc = np.zeros((len(dt), nb))
    for t in range(len(dt)):
        dc[t] = (np.roll(G, dt[t], 1) * F0).mean(-1).mean(-1)
    if it < 9:
        imax = np.argmax(dc, 0)
        dall[it] = dt[imax]
        for t in range(len(dt)):
            ib = imax == t
            G[ib] = np.roll(G[ib], dt[t], 1)
    F0 = G.mean(0)
yl = ny // nblocks
ifirst = np.round(np.linspace(0, ny - yl, 2 * nblocks - 1)).astype(int)
yblk = np.array([ysamp[i:i + yl].mean() for i in ifirst])
dt = np.arange(-5, 6)
dcs = np.zeros((11, nb, len(ifirst)))
for k, i0 in enumerate(ifirst):
    for t in range(11):
        dcs[t, :, k] = (np.roll(G[:, i0:i0 + yl], dt[t], 1) * F0[i0:i0 + yl]).mean(-1).mean(-1)
dcs = gaussian_filter(dcs, [0.5, 0.5, 0.5])
dtup = np.linspace(-5, 5, 101)
K = np.exp(-(dt[:, None] - dtup[None, :]) ** 2 / 2)
imin = np.zeros((nb, len(ifirst)))
for j in range(len(ifirst)):
    imin[:, j] = dtup[np.argmax(K.T @ dcs[:, :, j], 0)]
np.save(d + "/dshift.npy", (imin + dall.sum(0)[:, None]) * dd)
np.save(d + "/yblk.npy", yblk)
)PY";

bool have_scipy() {
    return std::system(KS_PYTHON " -c 'import numpy, scipy.ndimage' >/dev/null 2>&1") == 0;
}

}  // namespace

TEST(DriftEstimate, MatchesNumpyReference) {
    if (!have_scipy()) GTEST_SKIP() << KS_PYTHON << " with numpy and scipy not found";
    namespace fs = std::filesystem;
    const fs::path dir = fs::path(::testing::TempDir()) / "ks_drift_ref";
    fs::remove_all(dir);
    fs::create_directories(dir);
    {
        std::ofstream(dir / "ref.py") << kReferencePy;
    }
    // Rigid and depth-dependent motion, sparse population: varied rigid and fine shifts.
    const MotionFn f = [](double t, double y) {
        return 25.0 * std::sin(2 * kPi * t / 60.0) + (y / kYmax) * 12.0 * std::cos(2 * kPi * t / 50.0);
    };
    const int nb = 24;
    const Spikes s = simulate(f, nb, 77, 30, 4.0, 8.0);
    for (int nblocks : {1, 5}) {
        RegistrationParams p;
        p.nblocks = nblocks;
        DriftHistogram h(kBatch, nb, kYmin, kYmax, p);
        h.add_spikes(s.t.data(), s.y.data(), s.amp.data(), static_cast<int64_t>(s.t.size()));
        const MotionEstimate m = h.estimate();
        ASSERT_EQ(m.status, MotionStatus::ok);
        std::vector<double> F(h.counts().size());
        for (size_t i = 0; i < F.size(); ++i) F[i] = std::log2(1.0 + h.counts()[i]);
        const int64_t ny = h.bins().n_y;
        ks::write_npy((dir / "F.npy").string(), {nb, ny, ks::drift::kAmplitudeBins}, F.data());
        ks::write_npy((dir / "ysamp.npy").string(), h.bins().ysamp);
        const std::string cmd = std::string(KS_PYTHON) + " " + (dir / "ref.py").string() + " " + dir.string() + " " +
                                std::to_string(nblocks) + " 5";
        ASSERT_EQ(std::system(cmd.c_str()), 0);
        const auto want = ks::read_npy((dir / "dshift.npy").string()).as<double>();
        const auto yblk = ks::read_npy((dir / "yblk.npy").string()).as<double>();
        ASSERT_EQ(want.size(), m.dshift.size());
        ASSERT_EQ(yblk.size(), m.yblk.size());
        for (size_t k = 0; k < yblk.size(); ++k) EXPECT_NEAR(m.yblk[k], yblk[k], 1e-9);
        int differ = 0;
        double spread = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            if (std::abs(m.dshift[i] - want[i]) > 1e-9) ++differ;
            spread = std::max(spread, std::abs(want[i] - want[0]));
        }
        EXPECT_EQ(differ, 0) << "nblocks " << nblocks;
        EXPECT_GT(spread, 20.0);   // the comparison covers real shifts, not only zeros
    }
    fs::remove_all(dir);
}
