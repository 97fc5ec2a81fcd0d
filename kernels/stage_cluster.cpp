// ks-cluster's stage driver (first pass): grouping (§5.1), per-group feature matrices (§5.2), graph
// clustering (graph_cluster.hpp, §5.3-5.7), templates (§5.8). The features are bucketed by group into
// temporary files first, so memory holds one group at a time, not the recording's spikes.
#include "ks/stages/cluster.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <set>

#include <simdjson.h>

#include "ks/error.hpp"
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

Summary run(const std::string& work_dir, const StageParams& p, const Device& dev, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string ddir = work_dir + "/detect";
    const std::string record = ddir + "/detect.json";
    std::error_code ec;
    if (!fs::exists(record, ec)) throw Error(Exit::usage, record + ": not found; run ks-detect --work " + work_dir + " first");
    {
        // The detections' header: this build reads format ks-detections version 1 (formats/detections.md).
        simdjson::dom::parser parser;
        simdjson::padded_string text;
        simdjson::dom::element root;
        std::string_view format;
        int64_t version = 0;
        if (simdjson::padded_string::load(record).get(text) || parser.parse(text).get(root) ||
            root["extra"]["format"].get_string().get(format) || root["extra"]["version"].get_int64().get(version) ||
            format != "ks-detections" || version != 1)
            throw Error(Exit::usage, record + ": not a ks-detect record of format ks-detections version 1; rerun ks-detect");
    }
    const Probe probe = Probe::load(work_dir + "/probe.json");

    const NpyArray gxy = read_npy_checked(ddir + "/grid_xy_um.npy", Dtype::float64, 2);
    const NpyArray gic = read_npy_checked(ddir + "/grid_iC.npy", Dtype::int32, 2);
    const NpyArray gsh = read_npy_checked(ddir + "/grid_shank.npy", Dtype::int32, 1);
    const NpyArray wpca_a = read_npy_checked(ddir + "/wPCA.npy", Dtype::float32, 2);
    const int F = static_cast<int>(gxy.shape[0]), nC = static_cast<int>(gic.shape[1]);
    const int P = static_cast<int>(wpca_a.shape[0]), nt = static_cast<int>(wpca_a.shape[1]);
    if (gxy.shape[1] != 2 || gic.shape[0] != F || gsh.shape[0] != F)
        throw Error(Exit::usage, ddir + "/grid_*.npy: the grid arrays disagree in length");
    const std::vector<double> xy = gxy.as<double>();
    std::vector<double> gx(F), gy(F);
    for (int f = 0; f < F; ++f) {
        gx[f] = xy[2 * f];
        gy[f] = xy[2 * f + 1];
    }
    const std::vector<int32_t> iC = gic.as<int32_t>();
    const std::vector<int32_t> gshank32 = gsh.as<int32_t>();
    const std::vector<int> gshank(gshank32.begin(), gshank32.end());
    const std::vector<float> wpca = wpca_a.as<float>();
    for (int v : iC)
        if (v >= probe.n_chan()) throw Error(Exit::usage, ddir + "/grid_iC.npy: a channel beyond the probe's");
    double dmin = 0;
    {
        // dmin used by the detection (the y step of the grid is dmin/2).
        std::vector<double> ys(gy);
        std::sort(ys.begin(), ys.end());
        ys.erase(std::unique(ys.begin(), ys.end()), ys.end());
        std::vector<double> steps;
        for (size_t i = 1; i < ys.size(); ++i) steps.push_back(ys[i] - ys[i - 1]);
        std::sort(steps.begin(), steps.end());
        dmin = steps.empty() ? 20.0 : 2 * steps[steps.size() / 2];
    }
    int n_groups = 0;
    const std::vector<int> group_of_pos = group_positions(gx, gy, gshank, probe, dmin, p.x_centers, &n_groups);

    const NpyArray pos_a = read_npy_checked(ddir + "/spike_pos.npy", Dtype::int32, 1);
    const std::vector<int32_t> pos = pos_a.as<int32_t>();
    const auto N = static_cast<int64_t>(pos.size());
    for (int32_t f : pos)
        if (f < 0 || f >= F) throw Error(Exit::usage, ddir + "/spike_pos.npy: a position outside the grid");

    const std::string dir = work_dir + "/cluster";
    fs::create_directories(dir + "/tmp", ec);
    if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    // The bucketed features are scratch: gone however this function ends.
    struct TmpRemover {
        std::string path;
        ~TmpRemover() {
            std::error_code e;
            fs::remove_all(path, e);
        }
    } tmp_remover{dir + "/tmp"};
    remove_stale_output(dir + "/cluster.json");
    std::error_code rm;

    // Bucket the features by group into temporary files (row order = spike order within a group).
    std::vector<int64_t> group_count(n_groups, 0);
    {
        NpyRowReader tf(ddir + "/tF.npy");
        if (tf.rows() != N || tf.shape().size() != 3 || tf.shape()[1] != nC || tf.shape()[2] != P)
            throw Error(Exit::usage, ddir + "/tF.npy: shape disagrees with spike_pos.npy and grid_iC.npy");
        std::vector<std::unique_ptr<OutputFile>> out(n_groups);
        for (int g = 0; g < n_groups; ++g) out[g] = std::make_unique<OutputFile>(dir + "/tmp/group" + std::to_string(g) + ".f32");
        constexpr int64_t kChunk = 1 << 14;
        std::vector<float> buf(static_cast<size_t>(kChunk) * nC * P);
        int64_t done = 0, n;
        while ((n = tf.read(buf.data(), kChunk)) > 0) {
            for (int64_t i = 0; i < n; ++i) {
                const int g = group_of_pos[pos[done + i]];
                out[g]->write(buf.data() + static_cast<size_t>(i) * nC * P, sizeof(float) * nC * P);
                ++group_count[g];
            }
            done += n;
        }
        for (auto& o : out) o->commit();
    }

    std::vector<int32_t> labels(N, -1);
    std::vector<std::vector<int64_t>> members(n_groups);
    for (int64_t s = 0; s < N; ++s) members[group_of_pos[pos[s]]].push_back(s);
    const int C = probe.n_chan();
    std::vector<float> wall;          // K x C x P
    std::vector<int32_t> cluster_group;
    Summary sum;
    sum.n_groups = n_groups;
    sum.n_spikes = N;
    Progress progress(opt.progress, "clustering", n_groups, "groups");
    int K = 0;
    for (int g = 0; g < n_groups; ++g) {
        const int64_t n = group_count[g];
        sum.largest_group = std::max(sum.largest_group, n);
        const std::string tmp = dir + "/tmp/group" + std::to_string(g) + ".f32";
        if (n == 0) {
            fs::remove(tmp, rm);
            progress.advance(1);
            continue;
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
                    if (iC[static_cast<size_t>(f) * nC + i] >= 0) uset.insert(iC[static_cast<size_t>(f) * nC + i]);
        const std::vector<int> uni(uset.begin(), uset.end());
        std::vector<int> col(C, -1);   // channel row -> column in the union
        for (size_t u = 0; u < uni.size(); ++u) col[uni[u]] = static_cast<int>(u);
        const int D = static_cast<int>(uni.size()) * P;
        std::vector<float> Xd(static_cast<size_t>(n) * D, 0.f);
        for (int64_t s = 0; s < n; ++s) {
            const int f = pos[members[g][s]];
            for (int i = 0; i < nC; ++i) {
                const int c = iC[static_cast<size_t>(f) * nC + i];
                if (c < 0) continue;
                const int u = col[c];
                for (int q = 0; q < P; ++q)
                    Xd[static_cast<size_t>(s) * D + u * P + q] = tf[(static_cast<size_t>(s) * nC + i) * P + q];
            }
        }
        const cluster::GraphClusterResult r = cluster::graph_cluster(dev, Xd.data(), n, D, p.graph);
        log::debug("group %d: %lld spikes, %zu channels, %lld landmarks, %d initial labels, %d after the sweeps, "
                   "splits %d (weak link) + %d (bimodal), %d kept whole, %d vetoed: %d clusters",
                   g, static_cast<long long>(n), uni.size(), static_cast<long long>(r.n_landmarks), r.n_initial,
                   r.n_after_sweeps, r.n_splits_lambda, r.n_splits_bimodal, r.n_kept_whole, r.n_vetoed, r.n_clusters);
        // §5.8: templates = mean features of each cluster, on the group's channels.
        std::vector<double> acc(static_cast<size_t>(r.n_clusters) * D, 0.0);
        std::vector<int64_t> cnt(r.n_clusters, 0);
        for (int64_t s = 0; s < n; ++s) {
            const int l = r.labels[s];
            labels[members[g][s]] = K + l;
            ++cnt[l];
            for (int d = 0; d < D; ++d) acc[static_cast<size_t>(l) * D + d] += Xd[static_cast<size_t>(s) * D + d];
        }
        for (int l = 0; l < r.n_clusters; ++l) {
            std::vector<float> t(static_cast<size_t>(C) * P, 0.f);
            for (size_t u = 0; u < uni.size(); ++u)
                for (int q = 0; q < P; ++q)
                    t[static_cast<size_t>(uni[u]) * P + q] =
                        cnt[l] ? static_cast<float>(acc[static_cast<size_t>(l) * D + u * P + q] / cnt[l]) : 0.f;
            wall.insert(wall.end(), t.begin(), t.end());
            cluster_group.push_back(g);
        }
        K += r.n_clusters;
        progress.advance(1);
    }
    progress.finish();
    sum.n_clusters = K;
    for (int32_t l : labels) KS_ASSERT(l >= 0, "every spike has a cluster");

    // Full waveforms: templates[k, t, c] = sum_p Wall[k, c, p] wPCA[p, t].
    std::vector<float> full(static_cast<size_t>(K) * nt * C, 0.f);
    for (int k = 0; k < K; ++k)
        for (int c = 0; c < C; ++c)
            for (int q = 0; q < P; ++q) {
                const float w = wall[(static_cast<size_t>(k) * C + c) * P + q];
                if (w == 0.f) continue;
                for (int t = 0; t < nt; ++t) full[(static_cast<size_t>(k) * nt + t) * C + c] += w * wpca[static_cast<size_t>(q) * nt + t];
            }

    {
        const NpyArray times = read_npy_checked(ddir + "/spike_times.npy", Dtype::int64, 1);
        if (times.shape[0] != N) throw Error(Exit::usage, ddir + "/spike_times.npy: length disagrees with spike_pos.npy");
        write_npy(dir + "/spike_times.npy", Dtype::int64, times.shape, times.bytes.data());
    }
    write_npy(dir + "/spike_clusters.npy", {N}, labels.data());
    write_npy(dir + "/templates_pc.npy", {K, C, P}, wall.data());
    write_npy(dir + "/templates.npy", {K, nt, C}, full.data());
    write_npy(dir + "/cluster_group.npy", {K}, cluster_group.data());

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

}  // namespace ks::clusterstage
