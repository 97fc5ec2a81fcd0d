#include "ks/provenance.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <simdjson.h>
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
    w.key("settings").raw(settings);
    write_identities(w, "inputs", p.inputs);
    write_identities(w, "outputs", p.outputs);
    if (!p.extra_json.empty()) w.key("extra").raw(p.extra_json);
    w.end_object();
    write_file_atomic(path, w.str() + "\n");
}

}  // namespace ks
