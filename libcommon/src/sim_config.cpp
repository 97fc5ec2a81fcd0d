// ks::sim configuration: presets, command-line options, validation, JSON record.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/sim.hpp"

namespace ks::sim {
namespace {

[[noreturn]] void bad(const std::string& option, const std::string& value, const std::string& expected) {
    throw Error(Exit::usage, "--" + option + " " + value + ": expected " + expected);
}

double parse_number(const std::string& option, const std::string& text) {
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || !end || *end || errno == ERANGE || !std::isfinite(v)) bad(option, text, "a number");
    return v;
}

long long parse_integer(const std::string& option, const std::string& text) {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || !end || *end || errno == ERANGE) bad(option, text, "a whole number");
    return v;
}

void check(bool ok, const std::string& option, double value, const std::string& expected) {
    if (!ok) throw Error(Exit::usage, "--" + option + " " + json_number(value) + ": expected " + expected);
}

}  // namespace

Probe neuropixels1_section(int n_chan) {
    Probe full = Probe::builtin("neuropixels1");
    if (n_chan >= full.n_chan()) return full;
    Probe p;
    p.name = "neuropixels1-section" + std::to_string(n_chan);
    p.chanMap.assign(full.chanMap.begin(), full.chanMap.begin() + n_chan);
    p.xc.assign(full.xc.begin(), full.xc.begin() + n_chan);
    p.yc.assign(full.yc.begin(), full.yc.begin() + n_chan);
    p.kcoords.assign(full.kcoords.begin(), full.kcoords.begin() + n_chan);
    return p;
}

std::vector<std::string> preset_names() { return {"smoke", "np64", "np64-drift", "np384"}; }

Config preset(const std::string& name) {
    Config c;
    c.preset = name;
    if (name == "smoke") {
        c.probe = neuropixels1_section(32);
        c.probe_source = "neuropixels1 sites 0-31";
        c.duration_s = 30;
    } else if (name == "np64" || name == "np64-drift") {
        c.probe = neuropixels1_section(64);
        c.probe_source = "neuropixels1 sites 0-63";
        c.duration_s = 300;
        if (name == "np64-drift") c.drift = DriftConfig::parse("mixed");
    } else if (name == "np384") {
        c.probe = neuropixels1_section(384);
        c.probe_source = "neuropixels1";
        c.duration_s = 600;
        c.drift = DriftConfig::parse("rigid,jitter");
        c.drift.rigid_um = 10;
    } else {
        std::string names;
        for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
        throw Error(Exit::usage, "--preset " + name + ": unknown preset; expected one of " + names);
    }
    return c;
}

Config config_from_options(const std::vector<std::pair<std::string, std::string>>& options) {
    std::string preset_name = "smoke";
    for (const auto& [k, v] : options)
        if (k == "preset") preset_name = v;
    Config c = preset(preset_name);
    std::string drift_text;
    for (const auto& [k, v] : options) {
        if (k == "preset" || k == "out") continue;
        if (k == "probe") {
            c.probe = Probe::load(v);
            c.probe_source = v;
        } else if (k == "duration") c.duration_s = parse_number(k, v);
        else if (k == "seed") {
            errno = 0;
            char* end = nullptr;
            const unsigned long long s = std::strtoull(v.c_str(), &end, 10);
            if (v.empty() || v[0] == '-' || !end || *end || errno == ERANGE || s > 9007199254740991ull)
                bad(k, v, "a whole number from 0 to 2^53-1");
            c.seed = s;
        } else if (k == "n-units") {
            const long long n = parse_integer(k, v);
            if (n < 0 || n > 100000) bad(k, v, "0 to 100000 units");
            c.n_units = static_cast<int>(n);
        } else if (k == "density") c.units_per_100um = parse_number(k, v);
        else if (k == "drift") drift_text = v;
        else if (k == "drift-um") c.drift.rigid_um = parse_number(k, v);
        else if (k == "step-um") c.drift.step_um = parse_number(k, v);
        else if (k == "jitter-um") c.drift.jitter_um = parse_number(k, v);
        else if (k == "sessions") {
            const long long n = parse_integer(k, v);
            if (n < 1 || n > 100) bad(k, v, "1 to 100 sessions");
            c.sessions = static_cast<int>(n);
        } else if (k == "session-shift-um") c.session_shift_um = parse_number(k, v);
        else if (k == "turnover") c.turnover = parse_number(k, v);
        else if (k == "noise-uv") c.noise_uv = parse_number(k, v);
        else if (k == "noise-corr") c.noise_corr = parse_number(k, v);
        else if (k == "noise-common") c.noise_common = parse_number(k, v);
        else if (k == "lfp-uv") c.lfp_uv = parse_number(k, v);
        else if (k == "artifact-rate") c.artifact_rate_hz = parse_number(k, v);
        else if (k == "fs") c.fs_hz = parse_number(k, v);
        else if (k == "amp-min") c.amp_min_uv = parse_number(k, v);
        else if (k == "amp-max") c.amp_max_uv = parse_number(k, v);
        else if (k == "rate-min") c.rate_min_hz = parse_number(k, v);
        else if (k == "rate-max") c.rate_max_hz = parse_number(k, v);
        else if (k == "uv-per-bit") c.uv_per_bit = parse_number(k, v);
        else if (k == "n-chan-bin") {
            const long long n = parse_integer(k, v);
            if (n < 1 || n > 65536) bad(k, v, "1 to 65536 rows");
            c.n_chan_bin = static_cast<int>(n);
        } else
            throw Error(Exit::usage, "--" + k + ": not a ks-sim option");
    }
    if (!drift_text.empty()) {
        DriftConfig d = DriftConfig::parse(drift_text);
        d.rigid_um = c.drift.rigid_um, d.step_um = c.drift.step_um, d.jitter_um = c.drift.jitter_um;
        c.drift = d;
    }
    validate(c);
    return c;
}

void validate(const Config& c) {
    check(c.duration_s >= 0.01 && c.duration_s <= 1e6, "duration", c.duration_s, "0.01 to 1e6 seconds");
    check(c.fs_hz >= 1000 && c.fs_hz <= 200000, "fs", c.fs_hz, "1000 to 200000 Hz");
    check(c.units_per_100um >= 0 && c.units_per_100um <= 1000, "density", c.units_per_100um,
          "0 to 1000 units per 100 µm");
    check(c.amp_min_uv > 0 && c.amp_min_uv <= 5000, "amp-min", c.amp_min_uv, "0 < µV <= 5000");
    check(c.amp_max_uv >= c.amp_min_uv && c.amp_max_uv <= 5000, "amp-max", c.amp_max_uv,
          "--amp-min to 5000 µV");
    check(c.rate_min_hz > 0 && c.rate_min_hz <= 200, "rate-min", c.rate_min_hz, "0 < Hz <= 200");
    check(c.rate_max_hz >= c.rate_min_hz && c.rate_max_hz <= 200, "rate-max", c.rate_max_hz, "--rate-min to 200 Hz");
    check(c.rate_max_hz * c.refractory_max_ms * 1e-3 < 0.5, "rate-max", c.rate_max_hz,
          "a rate whose mean interval is at least twice the refractory period");
    check(c.refractory_min_ms >= 0.5 && c.refractory_max_ms >= c.refractory_min_ms && c.refractory_max_ms <= 10,
          "refractory", c.refractory_min_ms, "0.5 <= min <= max <= 10 ms");
    check(c.noise_uv >= 0 && c.noise_uv <= 1000, "noise-uv", c.noise_uv, "0 to 1000 µV");
    check(c.noise_corr >= 0 && c.noise_corr <= 0.99, "noise-corr", c.noise_corr, "0 to 0.99");
    check(c.noise_common >= 0 && c.noise_common <= c.noise_corr, "noise-common", c.noise_common,
          "0 to --noise-corr");
    check(c.noise_length_um > 0 && c.noise_length_um <= 1000, "noise-length-um", c.noise_length_um, "0 < µm <= 1000");
    check(c.lfp_uv >= 0 && c.lfp_uv <= 5000, "lfp-uv", c.lfp_uv, "0 to 5000 µV");
    check(c.artifact_rate_hz >= 0 && c.artifact_rate_hz <= 10, "artifact-rate", c.artifact_rate_hz, "0 to 10 Hz");
    check(c.drift.rigid_um >= 0 && c.drift.rigid_um <= 500, "drift-um", c.drift.rigid_um, "0 to 500 µm");
    check(c.drift.step_um >= 0 && c.drift.step_um <= 500, "step-um", c.drift.step_um, "0 to 500 µm");
    check(c.drift.jitter_um >= 0 && c.drift.jitter_um <= 500, "jitter-um", c.drift.jitter_um, "0 to 500 µm");
    KS_ASSERT(c.drift.nonrigid_um >= 0 && c.drift.nonrigid_um <= 500, "nonrigid drift set by presets only");
    check(c.uv_per_bit > 0 && c.uv_per_bit <= 1e6, "uv-per-bit", c.uv_per_bit, "a positive scale");
    check(c.adc_bits >= 2 && c.adc_bits <= 16, "adc-bits", c.adc_bits, "2 to 16 bits");
    check(c.sessions >= 1 && c.sessions <= 100, "sessions", c.sessions, "1 to 100");
    check(c.session_shift_um >= 0 && c.session_shift_um <= 1000, "session-shift-um", c.session_shift_um,
          "0 to 1000 µm");
    check(c.turnover >= 0 && c.turnover <= 0.9, "turnover", c.turnover, "0 to 0.9");
    if (c.probe.n_chan() < 1) throw Error(Exit::usage, "--probe " + c.probe_source + ": no channels");
    c.probe.validate(c.probe_source);
    int rows = 0;
    for (int r : c.probe.chanMap) {
        // The file holds every row up to the highest one the probe names: keep that sane.
        if (r >= 65536) throw Error(Exit::usage, log::format("--probe %s: uses file row %d; ks-sim writes at most 65536 rows", c.probe_source.c_str(), r));
        rows = std::max(rows, r + 1);
    }
    if (c.n_chan_bin != 0 && c.n_chan_bin < rows)
        throw Error(Exit::usage, log::format("--n-chan-bin %d: the probe uses file rows up to %d", c.n_chan_bin, rows - 1));
    const int64_t n = static_cast<int64_t>(std::llround(c.duration_s * c.fs_hz));
    int pre = 0, nt = 0;
    waveform_window(c.fs_hz, pre, nt);
    check(n > 2 * nt, "duration", c.duration_s, "a recording longer than two waveform windows");
}

std::string config_json(const Config& c) {
    JsonWriter w;
    w.begin_object();
    w.key("preset").value(c.preset);
    w.key("seed").value(static_cast<int64_t>(c.seed));
    w.key("fs").value(c.fs_hz);
    w.key("duration_s").value(c.duration_s);
    w.key("probe").value(c.probe_source);
    w.key("n_chan").value(c.probe.n_chan());
    w.key("n_units").value(c.n_units);
    w.key("units_per_100um").value(c.units_per_100um);
    w.key("amp_min_uv").value(c.amp_min_uv).key("amp_max_uv").value(c.amp_max_uv);
    w.key("amp_median_uv").value(c.amp_median_uv).key("amp_sigma").value(c.amp_sigma);
    w.key("rate_min_hz").value(c.rate_min_hz).key("rate_max_hz").value(c.rate_max_hz);
    w.key("rate_median_hz").value(c.rate_median_hz).key("rate_sigma").value(c.rate_sigma);
    w.key("refractory_min_ms").value(c.refractory_min_ms).key("refractory_max_ms").value(c.refractory_max_ms);
    w.key("frac_narrow").value(c.frac_narrow).key("frac_positive").value(c.frac_positive);
    w.key("frac_axonal").value(c.frac_axonal).key("frac_large_repol").value(c.frac_large_repol);
    w.key("burst_fraction").value(c.burst_fraction).key("twin_fraction").value(c.twin_fraction);
    w.key("sync_fraction").value(c.sync_fraction).key("rate_modulation").value(c.rate_modulation);
    w.key("amp_jitter").value(c.amp_jitter).key("margin_um").value(c.margin_um);
    w.key("z_min_um").value(c.z_min_um).key("z_max_um").value(c.z_max_um);
    w.key("noise_uv").value(c.noise_uv).key("noise_spread").value(c.noise_spread);
    w.key("noise_corr").value(c.noise_corr).key("noise_common").value(c.noise_common);
    w.key("noise_length_um").value(c.noise_length_um).key("lfp_uv").value(c.lfp_uv);
    w.key("artifact_rate_hz").value(c.artifact_rate_hz);
    w.key("drift").begin_object();
    w.key("kinds").value(c.drift.describe());
    w.key("rigid_um").value(c.drift.rigid_um).key("jitter_um").value(c.drift.jitter_um);
    w.key("step_um").value(c.drift.step_um).key("nonrigid_um").value(c.drift.nonrigid_um);
    w.key("nonrigid_gain").value(c.drift.nonrigid_gain);
    w.end_object();
    w.key("uv_per_bit").value(c.uv_per_bit).key("adc_bits").value(c.adc_bits);
    w.key("sessions").value(c.sessions).key("session_shift_um").value(c.session_shift_um);
    w.key("turnover").value(c.turnover).key("session_change").value(c.session_change);
    w.key("motion_bin_s").value(c.motion_bin_s).key("motion_depth_bin_um").value(c.motion_depth_bin_um);
    w.end_object();
    return w.str();
}

}  // namespace ks::sim
