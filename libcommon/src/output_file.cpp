#include "ks/output_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks {
namespace {

std::string parent_dir(const std::string& path) {
    const auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

// A failed write is almost always a full disk or quota; say so, since strerror alone
// ("File too large", "Input/output error") does not point users at the fix.
[[noreturn]] void write_failed(const std::string& path, int err) {
    throw Error(Exit::resources, "cannot write " + path + ": " + std::strerror(err) + " (disk full?)");
}

}  // namespace

OutputFile::OutputFile(const std::string& path) : path_(path), partial_(path + ".partial") {
    // Checked before anything is created: the rename at commit() would fail only after all the work.
    if (path.empty() || path.back() == '/') throw Error(Exit::usage, "output path '" + path + "' is not a file name");
    struct stat existing {};
    if (stat(path.c_str(), &existing) == 0 && S_ISDIR(existing.st_mode))
        throw Error(Exit::usage, "cannot write " + path + ": it is a folder; expected a file path");
    // "wb" truncates a .partial left behind by a killed run.
    f_ = std::fopen(partial_.c_str(), "wb");
    if (f_) return;
    const int err = errno;
    const std::string dir = parent_dir(path);
    struct stat st {};
    if (err == ENOENT || err == ENOTDIR) {
        if (stat(dir.c_str(), &st) != 0) throw Error(Exit::usage, "cannot write " + path + ": folder " + dir + " does not exist");
        if (!S_ISDIR(st.st_mode)) throw Error(Exit::usage, "cannot write " + path + ": " + dir + " is not a folder");
    }
    // Permissions and read-only file systems are the user's choice of output place, not a lack of resources.
    const bool user_fixable = err == ENOENT || err == ENOTDIR || err == EACCES || err == EPERM || err == EROFS ||
                              err == EISDIR || err == ENAMETOOLONG;
    throw Error(user_fixable ? Exit::usage : Exit::resources,
                "cannot create " + partial_ + ": " + std::strerror(err));
}

OutputFile::~OutputFile() {
    if (committed_) return;
    if (f_) std::fclose(f_);
    std::remove(partial_.c_str());
}

void OutputFile::write(const void* data, std::size_t n) {
    KS_ASSERT(f_ && !committed_, "write to a closed OutputFile " + path_);
    if (n == 0) return;
    if (std::fwrite(data, 1, n, f_) != n) write_failed(path_, errno);
}

void OutputFile::seek(int64_t offset) {
    KS_ASSERT(f_ && !committed_, "seek in a closed OutputFile " + path_);
    // fseeko flushes buffered data first, so a full disk can surface here.
    if (fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) write_failed(path_, errno);
}

int64_t OutputFile::tell() const {
    KS_ASSERT(f_ && !committed_, "tell on a closed OutputFile " + path_);
    return static_cast<int64_t>(ftello(f_));
}

void OutputFile::start_writeback() {
    KS_ASSERT(f_ && !committed_, "writeback of a closed OutputFile " + path_);
    if (std::fflush(f_) != 0) write_failed(path_, errno);
    // Asynchronous: queues dirty pages for writing and returns. Not an error where unsupported.
    sync_file_range(fileno(f_), 0, 0, SYNC_FILE_RANGE_WRITE);
}

void OutputFile::commit() {
    KS_ASSERT(f_ && !committed_, "commit of a closed OutputFile " + path_);
    // Buffered data and delayed allocation can fail only now: check every step.
    if (std::fflush(f_) != 0) write_failed(path_, errno);
    if (fsync(fileno(f_)) != 0) write_failed(path_, errno);
    std::FILE* f = f_;
    f_ = nullptr;  // closed below whatever happens; the destructor then only removes the partial
    if (std::fclose(f) != 0) write_failed(path_, errno);
    if (std::rename(partial_.c_str(), path_.c_str()) != 0) {
        const int err = errno;
        const bool user_fixable = err == EISDIR || err == ENOTDIR || err == EACCES || err == EPERM || err == EROFS;
        throw Error(user_fixable ? Exit::usage : Exit::resources,
                    "cannot rename " + partial_ + " to " + path_ + ": " + std::strerror(err));
    }
    committed_ = true;
    // Make the rename itself durable; failure here loses nothing already visible, so ignore it.
    const int dfd = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        ::close(dfd);
    }
}

void remove_stale_output(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::remove(path, ec)) log::debug("removed stale %s", path.c_str());
}

void write_file_atomic(const std::string& path, const std::string& content) {
    OutputFile f(path);
    f.write(content);
    f.commit();
}

std::string read_text_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error(Exit::usage, errno_message(path));
    std::string out;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    const bool failed = std::ferror(f);
    const int err = errno;
    std::fclose(f);
    if (failed) throw Error(Exit::usage, path + ": cannot read: " + std::strerror(err));
    return out;
}

void copy_file_atomic(const std::string& from, const std::string& to) {
    std::FILE* in = std::fopen(from.c_str(), "rb");
    if (!in) throw Error(Exit::usage, from + ": cannot read");
    OutputFile out(to);
    std::vector<char> buf(1 << 20);
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0) out.write(buf.data(), n);
    std::fclose(in);
    out.commit();
}

}  // namespace ks
