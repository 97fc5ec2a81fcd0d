// ks-sim: writes a simulated recording with its ground truth (formats/ground-truth.md).
#include <string>
#include <utility>
#include <vector>

#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/log.hpp"
#include "ks/sim.hpp"

static const char kUsage[] =
    "Usage: ks-sim --out DIR [--preset NAME] [options]\n"
    "Simulate an extracellular recording with known spikes (ground truth): DIR/recording.bin\n"
    "(int16), probe.json, params.json, sim.json and gt/*.npy (formats/ground-truth.md).";

static const char kEpilog[] =
    "Presets: smoke (32 ch, 30 s), np64 (64 ch, 300 s), np64-drift (np64 with rigid, jitter,\n"
    "step and non-rigid drift), np384 (Neuropixels 1.0, 384 ch, 600 s, mild drift).\n"
    "Drift kinds: none, mixed, or a comma list of rigid, jitter, step, nonrigid.\n"
    "Same seed and options give the same bytes, whatever --threads.\n"
    "Example: ks-sim --preset np64-drift --seed 7 --out sim/np64d\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-sim";
    spec.usage = kUsage;
    spec.uses_work_dir = false;
    spec.takes_lock = false;
    spec.uses_settings = false;  // its own options, not Kilosort settings
    spec.epilog = kEpilog;
    spec.options = {
        {"--out", "DIR", "output folder (created; a former ks-sim output there is replaced)"},
        {"--preset", "NAME", "smoke, np64, np64-drift or np384 [smoke]"},
        {"--probe", "P", "probe file (.json, .prb, .mat) or built-in name, instead of the preset's"},
        {"--duration", "S", "seconds [preset's]"},
        {"--seed", "N", "random seed [1]"},
        {"--n-units", "N", "number of units [density x (probe length + 100 um)]"},
        {"--density", "D", "units per 100 um of depth, placed up to 50 um beyond the probe's ends [10]"},
        {"--drift", "KIND", "none, mixed, or rigid,jitter,step,nonrigid [preset's]"},
        {"--drift-um", "X", "slow rigid drift amplitude, +-X um [30; np384: 10]"},
        {"--step-um", "X", "size of the drift step [20]"},
        {"--jitter-um", "X", "RMS of the fast jitter [2]"},
        {"--sessions", "N", "sessions of the same population: DIR/session_NN/ [1]"},
        {"--session-shift-um", "X", "probe offset between sessions, up to +-X um in depth [50]"},
        {"--turnover", "F", "fraction of units replaced between sessions [0.15]"},
        {"--noise-uv", "X", "noise RMS per channel, uV [10]"},
        {"--noise-corr", "R", "noise correlation of nearest channels [0.3]"},
        {"--noise-common", "F", "fraction of noise variance common to all channels [0.05]"},
        {"--lfp-uv", "X", "RMS of slow field potentials left in the AP band [15]"},
        {"--artifact-rate", "HZ", "large transients on all channels per second [0]"},
        {"--fs", "HZ", "sampling rate [30000]"},
        {"--amp-min", "UV", "smallest unit amplitude [20]"},
        {"--amp-max", "UV", "largest unit amplitude [450]"},
        {"--rate-min", "HZ", "lowest mean firing rate [0.5]"},
        {"--rate-max", "HZ", "highest mean firing rate [30]"},
        {"--uv-per-bit", "X", "scale of recording.bin [2.34375]"},
        {"--n-chan-bin", "N", "rows in recording.bin [max(chanMap)+1]"},
    };
    return ks::run_tool(spec, argc, argv, [&spec](ks::Cli& cli) {
        if (!cli.has("--out")) throw ks::Error(ks::Exit::usage, "--out DIR is required");
        std::vector<std::pair<std::string, std::string>> opts;
        for (const auto& o : spec.options)
            if (cli.has(o.name)) opts.emplace_back(o.name.substr(2), cli.get(o.name));
        ks::sim::Config cfg = ks::sim::config_from_options(opts);
        cfg.command_line = cli.command_line();
        const auto sum = ks::sim::simulate(cfg, cli.get("--out"), cli.progress_mode());
        ks::log::info("done: %d session(s), %d units, %lld spikes, %.1f s", sum.n_sessions, sum.n_units_total,
                      static_cast<long long>(sum.n_spikes), sum.seconds);
    });
}
