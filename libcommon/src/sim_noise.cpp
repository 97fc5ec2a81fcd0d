// ks::sim noise: AP-band background with a realistic spectrum and spatial correlation.
//
// Per channel, unit-variance white noise is a mix of three parts: independent (electronics,
// near neurons), spatially smooth (the far field of many distant neurons: a grid of sources
// over each shank, Gaussian-weighted by distance) and common to all channels (reference).
// The mix is then coloured by one filter shared by all channels (so the spatial correlation is
// the mix's): a white floor plus a first-order low-pass "pink" part, a first-order 300 Hz
// high-pass (the Neuropixels AP-band hardware filter) and a second-order 8 kHz anti-alias
// low-pass. White samples are counter-based (random access by sample index), and each chunk
// runs the filter from `warmup_` samples before its start, where the filter's memory has
// decayed below 1e-15: chunks are independent, so any thread count gives the same bytes.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ks/error.hpp"
#include "ks/log.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr double kHighPassHz = 300;
constexpr double kPinkCornerHz = 1000;
constexpr double kAntiAliasHz = 8000;
enum Purpose : uint64_t { kIndependent = 20, kSources = 21, kCommon = 22, kLevels = 23, kLfp = 24 };

double prewarp(double f, double fs) { return std::tan(kPi * std::min(f, 0.45 * fs) / fs); }
}  // namespace

Noise::Noise(const Config& cfg, const Probe& probe, uint64_t seed) : fs_(cfg.fs_hz), n_chan_(probe.n_chan()) {
    key_ind_ = key(seed, kIndependent);
    key_src_ = key(seed, kSources);
    key_com_ = key(seed, kCommon);
    Rng r(key(seed, kLevels));
    for (int c = 0; c < n_chan_; ++c)
        chan_uv_.push_back(cfg.noise_uv * std::clamp(std::exp(cfg.noise_spread * r.normal()), 0.7, 1.4));

    // Correlated part: a grid of sources over each shank (columns spanning its width, rows
    // 1.5 sigma apart: a sum of Gaussians that dense is flat to 3e-4), each channel weighting
    // those within 3 sigma by exp(-d^2 / 2 sigma^2) with sigma = lambda / sqrt(2); the
    // correlation of two channels d apart is then close to exp(-d^2 / 2 lambda^2).
    const double lambda = cfg.noise_length_um, sa = lambda / std::sqrt(2.0), pitch = 1.5 * sa;
    taps_.assign(n_chan_, {});
    std::vector<int> shanks(probe.kcoords.begin(), probe.kcoords.end());
    std::sort(shanks.begin(), shanks.end());
    shanks.erase(std::unique(shanks.begin(), shanks.end()), shanks.end());
    for (int s : shanks) {
        double xlo = 1e300, xhi = -1e300, ylo = 1e300, yhi = -1e300;
        for (int c = 0; c < n_chan_; ++c)
            if (probe.kcoords[c] == s)
                xlo = std::min(xlo, probe.xc[c]), xhi = std::max(xhi, probe.xc[c]), ylo = std::min(ylo, probe.yc[c]),
                yhi = std::max(yhi, probe.yc[c]);
        const int nx = xhi - xlo < 1e-9 ? 1 : static_cast<int>(std::ceil((xhi - xlo) / pitch)) + 1;
        for (double y = ylo - 3 * lambda; y <= yhi + 3 * lambda + 1e-9; y += pitch)
            for (int ix = 0; ix < nx; ++ix) {
                const double xs = nx == 1 ? xlo : xlo + (xhi - xlo) * ix / (nx - 1);
                for (int c = 0; c < n_chan_; ++c) {
                    if (probe.kcoords[c] != s) continue;
                    const double dx = probe.xc[c] - xs, dy = probe.yc[c] - y;
                    const double d2 = dx * dx + dy * dy;
                    if (d2 <= 9 * sa * sa) taps_[c].push_back({n_src_, static_cast<float>(std::exp(-0.5 * d2 / (sa * sa)))});
                }
                ++n_src_;
            }
    }
    for (auto& t : taps_) {
        double e = 0;
        for (const auto& x : t) e += static_cast<double>(x.w) * x.w;
        for (auto& x : t) x.w = static_cast<float>(x.w / std::sqrt(e));
    }
    // Nearest-neighbour pairs (closest distance on the probe) and their correlation.
    double dmin = std::numeric_limits<double>::infinity();
    for (int a = 0; a < n_chan_; ++a)
        for (int b = a + 1; b < n_chan_; ++b)
            dmin = std::min(dmin, std::hypot(probe.xc[a] - probe.xc[b], probe.yc[a] - probe.yc[b]));
    double ksum = 0;
    int npair = 0;
    for (int a = 0; a < n_chan_; ++a)
        for (int b = a + 1; b < n_chan_; ++b) {
            if (std::hypot(probe.xc[a] - probe.xc[b], probe.yc[a] - probe.yc[b]) > dmin * 1.01 + 1e-9) continue;
            double rho = 0;
            for (const auto& x : taps_[a])
                for (const auto& y : taps_[b])
                    if (x.source == y.source) rho += static_cast<double>(x.w) * y.w;
            ksum += rho, ++npair;
        }
    f_com_ = cfg.noise_common;
    if (npair > 0 && ksum > 0) {
        const double k_nn = ksum / npair;
        f_bio_ = (cfg.noise_corr - f_com_) / k_nn;
        if (f_bio_ < -1e-12 || f_bio_ + f_com_ > 1 + 1e-12)
            throw Error(Exit::usage, log::format("--noise-corr %g: not reachable with --noise-common %g and "
                                                 "--noise-length-um %g on this probe (expected %g to %g)",
                                                 cfg.noise_corr, cfg.noise_common, cfg.noise_length_um, f_com_,
                                                 f_com_ + (1 - f_com_) * k_nn));
        f_bio_ = std::clamp(f_bio_, 0.0, 1.0 - f_com_);
        nn_corr_ = f_com_ + f_bio_ * k_nn;
    } else {
        f_bio_ = 0;
        nn_corr_ = f_com_;
    }
    f_ind_ = std::max(0.0, 1.0 - f_bio_ - f_com_);

    // Filters (bilinear transform, prewarped corners).
    const double kp = prewarp(kPinkCornerHz, fs_);
    lp1_b0_ = kp / (1 + kp);
    lp1_a1_ = (kp - 1) / (kp + 1);
    const double kh = prewarp(kHighPassHz, fs_);
    hp_b0_ = 1 / (1 + kh);
    hp_a1_ = (kh - 1) / (kh + 1);
    const double kl = prewarp(kAntiAliasHz, fs_), nrm = 1 / (1 + std::sqrt(2.0) * kl + kl * kl);
    lp2_b_[0] = kl * kl * nrm;
    lp2_b_[1] = 2 * lp2_b_[0];
    lp2_b_[2] = lp2_b_[0];
    lp2_a_[0] = 2 * (kl * kl - 1) * nrm;
    lp2_a_[1] = (1 - std::sqrt(2.0) * kl + kl * kl) * nrm;
    warmup_ = static_cast<int>(std::ceil(35.0 / -std::log(std::fabs(hp_a1_))));
    // Unit output variance for unit-variance white input: 1 / sqrt(energy of the impulse response).
    {
        double s_lp1 = 0, x1 = 0, hp_y = 0, hp_x1 = 0, z1 = 0, z2 = 0, w1 = 0, w2 = 0, e = 0;
        for (int i = 0; i < (1 << 17); ++i) {
            const double x = i == 0 ? 1.0 : 0.0;
            s_lp1 = lp1_b0_ * (x + x1) - lp1_a1_ * s_lp1;
            x1 = x;
            const double s = white_gain_ * x + pink_gain_ * s_lp1;
            hp_y = hp_b0_ * (s - hp_x1) - hp_a1_ * hp_y;
            hp_x1 = s;
            const double y = lp2_b_[0] * hp_y + lp2_b_[1] * z1 + lp2_b_[2] * z2 - lp2_a_[0] * w1 - lp2_a_[1] * w2;
            z2 = z1, z1 = hp_y, w2 = w1, w1 = y;
            e += y * y;
        }
        gain_norm_ = 1 / std::sqrt(e);
    }

    // LFP left in the AP band: 24 sinusoids of 1-250 Hz, amplitude ~ f^-1/2, each with its own
    // gradient along the probe, scaled so the channels' mean square is lfp_uv^2.
    Rng rl(key(seed, kLfp));
    double ylo = 1e300, yhi = -1e300;
    for (int c = 0; c < n_chan_; ++c) ylo = std::min(ylo, probe.yc[c]), yhi = std::max(yhi, probe.yc[c]);
    const double ymid = 0.5 * (ylo + yhi), yh = std::max(1.0, 0.5 * (yhi - ylo));
    for (int c = 0; c < n_chan_; ++c) chan_rel_depth_.push_back(static_cast<float>((probe.yc[c] - ymid) / yh));
    if (cfg.lfp_uv > 0) {
        std::vector<double> amp;
        for (int j = 0; j < 24; ++j) {
            const double f = std::exp(rl.uniform(std::log(1.0), std::log(250.0)));
            lfp_freq_.push_back(f);
            lfp_phase_.push_back(rl.uniform(0, 2 * kPi));
            amp.push_back(1 / std::sqrt(f));
            lfp_a_.push_back(1 + 0.3 * rl.normal());
            lfp_b_.push_back(0.6 * rl.normal());
        }
        double ms = 0;
        for (int c = 0; c < n_chan_; ++c)
            for (int j = 0; j < 24; ++j) {
                const double v = (lfp_a_[j] + lfp_b_[j] * chan_rel_depth_[c]) * amp[j];
                ms += 0.5 * v * v;
            }
        const double scale = cfg.lfp_uv / std::sqrt(ms / std::max(1, n_chan_));
        for (int j = 0; j < 24; ++j) lfp_a_[j] *= amp[j] * scale, lfp_b_[j] *= amp[j] * scale;
    }
}

void Noise::add(int64_t t0, int64_t n, float* out) const {
    if (n <= 0) return;
    const int64_t W = warmup_, T = n + W, ts = t0 - W;
    // Scratch reused across calls (per thread: chunks may be rendered concurrently); large
    // fresh allocations would cost a page fault per 4 KiB every chunk.
    // Inside the parallel regions below only the pointers are used: a thread_local named there
    // would be that worker's own (empty) copy.
    thread_local std::vector<float> src_buf, com_buf, la_buf, lb_buf;
    src_buf.resize(static_cast<size_t>(n_src_) * T);
    com_buf.resize(T);
    float* const src = src_buf.data();
    float* const com = com_buf.data();
    const float a_ind = static_cast<float>(std::sqrt(f_ind_)), a_bio = static_cast<float>(std::sqrt(f_bio_)),
                a_com = static_cast<float>(std::sqrt(f_com_));
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int s = 0; s < n_src_; ++s)
        counter_normals(key(key_src_, static_cast<uint64_t>(s)), static_cast<uint64_t>(ts), T, 1.f,
                        src + static_cast<size_t>(s) * T);
    if (f_com_ > 0) counter_normals(key_com_, static_cast<uint64_t>(ts), T, 1.f, com);
    // LFP: channel value = A(t) + B(t) * relative depth.
    const bool lfp = !lfp_freq_.empty();
    la_buf.resize(lfp ? n : 0);
    lb_buf.resize(lfp ? n : 0);
    float* const la = la_buf.data();
    float* const lb = lb_buf.data();
    if (lfp) {
        // Each sinusoid starts exactly at t0 and then rotates sample by sample (the rounding
        // drift over one chunk is ~1e-12 of its amplitude).
        const size_t J = lfp_freq_.size();
        std::vector<double> c(J), sn(J), cr(J), sr(J);
        for (size_t j = 0; j < J; ++j) {
            const double w = 2 * kPi * lfp_freq_[j] / fs_;
            const double ph = std::fmod(2 * kPi * lfp_freq_[j] * (static_cast<double>(t0) / fs_), 2 * kPi) + lfp_phase_[j];
            c[j] = std::cos(ph), sn[j] = std::sin(ph), cr[j] = std::cos(w), sr[j] = std::sin(w);
        }
        for (int64_t i = 0; i < n; ++i) {
            double a = 0, b = 0;
            for (size_t j = 0; j < J; ++j) {  // independent rotations: no long dependency chain
                a += lfp_a_[j] * sn[j], b += lfp_b_[j] * sn[j];
                const double c2 = c[j] * cr[j] - sn[j] * sr[j];
                sn[j] = sn[j] * cr[j] + c[j] * sr[j];
                c[j] = c2;
            }
            la[i] = static_cast<float>(a), lb[i] = static_cast<float>(b);
        }
    }
    // Channels in groups of eight: the filters are recursive (latency-bound), and eight
    // independent chains in one loop keep the CPU busy.
    constexpr int G = 8;
    const int n_groups = (n_chan_ + G - 1) / G;
#pragma omp parallel if (!omp_in_parallel())
    {
        thread_local std::vector<float> xs;
        xs.resize(static_cast<size_t>(G) * T);
#pragma omp for schedule(static)
        for (int grp = 0; grp < n_groups; ++grp) {
            const int c0 = grp * G, gc = std::min(G, n_chan_ - c0);
            for (int k = 0; k < G; ++k) {
                float* x = xs.data() + static_cast<size_t>(k) * T;
                if (k >= gc) {
                    std::fill(x, x + T, 0.f);
                    continue;
                }
                const int c = c0 + k;
                counter_normals(key(key_ind_, static_cast<uint64_t>(c)), static_cast<uint64_t>(ts), T, a_ind, x);
                for (const auto& tp : taps_[c]) {
                    const float w = a_bio * tp.w;
                    const float* u = src + static_cast<size_t>(tp.source) * T;
                    for (int64_t i = 0; i < T; ++i) x[i] += w * u[i];
                }
                if (f_com_ > 0)
                    for (int64_t i = 0; i < T; ++i) x[i] += a_com * com[i];
            }
            // float state, eight channels side by side: each step is a couple of SIMD operations
            float s_lp1[G] = {}, x1[G] = {}, hp_y[G] = {}, hp_x1[G] = {}, z1[G] = {}, z2[G] = {}, w1[G] = {}, w2[G] = {};
            float g[G];
            float* o[G];
            for (int k = 0; k < G; ++k) {
                g[k] = k < gc ? static_cast<float>(chan_uv_[c0 + k] * gain_norm_) : 0.f;
                o[k] = k < gc ? out + static_cast<size_t>(c0 + k) * n : nullptr;
            }
            const float lb0 = static_cast<float>(lp1_b0_), la1 = static_cast<float>(lp1_a1_);
            const float hb0 = static_cast<float>(hp_b0_), ha1 = static_cast<float>(hp_a1_);
            const float wg = static_cast<float>(white_gain_), pg = static_cast<float>(pink_gain_);
            const float b0 = static_cast<float>(lp2_b_[0]), b1 = static_cast<float>(lp2_b_[1]),
                        b2 = static_cast<float>(lp2_b_[2]), a1 = static_cast<float>(lp2_a_[0]),
                        a2 = static_cast<float>(lp2_a_[1]);
            for (int64_t i = 0; i < T; ++i) {
                float xi[G], y[G];
                for (int k = 0; k < G; ++k) xi[k] = xs[static_cast<size_t>(k) * T + i];
                for (int k = 0; k < G; ++k) {
                    s_lp1[k] = lb0 * (xi[k] + x1[k]) - la1 * s_lp1[k];
                    x1[k] = xi[k];
                    const float sv = wg * xi[k] + pg * s_lp1[k];
                    hp_y[k] = hb0 * (sv - hp_x1[k]) - ha1 * hp_y[k];
                    hp_x1[k] = sv;
                    y[k] = b0 * hp_y[k] + b1 * z1[k] + b2 * z2[k] - a1 * w1[k] - a2 * w2[k];
                    z2[k] = z1[k], z1[k] = hp_y[k], w2[k] = w1[k], w1[k] = y[k];
                }
                for (int k = 0; k < G; ++k) xs[static_cast<size_t>(k) * T + i] = g[k] * y[k];
            }
            for (int k = 0; k < gc; ++k) {
                const float* y = xs.data() + static_cast<size_t>(k) * T + W;
                const float rd = chan_rel_depth_[c0 + k];
                if (lfp)
                    for (int64_t i = 0; i < n; ++i) o[k][i] += y[i] + (la[i] + lb[i] * rd);
                else
                    for (int64_t i = 0; i < n; ++i) o[k][i] += y[i];
            }
        }
    }
}

}  // namespace ks::sim
