#pragma once
// ks-curate (first part of issue 9): per-unit quality metrics of the final units from the sorting and
// the filtered recording, optional curation criteria given as settings, and a curation history that
// says which criterion and value decided each removal. Writes <work>/curate/ (formats/curation.md).
#include <cstdint>
#include <string>
#include <vector>

#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks::curate {

struct Criteria {
    double threshold_ms = 1.5;
    // NaN = not applied.
    double min_spikes, min_rate_hz, isi_max, min_snr, max_std_norm, min_presence, max_amplitude_cutoff;
    // SpikeLab's duplicate merge: units within dist_um (NaN = no merging) whose mean waveforms have a
    // cosine >= merge_cosine (best lag within +-10 samples), both with an ISI-violation fraction <=
    // merge_max_isi, merged greedily by decreasing cosine unless the merged fraction rises by more than
    // merge_max_isi; the larger unit keeps its id; spikes within 0.4 ms of a kept one are dropped.
    double dist_um, merge_cosine = 0.9, merge_max_isi = 0.04;
    static Criteria from(const Settings& settings);
};

// The metrics that need only spike times (tested against closed forms).
// Presence ratio: fraction of the whole 60-s bins from 0 that hold a spike; NaN when duration < 60 s.
double presence_ratio(const std::vector<double>& t_s, double duration_s, double bin_s = 60);
// ISI violations: n = consecutive ISIs < threshold; ratio (Hill et al. 2011) = n T / (2 N^2 t_r);
// fraction = n / N (SpikeLab's "percent" method, as a fraction).
void isi_violations(const std::vector<double>& t_s, double duration_s, double threshold_s, double* ratio,
                    double* fraction);
// Amplitude cutoff (Allen / SpikeInterface <= 0.101): density histogram of the amplitudes (100 bins),
// smoothed (Gaussian, 3 bins); from the mode up, the bin whose density is closest to the lowest bin's;
// the fraction = the area beyond it, capped at 0.5. NaN for fewer than 500 amplitudes.
double amplitude_cutoff(const std::vector<double>& amplitudes);

struct RunOptions {
    std::string tool = "ks-curate";
    std::string command_line;
    std::string settings_json;
    ProgressMode progress = ProgressMode::none;
};

struct Summary {
    int n_units = 0, n_kept = 0;
};

Summary run(const std::string& work_dir, const Criteria& criteria, const RunOptions& options);

}  // namespace ks::curate
