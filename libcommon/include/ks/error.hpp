#pragma once
// The one exception type of ks-tools, and the exit codes every tool shares.
#include <stdexcept>
#include <string>

namespace ks {

// Exit codes: one meaning each (README "Exit codes", formats/README.md).
enum class Exit : int {
    ok = 0,
    internal = 1,     // a bug: unexpected exception or failed KS_ASSERT
    usage = 2,        // bad option or setting; malformed or inconsistent input file
    unsortable = 3,   // valid input that cannot be sorted (no usable channels, too few spikes)
    environment = 4,  // --device cuda without a GPU, missing library
    resources = 5,    // out of memory, disk full, failed write
    locked = 6,       // another run holds the work folder's lock
};

const char* exit_name(Exit code);

// Thrown where a problem is found; caught only in run_tool, which prints
// "<tool>: error: <message>" and returns the code.
class Error : public std::runtime_error {
public:
    Error(Exit code, const std::string& message) : std::runtime_error(message), code_(code) {}
    Exit code() const { return code_; }

private:
    Exit code_;
};

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

// Guards invariants (bugs), never input.
#define KS_ASSERT(cond, msg)                                                  \
    do {                                                                      \
        if (!(cond)) ::ks::assert_fail(#cond, __FILE__, __LINE__, (msg));     \
    } while (0)

// "path: strerror(errno)" for messages about failed system calls.
std::string errno_message(const std::string& what);

}  // namespace ks
