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
// Identity of several files read as one recording, in order: one file's own identity; for more,
// path = the first file's, size = the total, hash = hash64 over each file's "size:hash;" in order.
FileIdentity files_identity(const std::vector<std::string>& paths);

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

// Writes `path` atomically; version, host, end time and the process's resource use so far
// (wall_s since the program started, cpu_s, peak_rss_mib) are filled in here.
void write_provenance(const std::string& path, const Provenance& p);

// What a later stage needs to know about an earlier stage's record.
struct StageRecord {
    std::string path;
    std::string tool, stage, ks_version, finished, command_line;
    std::string settings_json;   // the record's "settings" object, as JSON text
    double wall_s = -1, cpu_s = -1, peak_rss_mib = -1;   // -1: not recorded
    std::string extra_json;      // the record's "extra" object as JSON text, "" when absent
    std::string extra_format, extra_mode;   // extra.format / extra.mode, "" when absent
    int extra_version = 0;
    std::vector<FileIdentity> inputs, outputs;
};

// Parses the record at `path` without checking its outputs. Throws Error(usage) naming the file
// and `rerun` when it is missing, not JSON, not a ks-provenance version 1 record, or lists no outputs.
StageRecord read_stage_record(const std::string& path, const std::string& rerun);

// Reads `<dir>/<stage>.json` and refuses, with Error(usage) naming the file and `rerun` (e.g.
// "rerun ks-cluster --final"), a folder that a later stage must not read:
//  - no record: the stage did not finish (killed, or still running);
//  - not a ks-provenance record of version 1, or its extra.format / extra.version differ from
//    `format` / `version` (another ks-tools version wrote it);
//  - an output the record lists is missing, or its size or hash differs (truncated, or changed
//    after the stage finished). Outputs are looked up by file name in `dir`, so a moved work
//    folder still verifies.
// `format` empty: the record has no extra.format (filter, whiten) and only the rest is checked.
// `mode`, when not empty, must equal extra.mode.
StageRecord verify_stage_record(const std::string& dir, const std::string& stage, const std::string& format,
                                int version, const std::string& rerun, const std::string& mode = "");

}  // namespace ks
