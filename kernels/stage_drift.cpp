// ks-drift's stage driver: universal templates, detection over every batch, motion estimate (or an
// external motion), then drift/ and its picture. See stages/drift.hpp and formats/motion.md.
#include "ks/stages/drift.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ks/drift_map.hpp"
#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/kernels/motion_files.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"
#include "ks/stages/batches.hpp"

namespace ks::drift {

namespace {

namespace fs = std::filesystem;



struct SpikeFiles {
    explicit SpikeFiles(const std::string& dir)
        : times(dir + "/spikes_times.npy", Dtype::int64, {}),
          depth(dir + "/spikes_depth_um.npy", Dtype::float32, {}),
          amp(dir + "/spikes_amplitudes.npy", Dtype::float32, {}) {}
    void commit() {
        times.commit();
        depth.commit();
        amp.commit();
    }
    NpyRowWriter times, depth, amp;
};

// Reads the three spike files back in chunks and draws them; the corrected depth is the recorded
// depth plus the batch's shift at that depth (formats/motion.md: corrected channel c samples the
// recording at yc - δ_c, so a unit seen at y_r sits at about y_r + δ(y_r) after correction).
void draw_map(const std::string& dir, const WhitenedBatches& wb, const MotionEstimate& m, const StageParams& p,
              const std::string& title, const std::string& note) {
    const Probe& probe = wb.probe();
    const double ymin = *std::min_element(probe.yc.begin(), probe.yc.end());
    const double ymax = *std::max_element(probe.yc.begin(), probe.yc.end());
    DriftMapConfig c;
    c.fs_hz = wb.recording().info().fs;
    c.duration_s = std::max(1.0 / c.fs_hz, static_cast<double>(wb.n_samples()) / c.fs_hz);
    const double pad = std::max(10.0, 0.02 * (ymax - ymin));
    c.ymin_um = ymin - pad;
    c.ymax_um = ymax + pad;
    c.amp_min = p.reg.Th_universal;
    c.amp_max = 4 * p.reg.Th_universal;
    c.title = title;
    c.note = note;
    const bool corrected = m.status == MotionStatus::ok;
    c.corrected_panel = corrected;
    DriftMap map(c);
    NpyRowReader rt(dir + "/spikes_times.npy"), rd(dir + "/spikes_depth_um.npy"), ra(dir + "/spikes_amplitudes.npy");
    constexpr int64_t kChunk = 1 << 16;
    std::vector<int64_t> t(kChunk);
    std::vector<float> d(kChunk), a(kChunk), dc(kChunk);
    for (;;) {
        const int64_t n = rt.read(t.data(), kChunk);
        if (n == 0) break;
        KS_ASSERT(rd.read(d.data(), kChunk) == n && ra.read(a.data(), kChunk) == n, "spike files of unequal length");
        if (corrected)
            for (int64_t i = 0; i < n; ++i) {
                const int b = static_cast<int>(std::min<int64_t>(t[i] / wb.batch_size(), m.n_batches - 1));
                dc[i] = static_cast<float>(d[i] + shift_at(m.dshift.data() + static_cast<size_t>(b) * m.n_blocks, m.yblk, d[i]));
            }
        map.add_spikes(t.data(), d.data(), corrected ? dc.data() : nullptr, a.data(), n);
    }
    if (corrected) {
        std::vector<double> centres(m.n_batches);
        for (int b = 0; b < m.n_batches; ++b)
            centres[b] = (static_cast<double>(wb.batch_start(b)) + 0.5 * wb.batch_length(b)) / c.fs_hz;
        map.set_motion(centres, m.yblk, m.dshift);
    }
    map.write_png(dir + "/drift_map.png");
}

}  // namespace

StageParams StageParams::from(const Settings& s) {
    StageParams p;
    p.batch_size = s.get_int("batch_size");
    p.universal = UniversalParams::from(s);
    p.reg.nblocks = s.get_int32("nblocks");
    p.reg.binning_depth = s.get_float("binning_depth");
    p.reg.Th_universal = s.get_float("Th_universal");
    const std::vector<double> sm = s.get_list("drift_smoothing");
    KS_ASSERT(sm.size() == 3, "drift_smoothing has 3 values (checked by the settings table)");
    p.reg.drift_smoothing = {sm[0], sm[1], sm[2]};
    p.sig_interp_um = s.get_float("sig_interp");
    p.nblocks_explicit = s.origin("nblocks") != "default";
    if (p.reg.Th_universal >= kAmplitudeMax)
        throw Error(Exit::usage, "setting Th_universal: must be below 100 (the top of the drift amplitude bins)");
    return p;
}

Summary run(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    // Context on each side of a batch: Kilosort4 pads batches with nt samples.
    WhitenedBatches wb(work_dir, dev, p.batch_size, p.universal.nt);
    const int nb = wb.n_batches();
    if (nb == 0) throw Error(Exit::usage, work_dir + "/filter/filtered.json: the filtered recording has no samples");
    const Probe& probe = wb.probe();
    const double ymin = *std::min_element(probe.yc.begin(), probe.yc.end());
    const double ymax = *std::max_element(probe.yc.begin(), probe.yc.end());
    const bool external = !opt.motion_path.empty();
    const bool estimate = !external && p.reg.nblocks > 0;
    // Read the external motion and check the settings before any work.
    ExternalMotion ext;
    if (external) ext = load_external_motion(opt.motion_path);
    std::unique_ptr<DriftHistogram> hist;
    if (estimate) hist = std::make_unique<DriftHistogram>(p.batch_size, nb, ymin, ymax, p.reg);

    const std::string dir = work_dir + "/drift";
    {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    }
    // The record marks the stage done; drop it first so a failed rerun never looks complete.
    remove_stale_output(dir + "/drift.json");
    for (const char* f : {"drift_map.png", "wTEMP.npy", "wPCA.npy"}) remove_stale_output(dir + "/" + f);

    Summary sum;
    sum.n_batches = nb;
    const bool detect = estimate || (external && opt.draw_map);
    log::info("drift on %s (%s): %d batches of %lld samples, %s", dev.describe().c_str(), dev.why().c_str(), nb,
              static_cast<long long>(p.batch_size),
              external ? "external motion" : estimate ? "estimating motion" : "nblocks = 0: no drift correction");

    SpikeFiles spikes(dir);
    std::string note;
    UniversalTemplates tmpl;
    if (detect) {
        tmpl = learn_universal_templates(wb, p.universal, opt.progress);
        sum.n_clips = tmpl.n_clips;
        if (tmpl.wtemp.empty()) {
            note = log::format("only %lld isolated spike waveforms above Th_single_ch = %g: no templates, no spikes",
                               static_cast<long long>(tmpl.n_clips), static_cast<double>(p.universal.Th_single_ch));
            log::warn("%s", note.c_str());
        } else {
            write_npy(dir + "/wTEMP.npy", {p.universal.n_templates, p.universal.nt}, tmpl.wtemp.data());
            write_npy(dir + "/wPCA.npy", {p.universal.n_pcs, p.universal.nt}, tmpl.wpca.data());
            const kernels::UniversalGrid grid = kernels::make_universal_grid(probe, p.universal.grid);
            log::info("universal templates from %lld clips; %d template centres (dmin %g µm)",
                      static_cast<long long>(tmpl.n_clips), grid.n_pos, grid.dmin_um);
            kernels::UniversalDetectArgs a;
            a.n_chan = wb.n_channels();
            a.context = wb.context();
            a.wtemp = tmpl.wtemp.data();
            a.nk = p.universal.n_templates;
            a.nt = p.universal.nt;
            a.nt0min = p.universal.nt0min;
            a.grid = &grid;
            a.Th_universal = static_cast<float>(p.reg.Th_universal);
            Progress progress(opt.progress, "detecting spikes for drift", nb, "batches");
            std::vector<float> scratch, x, depth, amp;
            std::vector<int64_t> times;
            const int64_t N = wb.n_samples();
            for (int b = 0; b < nb; ++b) {
                const int64_t n = wb.read(b, scratch, x);
                a.x = x.data();
                a.n_samples = a.ld_x = n;
                const std::vector<kernels::UniversalSpike> found = kernels::detect_universal(dev, a);
                times.resize(found.size());
                depth.resize(found.size());
                amp.resize(found.size());
                for (size_t i = 0; i < found.size(); ++i) {
                    const int64_t t = wb.batch_start(b) - wb.context() + found[i].t_trough;
                    times[i] = std::clamp<int64_t>(t, 0, N - 1);
                    depth[i] = static_cast<float>(found[i].y_weighted_um);
                    amp[i] = found[i].amp;
                }
                const auto k = static_cast<int64_t>(found.size());
                spikes.times.append(times.data(), k);
                spikes.depth.append(depth.data(), k);
                spikes.amp.append(amp.data(), k);
                if (hist) hist->add_batch(b, depth.data(), amp.data(), k);
                progress.advance(1);
            }
            progress.finish();
        }
    }
    sum.n_spikes = spikes.times.rows();

    MotionEstimate m;
    if (external) {
        m = motion_from_external(ext, p.batch_size, nb, wb.n_samples(), wb.recording().info().fs,
                                 wb.recording().info().imin);
        sum.source = "external";
        log::info("motion from %s: %zu time bins, %zu depth bins", ext.source.c_str(), ext.time_s.size(), ext.depth_um.size());
    } else if (estimate) {
        m = hist->estimate();
        sum.source = "estimated";
    } else {
        m.status = MotionStatus::disabled;
        m.n_batches = nb;
        m.n_blocks = 1;
        m.dshift.assign(nb, 0.0);
        m.yblk = {0.5 * (ymin + ymax)};
        sum.source = "none";
    }
    if (estimate && tmpl.wtemp.empty()) {
        // No templates: no spikes at all; the estimate above saw an empty histogram.
        m.status = MotionStatus::too_few_spikes;
        std::fill(m.dshift.begin(), m.dshift.end(), 0.0);
    }
    sum.status = m.status;
    sum.n_blocks = m.n_blocks;
    if (m.status == MotionStatus::too_few_spikes) {
        const std::string why = log::format(
            "too few spikes for a motion estimate: %lld detected over %d batches (fewer than %g per batch); "
            "the motion is set to zero and later stages apply no drift correction",
            static_cast<long long>(sum.n_spikes), nb, p.reg.min_spikes_per_batch);
        if (p.nblocks_explicit)
            throw Error(Exit::unsortable,
                        log::format("%s/drift: too few spikes for a motion estimate (%lld over %d batches) although "
                                    "nblocks = %d was asked for; set nblocks=0 to sort without drift correction",
                                    work_dir.c_str(), static_cast<long long>(sum.n_spikes), nb, p.reg.nblocks));
        log::warn("%s", why.c_str());
        note = note.empty() ? "too few spikes: motion set to zero, no correction" : note + "; motion set to zero";
    }
    for (double v : m.dshift) sum.max_abs_shift_um = std::max(sum.max_abs_shift_um, std::fabs(v));

    spikes.commit();
    write_npy(dir + "/dshift.npy", {m.n_batches, m.n_blocks}, m.dshift.data());
    write_npy(dir + "/yblk.npy", {m.n_blocks}, m.yblk.data());
    if (opt.draw_map && detect) {
        const std::string title = log::format(
            "%s: drift map, %s motion%s", work_dir.c_str(), sum.source.c_str(),
            m.status == MotionStatus::ok ? log::format(" (%d blocks, max |shift| %.1f um)", m.n_blocks, sum.max_abs_shift_um).c_str()
                                         : "");
        draw_map(dir, wb, m, p, title, note);
    }

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "drift";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    for (const std::string& f : wb.input_files()) prov.inputs.push_back(file_identity(f));
    if (external) {
        std::error_code ec;
        if (fs::is_directory(opt.motion_path, ec)) {
            for (const auto& e : fs::directory_iterator(opt.motion_path))
                if (e.path().extension() == ".npy") prov.inputs.push_back(file_identity(e.path().string()));
        } else {
            prov.inputs.push_back(file_identity(opt.motion_path));
        }
    }
    for (const char* f : {"dshift.npy", "yblk.npy", "spikes_times.npy", "spikes_depth_um.npy", "spikes_amplitudes.npy",
                          "wTEMP.npy", "wPCA.npy", "drift_map.png"})
        if (fs::exists(dir + "/" + f)) prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-motion");
    j.key("version").value(kMotionFormatVersion);
    j.key("status").value(motion_status_name(m.status));
    j.key("source").value(sum.source);
    if (external) j.key("motion_file").value(opt.motion_path);
    j.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    j.key("n_batches").value(m.n_batches);
    j.key("n_blocks").value(m.n_blocks);
    j.key("batch_size").value(p.batch_size);
    j.key("nblocks").value(p.reg.nblocks);
    j.key("binning_depth").value(p.reg.binning_depth);
    j.key("Th_universal").value(p.reg.Th_universal);
    j.key("drift_smoothing").value(std::vector<double>(p.reg.drift_smoothing.begin(), p.reg.drift_smoothing.end()));
    j.key("sig_interp").value(p.sig_interp_um);
    j.key("n_clips").value(sum.n_clips);
    j.key("templates").value(tmpl.wtemp.empty() ? "none" : (tmpl.predefined ? "predefined" : "learned"));
    j.key("n_spikes").value(sum.n_spikes);
    j.key("reference_batch").value(m.reference_batch);
    j.key("n_spikes_binned").value(m.n_spikes_binned);
    j.key("n_spikes_outside").value(m.n_spikes_outside);
    std::vector<int64_t> empty(m.empty_batches.begin(), m.empty_batches.end());
    j.key("empty_batches").value(empty);
    j.key("max_abs_shift_um").value(sum.max_abs_shift_um);
    j.key("note").value(note);
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/drift.json", prov);
    log::info("motion %s (%s, %d x %d): max |shift| %.1f µm from %lld spikes: %s/dshift.npy",
              motion_status_name(m.status), sum.source.c_str(), m.n_batches, m.n_blocks, sum.max_abs_shift_um,
              static_cast<long long>(sum.n_spikes), dir.c_str());
    return sum;
}

}  // namespace ks::drift
