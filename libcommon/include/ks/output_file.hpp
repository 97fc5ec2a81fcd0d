#pragma once
// Atomic outputs: write "<path>.partial", fsync, rename onto <path> on commit(). Destroyed
// without commit() (error, exception), the partial file is removed; a SIGKILL leaves only a
// ".partial", which no reader takes as complete.
#include <cstdint>
#include <cstdio>
#include <string>

namespace ks {

class OutputFile {
public:
    explicit OutputFile(const std::string& path);  // throws Error(usage/resources) naming path
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    // Throws Error(resources) on a failed write (disk full), naming the file.
    void write(const void* data, std::size_t n);
    void write(const std::string& s) { write(s.data(), s.size()); }
    void seek(int64_t offset);   // absolute position (for header rewrites)
    int64_t tell() const;
    void commit();               // flush, fsync, close, rename; throws Error(resources)
    // Starts writing what was written so far to disk without waiting (large streamed outputs:
    // spreads the final fsync of commit() over the run). Call every few tens of MB.
    void start_writeback();
    const std::string& path() const { return path_; }
    const std::string& partial_path() const { return partial_; }

private:
    std::string path_, partial_;
    std::FILE* f_ = nullptr;
    bool committed_ = false;
};

// Convenience: the whole content at once.
void write_file_atomic(const std::string& path, const std::string& content);

// Removes a former output that a rerun is about to replace (e.g. the stage record, so a failed
// rerun never looks complete); absent files are fine. Logged at debug level.
void remove_stale_output(const std::string& path);

// Copies a file of any size to `to` atomically (OutputFile); throws Error(usage) naming `from`
// when it cannot be read.
void copy_file_atomic(const std::string& from, const std::string& to);

// Reads a whole (small) file; throws Error(usage) naming it when missing or unreadable.
std::string read_text_file(const std::string& path);

}  // namespace ks
