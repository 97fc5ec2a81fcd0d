#pragma once
// Scoring a spike sorting against ground truth (ks-score), with the field's standard definitions:
// those of SpikeInterface's ground-truth comparison (compare_sorter_to_ground_truth), restated and
// reimplemented. formats/score.md defines every quantity and the JSON written.
//
//   1. A sorted spike matches a true spike when |t_sorted - t_true| <= delta_samples. Within one
//      (true unit, sorted unit) pair, spikes are paired greedily in time order, each spike used at
//      most once per pair (a maximum matching for this tolerance); m(g, s) is the number of pairs.
//   2. Agreement score(g, s) = m / (n_g + n_s - m).
//   3. Units are paired by an optimal assignment (Hungarian) maximising the sum of agreement scores
//      where scores below match_score count as 0; a pair is kept when its score >= match_score.
//   4. Per true unit: tp = m with its paired unit, fn = n_g - tp, fp = n_s - tp,
//      accuracy = tp / (tp + fn + fp), recall = tp / (tp + fn), precision = tp / (tp + fp)
//      (all 0 for an unpaired unit).
//   5. Well detected: paired with accuracy >= well_detected_score. False-positive, redundant,
//      overmerged and bad sorted units as in formats/score.md.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ks::score {

// A set of spike trains. Spikes whose unit is not listed in `units` are ignored, so filtering
// units (--good-only) is a change of `units` only, and a listed unit may have no spikes.
struct Sorting {
    std::vector<int64_t> t_samples;  // (n_spikes,) sample index from recording start, any order
    std::vector<int64_t> unit_id;    // (n_spikes,) unit of each spike
    std::vector<int64_t> units;      // the units scored, ascending and unique

    // `units` = every id present in `unit_id`. Throws Error(internal) if the lengths differ.
    static Sorting from_spikes(std::vector<int64_t> t_samples, std::vector<int64_t> unit_id);
};

struct Params {
    double delta_ms = 0.4;             // matching tolerance, each side
    double match_score = 0.5;          // minimum agreement for the assignment to pair two units
    double chance_score = 0.1;         // minimum agreement for a "best match"
    double well_detected_score = 0.8;  // minimum accuracy of a well-detected true unit
    double redundant_score = 0.2;      // minimum agreement of a redundant (not false-positive) unit
    double overmerged_score = 0.2;     // agreement above which a true unit counts towards overmerging
    bool exhaustive_gt = true;         // false: false-positive/redundant/overmerged/bad not reported
    // Diagnosis only (changes no figure above): a false-positive unit whose spikes match a true unit's
    // at a constant offset of up to offset_ms (agreement >= match_score once shifted) is flagged: a
    // unit found whole but timed on another feature of the waveform than the ground truth's. 0: off.
    double offset_ms = 1.0;

    // Throws Error(usage) naming the parameter when out of range (thresholds in (0, 1],
    // delta_ms finite and >= 0).
    void validate() const;
};

// delta_ms at fs_hz in whole samples: floor(delta_ms * fs_hz / 1000), as SpikeInterface's
// int(delta_time / 1000 * fs); a product within 1e-9 of an integer counts as that integer.
// Throws Error(usage) when the result is not a sane sample count (>= 1e15 or NaN).
int64_t delta_samples(double delta_ms, double fs_hz);

// Matches between every pair of units sharing at least one match, in one pass over both spike
// lists merged by time: O((n_gt + n_sorted) * w) where w is the number of spikes within
// ±delta_samples of a spike. `gt_index` and `sorted_index` index `units` of each sorting.
struct PairCount {
    int32_t gt_index = 0;
    int32_t sorted_index = 0;
    int64_t matches = 0;
};
// Sorted by (gt_index, sorted_index); pairs with no match are absent.
std::vector<PairCount> count_matches(const Sorting& gt, const Sorting& sorted, int64_t delta_samples);

// The same count for one pair of spike trains, by two pointers (the definition; tests compare
// count_matches against it). `a` and `b` must be sorted ascending.
int64_t count_matches_pair(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                           int64_t delta_samples);

// Optimal assignment (Hungarian / Kuhn-Munkres, O(n^2 m)): `weight` is row-major n_rows x n_cols;
// returns for each row the column assigned (-1 when n_rows > n_cols leaves it out), maximising the
// summed weight over min(n_rows, n_cols) disjoint pairs. Weights must be finite.
std::vector<int> assign_max_weight(const std::vector<double>& weight, int n_rows, int n_cols);

struct GtUnitScore {
    int64_t id = 0;
    int64_t n_spikes = 0;
    std::optional<int64_t> sorted_unit;       // paired sorted unit (assignment), none if unpaired
    int64_t n_sorted_spikes = 0;              // spikes of the paired unit (0 if none)
    int64_t tp = 0, fn = 0, fp = 0;
    double accuracy = 0, recall = 0, precision = 0;
    bool well_detected = false;
    std::optional<int64_t> best_sorted_unit;  // highest agreement, if >= chance_score
    double best_score = 0;                    // its agreement (0 if none)
};

struct SortedUnitScore {
    int64_t id = 0;
    int64_t n_spikes = 0;
    std::optional<int64_t> gt_unit;       // paired true unit (assignment)
    std::optional<int64_t> best_gt_unit;  // highest agreement, if >= chance_score
    double best_score = 0;
    bool well_detected = false;           // paired and its true unit is well detected
    // Meaningful only with exhaustive ground truth (false otherwise):
    bool false_positive = false;
    bool redundant = false;
    bool overmerged = false;
    bool bad = false;                     // unpaired
    // False-positive units only (Params::offset_ms): the true unit it matches at a constant offset.
    std::optional<int64_t> offset_gt_unit;
    int64_t offset_samples = 0;           // sorted time - true time
    double offset_score = 0;              // agreement at that offset
};

struct PairScore {
    int64_t gt_unit = 0;
    int64_t sorted_unit = 0;
    int64_t matches = 0;
    double agreement = 0;
};

struct Result {
    Params params;
    double fs_hz = 0;
    int64_t delta_samples = 0;
    std::vector<GtUnitScore> gt;          // one per ground-truth unit, ascending id
    std::vector<SortedUnitScore> sorted;  // one per sorted unit, ascending id
    std::vector<PairScore> pairs;         // agreement >= chance_score, by (gt_unit, sorted_unit)

    int64_t n_well_detected = 0;
    int64_t n_false_positive = 0, n_redundant = 0, n_overmerged = 0, n_bad = 0;  // 0 if !exhaustive
    int64_t n_false_positive_offset = 0;  // of n_false_positive, those with an offset_gt_unit
    // Means over all true units (unpaired ones count as 0) and over the well-detected ones;
    // NaN when the set is empty.
    double mean_accuracy = 0, mean_recall = 0, mean_precision = 0;
    double mean_accuracy_well = 0, mean_recall_well = 0, mean_precision_well = 0;
};

// Scores `sorted` against `gt`. Throws Error(usage) on bad params or fs_hz <= 0 / not finite.
Result compare(const Sorting& gt, const Sorting& sorted, double fs_hz, const Params& params = {});

// ---- Reading inputs ------------------------------------------------------------------------

struct GroundTruth {
    Sorting sorting;
    std::string spikes_dir;   // folder holding spike_times.npy / spike_clusters.npy
    std::string params_path;  // params.json read for fs ("" if none was found)
    double fs_hz = 0;         // from params.json "fs"; 0 when there is none
};

// Reads ks-sim's ground truth (formats/ground-truth.md): DIR with gt/spike_times.npy,
// gt/spike_clusters.npy and params.json, or DIR/gt itself (params.json then in DIR/..).
// Throws Error(usage) naming the path when files are missing, malformed or inconsistent.
GroundTruth read_ground_truth(const std::string& dir);

struct SortingFolder {
    Sorting sorting;             // with --good-only, `units` holds the good units only
    std::string spikes_dir;      // where spike_times.npy was found (DIR or DIR/phy)
    std::string labels_from;     // "cluster_group.tsv", "cluster_KSLabel.tsv", both joined by "+", or ""
    std::vector<int64_t> all_units;  // every unit id with spikes
    std::vector<std::string> labels;  // label of each of all_units ("" when none)
    bool good_only = false;
    double sample_rate_hz = 0;   // 'sample_rate' of a Phy params.py beside the spikes; 0 if none/unreadable
};

// Reads a Phy folder (spike_times.npy, spike_clusters.npy or else spike_templates.npy, optional
// cluster_group.tsv / cluster_KSLabel.tsv), a ks-tools work folder holding one in phy/, or any
// folder with spike_times.npy + spike_clusters.npy. good_only keeps units labelled 'good'
// (cluster_group.tsv wins over cluster_KSLabel.tsv) and needs one of those files.
// Throws Error(usage) naming the path.
SortingFolder read_sorting_folder(const std::string& dir, bool good_only);

// Reads a Phy cluster TSV (header "cluster_id<TAB>NAME", one row per cluster): (id, label) pairs
// from the first of `columns` present in the header; labels are trimmed. Throws Error(usage)
// naming the file (and line) when a column is missing or a row is malformed.
std::vector<std::pair<int64_t, std::string>> read_cluster_tsv(const std::string& path,
                                                              const std::vector<std::string>& columns);

// ---- Reporting -----------------------------------------------------------------------------

struct ReportInfo {
    std::string gt_path, sorting_path, command_line;
    const SortingFolder* folder = nullptr;  // for label counts; may be null
};

std::string format_table(const Result& r, const ReportInfo& info);  // human-readable, for stdout
std::string to_json(const Result& r, const ReportInfo& info);       // formats/score.md

// ---- The whole tool ------------------------------------------------------------------------

struct RunOptions {
    std::string gt_dir, sorting_dir;
    bool good_only = false;
    double fs_hz = 0;          // 0: 'fs' from the ground truth's params.json
    Params params;
    std::string command_line;  // recorded in the JSON
};

struct RunOutput {
    Result result;
    std::string table;  // for stdout
    std::string json;   // for --json
};

// Reads both folders, checks that the sampling rates agree (a Phy params.py 'sample_rate' more than
// 0.1% away from fs is Error(usage)), scores, and formats both reports.
RunOutput run(const RunOptions& opt);

}  // namespace ks::score
