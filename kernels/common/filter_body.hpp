#pragma once
// Arithmetic of ks-filter shared by the CPU and CUDA backends. Every floating-point step is a
// separate IEEE operation (no fused multiply-add: host code is built with -ffp-contract=off and
// device code uses the explicit _rn intrinsics), so both backends give the same bits.
#include <cstdint>
#include <cstring>

#include "rounding.hpp"  // same folder
#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

// The recursion runs in double: with poles at radius 0.97 (300 Hz / 30 kHz) float32 states lose
// about 4e-5 of the signal RMS to round-off, more than float16 storage rounding near zero; in
// double the filter adds nothing measurable (formats/filtered.md "Accuracy"). Samples stay float
// between the passes.
//
// One step of a transposed-direct-form-II biquad c = {b0, b1, b2, a1, a2}. s1 is updated as
// (b1*u + s2) - a1*y so that only one multiply and one subtract follow y on the loop-carried
// path (the CPU loop runs many channels side by side and is latency-bound otherwise).
KS_HD inline double biquad_step(const double* c, double u, double& s1, double& s2) {
    const double y = dadd(dmul(c[0], u), s1);
    s1 = dsub(dadd(dmul(c[1], u), s2), dmul(c[3], y));
    s2 = dsub(dmul(c[2], u), dmul(c[4], y));
    return y;
}

// First-order section c = {b0, b1, -, a1, -}.
KS_HD inline double first_order_step(const double* c, double u, double& s1) {
    const double y = dadd(dmul(c[0], u), s1);
    s1 = dsub(dmul(c[1], u), dmul(c[3], y));
    return y;
}

// The high-pass cascade (HighpassDesign::sections, flattened: sec[0..4] biquad, sec[5..9]
// first order). st holds 3 states, zero at the start of a pass. The caller subtracts the pass's
// first input sample from every input: for a filter with zero gain at DC this is exactly
// scipy's lfilter_zi(b, a) * x[0] start (steady state for a constant signal), and it keeps large
// offsets (DC, slow field potentials) out of the recursion.
KS_HD inline double highpass_step(const double* sec, double u, double* st) {
    const double y = biquad_step(sec, u, st[0], st[1]);
    return first_order_step(sec + 5, y, st[2]);
}

// The input of a pass: sample minus the pass's first sample, in double (exact for float inputs
// of similar size).
KS_HD inline double pass_input(float x, float first) {
    return dsub(static_cast<double>(x), static_cast<double>(first));
}

// Float -> int32 key with the same order (negative values: magnitude bits flipped). -0 sorts
// just below +0; NaN never reaches here (the stage rejects non-finite input).
KS_HD inline int32_t order_key(float f) {
#if defined(__CUDA_ARCH__)
    const int32_t b = __float_as_int(f);
#else
    int32_t b;
    std::memcpy(&b, &f, sizeof b);
#endif
    return b ^ ((b >> 31) & 0x7fffffff);
}

KS_HD inline float key_value(int32_t k) {
    const int32_t b = k ^ ((k >> 31) & 0x7fffffff);
#if defined(__CUDA_ARCH__)
    return __int_as_float(b);
#else
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
#endif
}

// The rank PyTorch's median takes: the middle value for odd n, the lower of the two middle
// values for even n (Kilosort4's torch.median across channels).
KS_HD inline int lower_median_rank(int n) { return (n - 1) / 2; }

// The k-th smallest (0-based) of n keys, found by bisection on the key bits from the top:
// count_below(c) returns how many keys are < c, min_at_least(c) the smallest key >= c. Exact for
// any input (ties, equal values); stops early once the bracket holds a single key, which for
// noise-like data takes about 13 counting passes over 384 channels.
template <class CountBelow, class MinAtLeast>
KS_HD inline int32_t select_key(int n, int k, CountBelow count_below, MinAtLeast min_at_least) {
    // Work in the unsigned offset domain u = key + 2^31, so bit bisection walks keys in order.
    uint32_t lo = 0;
    int n_lo = 0, n_hi = n;  // keys below lo; keys below the bracket's top
    for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = lo | (1u << bit);
        const int c = count_below(static_cast<int32_t>(cand ^ 0x80000000u));
        if (c <= k) {
            lo = cand;
            n_lo = c;
        } else {
            n_hi = c;
        }
        if (n_hi - n_lo == 1) return min_at_least(static_cast<int32_t>(lo ^ 0x80000000u));
    }
    return static_cast<int32_t>(lo ^ 0x80000000u);
}

// Mean of x[channels[0..n)] with eight double partial sums in a fixed order (partial j takes
// channels j, j+8, ...), so a SIMD CPU loop and a GPU thread add in the same order.
KS_HD inline float group_mean(const float* x, const int* channels, int n) {
    double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) p[j] += static_cast<double>(x[channels[i + j]]);
    for (int j = 0; i + j < n; ++j) p[j] += static_cast<double>(x[channels[i + j]]);
    const double s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    return static_cast<float>(s / static_cast<double>(n));
}

}  // namespace ks::kernels::body
