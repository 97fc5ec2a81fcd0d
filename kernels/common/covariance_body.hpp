#pragma once
// The summation order of the covariance sums, shared by the CPU and CUDA backends so both give
// the same bits: entry (i, j) of X Xᵀ over samples t = 0..n-1 is kept in kCovLanes partial sums,
// lane l taking the samples t = l (mod kCovLanes) in increasing t, each starting from +0; the
// lanes are then added as (l0 + l1) + (l2 + l3). Products of two floats are exact in double, so
// every rounding is an addition in this fixed order. Padding with zero samples changes nothing.
#include "ks/kernels/hd.hpp"
#include "rounding.hpp"  // same folder

namespace ks::kernels::body {

constexpr int kCovLanes = 4;

// acc + a*b in double, each step rounded on its own (no fused multiply-add on either side).
KS_HD inline double cov_mac(double acc, double a, double b) { return mac(acc, a, b); }

KS_HD inline double cov_lane_total(const double* lane) {
    return dadd(dadd(lane[0], lane[1]), dadd(lane[2], lane[3]));
}

}  // namespace ks::kernels::body
