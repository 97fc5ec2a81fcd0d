// ks-drift: probe motion (Kilosort4's drift estimate, or a motion from elsewhere) and the drift map.
#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/drift.hpp"

static const char kUsage[] =
    "Usage: ks-drift --work DIR [--motion PATH] [--no-map] [common options] [--set KEY=VALUE ...]\n"
    "Estimates the motion of the probe relative to the tissue, Kilosort4's way: universal templates\n"
    "learned from the whitened data, spikes detected with them in every batch, a depth x amplitude\n"
    "histogram per batch, rigid alignment to a reference, then nonrigid refinement over 2*nblocks-1\n"
    "overlapping depth blocks. nblocks=0 switches drift correction off. Later stages (ks-detect,\n"
    "ks-match) correct each batch on the fly by kriging interpolation (sig_interp). With --motion the\n"
    "motion is read instead of estimated. Reads DIR/probe.json, DIR/filter/, DIR/whiten/; writes\n"
    "DIR/drift/ (formats/motion.md) and DIR/drift/drift_map.png.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-drift";
    spec.usage = kUsage;
    spec.options = {
        {"--motion", "PATH",
         "use this motion instead of estimating it: a JSON file {time_bins_s, depth_bins_um, displacement_um}, "
         "a SpikeInterface motion folder, or a ks-sim gt/ folder (formats/motion.md)"},
        {"--no-map", "", "do not draw DIR/drift/drift_map.png (with --motion: also skips spike detection)"},
    };
    spec.stages = {"drift"};
    spec.epilog =
        "Outputs (DIR/drift/): dshift.npy (n_batches x n_blocks, µm, Kilosort4's sign), yblk.npy (block\n"
        "centres, µm), spikes_times.npy / spikes_depth_um.npy / spikes_amplitudes.npy (the detected\n"
        "spikes), wTEMP.npy / wPCA.npy (universal templates), drift_map.png, drift.json (record, last).\n"
        "Too few spikes for an estimate: a warning and zero motion (status too_few_spikes), or exit 3\n"
        "when nblocks was set explicitly.\n"
        "Examples:\n"
        "  ks-drift --work data.ks --set nblocks=5\n"
        "  ks-drift --work data.ks --motion dredge_motion/     # SpikeInterface Motion.save() folder\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::drift::StageParams::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::drift::RunOptions opt;
        opt.motion_path = cli.get("--motion");
        opt.draw_map = !cli.has("--no-map");
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("drift");
        opt.progress = cli.progress_mode();
        ks::drift::run(cli.work_dir(), params, dev, opt);
    });
}
