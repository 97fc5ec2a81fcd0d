#include "ks/provenance.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <simdjson.h>
#include <chrono>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/output_file.hpp"
#include "ks/version.hpp"

namespace ks {
namespace {

// hash64 is defined in formats/provenance.md ("Content hash"); keep the two in step, and
// never change either: recorded hashes would stop matching and every stage would rerun.
constexpr uint64_t kP1 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
constexpr uint64_t kP2 = 0xC2B2AE3D27D4EB4Full;  // large odd constants with well-mixed bits
constexpr uint64_t kP3 = 0x165667B19E3779F9ull;

constexpr int64_t kWholeLimit = 64ll << 20;  // files up to this size are hashed whole
constexpr int64_t kBlock = 64 << 10;
constexpr int kBlocks = 64;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian on every host, so a hash recorded on one machine matches on another.
inline uint64_t load_le(const unsigned char* p, std::size_t n = 8) {
    uint64_t w = 0;
    for (std::size_t i = 0; i < n; ++i) w |= static_cast<uint64_t>(p[i]) << (8 * i);
    return w;
}

inline uint64_t lane_round(uint64_t acc, uint64_t word) { return rotl(acc + word * kP2, 31) * kP1; }

// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

// The program's start, near enough: static initialisation of this library.
const auto g_program_start = std::chrono::steady_clock::now();

std::string iso8601_utc_now() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

void pread_all(int fd, unsigned char* buf, int64_t n, int64_t offset, const std::string& path) {
    while (n > 0) {
        const ssize_t got = ::pread(fd, buf, static_cast<std::size_t>(n), static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) throw Error(Exit::usage, errno_message(path + ": cannot read"));
        if (got == 0) throw Error(Exit::usage, path + ": file shrank while it was being read");
        buf += got, n -= got, offset += got;
    }
}

// Settings and extra come from code, not users: anything but an object is a bug.
void check_object(const std::string& text, const char* what) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    const auto err = parser.parse(simdjson::padded_string(text)).get(doc);
    KS_ASSERT(!err && doc.is_object(), std::string("provenance ") + what + " is not a JSON object: " + text);
}

void write_identities(JsonWriter& w, const char* key, const std::vector<FileIdentity>& files) {
    w.key(key).begin_array();
    for (const auto& f : files) {
        w.begin_object().key("path").value(f.path).key("size").value(f.size);
        w.key("hash").value(f.hash).key("sampled").value(f.sampled).end_object();
    }
    w.end_array();
}

}  // namespace

uint64_t hash64(const void* data, std::size_t n, uint64_t seed) {
    const auto* p = static_cast<const unsigned char*>(data);
    // Four independent lanes over 32-byte stripes keep the multipliers busy in parallel.
    uint64_t v[4] = {seed + kP1, seed + 2 * kP1, seed + 3 * kP1, seed + 4 * kP1};
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; ++k) v[k] = lane_round(v[k], load_le(p + i + 8 * k));
    // The length goes in first, so inputs differing only by trailing zero bytes differ.
    uint64_t h = seed ^ (static_cast<uint64_t>(n) * kP3);
    for (int k = 0; k < 4; ++k) h = (h ^ fmix64(v[k])) * kP1;
    for (; i + 8 <= n; i += 8) h = rotl(h ^ (load_le(p + i) * kP2), 27) * kP1 + kP3;
    if (i < n) h = rotl(h ^ (load_le(p + i, n - i) * kP2), 27) * kP1 + kP3;
    return fmix64(h);
}

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

FileIdentity file_identity(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(Exit::usage, errno_message(path));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw Error(Exit::usage, errno_message(path));
    if (!S_ISREG(st.st_mode)) throw Error(Exit::usage, path + ": not a regular file; expected a data file");

    FileIdentity id;
    id.path = path;
    id.size = static_cast<int64_t>(st.st_size);
    id.sampled = id.size > kWholeLimit;
    std::vector<unsigned char> buf(static_cast<std::size_t>(id.sampled ? kBlocks * kBlock : id.size));
    if (!id.sampled) {
        pread_all(fd, buf.data(), id.size, 0, path);
    } else {
        // Block k starts at floor(k * (size - block) / 63): the first and last blocks are
        // included, the rest evenly spaced, so a change anywhere in a header or a tail shows.
        for (int k = 0; k < kBlocks; ++k) {
            const int64_t offset = static_cast<int64_t>(
                static_cast<unsigned __int128>(k) * static_cast<uint64_t>(id.size - kBlock) / (kBlocks - 1));
            pread_all(fd, buf.data() + static_cast<std::size_t>(k) * kBlock, kBlock, offset, path);
        }
    }
    id.hash = hex64(hash64(buf.data(), buf.size()));
    return id;
}

void write_provenance(const std::string& path, const Provenance& p) {
    const std::string settings = p.settings_json.empty() ? "{}" : p.settings_json;
    check_object(settings, "settings");
    if (!p.extra_json.empty()) check_object(p.extra_json, "extra");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");

    JsonWriter w(2);
    w.begin_object();
    w.key("format").value("ks-provenance").key("version").value(1);
    w.key("tool").value(p.tool).key("stage").value(p.stage);
    w.key("ks_version").value(KS_VERSION).key("ks_git_describe").value(KS_GIT_DESCRIBE);
    w.key("command_line").value(p.command_line);
    w.key("host").value(std::string(host)).key("pid").value(static_cast<int64_t>(getpid()));
    w.key("finished").value(iso8601_utc_now());
    {
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_program_start).count();
        const double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        w.key("wall_s").value(std::round(wall * 1000) / 1000);
        w.key("cpu_s").value(std::round(cpu * 1000) / 1000);
        w.key("peak_rss_mib").value(std::round(ru.ru_maxrss / 1024.0 * 10) / 10);   // ru_maxrss is KiB on Linux
    }
    w.key("settings").raw(settings);
    write_identities(w, "inputs", p.inputs);
    write_identities(w, "outputs", p.outputs);
    if (!p.extra_json.empty()) w.key("extra").raw(p.extra_json);
    w.end_object();
    write_file_atomic(path, w.str() + "\n");
}

FileIdentity files_identity(const std::vector<std::string>& paths) {
    KS_ASSERT(!paths.empty(), "files_identity: no files");
    if (paths.size() == 1) return file_identity(paths[0]);
    FileIdentity all;
    all.path = paths[0];
    std::string text;
    for (const auto& p : paths) {
        const FileIdentity id = file_identity(p);
        all.size += id.size;
        all.sampled = all.sampled || id.sampled;
        text += std::to_string(id.size) + ":" + id.hash + ";";
    }
    all.hash = hex64(hash64(text.data(), text.size()));
    return all;
}

StageRecord read_stage_record(const std::string& path, const std::string& rerun) {
    StageRecord r;
    r.path = path;
    struct stat st{};
    const std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
    if (::stat(path.c_str(), &st) != 0)
        throw Error(Exit::usage, path + ": missing, so " + (dir.empty() ? "." : dir) +
                                     "/ is incomplete (the stage did not finish); " + rerun);
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    if (simdjson::padded_string::load(path).get(text) || parser.parse(text).get(root))
        throw Error(Exit::usage, path + ": not valid JSON (truncated?); " + rerun);
    std::string_view sv;
    int64_t pv = 0;
    if (root["format"].get_string().get(sv) || sv != "ks-provenance" || root["version"].get_int64().get(pv) || pv != 1)
        throw Error(Exit::usage, path + ": not a ks-tools stage record of version 1; " + rerun);
    auto str = [&](const char* key) {
        std::string_view v;
        return root[key].get_string().get(v) ? std::string() : std::string(v);
    };
    r.tool = str("tool");
    r.stage = str("stage");
    r.ks_version = str("ks_version");
    r.finished = str("finished");
    r.command_line = str("command_line");
    double d = 0;
    if (!root["wall_s"].get_double().get(d)) r.wall_s = d;
    if (!root["cpu_s"].get_double().get(d)) r.cpu_s = d;
    if (!root["peak_rss_mib"].get_double().get(d)) r.peak_rss_mib = d;
    simdjson::dom::element sub;
    if (!root["settings"].get(sub)) r.settings_json = simdjson::to_string(sub);
    if (!root["extra"].get(sub)) r.extra_json = simdjson::to_string(sub);
    std::string_view ef, em;
    int64_t ev = 0;
    if (!root["extra"]["format"].get_string().get(ef) && !root["extra"]["version"].get_int64().get(ev)) {
        r.extra_format = std::string(ef);
        r.extra_version = static_cast<int>(ev);
    }
    if (!root["extra"]["mode"].get_string().get(em)) r.extra_mode = std::string(em);
    for (const char* list : {"inputs", "outputs"}) {
        simdjson::dom::array arr;
        if (root[list].get_array().get(arr)) {
            if (std::strcmp(list, "outputs") == 0) throw Error(Exit::usage, path + ": no outputs listed; " + rerun);
            continue;
        }
        for (simdjson::dom::element o : arr) {
            std::string_view p, h;
            FileIdentity id;
            if (o["path"].get_string().get(p) || o["size"].get_int64().get(id.size) || o["hash"].get_string().get(h))
                throw Error(Exit::usage, path + ": an entry of " + list + " without path, size or hash; " + rerun);
            id.path = std::string(p);
            id.hash = std::string(h);
            bool sampled = false;
            if (!o["sampled"].get_bool().get(sampled)) id.sampled = sampled;
            (std::strcmp(list, "inputs") == 0 ? r.inputs : r.outputs).push_back(id);
        }
    }
    return r;
}

StageRecord verify_stage_record(const std::string& dir, const std::string& stage, const std::string& format,
                                int version, const std::string& rerun, const std::string& mode) {
    StageRecord r = read_stage_record(dir + "/" + stage + ".json", rerun);
    const bool has_format = !r.extra_format.empty();
    if (!format.empty() && (!has_format || r.extra_format != format || r.extra_version != version))
        throw Error(Exit::usage, r.path + ": written by ks-tools " + (r.ks_version.empty() ? "?" : r.ks_version) + " as " +
                                     (has_format ? r.extra_format + " version " + std::to_string(r.extra_version)
                                                 : "an unknown format") +
                                     "; this " + KS_VERSION + " reads " + format + " version " + std::to_string(version) + "; " + rerun);
    if (!mode.empty() && r.extra_mode != mode)
        throw Error(Exit::usage, r.path + ": not a " + mode + "-mode " + format + " record; " + rerun);
    struct stat st{};
    for (const FileIdentity& o : r.outputs) {
        const size_t slash = o.path.find_last_of('/');
        const std::string local = dir + "/" + (slash == std::string::npos ? o.path : o.path.substr(slash + 1));
        if (::stat(local.c_str(), &st) != 0)
            throw Error(Exit::usage, local + ": missing, though " + r.path + " lists it; " + rerun);
        if (static_cast<int64_t>(st.st_size) != o.size)
            throw Error(Exit::usage, local + ": " + std::to_string(st.st_size) + " bytes, but " + r.path + " recorded " +
                                         std::to_string(o.size) + " (truncated or changed after the stage finished); " + rerun);
        if (file_identity(local).hash != o.hash)
            throw Error(Exit::usage, local + ": its content changed after the stage finished (hash differs from " + r.path +
                                         "); " + rerun);
    }
    return r;
}

}  // namespace ks
