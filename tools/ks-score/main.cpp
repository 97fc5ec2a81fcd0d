// ks-score: how well a sorting recovers the ground truth, with SpikeInterface's definitions
// (formats/score.md).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/output_file.hpp"
#include "ks/score.hpp"

static const char kUsage[] =
    "Usage: ks-score --gt SIMDIR --sorting DIR [--good-only] [--json OUT.json] [options]\n"
    "\n"
    "Scores a spike sorting against ground truth as SpikeInterface's ground-truth comparison does:\n"
    "a sorted spike matches a true spike within +/-0.4 ms; units are paired by an optimal assignment\n"
    "of agreement scores m / (n_true + n_sorted - m); per true unit accuracy, recall and precision;\n"
    "well-detected true units (accuracy >= 0.8); false-positive, redundant and overmerged sorted units.\n"
    "Prints a table on stdout; --json writes the same numbers (formats/score.md).\n"
    "\n"
    "SIMDIR is a ks-sim folder (gt/spike_times.npy, gt/spike_clusters.npy, params.json) or its gt/.\n"
    "DIR is a Phy folder (spike_times.npy, spike_clusters.npy, optional cluster_group.tsv and\n"
    "cluster_KSLabel.tsv), a ks-tools work folder holding phy/, or any folder with spike_times.npy\n"
    "and spike_clusters.npy (sample indices and unit ids).\n";

static double parse_number(const ks::Cli& cli, const std::string& option) {
    const std::string text = cli.get(option);
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(v))
        throw ks::Error(ks::Exit::usage, option + " '" + text + "': expected a number");
    return v;
}

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-score";
    spec.usage = kUsage;
    spec.uses_work_dir = false;
    spec.takes_lock = false;
    spec.uses_settings = false;
    spec.options = {
        {"--gt", "DIR", "ground truth: a ks-sim folder or its gt/ folder (required)"},
        {"--sorting", "DIR", "the sorting: a Phy folder or a work folder with phy/ (required)"},
        {"--good-only", "", "score only units labelled 'good' (cluster_group.tsv, else cluster_KSLabel.tsv)"},
        {"--delta-ms", "MS", "matching tolerance either side, in ms [0.4]"},
        {"--offset-ms", "MS", "flag false-positive units that match a true unit at a constant offset up to MS (0: off) [1]"},
        {"--well-detected", "A", "accuracy at or above which a true unit is well detected [0.8]"},
        {"--fs", "HZ", "sampling rate (default: 'fs' in the ground truth's params.json)"},
        {"--partial-gt", "", "ground truth not exhaustive (hybrid data): no unit classes"},
        {"--json", "FILE", "also write the scores as JSON (atomically)"},
    };
    spec.epilog =
        "Examples:\n"
        "  ks-score --gt sim1 --sorting sim1.ks/phy\n"
        "  ks-score --gt sim1/gt --sorting kilosort4_out --good-only --json scores.json\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        for (const char* required : {"--gt", "--sorting"})
            if (!cli.has(required)) throw ks::Error(ks::Exit::usage, std::string("missing ") + required + " DIR (see --help)");
        ks::score::RunOptions opt;
        opt.gt_dir = cli.get("--gt");
        opt.sorting_dir = cli.get("--sorting");
        opt.good_only = cli.has("--good-only");
        if (cli.has("--fs")) {
            opt.fs_hz = parse_number(cli, "--fs");
            if (opt.fs_hz <= 0) throw ks::Error(ks::Exit::usage, "--fs " + cli.get("--fs") + ": expected a positive number of Hz");
        }
        if (cli.has("--delta-ms")) opt.params.delta_ms = parse_number(cli, "--delta-ms");
        if (cli.has("--offset-ms")) opt.params.offset_ms = parse_number(cli, "--offset-ms");
        if (cli.has("--well-detected")) opt.params.well_detected_score = parse_number(cli, "--well-detected");
        opt.params.exhaustive_gt = !cli.has("--partial-gt");
        opt.command_line = cli.command_line();
        const ks::score::RunOutput out = ks::score::run(opt);
        // The JSON first: if it cannot be written, no complete-looking report goes to stdout.
        if (cli.has("--json")) ks::write_file_atomic(cli.get("--json"), out.json);
        std::fputs(out.table.c_str(), stdout);
    });
}
