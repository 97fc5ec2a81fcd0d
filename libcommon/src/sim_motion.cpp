// ks::sim motion: how the tissue moves relative to the probe. Every component is a closed-form
// function of time (sums of sinusoids, a smooth step), so any spike or grid point is evaluated
// directly, in any order.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "ks/error.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {
constexpr double kPi = 3.14159265358979323846;
constexpr double kStepRiseS = 0.05;   // a "sudden" step completes within 50 ms
constexpr double kMaxRelDepth = 1.5;  // depth factor clamp for units beyond the probe's ends

}  // namespace

DriftConfig DriftConfig::parse(const std::string& text) {
    DriftConfig d;
    if (text == "none" || text.empty()) return d;
    if (text == "mixed" || text == "all") {
        d.rigid = d.jitter = d.step = d.nonrigid = true;
        return d;
    }
    std::stringstream ss(text);
    std::string part;
    while (std::getline(ss, part, ',')) {
        if (part == "rigid") d.rigid = true;
        else if (part == "jitter") d.jitter = true;
        else if (part == "step") d.step = true;
        else if (part == "nonrigid") d.nonrigid = true;
        else
            throw Error(Exit::usage, "--drift " + text + ": unknown kind '" + part +
                                         "'; expected none, mixed, or a comma list of rigid, jitter, step, nonrigid");
    }
    return d;
}

std::string DriftConfig::describe() const {
    if (!any()) return "none";
    std::string s;
    auto add = [&](bool on, const char* n) {
        if (!on) return;
        if (!s.empty()) s += ",";
        s += n;
    };
    add(rigid, "rigid");
    add(jitter, "jitter");
    add(step, "step");
    add(nonrigid, "nonrigid");
    return s;
}

double Motion::sum(const std::vector<Wave>& w, double t) {
    double v = 0;
    for (const auto& x : w) v += x.amp * std::sin(2 * kPi * x.freq_hz * t + x.phase);
    return v;
}

Motion::Motion(const DriftConfig& d, uint64_t seed, double duration_s, double y_lo_um, double y_hi_um)
    : d_(d), duration_(duration_s) {
    y_mid_ = 0.5 * (y_lo_um + y_hi_um);
    y_half_ = std::max(1.0, 0.5 * (y_hi_um - y_lo_um));
    Rng r(seed);
    const double T = std::max(duration_s, 1e-3);
    // Slow curves: trend + three waves with periods T/2..3T, scaled so max |curve| = 1 on a grid.
    auto make_slow = [&](std::vector<Wave>& waves, double& trend, double& norm) {
        trend = r.uniform(-1, 1);
        for (int i = 0; i < 3; ++i) waves.push_back({r.uniform(0.3, 1.0), 1.0 / (T * r.uniform(0.5, 3.0)), r.uniform(0, 2 * kPi)});
        norm = 0;
        for (int i = 0; i <= 2000; ++i) {
            const double t = T * i / 2000.0;
            norm = std::max(norm, std::fabs(trend * (2 * t / T - 1) + sum(waves, t)));
        }
        if (norm <= 0) norm = 1;
    };
    make_slow(slow_, slow_trend_, slow_norm_);
    make_slow(stretch_, stretch_trend_, stretch_norm_);
    // Jitter: 24 waves, 0.1-3 Hz log-uniform (breathing, heartbeat's slower harmonics), RMS 1.
    const int nj = 24;
    for (int i = 0; i < nj; ++i)
        jitter_.push_back({std::sqrt(2.0 / nj), std::exp(r.uniform(std::log(0.1), std::log(3.0))), r.uniform(0, 2 * kPi)});
    step_t_ = d.step ? T * r.uniform(0.35, 0.65) : -1;
    step_sign_ = r.chance(0.5) ? 1.0 : -1.0;
    // Bound on |at()|: the slow curves may overshoot their grid maximum slightly.
    const double gain = d.nonrigid ? 1 + d.nonrigid_gain * kMaxRelDepth : 1.0;
    double jit_bound = 0;
    for (const auto& w : jitter_) jit_bound += w.amp;
    max_abs_ = ((d.rigid ? 1.05 * d.rigid_um : 0) + (d.step ? d.step_um : 0)) * gain +
               (d.nonrigid ? 1.05 * d.nonrigid_um * kMaxRelDepth : 0) + (d.jitter ? d.jitter_um * jit_bound : 0);
}

double Motion::at(double t, double y_um) const {
    if (!d_.any()) return 0;
    const double T = std::max(duration_, 1e-3);
    double m = 0;
    if (d_.rigid) m += d_.rigid_um * (slow_trend_ * (2 * t / T - 1) + sum(slow_, t)) / slow_norm_;
    if (d_.step && t > step_t_) {
        const double u = std::min(1.0, (t - step_t_) / kStepRiseS);
        m += step_sign_ * d_.step_um * u * u * u * (u * (6 * u - 15) + 10);  // smootherstep
    }
    if (d_.nonrigid) {
        const double z = std::clamp((y_um - y_mid_) / y_half_, -kMaxRelDepth, kMaxRelDepth);
        m = m * (1 + d_.nonrigid_gain * z) +
            d_.nonrigid_um * z * (stretch_trend_ * (2 * t / T - 1) + sum(stretch_, t)) / stretch_norm_;
    }
    if (d_.jitter) m += d_.jitter_um * sum(jitter_, t);
    return m;
}

}  // namespace ks::sim
