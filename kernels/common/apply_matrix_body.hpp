#pragma once
// The arithmetic of out = W x, shared by the CPU and CUDA backends so both give the same bits:
// each output sample starts at +0 and adds w[i,k] * x[k] for the nonzero w[i,k] in increasing k,
// the product and the sum each rounded to float (no fused multiply-add).
#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

KS_HD inline float apply_mac(float acc, float w, float x) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(acc, __fmul_rn(w, x));
#else
    return acc + w * x;  // host code is built with -ffp-contract=off
#endif
}

}  // namespace ks::kernels::body
