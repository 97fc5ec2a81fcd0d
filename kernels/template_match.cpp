// Template matching by peeling, CPU (kilosort4-algorithm.md §6). See template_match.hpp.
//
// Exactness matters more than in the reference: the cross-products ctc are formed from the same PC
// coefficients as the projections, so after subtracting a·T_k at t the template's own projection
// Bk[k, t] is zero up to rounding, and every other Bk is what projecting the residual would give.
// Passes after the first only revisit the samples a subtraction can have changed (within 2·nt of a
// peeled spike); that gives exactly the detections of a full rescan, at a fraction of the cost.
#include "ks/kernels/template_match.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <map>

#include <Eigen/Dense>

#include "ks/error.hpp"

namespace ks::match {

namespace {

using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// For template a: row[b * L + (l + nt)] = sum_pq (sum_c U[a,c,p] U[b,c,q]) C_pq(l), for all b.
// Templates with no channel in common with a give zeros without arithmetic.
class CrossProducts {
public:
    CrossProducts(const float* U, int K, int C, int P, const float* wpca, int nt)
        : K_(K), C_(C), P_(P), nt_(nt), L_(2 * nt + 1), cl_(pc_lag_products(wpca, P, nt)) {
        // Ut: (K*P) x C, row a*P+p = U[a, :, p]
        ut_.resize(static_cast<size_t>(K) * P, C);
        first_.assign(K, C);
        last_.assign(K, -1);
        for (int a = 0; a < K; ++a) set(a, U + static_cast<size_t>(a) * C * P);
    }
    int lags() const { return L_; }

    // Template a is now u (C x P).
    void set(int a, const float* u) {
        first_[a] = C_;
        last_[a] = -1;
        for (int c = 0; c < C_; ++c)
            for (int p = 0; p < P_; ++p) {
                const float v = u[c * P_ + p];
                ut_(a * P_ + p, c) = v;
                if (v != 0.f) {
                    first_[a] = std::min(first_[a], c);
                    last_[a] = std::max(last_[a], c);
                }
            }
    }

    void row(int a, float* out) const {
        std::fill(out, out + static_cast<size_t>(K_) * L_, 0.f);
        if (last_[a] < 0) return;
        const int c0 = first_[a], nc = last_[a] - first_[a] + 1;
        // M = Ut[a] (P x nc) · Ut[b]^T over the channel span of a, for all b at once: P x (K*P).
        const RowMatF m = ut_.block(static_cast<Eigen::Index>(a) * P_, c0, P_, nc) *
                          ut_.block(0, c0, static_cast<Eigen::Index>(K_) * P_, nc).transpose();
        for (int b = 0; b < K_; ++b) {
            if (last_[b] < c0 || first_[b] > last_[a]) continue;
            for (int l = 0; l < L_; ++l) {
                double s = 0;
                const double* cl = cl_.data() + static_cast<size_t>(l) * P_ * P_;
                for (int p = 0; p < P_; ++p)
                    for (int q = 0; q < P_; ++q) s += static_cast<double>(m(p, b * P_ + q)) * cl[p * P_ + q];
                out[static_cast<size_t>(b) * L_ + l] = static_cast<float>(s);
            }
        }
    }

private:
    int K_, C_, P_, nt_, L_;
    std::vector<double> cl_;
    RowMatF ut_;
    std::vector<int> first_, last_;
};

}  // namespace

std::vector<double> pc_lag_products(const float* wpca, int P, int nt) {
    const int L = 2 * nt + 1;
    std::vector<double> out(static_cast<size_t>(L) * P * P, 0.0);
    for (int l = -nt; l <= nt; ++l)
        for (int p = 0; p < P; ++p)
            for (int q = 0; q < P; ++q) {
                double s = 0;
                for (int tau = std::max(0, l); tau < std::min(nt, nt + l); ++tau)
                    s += static_cast<double>(wpca[static_cast<size_t>(p) * nt + tau - l]) * wpca[static_cast<size_t>(q) * nt + tau];
                out[(static_cast<size_t>(l + nt) * P + p) * P + q] = s;
            }
    return out;
}

std::vector<float> template_cross_products(const float* U, int K, int C, int P, const float* wpca, int nt) {
    const CrossProducts cp(U, K, C, P, wpca, nt);
    const int L = cp.lags();
    std::vector<float> ctc(static_cast<size_t>(K) * K * L);
#pragma omp parallel for schedule(dynamic, 4)
    for (int a = 0; a < K; ++a) cp.row(a, ctc.data() + static_cast<size_t>(a) * K * L);
    return ctc;
}

namespace {

// out = u / |u| (D values; zeros for a zero template).
void unit_norm(const float* u, size_t D, float* out) {
    double s = 0;
    for (size_t i = 0; i < D; ++i) s += static_cast<double>(u[i]) * u[i];
    const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.f;
    for (size_t i = 0; i < D; ++i) out[i] = u[i] * inv;
}

std::vector<float> unit_norm_templates(const float* U, int K, int C, int P) {
    const size_t D = static_cast<size_t>(C) * P;
    std::vector<float> un(K * D);
    for (int k = 0; k < K; ++k) unit_norm(U + k * D, D, un.data() + k * D);
    return un;
}

// Best lag of each template in a cross-product row; lag 0 wins ties (no shift unless another lag is
// strictly better).
void best_lags(const float* row, int K, int nt, float* sim, int* lag) {
    const int L = 2 * nt + 1;
    for (int b = 0; b < K; ++b) {
        const float* r = row + static_cast<size_t>(b) * L;
        int best = nt;
        for (int l = 0; l < L; ++l)
            if (r[l] > r[best]) best = l;
        sim[b] = std::max(0.f, r[best]);
        lag[b] = best - nt;
    }
}

}  // namespace

void template_similarity(const float* U, int K, int C, int P, const float* wpca, int nt, std::vector<float>* sim,
                         std::vector<int>* lag) {
    const std::vector<float> un = unit_norm_templates(U, K, C, P);
    const CrossProducts cp(un.data(), K, C, P, wpca, nt);
    const int L = cp.lags();
    sim->assign(static_cast<size_t>(K) * K, 0.f);
    lag->assign(static_cast<size_t>(K) * K, 0);
#pragma omp parallel
    {
        std::vector<float> row(static_cast<size_t>(K) * L);
#pragma omp for schedule(dynamic, 4)
        for (int a = 0; a < K; ++a) {
            cp.row(a, row.data());
            best_lags(row.data(), K, nt, sim->data() + static_cast<size_t>(a) * K, lag->data() + static_cast<size_t>(a) * K);
        }
    }
}

struct SimilarityRows::Impl {
    Impl(const float* un, int K_, int C_, int P_, const float* wpca, int nt_)
        : K(K_), D(static_cast<size_t>(C_) * P_), nt(nt_), cp(un, K_, C_, P_, wpca, nt_), unit(D),
          buf(static_cast<size_t>(K_) * (2 * nt_ + 1)) {}
    int K;
    size_t D;
    int nt;
    CrossProducts cp;
    std::vector<float> unit;        // scratch: one unit-norm template
    std::vector<float> buf;         // scratch: one cross-product row
};

SimilarityRows::SimilarityRows(const float* U, int K, int C, int P, const float* wpca, int nt)
    : impl_(std::make_unique<Impl>(unit_norm_templates(U, K, C, P).data(), K, C, P, wpca, nt)) {}

SimilarityRows::~SimilarityRows() = default;

void SimilarityRows::update(int k, const float* u) {
    KS_ASSERT(k >= 0 && k < impl_->K, "SimilarityRows::update: template out of range");
    unit_norm(u, impl_->D, impl_->unit.data());
    impl_->cp.set(k, impl_->unit.data());
}

void SimilarityRows::row(int a, std::vector<float>* sim_row, std::vector<int>* lag_row) {
    KS_ASSERT(a >= 0 && a < impl_->K, "SimilarityRows::row: template out of range");
    impl_->cp.row(a, impl_->buf.data());
    sim_row->resize(impl_->K);
    lag_row->resize(impl_->K);
    best_lags(impl_->buf.data(), impl_->K, impl_->nt, sim_row->data(), lag_row->data());
}

std::vector<int> align_templates(float* U, int K, int C, int P, const float* wpca, int nt, const float* wtemp,
                                 int n_wtemp, int max_shift) {
    std::vector<int> shifts(K, 0);
#pragma omp parallel for schedule(dynamic, 4)
    for (int k = 0; k < K; ++k) {
        float* u = U + static_cast<size_t>(k) * C * P;
        std::vector<double> wave(static_cast<size_t>(C) * nt, 0.0);
        bool any = false;
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < P; ++p) {
                const double v = u[c * P + p];
                if (v == 0) continue;
                any = true;
                for (int t = 0; t < nt; ++t) wave[c * nt + t] += v * wpca[static_cast<size_t>(p) * nt + t];
            }
        if (!any) continue;
        // The lag j at which a universal template placed j samples later fits best, over channels.
        double best = -1;
        int jbest = 0;
        for (int j = -max_shift; j <= max_shift; ++j)
            for (int c = 0; c < C; ++c)
                for (int i = 0; i < n_wtemp; ++i) {
                    double r = 0;
                    for (int t = std::max(0, j); t < std::min(nt, nt + j); ++t)
                        r += wave[c * nt + t] * wtemp[static_cast<size_t>(i) * nt + t - j];
                    if (std::fabs(r) > best || (std::fabs(r) == best && std::abs(j) < std::abs(jbest))) {
                        best = std::fabs(r);
                        jbest = j;
                    }
                }
        shifts[k] = jbest;
        if (jbest == 0) continue;
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < P; ++p) {
                double s = 0;
                for (int t = 0; t < nt; ++t) {
                    const int src = t + jbest;
                    if (src >= 0 && src < nt) s += wave[c * nt + src] * wpca[static_cast<size_t>(p) * nt + t];
                }
                u[c * P + p] = static_cast<float>(s);
            }
    }
    return shifts;
}

std::vector<int> merge_near_duplicates(std::vector<float>& U, int& K, int C, int P, const float* wpca, int nt,
                                       std::vector<int64_t>& counts, double sim_threshold, double norm_ratio) {
    const size_t D = static_cast<size_t>(C) * P;
    KS_ASSERT(U.size() == K * D && counts.size() == static_cast<size_t>(K), "merge_near_duplicates: shapes");
    std::vector<int> into(K);
    for (int k = 0; k < K; ++k) into[k] = k;
    std::vector<char> alive(K, 1);
    auto norm = [&](int k) {
        double s = 0;
        for (size_t i = 0; i < D; ++i) s += static_cast<double>(U[k * D + i]) * U[k * D + i];
        return std::sqrt(s);
    };
    std::vector<int> order(K);
    for (int k = 0; k < K; ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return counts[a] > counts[b]; });
    std::vector<float> sim;
    std::vector<int> lag;
    SimilarityRows rows(U.data(), K, C, P, wpca, nt);
    for (int a : order) {
        if (!alive[a]) continue;
        for (;;) {
            rows.row(a, &sim, &lag);
            std::vector<int> cand;
            for (int b = 0; b < K; ++b)
                if (b != a && alive[b] && sim[b] >= sim_threshold) cand.push_back(b);
            std::stable_sort(cand.begin(), cand.end(), [&](int x, int y) { return sim[x] > sim[y]; });
            const double na = norm(a);
            int merged = -1;
            for (int b : cand) {
                const double nb = norm(b);
                if (std::fabs(2 * (na - nb) / (na + nb)) < norm_ratio) {
                    merged = b;
                    break;
                }
            }
            if (merged < 0) break;
            const double wa = static_cast<double>(counts[a]), wb = static_cast<double>(counts[merged]);
            const double tot = std::max(1.0, wa + wb);
            for (size_t i = 0; i < D; ++i)
                U[a * D + i] = static_cast<float>((wa * U[a * D + i] + wb * U[merged * D + i]) / tot);
            counts[a] += counts[merged];
            counts[merged] = 0;
            std::fill(U.begin() + merged * D, U.begin() + (merged + 1) * D, 0.f);
            rows.update(a, U.data() + a * D);
            rows.update(merged, U.data() + merged * D);
            alive[merged] = 0;
            for (int& t : into)
                if (t == merged) t = a;
        }
    }
    std::vector<int> renum(K, -1);
    int kept = 0;
    std::vector<float> Unew;
    std::vector<int64_t> cnew;
    for (int k = 0; k < K; ++k)
        if (alive[k]) {
            renum[k] = kept++;
            Unew.insert(Unew.end(), U.begin() + k * D, U.begin() + (k + 1) * D);
            cnew.push_back(counts[k]);
        }
    for (int& t : into) t = renum[t];
    U.swap(Unew);
    counts.swap(cnew);
    K = kept;
    return into;
}

MatchTemplates prepare_templates(const float* U, int K, int C, int P, const float* wpca, int nt,
                                 const int32_t* near_chans, int nC) {
    MatchTemplates T;
    T.K = K;
    T.C = C;
    T.P = P;
    T.nt = nt;
    T.nC = nC;
    T.U.assign(U, U + static_cast<size_t>(K) * C * P);
    T.wpca.assign(wpca, wpca + static_cast<size_t>(P) * nt);
    T.ctc = template_cross_products(U, K, C, P, wpca, nt);
    const int L = 2 * nt + 1;
    T.norm2.resize(K);
    T.peak_chan.resize(K);
    T.chans.resize(static_cast<size_t>(K) * nC);
    T.wave.assign(static_cast<size_t>(K) * C * nt, 0.f);
    std::vector<std::pair<std::vector<int>, int>> supports;   // (channels, template)
    for (int k = 0; k < K; ++k) {
        // The energy the peeling removes: ctc[k, k, lag 0] (= sum U^2 for an orthonormal basis).
        T.norm2[k] = T.ctc[(static_cast<size_t>(k) * K + k) * L + nt];
        double best = -1;
        std::vector<int> support;
        for (int c = 0; c < C; ++c) {
            double e = 0;
            for (int p = 0; p < P; ++p) {
                const double u = U[(static_cast<size_t>(k) * C + c) * P + p];
                e += u * u;
                for (int t = 0; t < nt; ++t)
                    T.wave[(static_cast<size_t>(k) * C + c) * nt + t] += static_cast<float>(u * wpca[static_cast<size_t>(p) * nt + t]);
            }
            if (e > best) {
                best = e;
                T.peak_chan[k] = c;
            }
            if (e > 0) support.push_back(c);
        }
        for (int i = 0; i < nC; ++i) T.chans[static_cast<size_t>(k) * nC + i] = near_chans[static_cast<size_t>(T.peak_chan[k]) * nC + i];
        if (support.empty() || !(T.norm2[k] > 0)) continue;   // a zero template can never be fitted
        supports.emplace_back(std::move(support), k);
    }
    // Groups for the projection products: templates in order of their channels, joined while the
    // group's channel union grows by at most a few channels (zeros cost little in a product; many
    // tiny products cost a lot).
    std::sort(supports.begin(), supports.end());
    std::vector<int> uni;
    size_t limit = 0;   // a group's union stays within its first template's channel count + 4
    for (const auto& [sup, k] : supports) {
        std::vector<int> merged;
        std::set_union(uni.begin(), uni.end(), sup.begin(), sup.end(), std::back_inserter(merged));
        if (T.groups.empty() || merged.size() > limit) {
            T.groups.push_back({{k}, sup, {}});
            uni = sup;
            limit = sup.size() + 4;
        } else {
            T.groups.back().templates.push_back(k);
            T.groups.back().channels = merged;
            uni = std::move(merged);
        }
    }
    T.group_of.assign(K, -1);
    for (const auto& G : T.groups) T.fittable.insert(T.fittable.end(), G.templates.begin(), G.templates.end());
    std::sort(T.fittable.begin(), T.fittable.end());
    for (size_t g = 0; g < T.groups.size(); ++g) {
        auto& G = T.groups[g];
        const size_t D = G.channels.size() * P;
        G.coeffs.assign(G.templates.size() * D, 0.f);
        for (size_t i = 0; i < G.templates.size(); ++i) {
            T.group_of[G.templates[i]] = static_cast<int>(g);
            for (size_t s = 0; s < G.channels.size(); ++s)
                for (int p = 0; p < P; ++p)
                    G.coeffs[i * D + s * P + p] = U[(static_cast<size_t>(G.templates[i]) * C + G.channels[s]) * P + p];
        }
    }
    // Templates whose cross-products with k are not all zero: the only projections k's subtraction changes.
    T.overlapping.assign(K, {});
    for (int k = 0; k < K; ++k)
        for (int j = 0; j < K; ++j) {
            const float* cj = T.ctc.data() + (static_cast<size_t>(j) * K + k) * L;
            if (std::any_of(cj, cj + L, [](float v) { return v != 0.f; })) T.overlapping[k].push_back(j);
        }
    return T;
}

namespace {

// The hot loops, compiled for several instruction sets (chosen at load time). Each output element is
// computed in the same order whatever the vector width (no FMA contraction), so results are identical.
#define KS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// One register tile: 16 samples x PB PCs, summed over tau in vector registers (GCC vector extension:
// one zmm with AVX-512, two ymm with AVX2, four xmm otherwise; inlined into each clone).
typedef float V16 __attribute__((vector_size(64)));

template <int PB>
__attribute__((always_inline)) inline void correlate_tile(const float* w, int nt, const float* x, float* o, int64_t ld_o) {
    V16 acc[PB];
    for (int p = 0; p < PB; ++p) acc[p] = V16{};
    for (int tau = 0; tau < nt; ++tau) {
        V16 xv;
        std::memcpy(&xv, x + tau, sizeof xv);
        for (int p = 0; p < PB; ++p) acc[p] += w[static_cast<size_t>(p) * nt + tau] * xv;
    }
    for (int p = 0; p < PB; ++p) std::memcpy(o + p * ld_o, &acc[p], sizeof acc[p]);
}

// o[p * ld_o + t] = sum_tau w[p * nt + tau] * x[t + tau] for p < P, t in [0, n): the P temporal PCs
// of one channel, x loaded once per tau for up to 4 PCs and o written once; each sum runs in tau order.
KS_CLONES void correlate_rows(const float* w, int P, int nt, const float* x, int64_t n, float* o, int64_t ld_o) {
    constexpr int kT = 16;
    int64_t t0 = 0;
    for (; t0 + kT <= n; t0 += kT)
        for (int p0 = 0; p0 < P;) {
            const int pb = std::min(4, P - p0);
            const float* wp = w + static_cast<size_t>(p0) * nt;
            float* op = o + p0 * ld_o + t0;
            switch (pb) {
                case 4: correlate_tile<4>(wp, nt, x + t0, op, ld_o); break;
                case 3: correlate_tile<3>(wp, nt, x + t0, op, ld_o); break;
                case 2: correlate_tile<2>(wp, nt, x + t0, op, ld_o); break;
                default: correlate_tile<1>(wp, nt, x + t0, op, ld_o); break;
            }
            p0 += pb;
        }
    for (int p = 0; p < P; ++p)
        for (int64_t t = t0; t < n; ++t) {
            float a = 0.f;
            for (int tau = 0; tau < nt; ++tau) a += w[static_cast<size_t>(p) * nt + tau] * x[t + tau];
            o[p * ld_o + t] = a;
        }
}

// Projections of one group's templates: out[i][t] = sum_j u[i * D + j] * rows[j][t], j = (channel, PC)
// in order, for t in [0, w); tiles of 16 samples x up to 4 templates in vector registers. The same
// order and roundings as common/template_match_body.hpp's, which the GPU uses.
template <int TB>
__attribute__((always_inline)) inline void project_tile(const float* u, int D, const float* const* rows, int64_t t0,
                                                        float* const* out) {
    V16 acc[TB];
    for (int i = 0; i < TB; ++i) acc[i] = V16{};
    for (int j = 0; j < D; ++j) {
        V16 xv;
        std::memcpy(&xv, rows[j] + t0, sizeof xv);
        for (int i = 0; i < TB; ++i) acc[i] += u[static_cast<size_t>(i) * D + j] * xv;
    }
    for (int i = 0; i < TB; ++i) std::memcpy(out[i] + t0, &acc[i], sizeof acc[i]);
}

KS_CLONES void project_group(const float* u, int kg, int D, const float* const* rows, int64_t w, float* const* out) {
    constexpr int kT = 16;
    int64_t t0 = 0;
    for (; t0 + kT <= w; t0 += kT)
        for (int i0 = 0; i0 < kg;) {
            const int tb = std::min(4, kg - i0);
            const float* ui = u + static_cast<size_t>(i0) * D;
            switch (tb) {
                case 4: project_tile<4>(ui, D, rows, t0, out + i0); break;
                case 3: project_tile<3>(ui, D, rows, t0, out + i0); break;
                case 2: project_tile<2>(ui, D, rows, t0, out + i0); break;
                default: project_tile<1>(ui, D, rows, t0, out + i0); break;
            }
            i0 += tb;
        }
    for (int i = 0; i < kg; ++i)
        for (int64_t t = t0; t < w; ++t) {
            float a = 0.f;
            for (int j = 0; j < D; ++j) a += u[static_cast<size_t>(i) * D + j] * rows[j][t];
            out[i][t] = a;
        }
}

// y[i] -= s * v[i]
KS_CLONES void axpy_minus(float s, const float* v, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] -= s * v[i];
}

// Cbest[t] = max_k relu(Bk[k,t])^2 / norm2[k] over t in [t0, t1); kbest the argmax (lowest k on ties).
// One template's contribution over [t0, t1): a strictly larger value wins, so with templates offered in
// ascending order the lowest template wins ties. Branch-free, so it vectorises.
KS_CLONES void best_update(const float* row, float inv, int32_t k, int64_t t0, int64_t t1, float* cbest, int32_t* kbest) {
    for (int64_t t = t0; t < t1; ++t) {
        const float r = row[t] > 0.f ? row[t] : 0.f;
        const float v = r * r * inv;
        const bool better = v > cbest[t];
        cbest[t] = better ? v : cbest[t];
        kbest[t] = better ? k : kbest[t];
    }
}

void best_over_templates(const MatchTemplates& T, const std::vector<float>& bk, int64_t ld, int64_t t0, int64_t t1,
                         std::vector<float>& cbest, std::vector<int32_t>& kbest) {
    if (t1 <= t0) return;
    std::fill(cbest.begin() + t0, cbest.begin() + t1, 0.f);
    std::fill(kbest.begin() + t0, kbest.begin() + t1, -1);
    for (int k : T.fittable)
        best_update(bk.data() + static_cast<size_t>(k) * ld, 1.f / T.norm2[k], k, t0, t1, cbest.data(), kbest.data());
}

}  // namespace

std::vector<MatchedSpike> match_batch(const Device& dev, const MatchTemplates& T, const MatchArgs& a,
                                      std::vector<float>* features, MatchStats* stats) {
    const int C = T.C, P = T.P, nt = T.nt, K = T.K, L = 2 * nt + 1, half = nt / 2;
    const int64_t n = a.n_samples;
    KS_ASSERT(a.ld_x >= n && a.max_peels >= 1, "match_batch: arguments");
    std::vector<MatchedSpike> out;
    if (features) features->clear();
    if (stats) *stats = MatchStats{};
    if (K == 0 || n < 2 * nt + 1 || T.groups.empty()) return out;
    const int64_t s0 = nt, s1 = n - nt;   // searched centres

    // Projections Bk[k, t] = <T_k centred at t, x> for t in [s0, s1), in time tiles through the PC basis.
    // Buffers kept per thread between calls: a chunk's projections are large, and fresh pages for
    // every chunk cost more than clearing them.
    // (References, so that the OpenMP threads below share the calling thread's buffers.)
    thread_local std::vector<float> tl_bk, tl_cbest, tl_xres;
    thread_local std::vector<int32_t> tl_kbest;
    std::vector<float>& bk = tl_bk;
    std::vector<float>& cbest = tl_cbest;
    std::vector<float>& xres = tl_xres;
    std::vector<int32_t>& kbest = tl_kbest;
    bk.assign(static_cast<size_t>(K) * n, 0.f);
    std::vector<char> used(C, 0);
    for (const auto& g : T.groups)
        for (int c : g.channels) used[c] = 1;
#if KS_HAVE_CUDA
    if (dev.is_cuda()) {
        cuda::projections(T, a.x, n, a.ld_x, s0, s1, bk.data());
    } else
#endif
    {
        constexpr int64_t kTile = 2048;
        const int64_t n_tiles = (s1 - s0 + kTile - 1) / kTile;
#pragma omp parallel
        {
            std::vector<float> bpc(static_cast<size_t>(C) * P * kTile);
            std::vector<const float*> rows;
            std::vector<float*> outs;
#pragma omp for schedule(dynamic, 1)
            for (int64_t tile = 0; tile < n_tiles; ++tile) {
                const int64_t t0 = s0 + tile * kTile, w = std::min(kTile, s1 - t0);
                for (int c = 0; c < C; ++c) {
                    if (!used[c]) continue;
                    correlate_rows(T.wpca.data(), P, nt, a.x + static_cast<size_t>(c) * a.ld_x + (t0 - half), w,
                                   bpc.data() + static_cast<size_t>(c) * P * kTile, kTile);
                }
                for (const auto& g : T.groups) {
                    const int S = static_cast<int>(g.channels.size()), kg = static_cast<int>(g.templates.size());
                    rows.resize(static_cast<size_t>(S) * P);
                    for (int s = 0; s < S; ++s)
                        for (int p = 0; p < P; ++p) rows[s * P + p] = bpc.data() + (static_cast<size_t>(g.channels[s]) * P + p) * kTile;
                    outs.resize(kg);
                    for (int i = 0; i < kg; ++i) outs[i] = bk.data() + static_cast<size_t>(g.templates[i]) * n + t0;
                    project_group(g.coeffs.data(), kg, S * P, rows.data(), w, outs.data());
                }
            }
        }
    }
    (void)dev;
    cbest.assign(n, 0.f);
    kbest.assign(n, -1);
    {
        // First pass over everything, in parallel time chunks.
        const int64_t chunks = (s1 - s0 + 8191) / 8192;
#pragma omp parallel for schedule(static)
        for (int64_t ch = 0; ch < chunks; ++ch)
            best_over_templates(T, bk, n, s0 + ch * 8192, std::min(s1, s0 + (ch + 1) * 8192), cbest, kbest);
    }
    xres.resize(static_cast<size_t>(C) * n);
    for (int c = 0; c < C; ++c) std::copy_n(a.x + static_cast<size_t>(c) * a.ld_x, n, xres.data() + static_cast<size_t>(c) * n);

    const float th2 = a.Th_learned * a.Th_learned;
    struct Found {
        int64_t t;
        int32_t k;
        float amp, scale;
    };
    std::vector<Found> found;
    std::vector<std::pair<int64_t, int64_t>> cand = {{s0, s1}};   // sample ranges to examine this pass
    std::vector<int64_t> det;
    int pass = 0;
    for (; pass < a.max_peels && !cand.empty(); ++pass) {
        det.clear();
        for (const auto& [c0, c1] : cand)
            for (int64_t t = c0; t < c1; ++t) {
                const float v = cbest[t];
                if (!(v > th2)) continue;
                // A local maximum over t ± nt among all templates; the earliest sample wins ties, so
                // two detections of one pass are more than nt apart and their updates never interact.
                bool is_max = true;
                for (int64_t u = std::max(s0, t - nt); u <= std::min(s1 - 1, t + nt) && is_max; ++u)
                    if (cbest[u] > v || (u < t && cbest[u] == v)) is_max = false;
                if (is_max) det.push_back(t);
            }
        if (det.empty()) break;
        std::vector<std::pair<int64_t, int64_t>> next;
        for (int64_t t : det) {
            const int k = kbest[t];
            const float b = bk[static_cast<size_t>(k) * n + t];
            const float scale = b / T.norm2[k];
            found.push_back({t, k, b / std::sqrt(T.norm2[k]), scale});
            // Residual: subtract scale * T_k centred at t.
            const float* wk = T.wave.data() + static_cast<size_t>(k) * C * nt;
            for (int c : T.groups[T.group_of[k]].channels)
                axpy_minus(scale, wk + static_cast<size_t>(c) * nt, xres.data() + static_cast<size_t>(c) * n + (t - half), nt);
            // Projections: Bk[j, t + l] -= scale * ctc[j, k, l], for the templates sharing a channel with k.
            const int64_t u0 = t - nt;   // >= 0 and u0 + L <= n since t in [nt, n - nt)
            for (int j : T.overlapping[k])
                axpy_minus(scale, T.ctc.data() + (static_cast<size_t>(j) * K + k) * L, bk.data() + static_cast<size_t>(j) * n + u0, L);
            best_over_templates(T, bk, n, std::max(s0, t - nt), std::min(s1, t + nt + 1), cbest, kbest);
            const int64_t r0 = std::max(s0, t - 2 * nt), r1 = std::min(s1, t + 2 * nt + 1);
            if (!next.empty() && r0 <= next.back().second)
                next.back().second = std::max(next.back().second, r1);
            else
                next.emplace_back(r0, r1);
        }
        cand.swap(next);
    }

    std::sort(found.begin(), found.end(), [](const Found& x, const Found& y) { return x.t != y.t ? x.t < y.t : x.k < y.k; });
    if (stats) {
        stats->passes = pass;
        stats->n_found = static_cast<int64_t>(found.size());
    }
    const int nC = T.nC;
    for (const Found& f : found) {
        const int64_t trough = f.t - half + a.nt0min;
        if (trough < a.report_lo || trough >= a.report_hi) continue;
        out.push_back({trough, f.k, f.amp, f.scale});
    }
    if (features) {
        features->assign(out.size() * nC * P, 0.f);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) {
            const MatchedSpike& s = out[i];
            const int64_t t = s.t_trough - a.nt0min + half;
            for (int j = 0; j < nC; ++j) {
                const int c = T.chans[static_cast<size_t>(s.k) * nC + j];
                if (c < 0) continue;
                const float* xr = xres.data() + static_cast<size_t>(c) * n + (t - half);
                for (int p = 0; p < P; ++p) {
                    const float* wp = T.wpca.data() + static_cast<size_t>(p) * nt;
                    double acc = 0;
                    for (int tau = 0; tau < nt; ++tau) acc += static_cast<double>(wp[tau]) * xr[tau];
                    (*features)[(static_cast<size_t>(i) * nC + j) * P + p] =
                        static_cast<float>(acc) + s.scale * T.U[(static_cast<size_t>(s.k) * C + c) * P + p];
                }
            }
        }
    }
    return out;
}

}  // namespace ks::match
