// ks::sim spike trains: renewal processes with an absolute refractory period, slowly
// modulated rates, complex-spike bursts whose amplitude drops spike by spike, and
// synchrony between near units (so their spikes overlap in time and space).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "ks/error.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {
constexpr double kPi = 3.14159265358979323846;
enum Purpose : uint64_t { kTrain = 10, kSync = 11 };

struct Train {
    std::vector<double> t;  // continuous time (samples)
    std::vector<float> amp;
};

float jittered(Rng& r, double sigma) {
    return static_cast<float>(std::clamp(std::exp(sigma * r.normal()), 0.75, 1.25));
}

Train unit_train(const UnitParams& p, uint64_t seed, int session, double fs, double first, double last,
                 double modulation, double amp_jitter) {
    Train tr;
    Rng r(key(seed, kTrain, static_cast<uint64_t>(session), static_cast<uint64_t>(p.global_id)));
    // Slow log-rate fluctuation: four waves of 20-200 s periods, unit variance.
    double wf[4], wp[4];
    for (int i = 0; i < 4; ++i) wf[i] = 1.0 / r.uniform(20, 200), wp[i] = r.uniform(0, 2 * kPi);
    auto rate = [&](double t_samples) {
        const double ts = t_samples / fs;
        double x = 0;
        for (int i = 0; i < 4; ++i) x += std::sqrt(0.5) * std::sin(2 * kPi * wf[i] * ts + wp[i]);
        return p.rate_hz * std::exp(modulation * x - 0.5 * modulation * modulation);
    };
    const double min_isi = static_cast<double>(refractory_samples(p.refractory_ms, fs)) + 1.0;
    // Bursts: events of 1 spike, or (with burst_prob) 2-6 spikes at ~burst_isi apart.
    const double mean_burst_len = 2.0 + 0.4 / 0.6;
    const double spikes_per_event = p.bursting ? 1 + p.burst_prob * (mean_burst_len - 1) : 1.0;
    const double burst_isi = std::max(min_isi, p.burst_isi_ms * 1e-3 * fs);
    double t = first + r.exponential(fs / rate(first) * spikes_per_event);
    while (t <= last) {
        int n = 1;
        if (p.bursting && r.chance(p.burst_prob)) {
            n = 2;
            while (n < 6 && r.chance(0.4)) ++n;
        }
        double ts = t;
        for (int i = 0; i < n; ++i) {
            if (i > 0) ts += std::max(min_isi, burst_isi * r.uniform(0.7, 1.3));
            if (ts > last) break;
            const double drop = std::pow(1.0 - p.burst_drop, i);
            tr.t.push_back(ts);
            tr.amp.push_back(static_cast<float>(drop) * jittered(r, amp_jitter));
        }
        // Next event: the mean interval between events keeps the unit's mean rate.
        const double mean_gap = fs / rate(ts) * spikes_per_event - (ts - t);
        t = ts + min_isi + r.exponential(std::max(mean_gap - min_isi, 0.1 * min_isi));
    }
    return tr;
}

// Adds spikes of `b` near spikes of `a` (lag within +-0.6 ms) where b's refractory allows.
void add_synchrony(const Train& a, Train& b, double prob, double min_isi_b, double fs, Rng& r,
                   double first, double last, double amp_jitter) {
    std::vector<double> cand;
    for (double t : a.t) {
        if (!r.chance(prob)) continue;
        const double tb = t + r.uniform(-0.6e-3, 0.6e-3) * fs;
        if (tb >= first && tb <= last) cand.push_back(tb);
    }
    if (cand.empty()) return;
    Train out;
    size_t i = 0;
    for (double tb : cand) {
        while (i < b.t.size() && b.t[i] < tb) out.t.push_back(b.t[i]), out.amp.push_back(b.amp[i]), ++i;
        const bool prev_ok = out.t.empty() || tb - out.t.back() >= min_isi_b;
        const bool next_ok = i >= b.t.size() || b.t[i] - tb >= min_isi_b;
        if (prev_ok && next_ok) out.t.push_back(tb), out.amp.push_back(jittered(r, amp_jitter));
    }
    while (i < b.t.size()) out.t.push_back(b.t[i]), out.amp.push_back(b.amp[i]), ++i;
    b = std::move(out);
}
}  // namespace

int64_t refractory_samples(double refractory_ms, double fs_hz) {
    return static_cast<int64_t>(std::ceil(refractory_ms * 1e-3 * fs_hz - 1e-9));
}

Spikes make_spikes(const std::vector<Unit>& units, uint64_t seed, int session, double fs_hz, int64_t first,
                   int64_t last, double rate_modulation, double amp_jitter, int os) {
    Spikes sp;
    if (last < first) return sp;
    const size_t U = units.size();
    std::vector<Train> trains(U);
    std::map<int, size_t> local;
    for (size_t u = 0; u < U; ++u) local[units[u].p.global_id] = u;
    // Driven spikes count towards a unit's rate: its own train is slowed by what its drivers
    // add (at most 70% of its rate; drivers' probabilities are scaled down to fit).
    std::vector<long> partner(U, -1);
    std::vector<double> injected(U, 0.0), scale(U, 1.0);
    for (size_t u = 0; u < U; ++u) {
        const auto it = local.find(units[u].p.sync_partner);
        if (units[u].p.sync_partner < 0 || units[u].p.sync_prob <= 0 || it == local.end()) continue;
        partner[u] = static_cast<long>(it->second);
        injected[it->second] += units[u].p.sync_prob * units[u].p.rate_hz;
    }
    for (size_t b = 0; b < U; ++b)
        if (injected[b] > 0.7 * units[b].p.rate_hz) scale[b] = 0.7 * units[b].p.rate_hz / injected[b], injected[b] *= scale[b];
    // Per-unit streams: independent of each other, so this loop could run in any order.
    for (size_t u = 0; u < U; ++u) {
        UnitParams p = units[u].p;
        p.rate_hz -= injected[u];
        trains[u] = unit_train(p, seed, session, fs_hz, static_cast<double>(first), static_cast<double>(last),
                               rate_modulation, amp_jitter);
    }
    for (size_t u = 0; u < U; ++u) {
        if (partner[u] < 0) continue;
        const UnitParams& p = units[u].p;
        Rng r(key(seed, kSync, static_cast<uint64_t>(session), static_cast<uint64_t>(p.global_id)));
        const size_t b = static_cast<size_t>(partner[u]);
        const double min_isi_b = static_cast<double>(refractory_samples(units[b].p.refractory_ms, fs_hz)) + 1.0;
        add_synchrony(trains[u], trains[b], p.sync_prob * scale[b], min_isi_b, fs_hz, r, static_cast<double>(first),
                      static_cast<double>(last), amp_jitter);
    }
    size_t n = 0;
    for (const auto& tr : trains) n += tr.t.size();
    struct Row { int64_t t; int32_t u; float a; int8_t ph; };
    std::vector<Row> rows;
    rows.reserve(n);
    for (size_t u = 0; u < U; ++u)
        for (size_t i = 0; i < trains[u].t.size(); ++i) {
            const double tc = trains[u].t[i];
            const int64_t ts = static_cast<int64_t>(std::floor(tc + 0.5));
            const int q = static_cast<int>(std::lround((tc - static_cast<double>(ts)) * os));
            if (ts < first || ts > last) continue;
            rows.push_back({ts, static_cast<int32_t>(u), trains[u].amp[i], static_cast<int8_t>(q + os / 2)});
        }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.t != b.t ? a.t < b.t : a.u < b.u; });
    sp.t.resize(rows.size());
    sp.unit.resize(rows.size());
    sp.amp.resize(rows.size());
    sp.phase.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        sp.t[i] = rows[i].t;
        sp.unit[i] = rows[i].u;
        sp.amp[i] = rows[i].a;
        sp.phase[i] = rows[i].ph;
    }
    return sp;
}

}  // namespace ks::sim
