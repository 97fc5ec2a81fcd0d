// Universal templates: the grid of centres with its envelopes (§4.2, §4.3) and the temporal
// templates learned from single-channel clips (§4.1). Host-only code; detection is in
// universal_detect.cpp and cpu/universal_detect.cpp.
#define EIGEN_DONT_PARALLELIZE  // threads come from our own OpenMP loops, results stay thread-independent
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels {
namespace {

void require(bool ok, const std::string& setting, const std::string& what) {
    if (!ok) throw Error(Exit::usage, setting + ": " + what);
}

double auto_dmin(const Probe& p) {
    std::vector<double> y(p.yc);
    std::sort(y.begin(), y.end());
    y.erase(std::unique(y.begin(), y.end()), y.end());
    if (y.size() < 2) return 1.0;
    std::vector<double> d(y.size() - 1);
    for (size_t i = 0; i + 1 < y.size(); ++i) d[i] = y[i + 1] - y[i];
    std::sort(d.begin(), d.end());
    const size_t m = d.size();
    return m % 2 ? d[m / 2] : 0.5 * (d[m / 2 - 1] + d[m / 2]);  // numpy's median
}

}  // namespace

UniversalGrid make_universal_grid(const Probe& probe, const UniversalGridSettings& s) {
    require(probe.n_chan() >= 1 && probe.xc.size() == probe.yc.size() && probe.kcoords.size() == probe.xc.size() &&
                static_cast<int>(probe.xc.size()) == probe.n_chan(),
            "probe " + probe.name, "inconsistent channel lists (chanMap, xc, yc, kcoords must have equal lengths >= 1)");
    require(std::isfinite(s.dmin) && s.dmin >= 0, "dmin", "expected a finite value >= 0 (0 or None = automatic)");
    require(std::isfinite(s.dminx) && s.dminx > 0, "dminx", "expected a finite value > 0 (µm)");
    require(std::isfinite(s.min_template_size) && s.min_template_size > 0, "min_template_size",
            "expected a finite value > 0 (µm)");
    require(s.template_sizes >= 1 && s.template_sizes <= 64, "template_sizes", "expected an integer in 1..64");
    require(std::isfinite(s.max_channel_distance) && s.max_channel_distance > 0, "max_channel_distance",
            "expected a finite value > 0 (µm)");
    require(s.nearest_chans >= 1, "nearest_chans", "expected an integer >= 1");
    require(s.nearest_templates >= 1, "nearest_templates", "expected an integer >= 1");

    UniversalGrid g;
    g.dmin_um = s.dmin > 0 ? s.dmin : auto_dmin(probe);
    g.n_chan_near = s.nearest_chans;
    g.n_near = s.nearest_templates;
    g.n_sizes = s.template_sizes;
    g.ch_y_um = probe.yc;
    const double ystep = g.dmin_um / 2;
    const double maxd2 = s.max_channel_distance * s.max_channel_distance;

    std::map<int, std::vector<int>> shanks;  // kcoords value -> channel rows, ascending
    for (int c = 0; c < probe.n_chan(); ++c) shanks[probe.kcoords[c]].push_back(c);

    std::vector<int> first_of_shank;  // centre index where each shank starts, plus the end
    for (const auto& [k, chans] : shanks) {
        first_of_shank.push_back(g.n_pos);
        double xmin = probe.xc[chans[0]], xmax = xmin, ymin = probe.yc[chans[0]], ymax = ymin;
        for (int c : chans) {
            xmin = std::min(xmin, probe.xc[c]);
            xmax = std::max(xmax, probe.xc[c]);
            ymin = std::min(ymin, probe.yc[c]);
            ymax = std::max(ymax, probe.yc[c]);
        }
        std::vector<double> ys;
        // ymax is included when within 0.01 µm of a step (KS4 main's tolerance), so probes whose
        // ymax is not hit exactly in floating point still get their top row.
        for (int64_t i = 0;; ++i) {
            const double y = ymin + static_cast<double>(i) * ystep;
            if (y > ymax + 0.01) break;
            ys.push_back(y);
        }
        const int nx = static_cast<int>(std::lround((xmax - xmin) / (s.dminx / 2))) + 1;
        std::vector<double> xs(nx);
        for (int j = 0; j < nx; ++j) xs[j] = nx == 1 ? xmin : xmin + j * ((xmax - xmin) / (nx - 1));
        for (double y : ys)
            for (double x : xs) {
                std::vector<std::pair<double, int>> d;
                d.reserve(chans.size());
                for (int c : chans) {
                    const double dx = probe.xc[c] - x, dy = probe.yc[c] - y;
                    d.emplace_back(dx * dx + dy * dy, c);
                }
                std::sort(d.begin(), d.end());  // by distance, then channel row
                if (d[0].first > maxd2) continue;
                g.x_um.push_back(x);
                g.y_um.push_back(y);
                g.shank.push_back(k);
                for (int i = 0; i < s.nearest_chans; ++i) {
                    const bool have = i < static_cast<int>(d.size());
                    g.iC.push_back(have ? d[i].second : -1);
                    g.ds_um2.push_back(have ? d[i].first : std::numeric_limits<double>::infinity());
                }
                ++g.n_pos;
            }
    }
    first_of_shank.push_back(g.n_pos);
    if (g.n_pos == 0)
        throw Error(Exit::usage, "max_channel_distance: no template centre lies within " +
                                     std::to_string(s.max_channel_distance) + " µm of a channel of probe " + probe.name);

    g.iC2.assign(static_cast<size_t>(g.n_pos) * g.n_near, -1);
    for (size_t sh = 0; sh + 1 < first_of_shank.size(); ++sh) {
        const int a = first_of_shank[sh], b = first_of_shank[sh + 1];
        for (int f = a; f < b; ++f) {
            std::vector<std::pair<double, int>> d;
            for (int h = a; h < b; ++h) {
                const double dx = g.x_um[h] - g.x_um[f], dy = g.y_um[h] - g.y_um[f];
                d.emplace_back(dx * dx + dy * dy, h);
            }
            std::sort(d.begin(), d.end());
            for (int j = 0; j < g.n_near && j < static_cast<int>(d.size()); ++j)
                g.iC2[static_cast<size_t>(f) * g.n_near + j] = d[j].second;
        }
    }

    const int nC = g.n_chan_near;
    g.g.assign(static_cast<size_t>(g.n_sizes) * g.n_pos * nC, 0.f);
    for (int si = 0; si < g.n_sizes; ++si) {
        const double sig = s.min_template_size * (si + 1);
        for (int f = 0; f < g.n_pos; ++f) {
            std::vector<double> w(nC);
            const int n = nC;
            double norm2 = 0;
            for (int i = 0; i < n; ++i) {
                const size_t idx = static_cast<size_t>(f) * nC + i;
                w[i] = g.iC[idx] < 0 ? 0.0 : std::exp(-g.ds_um2[idx] / (sig * sig));
                norm2 += w[i] * w[i];
            }
            // Far channels can underflow to 0 for tiny sigmas; the nearest one never is farther
            // than max_channel_distance, but guard the division anyway.
            const double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
            for (int i = 0; i < n; ++i)
                g.g[(static_cast<size_t>(si) * g.n_pos + f) * nC + i] = static_cast<float>(w[i] * inv);
        }
    }
    return g;
}

// ---- §4.1 ------------------------------------------------------------------------------------------

SnippetCollector::SnippetCollector(const SnippetSettings& s) : s_(s) {
    require(s.nt >= 3 && s.nt % 2 == 1, "nt", "expected an odd number of samples >= 3");
    require(s.nt0min >= 0 && s.nt0min < s.nt, "nt0min", "expected 0 <= nt0min < nt");
    require(std::isfinite(s.Th_single_ch) && s.Th_single_ch > 0, "Th_single_ch", "expected a finite value > 0");
    require(s.max_clips >= 1, "max_clips", "expected >= 1");
}

bool SnippetCollector::add_batch(const float* x, int n_chan, int64_t n, int64_t ld) {
    KS_ASSERT(x && n_chan >= 1 && n >= 0 && ld >= n, "SnippetCollector::add_batch: bad arguments");
    const int nt = s_.nt;
    constexpr int kPeakCh = 4, kPeakT = 5, kIsoCh = 6, kIsoT = 30;
    auto ax = [&](int c, int64_t t) { return std::fabs(x[c * ld + t]); };
    // Peaks per channel, in time order; a row's search is independent of the others.
    std::vector<std::vector<int64_t>> peaks(n_chan);
#pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < n_chan; ++c) {
        const int c0 = std::max(0, c - kPeakCh), c1 = std::min(n_chan - 1, c + kPeakCh);
        for (int64_t t = 0; t < n; ++t) {
            const float v = ax(c, t);
            if (!(v > s_.Th_single_ch)) continue;
            bool is_max = true;
            const int64_t t0 = std::max<int64_t>(0, t - kPeakT), t1 = std::min<int64_t>(n - 1, t + kPeakT);
            for (int cc = c0; cc <= c1 && is_max; ++cc)
                for (int64_t u = t0; u <= t1; ++u)
                    if (ax(cc, u) > v) {
                        is_max = false;
                        break;
                    }
            if (is_max) peaks[c].push_back(t);
        }
    }
    std::vector<float> add;
    for (int c = 0; c < n_chan; ++c) {
        for (int64_t t : peaks[c]) {
            if (t < nt || t >= n - nt) continue;
            int count = 0;
            for (int cc = std::max(0, c - kIsoCh); cc <= std::min(n_chan - 1, c + kIsoCh); ++cc) {
                const auto& p = peaks[cc];
                auto lo = std::lower_bound(p.begin(), p.end(), t - kIsoT);
                auto hi = std::upper_bound(p.begin(), p.end(), t + kIsoT);
                count += static_cast<int>(hi - lo);
            }
            if (count != 1) continue;
            const float* src = x + c * ld + (t - s_.nt0min);
            double norm2 = 0;
            for (int i = 0; i < nt; ++i) norm2 += static_cast<double>(src[i]) * src[i];
            const double inv = 1.0 / std::sqrt(norm2);  // > 0: the clip holds the peak, |x| > Th
            for (int i = 0; i < nt; ++i) add.push_back(static_cast<float>(src[i] * inv));
        }
    }
    if (n_clips() + static_cast<int64_t>(add.size()) / nt > s_.max_clips) return false;
    clips_.insert(clips_.end(), add.begin(), add.end());
    return true;
}

std::vector<float> universal_wpca(const std::vector<float>& clips, int nt, int n_pcs) {
    KS_ASSERT(nt >= 1 && n_pcs >= 1 && n_pcs <= nt && clips.size() % nt == 0, "universal_wpca: bad arguments");
    const int64_t n = static_cast<int64_t>(clips.size()) / nt;
    if (n < n_pcs)
        throw Error(Exit::unsortable, "universal templates: only " + std::to_string(n) +
                                          " isolated single-channel clips, need at least n_pcs = " + std::to_string(n_pcs));
    // Right singular vectors of the clip matrix = eigenvectors of its nt x nt Gram matrix, summed in
    // double in clip order (thread-independent).
    Eigen::MatrixXd gram = Eigen::MatrixXd::Zero(nt, nt);
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(clips.data(), n, nt);
    constexpr int64_t kBlock = 4096;
    for (int64_t r = 0; r < n; r += kBlock) {
        const Eigen::MatrixXd b = m.middleRows(r, std::min(kBlock, n - r)).cast<double>();
        gram.noalias() += b.transpose() * b;
    }
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(gram);
    std::vector<float> out(static_cast<size_t>(n_pcs) * nt);
    for (int p = 0; p < n_pcs; ++p) {
        Eigen::VectorXd v = es.eigenvectors().col(nt - 1 - p);  // eigenvalues ascending
        Eigen::Index imax = 0;
        v.cwiseAbs().maxCoeff(&imax);
        if (v[imax] > 0) v = -v;
        for (int i = 0; i < nt; ++i) out[static_cast<size_t>(p) * nt + i] = static_cast<float>(v[i]);
    }
    return out;
}

std::vector<float> universal_wtemp(const std::vector<float>& clips, int nt, int k, uint32_t seed, int restarts,
                                   int max_iter) {
    KS_ASSERT(nt >= 1 && k >= 1 && restarts >= 1 && max_iter >= 1 && clips.size() % nt == 0,
              "universal_wtemp: bad arguments");
    const int64_t n = static_cast<int64_t>(clips.size()) / nt;
    if (n < k)
        throw Error(Exit::unsortable, "universal templates: only " + std::to_string(n) +
                                          " isolated single-channel clips, need at least n_templates = " + std::to_string(k));
    const float* X = clips.data();
    auto dist2 = [&](int64_t i, const double* c) {
        double d = 0;
        for (int j = 0; j < nt; ++j) {
            const double e = X[i * nt + j] - c[j];
            d += e * e;
        }
        return d;
    };
    std::mt19937 rng(seed);
    std::vector<double> best_centres;
    double best_inertia = std::numeric_limits<double>::infinity();
    std::vector<int> label(n);
    std::vector<double> dmin(n);
    for (int run = 0; run < restarts; ++run) {
        // k-means++ seeding: first centre uniform, then proportional to the squared distance.
        std::vector<double> cen(static_cast<size_t>(k) * nt);
        const int64_t first = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
        for (int j = 0; j < nt; ++j) cen[j] = X[first * nt + j];
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) dmin[i] = dist2(i, cen.data());
        for (int c = 1; c < k; ++c) {
            double total = 0;
            for (int64_t i = 0; i < n; ++i) total += dmin[i];
            const double r = std::uniform_real_distribution<double>(0.0, 1.0)(rng) * total;
            int64_t pick = n - 1;
            double acc = 0;
            for (int64_t i = 0; i < n; ++i) {
                acc += dmin[i];
                if (acc > r) {
                    pick = i;
                    break;
                }
            }
            for (int j = 0; j < nt; ++j) cen[static_cast<size_t>(c) * nt + j] = X[pick * nt + j];
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < n; ++i) dmin[i] = std::min(dmin[i], dist2(i, cen.data() + static_cast<size_t>(c) * nt));
        }
        double inertia = 0;
        for (int it = 0; it < max_iter; ++it) {
            int64_t changed = 0;
#pragma omp parallel for schedule(static) reduction(+ : changed)
            for (int64_t i = 0; i < n; ++i) {
                int bl = 0;
                double bd = dist2(i, cen.data());
                for (int c = 1; c < k; ++c) {
                    const double d = dist2(i, cen.data() + static_cast<size_t>(c) * nt);
                    if (d < bd) {
                        bd = d;
                        bl = c;
                    }
                }
                if (it == 0 || label[i] != bl) ++changed;
                label[i] = bl;
                dmin[i] = bd;
            }
            inertia = 0;
            for (int64_t i = 0; i < n; ++i) inertia += dmin[i];
            if (changed == 0) break;
            // Centre update in clip order (thread-independent); an empty cluster keeps its centre.
            std::vector<double> sum(static_cast<size_t>(k) * nt, 0.0);
            std::vector<int64_t> cnt(k, 0);
            for (int64_t i = 0; i < n; ++i) {
                ++cnt[label[i]];
                for (int j = 0; j < nt; ++j) sum[static_cast<size_t>(label[i]) * nt + j] += X[i * nt + j];
            }
            for (int c = 0; c < k; ++c)
                if (cnt[c] > 0)
                    for (int j = 0; j < nt; ++j)
                        cen[static_cast<size_t>(c) * nt + j] = sum[static_cast<size_t>(c) * nt + j] / cnt[c];
        }
        if (inertia < best_inertia) {
            best_inertia = inertia;
            best_centres = cen;
        }
    }
    std::vector<float> out(static_cast<size_t>(k) * nt);
    for (int c = 0; c < k; ++c) {
        double norm2 = 0;
        for (int j = 0; j < nt; ++j) norm2 += best_centres[static_cast<size_t>(c) * nt + j] * best_centres[static_cast<size_t>(c) * nt + j];
        const double inv = norm2 > 0 ? 1.0 / std::sqrt(norm2) : 0.0;
        for (int j = 0; j < nt; ++j)
            out[static_cast<size_t>(c) * nt + j] = static_cast<float>(best_centres[static_cast<size_t>(c) * nt + j] * inv);
    }
    return out;
}

}  // namespace ks::kernels
