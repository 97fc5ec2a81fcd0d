#pragma once
#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

// (x - offset) * scale + shift, negated when asked. Written as separate roundings (no fma)
// so CPU and GPU give the same bits.
KS_HD inline float convert_sample(float x, float offset, float scale, float shift, bool invert) {
#if defined(__CUDA_ARCH__)
    const float y = __fadd_rn(__fmul_rn(__fsub_rn(x, offset), scale), shift);
#else
    const float y = (x - offset) * scale + shift;  // host code is built with -ffp-contract=off
#endif
    return invert ? -y : y;
}

}  // namespace ks::kernels::body
