// ks-report: the sorting report of a work folder (sorting_report.md, recording_report.json, pictures).
#include <cerrno>
#include <cstdlib>

#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/stages/report.hpp"

static const char kUsage[] =
    "Usage: ks-report --work DIR [--out REPORTDIR] [--max-unit-pictures N] [common options]\n"
    "Writes the sorting report of DIR (after ks-curate) into DIR/report/ (formats/report.md):\n"
    "sorting_report.md for people and recording_report.json for programs, with the settings that\n"
    "differ from the defaults, each stage's wall time, CPU time and peak memory, the drift map, unit\n"
    "counts before and after curation and why units were removed, the per-unit metrics table, a\n"
    "picture of the metric distributions, and each good unit's footprint (its mean waveform drawn at\n"
    "its channels' probe positions) as PNG. No Python needed.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-report";
    spec.usage = kUsage;
    spec.stages = {"report"};
    spec.options = {{"--out", "REPORTDIR", "the folder to write the report into [DIR/report]"},
                    {"--max-unit-pictures", "N", "at most N per-unit footprints, the highest-SNR good units [2000]"}};
    spec.epilog =
        "Example:\n"
        "  ks-report --work data.ks      # then open data.ks/report/sorting_report.md\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        ks::report::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("report");
        opt.progress = cli.progress_mode();
        opt.out_dir = cli.get("--out");
        if (cli.has("--max-unit-pictures")) {
            const std::string v = cli.get("--max-unit-pictures");
            char* end = nullptr;
            errno = 0;
            const long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || errno != 0 || n < 0 || n > 1000000)
                throw ks::Error(ks::Exit::usage, "--max-unit-pictures " + v + ": expected a whole number from 0 to 1000000");
            opt.max_unit_pictures = static_cast<int>(n);
        }
        ks::report::run(cli.work_dir(), opt);
    });
}
