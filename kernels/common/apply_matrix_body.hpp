#pragma once
// The arithmetic of out = W x, shared by the CPU and CUDA backends so both give the same bits:
// each output sample starts at +0 and adds w[i,k] * x[k] for the nonzero w[i,k] in increasing k,
// the product and the sum each rounded to float (no fused multiply-add).
#include "ks/kernels/hd.hpp"
#include "rounding.hpp"  // same folder

namespace ks::kernels::body {

KS_HD inline float apply_mac(float acc, float w, float x) { return mac(acc, w, x); }

}  // namespace ks::kernels::body
