// ks::sim: the simulator's statistics against their configuration and closed forms.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "ks/error.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/sim.hpp"

namespace fs = std::filesystem;
using namespace ks::sim;

namespace {

// A fresh folder under the test temp dir, removed at the end of the test.
struct TempDir {
    std::string path;
    TempDir() {
        std::string tmpl = ::testing::TempDir() + "ks_sim_XXXXXX";
        char* p = mkdtemp(tmpl.data());
        if (!p) throw std::runtime_error("mkdtemp failed");
        path = p;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

Config small_config(const std::string& preset_name = "smoke") {
    Config c = preset(preset_name);
    c.duration_s = 10;
    return c;
}

ks::Exit code_of(const std::function<void()>& f, std::string* msg = nullptr) {
    try {
        f();
    } catch (const ks::Error& e) {
        if (msg) *msg = e.what();
        return e.code();
    }
    return ks::Exit::ok;
}

std::vector<float> render_all(const Session& s, int64_t chunk) {
    const int C = s.probe().n_chan();
    const int64_t N = s.n_samples();
    std::vector<float> out(static_cast<size_t>(C) * N), buf(static_cast<size_t>(C) * chunk);
    for (int64_t t0 = 0; t0 < N; t0 += chunk) {
        const int64_t n = std::min(chunk, N - t0);
        s.render(t0, n, buf.data());
        for (int c = 0; c < C; ++c)
            std::copy(buf.begin() + static_cast<size_t>(c) * n, buf.begin() + static_cast<size_t>(c) * n + n,
                      out.begin() + static_cast<size_t>(c) * N + t0);
    }
    return out;  // channel-major, stride N
}

std::string file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

// ---- random numbers ---------------------------------------------------------------------------

TEST(SimRng, NormalQuantileMatchesKnownValues) {
    // scipy.stats.norm.ppf
    EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-12);
    EXPECT_NEAR(normal_quantile(0.3), -0.5244005127080407, 1e-12);
    EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-15);
    EXPECT_NEAR(normal_quantile(1e-10), -6.361340902404056, 1e-9);
    EXPECT_NEAR(normal_quantile(0.999), 3.090232306167813, 1e-10);
}

TEST(SimRng, CounterNormalsHaveGaussianMoments) {
    const int n = 1 << 20;
    std::vector<float> x(n);
    counter_normals(key(7, 1), 1000, n, 1.f, x.data());
    double m1 = 0, m2 = 0, m4 = 0;
    int beyond3 = 0;
    for (float v : x) m1 += v, m2 += double(v) * v, m4 += double(v) * v * v * v, beyond3 += std::fabs(v) > 3;
    m1 /= n, m2 /= n, m4 /= n;
    EXPECT_NEAR(m1, 0, 5 / std::sqrt(n));
    EXPECT_NEAR(m2, 1, 0.01);
    EXPECT_NEAR(m4 / (m2 * m2), 3, 0.05);
    EXPECT_NEAR(beyond3 / double(n), 0.0026998, 0.0004);  // 2 (1 - Phi(3))
    // random access: the same value wherever the run starts
    EXPECT_EQ(float(counter_normal(key(7, 1), 1000 + 12345)), x[12345]);
    // neighbouring samples are independent
    double c1 = 0;
    for (int i = 1; i < n; ++i) c1 += double(x[i]) * x[i - 1];
    EXPECT_NEAR(c1 / n, 0, 5 / std::sqrt(n));
}

TEST(SimRng, GeneratorIsDeterministicAndSeedsDiffer) {
    Rng a(42), b(42), c(43);
    int same_c = 0;
    for (int i = 0; i < 1000; ++i) {
        const uint64_t x = a.next();
        EXPECT_EQ(x, b.next());
        same_c += x == c.next();
    }
    EXPECT_EQ(same_c, 0);
    Rng r(5);
    double s = 0, s_exp = 0;
    int in_range = 0;
    for (int i = 0; i < 100000; ++i) {
        s += r.uniform();
        s_exp += r.exponential(2.0);
        const double v = r.truncated_lognormal(3, 1, 0.5, 30);
        in_range += v >= 0.5 && v <= 30;
    }
    EXPECT_NEAR(s / 100000, 0.5, 0.005);
    EXPECT_NEAR(s_exp / 100000, 2.0, 0.03);
    EXPECT_EQ(in_range, 100000);
}

// ---- configuration ----------------------------------------------------------------------------

TEST(SimConfig, PresetsHaveTheirProbesAndDurations) {
    EXPECT_EQ(preset("smoke").probe.n_chan(), 32);
    EXPECT_DOUBLE_EQ(preset("smoke").duration_s, 30);
    EXPECT_EQ(preset("np64").probe.n_chan(), 64);
    EXPECT_FALSE(preset("np64").drift.any());
    const Config d = preset("np64-drift");
    EXPECT_TRUE(d.drift.rigid && d.drift.jitter && d.drift.step && d.drift.nonrigid);
    EXPECT_EQ(preset("np384").probe.n_chan(), 384);
    // Neuropixels 1.0 layout: staggered columns, two sites per 20 µm row
    const ks::Probe p = preset("np64").probe;
    EXPECT_DOUBLE_EQ(p.xc[0], 43);
    EXPECT_DOUBLE_EQ(p.xc[1], 11);
    EXPECT_DOUBLE_EQ(p.yc[0], 20);
    EXPECT_DOUBLE_EQ(p.yc[63], 640);
    for (const auto& n : preset_names()) EXPECT_NO_THROW(validate(preset(n)));
}

TEST(SimConfig, BadOptionsAreUsageErrorsNamingTheOption) {
    std::string msg;
    EXPECT_EQ(code_of([] { preset("np128"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("--preset np128"), std::string::npos);
    EXPECT_NE(msg.find("np64-drift"), std::string::npos);
    EXPECT_EQ(code_of([] { config_from_options({{"duration", "abc"}}); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("--duration"), std::string::npos);
    EXPECT_EQ(code_of([] { config_from_options({{"duration", "-1"}}); }, &msg), ks::Exit::usage);
    EXPECT_EQ(code_of([] { config_from_options({{"noise-corr", "1.5"}}); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("--noise-corr"), std::string::npos);
    EXPECT_EQ(code_of([] { config_from_options({{"drift", "rigid,wobble"}}); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("wobble"), std::string::npos);
    EXPECT_EQ(code_of([] { config_from_options({{"seed", "-3"}}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([] { config_from_options({{"amp-min", "100"}, {"amp-max", "50"}}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([] { config_from_options({{"sessions", "0"}}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([] { config_from_options({{"probe", "/nonexistent/probe.json"}}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([] { config_from_options({{"n-chan-bin", "10"}}); }, &msg), ks::Exit::usage);
    const Config c = config_from_options({{"preset", "np64"}, {"drift", "rigid,step"}, {"drift-um", "12"},
                                          {"probe", "linear16"}, {"duration", "2"}, {"seed", "9"}});
    EXPECT_EQ(c.probe.n_chan(), 16);
    EXPECT_TRUE(c.drift.rigid && c.drift.step && !c.drift.jitter);
    EXPECT_DOUBLE_EQ(c.drift.rigid_um, 12);
    EXPECT_EQ(c.seed, 9u);
    EXPECT_EQ(DriftConfig::parse("mixed").describe(), "rigid,jitter,step,nonrigid");
    EXPECT_EQ(DriftConfig::parse("none").describe(), "none");
}

// ---- units and waveforms ----------------------------------------------------------------------

TEST(SimUnits, TemplatesPeakAtNt0minWithTheConfiguredAmplitude) {
    Config c = small_config("np64");
    const Population pop = make_population(c);
    const int C = c.probe.n_chan();
    ASSERT_GT(pop.units.size(), 40u);
    int negative = 0;
    std::map<UnitType, int> types;
    for (const auto& p : pop.units) {
        ASSERT_GE(p.amplitude_uv, c.amp_min_uv);
        ASSERT_LE(p.amplitude_uv, c.amp_max_uv);
        ASSERT_GE(p.rate_hz, c.rate_min_hz);
        ASSERT_LE(p.rate_hz, c.rate_max_hz);
        ASSERT_GE(p.refractory_ms, c.refractory_min_ms);
        ASSERT_LE(p.refractory_ms, c.refractory_max_ms);
        // charge conservation: every component's weights sum to zero
        for (const auto& comp : p.components)
            EXPECT_NEAR(std::accumulate(comp.weight.begin(), comp.weight.end(), 0.0), 0.0, 1e-12);
        const Unit u = build_unit(p, c.probe, c.fs_hz, 0);
        const auto t = unit_template(u, c.probe, 0, kTemplateNt, kTemplateNt0min);
        float vmax = 0;
        int imax = -1, cmax = -1;
        for (int i = 0; i < kTemplateNt; ++i)
            for (int ch = 0; ch < C; ++ch)
                if (std::fabs(t[i * C + ch]) > vmax) vmax = std::fabs(t[i * C + ch]), imax = i, cmax = ch;
        EXPECT_EQ(imax, kTemplateNt0min) << "unit " << p.global_id;
        EXPECT_EQ(cmax, u.peak_channel);
        EXPECT_NEAR(vmax, p.amplitude_uv, 1e-3 * p.amplitude_uv);
        negative += t[kTemplateNt0min * C + cmax] < 0;
        ++types[p.type];
    }
    EXPECT_GT(negative, 0.7 * pop.units.size());  // mostly negative-peaked
    EXPECT_GT(types[UnitType::regular], 0);
    EXPECT_GT(types[UnitType::narrow], 0);
}

TEST(SimUnits, ShapeChangesAcrossChannelsAndWithMotion) {
    Config c = small_config("np64");
    const Population pop = make_population(c);
    const int C = c.probe.n_chan();
    int shape_differs = 0, checked = 0;
    double shift_sum = 0;
    for (const auto& p : pop.units) {
        if (p.type != UnitType::regular || p.y_um < 150 || p.y_um > 500) continue;
        const Unit u = build_unit(p, c.probe, c.fs_hz, 40);
        const auto t0 = unit_template(u, c.probe, 0, kTemplateNt, kTemplateNt0min);
        // The normalised waveform 60 µm along the probe is not a scaled copy of the peak channel's.
        const int pc = u.peak_channel;
        int far = 0;
        for (int ch = 0; ch < C; ++ch)
            if (std::hypot(c.probe.xc[ch] - c.probe.xc[pc], c.probe.yc[ch] - c.probe.yc[pc] - 60) <
                std::hypot(c.probe.xc[far] - c.probe.xc[pc], c.probe.yc[far] - c.probe.yc[pc] - 60))
                far = ch;
        double ab = 0, aa = 0, bb = 0;
        for (int i = 0; i < kTemplateNt; ++i) {
            const double a = t0[i * C + pc], b = t0[i * C + far];
            ab += a * b, aa += a * a, bb += b * b;
        }
        ++checked;
        shape_differs += std::fabs(ab) / std::sqrt(aa * bb) < 0.98;
        // The Neuropixels layout repeats every 40 µm (4 sites): a unit moved by +40 µm shows on
        // site c + 4 exactly what it showed on site c at rest.
        const auto t40 = unit_template(u, c.probe, 40, kTemplateNt, kTemplateNt0min);
        double worst = 0;
        for (int ch = 0; ch + 4 < C; ++ch)
            for (int i = 0; i < kTemplateNt; ++i)
                worst = std::max(worst, double(std::fabs(t40[i * C + ch + 4] - t0[i * C + ch])));
        EXPECT_LT(worst, 0.01 * p.amplitude_uv) << "unit " << p.global_id;
        // and by +20 µm, its amplitude-weighted depth moves by about that much on average
        auto com = [&](double motion) {
            const auto t = unit_template(u, c.probe, motion, kTemplateNt, kTemplateNt0min);
            double w = 0, wy = 0;
            for (int ch = 0; ch < C; ++ch) {
                double a = 0;
                for (int i = 0; i < kTemplateNt; ++i) a = std::max(a, double(std::fabs(t[i * C + ch])));
                w += a * a, wy += a * a * c.probe.yc[ch];
            }
            return wy / w;
        };
        shift_sum += com(20) - com(0);
    }
    ASSERT_GT(checked, 5);
    EXPECT_GT(shape_differs, checked / 2);
    EXPECT_NEAR(shift_sum / checked, 20, 5);
}

// ---- spike trains -----------------------------------------------------------------------------

TEST(SimSpikes, RefractoryRatesBurstsAndOverlaps) {
    Config c = small_config("np64");
    c.duration_s = 300;
    c.rate_modulation = 0;
    const Population pop = make_population(c);
    std::vector<Unit> units;
    for (int gid : pop.present[0]) {
        units.push_back(build_unit(session_unit(c, pop, gid, 0), c.probe, c.fs_hz, 0));
        units.back().local_id = static_cast<int>(units.size()) - 1;
    }
    const int64_t N = static_cast<int64_t>(c.duration_s * c.fs_hz);
    const Spikes sp = make_spikes(units, c.seed, 0, c.fs_hz, 30, N - 61, 0, c.amp_jitter, 8);
    ASSERT_GT(sp.size(), 1000u);
    ASSERT_TRUE(std::is_sorted(sp.t.begin(), sp.t.end()));
    std::vector<std::vector<int64_t>> per(units.size());
    std::vector<std::vector<float>> amp(units.size());
    for (size_t i = 0; i < sp.size(); ++i) {
        ASSERT_GE(sp.phase[i], 0);
        ASSERT_LE(sp.phase[i], 8);
        per[sp.unit[i]].push_back(sp.t[i]);
        amp[sp.unit[i]].push_back(sp.amp[i]);
    }
    int rates_ok = 0, drops = 0, bursts = 0;
    for (size_t u = 0; u < units.size(); ++u) {
        const int64_t ref = refractory_samples(units[u].p.refractory_ms, c.fs_hz);
        for (size_t i = 1; i < per[u].size(); ++i) ASSERT_GE(per[u][i] - per[u][i - 1], ref) << "unit " << u;
        // Poisson-like count: within 5 sigma (+ 10% for bursts and synchrony) of rate x duration
        const double expect = units[u].p.rate_hz * c.duration_s;
        rates_ok += std::fabs(per[u].size() - expect) < 5 * std::sqrt(expect) + 0.1 * expect;
        for (size_t i = 1; i < per[u].size(); ++i)
            if (units[u].p.bursting && per[u][i] - per[u][i - 1] < 0.01 * c.fs_hz) ++bursts, drops += amp[u][i] < amp[u][i - 1];
    }
    EXPECT_GE(rates_ok, static_cast<int>(units.size()) - 1);
    ASSERT_GT(bursts, 20);
    EXPECT_GT(drops, 0.8 * bursts);  // amplitude falls inside bursts
    // Overlaps: spikes of different units within 0.6 ms of each other.
    int overlaps = 0;
    for (size_t i = 1; i < sp.size(); ++i) overlaps += sp.t[i] - sp.t[i - 1] < 18 && sp.unit[i] != sp.unit[i - 1];
    EXPECT_GT(overlaps, 50);
    // Log-normal spread of rates: some slow and some fast units.
    int slow = 0, fast = 0;
    for (const auto& u : units) slow += u.p.rate_hz < 2, fast += u.p.rate_hz > 8;
    EXPECT_GT(slow, 3);
    EXPECT_GT(fast, 3);
}

// ---- noise ------------------------------------------------------------------------------------

TEST(SimNoise, LevelCorrelationAndSpectrumAsConfigured) {
    Config c = small_config("smoke");
    c.n_units = 0;
    c.lfp_uv = 0;
    c.duration_s = 10;
    c.noise_uv = 12;
    c.noise_corr = 0.35;
    const Population pop = make_population(c);
    const Session s(c, pop, 0);
    const auto x = render_all(s, 30000);
    const int C = c.probe.n_chan();
    const int64_t N = s.n_samples();
    const auto& want = s.noise().channel_uv();
    std::vector<double> mean(C, 0), sd(C, 0);
    for (int ch = 0; ch < C; ++ch) {
        for (int64_t i = 0; i < N; ++i) mean[ch] += x[ch * N + i];
        mean[ch] /= N;
        for (int64_t i = 0; i < N; ++i) sd[ch] += (x[ch * N + i] - mean[ch]) * (x[ch * N + i] - mean[ch]);
        sd[ch] = std::sqrt(sd[ch] / N);
        EXPECT_NEAR(sd[ch] / want[ch], 1.0, 0.03) << "channel " << ch;
        EXPECT_NEAR(want[ch] / c.noise_uv, 1.0, 0.45);
    }
    // Nearest-neighbour correlation.
    double dmin = 1e9;
    for (int a = 0; a < C; ++a)
        for (int b = a + 1; b < C; ++b)
            dmin = std::min(dmin, std::hypot(c.probe.xc[a] - c.probe.xc[b], c.probe.yc[a] - c.probe.yc[b]));
    double rsum = 0, rfar = 0;
    int npair = 0, nfar = 0;
    for (int a = 0; a < C; ++a)
        for (int b = a + 1; b < C; ++b) {
            const double d = std::hypot(c.probe.xc[a] - c.probe.xc[b], c.probe.yc[a] - c.probe.yc[b]);
            double r = 0;
            for (int64_t i = 0; i < N; ++i) r += (x[a * N + i] - mean[a]) * (x[b * N + i] - mean[b]);
            r /= N * sd[a] * sd[b];
            if (d <= dmin * 1.01) rsum += r, ++npair;
            if (d > 250) rfar += r, ++nfar;
        }
    EXPECT_NEAR(rsum / npair, c.noise_corr, 0.03);
    EXPECT_NEAR(s.noise().expected_neighbour_corr(), c.noise_corr, 1e-9);
    EXPECT_NEAR(rfar / nfar, c.noise_common, 0.03);  // far apart: only the common part
    // Not white: successive samples correlated, and the 300-1000 Hz band carries more power per
    // Hz than the 4-8 kHz band (DFT power averaged over 1024-sample segments).
    double lag1 = 0;
    for (int64_t i = 1; i < N; ++i) lag1 += (x[i] - mean[0]) * (x[i - 1] - mean[0]);
    EXPECT_GT(lag1 / (N * sd[0] * sd[0]), 0.3);
    auto band = [&](double f_lo, double f_hi) {
        const int L = 1024;
        double p = 0;
        int n = 0;
        for (int64_t s0 = 0; s0 + L <= N; s0 += 4 * L)
            for (int k = static_cast<int>(f_lo * L / c.fs_hz); k <= static_cast<int>(f_hi * L / c.fs_hz); ++k) {
                double re = 0, im = 0;
                for (int i = 0; i < L; ++i) {
                    const double w = 0.5 - 0.5 * std::cos(2 * M_PI * i / L);
                    re += w * x[s0 + i] * std::cos(2 * M_PI * k * i / L);
                    im -= w * x[s0 + i] * std::sin(2 * M_PI * k * i / L);
                }
                p += re * re + im * im, ++n;
            }
        return p / n;
    };
    EXPECT_GT(band(300, 1000) / band(4000, 8000), 3.0);
}

// ---- motion -----------------------------------------------------------------------------------

TEST(SimMotion, ComponentsHaveTheirSizes) {
    const double T = 300;
    EXPECT_EQ(Motion(DriftConfig::parse("none"), 1, T, 0, 640).at(100, 300), 0.0);
    DriftConfig r = DriftConfig::parse("rigid");
    const Motion mr(r, 1, T, 0, 640);
    double lo = 1e9, hi = -1e9;
    for (int i = 0; i <= 3000; ++i) {
        const double v = mr.at(T * i / 3000, 300);
        lo = std::min(lo, v), hi = std::max(hi, v);
        ASSERT_EQ(v, mr.at(T * i / 3000, 20));  // rigid: same at every depth
    }
    EXPECT_NEAR(std::max(-lo, hi), r.rigid_um, 0.05 * r.rigid_um);
    DriftConfig st = DriftConfig::parse("step");
    const Motion ms(st, 2, T, 0, 640);
    const double ts = ms.step_time_s();
    EXPECT_GT(ts, 0.3 * T);
    EXPECT_LT(ts, 0.7 * T);
    EXPECT_NEAR(std::fabs(ms.at(ts + 1, 300) - ms.at(ts - 1, 300)), st.step_um, 1e-9);
    DriftConfig j = DriftConfig::parse("jitter");
    const Motion mj(j, 3, 3000, 0, 640);
    double ss = 0;
    for (int i = 0; i < 30000; ++i) ss += mj.at(i * 0.1, 300) * mj.at(i * 0.1, 300);
    EXPECT_NEAR(std::sqrt(ss / 30000), j.jitter_um, 0.25 * j.jitter_um);
    const Motion mn(DriftConfig::parse("nonrigid"), 4, T, 0, 640);
    double diff = 0;
    for (int i = 0; i <= 300; ++i) diff = std::max(diff, std::fabs(mn.at(i, 640) - mn.at(i, 0)));
    EXPECT_GT(diff, 10);
    for (int i = 0; i <= 300; ++i) EXPECT_LE(std::fabs(mn.at(i, 320)), 1e-9);  // the middle stays
}

TEST(SimMotion, SpikesInTheRecordingFollowTheMotion) {
    Config c = small_config("smoke");
    c.noise_uv = 0;
    c.lfp_uv = 0;
    c.duration_s = 30;
    c.n_units = 12;
    c.amp_min_uv = 200;
    c.amp_max_uv = 400;
    c.rate_min_hz = 8;
    c.drift = DriftConfig::parse("rigid,step");
    c.drift.rigid_um = 15;
    c.drift.step_um = 25;
    const Population pop = make_population(c);
    const Session s(c, pop, 0);
    const auto x = render_all(s, 30000);
    const int C = c.probe.n_chan();
    const int64_t N = s.n_samples();
    int tested = 0;
    for (const auto& u : s.units()) {
        if (u.p.y_um < 110 || u.p.y_um > 230) continue;  // well inside the 20-340 µm probe
        std::vector<double> meas, truth;
        const auto& sp = s.spikes();
        for (size_t i = 0; i < sp.size(); ++i) {
            if (sp.unit[i] != u.local_id) continue;
            const bool alone = (i == 0 || sp.t[i] - sp.t[i - 1] > 90) && (i + 1 == sp.size() || sp.t[i + 1] - sp.t[i] > 90);
            if (!alone) continue;
            double w = 0, wy = 0;
            for (int ch = 0; ch < C; ++ch) {
                double a = 0;
                for (int64_t t = sp.t[i] - 5; t <= sp.t[i] + 5; ++t) a = std::max(a, double(std::fabs(x[ch * N + t])));
                w += a * a * a * a, wy += a * a * a * a * c.probe.yc[ch];
            }
            meas.push_back(wy / w);
            truth.push_back(s.motion().at(double(sp.t[i]) / c.fs_hz, u.p.y_um));
        }
        if (meas.size() < 40) continue;
        // Regression of measured depth on true motion: slope near 1, tight fit.
        const double n = double(meas.size());
        const double mx = std::accumulate(truth.begin(), truth.end(), 0.0) / n;
        const double my = std::accumulate(meas.begin(), meas.end(), 0.0) / n;
        double sxy = 0, sxx = 0, syy = 0;
        for (size_t i = 0; i < meas.size(); ++i)
            sxy += (truth[i] - mx) * (meas[i] - my), sxx += (truth[i] - mx) * (truth[i] - mx), syy += (meas[i] - my) * (meas[i] - my);
        EXPECT_GT(sxy / sxx, 0.6) << "unit " << u.p.global_id;
        EXPECT_LT(sxy / sxx, 1.3) << "unit " << u.p.global_id;
        EXPECT_GT(sxy / std::sqrt(sxx * syy), 0.9) << "unit " << u.p.global_id;
        ++tested;
    }
    EXPECT_GE(tested, 1);
}

// ---- sessions ---------------------------------------------------------------------------------

TEST(SimSessions, TurnoverAndProbeOffsets) {
    Config c = small_config("np64");
    c.sessions = 4;
    const Population pop = make_population(c);
    ASSERT_EQ(pop.present.size(), 4u);
    for (int s = 1; s < 4; ++s) {
        const std::set<int> a(pop.present[s - 1].begin(), pop.present[s - 1].end());
        int kept = 0;
        for (int g : pop.present[s]) kept += a.count(g);
        const double turnover = 1.0 - double(kept) / a.size();
        EXPECT_NEAR(turnover, c.turnover, 0.02);
        EXPECT_EQ(pop.present[s].size(), pop.present[s - 1].size());
        EXPECT_LE(std::fabs(pop.probe_offset_um[s].second), c.session_shift_um);
    }
    // The same neuron, seen through a probe moved by dy, appears dy lower; its waveform changes slowly.
    const int g = pop.present[0][pop.present[0].size() / 2];
    for (int s = 1; s < 4; ++s) {
        if (!std::count(pop.present[s].begin(), pop.present[s].end(), g)) continue;
        const UnitParams a = session_unit(c, pop, g, 0), b = session_unit(c, pop, g, s);
        EXPECT_NEAR(b.y_um, a.y_um - pop.probe_offset_um[s].second, 1e-9);
        EXPECT_NE(a.amplitude_uv, b.amplitude_uv);
        EXPECT_NEAR(b.amplitude_uv / a.amplitude_uv, 1.0, 0.5);
    }
}

// ---- determinism and the written folder ------------------------------------------------------

TEST(SimDeterminism, SameBytesForAnyThreadCountAndSeedMatters) {
    Config c = small_config("smoke");
    c.duration_s = 3;
    c.drift = DriftConfig::parse("mixed");
    c.artifact_rate_hz = 1;
    const Population pop = make_population(c);
    const Session s(c, pop, 0);
    const int C = c.probe.n_chan();
    const int64_t n = 30000;
    std::vector<float> a(C * n), b(C * n);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    s.render(15000, n, a.data());
    omp_set_num_threads(4);
    s.render(15000, n, b.data());
    omp_set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    Config c2 = c;
    c2.seed = 2;
    const Session s2(c2, make_population(c2), 0);
    s2.render(15000, n, b.data());
    EXPECT_NE(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
}

TEST(SimWriter, WritesTheFolderOfTheSpecAndRerunsIdentically) {
    TempDir tmp;
    Config c = small_config("smoke");
    c.duration_s = 2;
    c.drift = DriftConfig::parse("rigid");
    const std::string d1 = tmp.path + "/a", d2 = tmp.path + "/b";
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    simulate(c, d1, ks::ProgressMode::none);
    omp_set_num_threads(3);
    simulate(c, d2, ks::ProgressMode::none);
    omp_set_num_threads(saved);
    for (const char* f : {"recording.bin", "gt/spike_times.npy", "gt/templates.npy", "gt/motion.npy", "probe.json", "params.json"})
        EXPECT_EQ(file_bytes(d1 + "/" + f), file_bytes(d2 + "/" + f)) << f;
    const int C = 32;
    EXPECT_EQ(fs::file_size(d1 + "/recording.bin"), size_t(2 * 30000 * C * 2));
    const auto st = ks::read_npy_checked(d1 + "/gt/spike_times.npy", ks::Dtype::int64, 1).as<int64_t>();
    const auto sc = ks::read_npy_checked(d1 + "/gt/spike_clusters.npy", ks::Dtype::int32, 1).as<int32_t>();
    const auto tm = ks::read_npy_checked(d1 + "/gt/templates.npy", ks::Dtype::float32, 3);
    const auto pos = ks::read_npy_checked(d1 + "/gt/unit_positions.npy", ks::Dtype::float32, 2);
    const auto mo = ks::read_npy_checked(d1 + "/gt/motion.npy", ks::Dtype::float32, 2);
    ASSERT_EQ(st.size(), sc.size());
    EXPECT_TRUE(std::is_sorted(st.begin(), st.end()));
    const int64_t U = pos.shape[0];
    EXPECT_EQ(pos.shape[1], 3);
    EXPECT_EQ(tm.shape, (std::vector<int64_t>{U, kTemplateNt, C}));
    for (int32_t u : sc) ASSERT_TRUE(u >= 0 && u < U);
    EXPECT_EQ(mo.shape[0], 20);  // 2 s in 0.1 s bins
    EXPECT_EQ(mo.shape[1], 16);  // 20..320 µm every 20 µm
    {
        // the written motion is the motion the session applies
        const Session s(c, make_population(c), 0);
        const auto m = mo.as<float>();
        const auto tc = ks::read_npy(d1 + "/gt/motion_time_s.npy").as<float>();
        const auto dc = ks::read_npy(d1 + "/gt/motion_depth_um.npy").as<float>();
        double spread = 0;
        for (int i = 0; i < 20; ++i)
            for (int j = 0; j < 16; ++j) {
                EXPECT_NEAR(m[i * 16 + j], s.motion().at(tc[i], dc[j]), 1e-4);
                spread = std::max(spread, std::fabs(double(m[i * 16 + j]) - m[0]));
            }
        EXPECT_GT(spread, 0.1);
        EXPECT_FLOAT_EQ(tc[0], 0.05f);
        EXPECT_FLOAT_EQ(dc[0], 20.f);
    }
    EXPECT_EQ(ks::read_text_file(d1 + "/params.json"), "{\n  \"n_chan_bin\": 32,\n  \"fs\": 30000\n}\n");
    EXPECT_NE(ks::read_text_file(d1 + "/sim.json").find("\"uv_per_bit\": 2.34375"), std::string::npos);
    // a different seed gives a different recording
    c.seed = 77;
    simulate(c, d2, ks::ProgressMode::none);
    EXPECT_NE(file_bytes(d1 + "/recording.bin"), file_bytes(d2 + "/recording.bin"));
    // an existing folder that is not a ks-sim output is refused
    fs::create_directories(tmp.path + "/other");
    ks::write_file_atomic(tmp.path + "/other/notes.txt", "mine\n");
    EXPECT_EQ(code_of([&] { simulate(c, tmp.path + "/other", ks::ProgressMode::none); }), ks::Exit::usage);
    EXPECT_FALSE(fs::exists(tmp.path + "/other/recording.bin"));
}

TEST(SimWriter, SessionsShareTheirUnitsGlobalIds) {
    TempDir tmp;
    Config c = small_config("smoke");
    c.duration_s = 1;
    c.sessions = 3;
    simulate(c, tmp.path, ks::ProgressMode::none);
    ASSERT_TRUE(fs::exists(tmp.path + "/sessions.json"));
    std::vector<std::vector<int32_t>> ids;
    for (int s = 0; s < 3; ++s) {
        const std::string d = tmp.path + "/session_0" + std::to_string(s);
        ASSERT_TRUE(fs::exists(d + "/recording.bin"));
        ids.push_back(ks::read_npy_checked(d + "/gt/unit_ids.npy", ks::Dtype::int32, 1).as<int32_t>());
        EXPECT_TRUE(std::is_sorted(ids.back().begin(), ids.back().end()));
    }
    const std::set<int32_t> a(ids[0].begin(), ids[0].end());
    int kept = 0;
    for (int32_t g : ids[1]) kept += a.count(g);
    EXPECT_GT(kept, 0.7 * ids[0].size());
    EXPECT_LT(kept, static_cast<int>(ids[0].size()));
}
