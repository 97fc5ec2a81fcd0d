// Probe readers (formats/probe.md): Kilosort4 JSON, .prb (parsed as Python literals, never
// executed), Kilosort .mat channel maps via libmatio, and built-in layouts by name.
#include "ks/probe.hpp"

#include <matio.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "ks/error.hpp"
#include "ks/log.hpp"
#include "pyliteral.hpp"

namespace ks {
namespace {

namespace fs = std::filesystem;

constexpr std::uintmax_t kMaxProbeFileBytes = 64u << 20;  // probe files are KB; refuse runaway inputs
constexpr int kMaxLinearChannels = 100000;
constexpr std::size_t kMaxMatElements = 10000000;  // far beyond any probe

const char kBuiltinList[] = "neuropixels1, neuropixels2, neuropixels2-4shank, linear<N>";

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string base_name(const std::string& path) {
    const std::string b = fs::path(path).filename().string();
    return b.empty() ? path : b;
}

std::string fmt_num(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

bool blank(const std::string& text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

// A whole number within int range, as Kilosort's float-typed arrays (kcoords, sometimes chanMap)
// hold them. Anything else names the array and entry.
int whole(double v, const std::string& origin, const std::string& what, std::size_t k) {
    if (!std::isfinite(v) || v != std::floor(v) || v < INT_MIN || v > INT_MAX)
        throw Error(Exit::usage, origin + ": '" + what + "' entry " + std::to_string(k) + " is " + fmt_num(v) +
                                     ", expected a whole number");
    return static_cast<int>(v);
}

std::string read_probe_file(const std::string& path) {
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (ec || !fs::exists(st))
        throw Error(Exit::usage, path + ": no such probe file, and not a built-in probe (" + kBuiltinList + ")");
    if (fs::is_directory(st)) throw Error(Exit::usage, path + ": is a directory, expected a probe file");
    const auto size = fs::file_size(path, ec);
    if (!ec && size > kMaxProbeFileBytes)
        throw Error(Exit::usage, path + ": " + std::to_string(size) + " bytes is too large for a probe file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Exit::usage, errno_message(path));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw Error(Exit::usage, errno_message(path));
    return ss.str();
}

// ---- Kilosort4 JSON ------------------------------------------------------------------------

std::optional<std::vector<double>> json_numbers(const simdjson::dom::object& obj, const char* key,
                                                const std::string& origin) {
    simdjson::dom::element el;
    if (obj[key].get(el) != simdjson::SUCCESS) return std::nullopt;
    simdjson::dom::array arr;
    if (el.get_array().get(arr) != simdjson::SUCCESS)
        throw Error(Exit::usage, origin + ": '" + key + "' must be an array of numbers");
    std::vector<double> out;
    std::size_t k = 0;
    for (simdjson::dom::element item : arr) {
        double v = 0;
        if (item.get_double().get(v) != simdjson::SUCCESS)
            throw Error(Exit::usage, origin + ": '" + key + "' entry " + std::to_string(k) + " is not a number");
        out.push_back(v);
        ++k;
    }
    return out;
}

std::vector<int> whole_all(const std::vector<double>& v, const std::string& origin, const std::string& what) {
    std::vector<int> out(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) out[k] = whole(v[k], origin, what, k);
    return out;
}

// ---- .mat (libmatio) ------------------------------------------------------------------------

// matio reports through a global logger (stderr by default); library code must not print, and
// every failure that matters becomes our own Error, so its messages only go to debug.
void matio_log(int, char* message) { log::debug("matio: %s", message ? message : ""); }

void init_matio_logging() {
    static std::once_flag once;
    std::call_once(once, [] { Mat_LogInitFunc("ks", matio_log); });
}

struct MatCloser {
    void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFreer {
    void operator()(matvar_t* v) const { Mat_VarFree(v); }
};

const char* mat_class_name(matio_classes c) {
    switch (c) {
        case MAT_C_EMPTY: return "empty";
        case MAT_C_CELL: return "cell array";
        case MAT_C_STRUCT: return "struct";
        case MAT_C_OBJECT: return "object";
        case MAT_C_CHAR: return "char array";
        case MAT_C_SPARSE: return "sparse matrix";
        case MAT_C_FUNCTION: return "function handle";
        case MAT_C_OPAQUE: return "opaque object";
        default: return "numeric array";
    }
}

template <typename T>
void append_as_double(const void* data, std::size_t n, std::vector<double>& out) {
    const T* p = static_cast<const T*>(data);
    for (std::size_t k = 0; k < n; ++k) out.push_back(static_cast<double>(p[k]));
}

// A real numeric vector (row, column or any shape with one non-singleton dimension), any class.
std::vector<double> mat_vector(mat_t* mat, const char* name, const std::string& path) {
    {
        // matio allocates whatever the header claims; a damaged header must not ask for gigabytes.
        std::unique_ptr<matvar_t, VarFreer> info(Mat_VarReadInfo(mat, name));
        if (!info) throw Error(Exit::usage, path + ": cannot read variable '" + name + "' (damaged .mat file?)");
        std::size_t n = 1;
        for (int d = 0; d < info->rank; ++d) {
            const std::size_t dim = info->dims ? info->dims[d] : 0;
            if (dim != 0 && n > kMaxMatElements / dim)
                throw Error(Exit::usage, path + ": '" + name + "' claims more than " +
                                             std::to_string(kMaxMatElements) + " elements (damaged .mat file?)");
            n *= dim;
        }
    }
    std::unique_ptr<matvar_t, VarFreer> var(Mat_VarRead(mat, name));
    if (!var) throw Error(Exit::usage, path + ": cannot read variable '" + name + "' (damaged .mat file?)");
    std::size_t n = 1, non_singleton = 0;
    for (int d = 0; d < var->rank; ++d) {
        n *= var->dims[d];
        if (var->dims[d] > 1) ++non_singleton;
    }
    if (var->class_type == MAT_C_EMPTY || n == 0) return {};
    if (var->isComplex) throw Error(Exit::usage, path + ": '" + name + "' is complex, expected a real vector");
    if (var->class_type < MAT_C_DOUBLE || var->class_type > MAT_C_UINT64)
        throw Error(Exit::usage, path + ": '" + name + "' is a " + mat_class_name(var->class_type) +
                                     ", expected a numeric vector");
    if (non_singleton > 1) {
        std::string shape;
        for (int d = 0; d < var->rank; ++d) shape += (d ? "x" : "") + std::to_string(var->dims[d]);
        throw Error(Exit::usage, path + ": '" + name + "' is a " + shape + " matrix, expected a vector");
    }
    if (!var->data || var->data_size <= 0 || var->nbytes < n * static_cast<std::size_t>(var->data_size))
        throw Error(Exit::usage, path + ": cannot read the data of '" + name + "' (damaged .mat file?)");
    std::vector<double> out;
    out.reserve(n);
    switch (var->data_type) {
        case MAT_T_DOUBLE: append_as_double<double>(var->data, n, out); break;
        case MAT_T_SINGLE: append_as_double<float>(var->data, n, out); break;
        case MAT_T_INT8: append_as_double<int8_t>(var->data, n, out); break;
        case MAT_T_UINT8: append_as_double<uint8_t>(var->data, n, out); break;
        case MAT_T_INT16: append_as_double<int16_t>(var->data, n, out); break;
        case MAT_T_UINT16: append_as_double<uint16_t>(var->data, n, out); break;
        case MAT_T_INT32: append_as_double<int32_t>(var->data, n, out); break;
        case MAT_T_UINT32: append_as_double<uint32_t>(var->data, n, out); break;
        case MAT_T_INT64: append_as_double<int64_t>(var->data, n, out); break;
        case MAT_T_UINT64: append_as_double<uint64_t>(var->data, n, out); break;
        default:
            throw Error(Exit::usage, path + ": '" + name + "' has an unsupported element type (" +
                                         std::to_string(static_cast<int>(var->data_type)) + ")");
    }
    return out;
}

// matio does not notice a v5 file cut inside a variable's data: it returns the variable with
// the missing bytes uninitialised. Walking the top-level element tags (8-byte type + size after
// the 128-byte header) finds any cut before matio reads a byte of data. Compressed elements are
// also covered by zlib's own end-of-stream check inside matio.
void check_mat5_container(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    unsigned char header[128];
    if (!in.read(reinterpret_cast<char*>(header), sizeof header)) return;  // not v5; matio decides
    const bool v5 = header[124] + 256 * header[125] == 0x0100 || header[124] * 256 + header[125] == 0x0100;
    const bool little = header[126] == 'I' && header[127] == 'M';
    const bool big = header[126] == 'M' && header[127] == 'I';
    if (!v5 || !(little || big)) return;  // v4, v7.3 (HDF5 checks itself) or not a .mat at all
    std::error_code ec;
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) return;
    auto u32 = [&](const unsigned char* b) {
        return little ? (uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24)
                      : (uint32_t(b[3]) | uint32_t(b[2]) << 8 | uint32_t(b[1]) << 16 | uint32_t(b[0]) << 24);
    };
    std::uintmax_t offset = 128;
    while (offset < size) {
        unsigned char tag[8];
        in.seekg(static_cast<std::streamoff>(offset));
        if (size - offset < 8 || !in.read(reinterpret_cast<char*>(tag), 8))
            throw Error(Exit::usage, path + ": truncated .mat file (" + std::to_string(size - offset) +
                                         " stray bytes at the end)");
        const uint32_t type = u32(tag), n = u32(tag + 4);
        std::uintmax_t next;
        if (type >> 16) {
            next = offset + 8;  // small data element: the data sit inside the tag
        } else {
            next = offset + 8 + n;
            if (type != 15) next = (next + 7) / 8 * 8;  // uncompressed elements are padded to 8 bytes
        }
        if (next > size)
            throw Error(Exit::usage, path + ": truncated .mat file (the variable at byte " + std::to_string(offset) +
                                         " needs " + std::to_string(next - offset) + " bytes, " +
                                         std::to_string(size - offset) + " are left)");
        offset = next;
    }
}

// ---- built-ins ------------------------------------------------------------------------------

Probe neuropixels1() {
    // Four staggered columns, two sites per 20 µm row: the Kilosort/IMEC phase 3B layout.
    static const double kX[4] = {43, 11, 59, 27};
    Probe p;
    p.name = "neuropixels1";
    for (int i = 0; i < 384; ++i) {
        p.chanMap.push_back(i);
        p.xc.push_back(kX[i % 4]);
        p.yc.push_back(20.0 * (i / 2) + 20.0);
        p.kcoords.push_back(0);
    }
    return p;
}

// Two columns 32 µm apart, 15 µm row pitch; `x0` shifts a whole shank.
void add_np2_shank(Probe& p, int first_row, int n, double x0, int shank) {
    static const double kX[2] = {27, 59};
    for (int j = 0; j < n; ++j) {
        p.chanMap.push_back(first_row + j);
        p.xc.push_back(x0 + kX[j % 2]);
        p.yc.push_back(15.0 * (j / 2));
        p.kcoords.push_back(shank);
    }
}

Probe neuropixels2() {
    Probe p;
    p.name = "neuropixels2";
    add_np2_shank(p, 0, 384, 0.0, 0);
    return p;
}

Probe neuropixels2_4shank() {
    Probe p;
    p.name = "neuropixels2-4shank";
    for (int s = 0; s < 4; ++s) add_np2_shank(p, 96 * s, 96, 250.0 * s, s);
    return p;
}

Probe linear(int n) {
    Probe p;
    p.name = "linear" + std::to_string(n);
    for (int i = 0; i < n; ++i) {
        p.chanMap.push_back(i);
        p.xc.push_back(0.0);
        p.yc.push_back(20.0 * i);
        p.kcoords.push_back(0);
    }
    return p;
}

// Canonical name for a (lower-cased) built-in name or alias; empty if none.
std::string canonical_builtin(const std::string& lname) {
    static const std::map<std::string, std::string> kAliases = {
        {"neuropixels1", "neuropixels1"},
        {"np1", "neuropixels1"},
        {"np1.0", "neuropixels1"},
        {"neuropixels-1.0", "neuropixels1"},
        {"phase3b", "neuropixels1"},
        {"neuropixels2", "neuropixels2"},
        {"np2", "neuropixels2"},
        {"np2.0", "neuropixels2"},
        {"np2-1shank", "neuropixels2"},
        {"neuropixels2-4shank", "neuropixels2-4shank"},
        {"np2-4shank", "neuropixels2-4shank"},
        {"np2.4", "neuropixels2-4shank"},
    };
    const auto it = kAliases.find(lname);
    if (it != kAliases.end()) return it->second;
    if (lname.size() > 6 && lname.compare(0, 6, "linear") == 0 &&
        std::all_of(lname.begin() + 6, lname.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
        return lname;
    return {};
}

}  // namespace

int Probe::n_shanks() const {
    return static_cast<int>(std::set<int>(kcoords.begin(), kcoords.end()).size());
}

Probe Probe::from_json_text(const std::string& text, const std::string& origin) {
    if (blank(text)) throw Error(Exit::usage, origin + ": file is empty, expected a Kilosort4 probe JSON object");
    simdjson::dom::parser parser;
    const simdjson::padded_string padded(text);
    simdjson::dom::element doc;
    if (const auto err = parser.parse(padded).get(doc); err != simdjson::SUCCESS)
        throw Error(Exit::usage, origin + ": not valid JSON (" + simdjson::error_message(err) + ")");
    simdjson::dom::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS)
        throw Error(Exit::usage, origin + ": expected a JSON object with keys chanMap, xc, yc (kcoords, n_chan)");

    auto required = [&](const char* key) {
        auto v = json_numbers(obj, key, origin);
        if (!v) throw Error(Exit::usage, origin + ": missing key '" + key + "' (a Kilosort4 probe has chanMap, xc, yc)");
        return *v;
    };
    Probe p;
    p.name = base_name(origin);
    p.chanMap = whole_all(required("chanMap"), origin, "chanMap");
    p.xc = required("xc");
    p.yc = required("yc");
    if (auto k = json_numbers(obj, "kcoords", origin))
        p.kcoords = whole_all(*k, origin, "kcoords");
    else
        p.kcoords.assign(p.chanMap.size(), 0);

    simdjson::dom::element n_el;
    if (obj["n_chan"].get(n_el) == simdjson::SUCCESS) {
        double n = 0;
        if (n_el.get_double().get(n) != simdjson::SUCCESS)
            throw Error(Exit::usage, origin + ": 'n_chan' must be a number");
        const int n_chan = whole(n, origin, "n_chan", 0);
        // Kilosort4 loading a .mat map stores the channel count before dropping disconnected
        // channels, so its saved JSON may hold n_chan > len(chanMap); fewer is inconsistent.
        if (n_chan < p.n_chan())
            throw Error(Exit::usage, origin + ": 'n_chan' is " + std::to_string(n_chan) + " but 'chanMap' has " +
                                         std::to_string(p.n_chan()) + " entries");
        if (n_chan > p.n_chan())
            log::debug("%s: n_chan %d > %d chanMap entries (disconnected channels dropped)", origin.c_str(), n_chan,
                       p.n_chan());
    }
    p.validate(origin);
    return p;
}

Probe Probe::from_prb_text(const std::string& text, const std::string& origin) {
    using pyliteral::Value;
    if (blank(text))
        throw Error(Exit::usage, origin + ": file is empty, expected `channel_groups = {...}` (a .prb probe file)");
    const auto assignments = pyliteral::parse_assignments(text, origin);
    const Value* groups = nullptr;
    for (const auto& a : assignments)
        if (a.name == "channel_groups") groups = &a.value;  // the last assignment wins, as in Python
    if (!groups)
        throw Error(Exit::usage, origin + ": no `channel_groups = {...}` assignment (expected channel_groups = "
                                          "{0: {'channels': [...], 'geometry': {ch: (x, y), ...}}, ...})");
    auto at = [&](const Value& v) { return origin + ": line " + std::to_string(v.line) + ": "; };
    if (groups->kind != Value::Kind::dict)
        throw Error(Exit::usage, at(*groups) + "channel_groups must be a dict, found a " + groups->type_name());

    // Python dict semantics: a repeated key keeps its last value; groups go in sorted key order.
    std::map<int64_t, const Value*> by_key;
    for (const auto& [key, group] : groups->entries) {
        if (key.kind != Value::Kind::integer)
            throw Error(Exit::usage, at(key) + "channel_groups keys must be integer shank ids, found a " +
                                         key.type_name());
        if (key.i < 0 || key.i > INT_MAX)
            throw Error(Exit::usage, at(key) + "channel_groups key " + std::to_string(key.i) +
                                         " is not a valid shank id (0 or more)");
        by_key[key.i] = &group;
    }

    Probe p;
    p.name = base_name(origin);
    for (const auto& [shank, gp] : by_key) {
        const Value& g = *gp;
        const std::string gname = "group " + std::to_string(shank);
        if (g.kind != Value::Kind::dict)
            throw Error(Exit::usage, at(g) + gname + " must be a dict with 'channels' and 'geometry', found a " +
                                         g.type_name());
        const Value* channels = g.find("channels");
        if (!channels) throw Error(Exit::usage, at(g) + gname + " has no 'channels'");
        if (!channels->is_sequence())
            throw Error(Exit::usage, at(*channels) + gname + ": 'channels' must be a list of integers, found a " +
                                         channels->type_name());
        const Value* geometry = g.find("geometry");
        if (!geometry && !channels->items.empty())
            throw Error(Exit::usage, at(g) + gname + " has no 'geometry' (contact positions are required)");
        if (geometry && geometry->kind != Value::Kind::dict)
            throw Error(Exit::usage, at(*geometry) + gname + ": 'geometry' must be a dict {channel: (x, y)}, found a " +
                                         geometry->type_name());
        for (const Value& ch : channels->items) {
            if (ch.kind != Value::Kind::integer || ch.i < INT_MIN || ch.i > INT_MAX)
                throw Error(Exit::usage, at(ch) + gname + ": 'channels' entries must be integer file rows, found " +
                                             (ch.kind == Value::Kind::integer ? std::to_string(ch.i)
                                                                              : std::string("a ") + ch.type_name()));
            const Value* pos = geometry->find(ch.i);
            if (!pos)
                throw Error(Exit::usage, at(*geometry) + gname + ": channel " + std::to_string(ch.i) +
                                             " has no position in 'geometry'");
            if (!pos->is_sequence() || pos->items.size() != 2 || !pos->items[0].is_number() ||
                !pos->items[1].is_number())
                throw Error(Exit::usage, at(*pos) + gname + ": the position of channel " + std::to_string(ch.i) +
                                             " must be (x, y), two numbers");
            p.chanMap.push_back(static_cast<int>(ch.i));
            p.xc.push_back(pos->items[0].as_double());
            p.yc.push_back(pos->items[1].as_double());
            p.kcoords.push_back(static_cast<int>(shank));
        }
    }
    p.validate(origin);
    return p;
}

Probe Probe::from_mat(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec))
        throw Error(Exit::usage, path + ": no such probe file, and not a built-in probe (" + kBuiltinList + ")");
    if (fs::is_directory(path, ec)) throw Error(Exit::usage, path + ": is a directory, expected a probe file");
    {
        std::ifstream probe_read(path, std::ios::binary);
        if (!probe_read) throw Error(Exit::usage, errno_message(path));
    }
    if (fs::file_size(path, ec) == 0 && !ec)
        throw Error(Exit::usage, path + ": file is empty, expected a MATLAB .mat channel map");
    check_mat5_container(path);
    init_matio_logging();
    std::unique_ptr<mat_t, MatCloser> mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
    if (!mat) throw Error(Exit::usage, path + ": not a MATLAB .mat file (v4, v5/v7 or v7.3 expected)");

    std::set<std::string> names;
    {
        std::size_t n = 0;
        char** dir = Mat_GetDir(mat.get(), &n);
        if (!dir && n != 0) throw Error(Exit::usage, path + ": cannot list the variables (damaged .mat file?)");
        for (std::size_t k = 0; k < n; ++k)
            if (dir[k]) names.insert(dir[k]);
    }
    // A text file can pass matio's version-4 sniffing, so "no variables" also means "not a .mat".
    if (names.empty()) throw Error(Exit::usage, path + ": not a MATLAB .mat file, or one with no variables");
    auto listing = [&] {
        std::string s;
        for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
        return s;
    };
    auto need = [&](const char* name) {
        if (!names.count(name))
            throw Error(Exit::usage, path + ": no variable '" + name + "' (a Kilosort channel map has chanMap, " +
                                         "xcoords, ycoords; this file has " + listing() + ")");
        return mat_vector(mat.get(), name, path);
    };

    std::vector<double> rows;  // 0-based
    std::string rows_name;
    if (names.count("chanMap0ind")) {
        rows = mat_vector(mat.get(), "chanMap0ind", path);
        rows_name = "chanMap0ind";
        if (names.count("chanMap")) {
            const auto one_based = mat_vector(mat.get(), "chanMap", path);
            bool agree = one_based.size() == rows.size();
            for (std::size_t k = 0; agree && k < rows.size(); ++k) agree = one_based[k] - 1 == rows[k];
            if (!agree) log::warn("%s: chanMap0ind and chanMap - 1 differ; using chanMap0ind", path.c_str());
        }
    } else {
        if (!names.count("chanMap"))
            throw Error(Exit::usage, path + ": no variable 'chanMap' or 'chanMap0ind' (this file has " + listing() + ")");
        rows = mat_vector(mat.get(), "chanMap", path);  // MATLAB's 1-based rows
        rows_name = "chanMap";
    }
    const std::vector<double> x = need("xcoords");
    const std::vector<double> y = need("ycoords");
    std::vector<double> k = names.count("kcoords") ? mat_vector(mat.get(), "kcoords", path)
                                                   : std::vector<double>(rows.size(), 0.0);
    std::vector<double> connected = names.count("connected") ? mat_vector(mat.get(), "connected", path)
                                                             : std::vector<double>(rows.size(), 1.0);
    const std::pair<const char*, std::size_t> lengths[] = {
        {"xcoords", x.size()}, {"ycoords", y.size()}, {"kcoords", k.size()}, {"connected", connected.size()}};
    for (const auto& [what, len] : lengths)
        if (len != rows.size())
            throw Error(Exit::usage, path + ": '" + what + "' has " + std::to_string(len) + " entries, '" + rows_name +
                                         "' has " + std::to_string(rows.size()));

    // Kilosort drops channels marked not connected (references, dead sites) before sorting.
    Probe p;
    p.name = base_name(path);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (std::isnan(connected[i]) || connected[i] == 0) continue;
        int row = whole(rows[i], path, rows_name, i);
        if (rows_name == "chanMap") {
            if (row < 1)
                throw Error(Exit::usage, path + ": 'chanMap' entry " + std::to_string(i) + " is " + std::to_string(row) +
                                             "; chanMap is 1-based (MATLAB), 0-based rows go in chanMap0ind");
            row -= 1;
        }
        p.chanMap.push_back(row);
        p.xc.push_back(x[i]);
        p.yc.push_back(y[i]);
        p.kcoords.push_back(whole(k[i], path, "kcoords", i));
    }
    if (p.chanMap.empty() && !rows.empty())
        throw Error(Exit::usage, path + ": no channel is marked connected");
    p.validate(path);
    return p;
}

Probe Probe::builtin(const std::string& name) {
    const std::string c = canonical_builtin(lower(name));
    if (c == "neuropixels1") return neuropixels1();
    if (c == "neuropixels2") return neuropixels2();
    if (c == "neuropixels2-4shank") return neuropixels2_4shank();
    if (!c.empty()) {  // linear<N>
        int n = 0;
        const auto r = std::from_chars(c.data() + 6, c.data() + c.size(), n);
        if (r.ec != std::errc() || n < 1 || n > kMaxLinearChannels)
            throw Error(Exit::usage, name + ": a linear<N> probe needs 1 <= N <= " + std::to_string(kMaxLinearChannels));
        return linear(n);
    }
    throw Error(Exit::usage, name + ": not a built-in probe (" + kBuiltinList + ")");
}

std::vector<std::string> Probe::builtin_probe_names() {
    return {"neuropixels1", "neuropixels2", "neuropixels2-4shank", "linear<N>"};
}

Probe Probe::load(const std::string& path_or_name) {
    const std::string& path = path_or_name;
    const std::string ext = lower(fs::path(path).extension().string());
    if (ext == ".json") return from_json_text(read_probe_file(path), path);
    if (ext == ".prb") return from_prb_text(read_probe_file(path), path);
    if (ext == ".mat") return from_mat(path);
    if (!canonical_builtin(lower(path)).empty()) return builtin(path);
    std::error_code ec;
    if (fs::exists(path, ec))
        throw Error(Exit::usage, path + ": unknown probe file type '" + ext +
                                     "' (expected .json from Kilosort4, .prb or a Kilosort .mat channel map)");
    throw Error(Exit::usage, path + ": no such probe file, and not a built-in probe (" + kBuiltinList + ")");
}

void Probe::validate(const std::string& origin) const {
    const std::size_t n = chanMap.size();
    if (n == 0) throw Error(Exit::usage, origin + ": the probe has no channels");
    const std::pair<const char*, std::size_t> lengths[] = {
        {"xc", xc.size()}, {"yc", yc.size()}, {"kcoords", kcoords.size()}};
    for (const auto& [what, len] : lengths)
        if (len != n)
            throw Error(Exit::usage, origin + ": '" + what + "' has " + std::to_string(len) + " entries, 'chanMap' has " +
                                         std::to_string(n));
    for (std::size_t i = 0; i < n; ++i) {
        if (chanMap[i] < 0)
            throw Error(Exit::usage, origin + ": chanMap[" + std::to_string(i) + "] is " + std::to_string(chanMap[i]) +
                                         ", expected a file row >= 0");
        if (kcoords[i] < 0)
            throw Error(Exit::usage, origin + ": kcoords[" + std::to_string(i) + "] is " + std::to_string(kcoords[i]) +
                                         ", expected a shank id >= 0");
        if (!std::isfinite(xc[i]) || !std::isfinite(yc[i]))
            throw Error(Exit::usage, origin + ": the position of chanMap[" + std::to_string(i) + "] (x=" +
                                         fmt_num(xc[i]) + ", y=" + fmt_num(yc[i]) + ") is not finite");
    }
    // Sorted index orders find repeats in O(n log n); stable sorts report the earliest pair.
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return chanMap[a] < chanMap[b]; });
    for (std::size_t k = 1; k < n; ++k)
        if (chanMap[order[k]] == chanMap[order[k - 1]])
            throw Error(Exit::usage, origin + ": file row " + std::to_string(chanMap[order[k]]) +
                                         " appears twice in chanMap (entries " + std::to_string(order[k - 1]) + " and " +
                                         std::to_string(order[k]) + ")");
    std::iota(order.begin(), order.end(), 0);
    auto site = [&](std::size_t i) { return std::make_tuple(kcoords[i], xc[i], yc[i]); };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return site(a) < site(b); });
    for (std::size_t k = 1; k < n; ++k) {
        const std::size_t a = order[k - 1], b = order[k];
        if (site(a) == site(b))
            throw Error(Exit::usage, origin + ": chanMap[" + std::to_string(a) + "] and chanMap[" + std::to_string(b) +
                                         "] (file rows " + std::to_string(chanMap[a]) + " and " +
                                         std::to_string(chanMap[b]) + ") are both at x=" + fmt_num(xc[a]) +
                                         " y=" + fmt_num(yc[a]) + " µm on shank " + std::to_string(kcoords[a]));
    }
}

void Probe::check_fits(int n_chan_bin, const std::string& recording) const {
    if (n_chan_bin < 1)
        throw Error(Exit::usage, recording + ": n_chan_bin is " + std::to_string(n_chan_bin) + ", expected >= 1");
    if (n_chan() > n_chan_bin)
        throw Error(Exit::usage, recording + ": probe " + name + " has " + std::to_string(n_chan()) +
                                     " channels but n_chan_bin is " + std::to_string(n_chan_bin));
    if (chanMap.empty()) return;
    const int top = *std::max_element(chanMap.begin(), chanMap.end());
    if (top >= n_chan_bin)
        throw Error(Exit::usage, recording + ": probe " + name + " uses file row " + std::to_string(top) +
                                     " but n_chan_bin is " + std::to_string(n_chan_bin) + " (rows 0.." +
                                     std::to_string(n_chan_bin - 1) + ")");
}

std::string Probe::to_json() const {
    // Kilosort4 writes positions and kcoords as floats ("43.0"); so do we, so numpy gives the
    // same dtypes whichever program wrote the file.
    auto real = [](double v) {
        std::string s = fmt_num(v);
        if (s.find_first_of(".eE") == std::string::npos && s.find_first_of("ni") == std::string::npos) s += ".0";
        return s;
    };
    auto array = [](const auto& values, auto&& fmt) {
        std::string s = "[";
        for (std::size_t k = 0; k < values.size(); ++k) {
            if (k) s += ", ";
            s += fmt(values[k]);
        }
        return s + "]";
    };
    auto integer = [](int v) { return std::to_string(v); };
    auto shank = [&](int v) { return real(static_cast<double>(v)); };
    std::string out = "{\n";
    out += "  \"chanMap\": " + array(chanMap, integer) + ",\n";
    out += "  \"xc\": " + array(xc, real) + ",\n";
    out += "  \"yc\": " + array(yc, real) + ",\n";
    out += "  \"kcoords\": " + array(kcoords, shank) + ",\n";
    out += "  \"n_chan\": " + std::to_string(n_chan()) + "\n";
    out += "}\n";
    return out;
}

}  // namespace ks
