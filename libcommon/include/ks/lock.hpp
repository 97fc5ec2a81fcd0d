#pragma once
// The work-folder lock (formats/work-folder.md): "<work>/.lock", held with flock(2) while a tool
// writes into the folder. The kernel drops the flock when the holder dies, so a lock file
// left by a dead process is detected and taken over with a warning.
#include <string>

namespace ks {

class WorkLock {
public:
    // Creates `work_dir` if needed. Throws Error(locked) naming the holder (tool, pid, host,
    // since) when another live process holds it. When the environment variable KS_LOCK_TOKEN
    // equals the holder's token, the caller runs on behalf of the holder (a pipeline that
    // holds the lock for all its stages) and proceeds without taking it.
    WorkLock(const std::string& work_dir, const std::string& tool);
    ~WorkLock();
    WorkLock(const WorkLock&) = delete;
    WorkLock& operator=(const WorkLock&) = delete;

    bool inherited() const { return fd_ < 0; }
    const std::string& token() const { return token_; }
    const std::string& path() const { return path_; }

private:
    std::string path_, token_;
    int fd_ = -1;
};

}  // namespace ks
