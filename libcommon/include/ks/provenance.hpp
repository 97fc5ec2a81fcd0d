#pragma once
// What a stage records about how its outputs were made (formats/provenance.md): tool and
// version, command line, the settings it used, the identity of its inputs and its outputs.
// Makefile.pipeline compares these records, not timestamps, to decide what is stale.
#include <cstdint>
#include <string>
#include <vector>

namespace ks {

// Content identity of a file: size plus a 64-bit hash. Files up to 64 MiB are hashed whole;
// larger ones (raw recordings) as 64 blocks of 64 KiB at evenly spaced offsets, the first and last
// block included ("sampled"), so identifying an 83 GB recording reads 4 MiB.
struct FileIdentity {
    std::string path;
    int64_t size = 0;
    std::string hash;     // 16 hex digits
    bool sampled = false;
};

FileIdentity file_identity(const std::string& path);  // throws Error(usage) naming a missing file

// 64-bit non-cryptographic hash (stable across platforms and versions).
uint64_t hash64(const void* data, std::size_t n, uint64_t seed = 0);
std::string hex64(uint64_t v);

struct Provenance {
    std::string tool;             // "ks-filter"
    std::string stage;            // "filter"
    std::string command_line;
    std::string settings_json;    // the settings this stage depends on (Settings::to_json(stage))
    std::vector<FileIdentity> inputs;
    std::vector<FileIdentity> outputs;
    std::string extra_json;       // optional stage-specific object, "" for none
};

// Writes `path` atomically; version, host, start/end time are filled in here.
void write_provenance(const std::string& path, const Provenance& p);

}  // namespace ks
