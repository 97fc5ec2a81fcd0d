// ks-match-sessions: inputs, outputs and the picture. The matching itself is session_match.cpp.
#include "ks/stages/match_sessions.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <sstream>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/device.hpp"
#include "ks/json.hpp"
#include "ks/kernels/filter.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/plot.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"
#include "ks/recording.hpp"
#include "ks/settings.hpp"

namespace ks::match_sessions {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Loaded {
    sessions::Input in;
    std::vector<std::string> session_name;   // per session
    std::vector<int> source_unit;            // per unit: its id in its session
    std::vector<FileIdentity> inputs;
    std::string amplitude_unit = "uV";
};

std::vector<std::string> read_tsv_column(const std::string& path, const std::string& column, std::vector<int>* ids) {
    std::istringstream in(read_text_file(path));
    std::string line;
    std::vector<std::string> out;
    if (!std::getline(in, line)) throw Error(Exit::usage, path + ": empty");
    auto split = [](const std::string& l) {
        std::vector<std::string> f;
        std::string cur;
        for (char c : l) {
            if (c == '\t') f.push_back(cur), cur.clear();
            else if (c != '\r') cur += c;
        }
        f.push_back(cur);
        return f;
    };
    const auto head = split(line);
    const auto it = std::find(head.begin(), head.end(), column);
    if (it == head.end()) throw Error(Exit::usage, path + ": no column " + column);
    const size_t col = static_cast<size_t>(it - head.begin());
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        const auto f = split(line);
        if (f.size() <= col) throw Error(Exit::usage, path + ": a row with fewer fields than the header");
        ids->push_back(std::atoi(f[0].c_str()));
        out.push_back(f[col]);
    }
    return out;
}

// Every session must have session 1's channels at the same positions.
void check_geometry(const std::vector<double>& xc, const std::vector<double>& yc, const std::string& what, Loaded* L) {
    const int C = static_cast<int>(xc.size());
    if (L->session_name.empty()) {
        L->in.xc = xc;
        L->in.yc = yc;
        L->in.nt = 61;
        return;
    }
    if (static_cast<int>(L->in.xc.size()) != C)
        throw Error(Exit::usage, what + ": " + std::to_string(C) + " channels, but session 1 (" + L->session_name[0] + ") has " +
                                     std::to_string(L->in.xc.size()) + "; sessions must come from the same probe");
    for (int c = 0; c < C; ++c)
        if (std::fabs(xc[c] - L->in.xc[c]) > 1e-3 || std::fabs(yc[c] - L->in.yc[c]) > 1e-3)
            throw Error(Exit::usage, what + ": channel " + std::to_string(c) +
                                         " is elsewhere than in session 1's probe; sessions must come from the same probe");
}

// One ks-tools work folder: the final units (good ones by default), their spike times, and their mean
// filtered waveform on every channel from up to max_spikes spikes spread over the recording.
void load_work_folder(const std::string& dir, int session, const RunOptions& opt, Loaded* L) {
    const std::string fdir = dir + "/final";
    verify_stage_record(fdir, "final", "ks-clusters", 1, "run ks-cluster --work " + dir + " --final", "final");
    const Probe probe = Probe::load(dir + "/probe.json");
    const int C = probe.n_chan();
    check_geometry(probe.xc, probe.yc, dir + "/probe.json", L);
    const FilteredRecording rec(dir);
    const FilteredInfo& info = rec.info();
    if (info.n_channels != C)
        throw Error(Exit::usage, dir + ": filter/filtered.json has " + std::to_string(info.n_channels) + " channels, probe.json " +
                                     std::to_string(C) + "; rerun the sorting");
    double uvpb = kNaN;
    {
        simdjson::dom::parser parser;
        simdjson::padded_string text;
        simdjson::dom::element root;
        double v = 0;
        if (!simdjson::padded_string::load(dir + "/filter/filtered.json").get(text) && !parser.parse(text).get(root) &&
            !root["uv_per_bit"].get_double().get(v))
            uvpb = v;
    }
    if (std::isnan(uvpb)) L->amplitude_unit = "recording units";

    // Which units: Kilosort4's good label, and ks-curate's verdict when it ran.
    std::vector<int> ids;
    const std::vector<std::string> ks_label = read_tsv_column(fdir + "/cluster_KSLabel.tsv", "KSLabel", &ids);
    std::map<int, std::string> curated;
    if (fs::exists(dir + "/curate/curate.json")) {
        verify_stage_record(dir + "/curate", "curate", "ks-curation", 1, "rerun ks-curate --work " + dir);
        std::vector<int> cid;
        const auto v = read_tsv_column(dir + "/curate/metrics.tsv", "curated", &cid);
        for (size_t k = 0; k < cid.size(); ++k) curated[cid[k]] = v[k];
    }
    std::vector<int> chosen;
    for (size_t k = 0; k < ids.size(); ++k) {
        const bool pass = !curated.count(ids[k]) || curated[ids[k]] == "pass";
        if (opt.units == "all" ? curated[ids[k]] != "merged" : (ks_label[k] == "good" && pass)) chosen.push_back(ids[k]);
    }
    if (chosen.empty())
        throw Error(Exit::usage, dir + ": no " + (opt.units == "all" ? std::string("") : "good ") +
                                     "units to match (session " + std::to_string(session + 1) + ")" +
                                     (opt.units == "all" ? "" : "; --units all takes every unit"));
    const std::vector<int64_t> t = read_npy_checked(fdir + "/spike_times.npy", Dtype::int64, 1).as<int64_t>();
    const std::vector<int32_t> clu = read_npy_checked(fdir + "/spike_clusters.npy", Dtype::int32, 1).as<int32_t>();
    if (t.size() != clu.size()) throw Error(Exit::usage, fdir + ": spike_times.npy and spike_clusters.npy differ in length; rerun ks-cluster --final");
    std::map<int, int> local;   // unit id -> index among chosen
    for (size_t k = 0; k < chosen.size(); ++k) local[chosen[k]] = static_cast<int>(k);
    const int U = static_cast<int>(chosen.size()), nt = L->in.nt, nt0min = 20;
    std::vector<std::vector<int64_t>> times(U);
    for (size_t i = 0; i < t.size(); ++i) {
        const auto it = local.find(clu[i]);
        if (it != local.end()) times[it->second].push_back(t[i]);
    }
    // Spikes for the mean waveforms: evenly spaced through each unit's train, whole windows only.
    std::vector<std::pair<int64_t, int>> use;
    for (int u = 0; u < U; ++u) {
        std::vector<int64_t> ok;
        for (int64_t s : times[u])
            if (s - nt0min >= 0 && s - nt0min + nt <= info.n_samples) ok.push_back(s);
        const size_t m = std::min<size_t>(ok.size(), static_cast<size_t>(opt.max_spikes_per_unit));
        for (size_t k = 0; k < m; ++k) use.emplace_back(ok[k * ok.size() / m], u);
    }
    std::sort(use.begin(), use.end());
    std::vector<double> sum(static_cast<size_t>(U) * C * nt, 0.0);
    std::vector<int> count(U, 0);
    {
        constexpr int64_t kChunk = 1 << 16;
        std::vector<float> x;
        size_t i = 0;
        Progress progress(opt.progress, "waveforms of " + dir, info.n_samples, "samples");
        for (int64_t s0 = 0; s0 < info.n_samples && i < use.size(); s0 += kChunk) {
            const int64_t s1 = std::min(info.n_samples, s0 + kChunk), b0 = s0 - nt, len = s1 - s0 + 2 * nt;
            x.resize(static_cast<size_t>(C) * len);
            rec.read(b0, len, x.data());
            for (; i < use.size() && use[i].first < s1; ++i) {
                const int u = use[i].second;
                ++count[u];
                const int64_t o = use[i].first - nt0min - b0;
                for (int c = 0; c < C; ++c)
                    for (int tau = 0; tau < nt; ++tau)
                        sum[(static_cast<size_t>(u) * C + c) * nt + tau] += x[static_cast<size_t>(c) * len + o + tau];
            }
            progress.advance(s1 - s0);
        }
        progress.finish();
    }
    const double to_uv = std::isnan(uvpb) ? 1.0 : uvpb;
    for (int u = 0; u < U; ++u) {
        for (size_t q = 0; q < static_cast<size_t>(C) * nt; ++q)
            L->in.waveform.push_back(count[u] ? static_cast<float>(sum[static_cast<size_t>(u) * C * nt + q] / count[u] * to_uv) : 0.0f);
        std::vector<double> ms(times[u].size());
        for (size_t k = 0; k < ms.size(); ++k) ms[k] = (times[u][k] + info.imin) * 1000.0 / info.fs;
        L->in.spike_ms.push_back(std::move(ms));
        L->in.session.push_back(session);
        L->source_unit.push_back(chosen[u]);
    }
    L->session_name.push_back(dir);
    for (const char* f : {"/final/final.json", "/filter/filter.json", "/probe.json"}) L->inputs.push_back(file_identity(dir + f));
}

// The few params.py fields a Phy folder needs: `key = value` lines, value a quoted string (or a
// list of them: the first), a number, True or False.
std::map<std::string, std::string> read_params_py(const std::string& path) {
    std::istringstream in(read_text_file(path));
    std::map<std::string, std::string> out;
    std::string line;
    while (std::getline(in, line)) {
        const size_t eq = line.find('=');
        if (eq == std::string::npos || line[0] == '#') continue;
        auto trim = [](std::string v) {
            const size_t a = v.find_first_not_of(" \t\r"), b = v.find_last_not_of(" \t\r");
            return a == std::string::npos ? std::string() : v.substr(a, b - a + 1);
        };
        const std::string key = trim(line.substr(0, eq));
        std::string v = trim(line.substr(eq + 1));
        const size_t q = v.find_first_of("'\"");
        if (q != std::string::npos) {
            const size_t e = v.find(v[q], q + 1);
            if (e == std::string::npos) throw Error(Exit::usage, path + ": unterminated string for " + key);
            v = v.substr(q + 1, e - q - 1);
        }
        out[key] = v;
    }
    return out;
}

// A Phy folder (Kilosort's or ks-phy's) plus the recording params.py names: the units labelled good
// in cluster_group.tsv (else cluster_KSLabel.tsv), their spike times, and mean waveforms from the
// raw recording high-passed (Kilosort4's 300-Hz filter) and median-referenced here.
void load_phy_folder(const std::string& dir, int session, const RunOptions& opt, Loaded* L) {
    const auto params = read_params_py(dir + "/params.py");
    for (const char* k : {"dat_path", "n_channels_dat", "dtype", "sample_rate"})
        if (!params.count(k)) throw Error(Exit::usage, dir + "/params.py: no " + std::string(k));
    {   // several files sorted as one: read that sorting's work folder instead
        const std::string text = read_text_file(dir + "/params.py");
        const size_t at = text.find("dat_path");
        const std::string line = at == std::string::npos ? "" : text.substr(at, text.find('\n', at) - at);
        if (std::count(line.begin(), line.end(), ',') > 0)
            throw Error(Exit::usage, dir + "/params.py: dat_path lists several files; give the ks-tools work folder of this "
                                         "sorting instead of its Phy folder");
    }
    std::string dat = params.at("dat_path");
    if (!dat.empty() && dat[0] != '/') dat = dir + "/" + dat;
    if (params.count("offset") && std::atof(params.at("offset").c_str()) != 0)
        throw Error(Exit::usage, dir + "/params.py: offset " + params.at("offset") + " (a file header) is not supported");
    const double fs = std::atof(params.at("sample_rate").c_str());
    const std::vector<int64_t> cmap = read_npy(dir + "/channel_map.npy").as<int64_t>();
    const NpyArray pos = read_npy(dir + "/channel_positions.npy");
    if (pos.shape.size() != 2 || pos.shape[1] != 2 || pos.shape[0] != static_cast<int64_t>(cmap.size()))
        throw Error(Exit::usage, dir + "/channel_positions.npy: expected (" + std::to_string(cmap.size()) + ", 2)");
    const std::vector<double> xy = pos.as<double>();
    Probe probe;
    probe.name = dir + "/channel_map.npy";
    for (size_t c = 0; c < cmap.size(); ++c) {
        probe.chanMap.push_back(static_cast<int>(cmap[c]));
        probe.xc.push_back(xy[2 * c]);
        probe.yc.push_back(xy[2 * c + 1]);
        probe.kcoords.push_back(0);
    }
    if (fs::exists(dir + "/channel_shanks.npy")) {
        const std::vector<int64_t> sh = read_npy(dir + "/channel_shanks.npy").as<int64_t>();
        if (sh.size() == cmap.size())
            for (size_t c = 0; c < sh.size(); ++c) probe.kcoords[c] = static_cast<int>(sh[c]);
    }
    check_geometry(probe.xc, probe.yc, dir, L);
    const int C = probe.n_chan(), nt = L->in.nt, nt0min = 20;
    Settings set;
    set.set_from_string("n_chan_bin=" + params.at("n_channels_dat"));
    set.set_from_string("fs=" + params.at("sample_rate"));
    set.set_from_string("data_dtype=" + std::string(dtype_name(parse_dtype(params.at("dtype"), dir + "/params.py dtype"))));
    const Recording rec(dat, set, probe);
    const int64_t T = rec.n_samples();

    // Units: good ones (cluster_group.tsv, phy's curation, wins over cluster_KSLabel.tsv).
    std::vector<int64_t> t = read_npy(dir + "/spike_times.npy").as<int64_t>();
    const std::string cfile = fs::exists(dir + "/spike_clusters.npy") ? "/spike_clusters.npy" : "/spike_templates.npy";
    const std::vector<int64_t> clu = read_npy(dir + cfile).as<int64_t>();
    if (t.size() != clu.size()) throw Error(Exit::usage, dir + ": spike_times.npy and " + cfile.substr(1) + " differ in length");
    std::map<int, std::string> label;
    // cluster_group.tsv: phy's `group` column once saved; Kilosort4 writes it with a KSLabel header.
    for (const char* file : {"/cluster_group.tsv", "/cluster_KSLabel.tsv"})
        if (label.empty() && fs::exists(dir + file)) {
            const std::string head = read_text_file(dir + file).substr(0, 200);
            const std::string col = head.find("\tgroup") != std::string::npos ? "group" : "KSLabel";
            std::vector<int> ids;
            const auto v = read_tsv_column(dir + file, col, &ids);
            for (size_t k = 0; k < ids.size(); ++k) label[ids[k]] = v[k];
        }
    std::map<int, int> local;
    std::vector<int> chosen;
    {
        std::vector<int64_t> all(clu);
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        for (int64_t k : all) {
            const auto it = label.find(static_cast<int>(k));
            const std::string l = it == label.end() ? "" : it->second;
            if (opt.units == "all" ? l != "noise" : l == "good") {
                local[static_cast<int>(k)] = static_cast<int>(chosen.size());
                chosen.push_back(static_cast<int>(k));
            }
        }
    }
    if (chosen.empty())
        throw Error(Exit::usage, dir + ": no " + (opt.units == "all" ? std::string("") : "good ") + "units to match (session " +
                                     std::to_string(session + 1) + ")" + (opt.units == "all" ? "" : "; --units all takes every unit"));
    const int U = static_cast<int>(chosen.size());
    std::vector<std::vector<int64_t>> times(U);
    for (size_t i = 0; i < t.size(); ++i) {
        const auto it = local.find(static_cast<int>(clu[i]));
        if (it != local.end()) times[it->second].push_back(t[i]);
    }
    std::vector<std::pair<int64_t, int>> use;
    for (int u = 0; u < U; ++u) {
        std::sort(times[u].begin(), times[u].end());
        std::vector<int64_t> ok;
        for (int64_t x : times[u])
            if (x - nt0min >= 0 && x - nt0min + nt <= T) ok.push_back(x);
        const size_t m = std::min<size_t>(ok.size(), static_cast<size_t>(opt.max_spikes_per_unit));
        for (size_t k = 0; k < m; ++k) use.emplace_back(ok[k * ok.size() / m], u);
    }
    std::sort(use.begin(), use.end());
    const kernels::HighpassDesign hp = kernels::design_highpass(fs, 300);
    std::vector<int> rows(C), offsets, chans;
    std::iota(rows.begin(), rows.end(), 0);
    {
        std::map<int, std::vector<int>> by_shank;
        for (int c = 0; c < C; ++c) by_shank[probe.kcoords[c]].push_back(c);
        offsets.push_back(0);
        for (auto& [k, v] : by_shank) {
            chans.insert(chans.end(), v.begin(), v.end());
            offsets.push_back(static_cast<int>(chans.size()));
        }
    }
    const Device dev = Device::open("cpu");
    std::vector<double> sum(static_cast<size_t>(U) * C * nt, 0.0);
    std::vector<int> count(U, 0);
    constexpr int64_t kChunk = 1 << 16;
    std::vector<float> chmajor, raw, x;
    size_t i = 0;
    Progress progress(opt.progress, "waveforms of " + dir, T, "samples");
    for (int64_t s0 = 0; s0 < T && i < use.size(); s0 += kChunk) {
        const int64_t s1 = std::min(T, s0 + kChunk);
        if (use[i].first >= s1) {
            progress.advance(s1 - s0);
            continue;
        }
        const int64_t f0 = std::max<int64_t>(0, s0 - nt), f1 = std::min(T, s1 + nt);
        const kernels::SampleRange need = kernels::raw_range(hp, f0, f1, T);
        const int64_t rn = need.end - need.begin;
        chmajor.resize(static_cast<size_t>(C) * rn);
        rec.read(need.begin, rn, chmajor.data());
        raw.resize(chmajor.size());
        for (int c = 0; c < C; ++c)
            for (int64_t k = 0; k < rn; ++k) raw[static_cast<size_t>(k) * C + c] = chmajor[static_cast<size_t>(c) * rn + k];
        x.resize(static_cast<size_t>(f1 - f0) * C);
        kernels::FilterArgs a;
        a.dtype = Dtype::float32;
        a.raw = raw.data();
        a.raw_t0 = need.begin;
        a.raw_n = rn;
        a.row_stride = C;
        a.rows = rows.data();
        a.n_chan = C;
        a.hp = &hp;
        a.n_samples = T;
        a.t0 = f0;
        a.t1 = f1;
        a.reference = kernels::Reference::median;
        a.groups.offsets = offsets.data();
        a.groups.channels = chans.data();
        a.groups.n_groups = static_cast<int>(offsets.size()) - 1;
        a.out = x.data();
        kernels::filter_samples(dev, a);
        for (; i < use.size() && use[i].first < s1; ++i) {
            const int u = use[i].second;
            ++count[u];
            const int64_t o = use[i].first - nt0min - f0;
            for (int c = 0; c < C; ++c)
                for (int tau = 0; tau < nt; ++tau)
                    sum[(static_cast<size_t>(u) * C + c) * nt + tau] += x[static_cast<size_t>(o + tau) * C + c];
        }
        progress.advance(s1 - s0);
    }
    progress.finish();
    L->amplitude_unit = "recording units";
    for (int u = 0; u < U; ++u) {
        for (size_t q = 0; q < static_cast<size_t>(C) * nt; ++q)
            L->in.waveform.push_back(count[u] ? static_cast<float>(sum[static_cast<size_t>(u) * C * nt + q] / count[u]) : 0.0f);
        std::vector<double> ms(times[u].size());
        for (size_t k = 0; k < ms.size(); ++k) ms[k] = times[u][k] * 1000.0 / fs;
        L->in.spike_ms.push_back(std::move(ms));
        L->in.session.push_back(session);
        L->source_unit.push_back(chosen[u]);
    }
    L->session_name.push_back(dir);
    for (const char* f : {"/params.py", "/spike_times.npy", "/channel_positions.npy"}) L->inputs.push_back(file_identity(dir + f));
    L->inputs.push_back(file_identity(dat));
}

// pyKilomatch's input folder: channel_locations.npy, waveform_all.npy (µV), session_index.npy (from 1),
// optional peth.npy, spike_times/Unit<k>.npy (ms).
void load_kilomatch(const std::string& dir, Loaded* L) {
    const NpyArray loc = read_npy(dir + "/channel_locations.npy");
    if (loc.shape.size() != 2 || loc.shape[1] != 2)
        throw Error(Exit::usage, dir + "/channel_locations.npy: expected (n_channel, 2) positions in µm");
    const std::vector<double> xy = loc.as<double>();
    const int C = static_cast<int>(loc.shape[0]);
    for (int c = 0; c < C; ++c) {
        L->in.xc.push_back(xy[2 * c]);
        L->in.yc.push_back(xy[2 * c + 1]);
    }
    const NpyArray wa = read_npy(dir + "/waveform_all.npy");
    if (wa.shape.size() != 3 || wa.shape[1] != C)
        throw Error(Exit::usage, dir + "/waveform_all.npy: expected (n_unit, " + std::to_string(C) + ", n_sample)");
    const int n = static_cast<int>(wa.shape[0]);
    L->in.nt = static_cast<int>(wa.shape[2]);
    L->in.waveform = wa.as<float>();
    const NpyArray si = read_npy(dir + "/session_index.npy");
    if (si.size() != n) throw Error(Exit::usage, dir + "/session_index.npy: " + std::to_string(si.size()) + " values for " + std::to_string(n) + " units");
    const std::vector<int64_t> s = si.as<int64_t>();
    const int S = static_cast<int>(*std::max_element(s.begin(), s.end()));
    std::vector<int> per(S + 1, 0);
    for (int64_t v : s) {
        if (v < 1) throw Error(Exit::usage, dir + "/session_index.npy: sessions are numbered from 1 (found " + std::to_string(v) + ")");
        ++per[v];
    }
    for (int k = 1; k <= S; ++k)
        if (per[k] == 0) throw Error(Exit::usage, dir + "/session_index.npy: session " + std::to_string(k) + " has no units (sessions must be 1..N without gaps)");
    for (int u = 0; u < n; ++u) {
        L->in.session.push_back(static_cast<int>(s[u]) - 1);
        const std::string f = dir + "/spike_times/Unit" + std::to_string(u) + ".npy";
        if (!fs::exists(f)) throw Error(Exit::usage, f + ": missing (spike_times/Unit0.npy ... Unit" + std::to_string(n - 1) + ".npy, in ms)");
        std::vector<double> ms = read_npy(f).as<double>();
        std::sort(ms.begin(), ms.end());
        L->in.spike_ms.push_back(std::move(ms));
    }
    std::vector<int> seen(S, 0);
    for (int u = 0; u < n; ++u) L->source_unit.push_back(seen[L->in.session[u]]++);
    for (int k = 1; k <= S; ++k) L->session_name.push_back("session " + std::to_string(k));
    if (fs::exists(dir + "/peth.npy")) {
        const NpyArray pe = read_npy(dir + "/peth.npy");
        if (pe.shape.size() != 2 || pe.shape[0] != n) throw Error(Exit::usage, dir + "/peth.npy: expected (" + std::to_string(n) + ", n_point)");
        L->in.peth = pe.as<double>();
        L->in.n_peth = static_cast<int>(pe.shape[1]);
    }
    for (const char* f : {"/channel_locations.npy", "/waveform_all.npy", "/session_index.npy"}) L->inputs.push_back(file_identity(dir + f));
}

// The picture: units by corrected depth across sessions, each tracked identity a coloured line, and
// the estimated probe motion per session.
void draw(const std::string& path, const Loaded& L, const sessions::Result& r) {
    using plot::Canvas;
    const int S = L.in.n_sessions(), n = L.in.n_units();
    Canvas cv(1000, 640, plot::kWhite);
    const int ax0 = 70, ax1 = 680, ay0 = 40, ay1 = 590, bx0 = 760, bx1 = 980;
    // The probe's extent (plus the motion) on the depth axis; units beyond it are drawn at its edge.
    double lo = *std::min_element(L.in.yc.begin(), L.in.yc.end()), hi = *std::max_element(L.in.yc.begin(), L.in.yc.end());
    lo -= 20 + std::max(0.0, *std::max_element(r.motion.begin(), r.motion.end()));
    hi += 20 - std::min(0.0, *std::min_element(r.motion.begin(), r.motion.end()));
    std::vector<double> yc(n);
    for (int u = 0; u < n; ++u) yc[u] = std::clamp(r.location[static_cast<size_t>(u) * 3 + 1] - r.motion[L.in.session[u]], lo, hi);
    const plot::Axis X{-0.5, S - 0.5, double(ax0), double(ax1)}, Y{lo, hi, double(ay1), double(ay0)};
    cv.text((ax0 + ax1) / 2, 8, "units by depth (motion-corrected); lines: the same neuron", plot::kBlack, 1, plot::Align::centre);
    cv.rect(ax0, ay0, ax1 - ax0 + 1, ay1 - ay0 + 1, plot::Rgb{150, 150, 150});
    static const plot::Rgb pal[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
                                    {140, 86, 75},  {227, 119, 194}, {23, 190, 207}, {188, 189, 34}};
    std::vector<std::vector<int>> ident(r.n_clusters + 1);
    for (int u = 0; u < n; ++u)
        if (r.idx_cluster[u] > 0) ident[r.idx_cluster[u]].push_back(u);
    for (int k = 1; k <= r.n_clusters; ++k) {
        auto& m = ident[k];
        std::sort(m.begin(), m.end(), [&](int a, int b) { return L.in.session[a] < L.in.session[b]; });
        for (size_t q = 1; q < m.size(); ++q)
            cv.line(X.to_pixel(L.in.session[m[q - 1]]), Y.to_pixel(yc[m[q - 1]]), X.to_pixel(L.in.session[m[q]]), Y.to_pixel(yc[m[q]]),
                    pal[k % 9]);
    }
    for (int u = 0; u < n; ++u) {
        if (!std::isfinite(yc[u])) continue;
        const int px = static_cast<int>(std::lround(X.to_pixel(L.in.session[u]))), py = static_cast<int>(std::lround(Y.to_pixel(yc[u])));
        cv.fill_rect(px - 2, py - 2, 5, 5, r.idx_cluster[u] > 0 ? pal[r.idx_cluster[u] % 9] : plot::Rgb{170, 170, 170});
    }
    for (int s = 0; s < S; ++s) {
        const int px = static_cast<int>(std::lround(X.to_pixel(s)));
        cv.text(px, ay1 + 6, std::to_string(s + 1), plot::kBlack, 1, plot::Align::centre);
    }
    cv.text((ax0 + ax1) / 2, ay1 + 22, "session", plot::kBlack, 1, plot::Align::centre);
    for (const auto& t : plot::axis_ticks(Y, 10)) {
        const int y = static_cast<int>(std::lround(t.pixel));
        cv.line(ax0 - 3, y, ax0, y, plot::kBlack);
        cv.text(ax0 - 5, y - 3, t.label, plot::kBlack, 1, plot::Align::right);
    }
    cv.text(8, (ay0 + ay1) / 2, "depth (µm)", plot::kBlack, 1, plot::Align::centre, true);
    // Motion panel.
    double mlo = 0, mhi = 0;
    for (double m : r.motion) mlo = std::min(mlo, m), mhi = std::max(mhi, m);
    mlo -= 5;
    mhi += 5;
    const plot::Axis MX{-0.5, S - 0.5, double(bx0), double(bx1)}, MY{mlo, mhi, double(ay1), double(ay0)};
    cv.text((bx0 + bx1) / 2, 8, "probe position (µm)", plot::kBlack, 1, plot::Align::centre);
    cv.rect(bx0, ay0, bx1 - bx0 + 1, ay1 - ay0 + 1, plot::Rgb{150, 150, 150});
    std::vector<double> px(S), py(S);
    for (int s = 0; s < S; ++s) px[s] = MX.to_pixel(s), py[s] = MY.to_pixel(r.motion[s]);
    cv.polyline(px, py, pal[0], 2);
    for (int s = 0; s < S; ++s) {
        cv.fill_rect(static_cast<int>(px[s]) - 2, static_cast<int>(py[s]) - 2, 5, 5, pal[3]);
        cv.text(static_cast<int>(px[s]), ay1 + 6, std::to_string(s + 1), plot::kBlack, 1, plot::Align::centre);
    }
    for (const auto& t : plot::axis_ticks(MY, 8)) {
        const int y = static_cast<int>(std::lround(t.pixel));
        cv.line(bx0 - 3, y, bx0, y, plot::kBlack);
        cv.text(bx0 - 5, y - 3, t.label, plot::kBlack, 1, plot::Align::right);
    }
    cv.text((bx0 + bx1) / 2, ay1 + 22, "session", plot::kBlack, 1, plot::Align::centre);
    cv.write_png(path);
}

std::string num(double v) {
    if (!std::isfinite(v)) return "nan";
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", v);
    return b;
}

}  // namespace

Summary run(const RunOptions& opt) {
    if (opt.out_dir.empty()) throw Error(Exit::usage, "--out DIR is required");
    if (opt.units != "good" && opt.units != "all") throw Error(Exit::usage, "--units " + opt.units + ": expected good or all");
    Loaded L;
    if (!opt.kilomatch_dir.empty()) {
        if (!opt.sessions.empty()) throw Error(Exit::usage, "give either work folders or --kilomatch DIR, not both");
        load_kilomatch(opt.kilomatch_dir, &L);
    } else {
        if (opt.sessions.size() < 2) throw Error(Exit::usage, "give at least two sessions (ks-tools work folders), or --kilomatch DIR");
        for (size_t s = 0; s < opt.sessions.size(); ++s) {
            const std::string& d = opt.sessions[s];
            if (fs::exists(d + "/final") || fs::exists(d + "/run.json")) load_work_folder(d, static_cast<int>(s), opt, &L);
            else if (fs::exists(d + "/params.py")) load_phy_folder(d, static_cast<int>(s), opt, &L);
            else throw Error(Exit::usage, d + ": neither a ks-tools work folder (final/) nor a Phy folder (params.py)");
        }
    }
    const int n = L.in.n_units(), S = L.in.n_sessions();
    if (S < 2) throw Error(Exit::usage, "only one session: nothing to match");
    log::info("matching %d units of %d sessions", n, S);
    const sessions::Result r = sessions::match(L.in, opt.params);

    const std::string out = opt.out_dir;
    fs::create_directories(out);
    remove_stale_output(out + "/match-sessions.json");
    std::vector<std::string> written;
    auto npy = [&](const std::string& name, const std::vector<int64_t>& shape, const auto* data) {
        write_npy(out + "/" + name, shape, data);
        written.push_back(name);
    };
    const int nn = static_cast<int>(r.waveform_channels.size() / std::max(1, n)), nt = L.in.nt;
    std::vector<int32_t> idx(r.idx_cluster.begin(), r.idx_cluster.end());
    npy("IdxCluster.npy", {n}, idx.data());
    {
        std::vector<uint8_t> cm(static_cast<size_t>(n) * n, 0);
        std::vector<int32_t> pairs;
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j)
                if (r.idx_cluster[i] > 0 && r.idx_cluster[i] == r.idx_cluster[j]) {
                    cm[static_cast<size_t>(i) * n + j] = 1;
                    if (i < j) pairs.push_back(i), pairs.push_back(j);
                }
        write_npy(out + "/ClusterMatrix.npy", Dtype::bool_, {n, n}, cm.data());
        written.push_back("ClusterMatrix.npy");
        npy("MatchedPairs.npy", {static_cast<int64_t>(pairs.size() / 2), 2}, pairs.data());
    }
    npy("SimilarityMatrix.npy", {n, n}, r.similarity.data());
    npy("SimilarityWeights.npy", {static_cast<int64_t>(r.weights.size())}, r.weights.data());
    npy("SimilarityThreshold.npy", {1}, &r.threshold);
    npy("motion.npy", {S}, r.motion.data());
    npy("locations.npy", {n, 3}, r.location.data());
    npy("waveforms.npy", {n, nn, nt}, r.waveforms.data());
    npy("waveforms_corrected.npy", {n, nn, nt}, r.waveforms_corrected.data());
    std::vector<int32_t> wch(r.waveform_channels.begin(), r.waveform_channels.end());
    npy("waveform_channels.npy", {n, nn}, wch.data());
    npy("auto_corr.npy", {n, 600}, r.auto_corr.data());
    npy("isi.npy", {n, 100}, r.isi.data());
    if (L.in.n_peth > 0) npy("peth.npy", {n, L.in.n_peth}, L.in.peth.data());
    else remove_stale_output(out + "/peth.npy");
    std::vector<int32_t> sidx(n);
    for (int u = 0; u < n; ++u) sidx[u] = L.in.session[u] + 1;
    npy("session_index.npy", {n}, sidx.data());

    // Readable tables: one row per unit, one per identity.
    {
        std::string t = "unit\tsession\tsource\tsource_unit\tidentity\tx_um\ty_um\ty_corrected_um\tpeak_channel\tn_spikes\n";
        for (int u = 0; u < n; ++u) {
            const int s = L.in.session[u];
            const double y = r.location[static_cast<size_t>(u) * 3 + 1];
            t += std::to_string(u) + "\t" + std::to_string(s + 1) + "\t" + L.session_name[s] + "\t" + std::to_string(L.source_unit[u]) + "\t" +
                 std::to_string(r.idx_cluster[u]) + "\t" + num(r.location[static_cast<size_t>(u) * 3]) + "\t" + num(y) + "\t" +
                 num(y - r.motion[s]) + "\t" + std::to_string(r.peak_channel[u]) + "\t" + std::to_string(L.in.spike_ms[u].size()) + "\n";
        }
        write_file_atomic(out + "/units.tsv", t);
        written.push_back("units.tsv");
        std::string h = "identity\tn_sessions\tdepth_um";
        for (int s = 0; s < S; ++s) h += "\tsession_" + std::to_string(s + 1);
        h += "\n";
        std::vector<std::vector<int>> per(r.n_clusters + 1, std::vector<int>(S, -1));
        std::vector<double> depth(r.n_clusters + 1, 0.0);
        std::vector<int> cnt(r.n_clusters + 1, 0);
        for (int u = 0; u < n; ++u)
            if (r.idx_cluster[u] > 0) {
                per[r.idx_cluster[u]][L.in.session[u]] = L.source_unit[u];
                depth[r.idx_cluster[u]] += r.location[static_cast<size_t>(u) * 3 + 1] - r.motion[L.in.session[u]];
                ++cnt[r.idx_cluster[u]];
            }
        for (int k = 1; k <= r.n_clusters; ++k) {
            h += std::to_string(k) + "\t" + std::to_string(cnt[k]) + "\t" + num(depth[k] / cnt[k]);
            for (int s = 0; s < S; ++s) h += "\t" + (per[k][s] >= 0 ? std::to_string(per[k][s]) : std::string("-"));
            h += "\n";
        }
        write_file_atomic(out + "/identities.tsv", h);
        written.push_back("identities.tsv");
    }
    draw(out + "/tracking.png", L, r);
    written.push_back("tracking.png");

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "match-sessions";
    prov.command_line = opt.command_line;
    {
        JsonWriter s(0);
        s.begin_object();
        s.key("units").value(opt.units);
        s.key("max_spikes_per_unit").value(opt.max_spikes_per_unit);
        s.key("n_nearest_channels").value(opt.params.n_nearest_channels);
        s.key("n_location_channels").value(opt.params.n_location_channels);
        s.key("max_distance_um").value(opt.params.max_distance_um);
        s.key("max_shift_um").value(opt.params.max_shift_um);
        s.key("n_iter").value(opt.params.n_iter);
        s.key("n_motion_rounds").value(opt.params.n_motion_rounds);
        s.key("use_peth").value(opt.params.use_peth);
        s.end_object();
        prov.settings_json = s.str();
    }
    prov.inputs = L.inputs;
    for (const auto& w : written) prov.outputs.push_back(file_identity(out + "/" + w));
    JsonWriter x(0);
    x.begin_object();
    x.key("format").value("ks-session-matches").key("version").value(1);
    x.key("n_sessions").value(S).key("n_units").value(n).key("n_identities").value(r.n_clusters);
    int matched = 0;
    for (int v : r.idx_cluster) matched += v > 0;
    x.key("n_units_matched").value(matched);
    x.key("features").begin_array();
    for (const auto& f : r.features) x.value(f);
    x.end_array();
    x.key("weights").value(r.weights);
    x.key("threshold").value(r.threshold);
    x.key("motion_um").value(r.motion);
    x.key("n_candidate_pairs").value(r.n_candidate_pairs);
    x.key("n_removed_same_session").value(r.n_removed_same_session);
    x.key("n_left_by_split").value(r.n_removed_split);
    x.key("amplitude_unit").value(L.amplitude_unit);
    x.key("sessions").begin_array();
    for (const auto& s : L.session_name) x.value(s);
    x.end_array();
    x.end_object();
    prov.extra_json = x.str();
    write_provenance(out + "/match-sessions.json", prov);
    log::info("%d identities over %d sessions; %d of %d units matched; motion%s µm; results in %s/", r.n_clusters, S, matched, n,
              [&] {
                  std::string m;
                  for (double v : r.motion) m += " " + num(v);
                  return m;
              }().c_str(),
              out.c_str());
    return {n, S, r.n_clusters};
}

}  // namespace ks::match_sessions
