// ks::sim sessions: one recording's units, spikes, motion, noise and artifacts, rendered
// chunk by chunk. Rendering is parallel over channels only, and each channel sums its
// contributions in spike order, so the result does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "ks/error.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr int kChannelBlock = 16;
enum Purpose : uint64_t { kMotion = 30, kNoise = 31, kArtifacts = 32 };
}  // namespace

Session::Session(const Config& cfg, const Population& pop, int index) : cfg_(cfg), index_(index) {
    KS_ASSERT(index >= 0 && index < static_cast<int>(pop.present.size()), "session index");
    int rows = 0;
    for (int r : cfg.probe.chanMap) rows = std::max(rows, r + 1);
    n_chan_bin_ = cfg.n_chan_bin > 0 ? cfg.n_chan_bin : rows;
    n_samples_ = static_cast<int64_t>(std::llround(cfg.duration_s * cfg.fs_hz));
    const Probe& probe = cfg_.probe;
    const auto [ylo, yhi] = std::minmax_element(probe.yc.begin(), probe.yc.end());
    motion_ = Motion(cfg.drift, key(cfg.seed, kMotion, static_cast<uint64_t>(index)), cfg.duration_s, *ylo, *yhi);
    for (int gid : pop.present[index]) {
        Unit u = build_unit(session_unit(cfg, pop, gid, index), probe, cfg.fs_hz, motion_.max_abs_um());
        u.local_id = static_cast<int>(units_.size());
        units_.push_back(std::move(u));
    }
    int pre = 0, nt = 0;
    waveform_window(cfg.fs_hz, pre, nt);
    // Spikes whose whole window lies inside the file.
    spikes_ = make_spikes(units_, cfg.seed, index, cfg.fs_hz, pre, n_samples_ - (nt - pre), cfg.rate_modulation,
                          cfg.amp_jitter, units_.empty() ? 8 : units_[0].os);
    noise_ = Noise(cfg, probe, key(cfg.seed, kNoise, static_cast<uint64_t>(index)));
    if (cfg.artifact_rate_hz > 0) {
        Rng r(key(cfg.seed, kArtifacts, static_cast<uint64_t>(index)));
        double t = r.exponential(1.0 / cfg.artifact_rate_hz) * cfg.fs_hz;
        while (true) {
            Artifact a;
            a.start = static_cast<int64_t>(t);
            a.amp_uv = std::exp(r.uniform(std::log(300.0), std::log(3000.0))) * (r.chance(0.5) ? 1 : -1);
            a.tau_ms = r.uniform(0.5, 3.0);
            a.freq_hz = r.chance(0.5) ? 0.0 : r.uniform(100, 800);
            a.length = static_cast<int64_t>(std::ceil(8 * a.tau_ms * 1e-3 * cfg.fs_hz));
            if (a.start + a.length > n_samples_) break;
            artifacts_.push_back(a);
            t += r.exponential(1.0 / cfg.artifact_rate_hz) * cfg.fs_hz + static_cast<double>(a.length);
        }
    }
}

void Session::render(int64_t t0, int64_t n, float* out) const {
    const Probe& probe = cfg_.probe;
    const int C = probe.n_chan();
    std::fill(out, out + static_cast<size_t>(C) * n, 0.f);
    noise_.add(t0, n, out);
    if (!units_.empty() && spikes_.size() > 0) {
        const int pre = units_[0].pre, post = units_[0].nt - units_[0].pre;
        const auto lo = std::lower_bound(spikes_.t.begin(), spikes_.t.end(), t0 - post) - spikes_.t.begin();
        const auto hi = std::lower_bound(spikes_.t.begin(), spikes_.t.end(), t0 + n + pre) - spikes_.t.begin();
        std::vector<float> motion(hi - lo);
        for (auto i = lo; i < hi; ++i) {
            const Unit& u = units_[spikes_.unit[i]];
            motion[i - lo] = static_cast<float>(motion_.at(static_cast<double>(spikes_.t[i]) / cfg_.fs_hz, u.p.y_um));
        }
        const int n_blocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(dynamic) if (!omp_in_parallel())
        for (int b = 0; b < n_blocks; ++b) {
            const int c_lo = b * kChannelBlock, c_hi = std::min(C, c_lo + kChannelBlock);
            for (auto i = lo; i < hi; ++i) {
                const Unit& u = units_[spikes_.unit[i]];
                if (u.channels.empty() || u.channels.front() >= c_hi || u.channels.back() < c_lo) continue;
                render_spike(u, probe, motion[i - lo], spikes_.phase[i], spikes_.amp[i], spikes_.t[i], t0, n, c_lo,
                             c_hi, out);
            }
        }
    }
    // Artifacts: a jump decaying (or ringing) over a few ms on every channel, stronger at one end.
    for (const auto& a : artifacts_) {
        if (a.start >= t0 + n || a.start + a.length <= t0) continue;
        for (int c = 0; c < C; ++c) {
            const double g = a.amp_uv * (1.0 + 0.3 * std::tanh((probe.yc[c] - probe.yc[0]) / 1000.0));
            float* o = out + static_cast<size_t>(c) * n;
            for (int64_t s = std::max(t0, a.start); s < std::min(t0 + n, a.start + a.length); ++s) {
                const double ts = static_cast<double>(s - a.start) / cfg_.fs_hz;
                o[s - t0] += static_cast<float>(g * std::exp(-ts * 1e3 / a.tau_ms) * std::cos(2 * kPi * a.freq_hz * ts));
            }
        }
    }
}

void Session::quantise(const float* uv, int64_t n, int16_t* rows) const {
    const Probe& probe = cfg_.probe;
    const int C = probe.n_chan(), R = n_chan_bin_;
    const double inv = 1.0 / cfg_.uv_per_bit;
    const double hi = std::ldexp(1.0, cfg_.adc_bits - 1) - 1, lo = -std::ldexp(1.0, cfg_.adc_bits - 1);
    std::fill(rows, rows + static_cast<size_t>(R) * n, int16_t{0});
    // Blocks of 256 samples keep the channel-major -> interleaved transposition in cache.
    // floor(v + 0.5) via truncation of a positive number: exact and branch-free.
    constexpr int64_t B = 256;
    const int64_t n_blocks = (n + B - 1) / B;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const int64_t i0 = blk * B, i1 = std::min(n, i0 + B);
        for (int c = 0; c < C; ++c) {
            const int r = probe.chanMap[c];
            const float* x = uv + static_cast<size_t>(c) * n;
            for (int64_t i = i0; i < i1; ++i) {
                const double v = std::min(hi, std::max(lo, x[i] * inv));
                rows[static_cast<size_t>(i) * R + r] = static_cast<int16_t>(static_cast<int32_t>(v + 65536.5) - 65536);
            }
        }
    }
}

}  // namespace ks::sim
