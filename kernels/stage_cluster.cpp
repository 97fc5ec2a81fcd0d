// ks-cluster's stage driver (first pass): grouping (§5.1), per-group feature matrices (§5.2), graph
// clustering (graph_cluster.hpp, §5.3-5.7), templates (§5.8). The features are bucketed by group into
// temporary files first, so memory holds a group at a time per thread, not the recording's spikes.
#include "ks/stages/cluster.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/kernels/ccg.hpp"
#include "ks/kernels/postprocess.hpp"
#include "ks/kernels/template_match.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"

namespace ks::clusterstage {

namespace {

namespace fs = std::filesystem;

// 1-D k-means from the given seeds (Lloyd until stable): the x centres of one shank.
std::vector<double> kmeans_1d(const std::vector<double>& xs, std::vector<double> c) {
    for (int it = 0; it < 100; ++it) {
        std::vector<double> sum(c.size(), 0.0);
        std::vector<int> cnt(c.size(), 0);
        for (double x : xs) {
            size_t best = 0;
            for (size_t k = 1; k < c.size(); ++k)
                if (std::fabs(x - c[k]) < std::fabs(x - c[best])) best = k;
            sum[best] += x;
            ++cnt[best];
        }
        bool moved = false;
        for (size_t k = 0; k < c.size(); ++k)
            if (cnt[k] > 0 && sum[k] / cnt[k] != c[k]) {
                c[k] = sum[k] / cnt[k];
                moved = true;
            }
        if (!moved) break;
    }
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
}

// Kilosort4's automatic x centres for one shank: histogram of the contacts' x on
// int((max-min)/50) + 4 edges spanning [min-100, max+100], smoothed (Gaussian, 0.5 bins), its local
// maxima's left edges seed k-means; none or one peak: one centre.
std::vector<double> auto_x_centres(const std::vector<double>& xs) {
    const double lo = *std::min_element(xs.begin(), xs.end()), hi = *std::max_element(xs.begin(), xs.end());
    const int n_edges = static_cast<int>((hi - lo) / 50) + 4;
    std::vector<double> edges(n_edges);
    for (int i = 0; i < n_edges; ++i) edges[i] = (lo - 100) + (hi - lo + 200) * i / (n_edges - 1);
    const int nb = n_edges - 1;
    std::vector<double> h(nb, 0.0);
    for (double x : xs) {
        int b = static_cast<int>(std::upper_bound(edges.begin(), edges.end(), x) - edges.begin()) - 1;
        h[std::clamp(b, 0, nb - 1)] += 1;
    }
    std::vector<double> sm(nb, 0.0);
    for (int i = 0; i < nb; ++i) {
        double wsum = 0;
        for (int j = std::max(0, i - 2); j <= std::min(nb - 1, i + 2); ++j) {
            const double w = std::exp(-0.5 * (i - j) * (i - j) / 0.25);
            sm[i] += w * h[j];
            wsum += w;
        }
        sm[i] /= wsum;
    }
    std::vector<double> seeds;
    for (int i = 0; i < nb; ++i) {
        const double left = i > 0 ? sm[i - 1] : 0.0, right = i + 1 < nb ? sm[i + 1] : 0.0;
        if (sm[i] > 0 && sm[i] > left && sm[i] >= right) seeds.push_back(edges[i]);
    }
    if (seeds.size() <= 1) return {std::accumulate(xs.begin(), xs.end(), 0.0) / xs.size()};
    return kmeans_1d(xs, seeds);
}

}  // namespace

StageParams StageParams::from(const Settings& s) {
    StageParams p;
    p.graph.cluster_neighbors = s.get_int32("cluster_neighbors");
    p.graph.cluster_downsampling = s.get_int("cluster_downsampling");
    p.graph.max_cluster_subset = s.is_none("max_cluster_subset") ? 0 : s.get_int("max_cluster_subset");
    p.graph.seed = static_cast<uint64_t>(s.get_int("cluster_init_seed"));
    p.x_centers = s.is_none("x_centers") ? 0 : s.get_int("x_centers");
    p.ccg_threshold = s.get_float("ccg_threshold");
    p.acg_threshold = s.get_float("acg_threshold");
    p.fragment_similarity = s.is_none("fragment_similarity") ? 0 : s.get_float("fragment_similarity");
    p.fragment_overlap = s.get_float("fragment_overlap");
    p.final_min_group_spikes = s.get_int("final_min_group_spikes");
    p.fragment_max_shift_um = s.is_none("fragment_max_shift") ? 0 : s.get_float("fragment_max_shift");
    p.redundant_fraction = s.is_none("redundant_fraction") ? 0 : s.get_float("redundant_fraction");
    p.piece_similarity = s.is_none("piece_similarity") ? 0 : s.get_float("piece_similarity");
    p.exact_refractory_test = s.get_string("refractory_test") == "poisson";
    p.exact_merge_test = s.get_string("merge_refractory_test") == "poisson";
    p.good_min_amplitude =
        s.is_none("good_amplitude_margin") ? 0 : s.get_float("Th_learned") + s.get_float("good_amplitude_margin");
    p.duplicate_spike_ms = s.get_float("duplicate_spike_ms");
    p.position_limit_um = s.get_float("position_limit");
    return p;
}

std::vector<int> group_positions(const std::vector<double>& gx, const std::vector<double>& gy,
                                 const std::vector<int>& gshank, const Probe& probe, double dmin_um,
                                 int64_t x_centers, int* n_groups) {
    KS_ASSERT(gx.size() == gy.size() && gx.size() == gshank.size() && dmin_um > 0, "group_positions: arguments");
    std::vector<int> group(gx.size(), -1);
    int next = 0;
    for (int shank : std::set<int>(gshank.begin(), gshank.end())) {
        std::vector<double> xs;
        for (int c = 0; c < probe.n_chan(); ++c)
            if (probe.kcoords[c] == shank) xs.push_back(probe.xc[c]);
        if (xs.empty())  // a grid shank always has channels; keep the positions' own x then
            for (size_t f = 0; f < gx.size(); ++f)
                if (gshank[f] == shank) xs.push_back(gx[f]);
        std::vector<double> xc;
        if (x_centers > 0) {
            std::vector<double> u = xs;
            std::sort(u.begin(), u.end());
            u.erase(std::unique(u.begin(), u.end()), u.end());
            const size_t k = std::min<size_t>(static_cast<size_t>(x_centers), u.size());
            std::vector<double> seeds;
            for (size_t i = 0; i < k; ++i) seeds.push_back(u[(i * (u.size() - 1)) / std::max<size_t>(1, k - 1)]);
            if (k == 1) seeds = {std::accumulate(xs.begin(), xs.end(), 0.0) / xs.size()};
            xc = kmeans_1d(xs, seeds);
        } else {
            xc = auto_x_centres(xs);
        }
        double ymin = INFINITY, ymax = -INFINITY;
        for (size_t f = 0; f < gy.size(); ++f)
            if (gshank[f] == shank) {
                ymin = std::min(ymin, gy[f]);
                ymax = std::max(ymax, gy[f]);
            }
        std::vector<double> yc;
        for (double y = ymin + dmin_um - 1; y < ymax + dmin_um + 1; y += 2 * dmin_um) yc.push_back(y);
        if (yc.empty()) yc.push_back(ymin);
        // Centres x-major, then y; each position to the nearest (first on ties).
        std::vector<int> local(gx.size(), -1);
        for (size_t f = 0; f < gx.size(); ++f) {
            if (gshank[f] != shank) continue;
            double best = INFINITY;
            for (size_t i = 0; i < xc.size(); ++i)
                for (size_t j = 0; j < yc.size(); ++j) {
                    const double d = (gx[f] - xc[i]) * (gx[f] - xc[i]) + (gy[f] - yc[j]) * (gy[f] - yc[j]);
                    if (d < best) {
                        best = d;
                        local[f] = static_cast<int>(i * yc.size() + j);
                    }
                }
        }
        // Number the centres that received positions, in centre order.
        std::map<int, int> ids;
        for (size_t f = 0; f < gx.size(); ++f)
            if (local[f] >= 0) ids[local[f]] = 0;
        for (auto& kv : ids) kv.second = next++;
        for (size_t f = 0; f < gx.size(); ++f)
            if (local[f] >= 0) group[f] = ids[local[f]];
    }
    *n_groups = next;
    return group;
}

namespace {

// What both modes cluster: a table of positions (grid centres or channels) with their channel sets,
// and per spike its position and features (nC x P on its position's channels, in a .npy on disk).
struct ClusterInput {
    std::vector<double> gx, gy;
    std::vector<int> gshank;
    std::vector<int32_t> iC;      // F x nC
    int F = 0, nC = 0, P = 0, nt = 0;
    double dmin_um = 0;
    std::vector<float> wpca;      // P x nt
    std::vector<int32_t> pos;     // per spike
    std::string tf_path;
};

struct Clustered {
    std::vector<int32_t> labels;
    std::vector<float> wall;            // K x C x P
    std::vector<int32_t> cluster_group;
    int K = 0;
};

// Reads a record's header and checks its format; returns the parsed extra object's integer fields on request.
void check_format(const std::string& record, const char* want_format, const std::string& rerun) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    std::string_view format;
    int64_t version = 0;
    if (simdjson::padded_string::load(record).get(text) || parser.parse(text).get(root) ||
        root["extra"]["format"].get_string().get(format) || root["extra"]["version"].get_int64().get(version) ||
        format != want_format || version != 1)
        throw Error(Exit::usage, record + ": not a record of format " + want_format + " version 1; rerun " + rerun);
}

double record_number(const std::string& record, const char* key) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    double v = 0;
    if (simdjson::padded_string::load(record).get(text) || parser.parse(text).get(root) || root["extra"][key].get_double().get(v))
        throw Error(Exit::usage, record + ": no number extra." + key);
    return v;
}

// §5.2-5.8 over every group: features bucketed by group into temporary files (memory holds at most one
// group per thread: a group running alone, or `threads` groups each below 1/threads of the spikes),
// graph clustering (with the veto, when given, as a function of the group's spike indices), templates.
Clustered cluster_all(const ClusterInput& in, const std::vector<int>& group_of_pos, int n_groups, int C,
                      const std::string& tmpdir, const StageParams& p, const Device& dev, ProgressMode progress_mode,
                      const std::function<cluster::KeepWhole(const std::vector<int64_t>&)>& veto_for, Summary* sum) {
    const int nC = in.nC, P = in.P, F = in.F;
    const auto N = static_cast<int64_t>(in.pos.size());
    std::vector<int64_t> group_count(n_groups, 0);
    {
        NpyRowReader tf(in.tf_path);
        if (tf.rows() != N || tf.shape().size() != 3 || tf.shape()[1] != nC || tf.shape()[2] != P)
            throw Error(Exit::usage, in.tf_path + ": shape disagrees with the spikes' positions and channel sets");
        std::vector<std::unique_ptr<OutputFile>> out(n_groups);
        for (int g = 0; g < n_groups; ++g) out[g] = std::make_unique<OutputFile>(tmpdir + "/group" + std::to_string(g) + ".f32");
        constexpr int64_t kChunk = 1 << 14;
        std::vector<float> buf(static_cast<size_t>(kChunk) * nC * P);
        int64_t done = 0, n;
        while ((n = tf.read(buf.data(), kChunk)) > 0) {
            for (int64_t i = 0; i < n; ++i) {
                const int g = group_of_pos[in.pos[done + i]];
                out[g]->write(buf.data() + static_cast<size_t>(i) * nC * P, sizeof(float) * nC * P);
                ++group_count[g];
            }
            done += n;
        }
        for (auto& o : out) o->commit();
    }
    Clustered res;
    res.labels.assign(N, -1);
    std::vector<std::vector<int64_t>> members(n_groups);
    for (int64_t s = 0; s < N; ++s) members[group_of_pos[in.pos[s]]].push_back(s);
    // One group's clustering and templates; groups are independent, so they may run side by side.
    struct GroupOut {
        std::vector<int> labels;
        int n_clusters = 0;
        std::vector<float> wall;  // n_clusters x C x P
        std::string note;         // the debug line
    };
    auto run_group = [&](int g, const Device& gdev) {
        GroupOut o;
        const int64_t n = group_count[g];
        const std::string tmp = tmpdir + "/group" + std::to_string(g) + ".f32";
        std::error_code rm;
        if (n == 0) {
            fs::remove(tmp, rm);
            return o;
        }
        std::vector<float> tf(static_cast<size_t>(n) * nC * P);
        {
            std::FILE* fp = std::fopen(tmp.c_str(), "rb");
            if (!fp || std::fread(tf.data(), sizeof(float), tf.size(), fp) != tf.size()) {
                if (fp) std::fclose(fp);
                throw Error(Exit::resources, tmp + ": cannot read back the bucketed features");
            }
            std::fclose(fp);
            fs::remove(tmp, rm);
        }
        // §5.2: the union of the group's positions' channels, and each spike's features in it.
        std::set<int> uset;
        for (int f = 0; f < F; ++f)
            if (group_of_pos[f] == g)
                for (int i = 0; i < nC; ++i)
                    if (in.iC[static_cast<size_t>(f) * nC + i] >= 0) uset.insert(in.iC[static_cast<size_t>(f) * nC + i]);
        const std::vector<int> uni(uset.begin(), uset.end());
        std::vector<int> col(C, -1);   // channel row -> column in the union
        for (size_t u = 0; u < uni.size(); ++u) col[uni[u]] = static_cast<int>(u);
        const int D = static_cast<int>(uni.size()) * P;
        std::vector<float> Xd(static_cast<size_t>(n) * D, 0.f);
        for (int64_t s = 0; s < n; ++s) {
            const int f = in.pos[members[g][s]];
            for (int i = 0; i < nC; ++i) {
                const int c = in.iC[static_cast<size_t>(f) * nC + i];
                if (c < 0) continue;
                const int u = col[c];
                for (int q = 0; q < P; ++q)
                    Xd[static_cast<size_t>(s) * D + u * P + q] = tf[(static_cast<size_t>(s) * nC + i) * P + q];
            }
        }
        const cluster::KeepWhole veto = veto_for ? veto_for(members[g]) : nullptr;
        cluster::GraphClusterResult r = cluster::graph_cluster(gdev, Xd.data(), n, D, p.graph, veto);
        o.note = log::format("group %d: %lld spikes, %zu channels, %lld landmarks, %d initial labels, %d after the "
                             "sweeps, splits %d (weak link) + %d (bimodal), %d kept whole, %d vetoed: %d clusters",
                             g, static_cast<long long>(n), uni.size(), static_cast<long long>(r.n_landmarks), r.n_initial,
                             r.n_after_sweeps, r.n_splits_lambda, r.n_splits_bimodal, r.n_kept_whole, r.n_vetoed,
                             r.n_clusters);
        // §5.8: templates = mean features of each cluster, on the group's channels.
        std::vector<double> acc(static_cast<size_t>(r.n_clusters) * D, 0.0);
        std::vector<int64_t> cnt(r.n_clusters, 0);
        for (int64_t s = 0; s < n; ++s) {
            const int l = r.labels[s];
            ++cnt[l];
            for (int d = 0; d < D; ++d) acc[static_cast<size_t>(l) * D + d] += Xd[static_cast<size_t>(s) * D + d];
        }
        o.wall.assign(static_cast<size_t>(r.n_clusters) * C * P, 0.f);
        for (int l = 0; l < r.n_clusters; ++l)
            for (size_t u = 0; u < uni.size(); ++u)
                for (int q = 0; q < P; ++q)
                    o.wall[(static_cast<size_t>(l) * C + uni[u]) * P + q] =
                        cnt[l] ? static_cast<float>(acc[static_cast<size_t>(l) * D + u * P + q] / cnt[l]) : 0.f;
        o.n_clusters = r.n_clusters;
        o.labels = std::move(r.labels);
        return o;
    };
    // On CPU with several threads, groups of less than 1/threads of the spikes run side by side, one
    // thread each (the clustering's rounds are too short to keep several threads busy on one group); the
    // larger ones run one at a time with every thread. The results are the same either way: a group's
    // clustering does not depend on its thread count, and groups are assembled in their order.
    std::vector<GroupOut> outs(n_groups);
    std::vector<int> side_by_side;
    Progress progress(progress_mode, "clustering", n_groups, "groups");
    const int threads = std::max(1, dev.threads());
    for (int g = 0; g < n_groups; ++g) {
        sum->largest_group = std::max(sum->largest_group, group_count[g]);
        if (!dev.is_cuda() && threads > 1 && group_count[g] * threads < N) {
            side_by_side.push_back(g);
            continue;
        }
        outs[g] = run_group(g, dev);
        progress.advance(1);
    }
    // Largest first, so that the last group to start is a small one.
    std::stable_sort(side_by_side.begin(), side_by_side.end(),
                     [&](int a, int b) { return group_count[a] > group_count[b]; });
    if (!side_by_side.empty()) {
        const Device one = Device::open("cpu", 1);
        std::exception_ptr failed;  // the first failure; the groups not yet started are skipped
        std::atomic<bool> stop{false};
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int i = 0; i < static_cast<int>(side_by_side.size()); ++i) {
            if (stop.load()) continue;
            try {
                outs[side_by_side[i]] = run_group(side_by_side[i], one);
            } catch (...) {
#pragma omp critical(cluster_group_failed)
                if (!failed) failed = std::current_exception();
                stop.store(true);
            }
#pragma omp critical(cluster_group_progress)
            progress.advance(1);
        }
        if (failed) std::rethrow_exception(failed);
    }
    int K = 0;
    for (int g = 0; g < n_groups; ++g) {
        GroupOut& o = outs[g];
        if (group_count[g] == 0) continue;
        log::debug("%s", o.note.c_str());
        for (int64_t s = 0; s < group_count[g]; ++s) res.labels[members[g][s]] = K + o.labels[s];
        res.wall.insert(res.wall.end(), o.wall.begin(), o.wall.end());
        for (int l = 0; l < o.n_clusters; ++l) res.cluster_group.push_back(g);
        K += o.n_clusters;
        o = GroupOut{};
    }
    progress.finish();
    res.K = K;
    for (int32_t l : res.labels) KS_ASSERT(l >= 0, "every spike has a cluster");
    return res;
}

// Full waveforms: templates[k, t, c] = sum_p Wall[k, c, p] wPCA[p, t].
std::vector<float> full_templates(const std::vector<float>& wall, int K, int C, int P, const std::vector<float>& wpca, int nt) {
    std::vector<float> full(static_cast<size_t>(K) * nt * C, 0.f);
    for (int k = 0; k < K; ++k)
        for (int c = 0; c < C; ++c)
            for (int q = 0; q < P; ++q) {
                const float w = wall[(static_cast<size_t>(k) * C + c) * P + q];
                if (w == 0.f) continue;
                for (int t = 0; t < nt; ++t) full[(static_cast<size_t>(k) * nt + t) * C + c] += w * wpca[static_cast<size_t>(q) * nt + t];
            }
    return full;
}

struct ScratchDir {
    std::string path;
    ~ScratchDir() {
        std::error_code e;
        fs::remove_all(path, e);
    }
};

std::string ensure_dir(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir + "/tmp", ec);
    if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    return dir + "/tmp";
}

void write_tsv(const std::string& path, const char* column, const std::vector<std::string>& values) {
    std::string text = std::string("cluster_id\t") + column + "\n";
    for (size_t k = 0; k < values.size(); ++k) text += std::to_string(k) + "\t" + values[k] + "\n";
    OutputFile f(path);
    f.write(text.data(), text.size());
    f.commit();
}

Summary run_first_pass(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    const std::string ddir = work_dir + "/detect";
    const std::string record = ddir + "/detect.json";
    std::error_code ec;
    if (!fs::exists(record, ec)) throw Error(Exit::usage, record + ": not found; run ks-detect --work " + work_dir + " first");
    check_format(record, "ks-detections", "ks-detect");
    const Probe probe = Probe::load(work_dir + "/probe.json");

    ClusterInput in;
    const NpyArray gxy = read_npy_checked(ddir + "/grid_xy_um.npy", Dtype::float64, 2);
    const NpyArray gic = read_npy_checked(ddir + "/grid_iC.npy", Dtype::int32, 2);
    const NpyArray gsh = read_npy_checked(ddir + "/grid_shank.npy", Dtype::int32, 1);
    const NpyArray wpca_a = read_npy_checked(ddir + "/wPCA.npy", Dtype::float32, 2);
    in.F = static_cast<int>(gxy.shape[0]);
    in.nC = static_cast<int>(gic.shape[1]);
    in.P = static_cast<int>(wpca_a.shape[0]);
    in.nt = static_cast<int>(wpca_a.shape[1]);
    if (gxy.shape[1] != 2 || gic.shape[0] != in.F || gsh.shape[0] != in.F)
        throw Error(Exit::usage, ddir + "/grid_*.npy: the grid arrays disagree in length");
    const std::vector<double> xy = gxy.as<double>();
    in.gx.resize(in.F);
    in.gy.resize(in.F);
    for (int f = 0; f < in.F; ++f) {
        in.gx[f] = xy[2 * f];
        in.gy[f] = xy[2 * f + 1];
    }
    in.iC = gic.as<int32_t>();
    const std::vector<int32_t> gshank32 = gsh.as<int32_t>();
    in.gshank.assign(gshank32.begin(), gshank32.end());
    in.wpca = wpca_a.as<float>();
    for (int v : in.iC)
        if (v >= probe.n_chan()) throw Error(Exit::usage, ddir + "/grid_iC.npy: a channel beyond the probe's");
    {
        // dmin used by the detection (the y step of the grid is dmin/2).
        std::vector<double> ys(in.gy);
        std::sort(ys.begin(), ys.end());
        ys.erase(std::unique(ys.begin(), ys.end()), ys.end());
        std::vector<double> steps;
        for (size_t i = 1; i < ys.size(); ++i) steps.push_back(ys[i] - ys[i - 1]);
        std::sort(steps.begin(), steps.end());
        in.dmin_um = steps.empty() ? 20.0 : 2 * steps[steps.size() / 2];
    }
    int n_groups = 0;
    const std::vector<int> group_of_pos = group_positions(in.gx, in.gy, in.gshank, probe, in.dmin_um, p.x_centers, &n_groups);
    in.pos = read_npy_checked(ddir + "/spike_pos.npy", Dtype::int32, 1).as<int32_t>();
    const auto N = static_cast<int64_t>(in.pos.size());
    for (int32_t f : in.pos)
        if (f < 0 || f >= in.F) throw Error(Exit::usage, ddir + "/spike_pos.npy: a position outside the grid");
    in.tf_path = ddir + "/tF.npy";

    const std::string dir = work_dir + "/cluster";
    const ScratchDir scratch{ensure_dir(dir)};
    remove_stale_output(dir + "/cluster.json");
    const int C = probe.n_chan();
    Summary sum;
    sum.n_groups = n_groups;
    sum.n_spikes = N;
    const Clustered cl = cluster_all(in, group_of_pos, n_groups, C, scratch.path, p, dev, opt.progress, nullptr, &sum);
    const int K = cl.K;
    sum.n_clusters = K;
    const std::vector<float> full = full_templates(cl.wall, K, C, in.P, in.wpca, in.nt);
    {
        const NpyArray times = read_npy_checked(ddir + "/spike_times.npy", Dtype::int64, 1);
        if (times.shape[0] != N) throw Error(Exit::usage, ddir + "/spike_times.npy: length disagrees with spike_pos.npy");
        write_npy(dir + "/spike_times.npy", Dtype::int64, times.shape, times.bytes.data());
    }
    write_npy(dir + "/spike_clusters.npy", {N}, cl.labels.data());
    write_npy(dir + "/templates_pc.npy", {K, C, in.P}, cl.wall.data());
    write_npy(dir + "/templates.npy", {K, in.nt, C}, full.data());
    write_npy(dir + "/cluster_group.npy", {K}, cl.cluster_group.data());

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "cluster";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    prov.inputs = {file_identity(record), file_identity(work_dir + "/probe.json")};
    for (const char* f : {"spike_times.npy", "spike_clusters.npy", "templates_pc.npy", "templates.npy", "cluster_group.npy"})
        prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-clusters");
    j.key("version").value(1);
    j.key("mode").value("spikes");
    j.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    j.key("n_spikes").value(N);
    j.key("n_clusters").value(K);
    j.key("n_groups").value(n_groups);
    j.key("largest_group").value(sum.largest_group);
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/cluster.json", prov);
    log::info("%d clusters from %lld spikes in %d groups: %s/", K, static_cast<long long>(N), n_groups, dir.c_str());
    return sum;
}

Summary run_final(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    const std::string mdir = work_dir + "/match", ddir = work_dir + "/detect";
    const std::string record = mdir + "/match.json", drecord = ddir + "/detect.json";
    std::error_code ec;
    if (!fs::exists(record, ec)) throw Error(Exit::usage, record + ": not found; run ks-match --work " + work_dir + " first");
    check_format(record, "ks-matches", "ks-match");
    if (!fs::exists(drecord, ec)) throw Error(Exit::usage, drecord + ": not found; run ks-detect --work " + work_dir + " first");
    const Probe probe = Probe::load(work_dir + "/probe.json");
    const int C = probe.n_chan();
    const double fs_hz = FilteredRecording(work_dir).info().fs;

    ClusterInput in;
    const NpyArray wpca_a = read_npy_checked(ddir + "/wPCA.npy", Dtype::float32, 2);
    in.P = static_cast<int>(wpca_a.shape[0]);
    in.nt = static_cast<int>(wpca_a.shape[1]);
    in.wpca = wpca_a.as<float>();
    const NpyArray tch_a = read_npy_checked(mdir + "/template_chans.npy", Dtype::int32, 2);
    const NpyArray tpk_a = read_npy_checked(mdir + "/template_peak_chan.npy", Dtype::int32, 1);
    const int Km = static_cast<int>(tch_a.shape[0]);
    in.nC = static_cast<int>(tch_a.shape[1]);
    const std::vector<int32_t> tchans = tch_a.as<int32_t>(), tpeak = tpk_a.as<int32_t>();
    if (tpk_a.shape[0] != Km) throw Error(Exit::usage, mdir + "/template_peak_chan.npy: length disagrees with template_chans.npy");
    // Positions are the channels; a spike sits at its template's peak channel with that channel's neighbours.
    in.F = C;
    in.gx = probe.xc;
    in.gy = probe.yc;
    in.gshank = probe.kcoords;
    in.iC.assign(static_cast<size_t>(C) * in.nC, -1);
    for (int k = 0; k < Km; ++k) {
        const int c = tpeak[k];
        if (c < 0 || c >= C) throw Error(Exit::usage, mdir + "/template_peak_chan.npy: a channel beyond the probe's");
        for (int i = 0; i < in.nC; ++i) in.iC[static_cast<size_t>(c) * in.nC + i] = tchans[static_cast<size_t>(k) * in.nC + i];
    }
    in.dmin_um = record_number(drecord, "dmin_um");
    const std::vector<int64_t> times = read_npy_checked(mdir + "/spike_times.npy", Dtype::int64, 1).as<int64_t>();
    const std::vector<int32_t> stmpl = read_npy_checked(mdir + "/spike_templates.npy", Dtype::int32, 1).as<int32_t>();
    const auto N = static_cast<int64_t>(times.size());
    if (static_cast<int64_t>(stmpl.size()) != N) throw Error(Exit::usage, mdir + "/spike_templates.npy: length disagrees with spike_times.npy");
    const std::vector<float> match_amp = read_npy_checked(mdir + "/spike_amplitudes.npy", Dtype::float32, 1).as<float>();
    if (static_cast<int64_t>(match_amp.size()) != N) throw Error(Exit::usage, mdir + "/spike_amplitudes.npy: length disagrees with spike_times.npy");
    in.pos.resize(N);
    for (int64_t i = 0; i < N; ++i) {
        if (stmpl[i] < 0 || stmpl[i] >= Km) throw Error(Exit::usage, mdir + "/spike_templates.npy: a template outside template_chans.npy's");
        in.pos[i] = tpeak[stmpl[i]];
    }
    in.tf_path = mdir + "/tF.npy";
    int n_groups = 0;
    const std::vector<int> group_of_pos = group_positions(in.gx, in.gy, in.gshank, probe, in.dmin_um, p.x_centers, &n_groups);

    const std::string dir = work_dir + "/final";
    const ScratchDir scratch{ensure_dir(dir)};
    remove_stale_output(dir + "/final.json");
    Summary sum;
    sum.n_groups = n_groups;
    // The intended refractoriness veto of §5.7: two sides of a split that share a refractory period
    // are one neuron. A group's spike rows are in time order, so its trains come out sorted.
    auto veto_for = [&](const std::vector<int64_t>& members) -> cluster::KeepWhole {
        return [&times, members, fs_hz](const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
            std::vector<double> ta(a.size()), tb(b.size());
            for (size_t i = 0; i < a.size(); ++i) ta[i] = static_cast<double>(times[members[a[i]]]) / fs_hz;
            for (size_t i = 0; i < b.size(); ++i) tb[i] = static_cast<double>(times[members[b[i]]]) / fs_hz;
            std::sort(ta.begin(), ta.end());
            std::sort(tb.begin(), tb.end());
            return ccg::split_vetoed_by_refractory(ta.data(), static_cast<int64_t>(ta.size()), tb.data(),
                                                   static_cast<int64_t>(tb.size()));
        };
    };
    // The final clustering clusters smaller groups than the first pass (final_min_group_spikes).
    StageParams pf = p;
    pf.graph.min_spikes = p.final_min_group_spikes;
    Clustered cl = cluster_all(in, group_of_pos, n_groups, C, scratch.path, pf, dev, opt.progress, veto_for, &sum);
    sum.n_before_merges = cl.K;

    // §7.3 merges.
    post::MergeParams mp;
    mp.fs = fs_hz;
    mp.acg_threshold = p.acg_threshold;
    mp.ccg_threshold = p.ccg_threshold;
    mp.fragment_similarity = p.fragment_similarity;
    mp.fragment_overlap = p.fragment_overlap;
    mp.exact_tail = p.exact_merge_test;
    mp.fragment_max_shift_um = p.fragment_max_shift_um;
    mp.xc = probe.xc;
    mp.yc = probe.yc;
    mp.kcoords = probe.kcoords;
    const post::MergeResult mr = post::ccg_merge(times, cl.labels, cl.K, cl.wall, C, in.P, in.wpca.data(), in.nt, mp);
    sum.n_merges = mr.n_merges;
    sum.n_fragment_merges = mr.n_fragment_merges;
    sum.n_shifted_fragment_merges = mr.n_shifted_fragment_merges;
    int K = mr.K;
    std::vector<int64_t> t2(N);
    std::vector<int32_t> l2(N);
    for (int64_t i = 0; i < N; ++i) {
        t2[i] = times[i] + mr.shift[cl.labels[i]];
        l2[i] = mr.into[cl.labels[i]];
    }
    // Units that are the same spikes found twice (post::redundant_merge), judged at template peaks.
    std::vector<uint8_t> redundant_drop, redundant_residue;
    if (p.redundant_fraction > 0) {
        const size_t D = static_cast<size_t>(C) * in.P;
        std::vector<double> ux(K), uy(K), unorm(K);
        for (int k = 0; k < K; ++k) {
            int best = 0;
            double bn = -1, tot = 0;
            for (int c = 0; c < C; ++c) {
                double n = 0;
                for (int q = 0; q < in.P; ++q) n += static_cast<double>(cl.wall[k * D + c * in.P + q]) * cl.wall[k * D + c * in.P + q];
                tot += n;
                if (n > bn) bn = n, best = c;
            }
            ux[k] = probe.xc[best];
            uy[k] = probe.yc[best];
            unorm[k] = std::sqrt(tot);
        }
        post::RedundantParams rp;
        rp.fs = fs_hz;
        rp.fraction = p.redundant_fraction;
        rp.ccg_threshold = p.ccg_threshold;
        const post::RedundantResult red = post::redundant_merge(t2, l2, K, ux, uy, unorm, rp);
        const post::MergeResult& rr = red.merge;
        for (int64_t i = 0; i < N; ++i) {
            t2[i] += rr.shift[l2[i]];
            l2[i] = rr.into[l2[i]];
        }
        redundant_drop = red.drop;
        redundant_residue = red.residue;
        sum.n_redundant_dropped = red.n_dropped;
        std::vector<float> kept_w;
        for (int32_t k : rr.kept) kept_w.insert(kept_w.end(), cl.wall.begin() + k * D, cl.wall.begin() + (k + 1) * D);
        KS_ASSERT(kept_w.size() == static_cast<size_t>(rr.K) * D, "redundant merge: templates");
        cl.wall.swap(kept_w);
        sum.n_redundant_merges = rr.n_merges;
        sum.n_merges += rr.n_merges;
        K = rr.K;
    }
    // Time order (stable: ties keep the matching's order) without the spikes found twice, then §7.4
    // duplicates.
    std::vector<int64_t> order;
    order.reserve(N);
    for (int64_t i = 0; i < N; ++i)
        if (redundant_drop.empty() || !redundant_drop[i]) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t2[a] < t2[b]; });
    const auto Nk = static_cast<int64_t>(order.size());
    std::vector<int64_t> ts(Nk);
    std::vector<int32_t> ls(Nk);
    for (int64_t i = 0; i < Nk; ++i) {
        ts[i] = t2[order[i]];
        ls[i] = l2[order[i]];
    }
    const auto dup_samples = static_cast<int64_t>(p.duplicate_spike_ms * fs_hz / 1000.0);
    const std::vector<uint8_t> kept = ccg::remove_duplicates(ts.data(), ls.data(), Nk, dup_samples);
    std::vector<int64_t> out_index, out_t;
    std::vector<int32_t> out_l, out_tmpl;
    for (int64_t i = 0; i < Nk; ++i)
        if (kept[i]) {
            out_index.push_back(order[i]);
            out_t.push_back(std::clamp<int64_t>(ts[i], 0, INT64_MAX));
            out_l.push_back(ls[i]);
            out_tmpl.push_back(stmpl[order[i]]);
        }
    const auto Nf = static_cast<int64_t>(out_index.size());
    sum.n_duplicates = Nk - Nf;
    sum.n_spikes = Nf;
    sum.n_clusters = K;

    // §7.5 contamination and the good label.
    std::vector<double> contam;
    std::vector<uint8_t> good;
    ccg::contamination(out_t.data(), out_l.data(), Nf, K, fs_hz, p.acg_threshold, &contam, &good,
                       p.exact_refractory_test);
    // Beyond Kilosort4: the matching keeps a template's spikes apart in time, so a unit made of noise
    // crossings also has a refractory-looking ACG. A spike exactly like the template passes Th_learned
    // only when the template's norm does; 'good' asks for a margin above that.
    // The same bound holds for the median of the unit's matched spike amplitudes: when most of a unit's
    // spikes sit just above Th_learned, the threshold truncates its amplitude distribution and an unknown
    // share of the neuron's spikes were never found (a fraction of a neuron, or noise crossings), even
    // where the template's norm, a mean over the found spikes, clears the bound.
    const std::vector<double> median_amp = post::unit_medians(out_l, out_index, match_amp, K);
    const size_t Dw = static_cast<size_t>(C) * in.P;
    std::vector<double> tnorm(K, 0.0);
    for (int k = 0; k < K; ++k) {
        double s = 0;
        for (size_t d = 0; d < Dw; ++d) s += static_cast<double>(cl.wall[k * Dw + d]) * cl.wall[k * Dw + d];
        tnorm[k] = std::sqrt(s);
        if (good[k] && tnorm[k] < p.good_min_amplitude) {
            good[k] = 0;
            ++sum.n_mua_low_amplitude;
        }
        if (good[k] && !redundant_residue.empty() && redundant_residue[k]) {
            good[k] = 0;
            ++sum.n_mua_residue;
        }
        if (good[k] && median_amp[k] < p.good_min_amplitude) {  // (bound 0, no condition: never true)
            good[k] = 0;
            ++sum.n_mua_at_threshold;
        }
    }
    if (p.piece_similarity > 0) {
        post::PieceParams pp;
        pp.fs = fs_hz;
        pp.similarity = p.piece_similarity;
        pp.ccg_threshold = p.ccg_threshold;
        pp.max_shift_um = p.fragment_max_shift_um;
        pp.xc = probe.xc;
        pp.yc = probe.yc;
        pp.kcoords = probe.kcoords;
        const std::vector<int32_t> parent =
            post::probable_pieces(out_t, out_l, K, cl.wall, C, in.P, in.wpca.data(), in.nt, good, pp);
        for (int k = 0; k < K; ++k)
            if (parent[k] >= 0) {
                good[k] = 0;
                ++sum.n_mua_piece;
            }
    }
    for (uint8_t g : good) sum.n_good += g ? 1 : 0;

    // §7.6/7.7 per matched spike from its features (streamed), then taken in the final order.
    std::vector<float> amp_m(N), pos_m(static_cast<size_t>(N) * 2);
    {
        NpyRowReader tf(in.tf_path);
        if (tf.rows() != N || tf.shape().size() != 3 || tf.shape()[1] != in.nC || tf.shape()[2] != in.P)
            throw Error(Exit::usage, in.tf_path + ": shape disagrees with spike_times.npy and template_chans.npy");
        const int row = in.nC * in.P;
        constexpr int64_t kChunk = 1 << 14;
        std::vector<float> buf(static_cast<size_t>(kChunk) * row);
        int64_t done = 0, n;
        while ((n = tf.read(buf.data(), kChunk)) > 0) {
            for (int64_t i = 0; i < n; ++i) {
                const float* f = buf.data() + static_cast<size_t>(i) * row;
                double s = 0;
                for (int d = 0; d < row; ++d) s += static_cast<double>(f[d]) * f[d];
                amp_m[done + i] = static_cast<float>(std::sqrt(s));
                double x, y;
                post::spike_position(f, tchans.data() + static_cast<size_t>(stmpl[done + i]) * in.nC, in.nC, in.P, probe.xc,
                                     probe.yc, p.position_limit_um, &x, &y);
                pos_m[2 * (done + i)] = static_cast<float>(x);
                pos_m[2 * (done + i) + 1] = static_cast<float>(y);
            }
            done += n;
        }
    }
    std::vector<float> amp(Nf), pos(static_cast<size_t>(Nf) * 2);
    for (int64_t i = 0; i < Nf; ++i) {
        amp[i] = amp_m[out_index[i]];
        pos[2 * i] = pos_m[2 * out_index[i]];
        pos[2 * i + 1] = pos_m[2 * out_index[i] + 1];
    }
    // §7.7/7.8 templates, their amplitude and similarity.
    const std::vector<float> full = full_templates(cl.wall, K, C, in.P, in.wpca, in.nt);
    std::vector<float> sim;
    std::vector<int> lag;
    match::template_similarity(cl.wall.data(), K, C, in.P, in.wpca.data(), in.nt, &sim, &lag);
    std::vector<std::string> ks_label(K), contam_s(K), amp_s(K);
    for (int k = 0; k < K; ++k) {
        ks_label[k] = good[k] ? "good" : "mua";
        contam_s[k] = log::format("%.1f", contam[k]);
        amp_s[k] = log::format("%.1f", tnorm[k]);
    }

    write_npy(dir + "/spike_times.npy", {Nf}, out_t.data());
    write_npy(dir + "/spike_clusters.npy", {Nf}, out_l.data());
    write_npy(dir + "/spike_templates.npy", {Nf}, out_tmpl.data());
    write_npy(dir + "/spike_match_index.npy", {Nf}, out_index.data());
    write_npy(dir + "/amplitudes.npy", {Nf}, amp.data());
    write_npy(dir + "/spike_positions.npy", {Nf, 2}, pos.data());
    write_npy(dir + "/templates_pc.npy", {K, C, in.P}, cl.wall.data());
    write_npy(dir + "/templates.npy", {K, in.nt, C}, full.data());
    write_npy(dir + "/similar_templates.npy", {K, K}, sim.data());
    {
        std::vector<double> c64(contam.begin(), contam.end());
        write_npy(dir + "/contam_pct.npy", {K}, c64.data());
    }
    write_tsv(dir + "/cluster_KSLabel.tsv", "KSLabel", ks_label);
    write_tsv(dir + "/cluster_ContamPct.tsv", "ContamPct", contam_s);
    write_tsv(dir + "/cluster_Amplitude.tsv", "Amplitude", amp_s);

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "final";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    prov.inputs = {file_identity(record), file_identity(drecord), file_identity(work_dir + "/probe.json")};
    for (const char* f : {"spike_times.npy", "spike_clusters.npy", "spike_templates.npy", "spike_match_index.npy",
                          "amplitudes.npy", "spike_positions.npy", "templates_pc.npy", "templates.npy",
                          "similar_templates.npy", "contam_pct.npy", "cluster_KSLabel.tsv", "cluster_ContamPct.tsv",
                          "cluster_Amplitude.tsv"})
        prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-clusters");
    j.key("version").value(1);
    j.key("mode").value("final");
    j.key("device").value(dev.is_cuda() ? "cuda" : "cpu");
    j.key("n_spikes").value(Nf);
    j.key("n_matched_spikes").value(N);
    j.key("n_duplicates_removed").value(sum.n_duplicates);
    j.key("n_clusters").value(K);
    j.key("n_clusters_before_merges").value(sum.n_before_merges);
    j.key("n_merges").value(sum.n_merges);
    j.key("n_fragment_merges").value(sum.n_fragment_merges);
    j.key("n_shifted_fragment_merges").value(sum.n_shifted_fragment_merges);
    j.key("n_redundant_merges").value(sum.n_redundant_merges);
    j.key("n_redundant_spikes_removed").value(sum.n_redundant_dropped);
    j.key("n_good").value(sum.n_good);
    j.key("n_mua_low_amplitude").value(sum.n_mua_low_amplitude);
    j.key("n_mua_at_threshold").value(sum.n_mua_at_threshold);
    j.key("n_mua_residue").value(sum.n_mua_residue);
    j.key("n_mua_piece").value(sum.n_mua_piece);
    j.key("n_groups").value(n_groups);
    j.key("largest_group").value(sum.largest_group);
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/final.json", prov);
    log::info("%d units (%d good) from %lld matched spikes: %d clusters, %d merges, %lld duplicates removed: %s/", K,
              sum.n_good, static_cast<long long>(N), sum.n_before_merges, sum.n_merges,
              static_cast<long long>(sum.n_duplicates), dir.c_str());
    return sum;
}

}  // namespace

Summary run(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    return opt.final_mode ? run_final(work_dir, p, dev, opt) : run_first_pass(work_dir, p, dev, opt);
}

}  // namespace ks::clusterstage
