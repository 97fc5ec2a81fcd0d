#pragma once
// Arithmetic of template matching's projections, shared by the CPU and CUDA backends (KS_HD): each
// value is a sum in a fixed order of separately rounded products, so both backends give the same bits
// (the CPU computes the same sums 16 samples at a time in vector registers, template_match.cpp).
#include <cstdint>

#include "ks/kernels/hd.hpp"
#include "rounding.hpp"  // same folder

namespace ks::kernels::body {

// One temporal-PC coefficient: sum over tau ascending of w[tau] * x[tau].
KS_HD inline float pc_project(const float* w, int nt, const float* x) {
    float a = 0.f;
    for (int tau = 0; tau < nt; ++tau) a = fadd(a, fmul(w[tau], x[tau]));
    return a;
}

// One template projection: sum over j ascending of u[j] * rows[row[j] * ld + t] (j = channel x PC of the
// template's group).
KS_HD inline float template_project(const float* u, int D, const int* row, const float* rows, int64_t ld, int64_t t) {
    float a = 0.f;
    for (int j = 0; j < D; ++j) a = fadd(a, fmul(u[j], rows[static_cast<int64_t>(row[j]) * ld + t]));
    return a;
}

}  // namespace ks::kernels::body
