// ks-report: the sorting report of a work folder. See stages/report.hpp and formats/report.md.
#include "ks/stages/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/plot.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"
#include "ks/settings.hpp"
#include "ks/version.hpp"

namespace ks::report {

namespace fs = std::filesystem;
using plot::Canvas;
using plot::Rgb;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr Rgb kGrey{150, 150, 150};
constexpr Rgb kLightGrey{225, 225, 225};
constexpr Rgb kBlue{31, 119, 180};
constexpr Rgb kRed{214, 39, 40};

// curate/metrics.tsv: one row per final unit, columns by name (formats/curation.md).
struct MetricsTable {
    std::vector<std::string> columns;              // numeric columns after cluster_id, KSLabel, curated
    std::vector<int> id;
    std::vector<std::string> ks_label, curated;    // "good"/"mua"; "pass"/"fail"/"merged"
    std::vector<std::vector<double>> values;       // [unit][column]
    int column(const std::string& name) const {
        const auto it = std::find(columns.begin(), columns.end(), name);
        return it == columns.end() ? -1 : static_cast<int>(it - columns.begin());
    }
    double get(int unit, const std::string& name) const {
        const int c = column(name);
        return c < 0 ? kNaN : values[unit][c];
    }
};

std::vector<std::string> split_tabs(const std::string& line) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : line) {
        if (ch == '\t') {
            out.push_back(cur);
            cur.clear();
        } else if (ch != '\r') {
            cur += ch;
        }
    }
    out.push_back(cur);
    return out;
}

MetricsTable read_metrics(const std::string& path) {
    std::istringstream in(read_text_file(path));
    std::string line;
    MetricsTable m;
    if (!std::getline(in, line)) throw Error(Exit::usage, path + ": empty; rerun ks-curate");
    const auto head = split_tabs(line);
    if (head.size() < 3 || head[0] != "cluster_id" || head[1] != "KSLabel" || head[2] != "curated")
        throw Error(Exit::usage, path + ": not a ks-curate metrics table (header " + line.substr(0, 60) + "); rerun ks-curate");
    m.columns.assign(head.begin() + 3, head.end());
    int row = 1;
    while (std::getline(in, line)) {
        ++row;
        if (line.empty()) continue;
        const auto f = split_tabs(line);
        if (f.size() != head.size())
            throw Error(Exit::usage, path + ": row " + std::to_string(row) + " has " + std::to_string(f.size()) + " fields, the header " +
                                         std::to_string(head.size()) + "; rerun ks-curate");
        m.id.push_back(std::atoi(f[0].c_str()));
        m.ks_label.push_back(f[1]);
        m.curated.push_back(f[2]);
        std::vector<double> v(m.columns.size());
        for (size_t c = 0; c < v.size(); ++c) v[c] = std::strtod(f[c + 3].c_str(), nullptr);
        m.values.push_back(std::move(v));
    }
    return m;
}

// A few fields of a JSON object given as text ("" or malformed: nothing found).
struct JsonFields {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    bool ok = false;
    explicit JsonFields(const std::string& text) {
        if (!text.empty()) ok = !parser.parse(text).get(root);
    }
    double number(const char* key) const {
        double d = 0;
        return ok && !root[key].get_double().get(d) ? d : kNaN;
    }
    std::string string(const char* key) const {
        std::string_view s;
        return ok && !root[key].get_string().get(s) ? std::string(s) : std::string();
    }
};

std::string fmt(double v, int decimals = 2) {
    if (std::isnan(v)) return "–";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string fmt_int(double v) { return std::isfinite(v) ? std::to_string(static_cast<long long>(std::llround(v))) : "–"; }

// ---- pictures ----------------------------------------------------------------------------------

// A histogram panel: all units in grey, good units in blue over them.
void histogram_panel(Canvas& cv, int x0, int y0, int w, int h, const std::string& title, const std::string& xlabel,
                     const std::vector<double>& all, const std::vector<double>& good, double clip_hi = kNaN) {
    std::vector<double> a;
    for (double v : all)
        if (std::isfinite(v)) a.push_back(std::isnan(clip_hi) ? v : std::min(v, clip_hi));
    cv.text(x0 + w / 2, y0, title, plot::kBlack, 1, plot::Align::centre);
    const int px0 = x0 + 46, px1 = x0 + w - 10, py0 = y0 + 16, py1 = y0 + h - 34;
    cv.rect(px0, py0, px1 - px0 + 1, py1 - py0 + 1, kGrey);
    cv.text((px0 + px1) / 2, py1 + 20, xlabel, plot::kBlack, 1, plot::Align::centre);
    if (a.empty()) {
        cv.text((px0 + px1) / 2, (py0 + py1) / 2, "no values", kGrey, 1, plot::Align::centre);
        return;
    }
    double lo = *std::min_element(a.begin(), a.end()), hi = *std::max_element(a.begin(), a.end());
    if (lo > 0 && lo < 0.25 * hi) lo = 0;
    if (hi <= lo) {
        hi = lo + std::max(1.0, std::fabs(lo) * 0.1);
        lo -= (hi - lo) * 0.5;
    }
    constexpr int kBins = 20;
    auto count = [&](const std::vector<double>& v, bool clip) {
        std::vector<int> n(kBins, 0);
        for (double x : v) {
            if (!std::isfinite(x)) continue;
            if (clip && !std::isnan(clip_hi)) x = std::min(x, clip_hi);
            const int b = std::clamp(static_cast<int>((x - lo) / (hi - lo) * kBins), 0, kBins - 1);
            ++n[b];
        }
        return n;
    };
    const std::vector<int> na = count(a, false), ng = count(good, true);
    const int nmax = std::max(1, *std::max_element(na.begin(), na.end()));
    plot::Axis ax{lo, hi, static_cast<double>(px0 + 1), static_cast<double>(px1 - 1)};
    plot::Axis ay{0, nmax * 1.08, static_cast<double>(py1 - 1), static_cast<double>(py0 + 1)};
    cv.set_clip(px0 + 1, py0 + 1, px1 - px0 - 1, py1 - py0 - 1);
    for (int b = 0; b < kBins; ++b) {
        const int xa = static_cast<int>(std::lround(ax.to_pixel(lo + (hi - lo) * b / kBins)));
        const int xb = static_cast<int>(std::lround(ax.to_pixel(lo + (hi - lo) * (b + 1) / kBins)));
        const int ya = static_cast<int>(std::lround(ay.to_pixel(na[b]))), yg = static_cast<int>(std::lround(ay.to_pixel(ng[b])));
        cv.fill_rect(xa, ya, std::max(1, xb - xa - 1), py1 - ya, kLightGrey);
        cv.fill_rect(xa, yg, std::max(1, xb - xa - 1), py1 - yg, kBlue);
    }
    cv.reset_clip();
    for (const auto& t : plot::axis_ticks(ax, 6)) {
        const int x = static_cast<int>(std::lround(t.pixel));
        cv.line(x, py1, x, py1 + 3, plot::kBlack);
        cv.text(x, py1 + 6, t.label, plot::kBlack, 1, plot::Align::centre);
    }
    for (const auto& t : plot::axis_ticks(ay, 5)) {
        const int y = static_cast<int>(std::lround(t.pixel));
        cv.line(px0 - 3, y, px0, y, plot::kBlack);
        cv.text(px0 - 5, y - 3, t.label, plot::kBlack, 1, plot::Align::right);
    }
    cv.text(x0 + 4, (py0 + py1) / 2, "units", plot::kBlack, 1, plot::Align::centre, true);
}

// One unit's mean waveform on its channels, each trace drawn at its contact's probe position
// (x to the right, depth up), the peak channel in red, with a vertical amplitude scale bar.
void draw_footprint(Canvas& cv, int x0, int y0, int w, int h, const Probe& probe, const int* chans, int nch,
                    const float* wave, int nt, int peak_channel, const std::string& title, const std::string& amp_unit) {
    cv.text(x0 + w / 2, y0 + 2, title, plot::kBlack, 1, plot::Align::centre);
    const int px0 = x0 + 8, px1 = x0 + w - 44, py0 = y0 + 16, py1 = y0 + h - 8;
    std::vector<double> xs, ys;
    float amax = 0;
    for (int j = 0; j < nch; ++j) {
        xs.push_back(probe.xc[chans[j]]);
        ys.push_back(probe.yc[chans[j]]);
        for (int s = 0; s < nt; ++s)
            if (std::isfinite(wave[j * nt + s])) amax = std::max(amax, std::fabs(wave[j * nt + s]));
    }
    if (nch == 0 || !(amax > 0)) {
        cv.text((px0 + px1) / 2, (py0 + py1) / 2, "no waveform", kGrey, 1, plot::Align::centre);
        return;
    }
    // Contact pitch: the smallest distinct spacing in x and in y (defaults for a single column/row).
    auto min_gap = [](std::vector<double> v, double dflt) {
        std::sort(v.begin(), v.end());
        double g = std::numeric_limits<double>::infinity();
        for (size_t i = 1; i < v.size(); ++i)
            if (v[i] - v[i - 1] > 1e-6) g = std::min(g, v[i] - v[i - 1]);
        return std::isfinite(g) ? g : dflt;
    };
    const double dy = min_gap(ys, 20.0), dx = min_gap(xs, 2 * dy);
    const double trace_w = 0.85 * dx, trace_h = 1.6 * dy;   // µm of probe per trace; traces may overlap a little
    double xlo = *std::min_element(xs.begin(), xs.end()) - trace_w / 2, xhi = *std::max_element(xs.begin(), xs.end()) + trace_w / 2;
    double ylo = *std::min_element(ys.begin(), ys.end()) - trace_h / 2, yhi = *std::max_element(ys.begin(), ys.end()) + trace_h / 2;
    // Equal µm per pixel on both axes, centred in the panel.
    const double upp = std::max((xhi - xlo) / (px1 - px0), (yhi - ylo) / (py1 - py0));
    const double cx = 0.5 * (xlo + xhi), cy = 0.5 * (ylo + yhi);
    auto X = [&](double um) { return 0.5 * (px0 + px1) + (um - cx) / upp; };
    auto Y = [&](double um) { return 0.5 * (py0 + py1) - (um - cy) / upp; };
    const double per_unit = 0.5 * trace_h / amax;   // µm of probe per amplitude unit
    // Depth of the lowest and highest contact, so the position on the probe is readable (under the traces).
    cv.text(px1 + 4, py0 + 1, fmt(yhi - trace_h / 2, 0), kGrey);
    cv.text(px1 + 4, static_cast<int>(Y(ylo + trace_h / 2)) - 3, fmt(ylo + trace_h / 2, 0), kGrey);
    cv.text(px1 + 4, py0 + 11, "µm", kGrey);
    std::vector<double> tx(nt), ty(nt);
    for (int pass = 0; pass < 2; ++pass)   // the peak channel last, on top
        for (int j = 0; j < nch; ++j) {
            const bool peak = chans[j] == peak_channel;
            if (peak != (pass == 1)) continue;
            for (int s = 0; s < nt; ++s) {
                tx[s] = X(xs[j] - trace_w / 2 + trace_w * s / std::max(1, nt - 1));
                const float v = wave[j * nt + s];
                ty[s] = std::isfinite(v) ? Y(ys[j] + v * per_unit) : kNaN;
            }
            cv.line(X(xs[j] - trace_w / 2), Y(ys[j]), X(xs[j] + trace_w / 2), Y(ys[j]), kLightGrey);
            cv.polyline(tx, ty, peak ? kRed : plot::kBlack, peak ? 2 : 1);
        }
    // Scale bar: a round amplitude near half the largest, drawn at the right edge.
    const double step = plot::nice_step(0, amax, 4);
    const double bar = std::max(step, 1e-12);
    const double bx = px1 + 8, by1 = py1 - 4, by0 = by1 - bar * per_unit / upp;
    cv.line(bx, by0, bx, by1, plot::kBlack, 2);
    cv.text(static_cast<int>(bx) + 4, static_cast<int>(0.5 * (by0 + by1)) - 3, plot::tick_label(bar, step), plot::kBlack);
    cv.text(static_cast<int>(bx) + 4, static_cast<int>(0.5 * (by0 + by1)) + 7, amp_unit, plot::kBlack);
}

struct StageTiming {
    std::string stage, tool, finished;
    double wall_s = kNaN, cpu_s = kNaN, peak_rss_mib = kNaN;
};

std::string record_path(const std::string& work, const std::string& stage) {
    return stage == "phy" ? work + "/phy/ks-phy.json" : work + "/" + stage + "/" + stage + ".json";
}

}  // namespace

Summary run(const std::string& work_dir, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string fdir = work_dir + "/final", cdir = work_dir + "/curate";
    const std::string out = opt.out_dir.empty() ? work_dir + "/report" : opt.out_dir;
    // Refuse a folder another version wrote, or one truncated or changed after its stage finished.
    verify_stage_record(fdir, "final", "ks-clusters", 1, "rerun ks-cluster --work " + work_dir + " --final", "final");
    const StageRecord cur = verify_stage_record(cdir, "curate", "ks-curation", 1, "rerun ks-curate --work " + work_dir);
    verify_stage_record(work_dir + "/filter", "filter", "", 0, "rerun ks-filter");
    const FileIdentity final_id = file_identity(fdir + "/final.json");
    for (const FileIdentity& in : cur.inputs)
        if (fs::path(in.path).filename() == "final.json" && in.hash != final_id.hash)
            throw Error(Exit::usage, cdir + "/curate.json: made from another final/ than the one in " + work_dir +
                                         " (final/ was rerun since); rerun ks-curate --work " + work_dir);

    const Probe probe = Probe::load(work_dir + "/probe.json");
    const FilteredInfo info = read_filtered_info(work_dir + "/filter/filtered.json");
    const JsonFields filtered_json(read_text_file(work_dir + "/filter/filtered.json"));
    std::string source_path, source_dtype;
    double n_chan_bin = kNaN, uv_per_bit = kNaN;
    if (filtered_json.ok) {
        std::string_view sv;
        if (!filtered_json.root["source"]["path"].get_string().get(sv)) source_path = std::string(sv);
        if (!filtered_json.root["source"]["dtype"].get_string().get(sv)) source_dtype = std::string(sv);
        int64_t n = 0;
        if (!filtered_json.root["source"]["n_chan_bin"].get_int64().get(n)) n_chan_bin = static_cast<double>(n);
        uv_per_bit = filtered_json.number("uv_per_bit");
    }
    const double duration_s = info.n_samples / info.fs;

    // Units and their metrics, waveforms and curation history.
    const MetricsTable mt = read_metrics(cdir + "/metrics.tsv");
    const int K = static_cast<int>(mt.id.size());
    const JsonFields cur_extra(cur.extra_json);
    const std::string amp_unit = cur_extra.string("amplitude_unit") == "uV" ? "µV" : "units";
    const NpyArray mw_a = read_npy_checked(cdir + "/mean_waveforms.npy", Dtype::float32, 3);
    const NpyArray wc_a = read_npy_checked(cdir + "/waveform_channels.npy", Dtype::int32, 2);
    if (mw_a.shape[0] != K || wc_a.shape[0] != K || wc_a.shape[1] != mw_a.shape[1])
        throw Error(Exit::usage, cdir + "/mean_waveforms.npy, waveform_channels.npy and metrics.tsv disagree on the units; rerun ks-curate");
    const int nch = static_cast<int>(mw_a.shape[1]), nt = static_cast<int>(mw_a.shape[2]);
    const std::vector<float> mw = mw_a.as<float>();
    const std::vector<int32_t> wc = wc_a.as<int32_t>();
    for (int32_t c : wc)
        if (c < 0 || c >= probe.n_chan())
            throw Error(Exit::usage, cdir + "/waveform_channels.npy: channel " + std::to_string(c) + " is not on the probe (" +
                                         std::to_string(probe.n_chan()) + " channels); rerun ks-curate");

    std::map<std::string, int> removed_by;   // criterion -> units removed by it
    int n_merged = 0, n_merge_pairs = 0;
    {
        simdjson::dom::parser parser;
        simdjson::padded_string text;
        simdjson::dom::element root;
        simdjson::dom::array units, merges;
        if (simdjson::padded_string::load(cdir + "/curation.json").get(text) || parser.parse(text).get(root) ||
            root["units"].get_array().get(units))
            throw Error(Exit::usage, cdir + "/curation.json: not a curation history; rerun ks-curate");
        for (simdjson::dom::element u : units) {
            bool kept = true;
            std::string_view by;
            if (!u["kept"].get_bool().get(kept) && !kept && !u["removed_by"].get_string().get(by)) {
                if (by == "merge") ++n_merged;
                else ++removed_by[std::string(by)];
            }
        }
        if (!root["merges"].get_array().get(merges))
            for (simdjson::dom::element m : merges) {
                std::string_view r;
                if (!m["result"].get_string().get(r) && r == "merged") ++n_merge_pairs;
            }
    }

    // What each stage recorded: timings, and the counts along the way.
    std::vector<StageTiming> timings;
    std::map<std::string, std::string> extras;
    for (const std::string& stage : pipeline_stages()) {
        if (stage == "report") continue;
        const std::string p = record_path(work_dir, stage);
        std::error_code ec;
        if (!fs::exists(p, ec)) continue;
        const StageRecord r = read_stage_record(p, "rerun ks-" + stage);
        StageTiming t{stage, r.tool, r.finished};
        if (r.wall_s >= 0) t.wall_s = r.wall_s;
        if (r.cpu_s >= 0) t.cpu_s = r.cpu_s;
        if (r.peak_rss_mib >= 0) t.peak_rss_mib = r.peak_rss_mib;
        timings.push_back(t);
        extras[stage] = r.extra_json;
    }
    const JsonFields cluster_x(extras["cluster"]), match_x(extras["match"]), final_x(extras["final"]), drift_x(extras["drift"]),
        detect_x(extras["detect"]);

    // Settings that differ from the defaults (the curate record holds every stage's settings).
    Settings used;
    if (!cur.settings_json.empty()) used.load_json_text(cur.settings_json, cdir + "/curate.json");
    std::vector<std::pair<std::string, std::string>> changed;
    for (const std::string& name : used.changed())
        changed.emplace_back(name, Settings::value_to_string(*Settings::find(name), used.value(name)));

    // Counts.
    int n_ks_good = 0, n_ks_mua = 0, n_pass = 0, n_fail = 0, n_good = 0;
    std::vector<int> good_units;   // KS 'good' and passing the curation criteria
    for (int k = 0; k < K; ++k) {
        const bool merged = mt.curated[k] == "merged";
        if (!merged) (mt.ks_label[k] == "good" ? n_ks_good : n_ks_mua)++;
        if (mt.curated[k] == "pass") ++n_pass;
        if (mt.curated[k] == "fail") ++n_fail;
        if (mt.ks_label[k] == "good" && mt.curated[k] == "pass") {
            ++n_good;
            good_units.push_back(k);
        }
    }
    // The largest good units first (by SNR) when pictures are capped.
    std::vector<int> pictured = good_units;
    std::stable_sort(pictured.begin(), pictured.end(), [&](int a, int b) {
        const double sa = mt.get(a, "snr"), sb = mt.get(b, "snr");
        return (std::isnan(sa) ? -1 : sa) > (std::isnan(sb) ? -1 : sb);
    });
    if (static_cast<int>(pictured.size()) > opt.max_unit_pictures) pictured.resize(static_cast<size_t>(std::max(0, opt.max_unit_pictures)));
    std::sort(pictured.begin(), pictured.end());

    // ---- outputs: the record goes first and comes back last, so a partial report never looks done.
    fs::create_directories(out + "/units");
    remove_stale_output(out + "/report.json");
    for (const auto& e : fs::directory_iterator(out + "/units"))
        if (e.path().extension() == ".png") fs::remove(e.path());
    std::vector<std::string> written;

    // The drift map that ks-drift drew.
    std::string drift_picture;
    if (fs::exists(work_dir + "/drift/drift_map.png")) {
        copy_file_atomic(work_dir + "/drift/drift_map.png", out + "/drift_map.png");
        drift_picture = "drift_map.png";
        written.push_back(drift_picture);
    } else {
        remove_stale_output(out + "/drift_map.png");
    }

    // Distributions: firing rate, amplitude, contamination, SNR.
    {
        std::vector<double> fr[2], amp[2], con[2], snr[2];
        for (int k = 0; k < K; ++k) {
            if (mt.curated[k] == "merged") continue;
            const bool g = mt.ks_label[k] == "good" && mt.curated[k] == "pass";
            for (int s = 0; s < (g ? 2 : 1); ++s) {
                fr[s].push_back(mt.get(k, "firing_rate_hz"));
                amp[s].push_back(mt.get(k, "amplitude_median"));
                con[s].push_back(mt.get(k, "contam_pct"));
                snr[s].push_back(mt.get(k, "snr"));
            }
        }
        Canvas cv(760, 560, plot::kWhite);
        cv.text(380, 6, "units: all " + std::to_string(K - n_merged) + " (grey), good " + std::to_string(n_good) + " (blue)",
                plot::kBlack, 1, plot::Align::centre);
        histogram_panel(cv, 0, 24, 380, 268, "firing rate", "Hz", fr[0], fr[1]);
        histogram_panel(cv, 380, 24, 380, 268, "median amplitude", amp_unit, amp[0], amp[1]);
        histogram_panel(cv, 0, 292, 380, 268, "contamination (refractory)", "% (clipped at 100)", con[0], con[1], 100.0);
        histogram_panel(cv, 380, 292, 380, 268, "SNR", "peak / noise", snr[0], snr[1]);
        cv.write_png(out + "/distributions.png");
        written.push_back("distributions.png");
    }

    // Footprints: one picture per good unit, and an overview grid of the first 48 by SNR.
    const std::string unit_label = amp_unit;
    auto unit_title = [&](int k) {
        return "unit " + std::to_string(mt.id[k]) + "  " + fmt(mt.get(k, "firing_rate_hz"), 1) + " Hz  SNR " + fmt(mt.get(k, "snr"), 1);
    };
    auto peak_of = [&](int k) {
        const double p = mt.get(k, "peak_channel");
        return std::isfinite(p) ? static_cast<int>(p) : -1;
    };
    for (int k : pictured) {
        Canvas cv(220, 300, plot::kWhite);
        draw_footprint(cv, 0, 0, 220, 300, probe, wc.data() + static_cast<size_t>(k) * nch, nch,
                       mw.data() + static_cast<size_t>(k) * nch * nt, nt, peak_of(k), unit_title(k), unit_label);
        const std::string name = "units/unit_" + std::to_string(mt.id[k]) + ".png";
        cv.write_png(out + "/" + name);
        written.push_back(name);
    }
    {
        std::vector<int> grid = good_units;
        std::stable_sort(grid.begin(), grid.end(), [&](int a, int b) {
            const double sa = mt.get(a, "snr"), sb = mt.get(b, "snr");
            return (std::isnan(sa) ? -1 : sa) > (std::isnan(sb) ? -1 : sb);
        });
        if (grid.size() > 48) grid.resize(48);
        std::sort(grid.begin(), grid.end(), [&](int a, int b) { return mt.get(a, "y_um") < mt.get(b, "y_um"); });
        const int cols = 8, cw = 180, ch = 240;
        const int rows = std::max(1, static_cast<int>((grid.size() + cols - 1) / cols));
        Canvas cv(cols * cw, rows * ch + 24, plot::kWhite);
        cv.text(cols * cw / 2, 6,
                grid.empty() ? "no good units" :
                "good units by depth (" + std::to_string(grid.size()) + " of " + std::to_string(n_good) + ", highest SNR)",
                plot::kBlack, 1, plot::Align::centre);
        for (size_t i = 0; i < grid.size(); ++i) {
            const int k = grid[i];
            const int gx = static_cast<int>(i % cols) * cw, gy = 24 + static_cast<int>(i / cols) * ch;
            cv.set_clip(gx, gy, cw, ch);
            draw_footprint(cv, gx, gy, cw, ch, probe, wc.data() + static_cast<size_t>(k) * nch, nch,
                           mw.data() + static_cast<size_t>(k) * nch * nt, nt, peak_of(k),
                           "unit " + std::to_string(mt.id[k]) + " at " + fmt(mt.get(k, "y_um"), 0) + " µm", unit_label);
            cv.reset_clip();
            cv.rect(gx, gy, cw, ch, kLightGrey);
        }
        cv.write_png(out + "/footprints.png");
        written.push_back("footprints.png");
    }

    // ---- recording_report.json ----
    const double total_wall = [&] {
        double s = 0;
        for (const auto& t : timings)
            if (std::isfinite(t.wall_s)) s += t.wall_s;
        return s;
    }();
    const double first_pass_units = cluster_x.number("n_clusters");
    const double final_spikes = final_x.number("n_spikes");
    JsonWriter j(2);
    j.begin_object();
    j.key("format").value("ks-report");
    j.key("version").value(1);
    j.key("work_dir").value(fs::absolute(work_dir).lexically_normal().string());
    j.key("recording").begin_object();
    j.key("path").value(source_path);
    j.key("dtype").value(source_dtype);
    j.key("n_chan_bin");
    std::isfinite(n_chan_bin) ? j.value(static_cast<int64_t>(n_chan_bin)) : j.null();
    j.key("n_channels").value(info.n_channels);
    j.key("fs").value(info.fs);
    j.key("first_sample").value(info.imin);
    j.key("n_samples").value(info.n_samples);
    j.key("duration_s").value(duration_s);
    j.key("uv_per_bit").value(uv_per_bit);
    j.key("n_shanks").value(probe.n_shanks());
    j.end_object();
    j.key("settings_changed").begin_object();
    for (const auto& [name, v] : changed) j.key(name).value(v);
    j.end_object();
    j.key("stages").begin_array();
    for (const auto& t : timings) {
        j.begin_object();
        j.key("stage").value(t.stage).key("tool").value(t.tool).key("finished").value(t.finished);
        j.key("wall_s").value(t.wall_s).key("cpu_s").value(t.cpu_s).key("peak_rss_mib").value(t.peak_rss_mib);
        j.end_object();
    }
    j.end_array();
    j.key("total_wall_s").value(total_wall);
    j.key("drift").begin_object();
    j.key("status").value(drift_x.string("status"));
    j.key("source").value(drift_x.string("source"));
    j.key("max_abs_shift_um").value(drift_x.number("max_abs_shift_um"));
    j.key("picture");
    drift_picture.empty() ? j.null() : j.value(drift_picture);
    j.end_object();
    j.key("counts").begin_object();
    j.key("detected_spikes").value(detect_x.number("n_spikes"));
    j.key("first_pass_units").value(first_pass_units);
    j.key("matched_spikes").value(match_x.number("n_spikes"));
    j.key("final_spikes").value(final_spikes);
    j.key("final_units").value(K);
    j.key("ks_good").value(n_ks_good);
    j.key("ks_mua").value(n_ks_mua);
    j.key("merged_by_curation").value(n_merged);
    j.key("passed_curation").value(n_pass);
    j.key("failed_curation").value(n_fail);
    j.key("removed_by").begin_object();
    for (const auto& [by, n] : removed_by) j.key(by).value(n);
    j.end_object();
    j.key("good").value(n_good);
    j.end_object();
    j.key("metrics").begin_array();
    for (const auto& c : mt.columns) j.value(c);
    j.end_array();
    j.key("amplitude_unit").value(amp_unit == "µV" ? "uV" : "recording units");
    j.key("units").begin_array();
    for (int k = 0; k < K; ++k) {
        j.begin_object();
        j.key("cluster_id").value(mt.id[k]);
        j.key("KSLabel").value(mt.ks_label[k]);
        j.key("curated").value(mt.curated[k]);
        j.key("good").value(mt.ks_label[k] == "good" && mt.curated[k] == "pass");
        for (size_t c = 0; c < mt.columns.size(); ++c) j.key(mt.columns[c]).value(mt.values[k][c]);
        j.key("picture");
        std::binary_search(pictured.begin(), pictured.end(), k) ? j.value("units/unit_" + std::to_string(mt.id[k]) + ".png") : j.null();
        j.end_object();
    }
    j.end_array();
    j.key("pictures").begin_object();
    j.key("distributions").value("distributions.png");
    j.key("footprints").value("footprints.png");
    j.key("unit_pictures").value(static_cast<int64_t>(pictured.size()));
    j.key("unit_pictures_left_out").value(static_cast<int64_t>(good_units.size() - pictured.size()));
    j.end_object();
    j.end_object();
    write_file_atomic(out + "/recording_report.json", j.str() + "\n");
    written.push_back("recording_report.json");

    // ---- sorting_report.md ----
    std::ostringstream md;
    md << "# Sorting report: " << fs::path(source_path.empty() ? work_dir : source_path).filename().string() << "\n\n";
    md << "Work folder `" << fs::absolute(work_dir).lexically_normal().string() << "`, report made by " << opt.tool << " "
       << KS_VERSION << ". The machine-readable twin of this page is `recording_report.json` "
       << "(formats/report.md).\n\n";
    md << "## Recording\n\n";
    md << "| | |\n|---|---|\n";
    md << "| file | `" << source_path << "` |\n";
    md << "| data type, rows | " << source_dtype << ", " << fmt_int(n_chan_bin) << " |\n";
    md << "| channels sorted | " << info.n_channels << " on " << probe.n_shanks() << " shank" << (probe.n_shanks() == 1 ? "" : "s") << " |\n";
    md << "| sample rate | " << fmt(info.fs, 0) << " Hz |\n";
    md << "| sorted range | samples " << info.imin << " to " << info.imin + info.n_samples << " (" << fmt(duration_s, 1) << " s) |\n";
    md << "| µV per bit | " << (std::isfinite(uv_per_bit) ? fmt(uv_per_bit, 4) : "unknown (amplitudes in recording units)") << " |\n\n";

    md << "## Settings that differ from the defaults\n\n";
    if (changed.empty()) {
        md << "None: every setting has its Kilosort4 default.\n\n";
    } else {
        md << "| setting | value | default |\n|---|---|---|\n";
        const Settings defaults;
        for (const auto& [name, v] : changed)
            md << "| " << name << " | " << v << " | "
               << Settings::value_to_string(*Settings::find(name), defaults.value(name)) << " |\n";
        md << "\n";
    }

    md << "## Timings\n\n| stage | tool | wall (s) | CPU (s) | peak memory (MiB) | finished |\n|---|---|---|---|---|---|\n";
    for (const auto& t : timings)
        md << "| " << t.stage << " | " << t.tool << " | " << fmt(t.wall_s, 2) << " | " << fmt(t.cpu_s, 2) << " | "
           << fmt(t.peak_rss_mib, 0) << " | " << t.finished << " |\n";
    md << "| **total** | | **" << fmt(total_wall, 2) << "** | | | |\n\n";
    md << "Recording length " << fmt(duration_s, 1) << " s: the stages above took "
       << (total_wall > 0 ? fmt(total_wall / duration_s, 3) + " s per second of recording" : std::string("–")) << ".\n\n";

    md << "## Drift\n\n";
    if (extras.count("drift")) {
        md << "Motion " << (drift_x.string("source").empty() ? "" : drift_x.string("source") + ", ") << "status "
           << drift_x.string("status") << "; largest shift " << fmt(drift_x.number("max_abs_shift_um"), 1) << " µm.\n\n";
        if (!drift_picture.empty()) md << "![drift map](" << drift_picture << ")\n\n";
    } else {
        md << "No drift record.\n\n";
    }

    md << "## Units\n\n| step | units |\n|---|---|\n";
    md << "| spikes detected (universal templates) | " << fmt_int(detect_x.number("n_spikes")) << " spikes |\n";
    md << "| first-pass clusters (templates learned) | " << fmt_int(first_pass_units) << " |\n";
    md << "| spikes matched | " << fmt_int(match_x.number("n_spikes")) << " spikes |\n";
    md << "| final units | " << K << " (" << fmt_int(final_spikes) << " spikes) |\n";
    md << "| Kilosort4 label good / mua | " << n_ks_good << " / " << n_ks_mua << " |\n";
    md << "| merged by curation (duplicates) | " << n_merged << " |\n";
    md << "| removed by the curation criteria | " << n_fail << " |\n";
    for (const auto& [by, n] : removed_by) md << "| &nbsp;&nbsp;by " << by << " | " << n << " |\n";
    md << "| kept by curation | " << n_pass << " |\n";
    md << "| **good** (label good and kept) | **" << n_good << "** |\n\n";
    md << "Why each unit was removed or merged, with the value and threshold that decided it: `"
       << fs::absolute(cdir).lexically_normal().string() << "/curation.json`.\n\n";

    md << "## Distributions\n\n![firing rate, amplitude, contamination and SNR](distributions.png)\n\n";
    md << "## Footprints of the good units\n\n";
    md << "Mean filtered waveform on the unit's " << nch << " nearest channels, each drawn at its contact's position "
       << "on the probe (peak channel in red; the bar is in " << amp_unit << ").\n\n";
    md << "![footprints](footprints.png)\n\n";
    if (pictured.size() < good_units.size())
        md << good_units.size() - pictured.size() << " good units have no picture of their own (max_unit_pictures = "
           << opt.max_unit_pictures << ").\n\n";

    md << "## Per-unit table\n\n";
    md << "| unit | label | curation | spikes | rate (Hz) | presence | ISI viol. | contam. (%) | amplitude | SNR | std_norm | "
          "peak ch | x (µm) | y (µm) | picture |\n";
    md << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (int k = 0; k < K; ++k) {
        md << "| " << mt.id[k] << " | " << mt.ks_label[k] << " | " << mt.curated[k] << " | " << fmt_int(mt.get(k, "n_spikes"))
           << " | " << fmt(mt.get(k, "firing_rate_hz"), 2) << " | " << fmt(mt.get(k, "presence_ratio"), 2) << " | "
           << fmt(mt.get(k, "isi_violations_ratio"), 3) << " | " << fmt(mt.get(k, "contam_pct"), 1) << " | "
           << fmt(mt.get(k, "amplitude_median"), 1) << " | " << fmt(mt.get(k, "snr"), 1) << " | " << fmt(mt.get(k, "std_norm"), 2)
           << " | " << fmt_int(mt.get(k, "peak_channel")) << " | " << fmt(mt.get(k, "x_um"), 0) << " | "
           << fmt(mt.get(k, "y_um"), 0) << " | ";
        if (std::binary_search(pictured.begin(), pictured.end(), k))
            md << "[png](units/unit_" << mt.id[k] << ".png)";
        md << " |\n";
    }
    write_file_atomic(out + "/sorting_report.md", md.str());
    written.push_back("sorting_report.md");

    // The record, last.
    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "report";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json.empty() ? "{}" : opt.settings_json;
    prov.inputs = {file_identity(fdir + "/final.json"), file_identity(cdir + "/curate.json"),
                   file_identity(work_dir + "/filter/filter.json"), file_identity(work_dir + "/probe.json")};
    for (const auto& w : written) prov.outputs.push_back(file_identity(out + "/" + w));
    JsonWriter x(0);
    x.begin_object();
    x.key("format").value("ks-report").key("version").value(1);
    x.key("n_units").value(K).key("n_good").value(n_good).key("n_unit_pictures").value(static_cast<int64_t>(pictured.size()));
    x.end_object();
    prov.extra_json = x.str();
    write_provenance(out + "/report.json", prov);
    log::info("report: %d units, %d good, %zu unit pictures in %s/ (sorting_report.md)", K, n_good, pictured.size(), out.c_str());
    return {K, n_good, static_cast<int>(pictured.size()), out};
}

}  // namespace ks::report
