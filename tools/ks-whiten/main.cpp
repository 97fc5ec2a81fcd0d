// ks-whiten: the whitening matrix (local ZCA, Kilosort4's) from the filtered recording.
#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/stages/whiten.hpp"

static const char kUsage[] =
    "Usage: ks-whiten --work DIR [--write-whitened] [common options] [--set KEY=VALUE ...]\n"
    "Estimates the whitening matrix from the filtered recording: channel covariance from every\n"
    "nskip-th batch, then a local ZCA of each channel over its whitening_range nearest channels of\n"
    "the same shank (Kilosort4's regularisation; whitened noise has about unit variance, so\n"
    "Th_universal, Th_learned and Th_single_ch keep their Kilosort4 meaning). Reads DIR/probe.json\n"
    "and DIR/filter/, writes DIR/whiten/ (formats/whiten.md).\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-whiten";
    spec.usage = kUsage;
    spec.options = {
        {"--write-whitened", "", "also write DIR/whiten/whitened.bin: int16, 200 x whitened, for inspection"},
    };
    spec.stages = {"whiten"};
    spec.epilog =
        "Outputs (DIR/whiten/): whiten.npy (C x C float32, whitened = W @ filtered), whiten_inv.npy\n"
        "(inv(W + 1e-5 I)), covariance.npy (C x C float64), whiten.json (stage record, written last).\n"
        "Example:\n"
        "  ks-whiten --work data.ks --set whitening_range=32\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto params = ks::whiten::Params::from(cli.settings());
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::whiten::RunOptions opt;
        opt.write_whitened = cli.has("--write-whitened");
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("whiten");
        opt.progress = cli.progress_mode();
        ks::whiten::run(cli.work_dir(), params, dev, opt);
    });
}
