#pragma once
// Progress on long work: a throttled bar when stderr is a terminal, one plain line every few
// seconds otherwise (pipeline logs), nothing when quiet.
#include <chrono>
#include <cstdint>
#include <string>

namespace ks {

enum class ProgressMode { none, bar, lines };

class Progress {
public:
    // `what` names the work ("filtering"), `unit` the counted items ("batches").
    Progress(ProgressMode mode, std::string what, int64_t total, std::string unit);
    ~Progress();
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;

    void advance(int64_t n = 1);
    void finish();  // prints the final line (done, elapsed)
    int64_t done() const { return done_; }

    // The mode run_tool picks: none under -q, bar on a terminal, lines otherwise.
    static ProgressMode default_mode(bool quiet);

private:
    void draw(bool final);
    ProgressMode mode_;
    std::string what_, unit_;
    int64_t total_, done_ = 0;
    bool finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace ks
