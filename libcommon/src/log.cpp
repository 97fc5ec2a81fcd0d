#include "ks/log.hpp"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <unistd.h>

namespace ks::log {
namespace {

struct State {
    std::string tool = "ks";
    Level level = Level::info;
    std::FILE* file = nullptr;
    std::mutex mutex;
};

State& state() {
    static State s;
    return s;
}

std::string vformat(const char* fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n <= 0) return {};
    std::string out(static_cast<std::size_t>(n), '\0');
    std::vsnprintf(out.data(), out.size() + 1, fmt, ap);
    return out;
}

const char* label(Level l) {
    switch (l) {
        case Level::error: return "error: ";
        case Level::warn: return "warning: ";
        case Level::debug: return "debug: ";
        case Level::trace: return "trace: ";
        default: return "";
    }
}

void emit(Level l, const char* fmt, va_list ap) {
    State& s = state();
    const std::string msg = vformat(fmt, ap);
    std::lock_guard<std::mutex> lock(s.mutex);
    if (l <= s.level) {
        std::fprintf(stderr, "%s: %s%s\n", s.tool.c_str(), label(l), msg.c_str());
        std::fflush(stderr);
    }
    if (s.file && l <= Level::info) {
        char stamp[32];
        const std::time_t now = std::time(nullptr);
        std::tm tm{};
        localtime_r(&now, &tm);
        std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
        std::fprintf(s.file, "%s %s[%d]: %s%s\n", stamp, s.tool.c_str(), static_cast<int>(getpid()),
                     label(l), msg.c_str());
        std::fflush(s.file);
    }
}

}  // namespace

void init(const std::string& tool, Level stderr_level) {
    state().tool = tool;
    state().level = stderr_level;
}
Level level() { return state().level; }
const std::string& tool_name() { return state().tool; }

void open_file(const std::string& path) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.file) std::fclose(s.file);
    s.file = std::fopen(path.c_str(), "a");
    if (!s.file) std::fprintf(stderr, "%s: warning: cannot open log file %s\n", s.tool.c_str(), path.c_str());
}

void close_file() {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.file) std::fclose(s.file);
    s.file = nullptr;
}

#define KS_LOG_FN(fn, lvl)                \
    void fn(const char* fmt, ...) {       \
        va_list ap;                       \
        va_start(ap, fmt);                \
        emit(lvl, fmt, ap);               \
        va_end(ap);                       \
    }
KS_LOG_FN(error, Level::error)
KS_LOG_FN(warn, Level::warn)
KS_LOG_FN(info, Level::info)
KS_LOG_FN(debug, Level::debug)
KS_LOG_FN(trace, Level::trace)
#undef KS_LOG_FN

std::string format(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

}  // namespace ks::log
