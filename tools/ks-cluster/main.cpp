// ks-cluster: Kilosort4's first clustering of the detected spikes into templates.
#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/cluster.hpp"

static const char kUsage[] =
    "Usage: ks-cluster --work DIR [common options] [--set KEY=VALUE ...]\n"
    "Groups the spikes of DIR/detect/ by position along the probe (centres every 2*dmin in depth;\n"
    "x_centers across, per shank, so no cluster mixes shanks), and clusters each group's PC features\n"
    "with Kilosort4's graph method: a k-nearest-neighbour graph to landmark spikes (cluster_neighbors,\n"
    "cluster_downsampling, max_cluster_subset), k-means++-like seeding (cluster_init_seed), bipartite\n"
    "modularity sweeps, then a merge tree whose splits are kept when weakly connected or bimodal.\n"
    "Writes DIR/cluster/ (formats/clusters.md): labels and the learned templates for ks-match.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-cluster";
    spec.usage = kUsage;
    spec.stages = {"cluster"};
    spec.epilog =
        "Outputs (DIR/cluster/): spike_times.npy, spike_clusters.npy (scorable: ks-score --sorting DIR/cluster),\n"
        "templates_pc.npy (K x C x n_pcs), templates.npy (K x nt x C), cluster_group.npy, cluster.json (last).\n"
        "Example:\n"
        "  ks-cluster --work data.ks --set cluster_neighbors=15\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::clusterstage::StageParams::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::clusterstage::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("cluster");
        opt.progress = cli.progress_mode();
        ks::clusterstage::run(cli.work_dir(), params, dev, opt);
    });
}
