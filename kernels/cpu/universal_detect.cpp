// Universal-template detection on the CPU (§4.4, §4.5). Time is cut into fixed chunks (not
// depending on the thread count); per chunk, every channel is filtered with every wTEMP row (B),
// then every centre's envelopes are applied (A) and the best |A| kept (As). Every value is one fixed
// sequence of float multiply-adds (common/universal_detect_body.hpp), vectorised along time, so
// results are the same for any number of threads and any chunk position. The local-max test then
// runs on the few (f, t) above threshold.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/universal_detect_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels::cpu {
namespace {

constexpr int64_t kChunk = 512;  // samples per job: B for a chunk of NP1 (384 x 6 x 512) is 4.7 MB

// B[k, tt] for one channel over [t0, t0 + len): sum over tau ascending of w[k, tau] * x[t0 + tt + tau - h],
// x taken as 0 outside [0, n). `pad` is scratch of len + nt - 1 floats, out is nk x len.
void filter_channel(const float* xrow, int64_t n, int64_t t0, int64_t len, const float* w, int nk, int nt, float* pad,
                    float* out) {
    const int h = nt / 2;
    for (int64_t j = 0; j < len + nt - 1; ++j) {
        const int64_t t = t0 - h + j;
        pad[j] = (t >= 0 && t < n) ? xrow[t] : 0.f;
    }
    for (int k = 0; k < nk; ++k) {
        float* o = out + k * len;
        std::fill(o, o + len, 0.f);
        for (int tau = 0; tau < nt; ++tau) {
            const float wk = w[k * nt + tau];
            const float* p = pad + tau;
            for (int64_t tt = 0; tt < len; ++tt) o[tt] = body::universal_mac(o[tt], wk, p[tt]);
        }
    }
}

}  // namespace

std::vector<UniversalSpike> detect_universal(const UniversalDetectArgs& a) {
    KS_ASSERT(a.x && a.grid && a.wtemp && a.n_chan >= 1 && a.n_samples >= 0 && a.ld_x >= a.n_samples && a.nk >= 1 &&
                  a.nt >= 3 && a.nt % 2 == 1 && a.nt0min >= 0 && a.nt0min < a.nt &&
                  a.context >= a.nt0min + a.nt / 2 && 2 * a.context <= a.n_samples,
              "detect_universal: bad arguments");
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, nC = g.n_chan_near, S = g.n_sizes, nk = a.nk, nt = a.nt;
    for (int v : g.iC) KS_ASSERT(v < a.n_chan, "detect_universal: grid channel outside the block");
    const int64_t n = a.n_samples;
    if (n == 0 || F == 0) return {};

    std::vector<float> as(static_cast<size_t>(F) * n);
    const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel
    {
        std::vector<float> B(static_cast<size_t>(a.n_chan) * nk * kChunk), pad(kChunk + nt), acc(kChunk), best(kChunk);
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < n_chunks; ++ch) {
            const int64_t t0 = ch * kChunk, len = std::min(kChunk, n - t0);
            for (int c = 0; c < a.n_chan; ++c)
                filter_channel(a.x + c * a.ld_x, n, t0, len, a.wtemp, nk, nt, pad.data(), B.data() + static_cast<size_t>(c) * nk * len);
            for (int f = 0; f < F; ++f) {
                std::fill(best.begin(), best.begin() + len, 0.f);
                const int* ic = g.iC.data() + static_cast<size_t>(f) * nC;
                for (int s = 0; s < S; ++s) {
                    const float* gw = g.g.data() + (static_cast<size_t>(s) * F + f) * nC;
                    for (int k = 0; k < nk; ++k) {
                        std::fill(acc.begin(), acc.begin() + len, 0.f);
                        for (int i = 0; i < nC; ++i) {
                            if (ic[i] < 0) continue;
                            const float w = gw[i];
                            const float* b = B.data() + (static_cast<size_t>(ic[i]) * nk + k) * len;
                            for (int64_t tt = 0; tt < len; ++tt) acc[tt] = body::universal_mac(acc[tt], w, b[tt]);
                        }
                        for (int64_t tt = 0; tt < len; ++tt) best[tt] = body::universal_max(best[tt], std::fabs(acc[tt]));
                    }
                }
                std::copy(best.begin(), best.begin() + len, as.begin() + static_cast<size_t>(f) * n + t0);
            }
        }
    }

    return universal_finish(a, as.data(), nullptr);
}

std::vector<UniversalSpike> universal_finish(const UniversalDetectArgs& a, const float* as, const uint8_t* is_max) {
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, nC = g.n_chan_near, S = g.n_sizes, nk = a.nk, nt = a.nt;
    const int64_t n = a.n_samples;
    std::vector<std::vector<UniversalSpike>> per_f(F);
#pragma omp parallel for schedule(dynamic, 4)
    for (int f = 0; f < F; ++f) {
        const int* ic = g.iC.data() + static_cast<size_t>(f) * nC;
        const int* ic2 = g.iC2.data() + static_cast<size_t>(f) * g.n_near;
        for (int64_t t = a.context; t < n - a.context; ++t) {
            if (is_max ? !is_max[static_cast<size_t>(f) * n + t]
                       : !body::universal_is_local_max(as, n, ic2, g.n_near, f, t, a.nt0min, a.Th_universal))
                continue;
            // Recompute the winning (s, k) and its sign with the same arithmetic as above.
            std::vector<float> b(static_cast<size_t>(nk) * nC, 0.f);
            for (int i = 0; i < nC; ++i)
                if (ic[i] >= 0)
                    for (int k = 0; k < nk; ++k) b[k * nC + i] = body::universal_filter_at(a.x + ic[i] * a.ld_x, n, t, a.wtemp + k * nt, nt);
            float bestv = -1.f;
            int code = 0, sign = 1;
            for (int s = 0; s < S; ++s) {
                const float* gw = g.g.data() + (static_cast<size_t>(s) * F + f) * nC;
                for (int k = 0; k < nk; ++k) {
                    float v = 0.f;
                    for (int i = 0; i < nC; ++i)
                        if (ic[i] >= 0) v = body::universal_mac(v, gw[i], b[k * nC + i]);
                    if (std::fabs(v) > bestv) {
                        bestv = std::fabs(v);
                        code = s * nk + k;
                        sign = v < 0 ? -1 : 1;
                    }
                }
            }
            const int kb = code % nk;
            double wsum = 0, ysum = 0;
            for (int i = 0; i < nC; ++i) {
                if (ic[i] < 0) continue;
                const double w = std::max(0.0, static_cast<double>(sign) * b[kb * nC + i]);
                wsum += w;
                ysum += w * g.ch_y_um[ic[i]];
            }
            UniversalSpike sp;
            sp.t_center = t;
            sp.t_trough = t - nt / 2 + a.nt0min;
            sp.pos = f;
            sp.size_template = code;
            sp.sign = sign;
            sp.amp = as[static_cast<size_t>(f) * n + t];
            sp.x_um = g.x_um[f];
            sp.y_um = g.y_um[f];
            sp.y_weighted_um = wsum > 0 ? ysum / wsum : g.y_um[f];
            per_f[f].push_back(sp);
        }
    }
    std::vector<UniversalSpike> out;
    for (auto& v : per_f) out.insert(out.end(), v.begin(), v.end());
    std::sort(out.begin(), out.end(), [](const UniversalSpike& p, const UniversalSpike& q) {
        return p.t_center != q.t_center ? p.t_center < q.t_center : p.pos < q.pos;
    });
    return out;
}

}  // namespace ks::kernels::cpu
