#pragma once
// ks-inspect's logic: resolve recording, probe, settings and device into a summary, and with
// a work folder record the run configuration (formats/work-folder.md).
#include <string>

#include "ks/cli.hpp"

namespace ks::inspect {

struct Summary {
    std::string text;  // human-readable
    std::string json;  // machine-readable (same content)
};

// Throws Error(usage) for bad inputs, Error(environment) for --device cuda without a GPU.
Summary run(Cli& cli);

std::string settings_listing();
std::string probe_listing();

}  // namespace ks::inspect
