// ks-whiten's stage driver: reads the work folder, runs the maths of whitening.cpp, writes whiten/.
#include "ks/stages/whiten.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ks/dtype.hpp"
#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/json.hpp"
#include "ks/kernels/apply_matrix.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"

namespace ks::whiten {

namespace {

namespace fs = std::filesystem;

bool exists(const std::string& p) {
    std::error_code ec;
    return fs::exists(p, ec);
}


std::vector<float> to_float(const std::vector<double>& v) {
    std::vector<float> out(v.size());
    for (size_t k = 0; k < v.size(); ++k) out[k] = static_cast<float>(v[k]);
    return out;
}

// round(scale * y) to int16, saturating; returns the number of clipped values.
int64_t quantise(const float* y, int C, int64_t n, int16_t* out) {
    int64_t clipped = 0;
    for (int64_t t = 0; t < n; ++t)
        for (int c = 0; c < C; ++c) {
            const double v = std::nearbyint(static_cast<double>(y[static_cast<int64_t>(c) * n + t]) * kWhitenedScale);
            int16_t q;
            if (v > 32767.0) {
                q = 32767;
                ++clipped;
            } else if (v < -32768.0) {
                q = -32768;
                ++clipped;
            } else {
                q = static_cast<int16_t>(v);
            }
            out[t * C + c] = q;
        }
    return clipped;
}

// whitened.bin (int16, time-major, 200 x W x) and its sidecar; the sidecar is written after the data.
void write_whitened(const std::string& dir, const FilteredRecording& rec, const std::vector<float>& w,
                    const Params& params, const Device& dev, ProgressMode mode) {
    const int C = rec.n_channels();
    const int64_t N = rec.n_samples();
    const std::string bin = dir + "/whitened.bin", sidecar = dir + "/whitened.json";
    OutputFile out(bin);
    const int64_t block = std::max<int64_t>(1, params.batch_size);
    Progress progress(mode, "writing whitened copy", (N + block - 1) / block, "batches");
    std::vector<float> x, y;
    std::vector<int16_t> q;
    int64_t clipped = 0;
    for (int64_t t0 = 0; t0 < N; t0 += block) {
        const int64_t n = std::min(block, N - t0);
        x.resize(static_cast<size_t>(C) * n);
        y.resize(x.size());
        q.resize(x.size());
        rec.read(t0, n, x.data());
        kernels::ApplyMatrixArgs a;
        a.w = w.data();
        a.n_out = a.n_in = C;
        a.x = x.data();
        a.n_samples = n;
        a.ld_x = a.ld_out = n;
        a.out = y.data();
        kernels::apply_matrix(dev, a);
        clipped += quantise(y.data(), C, n, q.data());
        out.write(q.data(), q.size() * sizeof(int16_t));
        progress.advance(1);
    }
    progress.finish();
    out.commit();
    if (clipped > 0)
        log::warn("whitened.bin: %lld values beyond the int16 range were clipped (whitened |x| > %.1f)",
                  static_cast<long long>(clipped), 32767.0 / kWhitenedScale);
    JsonWriter j;
    j.begin_object();
    j.key("format").value("ks-whitened");
    j.key("version").value(1);
    j.key("dtype").value("int16");
    j.key("n_channels").value(C);
    j.key("n_samples").value(N);
    j.key("fs").value(rec.info().fs);
    j.key("imin").value(rec.info().imin);
    j.key("scale").value(1.0 / kWhitenedScale);
    j.key("n_clipped").value(clipped);
    j.key("matrix").value("whiten.npy");
    j.end_object();
    write_file_atomic(sidecar, j.str() + "\n");
}

}  // namespace

Summary run(const std::string& work_dir, const Params& params, const Device& dev, const RunOptions& options) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string filter_dir = work_dir + "/filter";
    const std::string filter_record = filter_dir + "/filter.json";
    const std::string probe_path = work_dir + "/probe.json";
    if (!exists(filter_dir) || !exists(filter_record))
        throw Error(Exit::usage, filter_record + ": not found; run ks-filter --work " + work_dir + " first");
    if (!exists(probe_path))
        throw Error(Exit::usage, probe_path + ": not found; run ks-inspect --work " + work_dir + " first");
    const Probe probe = Probe::load(probe_path);
    const FilteredRecording rec(work_dir);
    const int C = rec.n_channels();
    if (C != probe.n_chan())
        throw Error(Exit::usage, log::format("%s/filtered.json: %d channels, but %s has %d", filter_dir.c_str(), C,
                                             probe_path.c_str(), probe.n_chan()));
    if (rec.n_samples() <= 0) throw Error(Exit::usage, filter_dir + "/filtered.json: the filtered recording has no samples");

    const std::string dir = work_dir + "/whiten";
    {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    }
    // The record marks the stage done; drop the old one first so a failed rerun never looks complete.
    remove_stale_output(dir + "/whiten.json");
    if (!options.write_whitened) {  // a copy made with an older matrix would be stale
        remove_stale_output(dir + "/whitened.bin");
        remove_stale_output(dir + "/whitened.json");
    }

    log::info("whitening on %s (%s)", dev.describe().c_str(), dev.why().c_str());
    Summary sum;
    sum.n_channels = C;
    const std::vector<int64_t> batches = covariance_batches(rec.n_samples(), params.batch_size, params.nskip);
    Covariance cov;
    {
        Progress progress(options.progress, "whitening covariance", static_cast<int64_t>(batches.size()), "batches");
        cov = estimate_covariance(
            dev, [&rec](int64_t t0, int64_t n, float* out) { rec.read(t0, n, out); }, C, rec.n_samples(), params,
            &progress);
        progress.finish();
    }
    for (int c = 0; c < C; ++c) {
        const double v = cov.cc[static_cast<size_t>(c) * C + c];
        if (!std::isfinite(v))
            throw Error(Exit::usage, log::format("%s/filtered.bin: channel %d has non-finite samples", filter_dir.c_str(), c));
        if (v == 0.0) sum.flat_channels.push_back(c);
    }
    sum.n_samples_used = cov.n_samples_used;
    sum.batches = cov.batches;
    if (rec.n_samples() < params.batch_size)
        log::info("the filtered recording (%lld samples) is shorter than one batch (batch_size %lld); using all of it",
                  static_cast<long long>(rec.n_samples()), static_cast<long long>(params.batch_size));
    if (!sum.flat_channels.empty()) {
        std::string list;
        for (size_t k = 0; k < sum.flat_channels.size() && k < 10; ++k)
            list += (k ? "," : "") + std::to_string(sum.flat_channels[k]);
        if (sum.flat_channels.size() > 10) list += ",...";
        log::warn("%zu of %d channels are flat (zero variance: %s); their whitened samples stay zero",
                  sum.flat_channels.size(), C, list.c_str());
    }

    const auto nb = neighbourhoods(probe, params.whitening_range);
    sum.neighbourhood_min = C;
    for (const auto& n : nb) {
        sum.neighbourhood_min = std::min(sum.neighbourhood_min, static_cast<int>(n.size()));
        sum.neighbourhood_max = std::max(sum.neighbourhood_max, static_cast<int>(n.size()));
    }
    if (sum.neighbourhood_max < params.whitening_range)
        log::info("whitening_range %d is more than the channels of a shank: neighbourhoods of %d-%d channels",
                  params.whitening_range, sum.neighbourhood_min, sum.neighbourhood_max);
    if (cov.n_samples_used < 10 * static_cast<int64_t>(sum.neighbourhood_max))
        log::warn("the covariance comes from %lld samples only, fewer than 10 x the %d channels of a neighbourhood; "
                  "the whitening will be poorly estimated",
                  static_cast<long long>(cov.n_samples_used), sum.neighbourhood_max);

    const std::vector<double> w = local_zca(cov.cc, C, nb);
    const std::vector<float> w32 = to_float(w);
    for (const float v : w32) KS_ASSERT(std::isfinite(v), "whitening matrix is not finite");
    // The inverse of the matrix as stored (float32), not of its double original.
    const std::vector<double> w_stored(w32.begin(), w32.end());
    const std::vector<float> inv32 = to_float(whitening_inverse(w_stored, C));

    const std::vector<int64_t> shape = {C, C};
    write_npy(dir + "/covariance.npy", shape, cov.cc.data());
    write_npy(dir + "/whiten.npy", shape, w32.data());
    write_npy(dir + "/whiten_inv.npy", shape, inv32.data());
    if (options.write_whitened) write_whitened(dir, rec, w32, params, dev, options.progress);

    Provenance p;
    p.tool = options.tool;
    p.stage = "whiten";
    p.command_line = options.command_line;
    p.settings_json = options.settings_json;
    p.inputs = {file_identity(filter_record), file_identity(filter_dir + "/filtered.json"), file_identity(probe_path)};
    for (const char* f : {"covariance.npy", "whiten.npy", "whiten_inv.npy"}) p.outputs.push_back(file_identity(dir + "/" + f));
    if (options.write_whitened) {
        p.outputs.push_back(file_identity(dir + "/whitened.bin"));
        p.outputs.push_back(file_identity(dir + "/whitened.json"));
    }
    JsonWriter extra(0);
    extra.begin_object();
    extra.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    extra.key("n_samples_used").value(cov.n_samples_used);
    extra.key("batches").value(cov.batches);
    extra.key("neighbourhood_min").value(sum.neighbourhood_min);
    extra.key("neighbourhood_max").value(sum.neighbourhood_max);
    std::vector<int64_t> flat(sum.flat_channels.begin(), sum.flat_channels.end());
    extra.key("flat_channels").value(flat);
    extra.end_object();
    p.extra_json = extra.str();
    write_provenance(dir + "/whiten.json", p);
    log::info("whitening matrix from %zu batches (%lld samples), neighbourhoods of %d-%d channels: %s/whiten.npy",
              cov.batches.size(), static_cast<long long>(cov.n_samples_used), sum.neighbourhood_min,
              sum.neighbourhood_max, dir.c_str());
    return sum;
}

}  // namespace ks::whiten
