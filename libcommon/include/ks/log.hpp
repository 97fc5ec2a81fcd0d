#pragma once
// Levelled logging to stderr (and to the work folder's log file), one prefix per tool.
// Only tools' main() write to stdout; libcommon and kernels log through here.
#include <string>

namespace ks::log {

enum class Level : int { error = 0, warn = 1, info = 2, debug = 3, trace = 4 };

// Called once by run_tool. `tool` prefixes every line ("ks-filter: warning: ...").
void init(const std::string& tool, Level stderr_level);
Level level();
const std::string& tool_name();

// Also append every message at info level or above to `path` (with a timestamp).
// Failure to open the log file is a warning, not an error.
void open_file(const std::string& path);
void close_file();

void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void trace(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// printf into a std::string (for building messages).
std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace ks::log
