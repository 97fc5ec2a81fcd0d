#include "ks/error.hpp"

#include <cerrno>
#include <cstring>

namespace ks {

const char* exit_name(Exit code) {
    switch (code) {
        case Exit::ok: return "ok";
        case Exit::internal: return "internal error";
        case Exit::usage: return "bad usage or input";
        case Exit::unsortable: return "recording cannot be sorted";
        case Exit::environment: return "environment";
        case Exit::resources: return "resources";
        case Exit::locked: return "work folder locked";
    }
    return "unknown";
}

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
    throw Error(Exit::internal, std::string("internal check failed: ") + expr + " (" + file + ":" +
                                    std::to_string(line) + ")" + (msg.empty() ? "" : ": " + msg) +
                                    "; please report this as a bug");
}

std::string errno_message(const std::string& what) {
    return what + ": " + std::strerror(errno);
}

}  // namespace ks
