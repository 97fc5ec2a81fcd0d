// ks::sim units: the population across sessions, each unit's current sources and waveform
// tables, and rendering a spike onto the probe's channels.
//
// A unit is a few point current sources (soma plus dendritic return currents, or axon nodes).
// The potential at a contact is sum_k I_k(t) / sqrt(d_k^2 + r0^2): the homogeneous-medium point
// source law, softened by r0: a contact averages over its ~12 µm face (r0 = 6 µm for a soma or
// an axon node), and a dendrite's current is spread along it (r0 = 15 µm). Current components
// (sodium, potassium, back-propagation, axon nodes) have their own time courses and spatial
// distributions, so the waveform changes shape from channel to channel (not only scale), and
// moving the unit (drift) changes it again.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ks/error.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {

constexpr double kDendriteRadiusUm = 15;  // dendritic currents spread along ~30 µm of dendrite
constexpr int kOversample = 8;           // sub-sample phases
constexpr double kReachUm = 500;         // candidate footprint beyond the sources' extent
constexpr double kFootprintFraction = 0.005;  // channels below 0.5% of the peak are not rendered
constexpr double kPi = 3.14159265358979323846;

// Purposes mixed into stream keys, so no two uses of the seed share a stream.
enum Purpose : uint64_t { kPopulation = 1, kNewUnits = 2, kSessionChange = 3, kOffsets = 4 };

// Distance of a source from the probe's plane. Sources cannot be behind the shank: those a
// random direction put there are mirrored in front of it.
double source_z(const UnitParams& p, const Source& s) { return std::fabs(p.z_um + s.dz_um); }

double bump(const Bump& b, double t) {
    const double d = t - b.mu_ms;
    const double s = d < 0 ? b.sl_ms : b.sr_ms;
    return b.a * std::exp(-0.5 * d * d / (s * s));
}

void random_direction(Rng& r, double& ux, double& uy, double& uz) {
    // Uniform on the sphere, from three normals.
    double n = 0;
    do {
        ux = r.normal();
        uy = r.normal();
        uz = r.normal();
        n = std::sqrt(ux * ux + uy * uy + uz * uz);
    } while (n < 1e-9);
    ux /= n;
    uy /= n;
    uz /= n;
}

// Shares, each uniform in [0.5, 1.5] times bias[i], summing to one (bias[0] = 0: the soma).
std::vector<double> shares(Rng& r, const std::vector<double>& bias) {
    std::vector<double> f(bias.size());
    double sum = 0;
    for (size_t i = 0; i < f.size(); ++i) sum += f[i] = bias[i] * r.uniform(0.5, 1.5);
    for (auto& v : f) v /= sum;
    return f;
}

// A soma-type unit: soma (source 0), apical dendrite nodes (regular, positive) along the
// probe, basal nodes around the soma. A sodium sink at the soma, a potassium source at the
// soma and a capacitive hump before the trough, each returned through the dendrites with its
// own distribution, plus a spike back-propagating up the apical dendrite. Channels near
// different sources see different mixtures of these, so the waveform changes shape (not only
// size) across the probe.
void soma_unit(Rng& r, UnitParams& u) {
    const UnitType type = u.type;
    std::vector<Source>& src = u.sources;
    src.push_back({});
    int n_apical = 0;
    double sign = 0;  // direction of the apical dendrite along y
    std::vector<double> bias_na{0.0}, bias_k{0.0};
    if (type != UnitType::narrow) {
        // Apical dendrite along the probe, mostly towards larger y (the brain surface when the
        // probe's y is distance from its tip), tilted up to ~25 degrees.
        sign = r.chance(0.85) ? 1.0 : -1.0;
        const double tilt = r.uniform(-0.45, 0.45), lean = r.uniform(-0.2, 0.2), spacing = r.uniform(25, 35);
        n_apical = 4;
        for (int i = 1; i <= n_apical; ++i) {
            const double d = spacing * i;
            src.push_back({d * std::sin(tilt), sign * d * std::cos(tilt), d * lean, kDendriteRadiusUm});
            bias_na.push_back(0.8 * std::pow(0.7, i - 1));
            bias_k.push_back(1.2 * std::pow(0.8, i - 1));  // slow currents return further out
        }
    }
    // Basal dendrites all around, mostly on the side away from the apical one: the currents
    // then surround the soma and the far field falls off quickly (quadrupole-like).
    const int n_basal = type == UnitType::narrow ? 5 : 4;
    for (int i = 0; i < n_basal; ++i) {
        double ux, uy, uz;
        random_direction(r, ux, uy, uz);
        if (uy * sign > 0 && r.chance(0.7)) uy = -uy;
        const double d = r.uniform(20, 50);
        src.push_back({d * ux, d * uy, d * uz, kDendriteRadiusUm});
        bias_na.push_back(1.0);
        bias_k.push_back(0.6);
    }
    const size_t K = src.size();
    auto component = [&](Bump shape, double soma_w, const std::vector<double>& bias) {
        Component c{shape, std::vector<double>(K, 0.0)};
        c.weight[0] = soma_w;
        const auto f = shares(r, bias);
        for (size_t k = 1; k < K; ++k) c.weight[k] = -soma_w * f[k];
        u.components.push_back(c);
    };
    double sl, sr;
    if (type == UnitType::narrow) {
        sl = r.uniform(0.035, 0.06), sr = r.uniform(0.045, 0.075);
        component({1, 0, sl, sr}, -1, bias_na);
        component({r.uniform(0.3, 0.6), r.uniform(0.25, 0.4), r.uniform(0.07, 0.12), r.uniform(0.12, 0.25)}, 1, bias_k);
    } else if (type == UnitType::positive) {
        // Signs flipped below: a broad positive peak, then a shallow negative.
        sl = r.uniform(0.07, 0.12), sr = r.uniform(0.12, 0.2);
        component({1, 0, sl, sr}, -1, bias_na);
        component({r.uniform(0.1, 0.3), r.uniform(0.45, 0.7), r.uniform(0.15, 0.25), r.uniform(0.3, 0.6)}, 1, bias_k);
    } else {
        sl = r.uniform(0.06, 0.1), sr = r.uniform(0.09, 0.16);
        component({1, 0, sl, sr}, -1, bias_na);
        if (u.large_repol)
            component({r.uniform(0.5, 0.9), r.uniform(0.35, 0.6), r.uniform(0.12, 0.22), r.uniform(0.3, 0.6)}, 1, bias_k);
        else
            component({r.uniform(0.12, 0.3), r.uniform(0.45, 0.8), r.uniform(0.15, 0.3), r.uniform(0.35, 0.7)}, 1, bias_k);
    }
    const double pre = r.uniform(0.0, 0.1);
    if (pre > 0.02) component({pre, -r.uniform(0.2, 0.3), 0.08, 0.08}, 1, bias_na);
    // Back-propagation: node j's sink at delay d_j / v, returned by its two neighbours.
    if (n_apical > 0) {
        const double v = r.uniform(200, 500);  // µm/ms
        const double a0 = r.uniform(0.1, 0.3);
        for (int j = 1; j <= n_apical; ++j) {
            const double d = std::sqrt(src[j].dx_um * src[j].dx_um + src[j].dy_um * src[j].dy_um +
                                       src[j].dz_um * src[j].dz_um);
            Component c{{a0 * std::pow(0.7, j - 1), d / v, sl * (1 + 0.4 * j), sr * (1 + 0.4 * j)},
                        std::vector<double>(K, 0.0)};
            c.weight[j] = -1;
            if (j < n_apical) c.weight[j - 1] = 0.5, c.weight[j + 1] = 0.5;
            else c.weight[j - 1] = 1.0;
            u.components.push_back(c);
        }
    }
    if (type == UnitType::positive)
        for (auto& c : u.components)
            for (auto& w : c.weight) w = -w;
}

// An axon crossing the probe's depth: seven nodes 20 µm apart firing in turn (0.3-1 m/s),
// each node's sodium sink returned by its neighbours, then a small potassium source. A
// channel near one node sees the triphasic waveform of a passing spike.
void axon_unit(Rng& r, UnitParams& u) {
    double ux, uy, uz;
    random_direction(r, ux, uy, uz);
    uy = std::copysign(std::fmax(std::fabs(uy), 0.5), uy);
    const double n = std::sqrt(ux * ux + uy * uy + uz * uz);
    ux /= n, uy /= n, uz /= n;
    constexpr int N = 7;
    const double spacing = 20, speed = r.uniform(300, 1000);
    // sources[0] is the middle node (at the unit's position), then the others in order.
    auto index = [](int i) { return (i - 3 + N) % N; };
    u.sources.assign(N, {});
    for (int i = 0; i < N; ++i) {
        const double d = spacing * (i - 3);
        u.sources[index(i)] = {d * ux, d * uy, d * uz, 6.0};
    }
    const double sl = r.uniform(0.04, 0.06), sr = r.uniform(0.05, 0.08);
    const double rk = r.uniform(0.2, 0.5), mk = r.uniform(0.1, 0.2), sk = r.uniform(0.08, 0.15);
    for (int i = 0; i < N; ++i) {
        const double delay = spacing * i / speed;
        for (int kind = 0; kind < 2; ++kind) {
            Component c{kind == 0 ? Bump{1, delay, sl, sr} : Bump{rk, delay + mk, 0.06, sk}, std::vector<double>(N, 0.0)};
            const double w = kind == 0 ? -1.0 : 1.0;
            c.weight[index(i)] = w;
            if (i == 0) c.weight[index(1)] = -w;
            else if (i == N - 1) c.weight[index(N - 2)] = -w;
            else c.weight[index(i - 1)] = -0.5 * w, c.weight[index(i + 1)] = -0.5 * w;
            u.components.push_back(c);
        }
    }
}

struct Region {
    int shank;
    double x_lo, x_hi, y_lo, y_hi;  // placement region (µm)
};

std::vector<Region> regions(const Config& cfg) {
    std::vector<Region> out;
    const Probe& p = cfg.probe;
    std::vector<int> shanks(p.kcoords.begin(), p.kcoords.end());
    std::sort(shanks.begin(), shanks.end());
    shanks.erase(std::unique(shanks.begin(), shanks.end()), shanks.end());
    const double extra = cfg.margin_um + (cfg.sessions > 1 ? cfg.session_shift_um : 0.0);
    for (int s : shanks) {
        Region r{s, 1e300, -1e300, 1e300, -1e300};
        for (int c = 0; c < p.n_chan(); ++c) {
            if (p.kcoords[c] != s) continue;
            r.x_lo = std::min(r.x_lo, p.xc[c]);
            r.x_hi = std::max(r.x_hi, p.xc[c]);
            r.y_lo = std::min(r.y_lo, p.yc[c]);
            r.y_hi = std::max(r.y_hi, p.yc[c]);
        }
        r.x_lo -= 25, r.x_hi += 25, r.y_lo -= extra, r.y_hi += extra;
        out.push_back(r);
    }
    return out;
}

// One unit drawn from the configured distributions, somewhere in `regs`.
UnitParams draw_unit(Rng& r, const Config& cfg, const std::vector<Region>& regs) {
    UnitParams u;
    double total = 0;
    for (const auto& g : regs) total += g.y_hi - g.y_lo;
    double pick = r.uniform(0, total);
    const Region* g = &regs.back();
    for (const auto& reg : regs) {
        if (pick < reg.y_hi - reg.y_lo) { g = &reg; break; }
        pick -= reg.y_hi - reg.y_lo;
    }
    u.x_um = r.uniform(g->x_lo, g->x_hi);
    u.y_um = r.uniform(g->y_lo, g->y_hi);
    const double ut = r.uniform();
    if (ut < cfg.frac_axonal) u.type = UnitType::axonal;
    else if (ut < cfg.frac_axonal + cfg.frac_positive) u.type = UnitType::positive;
    else if (ut < cfg.frac_axonal + cfg.frac_positive + cfg.frac_narrow) u.type = UnitType::narrow;
    else u.type = UnitType::regular;
    u.amplitude_uv = r.truncated_lognormal(cfg.amp_median_uv, cfg.amp_sigma, cfg.amp_min_uv, cfg.amp_max_uv);
    // Big units are near the probe, small ones far: their footprints are narrow and broad.
    u.z_um = std::clamp(20.0 * std::pow(100.0 / u.amplitude_uv, 0.7) * std::exp(0.25 * r.normal()),
                        cfg.z_min_um, cfg.z_max_um);
    const double rate_median = cfg.rate_median_hz * (u.type == UnitType::narrow ? 3.0 : 1.0);
    u.rate_hz = r.truncated_lognormal(rate_median, cfg.rate_sigma, cfg.rate_min_hz, cfg.rate_max_hz);
    const double ref_hi = u.type == UnitType::narrow ? 0.5 * (cfg.refractory_min_ms + cfg.refractory_max_ms)
                                                     : cfg.refractory_max_ms;
    u.refractory_ms = r.uniform(cfg.refractory_min_ms, ref_hi);
    if (u.type == UnitType::regular) {
        u.large_repol = r.chance(cfg.frac_large_repol);
        u.bursting = r.chance(cfg.burst_fraction);
        if (u.bursting) {
            u.burst_prob = r.uniform(0.2, 0.5);
            u.burst_isi_ms = std::max(r.uniform(3, 6), u.refractory_ms + 0.5);
            u.burst_drop = r.uniform(0.1, 0.25);
        }
    }
    if (u.type == UnitType::axonal) axon_unit(r, u);
    else soma_unit(r, u);
    return u;
}

UnitParams make_twin(Rng& r, const Config& cfg, const UnitParams& base) {
    UnitParams t = base;
    const double ang = r.uniform(0, 2 * kPi), d = r.uniform(10, 25);
    t.x_um += d * std::cos(ang);
    t.y_um += d * std::sin(ang);
    t.z_um = std::clamp(t.z_um + r.uniform(-5, 5), cfg.z_min_um, cfg.z_max_um);
    t.amplitude_uv = std::clamp(base.amplitude_uv * std::exp(0.3 * r.normal()), cfg.amp_min_uv, cfg.amp_max_uv);
    for (auto& c : t.components) {
        c.shape.sl_ms *= std::exp(0.08 * r.normal());
        c.shape.sr_ms *= std::exp(0.08 * r.normal());
        c.shape.a *= std::exp(0.1 * r.normal());
    }
    t.rate_hz = r.truncated_lognormal(base.rate_hz, 0.5, cfg.rate_min_hz, cfg.rate_max_hz);
    t.sync_partner = -1;
    t.sync_prob = 0;
    return t;
}

double dist3(const UnitParams& a, const UnitParams& b) {
    const double dx = a.x_um - b.x_um, dy = a.y_um - b.y_um, dz = a.z_um - b.z_um;
    return std::sqrt(dx * dx + dy * dy + dz * dz);
}

}  // namespace

const char* unit_type_name(UnitType t) {
    switch (t) {
        case UnitType::regular: return "regular";
        case UnitType::narrow: return "narrow";
        case UnitType::positive: return "positive";
        case UnitType::axonal: return "axonal";
    }
    return "?";
}

Population make_population(const Config& cfg) {
    Population pop;
    Rng r(key(cfg.seed, kPopulation));
    const auto regs = regions(cfg);
    int n_total = cfg.n_units;
    if (n_total < 0) {
        double len = 0;
        for (const auto& g : regs) len += g.y_hi - g.y_lo;
        n_total = static_cast<int>(std::lround(cfg.units_per_100um * len / 100.0));
    }
    const int n_twins = static_cast<int>(std::lround(n_total * cfg.twin_fraction / (1.0 + cfg.twin_fraction)));
    std::vector<UnitParams> units;
    for (int i = 0; i < n_total - n_twins; ++i) units.push_back(draw_unit(r, cfg, regs));
    for (int i = 0; i < n_twins; ++i) {
        const int base = r.below(n_total - n_twins);
        UnitParams t = make_twin(r, cfg, units[base]);
        t.twin_of = base;   // index before renumbering
        units.push_back(t);
    }
    // Ids ascend with depth, so neighbouring ids are neighbouring units.
    std::vector<int> order(units.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return units[a].y_um < units[b].y_um; });
    std::vector<int> new_id(units.size());
    for (size_t i = 0; i < order.size(); ++i) new_id[order[i]] = static_cast<int>(i);
    for (size_t i = 0; i < order.size(); ++i) {
        UnitParams u = units[order[i]];
        u.global_id = static_cast<int>(i);
        if (u.twin_of >= 0) u.twin_of = new_id[u.twin_of];
        pop.units.push_back(u);
    }
    // Synchrony: a unit drives its nearest neighbour (within 60 µm) now and then.
    for (auto& u : pop.units) {
        if (!r.chance(cfg.sync_fraction)) continue;
        double best = 60;
        for (const auto& v : pop.units)
            if (v.global_id != u.global_id && dist3(u, v) < best) best = dist3(u, v), u.sync_partner = v.global_id;
        if (u.sync_partner >= 0) u.sync_prob = r.uniform(0.05, 0.15);
    }
    // Sessions: turnover and probe offsets.
    std::vector<int> cur;
    for (const auto& u : pop.units) cur.push_back(u.global_id);
    pop.present.push_back(cur);
    pop.probe_offset_um.push_back({0.0, 0.0});
    Rng rs(key(cfg.seed, kNewUnits));
    Rng ro(key(cfg.seed, kOffsets));
    for (int s = 1; s < cfg.sessions; ++s) {
        const int n_out = static_cast<int>(std::lround(cfg.turnover * cur.size()));
        for (int i = 0; i < n_out && !cur.empty(); ++i) cur.erase(cur.begin() + rs.below(static_cast<int>(cur.size())));
        for (int i = 0; i < n_out; ++i) {
            UnitParams u = draw_unit(rs, cfg, regs);
            u.global_id = static_cast<int>(pop.units.size());
            pop.units.push_back(u);
            cur.push_back(u.global_id);
        }
        std::sort(cur.begin(), cur.end());
        pop.present.push_back(cur);
        pop.probe_offset_um.push_back({ro.uniform(-5, 5), ro.uniform(-cfg.session_shift_um, cfg.session_shift_um)});
    }
    return pop;
}

// The unit as it is in session `s`: slow cumulative changes, then into the probe's frame.
UnitParams session_unit(const Config& cfg, const Population& pop, int gid, int s) {
    UnitParams u = pop.units[gid];
    for (int k = 1; k <= s; ++k) {
        Rng r(key(cfg.seed, kSessionChange, static_cast<uint64_t>(gid), static_cast<uint64_t>(k)));
        u.amplitude_uv = std::clamp(u.amplitude_uv * std::exp(cfg.session_change * r.normal()), cfg.amp_min_uv,
                                    cfg.amp_max_uv);
        u.rate_hz = std::clamp(u.rate_hz * std::exp(0.2 * r.normal()), cfg.rate_min_hz, cfg.rate_max_hz);
        u.x_um += 1.5 * r.normal();
        u.z_um = std::clamp(u.z_um + 1.5 * r.normal(), cfg.z_min_um, cfg.z_max_um);
        const double w = std::exp(0.5 * cfg.session_change * r.normal());  // slow widening or narrowing
        for (auto& c : u.components) c.shape.sl_ms *= w, c.shape.sr_ms *= w, c.shape.mu_ms *= w;
    }
    u.x_um -= pop.probe_offset_um[s].first;
    u.y_um -= pop.probe_offset_um[s].second;
    return u;
}

void waveform_window(double fs_hz, int& pre, int& nt) {
    pre = std::max(kTemplateNt0min, static_cast<int>(std::ceil(1e-3 * fs_hz)));
    const int post = std::max(kTemplateNt - kTemplateNt0min - 1, static_cast<int>(std::ceil(2e-3 * fs_hz)));
    nt = pre + post + 1;
}

Unit build_unit(const UnitParams& p, const Probe& probe, double fs_hz, double max_motion_um) {
    Unit u;
    u.p = p;
    u.os = kOversample;
    waveform_window(fs_hz, u.pre, u.nt);
    const int K = static_cast<int>(p.sources.size());
    KS_ASSERT(K > 0 && !p.components.empty(), "unit without sources");
    const int os = u.os;
    const double dt_ms = 1000.0 / (fs_hz * os);
    double max_delay = 0, extent = 0;
    for (const auto& c : p.components) max_delay = std::max(max_delay, c.shape.mu_ms);
    for (const auto& s : p.sources) extent = std::max(extent, std::hypot(s.dx_um, s.dy_um));
    const double t0_ms = -(u.pre * 1000.0 / fs_hz + 1.0);
    const double t1_ms = (u.nt - u.pre) * 1000.0 / fs_hz + 1.0 + max_delay;
    const int nf = static_cast<int>(std::ceil((t1_ms - t0_ms) / dt_ms)) + 1;
    // Source currents on the fine grid: each source's share of every component.
    std::vector<double> cur(static_cast<size_t>(K) * nf, 0.0);
    for (const auto& c : p.components) {
        KS_ASSERT(static_cast<int>(c.weight.size()) == K, "component weights");
        for (int j = 0; j < nf; ++j) {
            const double b = bump(c.shape, t0_ms + j * dt_ms);
            for (int k = 0; k < K; ++k) cur[static_cast<size_t>(k) * nf + j] += c.weight[k] * b;
        }
    }
    // Candidate footprint: every contact within reach of any source, wherever drift takes the
    // unit; trimmed below once the waveform's scale is known.
    const double reach = kReachUm + extent;
    for (int c = 0; c < probe.n_chan(); ++c) {
        const double dx = probe.xc[c] - p.x_um;
        const double dy = std::max(0.0, std::fabs(probe.yc[c] - p.y_um) - max_motion_um);
        if (dx * dx + dy * dy <= reach * reach) u.channels.push_back(c);
    }
    // Rest potentials on the footprint; the peak (largest |V|) is searched near the nominal
    // trough so the window always holds the spike.
    auto gain = [&](int c, int k, double motion) {
        const Source& s = p.sources[k];
        const double dx = probe.xc[c] - (p.x_um + s.dx_um);
        const double dy = probe.yc[c] - (p.y_um + s.dy_um + motion);
        const double dz = source_z(p, s);
        return 1.0 / std::sqrt(dx * dx + dy * dy + dz * dz + s.radius_um * s.radius_um);
    };
    const int j_lo = static_cast<int>((-0.6 - t0_ms) / dt_ms), j_hi = static_cast<int>((1.0 - t0_ms) / dt_ms);
    int pk = j_lo;
    double best = -1;
    for (int c : u.channels) {
        std::vector<double> g(K);
        for (int k = 0; k < K; ++k) g[k] = gain(c, k, 0);
        for (int j = j_lo; j <= j_hi; ++j) {
            double v = 0;
            for (int k = 0; k < K; ++k) v += g[k] * cur[static_cast<size_t>(k) * nf + j];
            if (std::fabs(v) > best) best = std::fabs(v), pk = j;
        }
    }
    KS_ASSERT(pk - u.pre * os - os / 2 >= 0 && pk + (u.nt - 1 - u.pre) * os + os / 2 < nf, "waveform window");
    // Tables, tapered to zero at both ends of the window (cosine over 0.25 ms / 0.5 ms).
    const int n_in = std::max(2, static_cast<int>(std::lround(0.25e-3 * fs_hz)));
    const int n_out = std::max(2, static_cast<int>(std::lround(0.5e-3 * fs_hz)));
    std::vector<double> taper(u.nt, 1.0);
    for (int i = 0; i < n_in; ++i) taper[i] = 0.5 - 0.5 * std::cos(kPi * (i + 0.5) / n_in);
    for (int i = 0; i < n_out; ++i) taper[u.nt - 1 - i] = 0.5 - 0.5 * std::cos(kPi * (i + 0.5) / n_out);
    u.table.assign(static_cast<size_t>(os + 1) * K * u.nt, 0.f);
    std::vector<double> tab(u.table.size());
    for (int ph = 0; ph <= os; ++ph)
        for (int k = 0; k < K; ++k)
            for (int i = 0; i < u.nt; ++i) {
                const int j = pk + (i - u.pre) * os - (ph - os / 2);
                tab[(static_cast<size_t>(ph) * K + k) * u.nt + i] = cur[static_cast<size_t>(k) * nf + j] * taper[i];
            }
    // Scale so that the on-time rest waveform peaks at amplitude_uv.
    double vmax = 0;
    for (int c : u.channels) {
        std::vector<double> g(K);
        for (int k = 0; k < K; ++k) g[k] = gain(c, k, 0);
        for (int i = 0; i < u.nt; ++i) {
            double v = 0;
            for (int k = 0; k < K; ++k) v += g[k] * tab[(static_cast<size_t>(os / 2) * K + k) * u.nt + i];
            if (std::fabs(v) > vmax) vmax = std::fabs(v), u.peak_channel = c;
        }
    }
    KS_ASSERT(vmax > 0, "unit with a zero waveform");
    const double scale = p.amplitude_uv / vmax;
    for (size_t i = 0; i < tab.size(); ++i) u.table[i] = static_cast<float>(tab[i] * scale);
    // Keep the channels where the unit, at rest or moved to either end of its drift, reaches
    // kFootprintFraction of its peak: what is cut is below the noise of any recording.
    {
        std::vector<int> keep;
        const double moves[3] = {-max_motion_um, 0.0, max_motion_um};
        for (int c : u.channels) {
            double cmax = 0;
            for (double mv : moves) {
                std::vector<double> g(K);
                for (int k = 0; k < K; ++k) g[k] = gain(c, k, mv);
                for (int i = 0; i < u.nt; ++i) {
                    double v = 0;
                    for (int k = 0; k < K; ++k) v += g[k] * tab[(static_cast<size_t>(os / 2) * K + k) * u.nt + i];
                    cmax = std::max(cmax, std::fabs(v) * scale);
                }
                if (max_motion_um <= 0) break;
            }
            if (cmax >= kFootprintFraction * p.amplitude_uv) keep.push_back(c);
        }
        u.channels = keep;
    }
    // Trough-to-peak on the peak channel: from the peak to the opposite extreme after it.
    const std::vector<float> tmpl = unit_template(u, probe, 0, u.nt, u.pre);
    const int C = probe.n_chan();
    const double sgn = tmpl[static_cast<size_t>(u.pre) * C + u.peak_channel] < 0 ? 1.0 : -1.0;
    int i_best = u.pre;
    for (int i = u.pre; i < u.nt; ++i)
        if (sgn * tmpl[static_cast<size_t>(i) * C + u.peak_channel] > sgn * tmpl[static_cast<size_t>(i_best) * C + u.peak_channel])
            i_best = i;
    u.trough_to_peak_ms = (i_best - u.pre) * 1000.0 / fs_hz;
    return u;
}

void render_spike(const Unit& u, const Probe& probe, double motion_um, int phase, float amp, int64_t t_spike,
                  int64_t buf_t0, int64_t buf_len, int ch_lo, int ch_hi, float* buf) {
    const int K = static_cast<int>(u.p.sources.size());
    const int64_t w0 = t_spike - u.pre;  // sample of window index 0
    const int i_lo = static_cast<int>(std::max<int64_t>(0, buf_t0 - w0));
    const int i_hi = static_cast<int>(std::min<int64_t>(u.nt, buf_t0 + buf_len - w0));
    if (i_lo >= i_hi) return;
    const float* tab = u.table.data() + static_cast<size_t>(phase) * K * u.nt;
    thread_local std::vector<float> acc_buf;  // this thread's: render_spike runs inside parallel loops
    if (acc_buf.size() < static_cast<size_t>(u.nt)) acc_buf.resize(u.nt);
    float* const acc = acc_buf.data();
    for (int c : u.channels) {
        if (c < ch_lo) continue;
        if (c >= ch_hi) break;
        for (int i = i_lo; i < i_hi; ++i) acc[i] = 0.f;
        for (int k = 0; k < K; ++k) {
            const Source& s = u.p.sources[k];
            // float is plenty here, and its sqrt and division are twice as fast as double's
            const float dx = static_cast<float>(probe.xc[c] - (u.p.x_um + s.dx_um));
            const float dy = static_cast<float>(probe.yc[c] - (u.p.y_um + s.dy_um + motion_um));
            const float dz = static_cast<float>(source_z(u.p, s));
            const float r2 = static_cast<float>(s.radius_um * s.radius_um);
            const float g = amp / std::sqrt(dx * dx + dy * dy + dz * dz + r2);
            const float* row = tab + static_cast<size_t>(k) * u.nt;
            for (int i = i_lo; i < i_hi; ++i) acc[i] += g * row[i];
        }
        float* out = buf + static_cast<size_t>(c) * buf_len + (w0 - buf_t0);
        for (int i = i_lo; i < i_hi; ++i) out[i] += acc[i];
    }
}

std::vector<float> unit_template(const Unit& u, const Probe& probe, double motion_um, int nt, int nt0min) {
    const int C = probe.n_chan();
    std::vector<float> ch(static_cast<size_t>(C) * u.nt, 0.f);
    render_spike(u, probe, motion_um, u.os / 2, 1.f, u.pre, 0, u.nt, 0, C, ch.data());
    std::vector<float> out(static_cast<size_t>(nt) * C, 0.f);
    for (int i = 0; i < nt; ++i) {
        const int j = i - nt0min + u.pre;
        if (j < 0 || j >= u.nt) continue;
        for (int c = 0; c < C; ++c) out[static_cast<size_t>(i) * C + c] = ch[static_cast<size_t>(c) * u.nt + j];
    }
    return out;
}

}  // namespace ks::sim
