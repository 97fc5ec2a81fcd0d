// Metadata beside a raw recording (formats/recording.md, "Metadata"): SpikeGLX .meta files and
// Open Ephys binary structure.oebin. They supply fs, n_chan_bin, the dtype and the µV per bit,
// so users of these acquisition systems need no --set for them.
#include <simdjson.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ks/error.hpp"
#include "ks/log.hpp"
#include "ks/recording.hpp"

namespace ks {
namespace {

namespace fs = std::filesystem;

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view trim(std::string_view s) {
    const char* ws = " \t\r\n";
    const auto b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(ws);
    return s.substr(b, e - b + 1);
}

bool is_regular_file(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Whole-string numbers: "30000", "0.6", "1e3"; anything else (text, "12abc", "") fails.
bool parse_double(std::string_view text, double& out) {
    const std::string s(trim(text));
    if (s.empty()) return false;
    errno = 0;
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return end == s.c_str() + s.size() && errno != ERANGE && std::isfinite(out);
}

bool parse_int(std::string_view text, long long& out) {
    const std::string s(trim(text));
    if (s.empty()) return false;
    errno = 0;
    char* end = nullptr;
    out = std::strtoll(s.c_str(), &end, 10);
    return end == s.c_str() + s.size() && errno != ERANGE;
}

// ---- SpikeGLX ------------------------------------------------------------------------------

// A .meta file: "key=value" lines. Keys keep their leading '~' (~imroTbl, ~snsChanMap).
class MetaFile {
public:
    explicit MetaFile(std::string path) : path_(std::move(path)) {
        std::ifstream in(path_, std::ios::binary);
        if (!in) throw Error(Exit::usage, errno_message(path_ + ": cannot read the SpikeGLX metadata"));
        std::string line;
        int line_no = 0;
        while (std::getline(in, line)) {
            ++line_no;
            const std::string_view l = trim(line);
            if (l.empty()) continue;
            const auto eq = l.find('=');
            if (eq == std::string_view::npos || eq == 0) {
                const std::string shown(l.substr(0, 60));
                throw Error(Exit::usage, log::format("%s: line %d: expected key=value, got \"%s\"", path_.c_str(),
                                                     line_no, shown.c_str()));
            }
            const std::string key(trim(l.substr(0, eq)));
            if (!values_.emplace(key, std::string(trim(l.substr(eq + 1)))).second) {
                throw Error(Exit::usage,
                            log::format("%s: line %d: key %s appears twice", path_.c_str(), line_no, key.c_str()));
            }
        }
        if (in.bad()) throw Error(Exit::usage, errno_message(path_ + ": cannot read the SpikeGLX metadata"));
    }

    const std::string& path() const { return path_; }
    bool has(const std::string& key) const { return values_.count(key) != 0; }
    const std::string* find(const std::string& key) const {
        const auto it = values_.find(key);
        return it == values_.end() ? nullptr : &it->second;
    }

    [[noreturn]] void bad(const std::string& key, const std::string& expected) const {
        const std::string* v = find(key);
        std::string shown = v ? *v : std::string();
        if (shown.size() > 60) shown = shown.substr(0, 57) + "...";  // ~imroTbl lines run to kilobytes
        throw Error(Exit::usage, path_ + ": " + key + "=" + shown + ": expected " + expected);
    }

    std::optional<double> number(const std::string& key) const {
        const std::string* v = find(key);
        if (!v) return std::nullopt;
        double d = 0;
        if (!parse_double(*v, d)) bad(key, "a number");
        return d;
    }
    std::optional<double> positive(const std::string& key) const {
        const auto d = number(key);
        if (d && !(*d > 0)) bad(key, "a positive number");
        return d;
    }
    std::optional<long long> integer(const std::string& key, long long min) const {
        const std::string* v = find(key);
        if (!v) return std::nullopt;
        long long i = 0;
        if (!parse_int(*v, i)) bad(key, "an integer");
        if (i < min) bad(key, "an integer >= " + std::to_string(min));
        return i;
    }
    // Comma-separated integers ("384,0,1").
    std::optional<std::vector<long long>> integer_list(const std::string& key, size_t n) const {
        const std::string* v = find(key);
        if (!v) return std::nullopt;
        std::vector<long long> out;
        std::string_view rest(*v);
        while (true) {
            const auto comma = rest.find(',');
            long long i = 0;
            if (!parse_int(rest.substr(0, comma), i) || i < 0) {
                bad(key, std::to_string(n) + " comma-separated counts");
            }
            out.push_back(i);
            if (comma == std::string_view::npos) break;
            rest = rest.substr(comma + 1);
        }
        if (out.size() != n) bad(key, std::to_string(n) + " comma-separated counts");
        return out;
    }

private:
    std::string path_;
    std::map<std::string, std::string> values_;
};

// Gain of the first channel in ~imroTbl: "(header)(entry)(entry)...". Neuropixels 1.0 entries
// have six fields "chan bank ref apGain lfGain hpFilt"; 2.0 entries have fewer and a fixed
// gain of 80.
std::optional<double> imro_gain(const MetaFile& meta, bool lf_file) {
    const std::string key = "~imroTbl";
    const std::string* v = meta.find(key);
    if (!v) return std::nullopt;
    const std::string& t = *v;
    std::vector<std::string> groups;
    size_t pos = 0;
    while (pos < t.size()) {
        if (t[pos] == ' ') {
            ++pos;
            continue;
        }
        if (t[pos] != '(') meta.bad(key, "parenthesised groups \"(type,n)(chan ...)...\"");
        const auto close = t.find(')', pos);
        if (close == std::string::npos) meta.bad(key, "parenthesised groups \"(type,n)(chan ...)...\"");
        groups.push_back(t.substr(pos + 1, close - pos - 1));
        pos = close + 1;
    }
    if (groups.size() < 2) meta.bad(key, "a header group and at least one channel entry");
    std::istringstream fields(groups[1]);
    std::vector<double> f;
    std::string word;
    while (fields >> word) {
        double d = 0;
        if (!parse_double(word, d)) meta.bad(key, "numeric fields in each channel entry");
        f.push_back(d);
    }
    if (f.size() < 2) meta.bad(key, "at least two fields in each channel entry");
    if (f.size() != 6) return 80.0;
    const double gain = lf_file ? f[4] : f[3];
    if (!(gain > 0)) meta.bad(key, "a positive gain in the first channel entry");
    return gain;
}

RecordingMetadata parse_spikeglx(const std::string& meta_path, const std::string& bin_path) {
    const MetaFile meta(meta_path);
    RecordingMetadata out;
    out.source = "spikeglx";
    out.source_path = meta_path;
    out.dtype = Dtype::int16;  // SpikeGLX writes int16 only

    std::string type;
    if (const std::string* t = meta.find("typeThis")) {
        type = *t;
    } else if (meta.has("imSampRate")) {
        type = "imec";
    } else if (meta.has("niSampRate")) {
        type = "nidq";
    } else if (meta.has("obSampRate")) {
        type = "obx";
    }
    if (type != "imec" && type != "nidq" && type != "obx") {
        meta.bad("typeThis", "imec, nidq or obx (or an imSampRate/niSampRate key)");
    }
    const std::string stem = meta_path.substr(0, meta_path.size() - 5);  // without ".meta"
    const bool lf_file = ends_with(stem, ".lf");
    const bool ap_file = ends_with(stem, ".ap");

    out.fs = meta.positive(type == "imec" ? "imSampRate" : type == "nidq" ? "niSampRate" : "obSampRate");
    if (const auto n = meta.integer("nSavedChans", 1)) out.n_chan_bin = static_cast<int>(*n);

    if (type == "imec") {
        // snsApLfSy counts the saved AP, LF and sync channels; a saved .ap file has LF = 0
        // and a .lf file AP = 0, so an unnamed file takes both.
        if (const auto counts = meta.integer_list("snsApLfSy", 3)) {
            const long long ephys = lf_file ? (*counts)[1] : ap_file ? (*counts)[0] : (*counts)[0] + (*counts)[1];
            if (out.n_chan_bin && ephys > *out.n_chan_bin) {
                meta.bad("snsApLfSy", "no more ephys channels than nSavedChans=" + std::to_string(*out.n_chan_bin));
            }
            out.n_ephys_channels = static_cast<int>(ephys);
        }
        const auto range_max = meta.positive("imAiRangeMax");
        const auto max_int = meta.integer("imMaxInt", 1);
        const auto gain = imro_gain(meta, lf_file);
        if (range_max && gain) {
            const double imax = max_int ? static_cast<double>(*max_int) : 512.0;  // absent before NP 2.0
            out.uv_per_bit = *range_max / imax / *gain * 1e6;
        }
    }

    if (const auto expected = meta.integer("fileSizeBytes", 0)) {
        struct stat st {};
        if (::stat(bin_path.c_str(), &st) == 0 && static_cast<long long>(st.st_size) != *expected) {
            log::warn("%s: fileSizeBytes=%lld, but %s has %lld bytes; the recording may be incomplete or the "
                      ".meta may belong to another file",
                      meta_path.c_str(), *expected, bin_path.c_str(), static_cast<long long>(st.st_size));
        }
    }
    return out;
}

// ---- Open Ephys binary ---------------------------------------------------------------------

RecordingMetadata parse_openephys(const std::string& oebin, const std::string& stream) {
    simdjson::padded_string json;
    if (const auto err = simdjson::padded_string::load(oebin).get(json)) {
        throw Error(Exit::usage, oebin + ": cannot read the Open Ephys metadata: " + simdjson::error_message(err));
    }
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (const auto err = parser.parse(json).get(root)) {
        throw Error(Exit::usage, oebin + ": not valid JSON (" + simdjson::error_message(err) + ")");
    }
    simdjson::dom::array continuous;
    if (root["continuous"].get(continuous)) {
        throw Error(Exit::usage, oebin + ": no \"continuous\" array; expected an Open Ephys structure.oebin");
    }
    std::string found;
    for (simdjson::dom::element entry : continuous) {
        std::string_view folder;
        if (entry["folder_name"].get(folder)) {
            throw Error(Exit::usage, oebin + ": a \"continuous\" entry has no folder_name string");
        }
        while (!folder.empty() && folder.back() == '/') folder.remove_suffix(1);
        if (folder != stream) {
            found += (found.empty() ? "" : ", ") + std::string(folder);
            continue;
        }
        const std::string where = oebin + ": continuous entry \"" + stream + "\": ";
        RecordingMetadata out;
        out.source = "openephys";
        out.source_path = oebin;
        out.dtype = Dtype::int16;  // Open Ephys binary continuous.dat is always int16
        double rate = 0;
        if (entry["sample_rate"].get_double().get(rate) || !(rate > 0) || !std::isfinite(rate)) {
            throw Error(Exit::usage, where + "sample_rate: expected a positive number (Hz)");
        }
        out.fs = rate;
        double n = 0;
        if (entry["num_channels"].get_double().get(n) || !(n >= 1) || n != std::floor(n) || n > 1e7) {
            throw Error(Exit::usage, where + "num_channels: expected a positive integer");
        }
        out.n_chan_bin = static_cast<int>(n);
        // bit_volts is µV per bit despite its name.
        simdjson::dom::array channels;
        if (!entry["channels"].get(channels) && channels.size() > 0) {
            double bv = 0;
            if (channels.at(0)["bit_volts"].get_double().get(bv) || !(bv > 0) || !std::isfinite(bv)) {
                throw Error(Exit::usage, where + "channels[0].bit_volts: expected a positive number (µV per bit)");
            }
            out.uv_per_bit = bv;
        }
        return out;
    }
    throw Error(Exit::usage, oebin + ": no \"continuous\" entry has folder_name \"" + stream + "\" (it lists: " +
                                 (found.empty() ? std::string("none") : found) + ")");
}

std::string format_value(double v) { return log::format("%.10g", v); }

}  // namespace

RecordingMetadata find_recording_metadata(const std::string& path) {
    if (ends_with(path, ".bin")) {
        const std::string meta = path.substr(0, path.size() - 4) + ".meta";
        if (is_regular_file(meta)) return parse_spikeglx(meta, path);
    }
    // <root>/continuous/<stream>/continuous.dat with <root>/structure.oebin
    const fs::path p = fs::path(path).lexically_normal();
    const fs::path stream_dir = p.parent_path();
    const fs::path continuous_dir = stream_dir.parent_path();
    if (!stream_dir.empty() && continuous_dir.filename() == "continuous") {
        const fs::path oebin = continuous_dir.parent_path() / "structure.oebin";
        if (is_regular_file(oebin.string())) return parse_openephys(oebin.string(), stream_dir.filename().string());
    }
    return {};
}

void apply_metadata(const RecordingMetadata& meta, Settings& settings) {
    if (meta.source.empty()) return;
    const std::string& from = meta.source_path;
    std::string taken;
    auto note = [&](const std::string& name, const std::string& value) {
        taken += (taken.empty() ? "" : ", ") + name + "=" + value;
    };
    auto user_set = [&](const std::string& name) {
        return settings.origin(name) != "default" && !settings.is_none(name);
    };
    if (meta.fs) {
        if (!user_set("fs")) {
            SettingValue v;
            v.none = false;
            v.f = *meta.fs;
            settings.set("fs", v, from);
            note("fs", format_value(*meta.fs));
        } else if (const double user = settings.get_float("fs");
                   std::fabs(user - *meta.fs) > 1e-9 * std::fabs(*meta.fs)) {
            log::warn("setting fs=%s (from %s) differs from %s in %s; using %s", format_value(user).c_str(),
                      settings.origin("fs").c_str(), format_value(*meta.fs).c_str(), from.c_str(),
                      format_value(user).c_str());
        }
    }
    if (meta.n_chan_bin) {
        if (!user_set("n_chan_bin")) {
            SettingValue v;
            v.none = false;
            v.i = *meta.n_chan_bin;
            settings.set("n_chan_bin", v, from);
            note("n_chan_bin", std::to_string(*meta.n_chan_bin));
        } else if (const int64_t user = settings.get_int("n_chan_bin"); user != *meta.n_chan_bin) {
            log::warn("setting n_chan_bin=%lld (from %s) differs from %d in %s; using %lld",
                      static_cast<long long>(user), settings.origin("n_chan_bin").c_str(), *meta.n_chan_bin,
                      from.c_str(), static_cast<long long>(user));
        }
    }
    if (meta.dtype) {
        const std::string name = dtype_name(*meta.dtype);
        if (!user_set("data_dtype")) {
            SettingValue v;
            v.none = false;
            v.s = name;
            settings.set("data_dtype", v, from);
            note("data_dtype", name);
        } else if (const std::string user = settings.get_string("data_dtype"); user != name) {
            log::warn("setting data_dtype=%s (from %s) differs from %s in %s; using %s", user.c_str(),
                      settings.origin("data_dtype").c_str(), name.c_str(), from.c_str(), user.c_str());
        }
    }
    if (!taken.empty()) log::info("from %s: %s", from.c_str(), taken.c_str());
    if (meta.uv_per_bit) log::info("%s: %.6g µV per bit", from.c_str(), *meta.uv_per_bit);
}

void check_probe_against_metadata(const RecordingMetadata& meta, const Probe& probe) {
    if (!meta.n_ephys_channels) return;
    const int n_ephys = *meta.n_ephys_channels;
    const std::string probe_name = probe.name.empty() ? std::string("probe") : probe.name;
    // SpikeGLX saves the ephys rows first and the sync row(s) after them: a probe row at or past
    // the ephys count would sort the sync channel as neural data.
    for (int row : probe.chanMap) {
        if (row >= n_ephys)
            throw Error(Exit::usage, log::format("%s: uses file row %d, but %s says only rows 0..%d hold ephys channels "
                                                 "(row %d is a sync/non-ephys channel)",
                                                 probe_name.c_str(), row, meta.source_path.c_str(), n_ephys - 1, row));
    }
    // Fewer is how channel maps leave out reference or broken sites (Kilosort's `connected`),
    // so it is allowed; say how many ephys rows go unsorted so a wrong probe is noticed.
    if (probe.n_chan() < n_ephys)
        log::warn("%s: %d channels, but %s says the file holds %d ephys channels; %d ephys rows will not be sorted",
                  probe_name.c_str(), probe.n_chan(), meta.source_path.c_str(), n_ephys, n_ephys - probe.n_chan());
}

}  // namespace ks
