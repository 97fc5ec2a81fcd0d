#pragma once
// Single IEEE operations, rounded to nearest, for arithmetic shared by the CPU and CUDA backends:
// device code uses the explicit _rn intrinsics (no fused multiply-add), host code is built with
// -ffp-contract=off, so both give the same bits.
#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

KS_HD inline float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
KS_HD inline float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
KS_HD inline float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

KS_HD inline double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
KS_HD inline double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
KS_HD inline double dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}

// acc + a*b with the product and the sum each rounded (never a fused multiply-add).
KS_HD inline float mac(float acc, float a, float b) { return fadd(acc, fmul(a, b)); }
KS_HD inline double mac(double acc, double a, double b) { return dadd(acc, dmul(a, b)); }

}  // namespace ks::kernels::body
