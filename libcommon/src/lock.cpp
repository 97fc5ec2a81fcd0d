#include "ks/lock.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <random>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"

namespace ks {
namespace {

std::string read_fd(int fd) {
    std::string s;
    char buf[1024];
    if (lseek(fd, 0, SEEK_SET) < 0) return s;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
}

// Pulls "key": value out of the small lock record without a full JSON parse: a damaged
// record must still give a readable message.
std::string field(const std::string& json, const std::string& key) {
    const std::string pat = "\"" + key + "\":";
    auto p = json.find(pat);
    if (p == std::string::npos) return "";
    p += pat.size();
    while (p < json.size() && json[p] == ' ') ++p;
    if (p < json.size() && json[p] == '"') {
        const auto e = json.find('"', p + 1);
        return e == std::string::npos ? "" : json.substr(p + 1, e - p - 1);
    }
    auto e = json.find_first_of(",}\n", p);
    return json.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

std::string describe_holder(const std::string& rec) {
    const std::string tool = field(rec, "tool"), pid = field(rec, "pid"), host = field(rec, "host"),
                      since = field(rec, "since");
    if (tool.empty() && pid.empty()) return "an unknown process";
    return (tool.empty() ? "a tool" : tool) + " (pid " + pid + (host.empty() ? "" : " on " + host) +
           (since.empty() ? "" : ", since " + since) + ")";
}

std::string make_token() {
    std::random_device rd;
    return log::format("%08x%08x%08x", rd(), rd(), static_cast<unsigned>(getpid()));
}

}  // namespace

WorkLock::WorkLock(const std::string& work_dir, const std::string& tool) {
    if (mkdir(work_dir.c_str(), 0777) != 0 && errno != EEXIST)
        throw Error(errno == ENOSPC ? Exit::resources : Exit::usage, errno_message("cannot create work folder " + work_dir));
    struct stat st {};
    if (stat(work_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Exit::usage, work_dir + ": the work folder is not a directory");
    path_ = work_dir + "/.lock";

    for (int attempt = 0; attempt < 20; ++attempt) {
        const int fd = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) throw Error(Exit::usage, errno_message("cannot open lock file " + path_));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            const std::string rec = read_fd(fd);
            close(fd);
            if (err != EWOULDBLOCK) throw Error(Exit::environment, "cannot lock " + path_ + ": " + std::strerror(err));
            const char* env = std::getenv("KS_LOCK_TOKEN");
            const std::string holder_token = field(rec, "token");
            if (env && !holder_token.empty() && holder_token == env) {
                token_ = holder_token;  // our parent pipeline holds it for us
                log::debug("work folder lock %s held by our pipeline", path_.c_str());
                return;
            }
            throw Error(Exit::locked, work_dir + " is in use by " + describe_holder(rec) +
                                          "; wait for it to finish (a lock left by a process that died is taken over automatically)");
        }
        // We hold a lock on this inode; make sure it is still the file at path_ (the previous
        // holder may have unlinked it between our open and flock).
        struct stat a {}, b {};
        if (fstat(fd, &a) != 0 || stat(path_.c_str(), &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        const std::string previous = read_fd(fd);
        if (!previous.empty())
            log::warn("taking over the lock of %s, which is no longer running (%s)", describe_holder(previous).c_str(),
                      path_.c_str());
        fd_ = fd;
        token_ = make_token();
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        char since[32];
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        gmtime_r(&now, &tm);
        std::strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%SZ", &tm);
        JsonWriter w(0);
        w.begin_object().key("tool").value(tool).key("pid").value(static_cast<int64_t>(getpid()));
        w.key("host").value(std::string(host)).key("since").value(std::string(since)).key("token").value(token_);
        w.end_object();
        const std::string rec = w.str() + "\n";
        if (ftruncate(fd, 0) != 0 || pwrite(fd, rec.data(), rec.size(), 0) != static_cast<ssize_t>(rec.size())) {
            const std::string msg = errno_message("cannot write lock file " + path_);
            fd_ = -1;
            close(fd);
            throw Error(Exit::resources, msg);
        }
        return;
    }
    throw Error(Exit::locked, work_dir + ": could not take the lock after 20 attempts (many processes racing?)");
}

WorkLock::~WorkLock() {
    if (fd_ < 0) return;
    // Empty record before unlink: a process that opened the old inode sees no holder.
    if (ftruncate(fd_, 0) != 0) {}
    unlink(path_.c_str());
    flock(fd_, LOCK_UN);
    close(fd_);
}

}  // namespace ks
