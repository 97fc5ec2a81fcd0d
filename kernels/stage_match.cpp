// ks-match's stage driver: template clean-up (§5.9), then peeling chunk by chunk (§6), written as it
// goes. See stages/match.hpp, formats/matches.md.
#include "ks/stages/match.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <numeric>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/kernels/motion_files.hpp"
#include "ks/kernels/template_match.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"
#include "ks/stages/batches.hpp"

namespace ks::matchstage {

namespace fs = std::filesystem;

StageParams StageParams::from(const Settings& s) {
    StageParams p;
    p.batch_size = s.get_int("batch_size");
    p.Th_learned = static_cast<float>(s.get_float("Th_learned"));
    p.max_peels = static_cast<int>(s.get_int("max_peels"));
    p.nearest_chans = static_cast<int>(s.get_int("nearest_chans"));
    return p;
}

std::vector<int32_t> nearest_channels(const Probe& probe, int nC) {
    const int C = probe.n_chan();
    std::vector<int32_t> out(static_cast<size_t>(C) * nC, -1);
    std::vector<int> idx;
    for (int c = 0; c < C; ++c) {
        idx.clear();
        for (int j = 0; j < C; ++j)
            if (probe.kcoords[j] == probe.kcoords[c]) idx.push_back(j);
        auto d2 = [&](int j) {
            const double dx = probe.xc[j] - probe.xc[c], dy = probe.yc[j] - probe.yc[c];
            return dx * dx + dy * dy;
        };
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return d2(a) < d2(b); });
        for (int i = 0; i < nC && i < static_cast<int>(idx.size()); ++i) out[static_cast<size_t>(c) * nC + i] = idx[i];
    }
    return out;
}

namespace {

// The first-pass clustering's header: format ks-clusters version 1, mode spikes.
void check_cluster_record(const std::string& record) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    std::string_view format, mode;
    int64_t version = 0;
    if (simdjson::padded_string::load(record).get(text) || parser.parse(text).get(root) ||
        root["extra"]["format"].get_string().get(format) || root["extra"]["version"].get_int64().get(version) ||
        root["extra"]["mode"].get_string().get(mode) || format != "ks-clusters" || version != 1 || mode != "spikes")
        throw Error(Exit::usage, record + ": not a first-pass ks-cluster record (format ks-clusters version 1, mode "
                                          "spikes); rerun ks-cluster");
}

int64_t detect_int(const std::string& record, const char* key) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    int64_t v = 0;
    if (simdjson::padded_string::load(record).get(text) || parser.parse(text).get(root) || root["extra"][key].get_int64().get(v))
        throw Error(Exit::usage, record + ": no integer extra." + key + "; rerun ks-detect");
    return v;
}

}  // namespace

Summary run(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string cdir = work_dir + "/cluster", ddir = work_dir + "/detect";
    const std::string crecord = cdir + "/cluster.json", drecord = ddir + "/detect.json";
    std::error_code ec;
    if (!fs::exists(crecord, ec)) throw Error(Exit::usage, crecord + ": not found; run ks-cluster --work " + work_dir + " first");
    check_cluster_record(crecord);
    if (!fs::exists(drecord, ec)) throw Error(Exit::usage, drecord + ": not found; run ks-detect --work " + work_dir + " first");
    const int nt = static_cast<int>(detect_int(drecord, "nt")), nt0min = static_cast<int>(detect_int(drecord, "nt0min"));

    const NpyArray wpca_a = read_npy_checked(ddir + "/wPCA.npy", Dtype::float32, 2);
    const NpyArray wtemp_a = read_npy_checked(ddir + "/wTEMP.npy", Dtype::float32, 2);
    const NpyArray u_a = read_npy_checked(cdir + "/templates_pc.npy", Dtype::float32, 3);
    const NpyArray clu_a = read_npy_checked(cdir + "/spike_clusters.npy", Dtype::int32, 1);
    const int P = static_cast<int>(wpca_a.shape[0]);
    int K = static_cast<int>(u_a.shape[0]);
    const int C = static_cast<int>(u_a.shape[1]);
    if (wpca_a.shape[1] != nt || wtemp_a.shape[1] != nt)
        throw Error(Exit::usage, ddir + "/wPCA.npy, wTEMP.npy: not nt = " + std::to_string(nt) + " samples long");
    if (u_a.shape[2] != P) throw Error(Exit::usage, cdir + "/templates_pc.npy: not n_pcs = " + std::to_string(P) + " PCs");
    const std::vector<float> wpca = wpca_a.as<float>(), wtemp = wtemp_a.as<float>();
    std::vector<float> U = u_a.as<float>();
    std::vector<int64_t> counts(K, 0);
    for (int32_t l : clu_a.as<int32_t>()) {
        if (l < 0 || l >= K) throw Error(Exit::usage, cdir + "/spike_clusters.npy: a label outside templates_pc.npy's");
        ++counts[l];
    }

    const int64_t chunk = opt.chunk > 0 ? opt.chunk : p.batch_size;
    const int64_t context = 4 * static_cast<int64_t>(nt);   // peel neighbours across the seams, see formats/matches.md
    WhitenedBatches wb(work_dir, dev, p.batch_size, 0);
    if (wb.n_channels() != C)
        throw Error(Exit::usage, log::format("%s/templates_pc.npy: %d channels, but the probe has %d", cdir.c_str(), C,
                                             wb.n_channels()));
    const int nb = wb.n_batches();
    if (nb == 0) throw Error(Exit::usage, work_dir + "/filter/filtered.json: the filtered recording has no samples");
    const drift::MotionFile motion = drift::read_motion(work_dir, p.batch_size, nb);
    wb.use_motion(motion.motion, motion.sig_interp_um);

    const std::string dir = work_dir + "/match";
    fs::create_directories(dir, ec);
    if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    remove_stale_output(dir + "/match.json");

    Summary sum;
    sum.n_templates_in = K;
    sum.drift_corrected = wb.corrected();
    // §5.9: trough at nt0min, then near-duplicates merged; templates without spikes dropped.
    const std::vector<int> shifts = match::align_templates(U.data(), K, C, P, wpca.data(), nt, wtemp.data(),
                                                           static_cast<int>(wtemp_a.shape[0]), nt0min / 2);
    log::debug("template alignment: %lld of %d templates shifted",
               static_cast<long long>(std::count_if(shifts.begin(), shifts.end(), [](int s) { return s != 0; })), K);
    std::vector<int> into = match::merge_near_duplicates(U, K, C, P, wpca.data(), nt, counts);
    {
        std::vector<float> Ukeep;
        std::vector<int> renum(K, -1);
        int kept = 0;
        const size_t D = static_cast<size_t>(C) * P;
        for (int k = 0; k < K; ++k)
            if (counts[k] > 0) {
                renum[k] = kept++;
                Ukeep.insert(Ukeep.end(), U.begin() + k * D, U.begin() + (k + 1) * D);
            }
        for (int& t : into) t = t >= 0 ? renum[t] : -1;
        U.swap(Ukeep);
        K = kept;
    }
    sum.n_templates = K;
    if (K == 0) throw Error(Exit::unsortable, crecord + ": no template with spikes to match");
    const int nC = std::min(p.nearest_chans, C);
    const std::vector<int32_t> near = nearest_channels(wb.probe(), nC);
    const match::MatchTemplates T = match::prepare_templates(U.data(), K, C, P, wpca.data(), nt, near.data(), nC);
    log::info("matching %d templates (%d from the first pass; near-duplicates merged) on %s (%s), %s", K,
              sum.n_templates_in, dev.describe().c_str(), dev.why().c_str(),
              wb.corrected() ? "drift-corrected" : "no drift correction (motion status not ok)");

    NpyRowWriter w_times(dir + "/spike_times.npy", Dtype::int64, {});
    NpyRowWriter w_tmpl(dir + "/spike_templates.npy", Dtype::int32, {});
    NpyRowWriter w_amp(dir + "/spike_amplitudes.npy", Dtype::float32, {});
    NpyRowWriter w_scale(dir + "/spike_scales.npy", Dtype::float32, {});
    NpyRowWriter w_tf(dir + "/tF.npy", Dtype::float32, {nC, P});

    const int64_t N = wb.n_samples();
    const int n_chunks = static_cast<int>((N + chunk - 1) / chunk);
    sum.n_chunks = n_chunks;
    match::MatchArgs a;
    a.nt0min = nt0min;
    a.Th_learned = p.Th_learned;
    a.max_peels = p.max_peels;
    Progress progress(opt.progress, "matching templates", n_chunks, "chunks");
    std::vector<float> amp, scale;
    std::vector<int64_t> times;
    std::vector<int32_t> ids;
    // Chunks are matched several at a time, one per thread (the peeling itself is sequential); each
    // chunk's result does not depend on which thread or group it ran in, and they are written in order.
    const int par = std::clamp(dev.is_cuda() ? 1 : dev.threads(), 1, 4);
    std::vector<std::vector<float>> xs(par), feats(par), scratches(par);
    std::vector<std::vector<match::MatchedSpike>> founds(par);
    std::vector<match::MatchStats> stats(par);
    std::vector<match::MatchArgs> args(par, a);
    for (int c0 = 0; c0 < n_chunks; c0 += par) {
        const int m = std::min(par, n_chunks - c0);
        for (int j = 0; j < m; ++j) {
            const int64_t start = static_cast<int64_t>(c0 + j) * chunk, len = std::min(chunk, N - start);
            const int64_t n = wb.read_range(start, len, context, scratches[j], xs[j]);
            args[j].x = xs[j].data();
            args[j].n_samples = args[j].ld_x = n;
            args[j].report_lo = context;
            args[j].report_hi = context + len;
        }
        std::exception_ptr failure;
#pragma omp parallel for num_threads(m) schedule(static, 1)
        for (int j = 0; j < m; ++j) {
            try {
                founds[j] = match::match_batch(dev, T, args[j], &feats[j], &stats[j]);
            } catch (...) {
#pragma omp critical
                failure = std::current_exception();
            }
        }
        if (failure) std::rethrow_exception(failure);
        for (int j = 0; j < m; ++j) {
            const int ci = c0 + j;
            const int64_t start = static_cast<int64_t>(ci) * chunk;
            const auto& found = founds[j];
            sum.max_passes = std::max(sum.max_passes, stats[j].passes);
            if (stats[j].passes >= p.max_peels)
                log::debug("chunk %d: stopped at max_peels = %d passes with spikes still above Th_learned", ci, p.max_peels);
            const size_t k = found.size();
            times.resize(k);
            ids.resize(k);
            amp.resize(k);
            scale.resize(k);
            for (size_t i = 0; i < k; ++i) {
                times[i] = start - context + found[i].t_trough;
                ids[i] = found[i].k;
                amp[i] = found[i].amp;
                scale[i] = found[i].scale;
            }
            const auto kk = static_cast<int64_t>(k);
            w_times.append(times.data(), kk);
            w_tmpl.append(ids.data(), kk);
            w_amp.append(amp.data(), kk);
            w_scale.append(scale.data(), kk);
            w_tf.append(feats[j].data(), kk);
            progress.advance(1);
        }
    }
    progress.finish();
    sum.n_spikes = w_times.rows();
    if (sum.n_spikes == 0)
        throw Error(Exit::unsortable, log::format("%s: no spike matched a template above Th_learned = %g",
                                                  work_dir.c_str(), static_cast<double>(p.Th_learned)));
    w_times.commit();
    w_tmpl.commit();
    w_amp.commit();
    w_scale.commit();
    w_tf.commit();
    write_npy(dir + "/templates_pc.npy", {K, C, P}, U.data());
    write_npy(dir + "/template_chans.npy", {K, nC}, T.chans.data());
    write_npy(dir + "/template_peak_chan.npy", {K}, T.peak_chan.data());
    {
        std::vector<int32_t> into32(into.begin(), into.end());
        write_npy(dir + "/first_pass_template.npy", {sum.n_templates_in}, into32.data());
    }

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "match";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    for (const std::string& f : wb.input_files()) prov.inputs.push_back(file_identity(f));
    prov.inputs.push_back(file_identity(work_dir + "/drift/drift.json"));
    prov.inputs.push_back(file_identity(drecord));
    prov.inputs.push_back(file_identity(crecord));
    for (const char* f : {"spike_times.npy", "spike_templates.npy", "spike_amplitudes.npy", "spike_scales.npy", "tF.npy",
                          "templates_pc.npy", "template_chans.npy", "template_peak_chan.npy", "first_pass_template.npy"})
        prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-matches");
    j.key("version").value(1);
    j.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    j.key("n_spikes").value(sum.n_spikes);
    j.key("n_templates").value(K);
    j.key("n_templates_first_pass").value(sum.n_templates_in);
    j.key("nearest_chans").value(nC);
    j.key("n_pcs").value(P);
    j.key("nt").value(nt);
    j.key("nt0min").value(nt0min);
    j.key("context").value(context);
    j.key("max_passes").value(sum.max_passes);
    j.key("drift_corrected").value(sum.drift_corrected);
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/match.json", prov);
    log::info("%lld spikes (%.1f per second) from %d templates: %s/", static_cast<long long>(sum.n_spikes),
              static_cast<double>(sum.n_spikes) / (static_cast<double>(N) / wb.recording().info().fs), K, dir.c_str());
    return sum;
}

}  // namespace ks::matchstage
