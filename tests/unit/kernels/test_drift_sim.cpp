// Motion estimation driven by ks-sim's ground truth (the engine, no recording rendered): the
// simulated units' spikes are turned into "detected" spikes (depth = the unit's y displaced by the
// true motion at the spike's time plus localisation noise, amplitude = the unit's amplitude over
// the noise level times the spike's amplitude factor) and the estimate is compared with the truth.
// ks-sim's motion is + = units appear at larger y, so the truth for dshift is −motion; one offset
// per depth (the mean over batches) is arbitrary and removed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "ks/kernels/drift_registration.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/sim.hpp"

namespace {

struct Result {
    double rms = 0, max = 0, rms_without_step_batch = 0;
};

Result run_sim(const char* drift, int nblocks, double duration_s, uint64_t seed) {
    ks::sim::Config cfg = ks::sim::preset("np64");
    cfg.duration_s = duration_s;
    cfg.seed = seed;
    cfg.drift = ks::sim::DriftConfig::parse(drift);
    ks::sim::validate(cfg);
    const ks::sim::Population pop = ks::sim::make_population(cfg);
    const ks::sim::Session s(cfg, pop, 0);
    const ks::sim::Spikes& sp = s.spikes();
    const auto& units = s.units();
    const ks::sim::Motion& mo = s.motion();

    const int64_t batch = 60000;
    const int n_batches = static_cast<int>((s.n_samples() + batch - 1) / batch);
    const auto& yc = s.probe().yc;
    const double ymin = *std::min_element(yc.begin(), yc.end()), ymax = *std::max_element(yc.begin(), yc.end());

    ks::drift::RegistrationParams p;
    p.nblocks = nblocks;
    ks::drift::DriftHistogram h(batch, n_batches, ymin, ymax, p);
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> N(0.0, 1.0);
    std::vector<int64_t> t;
    std::vector<float> y, a;
    for (size_t i = 0; i < sp.size(); ++i) {
        const auto& u = units[sp.unit[i]].p;
        const double amp = sp.amp[i] * u.amplitude_uv / cfg.noise_uv;  // ~ whitened units
        if (amp < p.Th_universal) continue;                             // the detector would miss it
        const double ts = sp.t[i] / cfg.fs_hz;
        t.push_back(sp.t[i]);
        y.push_back(static_cast<float>(u.y_um + mo.at(ts, u.y_um) + 5.0 * N(rng)));
        a.push_back(static_cast<float>(amp));
    }
    h.add_spikes(t.data(), y.data(), a.data(), static_cast<int64_t>(t.size()));
    const ks::drift::MotionEstimate m = h.estimate();
    EXPECT_EQ(m.status, ks::drift::MotionStatus::ok);

    // Truth per batch and depth: mean of −motion over the batch (sampled every 0.1 s).
    std::vector<double> depths;
    for (double d = ymin + 40; d <= ymax - 40; d += 20) depths.push_back(d);
    const size_t nd = depths.size();
    const int step_batch = mo.step_time_s() >= 0 ? static_cast<int>(mo.step_time_s() * cfg.fs_hz / batch) : -1;
    std::vector<double> diff(n_batches * nd);
    for (int b = 0; b < n_batches; ++b) {
        const std::vector<double> row(m.dshift.begin() + b * m.n_blocks, m.dshift.begin() + (b + 1) * m.n_blocks);
        const auto est = ks::drift::channel_shifts(row, m.yblk, depths);
        const double t0 = static_cast<double>(b) * batch / cfg.fs_hz;
        const double t1 = std::min(static_cast<double>(b + 1) * batch, static_cast<double>(s.n_samples())) / cfg.fs_hz;
        for (size_t k = 0; k < nd; ++k) {
            double sum = 0;
            int n = 0;
            for (double tt = t0 + 0.05; tt < t1; tt += 0.1, ++n) sum += mo.at(tt, depths[k]);
            diff[b * nd + k] = est[k] + sum / n;
        }
    }
    double lo = 1e9, hi = -1e9;
    for (double tt = 0.05; tt < s.n_samples() / cfg.fs_hz; tt += 0.1)
        for (double d : depths) {
            lo = std::min(lo, mo.at(tt, d));
            hi = std::max(hi, mo.at(tt, d));
        }
    Result r;
    double ss = 0, ss2 = 0;
    int n2 = 0;
    for (size_t k = 0; k < nd; ++k) {
        double mean = 0;
        for (int b = 0; b < n_batches; ++b) mean += diff[b * nd + k] / n_batches;
        for (int b = 0; b < n_batches; ++b) {
            const double v = diff[b * nd + k] - mean;
            ss += v * v;
            r.max = std::max(r.max, std::abs(v));
            if (b != step_batch) {
                ss2 += v * v;
                ++n2;
            }
        }
    }
    r.rms = std::sqrt(ss / (n_batches * nd));
    r.rms_without_step_batch = std::sqrt(ss2 / n2);
    std::printf("[ drift    ] ks-sim np64 %-16s %4.0f s nblocks=%d spikes=%zu  RMS %.2f µm  max %.2f µm  "
                "(without the step's batch %.2f µm; true motion %.1f..%.1f µm)\n",
                drift, duration_s, nblocks, t.size(), r.rms, r.max, r.rms_without_step_batch, lo, hi);
    return r;
}

}  // namespace

TEST(DriftSim, RigidAndStep60s) {
    const Result r = run_sim("rigid,step", 1, 60.0, 2);
    EXPECT_LT(r.rms, 3.0);
    EXPECT_LT(r.rms_without_step_batch, 2.5);
}

TEST(DriftSim, RigidAndStep) {
    for (int nb : {1, 5}) {
        const Result r = run_sim("rigid,step", nb, 120.0, 3);
        EXPECT_LT(r.rms, 3.0);
        EXPECT_LT(r.rms_without_step_batch, 2.5);
    }
}

TEST(DriftSim, NonrigidAndJitter) {
    const Result r = run_sim("rigid,jitter,nonrigid", 5, 120.0, 4);
    EXPECT_LT(r.rms, 4.0);
}
