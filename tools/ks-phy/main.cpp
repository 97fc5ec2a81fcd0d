// ks-phy: the Phy template-gui folder of a sorting.
#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/stages/phy.hpp"

static const char kUsage[] =
    "Usage: ks-phy --work DIR [--out PHYDIR] [--dat-path FILE] [common options]\n"
    "Writes the Phy template-gui folder of the sorting in DIR (the units of ks-cluster --final) to\n"
    "DIR/phy/ (or PHYDIR): spike times in samples of the original recording, units, templates,\n"
    "amplitudes, PC features on each unit's channels, similarity, channel map and positions, whitening\n"
    "matrix and inverse, the KSLabel/ContamPct/Amplitude tables and params.py (formats/phy.md), as\n"
    "Kilosort4 does. The folder is written under a temporary name and renamed into place, so it is never\n"
    "half-written, and phy's former cache goes with the former folder.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-phy";
    spec.usage = kUsage;
    spec.stages = {"phy"};
    spec.options = {{"--out", "PHYDIR", "the Phy folder to write [DIR/phy]"},
                    {"--dat-path", "FILE", "the raw recording for params.py [the file ks-filter read]"}};
    spec.epilog =
        "Example:\n"
        "  ks-phy --work data.ks && phy template-gui data.ks/phy/params.py\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        ks::phy::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("phy");
        opt.progress = cli.progress_mode();
        opt.out_dir = cli.get("--out");
        opt.dat_path = cli.get("--dat-path");
        ks::phy::run(cli.work_dir(), opt);
    });
}
