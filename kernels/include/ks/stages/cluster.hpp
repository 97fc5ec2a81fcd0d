#pragma once
// ks-cluster: groups spikes by position along the probe, clusters each group's PC features with
// Kilosort4's graph method (kernels/graph_cluster.hpp) and averages the clusters into templates
// (kilosort4-algorithm.md §5). First pass: the detections of ks-detect -> <work>/cluster/.
// Final (--final): the matched spikes of ks-match, positioned at their template's peak channel, with
// the refractory veto on splits, then Kilosort4's post-processing (§7: CCG merges, duplicate removal,
// contamination and the good label, spike positions, amplitudes, template similarity) -> <work>/final/.
// Both are specified in formats/clusters.md.
#include <cstdint>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/graph_cluster.hpp"
#include "ks/probe.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"

namespace ks::clusterstage {

struct StageParams {
    cluster::GraphClusterParams graph;
    int64_t x_centers = 0;      // 0 = from the channel density (Kilosort4's histogram rule), per shank
    // Final mode only.
    double ccg_threshold = 0.25, acg_threshold = 0.2;
    double fragment_similarity = 0.8, fragment_overlap = 0.35;   // second merge pass (post::MergeParams)
    double fragment_max_shift_um = 40;                             // 0: unshifted templates only
    int64_t final_min_group_spikes = 300;   // final mode: smaller position groups stay one cluster
    double redundant_fraction = 0.5;                               // post::redundant_merge; 0 disables
    double good_min_amplitude = 10;       // 'good' needs a template norm of at least this (Th_learned + margin)
    double piece_similarity = 0.9;        // 'good' units that are probable pieces of larger ones (post::probable_pieces) become 'mua'; 0 disables
    bool exact_refractory_test = false;   // 'good' label: exact Poisson tail (false: Kilosort4's normal approx.)
    bool exact_merge_test = true;         // merges: exact Poisson tail (false: Kilosort4's normal approx.)
    double duplicate_spike_ms = 0.25, position_limit_um = 100;
    static StageParams from(const Settings& settings);
};

// §5.1 grouping, per shank so that no group (hence no cluster) mixes shanks: x centres from the
// shank's channel x positions (x_centers given: that many, by 1-D k-means; else one per peak of the
// smoothed histogram), y centres every 2·dmin from min(grid y) + dmin − 1. Each grid position goes
// to the nearest centre of its own shank. Returns the group of every grid position, numbered
// shank-major, then x, then y ascending; *n_groups the number of groups.
std::vector<int> group_positions(const std::vector<double>& grid_x, const std::vector<double>& grid_y,
                                 const std::vector<int>& grid_shank, const Probe& probe, double dmin_um,
                                 int64_t x_centers, int* n_groups);

struct RunOptions {
    std::string tool = "ks-cluster";
    std::string command_line;
    std::string settings_json;
    ProgressMode progress = ProgressMode::none;
    bool final_mode = false;
};

struct Summary {
    int n_groups = 0, n_clusters = 0;
    int64_t n_spikes = 0;
    int64_t largest_group = 0;
    // Final mode.
    int n_before_merges = 0, n_merges = 0, n_good = 0;
    int n_fragment_merges = 0, n_redundant_merges = 0;   // of n_merges
    int n_shifted_fragment_merges = 0;                    // of n_fragment_merges
    int n_mua_low_amplitude = 0;                          // refractory units left 'mua' by good_min_amplitude
    int n_mua_residue = 0;                                // and as residues of the redundant merge
    int n_mua_at_threshold = 0;                           // and by their spikes' median amplitude (same bound)
    int n_mua_piece = 0;                                  // and as probable pieces of larger good units
    int64_t n_redundant_dropped = 0;                      // spikes removed as another unit's, found twice
    int64_t n_duplicates = 0;
};

Summary run(const std::string& work_dir, const StageParams& params, const Device& dev, const RunOptions& options);

}  // namespace ks::clusterstage
