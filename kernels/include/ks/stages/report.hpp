#pragma once
// ks-report: the sorting report of a work folder (formats/report.md), as SpikeLab writes one:
// sorting_report.md for people, recording_report.json for programs, and pictures drawn without
// Python (ks::plot): each good unit's footprint at its channels' probe positions, the metric
// distributions, and the drift map. Reads the stage records (settings, timings), final/ and
// curate/; refuses a folder another version wrote or one truncated (ks::verify_stage_record).
#include <string>

#include "ks/progress.hpp"

namespace ks::report {

struct RunOptions {
    std::string tool = "ks-report";
    std::string command_line;
    std::string settings_json;   // Settings::to_json("report"), recorded in report.json
    std::string out_dir;     // default <work>/report
    int max_unit_pictures = 2000;   // per-unit footprints beyond this are left out (said in the report)
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_units = 0, n_good = 0, n_pictures = 0;
    std::string out_dir;
};

Summary run(const std::string& work_dir, const RunOptions& options);

}  // namespace ks::report
