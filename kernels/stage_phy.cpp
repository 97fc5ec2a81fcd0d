// ks-phy: writes the Phy template-gui folder of a sorting. See stages/phy.hpp and formats/phy.md.
#include "ks/stages/phy.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"

namespace ks::phy {

namespace fs = std::filesystem;

namespace {

struct Source {
    std::string path, dtype;
    int64_t n_chan_bin = 0;
    struct File {
        std::string path;
        int64_t first_sample = 0, n_samples = 0;
    };
    std::vector<File> files;   // several files sorted as one (ks-filter --rec a --rec b); else empty
};

// The raw recording ks-filter read (filter/filtered.json "source").
Source read_source(const std::string& filtered_json) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    std::string_view path, dtype;
    int64_t n = 0;
    if (simdjson::padded_string::load(filtered_json).get(text) || parser.parse(text).get(root) ||
        root["source"]["path"].get_string().get(path) || root["source"]["dtype"].get_string().get(dtype) ||
        root["source"]["n_chan_bin"].get_int64().get(n))
        throw Error(Exit::usage, filtered_json + ": no source {path, dtype, n_chan_bin}; rerun ks-filter");
    Source src{std::string(path), std::string(dtype), n, {}};
    simdjson::dom::array files;
    if (!root["source"]["files"].get_array().get(files))
        for (simdjson::dom::element f : files) {
            std::string_view fp;
            Source::File file;
            if (f["path"].get_string().get(fp) || f["first_sample"].get_int64().get(file.first_sample) ||
                f["n_samples"].get_int64().get(file.n_samples))
                throw Error(Exit::usage, filtered_json + ": source.files entries need path, first_sample, n_samples; rerun ks-filter");
            file.path = std::string(fp);
            src.files.push_back(file);
        }
    return src;
}

std::string py_quote(const std::string& s) {
    std::string o = "'";
    for (char c : s) {
        if (c == '\\' || c == '\'') o += '\\';
        o += c;
    }
    return o + "'";
}

}  // namespace

Summary run(const std::string& work_dir, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string fdir = work_dir + "/final", mdir = work_dir + "/match";
    const std::string record = fdir + "/final.json";
    std::error_code ec;
    if (!fs::exists(record, ec))
        throw Error(Exit::usage, record + ": not found; run ks-cluster --work " + work_dir + " --final first");
    // Refuse a folder another version wrote, or one truncated or changed after its stage finished.
    verify_stage_record(fdir, "final", "ks-clusters", 1, "rerun ks-cluster --work " + work_dir + " --final", "final");
    verify_stage_record(work_dir + "/filter", "filter", "", 0, "rerun ks-filter");
    verify_stage_record(mdir, "match", "ks-matches", 1, "rerun ks-match --work " + work_dir);
    const Probe probe = Probe::load(work_dir + "/probe.json");
    const int C = probe.n_chan();
    const FilteredRecording rec(work_dir);
    const FilteredInfo info = rec.info();
    const Source src = read_source(work_dir + "/filter/filtered.json");

    // The units (final/) and the features they refer to (match/).
    const std::vector<int64_t> t = read_npy_checked(fdir + "/spike_times.npy", Dtype::int64, 1).as<int64_t>();
    const std::vector<int32_t> clu = read_npy_checked(fdir + "/spike_clusters.npy", Dtype::int32, 1).as<int32_t>();
    const std::vector<int32_t> stmpl = read_npy_checked(fdir + "/spike_templates.npy", Dtype::int32, 1).as<int32_t>();
    const std::vector<int64_t> midx = read_npy_checked(fdir + "/spike_match_index.npy", Dtype::int64, 1).as<int64_t>();
    const NpyArray wall_a = read_npy_checked(fdir + "/templates_pc.npy", Dtype::float32, 3);
    const NpyArray tmpl_a = read_npy_checked(fdir + "/templates.npy", Dtype::float32, 3);
    const NpyArray tch_a = read_npy_checked(mdir + "/template_chans.npy", Dtype::int32, 2);
    const auto N = static_cast<int64_t>(t.size());
    const int K = static_cast<int>(wall_a.shape[0]), P = static_cast<int>(wall_a.shape[2]);
    const int nC = static_cast<int>(tch_a.shape[1]), Km = static_cast<int>(tch_a.shape[0]);
    if (static_cast<int64_t>(clu.size()) != N || static_cast<int64_t>(stmpl.size()) != N ||
        static_cast<int64_t>(midx.size()) != N)
        throw Error(Exit::usage, fdir + ": the per-spike files disagree in length; rerun ks-cluster --final");
    if (wall_a.shape[1] != C || tmpl_a.shape[0] != K || tmpl_a.shape[2] != C)
        throw Error(Exit::usage, fdir + "/templates*.npy: shapes disagree with the probe or each other");
    const std::vector<float> wall = wall_a.as<float>();
    const std::vector<int32_t> tchans = tch_a.as<int32_t>();
    for (int64_t i = 0; i < N; ++i)
        if (clu[i] < 0 || clu[i] >= K || stmpl[i] < 0 || stmpl[i] >= Km)
            throw Error(Exit::usage, fdir + "/spike_clusters.npy or spike_templates.npy: an id out of range");

    // Each unit's feature channels: ranked by its template's energy, then by distance to its peak.
    std::vector<uint32_t> feat_ind(static_cast<size_t>(K) * nC);
    for (int k = 0; k < K; ++k) {
        std::vector<double> e(C, 0.0);
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < P; ++p) {
                const double v = wall[(static_cast<size_t>(k) * C + c) * P + p];
                e[c] += v * v;
            }
        const int peak = static_cast<int>(std::max_element(e.begin(), e.end()) - e.begin());
        std::vector<int> order(C);
        std::iota(order.begin(), order.end(), 0);
        auto d2 = [&](int c) {
            const double dx = probe.xc[c] - probe.xc[peak], dy = probe.yc[c] - probe.yc[peak];
            return dx * dx + dy * dy + (probe.kcoords[c] == probe.kcoords[peak] ? 0.0 : 1e18);
        };
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            if (e[a] != e[b]) return e[a] > e[b];
            return d2(a) < d2(b);
        });
        for (int j = 0; j < nC; ++j) feat_ind[static_cast<size_t>(k) * nC + j] = static_cast<uint32_t>(order[std::min(j, C - 1)]);
    }

    // Write everything into a fresh folder beside the target, then swap it in.
    const std::string out = opt.out_dir.empty() ? work_dir + "/phy" : opt.out_dir;
    const std::string tmp = out + ".partial-" + std::to_string(::getpid());
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw Error(Exit::resources, tmp + ": cannot create: " + ec.message());
    struct TmpRemover {
        std::string path;
        bool keep = false;
        ~TmpRemover() {
            std::error_code e;
            if (!keep) fs::remove_all(path, e);
        }
    } remover{tmp};

    {
        std::vector<int64_t> abs_t(N);
        for (int64_t i = 0; i < N; ++i) abs_t[i] = t[i] + info.imin;   // samples of the original file
        write_npy(tmp + "/spike_times.npy", {N}, abs_t.data());
        // Several files sorted as one: the spikes of each file again, in samples of that file.
        if (!src.files.empty()) {
            fs::create_directories(tmp + "/per_file", ec);
            std::string tsv = "file\tpath\tfirst_sample\tn_samples\tn_spikes\n";
            for (size_t k = 0; k < src.files.size(); ++k) {
                const auto& f = src.files[k];
                std::vector<int64_t> ft;
                std::vector<int32_t> fc;
                for (int64_t i = 0; i < N; ++i)
                    if (abs_t[i] >= f.first_sample && abs_t[i] < f.first_sample + f.n_samples) {
                        ft.push_back(abs_t[i] - f.first_sample);
                        fc.push_back(clu[i]);
                    }
                const std::string d = tmp + "/per_file/file_" + std::to_string(k);
                fs::create_directories(d, ec);
                write_npy(d + "/spike_times.npy", {static_cast<int64_t>(ft.size())}, ft.data());
                write_npy(d + "/spike_clusters.npy", {static_cast<int64_t>(fc.size())}, fc.data());
                tsv += std::to_string(k) + "\t" + f.path + "\t" + std::to_string(f.first_sample) + "\t" + std::to_string(f.n_samples) +
                       "\t" + std::to_string(ft.size()) + "\n";
            }
            write_file_atomic(tmp + "/per_file/files.tsv", tsv);
        }
    }
    write_npy(tmp + "/spike_templates.npy", {N}, clu.data());
    write_npy(tmp + "/spike_clusters.npy", {N}, clu.data());
    write_npy(tmp + "/spike_detection_templates.npy", {N}, stmpl.data());
    copy_file_atomic(fdir + "/amplitudes.npy", tmp + "/amplitudes.npy");
    copy_file_atomic(fdir + "/templates.npy", tmp + "/templates.npy");
    copy_file_atomic(fdir + "/similar_templates.npy", tmp + "/similar_templates.npy");
    copy_file_atomic(fdir + "/spike_positions.npy", tmp + "/spike_positions.npy");
    {
        std::vector<int64_t> ind(static_cast<size_t>(K) * C);
        for (int k = 0; k < K; ++k)
            for (int c = 0; c < C; ++c) ind[static_cast<size_t>(k) * C + c] = c;
        write_npy(tmp + "/templates_ind.npy", {K, C}, ind.data());
    }
    write_npy(tmp + "/pc_feature_ind.npy", {K, nC}, feat_ind.data());
    {
        std::vector<int32_t> cmap(probe.chanMap.begin(), probe.chanMap.end());
        std::vector<float> pos(static_cast<size_t>(C) * 2), shank(C);
        for (int c = 0; c < C; ++c) {
            pos[2 * c] = static_cast<float>(probe.xc[c]);
            pos[2 * c + 1] = static_cast<float>(probe.yc[c]);
            shank[c] = static_cast<float>(probe.kcoords[c]);
        }
        write_npy(tmp + "/channel_map.npy", {C}, cmap.data());
        write_npy(tmp + "/channel_positions.npy", {C, 2}, pos.data());
        write_npy(tmp + "/channel_shanks.npy", {C}, shank.data());
    }
    copy_file_atomic(work_dir + "/whiten/whiten.npy", tmp + "/whitening_mat.npy");
    copy_file_atomic(work_dir + "/whiten/whiten_inv.npy", tmp + "/whitening_mat_inv.npy");
    for (const char* f : {"cluster_KSLabel.tsv", "cluster_ContamPct.tsv", "cluster_Amplitude.tsv"})
        copy_file_atomic(fdir + "/" + f, tmp + "/" + f);
    // As Kilosort4: cluster_group.tsv is a copy of cluster_KSLabel.tsv (header KSLabel), so phy opens
    // every cluster as "unsorted" with a KSLabel column.
    copy_file_atomic(fdir + "/cluster_KSLabel.tsv", tmp + "/cluster_group.tsv");

    // ks-curate's metrics, when present, as extra cluster_<metric>.tsv columns phy shows in its cluster
    // view (and the curation verdict as cluster_curated.tsv).
    const std::string metrics_tsv = work_dir + "/curate/metrics.tsv";
    if (fs::exists(work_dir + "/curate/curate.json", ec) && fs::exists(metrics_tsv, ec)) {
        std::FILE* f = std::fopen(metrics_tsv.c_str(), "r");
        if (!f) throw Error(Exit::usage, metrics_tsv + ": cannot read");
        std::vector<std::vector<std::string>> rows;
        std::string line;
        for (int ch; (ch = std::fgetc(f)) != EOF;) {
            if (ch != '\n') {
                line += static_cast<char>(ch);
                continue;
            }
            std::vector<std::string> cells;
            size_t a = 0;
            for (size_t b; (b = line.find('\t', a)) != std::string::npos; a = b + 1) cells.push_back(line.substr(a, b - a));
            cells.push_back(line.substr(a));
            rows.push_back(std::move(cells));
            line.clear();
        }
        std::fclose(f);
        if (rows.size() != static_cast<size_t>(K) + 1 || rows[0].empty() || rows[0][0] != "cluster_id")
            throw Error(Exit::usage, metrics_tsv + ": not one row per unit of final/; rerun ks-curate");
        for (size_t c = 2; c < rows[0].size(); ++c) {   // KSLabel is already there
            const std::string& name = rows[0][c];
            std::string text = "cluster_id\t" + name + "\n";
            for (int k = 0; k < K; ++k) {
                if (rows[k + 1].size() != rows[0].size()) throw Error(Exit::usage, metrics_tsv + ": a short row");
                // phylib skips empty cells: an undefined metric (nan) is left empty.
                const std::string& v = rows[k + 1][c];
                text += rows[k + 1][0] + "\t" + (v == "nan" ? std::string() : v) + "\n";
            }
            write_file_atomic(tmp + "/cluster_" + name + ".tsv", text);
        }
    }

    // pc_features (N, P, nC): each spike's matching features moved onto its unit's channels, streamed
    // over match/tF.npy in its row order and written at the spike's place in the final order.
    {
        NpyRowReader tf(mdir + "/tF.npy");
        const int64_t Nm = tf.rows();
        if (tf.shape().size() != 3 || tf.shape()[1] != nC || tf.shape()[2] != P)
            throw Error(Exit::usage, mdir + "/tF.npy: shape disagrees with template_chans.npy and the templates");
        std::vector<int64_t> final_of(Nm, -1);
        for (int64_t i = 0; i < N; ++i) {
            if (midx[i] < 0 || midx[i] >= Nm) throw Error(Exit::usage, fdir + "/spike_match_index.npy: a row beyond match/tF.npy");
            final_of[midx[i]] = i;
        }
        OutputFile pf(tmp + "/pc_features.npy");
        const std::string header = npy_header(Dtype::float32, {N, P, nC});
        pf.write(header);
        const auto row_bytes = static_cast<int64_t>(sizeof(float)) * P * nC;
        constexpr int64_t kChunk = 1 << 15;
        std::vector<float> buf(static_cast<size_t>(kChunk) * nC * P);
        std::vector<std::pair<int64_t, std::vector<float>>> rows;
        int64_t done = 0, n, next_pos = -1;
        Progress progress(opt.progress, "writing pc_features", Nm, "spikes");
        while ((n = tf.read(buf.data(), kChunk)) > 0) {
            rows.clear();
            for (int64_t r = 0; r < n; ++r) {
                const int64_t f = final_of[done + r];
                if (f < 0) continue;
                const int32_t* own = tchans.data() + static_cast<size_t>(stmpl[f]) * nC;
                const uint32_t* unit = feat_ind.data() + static_cast<size_t>(clu[f]) * nC;
                std::vector<float> o(static_cast<size_t>(P) * nC, 0.f);
                for (int j = 0; j < nC; ++j)
                    for (int i = 0; i < nC; ++i)
                        if (own[i] >= 0 && static_cast<uint32_t>(own[i]) == unit[j]) {
                            for (int p = 0; p < P; ++p) o[static_cast<size_t>(p) * nC + j] = buf[(static_cast<size_t>(r) * nC + i) * P + p];
                            break;
                        }
                rows.emplace_back(f, std::move(o));
            }
            std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
            for (const auto& [f, o] : rows) {
                if (f != next_pos) pf.seek(static_cast<int64_t>(header.size()) + f * row_bytes);
                pf.write(o.data(), static_cast<size_t>(row_bytes));
                next_pos = f + 1;
            }
            done += n;
            progress.advance(n);
        }
        progress.finish();
        pf.seek(static_cast<int64_t>(header.size()) + N * row_bytes);
        pf.commit();
    }

    // params.py: the raw recording as phy reads it (absolute path when it can be found).
    std::string dat = opt.dat_path.empty() ? src.path : opt.dat_path;
    if (!dat.empty()) {
        // filtered.json keeps the path as ks-filter was given it: relative to where it ran, which is
        // usually here or the work folder's parent.
        fs::path p(dat);
        if (p.is_relative()) {
            const fs::path beside = fs::absolute(fs::path(work_dir), ec).parent_path() / p;
            if (fs::exists(p, ec)) p = fs::absolute(p, ec);
            else if (fs::exists(beside, ec)) p = beside;
        }
        if (!fs::exists(p, ec))
            log::warn("%s: the recording is not there (phy will show templates but no raw traces); "
                      "give --dat-path to point params.py at it", dat.c_str());
        dat = p.lexically_normal().string();
    }
    {
        std::string py;
        py += "n_channels_dat = " + std::to_string(src.n_chan_bin) + "\n";
        py += "offset = 0\n";
        py += log::format("sample_rate = %.17g\n", info.fs);
        py += "dtype = " + py_quote(src.dtype) + "\n";
        py += "hp_filtered = False\n";
        if (!src.files.empty() && opt.dat_path.empty()) {   // phy reads a list of files as one recording
            std::string list;
            for (const auto& f : src.files) list += (list.empty() ? "" : ", ") + py_quote(f.path);
            py += "dat_path = [" + list + "]\n";
        } else {
            py += "dat_path = [" + (dat.empty() ? std::string() : py_quote(dat)) + "]\n";
        }
        write_file_atomic(tmp + "/params.py", py);
    }

    Summary sum;
    sum.n_units = K;
    sum.n_spikes = N;
    sum.out_dir = out;
    {
        Provenance prov;
        prov.tool = opt.tool;
        prov.stage = "phy";
        prov.command_line = opt.command_line;
        prov.settings_json = opt.settings_json;
        prov.inputs = {file_identity(record), file_identity(mdir + "/match.json"), file_identity(work_dir + "/probe.json"),
                       file_identity(work_dir + "/whiten/whiten.json")};
        for (const char* f : {"spike_times.npy", "spike_clusters.npy", "templates.npy", "pc_features.npy", "params.py"})
            prov.outputs.push_back(file_identity(tmp + "/" + f));
        JsonWriter j(0);
        j.begin_object();
        j.key("format").value("ks-phy");
        j.key("version").value(1);
        j.key("n_spikes").value(N);
        j.key("n_units").value(K);
        j.key("imin").value(info.imin);
        j.end_object();
        prov.extra_json = j.str();
        write_provenance(tmp + "/ks-phy.json", prov);
    }
    // Swap in: the former folder (and phy's .phy/ cache in it) goes away only once the new one is complete.
    const std::string old = out + ".old-" + std::to_string(::getpid());
    if (fs::exists(out, ec)) {
        fs::rename(out, old, ec);
        if (ec) throw Error(Exit::resources, out + ": cannot move the former folder aside: " + ec.message());
    }
    fs::rename(tmp, out, ec);
    if (ec) throw Error(Exit::resources, out + ": cannot rename " + tmp + " into place: " + ec.message());
    remover.keep = true;
    fs::remove_all(old, ec);
    log::info("Phy folder: %s/ (%d units, %lld spikes); open it with: phy template-gui %s/params.py", out.c_str(), K,
              static_cast<long long>(N), out.c_str());
    return sum;
}

}  // namespace ks::phy
