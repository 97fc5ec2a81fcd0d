// ks-match: template matching with the templates ks-cluster learned.
#include <cstdlib>
#include <string>

#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/match.hpp"

static const char kUsage[] =
    "Usage: ks-match --work DIR [--chunk SAMPLES] [common options] [--set KEY=VALUE ...]\n"
    "Finds every spike of the templates learned by ks-cluster (DIR/cluster/) in the whitened,\n"
    "drift-corrected recording by peeling: the best template and time above Th_learned is fitted and\n"
    "subtracted, and the search repeats (up to max_peels passes) so overlapping spikes are found too.\n"
    "Templates are first aligned (trough at nt0min) and near-duplicates merged. Each chunk is read with\n"
    "context and neighbours across its seams are peeled too, so no spike is lost or counted twice there.\n"
    "Writes DIR/match/ (formats/matches.md): spike times, templates, amplitudes and PC features.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-match";
    spec.usage = kUsage;
    spec.stages = {"match"};
    spec.options = {{"--chunk", "SAMPLES", "samples matched at a time (memory); results do not depend on it [batch_size]"}};
    spec.epilog =
        "Outputs (DIR/match/): spike_times.npy, spike_templates.npy, spike_amplitudes.npy, spike_scales.npy,\n"
        "tF.npy (N x nearest_chans x n_pcs), templates_pc.npy, template_chans.npy, template_peak_chan.npy,\n"
        "first_pass_template.npy, match.json (last). Scorable: ks-score --sorting DIR/match uses the templates\n"
        "as units (spike_clusters.npy is not written: ks-cluster --final clusters the matched spikes).\n"
        "Example:\n"
        "  ks-match --work data.ks --set Th_learned=7\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::matchstage::StageParams::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::matchstage::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("match");
        opt.progress = cli.progress_mode();
        if (cli.has("--chunk")) {
            const std::string v = cli.get("--chunk");
            char* end = nullptr;
            const long long c = std::strtoll(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || c < 1000)
                throw ks::Error(ks::Exit::usage, "--chunk " + v + ": expected a number of samples >= 1000");
            opt.chunk = c;
        }
        ks::matchstage::run(cli.work_dir(), params, dev, opt);
    });
}
