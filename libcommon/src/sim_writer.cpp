// ks::sim writer: the recording folder of formats/ground-truth.md. recording.bin streams out
// chunk by chunk (1 s each, so memory stays bounded whatever the duration); sim.json is
// written last, so a folder with sim.json is complete.
#include <omp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>
#include <cmath>
#include <filesystem>
#include <map>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/sim.hpp"
#include "ks/version.hpp"

namespace ks::sim {
namespace fs = std::filesystem;
namespace {

constexpr double kMaxBatchBytes = 1e9;  // buffers of the chunks rendered at once

void make_dir(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) throw Error(Exit::usage, "--out " + dir + ": cannot create folder (" + ec.message() + ")");
}

// An existing --out must be empty or hold a former ks-sim output, so nothing else is overwritten.
void check_out_dir(const std::string& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return;
    if (!fs::is_directory(dir, ec)) throw Error(Exit::usage, "--out " + dir + ": exists and is not a folder");
    if (fs::is_empty(dir, ec)) return;
    if (fs::exists(fs::path(dir) / "sim.json") || fs::exists(fs::path(dir) / "sessions.json")) return;
    throw Error(Exit::usage, "--out " + dir + ": folder is not empty and holds no ks-sim output (sim.json); "
                             "choose a new or empty folder");
}

// Before rewriting a former output: its records go first (so an interrupted run never leaves
// an old sim.json beside new data), then what the new layout will not rewrite (a single
// recording replacing sessions, or the reverse, or surplus session folders). Only ks-sim's own
// names are touched.
void clear_former_output(const std::string& dir, int sessions) {
    std::error_code ec;
    const fs::path d(dir);
    fs::remove(d / "sim.json", ec);
    fs::remove(d / "sessions.json", ec);
    std::vector<fs::path> session_dirs;
    for (const auto& e : fs::directory_iterator(d, ec)) {
        const std::string name = e.path().filename().string();
        if (e.is_directory() && name.size() == 10 && name.compare(0, 8, "session_") == 0 &&
            std::isdigit(static_cast<unsigned char>(name[8])) && std::isdigit(static_cast<unsigned char>(name[9])))
            session_dirs.push_back(e.path());
    }
    for (const auto& sd : session_dirs) {
        fs::remove(sd / "sim.json", ec);
        const int index = std::stoi(sd.filename().string().substr(8));
        if (sessions == 1 || index >= sessions) {
            for (const char* f : {"recording.bin", "probe.json", "params.json"}) fs::remove(sd / f, ec);
            fs::remove_all(sd / "gt", ec);
            fs::remove(sd, ec);  // only if now empty
        }
    }
    if (sessions > 1) {
        for (const char* f : {"recording.bin", "probe.json", "params.json"}) fs::remove(d / f, ec);
        fs::remove_all(d / "gt", ec);
    }
}

std::string params_json(const Session& s, double fs_hz) {
    JsonWriter w;
    w.begin_object().key("n_chan_bin").value(s.n_chan_bin()).key("fs").value(fs_hz).end_object();
    return w.str() + "\n";
}

struct SessionResult {
    int64_t n_spikes = 0;
    std::vector<int> unit_ids;
};

SessionResult write_session(const Config& cfg, const Population& pop, int s, const std::string& dir,
                            ProgressMode mode) {
    const auto start = std::chrono::steady_clock::now();
    make_dir(dir + "/gt");
    Session sess(cfg, pop, s);
    auto since_start = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
    log::debug("session %d built in %.2f s", s, since_start());
    const Probe& probe = sess.probe();
    const int C = probe.n_chan(), R = sess.n_chan_bin();
    const int64_t N = sess.n_samples();
    const auto& units = sess.units();
    const auto& sp = sess.spikes();
    const int U = static_cast<int>(units.size());
    log::debug("session %d: %d units, %zu spikes, %lld samples x %d channels", s, U, sp.size(),
              static_cast<long long>(N), C);

    write_file_atomic(dir + "/probe.json", probe.to_json());
    write_file_atomic(dir + "/params.json", params_json(sess, cfg.fs_hz));

    // Ground truth.
    const std::string gt = dir + "/gt/";
    const int64_t nsp = static_cast<int64_t>(sp.size());
    write_npy(gt + "spike_times.npy", {nsp}, sp.t.data());
    write_npy(gt + "spike_clusters.npy", {nsp}, sp.unit.data());
    write_npy(gt + "spike_amplitudes.npy", {nsp}, sp.amp.data());
    std::vector<float> pos, rates, amps, tmpl;
    std::vector<int32_t> ids, peaks;
    tmpl.reserve(static_cast<size_t>(U) * kTemplateNt * C);
    for (const auto& u : units) {
        pos.insert(pos.end(), {static_cast<float>(u.p.x_um), static_cast<float>(u.p.y_um), static_cast<float>(u.p.z_um)});
        rates.push_back(static_cast<float>(u.p.rate_hz));
        amps.push_back(static_cast<float>(u.p.amplitude_uv));
        ids.push_back(u.p.global_id);
        peaks.push_back(u.peak_channel);
        const auto t = unit_template(u, probe, 0, kTemplateNt, kTemplateNt0min);
        tmpl.insert(tmpl.end(), t.begin(), t.end());
    }
    write_npy(gt + "unit_positions.npy", {U, 3}, pos.data());
    write_npy(gt + "unit_firing_rates.npy", {U}, rates.data());
    write_npy(gt + "unit_amplitudes_uv.npy", {U}, amps.data());
    write_npy(gt + "unit_ids.npy", {U}, ids.data());
    write_npy(gt + "unit_peak_channels.npy", {U}, peaks.data());
    write_npy(gt + "templates.npy", {U, kTemplateNt, C}, tmpl.data());
    std::vector<float> chan_uv(sess.noise().channel_uv().begin(), sess.noise().channel_uv().end());
    write_npy(gt + "channel_noise_uv.npy", {C}, chan_uv.data());
    {
        std::vector<int64_t> art;
        for (const auto& a : sess.artifacts()) art.insert(art.end(), {a.start, a.start + a.length});
        write_npy(gt + "artifacts.npy", {static_cast<int64_t>(sess.artifacts().size()), 2}, art.data());
    }
    // Motion on a (time, depth) grid; bins' centres.
    {
        const int64_t nt = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(cfg.duration_s / cfg.motion_bin_s - 1e-9)));
        const auto [ylo, yhi] = std::minmax_element(probe.yc.begin(), probe.yc.end());
        const int64_t nd = static_cast<int64_t>(std::floor((*yhi - *ylo) / cfg.motion_depth_bin_um + 1e-9)) + 1;
        std::vector<float> tc(nt), dc(nd), m(static_cast<size_t>(nt * nd));
        for (int64_t i = 0; i < nt; ++i) tc[i] = static_cast<float>((i + 0.5) * cfg.motion_bin_s);
        for (int64_t j = 0; j < nd; ++j) dc[j] = static_cast<float>(*ylo + j * cfg.motion_depth_bin_um);
        for (int64_t i = 0; i < nt; ++i)
            for (int64_t j = 0; j < nd; ++j) m[i * nd + j] = static_cast<float>(sess.motion().at(tc[i], dc[j]));
        write_npy(gt + "motion.npy", {nt, nd}, m.data());
        write_npy(gt + "motion_time_s.npy", {nt}, tc.data());
        write_npy(gt + "motion_depth_um.npy", {nd}, dc.data());
    }

    log::debug("ground truth written at %.2f s", since_start());
    // The recording, in 1 s chunks. Chunks are independent, so a batch of them is rendered at
    // once, one per thread (inner loops then run serially), and written in order; the batch is
    // capped so its buffers stay under kMaxBatchBytes.
    {
        OutputFile rec(dir + "/recording.bin");
        const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(std::llround(cfg.fs_hz)));
        const int64_t n_chunks = (N + chunk - 1) / chunk;
        const double per_chunk = static_cast<double>(chunk) * (C * 8.0 + R * 2.0);  // µV, noise scratch, rows
        const int batch = static_cast<int>(std::clamp<double>(std::floor(kMaxBatchBytes / per_chunk), 1.0,
                                                              std::max(1, omp_get_max_threads())));
        std::vector<std::vector<float>> uv(batch, std::vector<float>(static_cast<size_t>(C) * chunk));
        std::vector<std::vector<int16_t>> rows(batch, std::vector<int16_t>(static_cast<size_t>(R) * chunk));
        Progress progress(mode, cfg.sessions > 1 ? log::format("simulating session %d", s) : "simulating",
                          n_chunks, "s");
        for (int64_t k0 = 0; k0 < n_chunks; k0 += batch) {
            const int nb = static_cast<int>(std::min<int64_t>(batch, n_chunks - k0));
            std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nb) if (nb > 1)
            for (int j = 0; j < nb; ++j) {
                try {
                    const int64_t t0 = (k0 + j) * chunk, n = std::min(chunk, N - t0);
                    sess.render(t0, n, uv[j].data());
                    sess.quantise(uv[j].data(), n, rows[j].data());
                } catch (...) {
#pragma omp critical(ks_sim_failure)
                    if (!failure) failure = std::current_exception();
                }
            }
            if (failure) std::rethrow_exception(failure);
            for (int j = 0; j < nb; ++j) {
                const int64_t n = std::min(chunk, N - (k0 + j) * chunk);
                rec.write(rows[j].data(), static_cast<size_t>(n) * R * sizeof(int16_t));
                progress.advance(1);
            }
            rec.start_writeback();  // so commit()'s fsync does not wait for the whole file
        }
        rec.commit();
        progress.finish();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    // sim.json: the record, last.
    JsonWriter w;
    w.begin_object();
    w.key("format").value("ks-sim ground truth").key("format_version").value(kFormatVersion);
    w.key("tool").value("ks-sim").key("version").value(KS_VERSION).key("git").value(KS_GIT_DESCRIBE);
    w.key("command_line").value(cfg.command_line);
    w.key("seed").value(static_cast<int64_t>(cfg.seed));
    w.key("session").value(s).key("n_sessions").value(cfg.sessions);
    w.key("probe_offset_um").begin_array().value(pop.probe_offset_um[s].first).value(pop.probe_offset_um[s].second).end_array();
    w.key("dtype").value("int16").key("uv_per_bit").value(cfg.uv_per_bit).key("adc_bits").value(cfg.adc_bits);
    w.key("fs").value(cfg.fs_hz).key("n_chan_bin").value(R).key("n_chan").value(C);
    w.key("n_samples").value(N).key("duration_s").value(static_cast<double>(N) / cfg.fs_hz);
    w.key("n_units").value(U).key("n_spikes").value(nsp);
    w.key("template_nt").value(kTemplateNt).key("template_nt0min").value(kTemplateNt0min);
    w.key("noise").begin_object();
    w.key("expected_neighbour_corr").value(sess.noise().expected_neighbour_corr());
    w.key("fraction_independent").value(sess.noise().fraction_independent());
    w.key("fraction_correlated").value(sess.noise().fraction_correlated());
    w.key("fraction_common").value(cfg.noise_common);
    w.end_object();
    w.key("motion").begin_object();
    w.key("sign").value("+ = units appear at larger y (probe coordinates) than at rest");
    w.key("kinds").value(cfg.drift.describe());
    w.key("max_abs_um_bound").value(sess.motion().max_abs_um());
    w.key("step_time_s").value(sess.motion().step_time_s());
    w.end_object();
    w.key("n_artifacts").value(static_cast<int64_t>(sess.artifacts().size()));
    w.key("generation_s").value(secs);
    w.key("config").raw(config_json(cfg));
    std::vector<int64_t> count(U, 0);
    for (int32_t u : sp.unit) ++count[u];
    w.key("units").begin_array();
    for (const auto& u : units) {
        w.begin_object();
        w.key("id").value(u.local_id).key("global_id").value(u.p.global_id);
        w.key("type").value(unit_type_name(u.p.type));
        w.key("x_um").value(u.p.x_um).key("y_um").value(u.p.y_um).key("z_um").value(u.p.z_um);
        w.key("amplitude_uv").value(u.p.amplitude_uv).key("snr").value(cfg.noise_uv > 0 ? u.p.amplitude_uv / cfg.noise_uv : 0.0);
        w.key("peak_channel").value(u.peak_channel).key("trough_to_peak_ms").value(u.trough_to_peak_ms);
        w.key("rate_hz").value(u.p.rate_hz).key("n_spikes").value(count[u.local_id]);
        w.key("refractory_ms").value(u.p.refractory_ms);
        w.key("refractory_samples").value(refractory_samples(u.p.refractory_ms, cfg.fs_hz));
        w.key("bursting").value(u.p.bursting).key("large_repolarisation").value(u.p.large_repol);
        w.key("twin_of").value(u.p.twin_of).key("sync_partner").value(u.p.sync_partner);
        w.key("n_channels").value(static_cast<int64_t>(u.channels.size()));
        w.end_object();
    }
    w.end_array();
    w.end_object();
    write_file_atomic(dir + "/sim.json", w.str() + "\n");
    log::info("wrote %s: %.1f s of %d channels, %d units, %lld spikes in %.1f s (%.1fx real time)", dir.c_str(),
              static_cast<double>(N) / cfg.fs_hz, C, U, static_cast<long long>(nsp), secs,
              static_cast<double>(N) / cfg.fs_hz / std::max(secs, 1e-9));
    SessionResult r;
    r.n_spikes = nsp;
    r.unit_ids.assign(ids.begin(), ids.end());
    return r;
}

}  // namespace

SimSummary simulate(const Config& cfg, const std::string& out_dir, ProgressMode progress) {
    const auto start = std::chrono::steady_clock::now();
    validate(cfg);
    check_out_dir(out_dir);
    make_dir(out_dir);
    clear_former_output(out_dir, cfg.sessions);
    const Population pop = make_population(cfg);
    SimSummary sum;
    sum.n_sessions = cfg.sessions;
    sum.n_units_total = static_cast<int>(pop.units.size());
    sum.n_samples = static_cast<int64_t>(std::llround(cfg.duration_s * cfg.fs_hz));
    std::vector<SessionResult> results;
    for (int s = 0; s < cfg.sessions; ++s) {
        const std::string dir = cfg.sessions > 1 ? out_dir + log::format("/session_%02d", s) : out_dir;
        results.push_back(write_session(cfg, pop, s, dir, progress));
        sum.n_spikes += results.back().n_spikes;
        sum.dirs.push_back(dir);
    }
    if (cfg.sessions > 1) {
        JsonWriter w;
        w.begin_object();
        w.key("format").value("ks-sim sessions").key("format_version").value(kFormatVersion);
        w.key("seed").value(static_cast<int64_t>(cfg.seed)).key("n_sessions").value(cfg.sessions);
        w.key("n_units_total").value(static_cast<int64_t>(pop.units.size()));
        w.key("sessions").begin_array();
        for (int s = 0; s < cfg.sessions; ++s) {
            w.begin_object();
            w.key("index").value(s).key("dir").value(log::format("session_%02d", s));
            w.key("probe_offset_um").begin_array().value(pop.probe_offset_um[s].first).value(pop.probe_offset_um[s].second).end_array();
            std::vector<int64_t> ids(results[s].unit_ids.begin(), results[s].unit_ids.end());
            w.key("unit_ids").value(ids);
            w.end_object();
        }
        w.end_array();
        w.key("units").begin_array();
        for (const auto& u : pop.units) {
            std::vector<int64_t> in, local;
            for (int s = 0; s < cfg.sessions; ++s) {
                const auto& ids = results[s].unit_ids;
                const auto it = std::lower_bound(ids.begin(), ids.end(), u.global_id);
                if (it != ids.end() && *it == u.global_id) in.push_back(s), local.push_back(it - ids.begin());
            }
            w.begin_object();
            w.key("global_id").value(u.global_id).key("type").value(unit_type_name(u.type));
            w.key("sessions").value(in).key("local_ids").value(local);
            w.end_object();
        }
        w.end_array();
        w.end_object();
        write_file_atomic(out_dir + "/sessions.json", w.str() + "\n");
    }
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return sum;
}

}  // namespace ks::sim
