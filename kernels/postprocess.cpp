// Post-processing of the final clustering: CCG merges (§7.3), and beyond Kilosort4 the merges of a drifting
// neuron's pieces and of units found twice; spike positions (§7.6).
#include "ks/kernels/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <numeric>

#include <Eigen/Dense>

#include "ks/error.hpp"
#include "ks/kernels/ccg.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/kernels/template_match.hpp"

namespace ks::post {

namespace {

// Template k's waveform moved `l` samples earlier (w'(tau) = w(tau + l), zero fill), back in PCs.
void shift_template(float* u, int C, int P, const float* wpca, int nt, int l) {
    if (l == 0) return;
    std::vector<double> wave(static_cast<size_t>(nt));
    for (int c = 0; c < C; ++c) {
        std::fill(wave.begin(), wave.end(), 0.0);
        bool any = false;
        for (int p = 0; p < P; ++p) {
            const double v = u[c * P + p];
            if (v == 0) continue;
            any = true;
            for (int t = 0; t < nt; ++t) wave[t] += v * wpca[static_cast<size_t>(p) * nt + t];
        }
        if (!any) continue;
        for (int p = 0; p < P; ++p) {
            double s = 0;
            for (int t = 0; t < nt; ++t)
                if (t + l >= 0 && t + l < nt) s += wave[t + l] * wpca[static_cast<size_t>(p) * nt + t];
            u[c * P + p] = static_cast<float>(s);
        }
    }
}

// Bins of the spike-time profiles compared by the fragment rule: coarse enough that a steadily firing
// neuron's profile is flat at a few hundred spikes, fine enough to see a drift step.
constexpr int kOverlapBins = 24;
// The similarity a vertical shift must add before the fragment pass takes it.
constexpr float kShiftGain = 0.01f;
// Fewer remaining spikes than this cannot show a correlogram; such a unit joins as before.
constexpr size_t kMinRest = 20;

// Vertical shifts of a template over the contacts, as the drift correction moves the data (kriging):
// shift i moves a C x P template up by um(i) µm; the shifts come in +d, -d pairs, d = step, 2 step, ..
// max_um. Empty without a probe geometry or with max_um or step_um 0. Operators are built on first use.
class VerticalShifts {
public:
    VerticalShifts(const std::vector<double>& xc, const std::vector<double>& yc, const std::vector<int>& kcoords,
                   int C, double sig_um, double max_um, double step_um)
        : xc_(xc), yc_(yc), kcoords_(kcoords), C_(C), sig_um_(sig_um) {
        const auto n = static_cast<size_t>(C);
        if (max_um <= 0 || step_um <= 0 || xc.size() != n || yc.size() != n || kcoords.size() != n) return;
        for (double d = step_um; d <= max_um + 1e-9; d += step_um) um_.push_back(d), um_.push_back(-d);
        op_.resize(um_.size());
    }
    [[nodiscard]] int size() const { return static_cast<int>(um_.size()); }
    // The shift that undoes shift i.
    [[nodiscard]] static int back(int i) { return (i % 2 == 0) ? i + 1 : i - 1; }
    const float* op(int i) {
        if (op_[i].empty()) {
            if (!kriging_) kriging_ = std::make_unique<drift::Kriging>(xc_, yc_, kcoords_, sig_um_);
            const std::vector<double> m = kriging_->matrix(std::vector<double>(C_, um_[i]));
            op_[i].assign(m.begin(), m.end());
        }
        return op_[i].data();
    }

private:
    const std::vector<double>& xc_;
    const std::vector<double>& yc_;
    const std::vector<int>& kcoords_;
    int C_;
    double sig_um_;
    std::vector<double> um_;
    std::vector<std::vector<float>> op_;
    std::unique_ptr<drift::Kriging> kriging_;
};

// The channel where template u (C x P PCs) has the largest norm.
int peak_channel(const float* u, int C, int P) {
    int best = 0;
    double bn = -1;
    for (int c = 0; c < C; ++c) {
        double n = 0;
        for (int q = 0; q < P; ++q) n += static_cast<double>(u[c * P + q]) * u[c * P + q];
        if (n > bn) bn = n, best = c;
    }
    return best;
}

// Template u (C x P) moved by every shift of `shifts`.
std::vector<std::vector<float>> moved_templates(VerticalShifts& shifts, const float* u, int C, int P) {
    std::vector<std::vector<float>> moved(shifts.size());
    for (int i = 0; i < shifts.size(); ++i) moved[i] = map_template(shifts.op(i), u, C, P);
    return moved;
}

// The moved template (index into `moved`) most similar to ub if above `floor`, else -1; *best and *lag
// then hold its similarity and lag.
int best_shift(const std::vector<std::vector<float>>& moved, const float* ub, int C, int P,
               const std::vector<double>& lag_products, int nt, float floor, float* best, int* lag) {
    int at = -1;
    *best = floor;
    for (size_t i = 0; i < moved.size(); ++i) {
        int l = 0;
        const float v = pair_similarity(moved[i].data(), ub, C, P, lag_products, nt, &l);
        if (v > *best) *best = v, *lag = l, at = static_cast<int>(i);
    }
    return at;
}

}  // namespace

double time_overlap(const std::vector<double>& a, const std::vector<double>& b, double t0, double t1, int bins) {
    if (a.empty() || b.empty() || bins < 1) return 0;
    std::vector<double> ha(bins, 0.0), hb(bins, 0.0);
    const double w = t1 > t0 ? (t1 - t0) / bins : 1;
    auto bin_of = [&](double t) { return std::clamp(static_cast<int>((t - t0) / w), 0, bins - 1); };
    for (double t : a) ha[bin_of(t)] += 1.0 / static_cast<double>(a.size());
    for (double t : b) hb[bin_of(t)] += 1.0 / static_cast<double>(b.size());
    double o = 0;
    for (int i = 0; i < bins; ++i) o += std::min(ha[i], hb[i]);
    return o;
}

std::vector<float> map_template(const float* m, const float* u, int C, int P) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    std::vector<float> out(static_cast<size_t>(C) * P);
    Eigen::Map<RowMat>(out.data(), C, P).noalias() =
        Eigen::Map<const RowMat>(m, C, C) * Eigen::Map<const RowMat>(u, C, P);
    return out;
}

float pair_similarity(const float* ua, const float* ub, int C, int P, const std::vector<double>& lag_products, int nt,
                      int* lag) {
    const int L = 2 * nt + 1;
    KS_ASSERT(lag_products.size() == static_cast<size_t>(L) * P * P, "pair_similarity: lag products");
    double na = 0, nb = 0;
    std::vector<double> g(static_cast<size_t>(P) * P, 0.0);   // g[p, q] = sum_c a[c, p] b[c, q]
    for (int c = 0; c < C; ++c)
        for (int p = 0; p < P; ++p) {
            const double ap = ua[c * P + p];
            na += ap * ap;
            nb += static_cast<double>(ub[c * P + p]) * ub[c * P + p];
            for (int q = 0; q < P; ++q) g[p * P + q] += ap * ub[c * P + q];
        }
    *lag = 0;
    if (na <= 0 || nb <= 0) return 0.f;
    const double inv = 1.0 / std::sqrt(na * nb);
    std::vector<float> r(L);
    for (int l = 0; l < L; ++l) {
        double v = 0;
        for (int i = 0; i < P * P; ++i) v += g[i] * lag_products[static_cast<size_t>(l) * P * P + i];
        r[l] = static_cast<float>(v * inv);
    }
    // As template_similarity: lag 0 unless another lag is strictly better.
    int lbest = nt;
    for (int l = 0; l < L; ++l)
        if (r[l] > r[lbest]) lbest = l;
    const float best = r[lbest];
    *lag = lbest - nt;
    return std::max(0.f, best);
}

MergeResult ccg_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                      std::vector<float>& U, int C, int P, const float* wpca, int nt, const MergeParams& p) {
    KS_ASSERT(times.size() == labels.size() && U.size() == static_cast<size_t>(K) * C * P, "ccg_merge: shapes");
    const size_t D = static_cast<size_t>(C) * P;
    // Spike trains in seconds, per cluster, sorted.
    std::vector<std::vector<double>> train(K);
    for (size_t i = 0; i < times.size(); ++i) {
        KS_ASSERT(labels[i] >= 0 && labels[i] < K, "ccg_merge: label out of range");
        train[labels[i]].push_back(static_cast<double>(times[i]) / p.fs);
    }
    for (auto& t : train) std::sort(t.begin(), t.end());
    std::vector<char> is_ref(K, 0), alive(K, 1);
    MergeResult r;
    r.into.resize(K);
    std::iota(r.into.begin(), r.into.end(), 0);
    r.shift.assign(K, 0);
    double t0 = INFINITY, t1 = -INFINITY;
    for (const auto& t : train)
        if (!t.empty()) t0 = std::min(t0, t.front()), t1 = std::max(t1, t.back());
    std::vector<float> sim;
    std::vector<int> lag, shift_of;   // shift_of[b]: b's best vertical shift (VerticalShifts index), -1 none
    // Vertical shifts for the fragment pass.
    VerticalShifts shifts(p.xc, p.yc, p.kcoords, C, p.sig_interp_um,
                          p.fragment_similarity > 0 ? p.fragment_max_shift_um : 0, p.fragment_shift_step_um);
    auto peak_chan = [&](int k) { return peak_channel(U.data() + k * D, C, P); };
    std::vector<double> lag_products;
    match::SimilarityRows rows(U.data(), K, C, P, wpca, nt);  // kept in step with U through the merges
    int n_shifted = 0;
    // One walk: clusters by decreasing size, each refractory one absorbing, in decreasing similarity, the
    // first candidate that `mergeable` accepts, then visited again with its new template. `shift_candidate`
    // (fragment pass) lets a candidate's similarity be the best over vertical shifts.
    auto walk = [&](double min_similarity, const std::function<bool(int, int, double)>& mergeable,
                    const std::function<bool(int, int)>& shift_candidate) {
        for (int k = 0; k < K; ++k) {
            // As Kilosort4's CCG.refract: only clusters with more than 10 spikes over a nonzero span can be
            // refractory, hence absorb others.
            const auto& t = train[k];
            is_ref[k] = 0;
            if (!alive[k] || t.size() <= 10 || t.back() == t.front()) continue;
            is_ref[k] = ccg::acg_refractory(ccg::ccg_stats(t.data(), static_cast<int64_t>(t.size()), t.data(),
                                                           static_cast<int64_t>(t.size()), true),
                                            p.acg_threshold);
        }
        std::vector<int> order(K);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return train[a].size() > train[b].size(); });
        int n = 0;
        n_shifted = 0;
        for (int a : order) {
            if (!is_ref[a] || !alive[a]) continue;
            for (;;) {
                rows.row(a, &sim, &lag);
                shift_of.assign(K, -1);
                std::vector<std::vector<float>> moved_a;   // a's template at each shift, made on first need
                if (shifts.size() > 0 && shift_candidate) {
                    if (lag_products.empty()) lag_products = match::pc_lag_products(wpca, P, nt);
                    for (int b = 0; b < K; ++b) {
                        if (b == a || !alive[b] || train[b].empty() || !shift_candidate(a, b)) continue;
                        // A shift counts only where it makes the templates clearly more alike than unshifted
                        // (kriging smooths slightly, so the smallest shifts come out a hair above).
                        const float plain = sim[b];
                        if (moved_a.empty()) moved_a = moved_templates(shifts, U.data() + a * D, C, P);
                        float best = 0;
                        shift_of[b] = best_shift(moved_a, U.data() + b * D, C, P, lag_products, nt, plain + kShiftGain,
                                                 &best, &lag[b]);
                        if (shift_of[b] >= 0) sim[b] = best;
                    }
                }
                std::vector<int> cand;
                for (int b = 0; b < K; ++b)
                    if (b != a && alive[b] && !train[b].empty() && sim[b] >= min_similarity) cand.push_back(b);
                std::stable_sort(cand.begin(), cand.end(), [&](int x, int y) { return sim[x] > sim[y]; });
                int merged = -1;
                for (int b : cand)
                    if (mergeable(a, b, sim[b])) {
                        merged = b;
                        break;
                    }
                if (merged < 0) break;
                // a centred at t0 + l matches b centred at t0: b's spikes are a's at t + l.
                const int l = lag[merged];
                if (shift_of[merged] >= 0) {
                    // a moved up by dy matches b: move b down by dy onto a's position.
                    const std::vector<float> moved =
                        map_template(shifts.op(VerticalShifts::back(shift_of[merged])), U.data() + merged * D, C, P);
                    std::copy(moved.begin(), moved.end(), U.begin() + merged * D);
                    ++n_shifted;
                }
                shift_template(U.data() + merged * D, C, P, wpca, nt, l);
                const double na = static_cast<double>(train[a].size()), nb = static_cast<double>(train[merged].size());
                for (size_t i = 0; i < D; ++i)
                    U[a * D + i] = static_cast<float>((na * U[a * D + i] + nb * U[merged * D + i]) / (na + nb));
                std::fill(U.begin() + merged * D, U.begin() + (merged + 1) * D, 0.f);
                rows.update(a, U.data() + a * D);
                rows.update(merged, U.data() + merged * D);
                for (double& t : train[merged]) t += l / p.fs;
                train[a].insert(train[a].end(), train[merged].begin(), train[merged].end());
                std::sort(train[a].begin(), train[a].end());
                train[merged].clear();
                alive[merged] = 0;
                for (int k = 0; k < K; ++k)
                    if (r.into[k] == merged) {
                        r.into[k] = a;
                        r.shift[k] += l;
                    }
                ++n;
            }
        }
        return n;
    };
    auto pair_stats = [&](int a, int b) {
        return ccg::ccg_stats(train[a].data(), static_cast<int64_t>(train[a].size()), train[b].data(),
                              static_cast<int64_t>(train[b].size()), false);
    };
    r.n_merges = walk(
        p.min_similarity,
        [&](int a, int b, double) {
            const ccg::Stats s = pair_stats(a, b);
            return p.exact_tail ? ccg::ccg_refractory_poisson(s, p.ccg_threshold) : ccg::ccg_refractory(s, p.ccg_threshold);
        },
        nullptr);
    if (p.fragment_similarity > 0) {
        auto disjoint = [&](int a, int b) {
            return time_overlap(train[a], train[b], t0, t1, kOverlapBins) <= p.fragment_overlap;
        };
        // Shifted comparisons only for pieces firing at different times on the same shank, no farther
        // apart than the largest shift plus 40 µm.
        auto shift_candidate = [&](int a, int b) {
            const int ca = peak_chan(a), cb = peak_chan(b);
            return p.kcoords[ca] == p.kcoords[cb] && std::fabs(p.yc[ca] - p.yc[cb]) <= p.fragment_max_shift_um + 40.0 &&
                   disjoint(a, b);
        };
        r.n_fragment_merges = walk(
            p.fragment_similarity,
            [&](int a, int b, double) {
                if (!disjoint(a, b)) return false;
                const ccg::Stats s = pair_stats(a, b);
                // An empty correlogram (trains more than 0.5 s apart throughout) has no violations at all.
                return ccg::undefined(s) || s.R12 < p.ccg_threshold;
            },
            shift_candidate);
        r.n_shifted_fragment_merges = n_shifted;
        r.n_merges += r.n_fragment_merges;
    }
    // Renumber the survivors in their order; drop the absorbed templates.
    std::vector<int32_t> renum(K, -1);
    std::vector<float> kept;
    for (int k = 0; k < K; ++k)
        if (alive[k]) {
            renum[k] = r.K++;
            r.kept.push_back(k);
            kept.insert(kept.end(), U.begin() + k * D, U.begin() + (k + 1) * D);
        }
    for (int32_t& t : r.into) t = renum[t];
    U.swap(kept);
    return r;
}

RedundantResult redundant_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                                const std::vector<double>& unit_x, const std::vector<double>& unit_y,
                                const std::vector<double>& unit_norm, const RedundantParams& p) {
    KS_ASSERT(times.size() == labels.size() && unit_x.size() == static_cast<size_t>(K) &&
                  unit_y.size() == static_cast<size_t>(K) && unit_norm.size() == static_cast<size_t>(K),
              "redundant_merge: shapes");
    const auto L = static_cast<int64_t>(std::floor(p.max_lag_ms * p.fs / 1000.0));
    const auto tol = static_cast<int64_t>(std::floor(p.tolerance_ms * p.fs / 1000.0));
    const size_t N = times.size();
    std::vector<std::vector<size_t>> members(K);   // spike indices per unit, in time order
    std::vector<size_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return times[a] < times[b]; });
    for (size_t i : order) {
        KS_ASSERT(labels[i] >= 0 && labels[i] < K, "redundant_merge: label out of range");
        members[labels[i]].push_back(i);
    }
    const double d2max = p.max_distance_um * p.max_distance_um;
    auto near = [&](int u, int v) {
        const double dx = unit_x[u] - unit_x[v], dy = unit_y[u] - unit_y[v];
        return dx * dx + dy * dy <= d2max;
    };
    // Lag histograms (t_v - t_u, u < v) of the pairs that meet within +-L samples.
    std::map<std::pair<int, int>, std::vector<int32_t>> hist;
    for (size_t a = 0; a < N; ++a) {
        const size_t i = order[a];
        for (size_t b = a + 1; b < N && times[order[b]] - times[i] <= L; ++b) {
            const size_t j = order[b];
            int u = labels[i], v = labels[j];
            if (u == v || !near(u, v)) continue;
            int64_t d = times[j] - times[i];
            if (u > v) std::swap(u, v), d = -d;
            auto& h = hist[{u, v}];
            if (h.empty()) h.assign(static_cast<size_t>(2 * L + 1), 0);
            ++h[static_cast<size_t>(d + L)];
        }
    }
    struct Cand {
        double frac;       // shared spikes / the smaller unit's count
        int u, v, lag;     // v's shared spikes are u's at t + lag
        int64_t shared;
    };
    std::vector<Cand> cand;
    for (const auto& [key, h] : hist) {
        int64_t best = -1, best_lag = 0;
        for (int64_t l = -L; l <= L; ++l) {
            int64_t c = 0;
            for (int64_t d = std::max(-L, l - tol); d <= std::min(L, l + tol); ++d) c += h[static_cast<size_t>(d + L)];
            if (c > best || (c == best && std::llabs(l) < std::llabs(best_lag))) best = c, best_lag = l;
        }
        // Windows that hold the same coincidences tie: the lag is their centre of mass instead.
        if (best > 0) {
            double m = 0;
            for (int64_t d = std::max(-L, best_lag - tol); d <= std::min(L, best_lag + tol); ++d)
                m += static_cast<double>(d) * h[static_cast<size_t>(d + L)];
            best_lag = static_cast<int64_t>(std::llround(m / static_cast<double>(best)));
        }
        const auto nu = static_cast<int64_t>(members[key.first].size()), nv = static_cast<int64_t>(members[key.second].size());
        const double frac = static_cast<double>(best) / static_cast<double>(std::min(nu, nv));
        if (frac >= p.fraction) cand.push_back({frac, key.first, key.second, static_cast<int>(best_lag), best});
    }
    std::stable_sort(cand.begin(), cand.end(), [](const Cand& a, const Cand& b) { return a.frac > b.frac; });
    // Union of the units found twice; off[k]: samples added to k's times to line them up with its root's.
    std::vector<int> root(K);
    std::iota(root.begin(), root.end(), 0);
    std::vector<int64_t> off(K, 0);
    RedundantResult rr;
    MergeResult& r = rr.merge;
    rr.drop.assign(N, 0);
    // Drops unit k's spikes that, moved by `shift` samples, lie within +-window of one of unit `owner`'s.
    auto times_of = [&](int k) {
        std::vector<int64_t> t(members[k].size());
        for (size_t i = 0; i < t.size(); ++i) t[i] = times[members[k][i]];
        return t;
    };
    auto drop_near = [&](int k, int owner, int64_t shift, int64_t window) {
        const std::vector<int64_t> ot = times_of(owner);
        for (size_t i : members[k]) {
            if (rr.drop[i]) continue;
            const int64_t t = times[i] + shift;
            const auto it = std::lower_bound(ot.begin(), ot.end(), t - window);
            if (it != ot.end() && *it <= t + window) rr.drop[i] = 1, ++rr.n_dropped;
        }
    };
    // Whether unit k's spikes that are not unit owner's moved by lag (k's at t + lag ~ owner's at t) keep
    // the owner's refractory period: R12 of their correlogram below ccg_threshold (Kilosort4's R12 only;
    // an empty correlogram, or fewer than kMinRest such spikes, counts as refractory).
    auto rest_is_refractory = [&](int k, int owner, int64_t lag) {
        const std::vector<int64_t> ot = times_of(owner);
        std::vector<double> rest, own(ot.size());
        for (size_t i = 0; i < ot.size(); ++i) own[i] = static_cast<double>(ot[i]) / p.fs;
        for (size_t i : members[k]) {
            const int64_t t = times[i] - lag;
            const auto it = std::lower_bound(ot.begin(), ot.end(), t - tol);
            if (it == ot.end() || *it > t + tol) rest.push_back(static_cast<double>(times[i]) / p.fs);
        }
        if (rest.size() < kMinRest) return true;
        const ccg::Stats st = ccg::ccg_stats(own.data(), static_cast<int64_t>(own.size()), rest.data(),
                                             static_cast<int64_t>(rest.size()), false);
        return ccg::undefined(st) || st.R12 < p.ccg_threshold;
    };
    std::vector<uint8_t> residue_in(K, 0);
    for (const Cand& c : cand) {
        // The owner of the shared spikes: the unit with the larger template.
        const bool u_owns = unit_norm[c.u] >= unit_norm[c.v];
        const int other = u_owns ? c.v : c.u;
        const double frac_other = static_cast<double>(c.shared) / static_cast<double>(members[other].size());
        const int owner = u_owns ? c.u : c.v;
        const int64_t olag = u_owns ? c.lag : -c.lag;   // other's shared spikes are owner's at t + olag
        if (frac_other >= p.fraction && p.ccg_threshold > 0 && !rest_is_refractory(other, owner, olag)) {
            // The shared spikes are most of both, yet the other unit's remaining spikes fire within the
            // owner's refractory period: they are another neuron's (or noise), which joining would add
            // to the owner. Only the shared spikes go.
            drop_near(other, owner, -olag, tol);
            ++rr.n_dropped_pairs;
            residue_in[other] = 1;
            continue;
        }
        if (frac_other < p.fraction) {
            // A different neuron that also took some of the owner's spikes: drop those from it.
            drop_near(other, owner, -olag, tol);
            ++rr.n_dropped_pairs;
            continue;
        }
        int ru = root[c.u], rv = root[c.v];
        if (ru == rv) continue;
        // t_v - lag ~ t_u, so v's group lines up with ru after off[w] - off[v] - lag + off[u]; the group
        // holding the owner keeps its times.
        int64_t delta = off[c.u] - off[c.v] - c.lag;   // added to rv's group
        if (!u_owns) std::swap(ru, rv), delta = -delta;
        for (int k = 0; k < K; ++k)
            if (root[k] == rv) root[k] = ru, off[k] += delta;
        ++r.n_merges;
    }
    std::vector<int32_t> renum(K, -1);
    for (int k = 0; k < K; ++k)
        if (root[k] == k) renum[k] = r.K++, r.kept.push_back(k);
    r.into.resize(K);
    r.shift.resize(K);
    rr.residue.assign(r.K, 0);
    for (int k = 0; k < K; ++k) {
        r.into[k] = renum[root[k]];
        r.shift[k] = static_cast<int32_t>(off[k]);
    }
    // A residue that another unit later joined is that unit's group now; only a survivor keeps the mark.
    for (int k = 0; k < K; ++k)
        if (root[k] == k && residue_in[k]) rr.residue[renum[k]] = 1, ++rr.n_residues;
    // In a joined group, a spike of an absorbed unit within max_lag_ms of one of the survivor's (times
    // lined up) is the same spike found twice with some jitter: one neuron cannot fire twice that fast.
    for (int k = 0; k < K; ++k)
        if (root[k] != k) drop_near(k, root[k], off[k], L);
    return rr;
}

std::vector<double> unit_medians(const std::vector<int32_t>& labels, const std::vector<int64_t>& index,
                                 const std::vector<float>& values, int K) {
    KS_ASSERT(labels.size() == index.size(), "unit_medians: labels and index differ in length");
    std::vector<std::vector<float>> per(static_cast<size_t>(K));
    for (size_t i = 0; i < labels.size(); ++i) {
        KS_ASSERT(labels[i] >= 0 && labels[i] < K && index[i] >= 0 && static_cast<size_t>(index[i]) < values.size(),
                  "unit_medians: label or index out of range");
        per[labels[i]].push_back(values[index[i]]);
    }
    std::vector<double> med(static_cast<size_t>(K), 0.0);
    for (int k = 0; k < K; ++k) {
        std::vector<float>& v = per[k];
        if (v.empty()) continue;
        const size_t h = v.size() / 2;
        std::nth_element(v.begin(), v.begin() + h, v.end());
        med[k] = v[h];
        // even count: the lower middle value is the largest of those nth_element left before v[h]
        if (v.size() % 2 == 0) med[k] = 0.5 * (med[k] + *std::max_element(v.begin(), v.begin() + h));
    }
    return med;
}

std::vector<int32_t> probable_pieces(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                                     const std::vector<float>& U, int C, int P, const float* wpca, int nt,
                                     const std::vector<uint8_t>& good, const PieceParams& p) {
    KS_ASSERT(times.size() == labels.size() && U.size() == static_cast<size_t>(K) * C * P &&
                  good.size() == static_cast<size_t>(K),
              "probable_pieces: shapes");
    std::vector<int32_t> parent(K, -1);
    if (p.similarity <= 0 || K < 2 || times.empty()) return parent;
    const size_t D = static_cast<size_t>(C) * P;
    std::vector<std::vector<int64_t>> train(K);
    for (size_t i = 0; i < times.size(); ++i) {
        KS_ASSERT(labels[i] >= 0 && labels[i] < K, "probable_pieces: label out of range");
        train[labels[i]].push_back(times[i]);
    }
    for (auto& t : train) std::sort(t.begin(), t.end());
    const auto [tmin, tmax] = std::minmax_element(times.begin(), times.end());
    const double span_s = static_cast<double>(*tmax - *tmin) / p.fs;
    if (!(span_s > 0)) return parent;
    const auto w = static_cast<int64_t>(std::floor(p.window_ms * p.fs / 1000.0));
    const bool geometry = p.xc.size() == static_cast<size_t>(C) && p.yc.size() == static_cast<size_t>(C) &&
                          p.kcoords.size() == static_cast<size_t>(C);
    VerticalShifts shifts(p.xc, p.yc, p.kcoords, C, p.sig_interp_um, p.max_shift_um, p.shift_step_um);
    const std::vector<double> lag_products = match::pc_lag_products(wpca, P, nt);
    std::vector<int> peak(K);
    for (int k = 0; k < K; ++k) peak[k] = peak_channel(U.data() + k * D, C, P);
    for (int k = 0; k < K; ++k) {
        if (!good[k] || train[k].empty()) continue;
        std::vector<std::vector<float>> moved;   // k's template at each shift, made on first need
        // Candidate parents: larger good units on the same shank within the shift range (plus 40 µm).
        std::vector<std::pair<double, int>> cand;
        for (int q = 0; q < K; ++q) {
            if (q == k || !good[q] || train[q].size() <= train[k].size()) continue;
            if (geometry && (p.kcoords[peak[q]] != p.kcoords[peak[k]] ||
                             std::fabs(p.yc[peak[q]] - p.yc[peak[k]]) > p.max_shift_um + 40.0))
                continue;
            int l = 0;
            const float plain = pair_similarity(U.data() + k * D, U.data() + q * D, C, P, lag_products, nt, &l);
            if (shifts.size() > 0 && moved.empty()) moved = moved_templates(shifts, U.data() + k * D, C, P);
            float best = plain;   // or better under a shift
            (void)best_shift(moved, U.data() + q * D, C, P, lag_products, nt, plain, &best, &l);
            if (best >= p.similarity) cand.emplace_back(-static_cast<double>(best), q);
        }
        std::sort(cand.begin(), cand.end());   // most similar first, then lower index
        for (const auto& [negsim, q] : cand) {
            const auto& a = train[k];
            const auto& b = train[q];
            int64_t c = 0;
            for (int64_t t : a)
                c += std::upper_bound(b.begin(), b.end(), t + w) - std::lower_bound(b.begin(), b.end(), t - w);
            const double expected = static_cast<double>(a.size()) * static_cast<double>(b.size()) *
                                    (2.0 * static_cast<double>(w) + 1.0) / p.fs / span_s;
            if (expected >= p.min_expected && static_cast<double>(c) <= p.ccg_threshold * expected) {
                parent[k] = q;
                break;
            }
        }
    }
    return parent;
}

void spike_position(const float* features, const int32_t* chans, int nC, int P, const std::vector<double>& xc,
                    const std::vector<double>& yc, double position_limit_um, double* x_um, double* y_um) {
    const int c0 = chans[0];
    double wsum = 0, x = 0, y = 0;
    for (int i = 0; i < nC; ++i) {
        const int c = chans[i];
        if (c < 0) continue;
        const double dx = xc[c] - xc[c0], dy = yc[c] - yc[c0];
        if (dx * dx + dy * dy > position_limit_um * position_limit_um) continue;
        double s = 0;
        for (int q = 0; q < P; ++q) s += static_cast<double>(features[i * P + q]) * features[i * P + q];
        const double w = std::sqrt(s);
        wsum += w;
        x += w * xc[c];
        y += w * yc[c];
    }
    if (wsum > 0) {
        *x_um = x / wsum;
        *y_um = y / wsum;
    } else {
        *x_um = xc[c0];
        *y_um = yc[c0];
    }
}

}  // namespace ks::post
