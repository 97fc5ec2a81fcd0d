#include "inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <memory>
#include <fstream>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/output_file.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"
#include "ks/recording.hpp"
#include "ks/settings.hpp"
#include "ks/version.hpp"

namespace ks::inspect {
namespace {

std::string absolute(const std::string& p) {
    if (!p.empty() && p[0] == '/') return p;
    char buf[4096];
    return getcwd(buf, sizeof buf) ? std::string(buf) + "/" + p : p;
}

// Rewrites `path` only when the content differs, so its timestamp tells Make "changed".
bool write_if_changed(const std::string& path, const std::string& content) {
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) {
        try {
            if (read_text_file(path) == content) return false;
        } catch (const Error&) {
        }
    }
    write_file_atomic(path, content);
    return true;
}

// Preflight (as SpikeLab does it) before the heavy stages: is there disk for the outputs, and
// memory? The filtered recording (float16, channels x samples) is most of what a sorting writes;
// the rest (features, templates, Phy folder) is put at a tenth of it plus 64 MiB. A disk too
// small stops the run here with Exit::resources; too little memory is a warning (the stages
// stream, and their peak is hard to bound from here). KS_PREFLIGHT_FREE_MB replaces the free
// space measured (tests).
void preflight(const std::string& work, int64_t n_samples, int n_chan, std::string* text) {
    constexpr double kMiB = 1024.0 * 1024.0;
    const double filtered = static_cast<double>(n_samples) * n_chan * 2;
    double need = 0.1 * filtered + 64 * kMiB;
    struct stat st{};
    const std::string fbin = work + "/filter/filtered.bin";
    const bool filtered_done = ::stat((work + "/filter/filter.json").c_str(), &st) == 0 &&
                               ::stat(fbin.c_str(), &st) == 0 && static_cast<double>(st.st_size) == filtered;
    if (!filtered_done) need += filtered;
    double free_bytes = -1;
    struct statvfs vfs{};
    std::string where = work;   // the work folder, or its nearest existing parent
    while (::statvfs(where.c_str(), &vfs) != 0 && !where.empty() && where != "/" && where != ".") {
        const size_t slash = where.find_last_of('/');
        where = slash == std::string::npos ? "." : slash == 0 ? "/" : where.substr(0, slash);
    }
    if (::statvfs(where.c_str(), &vfs) == 0) free_bytes = static_cast<double>(vfs.f_bavail) * vfs.f_frsize;
    if (const char* e = std::getenv("KS_PREFLIGHT_FREE_MB")) free_bytes = std::atof(e) * kMiB;
    if (free_bytes >= 0 && free_bytes < need)
        throw Error(Exit::resources,
                    log::format("preflight: %s has %.1f GiB free, the sorting needs about %.1f GiB (filter/filtered.bin "
                                "%.1f GiB); free some space or choose another OUT",
                                work.c_str(), free_bytes / (1024 * kMiB), need / (1024 * kMiB), filtered / (1024 * kMiB)));
    double avail = -1;
    std::ifstream mi("/proc/meminfo");
    for (std::string k; mi >> k;) {
        double v = 0;
        std::string unit;
        mi >> v >> unit;
        if (k == "MemAvailable:") avail = v * 1024;
    }
    // The stages' peak grows with the channel count: about 1 GiB at 384 channels (README).
    const double mem_need = (0.25 + 0.75 * n_chan / 384.0) * 1024 * kMiB;
    if (avail >= 0 && avail < mem_need)
        log::warn("preflight: %.1f GiB of memory available, the stages may need about %.1f GiB", avail / (1024 * kMiB),
                  mem_need / (1024 * kMiB));
    *text += log::format("preflight   disk: %.1f GiB needed, %.1f GiB free in %s; memory: %.1f GiB available\n",
                         need / (1024 * kMiB), free_bytes / (1024 * kMiB), work.c_str(), avail / (1024 * kMiB));
}

void make_dir(const std::string& d) {
    if (mkdir(d.c_str(), 0777) != 0 && errno != EEXIST)
        throw Error(errno == ENOSPC || errno == EDQUOT ? Exit::resources : Exit::usage, errno_message("cannot create " + d));
}

}  // namespace

std::string settings_listing() {
    std::string out;
    out += log::format("%-22s %-10s %-12s %-8s %-32s %s\n", "name", "default", "type", "stage", "allowed", "description");
    for (const auto& s : Settings::table()) {
        const char* type = s.type == SettingType::Int ? "int" : s.type == SettingType::Float ? "float"
                         : s.type == SettingType::Bool ? "bool" : s.type == SettingType::FloatList ? "list" : "string";
        std::string allowed;
        if (s.type == SettingType::Int || s.type == SettingType::Float || s.type == SettingType::FloatList) {
            auto num = [](double v) { return std::isinf(v) ? std::string(v > 0 ? "inf" : "-inf") : json_number(v); };
            allowed = "[" + num(s.min) + ", " + num(s.max) + "]";
            for (double e : s.exclude) allowed += " !=" + num(e);
        } else if (!s.choices.empty()) {
            for (const auto& c : s.choices) allowed += (allowed.empty() ? "" : "|") + c;
        } else if (s.type == SettingType::Bool) {
            allowed = "true|false";
        }
        if (s.nullable) allowed += " or None";
        out += log::format("%-22s %-10s %-12s %-8s %-32s %s%s\n", s.name.c_str(),
                           Settings::value_to_string(s, s.default_value).c_str(), type, s.stage.c_str(),
                           allowed.c_str(), s.ks4 ? "" : "[ks-tools] ", s.description.c_str());
    }
    return out;
}

std::string probe_listing() {
    std::string out;
    for (const auto& n : Probe::builtin_probe_names()) {
        if (n.find('<') != std::string::npos) {  // a family such as linear<N>
            out += log::format("%-24s N channels in one column (e.g. linear32)\n", n.c_str());
            continue;
        }
        const Probe p = Probe::builtin(n);
        out += log::format("%-24s %4d channels, %d shank%s\n", n.c_str(), p.n_chan(), p.n_shanks(),
                           p.n_shanks() == 1 ? "" : "s");
    }
    return out;
}

Summary run(Cli& cli) {
    Settings& settings = cli.settings();
    const std::vector<std::string> rec_paths = cli.get_all("--rec");
    const std::string rec_path = rec_paths.empty() ? std::string() : rec_paths[0];
    const std::string probe_spec = cli.get("--probe");
    if (!cli.work_dir().empty() && (rec_path.empty() || probe_spec.empty()))
        throw Error(Exit::usage, "--work needs --rec and --probe (the run configuration names both)");

    RecordingMetadata meta;
    if (!rec_path.empty()) {
        meta = find_recording_metadata(rec_path);
        apply_metadata(meta, settings);
    }
    std::unique_ptr<Probe> probe;
    if (!probe_spec.empty()) probe = std::make_unique<Probe>(Probe::load(probe_spec));
    std::unique_ptr<Recording> rec;
    RecordingInfo rec_info;   // of the whole, when several files are one recording
    if (!rec_path.empty()) {
        if (!probe) throw Error(Exit::usage, "--rec needs --probe (which file rows are ephys channels, and where)");
        check_probe_against_metadata(meta, *probe);
        if (rec_paths.size() == 1) {
            rec = std::make_unique<Recording>(rec_path, settings, *probe);
            rec_info = rec->info();
        } else {
            // Several files sorted as one (ks-filter's concatenation): each checked as a recording,
            // tmin/tmax counted on the whole.
            Settings whole(settings);
            whole.set_from_string("tmin=0");
            whole.set_from_string("tmax=inf");
            int64_t total = 0;
            for (const auto& p : rec_paths) {
                Recording r(p, whole, *probe);
                total += r.info().n_samples_file;
                if (!rec) rec = std::make_unique<Recording>(std::move(r));
            }
            rec_info = rec->info();
            rec_info.n_samples_file = total;
            const double tmin = settings.get_float("tmin"), tmax = settings.get_float("tmax");
            rec_info.imin = std::clamp<int64_t>(static_cast<int64_t>(std::llround(std::max(0.0, tmin) * rec_info.fs)), 0, total);
            rec_info.imax = std::isinf(tmax) ? total : std::clamp<int64_t>(static_cast<int64_t>(std::llround(tmax * rec_info.fs)), 0, total);
            if (rec_info.imax <= rec_info.imin)
                throw Error(Exit::usage, "settings tmin/tmax: the sorted range of the " + std::to_string(rec_paths.size()) +
                                             " files is empty");
        }
    }
    const Device dev = Device::open(cli.device_name(), cli.threads());

    Summary s;
    JsonWriter j(2);
    j.begin_object();
    j.key("format").value("ks-inspect").key("ks_version").value(std::string(KS_VERSION));
    std::string& t = s.text;
    FileIdentity id;
    if (rec) {
        const RecordingInfo& ri = rec_info;
        id = files_identity(rec_paths);
        t += log::format("recording   %s\n", ri.path.c_str());
        for (size_t k = 1; k < rec_paths.size(); ++k) t += log::format("          + %s\n", rec_paths[k].c_str());
        t += log::format("            %s, %d channels in the file, %.6g Hz, %lld samples (%.2f s)\n", dtype_name(ri.dtype),
                         ri.n_chan_bin, ri.fs, static_cast<long long>(ri.n_samples_file),
                         static_cast<double>(ri.n_samples_file) / ri.fs);
        t += log::format("            sorted range: samples [%lld, %lld) = %.2f s\n", static_cast<long long>(ri.imin),
                         static_cast<long long>(ri.imax), ri.duration_s());
        if (!meta.source.empty()) t += log::format("            metadata: %s (%s)\n", meta.source_path.c_str(), meta.source.c_str());
        if (meta.uv_per_bit) t += log::format("            %.6g µV per bit\n", *meta.uv_per_bit);
        j.key("recording").begin_object();
        j.key("path").value(absolute(ri.path)).key("dtype").value(std::string(dtype_name(ri.dtype)));
        j.key("n_chan_bin").value(ri.n_chan_bin).key("fs").value(ri.fs);
        j.key("n_samples_file").value(ri.n_samples_file).key("imin").value(ri.imin).key("imax").value(ri.imax);
        j.key("duration_s").value(ri.duration_s());
        if (rec_paths.size() > 1) {
            j.key("files").begin_array();
            for (const auto& p : rec_paths) j.value(absolute(p));
            j.end_array();
        }
        j.key("identity").begin_object().key("size").value(id.size).key("hash").value(id.hash).key("sampled").value(id.sampled).end_object();
        j.key("metadata").begin_object().key("source").value(meta.source).key("path").value(meta.source_path);
        j.key("uv_per_bit");
        if (meta.uv_per_bit) j.value(*meta.uv_per_bit); else j.null();
        j.end_object();
        j.end_object();
    }
    if (probe) {
        double ymin = INFINITY, ymax = -INFINITY;
        for (double y : probe->yc) ymin = std::min(ymin, y), ymax = std::max(ymax, y);
        t += log::format("probe       %s: %d channels, %d shank%s, depth %.0f to %.0f µm\n", probe->name.c_str(),
                         probe->n_chan(), probe->n_shanks(), probe->n_shanks() == 1 ? "" : "s", ymin, ymax);
        j.key("probe").begin_object().key("name").value(probe->name).key("n_chan").value(probe->n_chan());
        j.key("n_shanks").value(probe->n_shanks()).end_object();
    }
    const auto changed = settings.changed();
    t += "settings    ";
    if (changed.empty()) t += "all Kilosort4 defaults\n";
    for (std::size_t i = 0; i < changed.size(); ++i) {
        const SettingSpec* sp = Settings::find(changed[i]);
        t += log::format("%s%s = %s (%s)\n", i ? "            " : "", changed[i].c_str(),
                         Settings::value_to_string(*sp, settings.value(changed[i])).c_str(), settings.origin(changed[i]).c_str());
    }
    t += log::format("device      %s: %s\n", dev.describe().c_str(), dev.why().c_str());
    const GpuInfo& g = gpu_info();
    t += log::format("            CUDA backend %s\n", g.compiled ? "compiled in" : "not compiled in");
    j.key("settings").raw(settings.to_json("", 0));
    j.key("changed").begin_array();
    for (const auto& c : changed) j.value(c);
    j.end_array();
    j.key("device").begin_object().key("kind").value(std::string(dev.is_cuda() ? "cuda" : "cpu"));
    j.key("description").value(dev.describe()).key("why").value(dev.why()).key("cuda_compiled").value(g.compiled).end_object();
    j.end_object();
    s.json = j.str() + "\n";

    if (!cli.work_dir().empty()) {
        const std::string work = cli.work_dir();
        if (rec) preflight(work, rec_info.imax - rec_info.imin, probe->n_chan(), &s.text);
        if (rec && dev.is_cuda()) {
            // GPU memory: the matching and clustering buffers grow with the channels (about 2 GiB at 384).
            const double need_gib = 0.5 + 1.5 * probe->n_chan() / 384.0;
            if (gpu_info().memory_gib < need_gib)
                log::warn("preflight: the GPU has %.1f GiB, the stages may need about %.1f GiB (use DEVICE=cpu if they fail)",
                          gpu_info().memory_gib, need_gib);
            s.text += log::format("            GPU memory: %.1f GiB (about %.1f GiB needed)\n", gpu_info().memory_gib, need_gib);
        }
        write_if_changed(work + "/probe.json", probe->to_json() + "\n");
        write_if_changed(work + "/run.json", s.json);
        make_dir(work + "/config");
        int rewritten = 0;
        for (const auto& stage : pipeline_stages()) {
            JsonWriter c(2);
            c.begin_object().key("stage").value(stage);
            // Content identity, not path or timestamp: touching or moving the file reruns nothing.
            c.key("recording").begin_object().key("size").value(id.size);
            c.key("hash").value(id.hash).key("sampled").value(id.sampled).end_object();
            c.key("probe").raw(probe->to_json());
            c.key("settings").raw(settings.to_json(stage, 2));
            c.end_object();
            rewritten += write_if_changed(work + "/config/" + stage + ".json", c.str() + "\n") ? 1 : 0;
        }
        log::info("run configuration in %s (%d of %zu stage configs changed)", work.c_str(), rewritten, pipeline_stages().size());
    }
    return s;
}

}  // namespace ks::inspect
