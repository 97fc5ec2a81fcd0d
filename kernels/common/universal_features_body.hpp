#pragma once
// Arithmetic of the per-spike PC features, shared by the CPU and CUDA backends (KS_HD).
#include <cstdint>

#include "ks/kernels/hd.hpp"
#include "rounding.hpp"  // same folder

namespace ks::kernels::body {

// One feature: sum over tau ascending of w[tau] * xrow[t - nt/2 + tau], x = 0 outside [0, n).
KS_HD inline float feature_at(const float* xrow, int64_t n, int64_t t, const float* w, int nt) {
    float acc = 0.f;
    for (int tau = 0; tau < nt; ++tau) {
        const int64_t u = t - nt / 2 + tau;
        acc = mac(acc, w[tau], (u >= 0 && u < n) ? xrow[u] : 0.f);
    }
    return acc;
}

}  // namespace ks::kernels::body
