// ks-cluster: Kilosort4's graph clustering, of the detected spikes (first pass) or of the matched
// spikes (--final, with merges and the post-processing Kilosort4 does after sorting).
#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/cluster.hpp"

static const char kUsage[] =
    "Usage: ks-cluster --work DIR [--final] [common options] [--set KEY=VALUE ...]\n"
    "Groups spikes by position along the probe (centres every 2*dmin in depth; x_centers across, per\n"
    "shank, so no cluster mixes shanks), and clusters each group's PC features with Kilosort4's graph\n"
    "method: a k-nearest-neighbour graph to landmark spikes (cluster_neighbors, cluster_downsampling,\n"
    "max_cluster_subset), k-means++-like seeding (cluster_init_seed), bipartite modularity sweeps, then a\n"
    "merge tree whose splits are kept when weakly connected or bimodal.\n"
    "First pass (default): the spikes of DIR/detect/ -> DIR/cluster/, the templates ks-match uses.\n"
    "--final: the spikes of DIR/match/ (at their template's peak channel); a split is vetoed when its two\n"
    "sides share a refractory period; then clusters that look alike (similarity >= 0.5) and share a\n"
    "refractory period are merged (ccg_threshold; only clusters whose own ACG is refractory absorb,\n"
    "acg_threshold), duplicate spikes within duplicate_spike_ms of each other in one unit are removed,\n"
    "and contamination, the good/mua label (acg_threshold; good_amplitude_margin on the template and on\n"
    "its spikes' matched amplitudes, match/spike_amplitudes.npy), spike positions (position_limit),\n"
    "amplitudes and template similarity are computed -> DIR/final/ (formats/clusters.md).\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-cluster";
    spec.usage = kUsage;
    spec.stages = {"cluster", "final"};
    spec.options = {{"--final", "", "cluster the matched spikes of DIR/match/ into the final units (DIR/final/)"}};
    spec.epilog =
        "Outputs, first pass (DIR/cluster/): spike_times.npy, spike_clusters.npy, templates_pc.npy (K x C x n_pcs),\n"
        "templates.npy (K x nt x C), cluster_group.npy, cluster.json (last).\n"
        "Outputs, --final (DIR/final/): spike_times.npy, spike_clusters.npy, spike_templates.npy,\n"
        "spike_match_index.npy, amplitudes.npy, spike_positions.npy, templates_pc.npy, templates.npy,\n"
        "similar_templates.npy, contam_pct.npy, cluster_KSLabel.tsv, cluster_ContamPct.tsv,\n"
        "cluster_Amplitude.tsv, final.json (last). Both are scorable: ks-score --sorting DIR/final.\n"
        "Examples:\n"
        "  ks-cluster --work data.ks --set cluster_neighbors=15\n"
        "  ks-cluster --work data.ks --final --set ccg_threshold=0.3\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::clusterstage::StageParams::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::clusterstage::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.final_mode = cli.has("--final");
        opt.settings_json = cli.settings().to_json(opt.final_mode ? "final" : "cluster");
        opt.progress = cli.progress_mode();
        ks::clusterstage::run(cli.work_dir(), params, dev, opt);
    });
}
