// ks-inspect: what ks-tools makes of a recording, a probe and settings, and which device it
// would use. With --work it also records the resolved configuration for the pipeline.
#include <cstdio>

#include "ks/cli.hpp"
#include "inspect.hpp"

static const char kUsage[] =
    "Usage: ks-inspect [--rec FILE] [--probe P] [--params FILE] [--set KEY=VALUE ...] [--json]\n"
    "       ks-inspect --rec FILE --probe P --work DIR     (record the run configuration)\n"
    "       ks-inspect --list-settings | --list-probes\n"
    "\n"
    "Shows the recording (dtype, channels, duration, metadata found beside it), the probe, the\n"
    "settings that differ from Kilosort4's defaults and the compute device. With --work, writes\n"
    "DIR/run.json, DIR/probe.json and DIR/config/<stage>.json (formats/work-folder.md); a config\n"
    "file is rewritten only when its content changes, so Makefile.pipeline reruns exactly the\n"
    "stages whose settings or inputs changed.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-inspect";
    spec.usage = kUsage;
    spec.options = {
        {"--rec", "FILE", "recording (.bin, .dat, .raw, .bat); a SpikeGLX .meta or Open Ephys structure.oebin beside it supplies fs and n_chan_bin; repeated: files sorted as one recording", true},
        {"--probe", "P", "probe: .json (Kilosort4), .prb, .mat (Kilosort channel map) or a built-in name"},
        {"--json", "", "print the summary as JSON on stdout"},
        {"--list-settings", "", "list every setting: default, range, stage and description"},
        {"--list-probes", "", "list the built-in probe names"},
    };
    spec.stages = {"filter"};
    spec.epilog =
        "Examples:\n"
        "  ks-inspect --rec run_g0_t0.imec0.ap.bin --probe neuropixels1\n"
        "  ks-inspect --rec data.bin --probe probe.json --set n_chan_bin=64 --json\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.has("--list-settings")) return (void)std::fputs(ks::inspect::settings_listing().c_str(), stdout);
        if (cli.has("--list-probes")) return (void)std::fputs(ks::inspect::probe_listing().c_str(), stdout);
        const ks::inspect::Summary s = ks::inspect::run(cli);
        std::fputs((cli.has("--json") ? s.json : s.text).c_str(), stdout);
    });
}
