// ks-curate: quality metrics and curation of the final units.
#include "ks/cli.hpp"
#include "ks/error.hpp"
#include "ks/stages/curate.hpp"

static const char kUsage[] =
    "Usage: ks-curate --work DIR [common options] [--set KEY=VALUE ...]\n"
    "Computes per-unit quality metrics of DIR/final/ from the sorting and the filtered recording: spike\n"
    "count, firing rate, presence ratio (60-s bins), ISI violations (Hill et al. ratio and fraction below\n"
    "threshold_ms), Kilosort4's contamination, median amplitude and amplitude cutoff, SNR (peak of the\n"
    "mean waveform over the channel's MAD noise), std_norm (spread of single-spike waveforms at the peak),\n"
    "peak channel and position. Applies the curation criteria given as settings (min_spikes, min_rate_hz,\n"
    "min_presence, isi_max, max_amplitude_cutoff, min_snr, max_std_norm; none applied by default) and\n"
    "writes DIR/curate/ (formats/curation.md): metrics.tsv and .npy, the curated sorting, and\n"
    "curation.json, which says for every unit which criterion and value kept or removed it.\n";

int main(int argc, char** argv) {
    ks::ToolSpec spec;
    spec.name = "ks-curate";
    spec.usage = kUsage;
    spec.stages = {"curate"};
    spec.epilog =
        "Examples:\n"
        "  ks-curate --work data.ks --set min_snr=5 --set isi_max=0.5 --set min_presence=0.9\n"
        "  ks-score --gt sim --sorting data.ks/curate      # the curated units\n";
    return ks::run_tool(spec, argc, argv, [](ks::Cli& cli) {
        if (cli.work_dir().empty()) throw ks::Error(ks::Exit::usage, "--work DIR is required");
        const auto criteria = ks::curate::Criteria::from(cli.settings());
        ks::curate::RunOptions opt;
        opt.tool = cli.tool();
        opt.command_line = cli.command_line();
        opt.settings_json = cli.settings().to_json("curate");
        opt.progress = cli.progress_mode();
        ks::curate::run(cli.work_dir(), criteria, opt);
    });
}
