#pragma once
// ks-phy: the Phy template-gui folder of a sorting (formats/phy.md, following Kilosort4's
// save_to_phy and phylib's loader, ../shared/docs/phy-format.md). Reads <work>/final/ (the units),
// <work>/match/ (features), <work>/whiten/, <work>/filter/filtered.json and probe.json; writes the
// whole folder under a temporary name and renames it into place, so a Phy folder is never half-written.
#include <string>

#include "ks/progress.hpp"

namespace ks::phy {

struct RunOptions {
    std::string tool = "ks-phy";
    std::string command_line;
    std::string settings_json;
    std::string out_dir;          // default <work>/phy
    std::string dat_path;         // raw recording for params.py; default: the one ks-filter read
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_units = 0, n_good = 0;
    int64_t n_spikes = 0;
    std::string out_dir;
};

Summary run(const std::string& work_dir, const RunOptions& options);

}  // namespace ks::phy
