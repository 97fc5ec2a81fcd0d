#pragma once
#include "rounding.hpp"  // same folder
#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

// (x - offset) * scale + shift, negated when asked. Written as separate roundings (no fma)
// so CPU and GPU give the same bits.
KS_HD inline float convert_sample(float x, float offset, float scale, float shift, bool invert) {
    const float y = fadd(fmul(fsub(x, offset), scale), shift);
    return invert ? -y : y;
}

}  // namespace ks::kernels::body
