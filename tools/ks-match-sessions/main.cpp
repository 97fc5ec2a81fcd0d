// ks-match-sessions: the same neurons across recording sessions (Kilomatch-style).
#include <cerrno>
#include <cstdlib>

#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/stages/match_sessions.hpp"

static const char kUsage[] =
    "Usage: ks-match-sessions --out DIR SESSION1 SESSION2 [SESSION3 ...] [options]\n"
    "       ks-match-sessions --out DIR --kilomatch INPUT_DIR [options]\n"
    "Tracks the same neurons across recording sessions of one probe, as Kilomatch does. Sessions are\n"
    "ks-tools work folders sorted through ks-cluster --final (good units, and ks-curate's verdicts when it\n"
    "ran) or Phy folders (good units of cluster_group.tsv; waveforms from the recording params.py names,\n"
    "filtered here), in session order; or pyKilomatch's input folder (channel_locations.npy, waveform_all.npy in uV,\n"
    "session_index.npy from 1, optional peth.npy, spike_times/Unit<k>.npy in ms). Per unit: mean\n"
    "unwhitened waveform on every channel, location (monopolar triangulation), autocorrelogram, ISI\n"
    "histogram. The probe's motion between sessions is estimated and the waveforms corrected for it\n"
    "(kriging); similarities (waveform, ACG, PETH) are weighted by weights learned from the data (HDBSCAN\n"
    "and LDA alternated, no labelled pairs), units are clustered into identities, at most one per session,\n"
    "and auto-curated. Writes pyKilomatch's result set (IdxCluster.npy, ClusterMatrix.npy, MatchedPairs.npy,\n"
    "SimilarityMatrix.npy, ...), units.tsv, identities.tsv and tracking.png (formats/match-sessions.md).\n";

static int int_option(const ks::Cli& cli, const char* name, int lo, int hi, int fallback) {
    if (!cli.has(name)) return fallback;
    const std::string v = cli.get(name);
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi)
        throw ks::Error(ks::Exit::usage, std::string(name) + " " + v + ": expected a whole number from " + std::to_string(lo) + " to " +
                                             std::to_string(hi));
    return static_cast<int>(n);
}

static double float_option(const ks::Cli& cli, const char* name, double lo, double hi, double fallback) {
    if (!cli.has(name)) return fallback;
    const std::string v = cli.get(name);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(x >= lo && x <= hi))
        throw ks::Error(ks::Exit::usage, std::string(name) + " " + v + ": expected a number from " + std::to_string(lo) + " to " +
                                             std::to_string(hi));
    return x;
}

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-match-sessions";
    spec.usage = kUsage;
    spec.uses_work_dir = false;
    spec.takes_lock = false;
    spec.uses_settings = false;
    spec.positional = true;
    spec.positional_help = "SESSION...";
    spec.options = {{"--out", "DIR", "the folder for the results (required)"},
                    {"--kilomatch", "DIR", "read pyKilomatch's input layout instead of work folders"},
                    {"--units", "good|all", "which units of a work folder: Kilosort4-good and kept by ks-curate, or all [good]"},
                    {"--max-spikes", "N", "spikes averaged into each mean waveform [500]"},
                    {"--n-nearest-channels", "N", "channels of the waveform similarity, nearest the peak [38]"},
                    {"--max-distance-um", "X", "units further apart in corrected depth are never matched [100]"},
                    {"--max-shift-um", "X", "largest probe motion between sessions searched for [150]"},
                    {"--n-iter", "N", "HDBSCAN/LDA alternations per round [10]"},
                    {"--no-peth", "", "ignore peth.npy"}};
    spec.epilog =
        "Examples:\n"
        "  ks-match-sessions --out mouse1.match day1.ks day2.ks day3.ks day4.ks\n"
        "  ks-match-sessions --out out/ --kilomatch kilomatch_input/\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        ks::match_sessions::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.out_dir = cli.get("--out");
        opt.kilomatch_dir = cli.get("--kilomatch");
        opt.sessions = cli.positional();
        opt.units = cli.get("--units", "good");
        opt.max_spikes_per_unit = int_option(cli, "--max-spikes", 1, 1000000, 500);
        opt.params.n_nearest_channels = int_option(cli, "--n-nearest-channels", 2, 4096, 38);
        opt.params.max_distance_um = float_option(cli, "--max-distance-um", 1, 10000, 100);
        opt.params.max_shift_um = float_option(cli, "--max-shift-um", 0, 10000, 150);
        opt.params.n_iter = int_option(cli, "--n-iter", 1, 100, 10);
        opt.params.use_peth = !cli.has("--no-peth");
        opt.progress = cli.progress_mode();
        ks::match_sessions::run(opt);
    });
}
