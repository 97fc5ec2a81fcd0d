// Kilomatch-style tracking of units across sessions. See session_match.hpp.
#include "ks/session_match.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <chrono>
#include <numeric>

#include <Eigen/Dense>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks::sessions {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct UnionFind {
    std::vector<int> parent;
    explicit UnionFind(int n) : parent(static_cast<size_t>(n)) { std::iota(parent.begin(), parent.end(), 0); }
    int find(int a) {
        while (parent[a] != a) a = parent[a] = parent[parent[a]];
        return a;
    }
};

// Gaussian smoothing of v (sigma in bins, kernel to 4 sigma), normalised by the kernel weight that
// falls inside the vector so the edges are not pulled down.
std::vector<double> smooth(const std::vector<double>& v, double sigma) {
    if (!(sigma > 0) || v.empty()) return v;
    const int r = static_cast<int>(std::ceil(4 * sigma));
    std::vector<double> k(2 * r + 1);
    for (int i = -r; i <= r; ++i) k[i + r] = std::exp(-0.5 * i * i / (sigma * sigma));
    const int n = static_cast<int>(v.size());
    std::vector<double> out(v.size());
    for (int i = 0; i < n; ++i) {
        double s = 0, w = 0;
        for (int j = std::max(0, i - r); j <= std::min(n - 1, i + r); ++j) {
            s += k[j - i + r] * v[j];
            w += k[j - i + r];
        }
        out[i] = s / w;
    }
    return out;
}

// Fisher z of Pearson's r between a and b (n values each); 0 when either is constant.
double fisher_z(const double* a, const double* b, int n) {
    double ma = 0, mb = 0;
    for (int i = 0; i < n; ++i) ma += a[i], mb += b[i];
    ma /= n;
    mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; ++i) {
        const double da = a[i] - ma, db = b[i] - mb;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if (!(saa > 0) || !(sbb > 0)) return 0;
    const double r = std::clamp(sab / std::sqrt(saa * sbb), -0.999999, 0.999999);
    return std::atanh(r);
}

}  // namespace

// ---- HDBSCAN -------------------------------------------------------------------------------------

std::vector<int> hdbscan(int n, std::vector<Edge> edges, int max_cluster_size) {
    std::vector<int> labels(static_cast<size_t>(n), -1);
    if (n < 2) return labels;
    for (Edge& e : edges)
        if (e.i > e.j) std::swap(e.i, e.j);
    std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
        if (a.d != b.d) return a.d < b.d;
        if (a.i != b.i) return a.i < b.i;
        return a.j < b.j;
    });
    // Single-linkage tree (Kruskal on the minimum spanning forest); components still apart at the end
    // are joined at infinite distance (lambda 0), in order of their smallest point.
    const int n_nodes = 2 * n - 1;
    std::vector<int> left(n_nodes, -1), right(n_nodes, -1), size(n_nodes, 1), node_of(n);
    std::vector<double> dist(n_nodes, 0);
    std::iota(node_of.begin(), node_of.end(), 0);
    UnionFind uf(n);
    int next = n;
    auto join = [&](int a, int b, double d) {
        const int ra = uf.find(a), rb = uf.find(b);
        if (ra == rb) return;
        left[next] = node_of[ra];
        right[next] = node_of[rb];
        size[next] = size[node_of[ra]] + size[node_of[rb]];
        dist[next] = d;
        uf.parent[rb] = ra;
        node_of[ra] = next++;
    };
    for (const Edge& e : edges)
        if (std::isfinite(e.d)) join(e.i, e.j, e.d);
    for (int a = 1; a < n; ++a) join(0, a, kInf);
    const int root = next - 1;
    KS_ASSERT(root == n_nodes - 1, "single-linkage tree has n - 1 merges");

    // Condensed tree (min_cluster_size 2): rows (parent cluster, child, lambda, child size). A child
    // of one point falls out of its parent; two children of two or more points are new clusters.
    constexpr int kMinSize = 2;
    struct Row {
        int parent, child;   // child: a point (< n) or a cluster (>= n, numbered n, n+1, ...)
        double lambda;
        int size;
    };
    std::vector<Row> rows;
    std::vector<int> cluster_of(n_nodes, -1);   // tree node -> condensed cluster
    std::vector<int> birth_size = {n};          // per condensed cluster
    int n_clusters = 0;
    cluster_of[root] = n + n_clusters++;
    std::vector<int> stack = {root};
    auto leaves_of = [&](int node, std::vector<int>& out) {
        std::vector<int> s = {node};
        while (!s.empty()) {
            const int v = s.back();
            s.pop_back();
            if (v < n) out.push_back(v);
            else {
                s.push_back(left[v]);
                s.push_back(right[v]);
            }
        }
    };
    // Breadth-first so that parents get smaller cluster numbers than their children.
    for (size_t q = 0; q < stack.size(); ++q) {
        const int v = stack[q];
        if (v < n) continue;
        const int c = cluster_of[v];
        const double lambda = dist[v] > 0 ? 1.0 / dist[v] : kInf;
        const int l = left[v], r = right[v];
        const bool big_l = size[l] >= kMinSize, big_r = size[r] >= kMinSize;
        if (big_l && big_r) {
            for (int ch : {l, r}) {
                cluster_of[ch] = n + n_clusters++;
                birth_size.push_back(size[ch]);
                rows.push_back({c, cluster_of[ch], lambda, size[ch]});
                stack.push_back(ch);
            }
        } else {
            for (int ch : {l, r}) {
                if (size[ch] >= kMinSize) {   // the cluster goes on as this child
                    // A cluster too large to be selected that sheds points until it fits goes on as a
                    // new cluster from here (else a chain that picked up one stray point on the way
                    // would never be selectable, and all its points would be noise).
                    if (birth_size[c - n] > max_cluster_size && size[ch] <= max_cluster_size) {
                        cluster_of[ch] = n + n_clusters++;
                        birth_size.push_back(size[ch]);
                        rows.push_back({c, cluster_of[ch], lambda, size[ch]});
                    } else {
                        cluster_of[ch] = c;
                    }
                    stack.push_back(ch);
                } else {
                    std::vector<int> pts;
                    leaves_of(ch, pts);
                    for (int p : pts) rows.push_back({c, p, lambda, 1});
                }
            }
        }
    }
    // Stability of each cluster: sum over what leaves it of (lambda - lambda at its birth) x size.
    std::vector<double> birth(n_clusters, 0), stability(n_clusters, 0);
    std::vector<int> csize(n_clusters, 0), cparent(n_clusters, -1);
    csize[0] = n;
    for (const Row& r : rows)
        if (r.child >= n) {
            birth[r.child - n] = r.lambda;
            csize[r.child - n] = r.size;
            cparent[r.child - n] = r.parent - n;
        }
    for (const Row& r : rows) stability[r.parent - n] += (r.lambda - birth[r.parent - n]) * r.size;
    // Excess of mass, bottom-up (children have larger numbers); the root is never a cluster.
    std::vector<char> selected(n_clusters, 0);
    std::vector<double> subtree(n_clusters, 0);
    std::vector<std::vector<int>> children(n_clusters);
    for (int c = 1; c < n_clusters; ++c) children[cparent[c]].push_back(c);
    for (int c = n_clusters - 1; c >= 1; --c) {
        double child_sum = 0;
        for (int ch : children[c]) child_sum += subtree[ch];
        if (csize[c] > max_cluster_size || child_sum > stability[c]) {
            subtree[c] = child_sum;
        } else {
            subtree[c] = stability[c];
            selected[c] = 1;
            std::vector<int> s(children[c]);
            while (!s.empty()) {
                const int d = s.back();
                s.pop_back();
                selected[d] = 0;
                for (int e : children[d]) s.push_back(e);
            }
        }
    }
    // Each point belongs to the selected cluster among the ones it falls out of and their ancestors.
    std::vector<int> label_of_cluster(n_clusters, -1), first_point(n_clusters, n);
    std::vector<int> point_cluster(n, -1);
    for (const Row& r : rows)
        if (r.child < n) {
            int c = r.parent - n;
            while (c > 0 && !selected[c]) c = cparent[c];
            point_cluster[r.child] = c > 0 ? c : -1;
        }
    for (int p = 0; p < n; ++p)
        if (point_cluster[p] > 0) first_point[point_cluster[p]] = std::min(first_point[point_cluster[p]], p);
    std::vector<int> order;
    for (int c = 1; c < n_clusters; ++c)
        if (selected[c] && first_point[c] < n) order.push_back(c);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return first_point[a] < first_point[b]; });
    for (size_t k = 0; k < order.size(); ++k) label_of_cluster[order[k]] = static_cast<int>(k);
    for (int p = 0; p < n; ++p) labels[p] = point_cluster[p] > 0 ? label_of_cluster[point_cluster[p]] : -1;
    return labels;
}

// ---- LDA, motion, location, ACG/ISI ----------------------------------------------------------------

bool lda(const std::vector<double>& x, const std::vector<uint8_t>& label, int d, std::vector<double>* w, double* b) {
    const size_t n = label.size();
    Eigen::VectorXd mu[2] = {Eigen::VectorXd::Zero(d), Eigen::VectorXd::Zero(d)};
    double cnt[2] = {0, 0};
    for (size_t i = 0; i < n; ++i) {
        const int k = label[i] ? 1 : 0;
        mu[k] += Eigen::Map<const Eigen::VectorXd>(x.data() + i * d, d);
        ++cnt[k];
    }
    if (cnt[0] < 1 || cnt[1] < 1 || cnt[0] + cnt[1] < 3) return false;
    mu[0] /= cnt[0];
    mu[1] /= cnt[1];
    Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(d, d);
    for (size_t i = 0; i < n; ++i) {
        const Eigen::VectorXd v = Eigen::Map<const Eigen::VectorXd>(x.data() + i * d, d) - mu[label[i] ? 1 : 0];
        cov += v * v.transpose();
    }
    cov /= (cnt[0] + cnt[1] - 2);
    const Eigen::LDLT<Eigen::MatrixXd> ldlt(cov);
    if (ldlt.info() != Eigen::Success || !(ldlt.vectorD().minCoeff() > 1e-12 * std::max(1e-300, cov.trace()))) return false;
    const Eigen::VectorXd a0 = ldlt.solve(mu[0]), a1 = ldlt.solve(mu[1]);
    const Eigen::VectorXd coef = a1 - a0;
    *b = -0.5 * mu[1].dot(a1) + 0.5 * mu[0].dot(a0) + std::log(cnt[1] / cnt[0]);
    w->assign(coef.data(), coef.data() + d);
    return std::isfinite(*b) && coef.allFinite();
}

namespace {
std::vector<double> rigid_motion_weighted(int S, const std::vector<int>& sa, const std::vector<int>& sb,
                                          const std::vector<double>& dy, const std::vector<double>& weight) {
    Eigen::MatrixXd L = Eigen::MatrixXd::Zero(S, S);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(S);
    for (size_t k = 0; k < dy.size(); ++k) {
        const int a = sa[k], b = sb[k];
        if (a == b) continue;
        const double w = weight.empty() ? 1.0 : weight[k];
        L(a, a) += w;
        L(b, b) += w;
        L(a, b) -= w;
        L(b, a) -= w;
        g(b) += w * dy[k];
        g(a) -= w * dy[k];
    }
    // The minimum-norm solution: mean zero within each connected group of sessions.
    const Eigen::VectorXd p = L.completeOrthogonalDecomposition().solve(g);
    return std::vector<double>(p.data(), p.data() + S);
}
}  // namespace

std::vector<double> rigid_motion(int n_sessions, const std::vector<int>& session_a, const std::vector<int>& session_b,
                                 const std::vector<double>& dy) {
    return rigid_motion_weighted(n_sessions, session_a, session_b, dy, {});
}

std::vector<double> monopolar_location(const std::vector<double>& xc, const std::vector<double>& yc,
                                       const std::vector<double>& amp) {
    const int m = static_cast<int>(amp.size());
    double sw = 0, x = 0, y = 0, amax = 0;
    for (int c = 0; c < m; ++c) {
        const double a = std::max(0.0, amp[c]);
        sw += a;
        x += a * xc[c];
        y += a * yc[c];
        amax = std::max(amax, a);
    }
    if (!(sw > 0)) return {kNaN, kNaN, kNaN};
    x /= sw;
    y /= sw;
    if (m < 4) return {x, y, kNaN};
    // Parameters (x, y, z, alpha); z and alpha kept positive by working with their absolute values.
    Eigen::Vector4d q(x, y, 20.0, 0);
    {
        double dmin = kInf;
        for (int c = 0; c < m; ++c) dmin = std::min(dmin, std::hypot(xc[c] - x, yc[c] - y));
        q(3) = amax * std::sqrt(dmin * dmin + 400.0);
    }
    auto cost = [&](const Eigen::Vector4d& v) {
        double s = 0;
        for (int c = 0; c < m; ++c) {
            const double r = std::sqrt((v(0) - xc[c]) * (v(0) - xc[c]) + (v(1) - yc[c]) * (v(1) - yc[c]) + v(2) * v(2));
            const double e = amp[c] - std::fabs(v(3)) / r;
            s += e * e;
        }
        return s;
    };
    double mu = 1e-3, f = cost(q);
    for (int it = 0; it < 100; ++it) {
        Eigen::Matrix4d JtJ = Eigen::Matrix4d::Zero();
        Eigen::Vector4d Jte = Eigen::Vector4d::Zero();
        for (int c = 0; c < m; ++c) {
            const double dx = q(0) - xc[c], dy = q(1) - yc[c], z = q(2), al = std::fabs(q(3));
            const double r2 = dx * dx + dy * dy + z * z, r = std::sqrt(r2), r3 = r2 * r;
            const double e = amp[c] - al / r;
            // d(model)/dparam, model = al / r
            const Eigen::Vector4d J(-al * dx / r3, -al * dy / r3, -al * z / r3, (q(3) >= 0 ? 1.0 : -1.0) / r);
            JtJ += J * J.transpose();
            Jte += J * e;
        }
        Eigen::Matrix4d A = JtJ;
        for (int k = 0; k < 4; ++k) A(k, k) += mu * (JtJ(k, k) + 1e-12);
        const Eigen::Vector4d step = A.ldlt().solve(Jte);
        Eigen::Vector4d cand = q + step;
        // Bounded as SpikeInterface bounds it: within 100 µm of the centre of mass, z up to 200 µm
        // (a unit at the probe's end otherwise runs away along the probe).
        cand(0) = std::clamp(cand(0), x - 100, x + 100);
        cand(1) = std::clamp(cand(1), y - 100, y + 100);
        cand(2) = std::clamp(cand(2), -200.0, 200.0);
        const double fc = cost(cand);
        if (std::isfinite(fc) && fc < f) {
            const bool done = f - fc < 1e-10 * f;
            q = cand;
            f = fc;
            mu = std::max(mu * 0.3, 1e-9);
            if (done) break;
        } else {
            mu *= 10;
            if (mu > 1e9) break;
        }
    }
    return {q(0), q(1), std::fabs(q(2))};
}

std::vector<double> autocorrelogram(const std::vector<double>& t, int window_ms, double sigma_ms) {
    std::vector<double> pos(static_cast<size_t>(window_ms), 0.0);   // lags k = 1..window, bins [k-0.5, k+0.5)
    for (size_t i = 0; i < t.size(); ++i)
        for (size_t j = i + 1; j < t.size(); ++j) {
            const double lag = t[j] - t[i];
            if (lag >= window_ms + 0.5) break;
            const int k = static_cast<int>(std::floor(lag + 0.5));
            if (k >= 1 && k <= window_ms) pos[k - 1] += 1;
        }
    const std::vector<double> sm = smooth(pos, sigma_ms);
    std::vector<double> out(2 * static_cast<size_t>(window_ms));
    for (int k = 0; k < window_ms; ++k) {
        out[window_ms - 1 - k] = sm[k];   // negative lags, mirrored
        out[window_ms + k] = sm[k];
    }
    const double mx = *std::max_element(out.begin(), out.end());
    if (mx > 0)
        for (double& v : out) v /= mx;
    return out;
}

std::vector<double> isi_histogram(const std::vector<double>& t, int window_ms, double sigma_ms) {
    std::vector<double> h(static_cast<size_t>(window_ms), 0.0);
    for (size_t i = 1; i < t.size(); ++i) {
        const double d = t[i] - t[i - 1];
        if (d >= 0 && d < window_ms) h[static_cast<size_t>(d)] += 1;
    }
    std::vector<double> sm = smooth(h, sigma_ms);
    const double s = std::accumulate(sm.begin(), sm.end(), 0.0);
    if (s > 0)
        for (double& v : sm) v /= s;
    return sm;
}

int Input::n_sessions() const { return session.empty() ? 0 : *std::max_element(session.begin(), session.end()) + 1; }

// ---- the matcher -------------------------------------------------------------------------------------

namespace {

struct Pair {
    int i, j;               // i < j, different sessions
    double s[3];            // Waveform, AutoCorr, PETH similarities
};

// Corrected waveforms: each unit's waveform moved from its session's probe position p_s to the
// reference (0) by kriging, W~ = K(sites + p_s, sites) K(sites, sites)^-1 W, on the channels within
// `radius` µm (in depth) of the unit's corrected location; zero elsewhere.
void correct_waveforms(const Input& in, const Params& p, const std::vector<double>& motion, const std::vector<double>& yloc,
                       double radius, std::vector<float>* out) {
    const int C = static_cast<int>(in.xc.size()), nt = in.nt, n = in.n_units();
    out->assign(static_cast<size_t>(n) * C * nt, 0.0f);
    auto kern = [&](double x1, double y1, double x2, double y2) {
        return std::exp(-std::fabs(x1 - x2) / p.kriging_sigma_x - std::fabs(y1 - y2) / p.kriging_sigma_y);
    };
    Eigen::MatrixXd Kss(C, C);
    for (int a = 0; a < C; ++a)
        for (int b = 0; b < C; ++b) Kss(a, b) = kern(in.xc[a], in.yc[a], in.xc[b], in.yc[b]);
    Kss.diagonal().array() += 1e-6;   // contacts at one place would make K singular
    const Eigen::MatrixXd Kinv = Kss.ldlt().solve(Eigen::MatrixXd::Identity(C, C));
    const int S = in.n_sessions();
    for (int s = 0; s < S; ++s) {
        Eigen::MatrixXd Ks(C, C);
        for (int a = 0; a < C; ++a)
            for (int b = 0; b < C; ++b) Ks(a, b) = kern(in.xc[a], in.yc[a] + motion[s], in.xc[b], in.yc[b]);
        const Eigen::MatrixXd M = Ks * Kinv;
        // Source channels that matter for each target: the kernel's reach (weights below 1e-4 dropped).
        std::vector<std::vector<int>> src(C);
        for (int a = 0; a < C; ++a) {
            const double mx = M.row(a).cwiseAbs().maxCoeff();
            for (int b = 0; b < C; ++b)
                if (std::fabs(M(a, b)) > 1e-4 * mx) src[a].push_back(b);
        }
#pragma omp parallel for schedule(dynamic, 4)
        for (int u = 0; u < n; ++u) {
            if (in.session[u] != s) continue;
            const float* w = in.waveform.data() + static_cast<size_t>(u) * C * nt;
            float* o = out->data() + static_cast<size_t>(u) * C * nt;
            const double yc = yloc[u] - motion[s];
            for (int a = 0; a < C; ++a) {
                if (std::isfinite(yc) && std::fabs(in.yc[a] - yc) > radius) continue;
                for (int t = 0; t < nt; ++t) {
                    double acc = 0;
                    for (int b : src[a]) acc += M(a, b) * w[static_cast<size_t>(b) * nt + t];
                    o[static_cast<size_t>(a) * nt + t] = static_cast<float>(acc);
                }
            }
        }
    }
}

}  // namespace

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Result match(const Input& in, const Params& p) {
    const auto t_start = std::chrono::steady_clock::now();
    const int n = in.n_units(), C = static_cast<int>(in.xc.size()), nt = in.nt, S = in.n_sessions();
    KS_ASSERT(static_cast<int>(in.waveform.size()) == n * C * nt, "waveform size");
    Result r;
    const int nn = std::min(p.n_nearest_channels, C), nl = std::min(p.n_location_channels, C);
    const bool peth = p.use_peth && in.n_peth > 0;
    r.features = {"Waveform", "AutoCorr"};
    if (peth) r.features.push_back("PETH");
    const int F = static_cast<int>(r.features.size());

    // Per unit: peak channel (largest peak-to-trough), nearest channels, location, ACG, ISI.
    r.peak_channel.assign(n, 0);
    r.waveform_channels.assign(static_cast<size_t>(n) * nn, 0);
    r.location.assign(static_cast<size_t>(n) * 3, kNaN);
    r.auto_corr.assign(static_cast<size_t>(n) * 600, 0.0);
    r.isi.assign(static_cast<size_t>(n) * 100, 0.0);
    std::vector<double> ptp_peak(n, 0);
#pragma omp parallel for schedule(dynamic, 8)
    for (int u = 0; u < n; ++u) {
        const float* w = in.waveform.data() + static_cast<size_t>(u) * C * nt;
        std::vector<double> ptp(C);
        for (int c = 0; c < C; ++c) {
            float lo = 0, hi = 0;
            for (int t = 0; t < nt; ++t) {
                const float v = w[static_cast<size_t>(c) * nt + t];
                if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
            }
            ptp[c] = hi - lo;
        }
        const int pk = static_cast<int>(std::max_element(ptp.begin(), ptp.end()) - ptp.begin());
        r.peak_channel[u] = pk;
        ptp_peak[u] = ptp[pk];
        std::vector<int> order(C);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return std::hypot(in.xc[a] - in.xc[pk], in.yc[a] - in.yc[pk]) < std::hypot(in.xc[b] - in.xc[pk], in.yc[b] - in.yc[pk]);
        });
        std::copy(order.begin(), order.begin() + nn, r.waveform_channels.begin() + static_cast<size_t>(u) * nn);
        std::vector<double> lx(nl), ly(nl), la(nl);
        for (int k = 0; k < nl; ++k) {
            lx[k] = in.xc[order[k]];
            ly[k] = in.yc[order[k]];
            la[k] = ptp[order[k]];
        }
        const std::vector<double> loc = monopolar_location(lx, ly, la);
        std::copy(loc.begin(), loc.end(), r.location.begin() + static_cast<size_t>(u) * 3);
        const std::vector<double> acg = autocorrelogram(in.spike_ms[u]);
        std::copy(acg.begin(), acg.end(), r.auto_corr.begin() + static_cast<size_t>(u) * 600);
        const std::vector<double> isi = isi_histogram(in.spike_ms[u]);
        std::copy(isi.begin(), isi.end(), r.isi.begin() + static_cast<size_t>(u) * 100);
    }
    std::vector<double> yloc(n), xloc(n);
    for (int u = 0; u < n; ++u) {
        xloc[u] = r.location[static_cast<size_t>(u) * 3];
        yloc[u] = r.location[static_cast<size_t>(u) * 3 + 1];
    }

    log::debug("sessions: unit features in %.2f s", seconds_since(t_start));
    // First motion estimate without waveforms: for each pair of sessions, the depth shift that best
    // lines up their units (a soft count of unit pairs close in x, in shifted depth and in size).
    {
        std::vector<int> sa, sb;
        std::vector<double> dy, wt;
        const double sig_y = 5, sig_x = 10, sig_a = 0.3, step = 1;
        const int G = static_cast<int>(std::round(p.max_shift_um / step));
        std::vector<std::vector<int>> members_of(S);
        for (int u = 0; u < n; ++u) members_of[in.session[u]].push_back(u);
        for (int a = 0; a < S; ++a)
            for (int b = a + 1; b < S; ++b) {
                std::vector<double> score(2 * G + 1, 0.0);
                for (int i : members_of[a]) {
                    if (!std::isfinite(yloc[i])) continue;
                    for (int j : members_of[b]) {
                        if (!std::isfinite(yloc[j])) continue;
                        const double d = yloc[j] - yloc[i];
                        if (std::fabs(d) > p.max_shift_um + 4 * sig_y) continue;
                        const double wx = std::exp(-0.5 * std::pow((xloc[j] - xloc[i]) / sig_x, 2));
                        const double la = std::log(std::max(ptp_peak[i], 1e-6) / std::max(ptp_peak[j], 1e-6));
                        const double w = wx * std::exp(-0.5 * std::pow(la / sig_a, 2));
                        if (w < 1e-4) continue;
                        const int g0 = std::max(-G, static_cast<int>(std::floor((d - 4 * sig_y) / step)));
                        const int g1 = std::min(G, static_cast<int>(std::ceil((d + 4 * sig_y) / step)));
                        for (int g = g0; g <= g1; ++g) score[g + G] += w * std::exp(-0.5 * std::pow((d - g * step) / sig_y, 2));
                    }
                }
                const int best = static_cast<int>(std::max_element(score.begin(), score.end()) - score.begin());
                if (!(score[best] > 0)) continue;
                double shift = (best - G) * step;
                if (best > 0 && best < 2 * G) {   // parabolic refinement
                    const double y0 = score[best - 1], y1 = score[best], y2 = score[best + 1], den = y0 - 2 * y1 + y2;
                    if (den < 0) shift += step * 0.5 * (y0 - y2) / den;
                }
                sa.push_back(a);
                sb.push_back(b);
                dy.push_back(shift);
                wt.push_back(score[best]);
            }
        r.motion = S > 1 ? rigid_motion_weighted(S, sa, sb, dy, wt) : std::vector<double>(S, 0.0);
    }

    log::debug("sessions: first motion estimate at %.2f s", seconds_since(t_start));
    std::vector<double> weights(F, 1.0 / F);
    double threshold = 0;
    std::vector<int> labels(n, -1);
    std::vector<Pair> pairs;
    std::vector<float> corrected;
    // The channel set of a unit reaches about this far from its peak: corrected waveforms are needed
    // over that plus the candidate distance.
    double reach = 0;
    for (int u = 0; u < n; ++u) {
        const int pk = r.peak_channel[u];
        for (int k = 0; k < nn; ++k)
            reach = std::max(reach, std::fabs(in.yc[r.waveform_channels[static_cast<size_t>(u) * nn + k]] - in.yc[pk]));
    }
    for (int round = 0; round <= p.n_motion_rounds; ++round) {
        correct_waveforms(in, p, r.motion, yloc, reach + p.max_distance_um + 40, &corrected);
        // Candidate pairs: other sessions, corrected depths within max_distance.
        std::vector<int> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::vector<double> yc(n);
        for (int u = 0; u < n; ++u) yc[u] = std::isfinite(yloc[u]) ? yloc[u] - r.motion[in.session[u]] : kInf;
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return yc[a] < yc[b]; });
        pairs.clear();
        for (int a = 0; a < n; ++a)
            for (int b = a + 1; b < n && yc[order[b]] - yc[order[a]] <= p.max_distance_um; ++b) {
                const int i = std::min(order[a], order[b]), j = std::max(order[a], order[b]);
                if (in.session[i] != in.session[j]) pairs.push_back({i, j, {0, 0, 0}});
            }
        std::sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) { return x.i != y.i ? x.i < y.i : x.j < y.j; });
#pragma omp parallel
        {
            std::vector<double> va(static_cast<size_t>(nn) * nt), vb(va.size());
#pragma omp for schedule(dynamic, 64)
            for (size_t q = 0; q < pairs.size(); ++q) {
                Pair& pr = pairs[q];
                double z = -kInf;
                for (int side = 0; side < 2; ++side) {   // on the first unit's channels, then the second's
                    const int u = side == 0 ? pr.i : pr.j;
                    const int* ch = r.waveform_channels.data() + static_cast<size_t>(u) * nn;
                    const float* wi = corrected.data() + static_cast<size_t>(pr.i) * C * nt;
                    const float* wj = corrected.data() + static_cast<size_t>(pr.j) * C * nt;
                    for (int k = 0; k < nn; ++k)
                        for (int t = 0; t < nt; ++t) {
                            va[static_cast<size_t>(k) * nt + t] = wi[static_cast<size_t>(ch[k]) * nt + t];
                            vb[static_cast<size_t>(k) * nt + t] = wj[static_cast<size_t>(ch[k]) * nt + t];
                        }
                    z = std::max(z, fisher_z(va.data(), vb.data(), nn * nt));
                }
                pr.s[0] = z;
                pr.s[1] = fisher_z(r.auto_corr.data() + static_cast<size_t>(pr.i) * 600, r.auto_corr.data() + static_cast<size_t>(pr.j) * 600, 600);
                if (peth)
                    pr.s[2] = fisher_z(in.peth.data() + static_cast<size_t>(pr.i) * in.n_peth,
                                       in.peth.data() + static_cast<size_t>(pr.j) * in.n_peth, in.n_peth);
            }
        }
        log::debug("sessions: round %d: waveforms corrected, %zu pair similarities at %.2f s", round, pairs.size(), seconds_since(t_start));
        // IHDBSCAN: cluster on the weighted similarity, learn weights and threshold by LDA, repeat.
        auto weighted = [&](const Pair& pr) {
            double s = 0;
            for (int f = 0; f < F; ++f) s += weights[f] * pr.s[f];
            return s;
        };
        for (int it = 0; it < p.n_iter; ++it) {
            std::vector<Edge> edges;
            edges.reserve(pairs.size());
            for (const Pair& pr : pairs) edges.push_back({pr.i, pr.j, 1.0 / (1.0 + std::tanh(weighted(pr)))});
            labels = hdbscan(n, std::move(edges), S);
            std::vector<double> x(pairs.size() * F);
            std::vector<uint8_t> y(pairs.size());
            for (size_t q = 0; q < pairs.size(); ++q) {
                for (int f = 0; f < F; ++f) x[q * F + f] = pairs[q].s[f];
                y[q] = labels[pairs[q].i] >= 0 && labels[pairs[q].i] == labels[pairs[q].j];
            }
            std::vector<double> w;
            double b = 0;
            if (!lda(x, y, F, &w, &b)) break;
            const double sw = std::accumulate(w.begin(), w.end(), 0.0);
            if (!(sw > 0)) break;
            double change = 0;
            for (int f = 0; f < F; ++f) {
                change = std::max(change, std::fabs(w[f] / sw - weights[f]));
                weights[f] = w[f] / sw;
            }
            threshold = -b / sw;
            if (change < 1e-6) break;
        }
        log::debug("sessions: round %d: clustering done at %.2f s", round, seconds_since(t_start));
        if (round == p.n_motion_rounds) break;
        // Motion from the matched pairs (same cluster, similarity over the threshold).
        std::vector<int> sa, sb;
        std::vector<double> dy;
        for (const Pair& pr : pairs)
            if (labels[pr.i] >= 0 && labels[pr.i] == labels[pr.j] && weighted(pr) > threshold) {
                sa.push_back(in.session[pr.i]);
                sb.push_back(in.session[pr.j]);
                dy.push_back(yloc[pr.j] - yloc[pr.i]);
            }
        if (!dy.empty()) r.motion = rigid_motion(S, sa, sb, dy);
        log::debug("sessions: round %d, %zu matched pairs, weights %.3f %.3f, threshold %.3f", round, dy.size(), weights[0],
                   weights[1], threshold);
    }
    r.weights = weights;
    r.threshold = threshold;
    r.n_candidate_pairs = static_cast<int>(pairs.size());

    // Similarity matrix (NaN where not compared).
    r.similarity.assign(static_cast<size_t>(n) * n, std::numeric_limits<float>::quiet_NaN());
    auto sim_of = [&](const Pair& pr) {
        double s = 0;
        for (int f = 0; f < F; ++f) s += weights[f] * pr.s[f];
        return s;
    };
    for (const Pair& pr : pairs) {
        const float s = static_cast<float>(sim_of(pr));
        r.similarity[static_cast<size_t>(pr.i) * n + pr.j] = s;
        r.similarity[static_cast<size_t>(pr.j) * n + pr.i] = s;
    }
    auto S_at = [&](int a, int b) {
        const float v = r.similarity[static_cast<size_t>(a) * n + b];
        return std::isfinite(v) ? static_cast<double>(v) : -kInf;
    };

    // Auto-curation: one unit per session in an identity (drop the duplicate least similar to the
    // rest), then split each identity into the components of its pairs above the threshold.
    int n_labels = 0;
    for (int l : labels) n_labels = std::max(n_labels, l + 1);
    std::vector<std::vector<int>> members(n_labels);
    for (int u = 0; u < n; ++u)
        if (labels[u] >= 0) members[labels[u]].push_back(u);
    std::vector<std::vector<int>> identities;
    for (auto& m : members) {
        for (;;) {
            std::vector<int> count(S, 0);
            for (int u : m) ++count[in.session[u]];
            int worst = -1;
            double worst_mean = kInf;
            for (int u : m) {
                if (count[in.session[u]] < 2) continue;
                double s = 0;
                int k = 0;
                for (int v : m)
                    if (v != u) {
                        const double x = S_at(u, v);
                        s += std::isfinite(x) ? x : -10.0;
                        ++k;
                    }
                const double mean = k ? s / k : -kInf;
                if (mean < worst_mean) worst_mean = mean, worst = u;
            }
            if (worst < 0) break;
            m.erase(std::find(m.begin(), m.end(), worst));
            ++r.n_removed_same_session;
        }
        // Components over pairs above the threshold.
        UnionFind uf(static_cast<int>(m.size()));
        for (size_t a = 0; a < m.size(); ++a)
            for (size_t b = a + 1; b < m.size(); ++b)
                if (S_at(m[a], m[b]) > threshold) uf.parent[uf.find(static_cast<int>(b))] = uf.find(static_cast<int>(a));
        std::vector<std::vector<int>> comp(m.size());
        for (size_t a = 0; a < m.size(); ++a) comp[uf.find(static_cast<int>(a))].push_back(m[a]);
        int parts = 0;
        for (auto& c : comp) {
            if (c.empty()) continue;
            ++parts;
            if (c.size() >= 2) identities.push_back(c);
            else ++r.n_removed_split;
        }
    }
    std::sort(identities.begin(), identities.end(), [](const std::vector<int>& a, const std::vector<int>& b) {
        return *std::min_element(a.begin(), a.end()) < *std::min_element(b.begin(), b.end());
    });
    r.idx_cluster.assign(n, -1);
    for (size_t k = 0; k < identities.size(); ++k)
        for (int u : identities[k]) r.idx_cluster[u] = static_cast<int>(k) + 1;
    r.n_clusters = static_cast<int>(identities.size());

    // Waveforms on each unit's channels, before and after correction.
    r.waveforms.assign(static_cast<size_t>(n) * nn * nt, 0.0f);
    r.waveforms_corrected.assign(r.waveforms.size(), 0.0f);
    for (int u = 0; u < n; ++u)
        for (int k = 0; k < nn; ++k) {
            const int c = r.waveform_channels[static_cast<size_t>(u) * nn + k];
            for (int t = 0; t < nt; ++t) {
                const size_t o = (static_cast<size_t>(u) * nn + k) * nt + t, i = (static_cast<size_t>(u) * C + c) * nt + t;
                r.waveforms[o] = in.waveform[i];
                r.waveforms_corrected[o] = corrected[i];
            }
        }
    return r;
}

}  // namespace ks::sessions
