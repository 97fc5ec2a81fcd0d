// ks-detect: Kilosort4's universal-template spike detection with per-spike PC features.
#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/detect.hpp"

static const char kUsage[] =
    "Usage: ks-detect --work DIR [common options] [--set KEY=VALUE ...]\n"
    "Detects spikes Kilosort4's way on the whitened, drift-corrected recording: single-channel\n"
    "templates learned from the data (templates_from_data, Th_single_ch, n_templates, n_pcs) placed on a\n"
    "grid of positions along the probe (dmin, dminx, template_sizes x min_template_size,\n"
    "max_channel_distance), threshold Th_universal, local maxima over nearest_templates positions and\n"
    "+-nt0min samples; then each spike's PC features on the nearest_chans channels of its position.\n"
    "Reads DIR/probe.json, DIR/filter/, DIR/whiten/, DIR/drift/; writes DIR/detect/ (formats/detections.md).\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-detect";
    spec.usage = kUsage;
    spec.stages = {"drift", "detect"};
    spec.epilog =
        "Outputs (DIR/detect/): spike_times.npy (trough sample), spike_pos.npy (grid position),\n"
        "spike_amplitudes.npy, spike_depth_um.npy, tF.npy (N x nearest_chans x n_pcs features),\n"
        "wTEMP.npy, wPCA.npy, grid_xy_um.npy, grid_iC.npy, grid_shank.npy, detect.json (record, last).\n"
        "Example:\n"
        "  ks-detect --work data.ks --set Th_universal=8\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::detect::StageParams::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::detect::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("detect");
        opt.progress = cli.progress_mode();
        ks::detect::run(cli.work_dir(), params, dev, opt);
    });
}
