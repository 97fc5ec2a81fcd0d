#include "ks/progress.hpp"

#include <cstdio>
#include <unistd.h>

#include "ks/log.hpp"

namespace ks {
namespace {
constexpr double kBarRefreshS = 0.1;    // terminal: redraw at most 10 times a second
constexpr double kLineEveryS = 5.0;     // logs: one line every 5 seconds

double seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string hms(double s) {
    if (s < 60) return log::format("%.1f s", s);
    const long t = static_cast<long>(s + 0.5);
    if (t < 3600) return log::format("%ldm%02lds", t / 60, t % 60);
    return log::format("%ldh%02ldm", t / 3600, (t % 3600) / 60);
}
}  // namespace

ProgressMode Progress::default_mode(bool quiet) {
    if (quiet || log::level() < log::Level::info) return ProgressMode::none;
    return isatty(STDERR_FILENO) ? ProgressMode::bar : ProgressMode::lines;
}

Progress::Progress(ProgressMode mode, std::string what, int64_t total, std::string unit)
    : mode_(mode), what_(std::move(what)), unit_(std::move(unit)), total_(total) {
    start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
    // An exception unwinding through here must not leave a half-drawn bar on the terminal.
    if (!finished_ && mode_ == ProgressMode::bar && done_ > 0) std::fputc('\n', stderr);
}

void Progress::advance(int64_t n) {
    done_ += n;
    if (mode_ == ProgressMode::none) return;
    const auto now = std::chrono::steady_clock::now();
    const double since = seconds(now - last_draw_);
    if (since >= (mode_ == ProgressMode::bar ? kBarRefreshS : kLineEveryS)) {
        last_draw_ = now;
        draw(false);
    }
}

void Progress::finish() {
    if (finished_) return;
    finished_ = true;
    if (mode_ != ProgressMode::none) draw(true);
}

void Progress::draw(bool final) {
    const double elapsed = seconds(std::chrono::steady_clock::now() - start_);
    const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 0.0;
    std::string eta;
    if (!final && frac > 0 && frac < 1) eta = ", ETA " + hms(elapsed * (1 - frac) / frac);
    const std::string& tool = log::tool_name();
    if (mode_ == ProgressMode::bar) {
        constexpr int kWidth = 30;
        const int filled = static_cast<int>(frac * kWidth + 0.5);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(kWidth, '.');
        std::fprintf(stderr, "\r%s: %s [%s] %3.0f%% %lld/%lld %s, %s%s\033[K", tool.c_str(), what_.c_str(),
                     bar.c_str(), 100 * frac, static_cast<long long>(done_), static_cast<long long>(total_),
                     unit_.c_str(), hms(elapsed).c_str(), eta.c_str());
        if (final) std::fputc('\n', stderr);
    } else {
        std::fprintf(stderr, "%s: %s %3.0f%% (%lld/%lld %s), %s elapsed%s\n", tool.c_str(), what_.c_str(),
                     100 * frac, static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                     hms(elapsed).c_str(), eta.c_str());
    }
    std::fflush(stderr);
}

}  // namespace ks
