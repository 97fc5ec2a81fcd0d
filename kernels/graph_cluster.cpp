// Kilosort4's graph clustering after the kNN (kilosort4-algorithm.md §5.4-§5.7): greedy k-means++-like
// seeding (clustering_qr.kmeans_plusplus), bipartite modularity sweeps (clustering_qr.cluster), the
// merge tree (hierarchical.maketree) and the split walk (swarmsplitter.split / new_clusters).
// Differences from Kilosort4, all for determinism or memory: scores are computed in double; candidates
// are drawn with Efraimidis-Spirakis keys from one mt19937_64 (torch.multinomial otherwise), from all
// spikes (Kilosort4 thins to 2^24 candidates for torch's limit); sweeps only score the labels that can
// win instead of dense n x 200 arrays.
#define EIGEN_DONT_PARALLELIZE  // threads come from our own OpenMP loops, results stay thread-independent
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/graph_cluster.hpp"
#include "ks/log.hpp"

namespace ks::cluster {
namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr int64_t kSeedBlock = 512;  // rows per job of the seeding's candidate scores

int n_threads(const Device& dev) { return std::max(1, dev.threads()); }

int count_distinct(const std::vector<int>& labels) {
    if (labels.empty()) return 0;
    const int mx = *std::max_element(labels.begin(), labels.end());
    std::vector<uint8_t> seen(static_cast<size_t>(mx) + 1, 0);
    int c = 0;
    for (int l : labels)
        if (!seen[l]) seen[l] = 1, ++c;
    return c;
}

std::vector<int> seed_labels(int threads, const float* X, int64_t n, int D, int n_init, int n_candidates,
                             uint64_t seed) {
    if (n_init < 1) throw Error(Exit::usage, "n_init: must be >= 1, got " + std::to_string(n_init));
    if (n_candidates < 1)
        throw Error(Exit::usage, "n_candidates: must be >= 1, got " + std::to_string(n_candidates));
    std::vector<int> labels(static_cast<size_t>(n), 0);
    if (n == 0) return labels;
    std::vector<double> vtot(static_cast<size_t>(n)), vexp0(static_cast<size_t>(n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        const float* x = X + i * D;
        double q = 0;
        for (int j = 0; j < D; ++j) q += static_cast<double>(x[j]) * x[j];
        vtot[i] = q;
    }
    // Pruning (exact): a spike's unexplained variance w_i = |x_i - r_i|^2, with r_i the centre that
    // explained it last (the origin if none), and c explains more only if |x_i - c|^2 < w_i, impossible
    // when |r_i - c| >= 2 sqrt(w_i). Spikes are grouped by r_i, and each block of a group multiplies only
    // with the candidates that pass for its largest w, with a margin covering the float products, so
    // every positive gain of the dense computation is still summed.
    const int origin = n_init;                  // reference id of never-improved spikes
    std::vector<int64_t> centre_row;            // row of the centre chosen in each round
    std::vector<int> ref(static_cast<size_t>(n), origin);
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::vector<int64_t> group_start(static_cast<size_t>(n_init) + 2);
    std::vector<int64_t> blk_start, blk_end;
    std::mt19937_64 rng(seed);
    std::vector<std::pair<double, int64_t>> keys;
    std::vector<double> partial;  // blocks x candidates gains, summed in block order afterwards
    std::vector<uint8_t> needed;  // blocks x candidates
    RowMatF C;
    std::vector<double> cnorm, dref;
    const double u_margin = (2.0 * D + 16.0) * std::ldexp(1.0, -24);

    for (int j = 0; j < n_init; ++j) {
        keys.clear();
        for (int64_t i = 0; i < n; ++i) {
            const double w = vtot[i] - vexp0[i];
            if (!(w > 0)) continue;
            // u in (0, 1): 53 random bits, offset by half a unit so log(u) is finite.
            const double u = (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
            keys.emplace_back(std::log(u) / w, i);
        }
        if (keys.empty()) break;  // everything explained: no candidate has any weight
        const int nc = static_cast<int>(std::min<int64_t>(n_candidates, static_cast<int64_t>(keys.size())));
        std::partial_sort(keys.begin(), keys.begin() + nc, keys.end(), [](const auto& a, const auto& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        C.resize(nc, D);
        cnorm.assign(nc, 0.0);
        for (int c = 0; c < nc; ++c) {
            const float* x = X + keys[c].second * D;
            for (int d = 0; d < D; ++d) C(c, d) = x[d];
            cnorm[c] = vtot[keys[c].second];
        }
        // Distances from every reference (centres so far, then the origin) to every candidate.
        const int n_ref = static_cast<int>(centre_row.size());
        dref.assign(static_cast<size_t>(n_init + 1) * nc, 0.0);
        for (int g = 0; g <= n_ref; ++g) {
            const int gid = g < n_ref ? g : origin;
            for (int c = 0; c < nc; ++c) {
                double q = 0;
                if (gid == origin) {
                    q = cnorm[c];
                } else {
                    const float* r = X + centre_row[g] * D;
                    for (int d = 0; d < D; ++d) {
                        const double t = static_cast<double>(r[d]) - C(c, d);
                        q += t * t;
                    }
                }
                dref[static_cast<size_t>(gid) * nc + c] = std::sqrt(q);
            }
        }
        // Rows grouped by reference (ascending within a group), cut into blocks inside each group.
        std::fill(group_start.begin(), group_start.end(), 0);
        for (int64_t i = 0; i < n; ++i) group_start[ref[i] + 1]++;
        for (int g = 0; g <= n_init; ++g) group_start[g + 1] += group_start[g];
        {
            std::vector<int64_t> pos(group_start.begin(), group_start.end() - 1);
            for (int64_t i = 0; i < n; ++i) order[pos[ref[i]]++] = i;
        }
        blk_start.clear();
        blk_end.clear();
        for (int g = 0; g <= n_init; ++g)
            for (int64_t s = group_start[g]; s < group_start[g + 1]; s += kSeedBlock) {
                blk_start.push_back(s);
                blk_end.push_back(std::min(s + kSeedBlock, group_start[g + 1]));
            }
        const int64_t n_blocks = static_cast<int64_t>(blk_start.size());
        partial.assign(static_cast<size_t>(n_blocks) * nc, 0.0);
        needed.assign(static_cast<size_t>(n_blocks) * nc, 0);
#pragma omp parallel num_threads(threads)
        {
            RowMatF Xb(kSeedBlock, D), Cs(nc, D), G(kSeedBlock, nc);
            std::vector<int> cand;
#pragma omp for schedule(dynamic, 1)
            for (int64_t blk = 0; blk < n_blocks; ++blk) {
                const int64_t s0 = blk_start[blk], rb = blk_end[blk] - s0;
                const int g = ref[order[s0]];
                double wmax = 0, vmax = 0;
                for (int64_t r = 0; r < rb; ++r) {
                    const int64_t i = order[s0 + r];
                    wmax = std::max(wmax, vtot[i] - vexp0[i]);
                    vmax = std::max(vmax, vtot[i]);
                }
                cand.clear();
                for (int c = 0; c < nc; ++c) {
                    const double slack = std::sqrt(u_margin * (vmax + cnorm[c]));
                    if (dref[static_cast<size_t>(g) * nc + c] < 2.0 * std::sqrt(std::max(wmax, 0.0)) + slack)
                        cand.push_back(c);
                }
                if (cand.empty()) continue;
                const int nk = static_cast<int>(cand.size());
                for (int q = 0; q < nk; ++q) Cs.row(q) = C.row(cand[q]);
                for (int64_t r = 0; r < rb; ++r)
                    std::copy(X + order[s0 + r] * D, X + order[s0 + r] * D + D, Xb.data() + r * D);
                G.topLeftCorner(rb, nk).noalias() = Xb.topRows(rb) * Cs.topRows(nk).transpose();
                double* ps = partial.data() + blk * nc;
                for (int64_t r = 0; r < rb; ++r) {
                    const double e = vexp0[order[s0 + r]];
                    for (int q = 0; q < nk; ++q) {
                        const double gain = 2.0 * static_cast<double>(G(r, q)) - cnorm[cand[q]] - e;
                        if (gain > 0) ps[cand[q]] += gain;
                    }
                }
            }
        }
        std::vector<double> vsum(nc, 0.0);
        for (int64_t blk = 0; blk < n_blocks; ++blk)
            for (int c = 0; c < nc; ++c) vsum[c] += partial[blk * nc + c];
        const int best = static_cast<int>(std::max_element(vsum.begin(), vsum.end()) - vsum.begin());
        const int64_t best_row = keys[best].second;
        const float* xc = X + best_row * D;
        const double cn = cnorm[best];
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            const double w = vtot[i] - vexp0[i];
            // Same exact pruning: this spike cannot gain from the chosen centre.
            if (dref[static_cast<size_t>(ref[i]) * nc + best] >=
                2.0 * std::sqrt(std::max(w, 0.0)) + std::sqrt(u_margin * (vtot[i] + cn)))
                continue;
            const float* x = X + i * D;
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += static_cast<double>(x[d]) * xc[d];
            const double v = 2.0 * dot - cn;
            if (v - vexp0[i] > 0) {
                labels[i] = j;
                vexp0[i] = v;
                ref[i] = static_cast<int>(centre_row.size());
            }
        }
        centre_row.push_back(best_row);
    }
    return labels;
}

}  // namespace

std::vector<int> kmeanspp_init(const float* X, int64_t n, int D, int n_init, int n_candidates, uint64_t seed) {
    return seed_labels(1, X, n, D, n_init, n_candidates, seed);
}

std::vector<int> kmeanspp_init(const Device& dev, const float* X, int64_t n, int D, int n_init, int n_candidates,
                               uint64_t seed) {
    return seed_labels(n_threads(dev), X, n, D, n_init, n_candidates, seed);
}

BipartiteGraph make_bipartite(std::vector<int32_t> kn, int64_t n, int k, const std::vector<int64_t>& landmarks) {
    BipartiteGraph g;
    g.n = n;
    g.k = k;
    g.n_landmarks = static_cast<int64_t>(landmarks.size());
    KS_ASSERT(static_cast<int64_t>(kn.size()) == n * k, "make_bipartite: kn has the wrong size");
    g.kn = std::move(kn);
    // Row -> own landmark index (-1 for spikes that are not landmarks).
    std::vector<int32_t> own(static_cast<size_t>(n), -1);
    for (int64_t s = 0; s < g.n_landmarks; ++s) own[landmarks[s]] = static_cast<int32_t>(s);
    g.is_self.assign(g.kn.size(), 0);
    g.k_spike.assign(static_cast<size_t>(n), 0.0);
    g.k_landmark.assign(static_cast<size_t>(g.n_landmarks), 0.0);
    g.in_start.assign(static_cast<size_t>(g.n_landmarks) + 1, 0);
    for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < k; ++j) {
            const int32_t s = g.kn[i * k + j];
            KS_ASSERT(s >= 0 && s < g.n_landmarks, "make_bipartite: kn index out of range");
            g.in_start[s + 1]++;
            if (s == own[i]) {
                g.is_self[i * k + j] = 1;
            } else {
                g.k_spike[i] += 1;
                g.k_landmark[s] += 1;
                g.m += 1;
            }
        }
    for (int64_t s = 0; s < g.n_landmarks; ++s) g.in_start[s + 1] += g.in_start[s];
    g.in_rows.resize(g.kn.size());
    std::vector<int64_t> pos(g.in_start.begin(), g.in_start.end() - 1);
    for (int64_t i = 0; i < n; ++i)  // rows ascending within each landmark
        for (int j = 0; j < k; ++j) g.in_rows[pos[g.kn[i * k + j]]++] = i;
    return g;
}

namespace {

// Landmark step: c_s = argmax_c [#{i : s in kn[i], c_i = c} - coef k_s n_c]; ties to the lowest label.
void landmark_step(int threads, const BipartiteGraph& g, const std::vector<int>& ci, int nl, double coef,
                   std::vector<int>& cs) {
    std::vector<int64_t> n_c(nl, 0);
    for (int l : ci) n_c[l]++;
    const int cmin = static_cast<int>(std::min_element(n_c.begin(), n_c.end()) - n_c.begin());
#pragma omp parallel num_threads(threads)
    {
        std::vector<int> cnt(nl, 0);
        std::vector<int> touched;
#pragma omp for schedule(static)
        for (int64_t s = 0; s < g.n_landmarks; ++s) {
            touched.clear();
            for (int64_t e = g.in_start[s]; e < g.in_start[s + 1]; ++e) {
                const int c = ci[g.in_rows[e]];
                if (cnt[c]++ == 0) touched.push_back(c);
            }
            const double ks = g.k_landmark[s];
            int best = cmin;
            double best_score = static_cast<double>(cnt[cmin]) - coef * ks * static_cast<double>(n_c[cmin]);
            for (int c : touched) {
                const double sc = static_cast<double>(cnt[c]) - coef * ks * static_cast<double>(n_c[c]);
                if (sc > best_score || (sc == best_score && c < best)) best = c, best_score = sc;
            }
            for (int c : touched) cnt[c] = 0;
            cs[s] = best;
        }
    }
}

// Spike step: c_i = argmax_c [#{j : c_{kn[i,j]} = c} - coef k_i L_c]; ties to the lowest label.
void spike_step(int threads, const BipartiteGraph& g, const std::vector<int>& cs, int nl, double coef,
                std::vector<int>& ci) {
    std::vector<int64_t> L_c(nl, 0);
    for (int l : cs) L_c[l]++;
    const int cmin = static_cast<int>(std::min_element(L_c.begin(), L_c.end()) - L_c.begin());
    const int k = g.k;
#pragma omp parallel num_threads(threads)
    {
        std::vector<int> lab(k), cnt(k);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < g.n; ++i) {
            int nd = 0;
            int cmin_cnt = 0;
            for (int j = 0; j < k; ++j) {
                const int c = cs[g.kn[i * k + j]];
                if (c == cmin) ++cmin_cnt;
                int q = 0;
                while (q < nd && lab[q] != c) ++q;
                if (q == nd) lab[nd] = c, cnt[nd++] = 0;
                cnt[q]++;
            }
            const double ki = g.k_spike[i];
            int best = cmin;
            double best_score = static_cast<double>(cmin_cnt) - coef * ki * static_cast<double>(L_c[cmin]);
            for (int q = 0; q < nd; ++q) {
                const double sc = static_cast<double>(cnt[q]) - coef * ki * static_cast<double>(L_c[lab[q]]);
                if (sc > best_score || (sc == best_score && lab[q] < best)) best = lab[q], best_score = sc;
            }
            ci[i] = best;
        }
    }
}

}  // namespace

SweepResult modularity_sweeps(const Device& dev, const BipartiteGraph& g, std::vector<int> init_labels,
                              int n_labels_max, int n_sweeps, double lambda) {
    KS_ASSERT(static_cast<int64_t>(init_labels.size()) == g.n, "modularity_sweeps: one label per spike");
    KS_ASSERT(n_labels_max >= 1, "modularity_sweeps: n_labels_max >= 1");
    for (int l : init_labels) KS_ASSERT(l >= 0 && l < n_labels_max, "modularity_sweeps: label out of range");
    const int threads = n_threads(dev);
    // m == 0 only when every edge is a self-link (k = 1, all spikes landmarks): no null term then.
    const double coef = g.m > 0 ? lambda / g.m : 0.0;
    SweepResult r;
    r.spike_labels = std::move(init_labels);
    r.landmark_labels.assign(static_cast<size_t>(g.n_landmarks), 0);
    for (int t = 0; t < n_sweeps; ++t) {
        landmark_step(threads, g, r.spike_labels, n_labels_max, coef, r.landmark_labels);
        spike_step(threads, g, r.landmark_labels, n_labels_max, coef, r.spike_labels);
    }
    // Renumber in increasing label order (torch.unique), then one more landmark step with the new labels.
    std::vector<int> map(n_labels_max, -1);
    for (int l : r.spike_labels) map[l] = 0;
    int nl = 0;
    for (int& v : map)
        if (v == 0) v = nl++;
    for (int& l : r.spike_labels) l = map[l];
    r.n_labels = nl;
    if (nl > 0) landmark_step(threads, g, r.spike_labels, nl, coef, r.landmark_labels);
    return r;
}

MergeTree merge_tree(const BipartiteGraph& g, const std::vector<int>& spike_labels,
                     const std::vector<int>& landmark_labels, int n_labels) {
    const int nc = n_labels;
    KS_ASSERT(nc >= 1, "merge_tree: at least one label");
    MergeTree t;
    t.n_leaves = nc;
    // cc[a][b]: edges of M from spikes labelled a to landmarks labelled b; cneg from the degree sums.
    RowMatD cc = RowMatD::Zero(nc, nc);
    std::vector<double> ka(nc, 0.0), kb(nc, 0.0);
    for (int64_t i = 0; i < g.n; ++i) {
        const int a = spike_labels[i];
        ka[a] += g.k_spike[i];
        for (int j = 0; j < g.k; ++j)
            if (!g.is_self[i * g.k + j]) cc(a, landmark_labels[g.kn[i * g.k + j]]) += 1.0;
    }
    for (int64_t s = 0; s < g.n_landmarks; ++s) kb[landmark_labels[s]] += g.k_landmark[s];
    RowMatD cneg(nc, nc);
    for (int a = 0; a < nc; ++a)
        for (int b = 0; b < nc; ++b) cneg(a, b) = 0.001 + (g.m > 0 ? ka[a] * kb[b] / g.m : 0.0);
    RowMatD ccs = cc + cc.transpose();
    RowMatD cns = cneg + cneg.transpose();
    cc = ccs;
    cneg = cns;
    RowMatD crat = cc.array() / cneg.array();
    for (int a = 0; a < nc; ++a) crat(a, a) = -1.0;

    std::vector<int> xnow(nc);
    std::vector<double> ntot(nc, 1.0);
    for (int a = 0; a < nc; ++a) xnow[a] = a;
    t.leaves.resize(static_cast<size_t>(2 * nc - 1));
    for (int a = 0; a < nc; ++a) t.leaves[a] = {a};

    // hierarchical.find_merges, operation for operation on the full matrices (retired rows hold
    // negative values that never win against live pairs, whose ratios are >= 0).
    for (int mstep = 0; mstep < nc - 1; ++mstep) {
        int y = 0, x = 0;
        double best = -std::numeric_limits<double>::infinity();
        for (int a = 0; a < nc; ++a)
            for (int b = 0; b < nc; ++b)
                if (crat(a, b) > best) best = crat(a, b), y = a, x = b;
        const double lam = crat(y, x);
        const double mm = cc(y, x) + cc(x, x) + cc(x, y) + cc(y, x);
        const double ki = cc(x, x) + cc(x, y);
        const double kj = cc(y, y) + cc(y, x);
        const double cneg_l = 0.5 * (ki * kj + (mm - ki) * (mm - kj)) / mm;
        const double m_loc = (cc(y, x) + cc(x, y)) / cneg_l;

        cc.row(y) += cc.row(x);
        cc.col(y) += cc.col(x);
        cc.row(x).setConstant(-1.0);
        cc.col(x).setConstant(-1.0);
        cneg.row(y) += cneg.row(x);
        cneg.col(y) += cneg.col(x);
        crat.row(y) = cc.row(y).array() / cneg.row(y).array();
        crat.col(y) = crat.row(y).transpose();
        crat(y, y) = -1.0;
        crat.row(x).setConstant(-1.0);
        crat.col(x).setConstant(-1.0);

        t.child_x.push_back(xnow[x]);
        t.child_y.push_back(xnow[y]);
        t.lambda.push_back(lam);
        t.size_leaves.push_back(ntot[x] + ntot[y]);
        t.m_loc.push_back(m_loc);
        std::vector<int> lv = t.leaves[xnow[y]];
        lv.insert(lv.end(), t.leaves[xnow[x]].begin(), t.leaves[xnow[x]].end());
        t.leaves[nc + mstep] = std::move(lv);
        ntot[y] += ntot[x];
        xnow[y] = nc + mstep;
    }
    return t;
}

double bimodality_score_of_projection(const std::vector<double>& p) {
    constexpr int kBins = 399;
    const double step = 4.0 / kBins;
    auto edge = [&](int e) { return e == kBins ? 2.0 : -2.0 + e * step; };
    std::vector<double> h(kBins, 0.0);
    for (double v : p) {
        if (!(v >= -2.0 && v <= 2.0)) continue;  // outside the range (or NaN): not counted, as numpy
        int b = static_cast<int>((v + 2.0) / step);
        b = std::min(std::max(b, 0), kBins - 1);
        if (v < edge(b) && b > 0) --b;
        else if (b + 1 < kBins && v >= edge(b + 1)) ++b;
        h[b] += 1.0;
    }
    constexpr int kRadius = 16;  // scipy gaussian_filter1d: int(truncate 4 * sigma 4 + 0.5)
    double w[2 * kRadius + 1], wsum = 0;
    for (int q = -kRadius; q <= kRadius; ++q) wsum += (w[q + kRadius] = std::exp(-0.5 * q * q / 16.0));
    for (double& v : w) v /= wsum;
    std::vector<double> s(kBins, 0.0);
    for (int b = 0; b < kBins; ++b) {
        double acc = 0;
        for (int q = -kRadius; q <= kRadius; ++q) {
            int u = b + q;
            if (u < 0) u = -u - 1;                  // scipy 'reflect': d c b a | a b c d
            else if (u >= kBins) u = 2 * kBins - u - 1;
            acc += w[q + kRadius] * h[u];
        }
        s[b] = acc;
    }
    int imin = 175;
    for (int b = 176; b < 225; ++b)
        if (s[b] < s[imin]) imin = b;
    const double xmin = s[imin];
    const double m1 = *std::max_element(s.begin(), s.begin() + imin);
    const double m2 = *std::max_element(s.begin() + imin, s.end());
    const double r1 = xmin / m1, r2 = xmin / m2;  // IEEE: x/0 = inf, 0/0 = NaN, as numpy
    if (std::isnan(r1) || std::isnan(r2)) return std::numeric_limits<double>::quiet_NaN();
    return 1.0 - std::max(r1, r2);
}

double bimodality_score(const float* X, int D, const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
    const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
    const int64_t nr = na + nb;
    if (nr == 0 || D < 1) return std::numeric_limits<double>::quiet_NaN();
    // Class-balanced weights: each +1 row gets the fraction of -1 rows and vice versa.
    const double wa = static_cast<double>(nb) / nr, wb = static_cast<double>(na) / nr;
    constexpr int64_t kBlock = 2048;
    Eigen::MatrixXd CC = Eigen::MatrixXd::Zero(D, D);
    Eigen::VectorXd rhs = Eigen::VectorXd::Zero(D);
    RowMatD B(kBlock, D);
    Eigen::VectorXd wv(kBlock), yv(kBlock);
    auto load = [&](int64_t r0, int64_t rb) {
        for (int64_t r = 0; r < rb; ++r) {
            const int64_t q = r0 + r;
            const bool in_a = q < na;
            const float* x = X + (in_a ? a[q] : b[q - na]) * D;
            for (int d = 0; d < D - 1; ++d) B(r, d) = x[d];
            B(r, D - 1) = 1.0;  // the last feature becomes the bias term (as Kilosort4)
            wv[r] = in_a ? wa : wb;
            yv[r] = in_a ? 1.0 : -1.0;
        }
    };
    for (int64_t r0 = 0; r0 < nr; r0 += kBlock) {
        const int64_t rb = std::min(kBlock, nr - r0);
        load(r0, rb);
        const auto Bb = B.topRows(rb);
        const RowMatD Bw = Bb.array().colwise() * wv.head(rb).array();
        CC.noalias() += Bb.transpose() * Bw;
        rhs.noalias() += Bw.transpose() * yv.head(rb);
    }
    CC.diagonal().array() += 0.01;
    const Eigen::VectorXd coef = CC.ldlt().solve(rhs);
    std::vector<double> p(static_cast<size_t>(nr));
    for (int64_t r0 = 0; r0 < nr; r0 += kBlock) {
        const int64_t rb = std::min(kBlock, nr - r0);
        load(r0, rb);
        const Eigen::VectorXd pb = B.topRows(rb) * coef;
        for (int64_t r = 0; r < rb; ++r) p[r0 + r] = pb[r];
    }
    return bimodality_score_of_projection(p);
}

GraphClusterResult graph_cluster(const Device& dev, const float* X, int64_t n, int D, const GraphClusterParams& p,
                                 const KeepWhole& keep_whole) {
    if (p.cluster_neighbors < 1)
        throw Error(Exit::usage, "cluster_neighbors: must be >= 1, got " + std::to_string(p.cluster_neighbors));
    if (p.cluster_downsampling < 1)
        throw Error(Exit::usage,
                    "cluster_downsampling: must be >= 1, got " + std::to_string(p.cluster_downsampling));
    if (p.max_cluster_subset > 0 && p.max_cluster_subset < p.cluster_neighbors)
        throw Error(Exit::usage, "max_cluster_subset: must be <= 0 (no cap) or >= cluster_neighbors (" +
                                     std::to_string(p.cluster_neighbors) + "), got " +
                                     std::to_string(p.max_cluster_subset));
    if (p.n_init < 1) throw Error(Exit::usage, "n_init: must be >= 1, got " + std::to_string(p.n_init));
    if (p.n_candidates < 1)
        throw Error(Exit::usage, "n_candidates: must be >= 1, got " + std::to_string(p.n_candidates));
    if (p.n_sweeps < 0) throw Error(Exit::usage, "n_sweeps: must be >= 0, got " + std::to_string(p.n_sweeps));
    if (!std::isfinite(p.split_lambda))
        throw Error(Exit::usage, "split_lambda: must be a finite number");
    if (!std::isfinite(p.bimodality_threshold))
        throw Error(Exit::usage, "bimodality_threshold: must be a finite number");
    if (D < 1) throw Error(Exit::usage, "features: need at least 1 feature per spike, got " + std::to_string(D));
    if (n < 0) throw Error(Exit::usage, "features: negative spike count");

    GraphClusterResult res;
    res.labels.assign(static_cast<size_t>(n), 0);
    if (n < p.min_spikes || n == 0) {
        res.n_clusters = n > 0 ? 1 : 0;
        return res;
    }
    const std::vector<int64_t> lm = landmark_indices(n, p.cluster_downsampling, p.max_cluster_subset);
    res.n_landmarks = static_cast<int64_t>(lm.size());
    if (res.n_landmarks < p.cluster_neighbors)
        throw Error(Exit::usage, "cluster_neighbors: " + std::to_string(p.cluster_neighbors) +
                                     " neighbours but cluster_downsampling " + std::to_string(p.cluster_downsampling) +
                                     " leaves only " + std::to_string(res.n_landmarks) + " landmarks of " +
                                     std::to_string(n) + " spikes");
    BipartiteGraph g = make_bipartite(knn_landmarks(dev, X, n, D, lm, p.cluster_neighbors), n,
                                      p.cluster_neighbors, lm);
    std::vector<int> init = kmeanspp_init(dev, X, n, D, p.n_init, p.n_candidates, p.seed);
    res.n_initial = count_distinct(init);
    SweepResult sw = modularity_sweeps(dev, g, std::move(init), p.n_init, p.n_sweeps, 1.0);
    res.n_after_sweeps = sw.n_labels;
    log::debug("graph_cluster: %lld spikes, %lld landmarks, %d initial labels, %d after sweeps",
               static_cast<long long>(n), static_cast<long long>(res.n_landmarks), res.n_initial, sw.n_labels);
    if (sw.n_labels <= 1) {
        res.n_clusters = 1;
        return res;
    }
    const MergeTree t = merge_tree(g, sw.spike_labels, sw.landmark_labels, sw.n_labels);
    const int nc = t.n_leaves;

    // Rows of each leaf label, ascending.
    std::vector<std::vector<int64_t>> rows_of(nc);
    for (int64_t i = 0; i < n; ++i) rows_of[sw.spike_labels[i]].push_back(i);
    auto node_rows = [&](int node) {
        std::vector<int64_t> r;
        for (int leaf : t.leaves[node]) r.insert(r.end(), rows_of[leaf].begin(), rows_of[leaf].end());
        std::sort(r.begin(), r.end());
        return r;
    };

    // Walk from the root down (higher merge index = closer to the root). open[t] = still a split.
    std::vector<uint8_t> open(static_cast<size_t>(nc - 1), 1);
    std::vector<int> stack;
    auto close_subtree = [&](int node) {
        stack.assign(1, node);
        while (!stack.empty()) {
            const int v = stack.back();
            stack.pop_back();
            if (v < nc) continue;
            open[v - nc] = 0;
            stack.push_back(t.child_x[v - nc]);
            stack.push_back(t.child_y[v - nc]);
        }
    };
    for (int kk = nc - 2; kk >= 0; --kk) {
        if (!open[kk]) continue;
        bool keep = false;
        if (t.lambda[kk] < p.split_lambda) {
            ++res.n_splits_lambda;
        } else {
            const std::vector<int64_t> ra = node_rows(t.child_x[kk]);
            const std::vector<int64_t> rb = node_rows(t.child_y[kk]);
            if (keep_whole && keep_whole(ra, rb)) {
                keep = true;
                ++res.n_vetoed;
            } else {
                const double score = bimodality_score(X, D, ra, rb);
                // Kilosort4 keeps the node only when score < threshold, so a NaN score splits.
                if (score < p.bimodality_threshold) {
                    keep = true;
                    ++res.n_kept_whole;
                } else {
                    ++res.n_splits_bimodal;
                }
            }
        }
        if (keep) close_subtree(nc + kk);  // the node itself and everything below stay merged
    }

    // Final clusters: children of accepted splits that are not split themselves, in node-id order.
    std::vector<uint8_t> is_leaf(static_cast<size_t>(2 * nc - 1), 0);
    for (int kk = 0; kk < nc - 1; ++kk)
        if (open[kk]) is_leaf[t.child_x[kk]] = 1, is_leaf[t.child_y[kk]] = 1;
    for (int kk = 0; kk < nc - 1; ++kk)
        if (open[kk]) is_leaf[nc + kk] = 0;
    std::vector<int> leaf_cluster(nc, 0);
    int next = 0;
    for (int v = 0; v < 2 * nc - 1; ++v) {
        if (!is_leaf[v]) continue;
        for (int leaf : t.leaves[v]) leaf_cluster[leaf] = next;
        ++next;
    }
    res.n_clusters = std::max(next, 1);
    for (int64_t i = 0; i < n; ++i) res.labels[i] = leaf_cluster[sw.spike_labels[i]];
    return res;
}

}  // namespace ks::cluster
