// ks-detect's stage driver: universal templates learned again on the corrected data (as Kilosort4
// does), detection over every batch, PC features, written as they come (memory does not grow with
// the recording: only one batch and its spikes are held). See stages/detect.hpp, formats/detections.md.
#include "ks/stages/detect.hpp"

#include <algorithm>
#include <filesystem>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/kernels/motion_files.hpp"
#include "ks/kernels/universal_features.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"
#include "ks/stages/batches.hpp"

namespace ks::detect {

namespace fs = std::filesystem;

StageParams StageParams::from(const Settings& s) {
    StageParams p;
    p.batch_size = s.get_int("batch_size");
    p.universal = UniversalParams::from(s);
    return p;
}

Summary run(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const UniversalParams& u = p.universal;
    WhitenedBatches wb(work_dir, dev, p.batch_size, u.nt);
    const int nb = wb.n_batches();
    if (nb == 0) throw Error(Exit::usage, work_dir + "/filter/filtered.json: the filtered recording has no samples");
    const drift::MotionFile motion = drift::read_motion(work_dir, p.batch_size, nb);
    wb.use_motion(motion.motion, motion.sig_interp_um);

    const std::string dir = work_dir + "/detect";
    {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    }
    remove_stale_output(dir + "/detect.json");

    Summary sum;
    sum.n_batches = nb;
    sum.drift_corrected = wb.corrected();
    log::info("detection on %s (%s): %d batches of %lld samples, %s", dev.describe().c_str(), dev.why().c_str(), nb,
              static_cast<long long>(p.batch_size),
              wb.corrected() ? "drift-corrected" : "no drift correction (motion status not ok)");

    const UniversalTemplates tmpl = learn_universal_templates(wb, u, opt.progress);
    sum.n_clips = tmpl.n_clips;
    if (tmpl.wtemp.empty())
        throw Error(Exit::unsortable,
                    log::format("%s: only %lld isolated spike waveforms above Th_single_ch = %g in the whitened data; "
                                "nothing to learn the universal templates from (is the recording silent?)",
                                work_dir.c_str(), static_cast<long long>(tmpl.n_clips), static_cast<double>(u.Th_single_ch)));
    const kernels::UniversalGrid grid = kernels::make_universal_grid(wb.probe(), u.grid);
    sum.n_pos = grid.n_pos;
    const int nC = grid.n_chan_near, P = u.n_pcs;
    log::info("universal templates from %lld clips; %d template centres, %d channels x %d PCs per spike",
              static_cast<long long>(tmpl.n_clips), grid.n_pos, nC, P);

    NpyRowWriter w_times(dir + "/spike_times.npy", Dtype::int64, {});
    NpyRowWriter w_pos(dir + "/spike_pos.npy", Dtype::int32, {});
    NpyRowWriter w_amp(dir + "/spike_amplitudes.npy", Dtype::float32, {});
    NpyRowWriter w_depth(dir + "/spike_depth_um.npy", Dtype::float32, {});
    NpyRowWriter w_tf(dir + "/tF.npy", Dtype::float32, {nC, P});

    kernels::UniversalDetectArgs a;
    a.n_chan = wb.n_channels();
    a.context = wb.context();
    a.wtemp = tmpl.wtemp.data();
    a.nk = u.n_templates;
    a.nt = u.nt;
    a.nt0min = u.nt0min;
    a.grid = &grid;
    a.Th_universal = u.Th_universal;
    kernels::FeatureArgs fa;
    fa.n_chan = wb.n_channels();
    fa.wpca = tmpl.wpca.data();
    fa.n_pcs = P;
    fa.nt = u.nt;
    fa.grid = &grid;

    Progress progress(opt.progress, "detecting spikes", nb, "batches");
    std::vector<float> scratch, x, amp, depth, tf;
    std::vector<int64_t> times;
    std::vector<int32_t> pos;
    const int64_t N = wb.n_samples();
    for (int b = 0; b < nb; ++b) {
        const int64_t n = wb.read(b, scratch, x);
        a.x = fa.x = x.data();
        a.n_samples = a.ld_x = fa.n_samples = fa.ld_x = n;
        const std::vector<kernels::UniversalSpike> found = kernels::detect_universal(dev, a);
        const size_t k = found.size();
        times.resize(k);
        pos.resize(k);
        amp.resize(k);
        depth.resize(k);
        tf.resize(k * nC * P);
        kernels::universal_features(dev, fa, found, tf.data());
        for (size_t i = 0; i < k; ++i) {
            times[i] = std::clamp<int64_t>(wb.batch_start(b) - wb.context() + found[i].t_trough, 0, N - 1);
            pos[i] = found[i].pos;
            amp[i] = found[i].amp;
            depth[i] = static_cast<float>(found[i].y_weighted_um);
        }
        const auto kk = static_cast<int64_t>(k);
        w_times.append(times.data(), kk);
        w_pos.append(pos.data(), kk);
        w_amp.append(amp.data(), kk);
        w_depth.append(depth.data(), kk);
        w_tf.append(tf.data(), kk);
        progress.advance(1);
    }
    progress.finish();
    sum.n_spikes = w_times.rows();
    if (sum.n_spikes == 0)
        throw Error(Exit::unsortable, log::format("%s: no spike crossed Th_universal = %g", work_dir.c_str(),
                                                  static_cast<double>(u.Th_universal)));
    w_times.commit();
    w_pos.commit();
    w_amp.commit();
    w_depth.commit();
    w_tf.commit();

    write_npy(dir + "/wTEMP.npy", {u.n_templates, u.nt}, tmpl.wtemp.data());
    write_npy(dir + "/wPCA.npy", {u.n_pcs, u.nt}, tmpl.wpca.data());
    {
        std::vector<double> xy(static_cast<size_t>(grid.n_pos) * 2);
        for (int f = 0; f < grid.n_pos; ++f) {
            xy[2 * f] = grid.x_um[f];
            xy[2 * f + 1] = grid.y_um[f];
        }
        write_npy(dir + "/grid_xy_um.npy", {grid.n_pos, 2}, xy.data());
        write_npy(dir + "/grid_iC.npy", {grid.n_pos, nC}, grid.iC.data());
        write_npy(dir + "/grid_shank.npy", {grid.n_pos}, grid.shank.data());
    }

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "detect";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    for (const std::string& f : wb.input_files()) prov.inputs.push_back(file_identity(f));
    prov.inputs.push_back(file_identity(work_dir + "/drift/drift.json"));
    for (const char* f : {"spike_times.npy", "spike_pos.npy", "spike_amplitudes.npy", "spike_depth_um.npy", "tF.npy",
                          "wTEMP.npy", "wPCA.npy", "grid_xy_um.npy", "grid_iC.npy", "grid_shank.npy"})
        prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-detections");
    j.key("version").value(1);
    j.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    j.key("n_batches").value(nb);
    j.key("batch_size").value(p.batch_size);
    j.key("n_spikes").value(sum.n_spikes);
    j.key("n_clips").value(sum.n_clips);
    j.key("templates").value(tmpl.predefined ? "predefined" : "learned");
    j.key("n_pos").value(grid.n_pos);
    j.key("dmin_um").value(grid.dmin_um);
    j.key("nearest_chans").value(nC);
    j.key("n_pcs").value(P);
    j.key("nt").value(u.nt);
    j.key("nt0min").value(u.nt0min);
    j.key("drift_corrected").value(sum.drift_corrected);
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/detect.json", prov);
    log::info("%lld spikes (%.1f per second) at %d template centres: %s/", static_cast<long long>(sum.n_spikes),
              static_cast<double>(sum.n_spikes) / (static_cast<double>(N) / wb.recording().info().fs), grid.n_pos,
              dir.c_str());
    return sum;
}

}  // namespace ks::detect
