// ks-filter: raw recording -> filtered recording (high-pass, common reference, artifact zeroing).
#include <cstdio>

#include "ks/cli.hpp"
#include "ks/device.hpp"
#include "ks/stages/filter.hpp"

static const char kUsage[] =
    "Usage: ks-filter --rec FILE --probe P --work DIR [common options] [--set KEY=VALUE ...]\n"
    "       ks-filter --rec - --probe P --set n_chan_bin=N --stdout [...]   (a filter in a pipe)\n"
    "\n"
    "Filters the probe's channels of a raw recording as Kilosort4 does before sorting: the zero-phase\n"
    "3rd-order Butterworth high-pass at highpass_cutoff, then at each sample the median (or mean)\n"
    "across the channels of each shank is subtracted, then any batch with a value beyond\n"
    "artifact_threshold is zeroed. The result does not depend on batch_size or on the device.\n"
    "Writes DIR/filter/filtered.bin (float16, samples x channels), filtered.json and, last, the stage\n"
    "record filter.json (formats/filtered.md).\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-filter";
    spec.usage = kUsage;
    spec.options = {
        {"--rec", "FILE", "raw recording (.bin, .dat, ...; SpikeGLX .meta / Open Ephys structure.oebin beside it are "
                          "read), or - for raw samples on standard input (data_dtype, n_chan_bin from settings); "
                          "repeated: the files are sorted as one recording, in the order given", true},
        {"--probe", "P", "probe: .json, .prb, .mat or a built-in name [DIR/probe.json]"},
        {"--stdout", "", "write the filtered samples to standard output: float32 little-endian, interleaved "
                         "(sample-major, probe channel order), one batch at a time"},
    };
    spec.stages = {"filter"};
    spec.epilog =
        "Examples:\n"
        "  ks-filter --rec run_g0_t0.imec0.ap.bin --probe neuropixels1 --work run.ks\n"
        "  cat data.bin | ks-filter --rec - --probe probe.json --set n_chan_bin=64 --stdout > filtered.f32\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        ks::filter::Inputs in;
        const std::vector<std::string> recs = cli.get_all("--rec");
        if (!recs.empty()) {
            in.rec = recs[0];
            in.more_recs.assign(recs.begin() + 1, recs.end());
        }
        in.probe = cli.get("--probe");
        ks::filter::RunOptions opt;
        opt.work_dir = cli.work_dir();
        opt.stream_out = cli.has("--stdout") ? stdout : nullptr;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.progress = cli.progress_mode();
        const ks::Device dev = ks::Device::open(cli.device_name(), cli.threads());
        ks::filter::run(in, cli.settings(), dev, opt);
    });
}
