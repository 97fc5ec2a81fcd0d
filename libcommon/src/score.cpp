// ks-score's engine: match counts, agreement, assignment and unit classes (formats/score.md),
// plus the readers of ground-truth and sorting folders and the two reports.
#include "ks/score.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/version.hpp"
#include "pyliteral.hpp"

namespace ks::score {
namespace fs = std::filesystem;
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Spikes of the listed units only, in time order, with their unit as an index into `units`.
struct Trains {
    std::vector<int64_t> t;
    std::vector<int32_t> u;
    std::vector<int64_t> n_per_unit;
};

Trains prepare(const Sorting& s, const char* what) {
    KS_ASSERT(s.t_samples.size() == s.unit_id.size(), std::string(what) + ": t_samples and unit_id differ in length");
    for (std::size_t k = 1; k < s.units.size(); ++k)
        KS_ASSERT(s.units[k - 1] < s.units[k], std::string(what) + ": units must be ascending and unique");
    KS_ASSERT(s.units.size() < static_cast<std::size_t>(std::numeric_limits<int32_t>::max()),
              std::string(what) + ": too many units");
    std::vector<std::pair<int64_t, int32_t>> spikes;
    spikes.reserve(s.t_samples.size());
    for (std::size_t k = 0; k < s.t_samples.size(); ++k) {
        const auto it = std::lower_bound(s.units.begin(), s.units.end(), s.unit_id[k]);
        if (it == s.units.end() || *it != s.unit_id[k]) continue;
        spikes.emplace_back(s.t_samples[k], static_cast<int32_t>(it - s.units.begin()));
    }
    // Ties in time are broken by unit so the order, and so the pass below, is reproducible.
    std::sort(spikes.begin(), spikes.end());
    Trains tr;
    tr.t.resize(spikes.size());
    tr.u.resize(spikes.size());
    tr.n_per_unit.assign(s.units.size(), 0);
    for (std::size_t k = 0; k < spikes.size(); ++k) {
        tr.t[k] = spikes[k].first;
        tr.u[k] = spikes[k].second;
        ++tr.n_per_unit[spikes[k].second];
    }
    return tr;
}

// Per (true unit, sorted unit) pair: the count, and the positions (in each merged spike list)
// of the last spikes paired. Pairing is monotone in time, so a spike is still free for this
// pair exactly when its position is past the last one paired.
struct PairState {
    int64_t matches = 0;
    int64_t last_gt = -1;
    int64_t last_sorted = -1;
};

uint64_t pair_key(int32_t g, int32_t s) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(g)) << 32) | static_cast<uint32_t>(s);
}

std::vector<PairCount> count_prepared(const Trains& gt, const Trains& so, int64_t delta) {
    std::unordered_map<uint64_t, PairState> pairs;
    const int64_t n_gt = static_cast<int64_t>(gt.t.size()), n_so = static_cast<int64_t>(so.t.size());
    // stamp[unit] == event: that unit already paired with the spike being processed.
    std::vector<int64_t> stamp_gt(gt.n_per_unit.size(), -1), stamp_so(so.n_per_unit.size(), -1);
    int64_t i = 0, j = 0, lo_gt = 0, lo_so = 0, event = 0;
    // Each arriving spike is paired, for every unit of the other sorting, with that unit's
    // earliest still-free spike within delta before it. Per pair this is the two-pointer greedy
    // of count_matches_pair: at most one side of a pair ever has free spikes in the window.
    while (i < n_gt || j < n_so) {
        const bool gt_next = j >= n_so || (i < n_gt && gt.t[i] <= so.t[j]);  // ties: true spike first
        if (gt_next) {
            const int64_t t = gt.t[i];
            const int32_t g = gt.u[i];
            while (lo_so < j && t - so.t[lo_so] > delta) ++lo_so;
            for (int64_t k = lo_so; k < j; ++k) {
                const int32_t s = so.u[k];
                if (stamp_so[s] == event) continue;
                PairState& st = pairs[pair_key(g, s)];
                if (k > st.last_sorted) {
                    ++st.matches;
                    st.last_sorted = k;
                    st.last_gt = i;
                    stamp_so[s] = event;
                }
            }
            ++i;
        } else {
            const int64_t t = so.t[j];
            const int32_t s = so.u[j];
            while (lo_gt < i && t - gt.t[lo_gt] > delta) ++lo_gt;
            for (int64_t k = lo_gt; k < i; ++k) {
                const int32_t g = gt.u[k];
                if (stamp_gt[g] == event) continue;
                PairState& st = pairs[pair_key(g, s)];
                if (k > st.last_gt) {
                    ++st.matches;
                    st.last_gt = k;
                    st.last_sorted = j;
                    stamp_gt[g] = event;
                }
            }
            ++j;
        }
        ++event;
    }
    std::vector<PairCount> out;
    out.reserve(pairs.size());
    for (const auto& [key, st] : pairs) {
        if (st.matches == 0) continue;
        PairCount pc;
        pc.gt_index = static_cast<int32_t>(key >> 32);
        pc.sorted_index = static_cast<int32_t>(key & 0xffffffffu);
        pc.matches = st.matches;
        out.push_back(pc);
    }
    std::sort(out.begin(), out.end(), [](const PairCount& a, const PairCount& b) {
        return a.gt_index != b.gt_index ? a.gt_index < b.gt_index : a.sorted_index < b.sorted_index;
    });
    return out;
}

double agreement(int64_t m, int64_t n1, int64_t n2) {
    const int64_t denom = n1 + n2 - m;
    return denom > 0 ? static_cast<double>(m) / static_cast<double>(denom) : 0.0;
}

void check_threshold(double v, const char* name) {
    if (!(v > 0.0 && v <= 1.0))
        throw Error(Exit::usage, std::string(name) + " " + json_number(v) + ": expected a number in (0, 1]");
}

double mean_of(const std::vector<double>& v) {
    if (v.empty()) return kNaN;
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}

// For each false-positive sorted unit: the true unit whose spikes its own match best at one constant
// offset o (|o| <= max_off samples), o the most frequent lag to that unit's nearby spikes (counted
// with its two neighbours; ties: the lag itself more frequent, then the smaller |o|, then the positive
// one) and the agreement counted exactly with the sorted times moved by -o; flagged when that
// agreement reaches match_score (the best such true unit; ties: the lower one).
void flag_offset_units(const Trains& gt, const Trains& so, int64_t max_off, int64_t delta, double match_score,
                       const Sorting& gt_in, Result* r) {
    const int n_gt = static_cast<int>(gt.n_per_unit.size());
    std::vector<std::vector<int64_t>> gt_train(n_gt);
    for (std::size_t k = 0; k < gt.t.size(); ++k) gt_train[gt.u[k]].push_back(gt.t[k]);
    const int64_t W = max_off + std::max<int64_t>(delta, 1);   // lags kept: the search plus its neighbours
    std::vector<std::vector<int64_t>> so_train(r->sorted.size());
    for (std::size_t k = 0; k < so.t.size(); ++k)
        if (r->sorted[so.u[k]].false_positive) so_train[so.u[k]].push_back(so.t[k]);
    for (std::size_t s = 0; s < r->sorted.size(); ++s) {
        SortedUnitScore& u = r->sorted[s];
        if (!u.false_positive) continue;
        const std::vector<int64_t>& ts = so_train[s];
        std::map<int32_t, std::vector<int64_t>> lags;   // true unit -> histogram of t_sorted - t_true
        for (int64_t t : ts) {
            auto k = static_cast<std::size_t>(std::lower_bound(gt.t.begin(), gt.t.end(), t - W) - gt.t.begin());
            for (; k < gt.t.size() && gt.t[k] <= t + W; ++k) {
                auto& h = lags[gt.u[k]];
                if (h.empty()) h.assign(static_cast<std::size_t>(2 * W + 1), 0);
                ++h[static_cast<std::size_t>(t - gt.t[k] + W)];
            }
        }
        for (const auto& [g, h] : lags) {
            // The most frequent lag (counted with its two neighbours, so that a sample of jitter does not
            // split it), then the agreement within the usual tolerance around it.
            int64_t best_o = 0, best_c = -1, best_centre = -1;
            for (int64_t a = 0; a <= max_off; ++a)
                for (int64_t o : {a, -a}) {
                    int64_t c = 0;
                    for (int64_t l = o - 1; l <= o + 1; ++l) c += h[static_cast<std::size_t>(l + W)];
                    const int64_t centre = h[static_cast<std::size_t>(o + W)];
                    if (c > best_c || (c == best_c && centre > best_centre)) best_c = c, best_centre = centre, best_o = o;
                    if (a == 0) break;
                }
            std::vector<int64_t> moved(ts);
            for (int64_t& t : moved) t -= best_o;
            const double a =
                agreement(count_matches_pair(gt_train[g], moved, delta), gt.n_per_unit[g], static_cast<int64_t>(ts.size()));
            if (a >= match_score && a > u.offset_score) {
                u.offset_gt_unit = gt_in.units[g];
                u.offset_samples = best_o;
                u.offset_score = a;
            }
        }
        r->n_false_positive_offset += u.offset_gt_unit ? 1 : 0;
    }
}

}  // namespace

// ---- Engine ----------------------------------------------------------------------------------

Sorting Sorting::from_spikes(std::vector<int64_t> t_samples, std::vector<int64_t> unit_id) {
    KS_ASSERT(t_samples.size() == unit_id.size(), "Sorting::from_spikes: t_samples and unit_id differ in length");
    Sorting s;
    s.units = unit_id;
    std::sort(s.units.begin(), s.units.end());
    s.units.erase(std::unique(s.units.begin(), s.units.end()), s.units.end());
    s.t_samples = std::move(t_samples);
    s.unit_id = std::move(unit_id);
    return s;
}

void Params::validate() const {
    if (!std::isfinite(delta_ms) || delta_ms < 0)
        throw Error(Exit::usage, "--delta-ms " + json_number(delta_ms) + ": expected a number of milliseconds >= 0");
    check_threshold(match_score, "match_score");
    check_threshold(chance_score, "chance_score");
    check_threshold(well_detected_score, "--well-detected");
    check_threshold(redundant_score, "redundant_score");
    check_threshold(overmerged_score, "overmerged_score");
    if (!std::isfinite(offset_ms) || offset_ms < 0 || offset_ms > 10)
        throw Error(Exit::usage, "--offset-ms " + json_number(offset_ms) + ": expected milliseconds in [0, 10]");
}

int64_t delta_samples(double delta_ms, double fs_hz) {
    const double x = delta_ms * fs_hz / 1000.0;
    const double r = std::round(x);
    const double d = std::fabs(x - r) <= 1e-9 ? r : std::floor(x);
    if (!(d >= 0 && d < 1e15))
        throw Error(Exit::usage, "--delta-ms " + json_number(delta_ms) + " at " + json_number(fs_hz) +
                                     " Hz: tolerance out of range");
    return static_cast<int64_t>(d);
}

std::vector<PairCount> count_matches(const Sorting& gt, const Sorting& sorted, int64_t delta) {
    KS_ASSERT(delta >= 0, "count_matches: negative tolerance");
    return count_prepared(prepare(gt, "ground truth"), prepare(sorted, "sorting"), delta);
}

int64_t count_matches_pair(const std::vector<int64_t>& a, const std::vector<int64_t>& b, int64_t delta) {
    std::size_t i = 0, j = 0;
    int64_t m = 0;
    while (i < a.size() && j < b.size()) {
        const int64_t d = a[i] - b[j];
        if (d <= delta && d >= -delta) {
            ++m;
            ++i;
            ++j;
        } else if (a[i] < b[j]) {
            ++i;
        } else {
            ++j;
        }
    }
    return m;
}

Result compare(const Sorting& gt_in, const Sorting& sorted_in, double fs_hz, const Params& params) {
    params.validate();
    if (!std::isfinite(fs_hz) || fs_hz <= 0)
        throw Error(Exit::usage, "sampling rate " + json_number(fs_hz) + " Hz: expected a positive number (--fs)");
    Result r;
    r.params = params;
    r.fs_hz = fs_hz;
    r.delta_samples = delta_samples(params.delta_ms, fs_hz);

    const Trains gt = prepare(gt_in, "ground truth");
    const Trains so = prepare(sorted_in, "sorting");
    const int n_gt = static_cast<int>(gt_in.units.size()), n_so = static_cast<int>(sorted_in.units.size());
    const std::vector<PairCount> counts = count_prepared(gt, so, r.delta_samples);

    // Sparse agreement: only pairs with a match can score above 0.
    std::vector<double> score(counts.size());
    for (std::size_t k = 0; k < counts.size(); ++k)
        score[k] = agreement(counts[k].matches, gt.n_per_unit[counts[k].gt_index], so.n_per_unit[counts[k].sorted_index]);

    // Best matches (>= chance_score); counts are ordered by (gt, sorted) and a strict > keeps the
    // lowest index among equal scores, as an argmax over ascending unit ids would.
    std::vector<int> best_so(n_gt, -1), best_gt(n_so, -1);
    std::vector<double> best_so_score(n_gt, 0.0), best_gt_score(n_so, 0.0);
    std::vector<int> n_over_merge(n_so, 0);
    for (std::size_t k = 0; k < counts.size(); ++k) {
        const int g = counts[k].gt_index, s = counts[k].sorted_index;
        if (score[k] >= params.chance_score && score[k] > best_so_score[g]) {
            best_so_score[g] = score[k];
            best_so[g] = s;
        }
        if (score[k] >= params.chance_score && score[k] > best_gt_score[s]) {
            best_gt_score[s] = score[k];
            best_gt[s] = g;
        }
        if (score[k] > params.overmerged_score) ++n_over_merge[s];
    }

    // Assignment. Scores below match_score weigh 0, so only "strong" pairs (>= match_score) can
    // change the optimum, and units linked by no chain of strong pairs are independent: each
    // connected component is assigned alone (nearly always one pair, so this is fast).
    std::vector<int> parent(static_cast<std::size_t>(n_gt) + n_so);
    std::iota(parent.begin(), parent.end(), 0);
    auto root = [&](int x) {
        while (parent[x] != x) x = parent[x] = parent[parent[x]];  // path halving
        return x;
    };
    std::vector<std::size_t> strong;
    for (std::size_t k = 0; k < counts.size(); ++k) {
        if (score[k] < params.match_score) continue;
        strong.push_back(k);
        parent[root(counts[k].gt_index)] = root(n_gt + counts[k].sorted_index);
    }
    std::map<int, std::vector<std::size_t>> component;  // root -> its strong pairs, in (gt, sorted) order
    for (std::size_t k : strong) component[root(counts[k].gt_index)].push_back(k);
    std::vector<int> pair_so(n_gt, -1), pair_gt(n_so, -1);
    std::vector<std::size_t> pair_count(n_gt, 0);
    for (const auto& [id, edges] : component) {
        std::vector<int> rows, cols;  // gt and sorted indices, ascending
        for (std::size_t k : edges) {
            rows.push_back(counts[k].gt_index);
            cols.push_back(counts[k].sorted_index);
        }
        std::sort(rows.begin(), rows.end());
        rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
        std::sort(cols.begin(), cols.end());
        cols.erase(std::unique(cols.begin(), cols.end()), cols.end());
        const int n_rows = static_cast<int>(rows.size()), n_cols = static_cast<int>(cols.size());
        auto index_in = [](const std::vector<int>& v, int x) {
            return static_cast<int>(std::lower_bound(v.begin(), v.end(), x) - v.begin());
        };
        std::vector<double> weight(static_cast<std::size_t>(n_rows) * n_cols, 0.0);
        std::vector<std::size_t> edge_at(weight.size(), counts.size());  // counts.size(): no strong pair
        for (std::size_t k : edges) {
            const std::size_t cell = static_cast<std::size_t>(index_in(rows, counts[k].gt_index)) * n_cols +
                                     index_in(cols, counts[k].sorted_index);
            weight[cell] = score[k];
            edge_at[cell] = k;
        }
        const std::vector<int> col_of_row = assign_max_weight(weight, n_rows, n_cols);
        for (int row = 0; row < n_rows; ++row) {
            if (col_of_row[row] < 0) continue;
            const std::size_t k = edge_at[static_cast<std::size_t>(row) * n_cols + col_of_row[row]];
            if (k == counts.size()) continue;  // a zero-weight pairing: not a match
            pair_so[rows[row]] = cols[col_of_row[row]];
            pair_gt[cols[col_of_row[row]]] = rows[row];
            pair_count[rows[row]] = k;
        }
    }

    // Per true unit.
    std::vector<double> acc_all, rec_all, prec_all, acc_well, rec_well, prec_well;
    r.gt.resize(n_gt);
    for (int g = 0; g < n_gt; ++g) {
        GtUnitScore& u = r.gt[g];
        u.id = gt_in.units[g];
        u.n_spikes = gt.n_per_unit[g];
        if (best_so[g] >= 0) {
            u.best_sorted_unit = sorted_in.units[best_so[g]];
            u.best_score = best_so_score[g];
        }
        u.fn = u.n_spikes;
        if (pair_so[g] >= 0) {
            const int s = pair_so[g];
            u.sorted_unit = sorted_in.units[s];
            u.n_sorted_spikes = so.n_per_unit[s];
            u.tp = counts[pair_count[g]].matches;
            u.fn = u.n_spikes - u.tp;
            u.fp = u.n_sorted_spikes - u.tp;
            if (u.n_spikes > 0 && u.tp > 0) {
                u.accuracy = static_cast<double>(u.tp) / static_cast<double>(u.tp + u.fn + u.fp);
                u.recall = static_cast<double>(u.tp) / static_cast<double>(u.tp + u.fn);
                u.precision = static_cast<double>(u.tp) / static_cast<double>(u.tp + u.fp);
            }
            u.well_detected = u.accuracy >= params.well_detected_score;
        }
        acc_all.push_back(u.accuracy);
        rec_all.push_back(u.recall);
        prec_all.push_back(u.precision);
        if (u.well_detected) {
            ++r.n_well_detected;
            acc_well.push_back(u.accuracy);
            rec_well.push_back(u.recall);
            prec_well.push_back(u.precision);
        }
    }
    r.mean_accuracy = mean_of(acc_all);
    r.mean_recall = mean_of(rec_all);
    r.mean_precision = mean_of(prec_all);
    r.mean_accuracy_well = mean_of(acc_well);
    r.mean_recall_well = mean_of(rec_well);
    r.mean_precision_well = mean_of(prec_well);

    // Per sorted unit.
    r.sorted.resize(n_so);
    for (int s = 0; s < n_so; ++s) {
        SortedUnitScore& u = r.sorted[s];
        u.id = sorted_in.units[s];
        u.n_spikes = so.n_per_unit[s];
        if (best_gt[s] >= 0) {
            u.best_gt_unit = gt_in.units[best_gt[s]];
            u.best_score = best_gt_score[s];
        }
        if (pair_gt[s] >= 0) {
            u.gt_unit = gt_in.units[pair_gt[s]];
            u.well_detected = r.gt[pair_gt[s]].well_detected;
        }
        if (!params.exhaustive_gt) continue;
        u.overmerged = n_over_merge[s] > 1;
        if (pair_gt[s] < 0) {
            u.bad = true;
            const int g = best_gt[s];
            if (g < 0 || best_gt_score[s] < params.redundant_score) u.false_positive = true;
            // Redundant: a second, weaker detection of a true unit that has a better one.
            else if (best_so[g] != s) u.redundant = true;
        }
        r.n_overmerged += u.overmerged;
        r.n_bad += u.bad;
        r.n_false_positive += u.false_positive;
        r.n_redundant += u.redundant;
    }

    if (params.exhaustive_gt && params.offset_ms > 0 && r.n_false_positive > 0)
        flag_offset_units(gt, so, delta_samples(params.offset_ms, fs_hz), r.delta_samples, params.match_score, gt_in,
                          &r);

    for (std::size_t k = 0; k < counts.size(); ++k) {
        if (score[k] < params.chance_score) continue;
        r.pairs.push_back({gt_in.units[counts[k].gt_index], sorted_in.units[counts[k].sorted_index],
                           counts[k].matches, score[k]});
    }
    return r;
}

// ---- Readers ---------------------------------------------------------------------------------

namespace {

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

void require_dir(const std::string& dir, const char* what) {
    std::error_code ec;
    const auto st = fs::status(dir, ec);
    if (ec || !fs::exists(st)) throw Error(Exit::usage, dir + ": no such folder (" + what + ")");
    if (!fs::is_directory(st)) throw Error(Exit::usage, dir + ": not a folder (" + what + ")");
}

bool is_integer_dtype(Dtype d) {
    switch (d) {
        case Dtype::int8: case Dtype::uint8: case Dtype::int16: case Dtype::uint16:
        case Dtype::int32: case Dtype::uint32: case Dtype::int64: case Dtype::uint64:
            return true;
        default:
            return false;
    }
}

// A 1-D integer array, or (N, 1) as Kilosort 2 wrote spike_times.
std::vector<int64_t> read_int_column(const std::string& path) {
    const NpyArray a = read_npy(path);
    if (!is_integer_dtype(a.dtype))
        throw Error(Exit::usage, path + ": dtype " + dtype_name(a.dtype) + ", expected an integer dtype");
    if (!(a.shape.size() == 1 || (a.shape.size() == 2 && a.shape[1] == 1))) {
        std::string shape;
        for (auto d : a.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
        throw Error(Exit::usage, path + ": shape (" + shape + "), expected (N,) or (N, 1)");
    }
    if (a.dtype == Dtype::uint64) {
        // Larger values would wrap to negative on conversion; no recording is that long.
        std::vector<uint64_t> v = a.as<uint64_t>();
        for (std::size_t k = 0; k < v.size(); ++k)
            if (v[k] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                throw Error(Exit::usage, path + ": value " + std::to_string(v[k]) + " at row " + std::to_string(k) +
                                             " does not fit in int64");
    }
    return a.as<int64_t>();
}

Sorting read_spikes(const std::string& times_path, const std::string& ids_path) {
    std::vector<int64_t> t = read_int_column(times_path);
    std::vector<int64_t> id = read_int_column(ids_path);
    if (t.size() != id.size())
        throw Error(Exit::usage, ids_path + ": " + std::to_string(id.size()) + " spikes but " + times_path + " has " +
                                     std::to_string(t.size()));
    for (std::size_t k = 0; k < t.size(); ++k)
        if (t[k] < 0)
            throw Error(Exit::usage, times_path + ": negative sample index " + std::to_string(t[k]) + " at row " +
                                         std::to_string(k));
    return Sorting::from_spikes(std::move(t), std::move(id));
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

std::vector<std::string> split_fields(const std::string& line, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (true) {
        const auto pos = line.find(sep, start);
        out.push_back(trim(line.substr(start, pos == std::string::npos ? std::string::npos : pos - start)));
        if (pos == std::string::npos) break;
        start = pos + 1;
    }
    return out;
}

}  // namespace

std::vector<std::pair<int64_t, std::string>> read_cluster_tsv(const std::string& path,
                                                              const std::vector<std::string>& columns) {
    const std::string text = read_text_file(path);
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto nl = text.find('\n', start);
        const std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        lines.push_back(line);
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
    if (lines.empty() || trim(lines[0]).empty()) throw Error(Exit::usage, path + ": empty, expected a header line 'cluster_id<TAB>...'");
    // phylib's rule: a tab in the header line makes it tab-separated, else comma-separated.
    const char sep = lines[0].find('\t') != std::string::npos ? '\t' : ',';
    const std::vector<std::string> header = split_fields(lines[0], sep);
    std::size_t id_col = header.size(), label_col = header.size();
    for (std::size_t c = 0; c < header.size(); ++c)
        if (header[c] == "cluster_id") id_col = c;
    for (const auto& name : columns) {
        for (std::size_t c = 0; c < header.size() && label_col == header.size(); ++c)
            if (header[c] == name) label_col = c;
        if (label_col != header.size()) break;
    }
    if (id_col == header.size()) throw Error(Exit::usage, path + ": no 'cluster_id' column in the header line");
    if (label_col == header.size()) {
        std::string names;
        for (const auto& n : columns) names += (names.empty() ? "'" : " or '") + n + "'";
        throw Error(Exit::usage, path + ": no " + names + " column in the header line");
    }
    std::vector<std::pair<int64_t, std::string>> out;
    for (std::size_t ln = 1; ln < lines.size(); ++ln) {
        if (trim(lines[ln]).empty()) continue;
        const std::vector<std::string> f = split_fields(lines[ln], sep);
        const std::string where = path + ": line " + std::to_string(ln + 1);
        if (f.size() <= std::max(id_col, label_col))
            throw Error(Exit::usage, where + ": " + std::to_string(f.size()) + " fields, expected " +
                                         std::to_string(header.size()));
        const std::string& id_text = f[id_col];
        errno = 0;
        char* end = nullptr;
        const long long id = std::strtoll(id_text.c_str(), &end, 10);
        if (id_text.empty() || *end != '\0' || errno == ERANGE)
            throw Error(Exit::usage, where + ": cluster_id '" + id_text + "' is not an integer");
        out.emplace_back(static_cast<int64_t>(id), f[label_col]);
    }
    return out;
}

GroundTruth read_ground_truth(const std::string& dir) {
    require_dir(dir, "ground truth, --gt");
    GroundTruth g;
    const fs::path d(dir);
    std::vector<fs::path> params_candidates;
    if (is_file(d / "gt" / "spike_times.npy")) {
        g.spikes_dir = (d / "gt").string();
        params_candidates = {d / "params.json"};
    } else if (is_file(d / "spike_times.npy")) {
        g.spikes_dir = d.string();
        params_candidates = {d / "params.json", d / ".." / "params.json"};
    } else if (is_file(d / "sessions.json")) {
        throw Error(Exit::usage, dir + ": holds several ks-sim sessions; score one session folder, e.g. " +
                                     (d / "session_00").string());
    } else {
        throw Error(Exit::usage, dir + ": no ground truth found (expected gt/spike_times.npy and "
                                       "gt/spike_clusters.npy, formats/ground-truth.md)");
    }
    const std::string times = (fs::path(g.spikes_dir) / "spike_times.npy").string();
    const std::string ids = (fs::path(g.spikes_dir) / "spike_clusters.npy").string();
    if (!is_file(ids)) throw Error(Exit::usage, ids + ": missing (ground-truth unit of each spike)");
    g.sorting = read_spikes(times, ids);
    // ks-sim lists every simulated unit in unit_ids.npy; one that never fired in the recording
    // cannot be detected, so it is left out rather than counted as missed.
    const fs::path unit_ids = fs::path(g.spikes_dir) / "unit_ids.npy";
    if (is_file(unit_ids)) {
        const int64_t n_listed = read_npy(unit_ids.string()).size();
        if (n_listed > static_cast<int64_t>(g.sorting.units.size()))
            log::info("%s: %lld of %lld true units have no spikes and are not scored", g.spikes_dir.c_str(),
                      static_cast<long long>(n_listed - static_cast<int64_t>(g.sorting.units.size())),
                      static_cast<long long>(n_listed));
    }

    for (const auto& p : params_candidates) {
        if (!is_file(p)) continue;
        g.params_path = p.lexically_normal().string();
        simdjson::dom::parser parser;
        simdjson::padded_string json;
        if (simdjson::padded_string::load(g.params_path).get(json) != simdjson::SUCCESS)
            throw Error(Exit::usage, g.params_path + ": cannot be read");
        simdjson::dom::element root;
        if (parser.parse(json).get(root) != simdjson::SUCCESS)
            throw Error(Exit::usage, g.params_path + ": not valid JSON");
        simdjson::dom::object obj;
        if (root.get_object().get(obj) != simdjson::SUCCESS)
            throw Error(Exit::usage, g.params_path + ": expected a JSON object");
        simdjson::dom::element fs_el;
        if (obj["fs"].get(fs_el) == simdjson::SUCCESS) {
            double fs_hz = 0;
            if (fs_el.get_double().get(fs_hz) != simdjson::SUCCESS || !std::isfinite(fs_hz) || fs_hz <= 0)
                throw Error(Exit::usage, g.params_path + ": 'fs' must be a positive number (Hz)");
            g.fs_hz = fs_hz;
        }
        break;
    }
    return g;
}

SortingFolder read_sorting_folder(const std::string& dir, bool good_only) {
    require_dir(dir, "sorting, --sorting");
    SortingFolder out;
    out.good_only = good_only;
    const fs::path d(dir);
    if (is_file(d / "spike_times.npy")) out.spikes_dir = d.string();
    else if (is_file(d / "phy" / "spike_times.npy")) out.spikes_dir = (d / "phy").string();
    else
        throw Error(Exit::usage, dir + ": no spike_times.npy (expected a Phy folder, a ks-tools work folder with "
                                       "phy/, or a folder with spike_times.npy and spike_clusters.npy)");
    const fs::path sd(out.spikes_dir);
    std::string ids = (sd / "spike_clusters.npy").string();
    if (!is_file(ids)) {
        // phylib's fallback: without spike_clusters.npy every spike's cluster is its template.
        ids = (sd / "spike_templates.npy").string();
        if (!is_file(ids))
            throw Error(Exit::usage, (sd / "spike_clusters.npy").string() + ": missing (and no spike_templates.npy)");
    }
    out.sorting = read_spikes((sd / "spike_times.npy").string(), ids);
    out.all_units = out.sorting.units;

    std::map<int64_t, std::string> group, kslabel;
    const fs::path group_path = sd / "cluster_group.tsv", ks_path = sd / "cluster_KSLabel.tsv";
    // Kilosort writes cluster_group.tsv as a copy of cluster_KSLabel.tsv (header KSLabel); phy
    // rewrites it with a 'group' column once the user saves a curation.
    if (is_file(group_path)) {
        for (auto& [id, lab] : read_cluster_tsv(group_path.string(), {"group", "KSLabel"})) group[id] = lab;
        out.labels_from = "cluster_group.tsv";
    }
    if (is_file(ks_path)) {
        for (auto& [id, lab] : read_cluster_tsv(ks_path.string(), {"KSLabel"})) kslabel[id] = lab;
        out.labels_from += std::string(out.labels_from.empty() ? "" : "+") + "cluster_KSLabel.tsv";
    }
    out.labels.resize(out.all_units.size());
    for (std::size_t k = 0; k < out.all_units.size(); ++k) {
        const int64_t id = out.all_units[k];
        const auto g = group.find(id);
        if (g != group.end() && !g->second.empty() && g->second != "unsorted") out.labels[k] = g->second;
        else if (const auto kl = kslabel.find(id); kl != kslabel.end()) out.labels[k] = kl->second;
    }
    const fs::path params_py = sd / "params.py";
    if (is_file(params_py)) {
        // Only a cross-check of the sampling rate: a params.py we cannot read costs nothing.
        try {
            for (const auto& a : pyliteral::parse_assignments(read_text_file(params_py.string()), params_py.string()))
                if (a.name == "sample_rate" && a.value.is_number()) out.sample_rate_hz = a.value.as_double();
        } catch (const Error& e) {
            log::debug("%s: not read (%s)", params_py.string().c_str(), e.what());
        }
    }
    if (good_only) {
        if (out.labels_from.empty())
            throw Error(Exit::usage, out.spikes_dir + ": --good-only needs cluster_group.tsv or cluster_KSLabel.tsv");
        std::vector<int64_t> good;
        for (std::size_t k = 0; k < out.all_units.size(); ++k)
            if (out.labels[k] == "good") good.push_back(out.all_units[k]);
        out.sorting.units = std::move(good);
        if (out.sorting.units.empty())
            log::warn("%s: no unit is labelled 'good' (%s); scoring an empty sorting", out.spikes_dir.c_str(),
                      out.labels_from.c_str());
    }
    return out;
}

// ---- Reports ---------------------------------------------------------------------------------

namespace {

std::string fixed3(double v) {
    if (std::isnan(v)) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

std::string id_or_dash(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "-"; }

std::string pad_left(const std::string& s, std::size_t w) { return s.size() >= w ? s : std::string(w - s.size(), ' ') + s; }

std::string sorted_units_line(const Result& r, const ReportInfo& info) {
    std::string s = std::to_string(r.sorted.size()) + " units";
    if (info.folder && info.folder->good_only)
        s += ", the 'good' ones of " + std::to_string(info.folder->all_units.size()) + " (" + info.folder->labels_from + ")";
    return s;
}

void json_opt_id(JsonWriter& w, const std::optional<int64_t>& v) {
    if (v) w.value(*v);
    else w.null();
}

}  // namespace

std::string format_table(const Result& r, const ReportInfo& info) {
    std::string out;
    char buf[256];
    out += "ground truth: " + info.gt_path + " (" + std::to_string(r.gt.size()) + " units)\n";
    out += "sorting:      " + info.sorting_path + " (" + sorted_units_line(r, info) + ")\n";
    std::snprintf(buf, sizeof buf, "matching:     within +/-%g ms = %lld samples at %g Hz; units paired at agreement >= %g\n\n",
                  r.params.delta_ms, static_cast<long long>(r.delta_samples), r.fs_hz, r.params.match_score);
    out += buf;
    const std::vector<std::pair<std::string, std::size_t>> cols = {
        {"true_unit", 9}, {"n_spikes", 9}, {"sorted_unit", 11}, {"n_sorted", 9}, {"matches", 8},
        {"accuracy", 8}, {"recall", 7}, {"precision", 9}};
    for (std::size_t c = 0; c < cols.size(); ++c) out += (c ? "  " : "") + pad_left(cols[c].first, cols[c].second);
    out += "\n";
    for (const auto& u : r.gt) {
        const std::vector<std::string> cells = {
            std::to_string(u.id), std::to_string(u.n_spikes), id_or_dash(u.sorted_unit),
            u.sorted_unit ? std::to_string(u.n_sorted_spikes) : "-", std::to_string(u.tp),
            fixed3(u.accuracy), fixed3(u.recall), fixed3(u.precision)};
        for (std::size_t c = 0; c < cols.size(); ++c) out += (c ? "  " : "") + pad_left(cells[c], cols[c].second);
        out += u.well_detected ? "  well detected\n" : "\n";
    }
    out += "\nsummary\n";
    auto line = [&](const std::string& label, const std::string& value) {
        std::string l = "  " + label;
        if (l.size() < 36) l.resize(36, ' ');
        out += l + value + "\n";
    };
    line("true units", std::to_string(r.gt.size()));
    line("sorted units", std::to_string(r.sorted.size()));
    line("well detected (accuracy >= " + json_number(r.params.well_detected_score) + ")", std::to_string(r.n_well_detected));
    line("mean accuracy (all / well det.)", fixed3(r.mean_accuracy) + " / " + fixed3(r.mean_accuracy_well));
    line("mean recall (all / well det.)", fixed3(r.mean_recall) + " / " + fixed3(r.mean_recall_well));
    line("mean precision (all / well det.)", fixed3(r.mean_precision) + " / " + fixed3(r.mean_precision_well));
    if (r.params.exhaustive_gt) {
        line("false-positive units", std::to_string(r.n_false_positive));
        if (r.params.offset_ms > 0)
            line("  of which offset (<= " + json_number(r.params.offset_ms) + " ms)", std::to_string(r.n_false_positive_offset));
        line("redundant units", std::to_string(r.n_redundant));
        line("overmerged units", std::to_string(r.n_overmerged));
        line("unpaired sorted units", std::to_string(r.n_bad));
    } else {
        out += "  (partial ground truth: false-positive, redundant, overmerged units not counted)\n";
    }
    return out;
}

std::string to_json(const Result& r, const ReportInfo& info) {
    JsonWriter w;
    w.begin_object();
    w.key("format").value("ks-score");
    w.key("version").value(1);
    w.key("tool_version").value(std::string(KS_VERSION) + " (" + KS_GIT_DESCRIBE + ")");
    w.key("command_line").value(info.command_line);
    w.key("inputs").begin_object();
    w.key("ground_truth").value(info.gt_path);
    w.key("sorting").value(info.sorting_path);
    w.key("good_only").value(info.folder != nullptr && info.folder->good_only);
    w.key("labels_from");
    if (info.folder && !info.folder->labels_from.empty()) w.value(info.folder->labels_from);
    else w.null();
    w.key("n_sorted_units_in_folder").value(static_cast<int64_t>(info.folder ? info.folder->all_units.size() : r.sorted.size()));
    w.end_object();
    w.key("params").begin_object();
    w.key("fs_hz").value(r.fs_hz);
    w.key("delta_ms").value(r.params.delta_ms);
    w.key("delta_samples").value(r.delta_samples);
    w.key("match_score").value(r.params.match_score);
    w.key("chance_score").value(r.params.chance_score);
    w.key("well_detected_score").value(r.params.well_detected_score);
    w.key("redundant_score").value(r.params.redundant_score);
    w.key("overmerged_score").value(r.params.overmerged_score);
    w.key("exhaustive_gt").value(r.params.exhaustive_gt);
    w.key("offset_ms").value(r.params.offset_ms);
    w.end_object();

    const bool ex = r.params.exhaustive_gt;
    auto count_or_null = [&](int64_t v) {
        if (ex) w.value(v);
        else w.null();
    };
    w.key("summary").begin_object();
    w.key("n_gt_units").value(static_cast<int64_t>(r.gt.size()));
    w.key("n_sorted_units").value(static_cast<int64_t>(r.sorted.size()));
    w.key("n_well_detected").value(r.n_well_detected);
    w.key("n_false_positive");
    count_or_null(r.n_false_positive);
    w.key("n_false_positive_offset");
    count_or_null(r.n_false_positive_offset);
    w.key("n_redundant");
    count_or_null(r.n_redundant);
    w.key("n_overmerged");
    count_or_null(r.n_overmerged);
    w.key("n_bad");
    count_or_null(r.n_bad);
    w.key("mean_accuracy").value(r.mean_accuracy);
    w.key("mean_recall").value(r.mean_recall);
    w.key("mean_precision").value(r.mean_precision);
    w.key("mean_accuracy_well_detected").value(r.mean_accuracy_well);
    w.key("mean_recall_well_detected").value(r.mean_recall_well);
    w.key("mean_precision_well_detected").value(r.mean_precision_well);
    w.end_object();

    w.key("gt_units").begin_array();
    for (const auto& u : r.gt) {
        w.begin_object();
        w.key("id").value(u.id);
        w.key("n_spikes").value(u.n_spikes);
        w.key("sorted_unit");
        json_opt_id(w, u.sorted_unit);
        w.key("n_sorted_spikes").value(u.n_sorted_spikes);
        w.key("tp").value(u.tp);
        w.key("fn").value(u.fn);
        w.key("fp").value(u.fp);
        w.key("accuracy").value(u.accuracy);
        w.key("recall").value(u.recall);
        w.key("precision").value(u.precision);
        w.key("well_detected").value(u.well_detected);
        w.key("best_sorted_unit");
        json_opt_id(w, u.best_sorted_unit);
        w.key("best_score").value(u.best_score);
        w.end_object();
    }
    w.end_array();

    w.key("sorted_units").begin_array();
    for (std::size_t k = 0; k < r.sorted.size(); ++k) {
        const auto& u = r.sorted[k];
        w.begin_object();
        w.key("id").value(u.id);
        w.key("n_spikes").value(u.n_spikes);
        w.key("label");
        std::string label;
        if (info.folder) {
            const auto& all = info.folder->all_units;
            const auto it = std::lower_bound(all.begin(), all.end(), u.id);
            if (it != all.end() && *it == u.id) label = info.folder->labels[it - all.begin()];
        }
        if (label.empty()) w.null();
        else w.value(label);
        w.key("gt_unit");
        json_opt_id(w, u.gt_unit);
        w.key("best_gt_unit");
        json_opt_id(w, u.best_gt_unit);
        w.key("best_score").value(u.best_score);
        w.key("well_detected").value(u.well_detected);
        auto flag = [&](const char* name, bool v) {
            w.key(name);
            if (ex) w.value(v);
            else w.null();
        };
        flag("false_positive", u.false_positive);
        flag("redundant", u.redundant);
        flag("overmerged", u.overmerged);
        flag("bad", u.bad);
        w.key("offset_gt_unit");
        json_opt_id(w, u.offset_gt_unit);
        w.key("offset_samples").value(u.offset_samples);
        w.key("offset_score").value(u.offset_score);
        w.end_object();
    }
    w.end_array();

    w.key("pairs").begin_array();
    for (const auto& p : r.pairs) {
        w.begin_object();
        w.key("gt_unit").value(p.gt_unit);
        w.key("sorted_unit").value(p.sorted_unit);
        w.key("matches").value(p.matches);
        w.key("agreement").value(p.agreement);
        w.end_object();
    }
    w.end_array();
    w.end_object();
    return w.str() + "\n";
}

// ---- The whole tool ------------------------------------------------------------------------

RunOutput run(const RunOptions& opt) {
    opt.params.validate();
    const GroundTruth gt = read_ground_truth(opt.gt_dir);
    const SortingFolder sorted = read_sorting_folder(opt.sorting_dir, opt.good_only);
    double fs_hz = gt.fs_hz;
    if (opt.fs_hz > 0) {
        if (gt.fs_hz > 0 && std::fabs(opt.fs_hz - gt.fs_hz) > 1e-3 * gt.fs_hz)
            log::warn("--fs %g differs from fs %g in %s; using --fs", opt.fs_hz, gt.fs_hz, gt.params_path.c_str());
        fs_hz = opt.fs_hz;
    }
    if (!(fs_hz > 0))
        throw Error(Exit::usage, opt.gt_dir + ": no sampling rate ('fs' in params.json); give --fs HZ");
    if (sorted.sample_rate_hz > 0 && std::fabs(sorted.sample_rate_hz - fs_hz) > 1e-3 * fs_hz)
        throw Error(Exit::usage, (fs::path(sorted.spikes_dir) / "params.py").string() + ": sample_rate " +
                                     json_number(sorted.sample_rate_hz) + " Hz, but the ground truth is at " +
                                     json_number(fs_hz) + " Hz: spike times would not be comparable");
    log::debug("ground truth %s: %zu spikes, %zu units; sorting %s: %zu spikes, %zu units scored",
               gt.spikes_dir.c_str(), gt.sorting.t_samples.size(), gt.sorting.units.size(), sorted.spikes_dir.c_str(),
               sorted.sorting.t_samples.size(), sorted.sorting.units.size());
    RunOutput out;
    out.result = compare(gt.sorting, sorted.sorting, fs_hz, opt.params);
    ReportInfo info;
    info.gt_path = gt.spikes_dir;
    info.sorting_path = sorted.spikes_dir;
    info.command_line = opt.command_line;
    info.folder = &sorted;
    out.table = format_table(out.result, info);
    out.json = to_json(out.result, info);
    return out;
}

}  // namespace ks::score
