#pragma once
// Arithmetic of universal-template detection shared by the CPU and CUDA backends (KS_HD).
#include <cstdint>

#include "ks/kernels/hd.hpp"
#include "rounding.hpp"  // same folder

namespace ks::kernels::body {

KS_HD inline float universal_mac(float acc, float w, float x) { return mac(acc, w, x); }

// max(best, v) spelled as std::max does it, so both backends keep the same value.
KS_HD inline float universal_max(float best, float v) { return best < v ? v : best; }

// §4.4 B[c, k, t]: sum over tau ascending of w[tau] * x[t + tau - nt/2], x = 0 outside [0, n).
KS_HD inline float universal_filter_at(const float* xrow, int64_t n, int64_t t, const float* wk, int nt) {
    const int h = nt / 2;
    float acc = 0.f;
    for (int tau = 0; tau < nt; ++tau) {
        const int64_t u = t - h + tau;
        acc = universal_mac(acc, wk[tau], (u >= 0 && u < n) ? xrow[u] : 0.f);
    }
    return acc;
}

// §4.5: (f, t) is a detection when as[f, t] > th and no centre among iC2[f] (its n_near nearest,
// itself included) has a larger statistic within +-nt0min samples. `as` is F x n, row stride n.
// The whole block's statistic is compared (context included); the caller restricts t to the centre.
KS_HD inline bool universal_is_local_max(const float* as, int64_t n, const int* ic2_row, int n_near, int f, int64_t t,
                                         int nt0min, float th) {
    const float v = as[f * n + t];
    if (!(v > th)) return false;
    const int64_t lo = t - nt0min < 0 ? 0 : t - nt0min;
    const int64_t hi = t + nt0min >= n ? n - 1 : t + nt0min;
    for (int j = 0; j < n_near; ++j) {
        const int g = ic2_row[j];
        if (g < 0) continue;
        const float* row = as + g * n;
        for (int64_t u = lo; u <= hi; ++u)
            if (row[u] > v) return false;
    }
    return true;
}

}  // namespace ks::kernels::body
