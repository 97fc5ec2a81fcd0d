// ks-filter kernels: the Butterworth design and the backend dispatch.
#include "ks/kernels/filter.hpp"

#include <algorithm>
#include <cmath>
#include <complex>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks::kernels {
namespace {

using cplx = std::complex<double>;

// numpy.poly for three roots: coefficients of (z - r0)(z - r1)(z - r2), highest power first.
void poly3(const cplx r[3], cplx out[4]) {
    out[0] = 1;
    out[1] = out[2] = out[3] = 0;
    for (int i = 0; i < 3; ++i) {  // multiply by (z - r[i]), as numpy convolves
        for (int j = i + 1; j >= 1; --j) out[j] = out[j] - r[i] * out[j - 1];
    }
}

}  // namespace

HighpassDesign design_highpass(double fs_hz, double cutoff_hz) {
    if (!(fs_hz > 0) || !std::isfinite(fs_hz))
        throw Error(Exit::usage, log::format("setting fs: %g Hz; expected a positive sampling rate", fs_hz));
    if (!(cutoff_hz > 0) || !(cutoff_hz < fs_hz / 2))
        throw Error(Exit::usage, log::format("setting highpass_cutoff: %g Hz is out of range; expected above 0 and "
                                             "below fs/2 = %g Hz",
                                             cutoff_hz, fs_hz / 2));
    if (cutoff_hz < fs_hz * 1e-5)
        throw Error(Exit::usage, log::format("setting highpass_cutoff: %g Hz is too low for fs = %g Hz; expected at "
                                             "least fs * 1e-5 = %g Hz (the zero-phase filter's context would exceed "
                                             "10^6 samples)",
                                             cutoff_hz, fs_hz, fs_hz * 1e-5));
    HighpassDesign d;
    d.fs_hz = fs_hz;
    d.cutoff_hz = cutoff_hz;
    constexpr int kOrder = 3;
    const double pi = 3.14159265358979323846;

    // Analogue Butterworth prototype (scipy's buttap): poles -exp(i*pi*m/(2N)), m = -N+1, -N+3, ...
    cplx p[kOrder];
    for (int i = 0; i < kOrder; ++i) {
        const int m = -kOrder + 1 + 2 * i;
        p[i] = -std::exp(cplx(0, pi * m / (2.0 * kOrder)));
    }
    // Pre-warp on scipy's normalised scale (fs = 2, Wn = 2 * cutoff / fs).
    const double wn = 2 * cutoff_hz / fs_hz;
    const double warped = 2 * 2.0 * std::tan(pi * wn / 2.0);
    // Low-pass to high-pass: poles wo / p, N zeros at s = 0, gain real(1 / prod(-p)).
    cplx prod_neg_p = 1;
    for (const cplx& q : p) prod_neg_p *= -q;
    double k = std::real(1.0 / prod_neg_p);
    cplx php[kOrder];
    for (int i = 0; i < kOrder; ++i) php[i] = warped / p[i];
    // Bilinear transform with fs = 2 (2 * fs = 4): z = (4 + s) / (4 - s); zeros s = 0 -> z = 1.
    cplx pz[kOrder], prod_4_minus_p = 1;
    for (int i = 0; i < kOrder; ++i) {
        pz[i] = (4.0 + php[i]) / (4.0 - php[i]);
        prod_4_minus_p *= 4.0 - php[i];
    }
    k = k * std::real(64.0 / prod_4_minus_p);  // prod(4 - z) = 4^3 for the three zeros at 0

    const cplx zz[kOrder] = {1.0, 1.0, 1.0};
    cplx bc[4], ac[4];
    poly3(zz, bc);
    poly3(pz, ac);
    for (int i = 0; i < 4; ++i) {
        d.b[i] = k * bc[i].real();
        d.a[i] = ac[i].real();
    }

    // Cascade: the pole with the largest imaginary part and its conjugate, then the real pole.
    int ic = 0, ir = 0;
    for (int i = 0; i < kOrder; ++i) {
        if (pz[i].imag() > pz[ic].imag()) ic = i;
        if (std::abs(pz[i].imag()) < std::abs(pz[ir].imag())) ir = i;
    }
    for (const cplx& q : pz) d.pole_radius = std::max(d.pole_radius, std::abs(q));
    const double re = pz[ic].real(), r2 = std::norm(pz[ic]);
    const double sec0[5] = {k, -2 * k, k, -2 * re, r2};
    const double sec1[5] = {1, -1, 0, -pz[ir].real(), 0};
    for (int i = 0; i < 5; ++i) {
        d.sections[0][i] = sec0[i];
        d.sections[1][i] = sec1[i];
    }
    KS_ASSERT(d.pole_radius > 0 && d.pole_radius < 1, "Butterworth design gave an unstable filter");
    d.context = static_cast<int64_t>(std::ceil(std::log(1e-8) / std::log(d.pole_radius)));
    const int64_t four_l = ((4 * d.context + 1023) / 1024) * 1024;
    d.block = std::max<int64_t>(8192, four_l);
    return d;
}

Reference parse_reference(const std::string& name) {
    if (name == "median") return Reference::median;
    if (name == "mean") return Reference::mean;
    if (name == "none") return Reference::none;
    throw Error(Exit::usage, "setting common_reference: '" + name + "'; expected median, mean or none");
}

const char* reference_name(Reference r) {
    switch (r) {
        case Reference::median: return "median";
        case Reference::mean: return "mean";
        default: return "none";
    }
}

SampleRange raw_range(const HighpassDesign& hp, int64_t t0, int64_t t1, int64_t n_samples) {
    KS_ASSERT(t0 >= 0 && t0 < t1 && t1 <= n_samples, "raw_range: empty or out-of-range output");
    const int64_t k0 = t0 / hp.block, k1 = (t1 - 1) / hp.block;
    SampleRange r;
    r.begin = k0 * hp.block - hp.context;
    r.end = std::min((k1 + 1) * hp.block, n_samples) + hp.context;
    return r;
}

void highpass(const Device& dev, const FilterArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::highpass(a);
#else
    (void)dev;
#endif
    cpu::highpass(a);
}

void common_reference(const Device& dev, const ReferenceArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::common_reference(a);
#else
    (void)dev;
#endif
    cpu::common_reference(a);
}

void filter_samples(const Device& dev, const FilterArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::filter_samples(a);
#else
    (void)dev;
#endif
    cpu::highpass(a);
    ReferenceArgs r;
    r.x = a.out;
    r.n_samples = a.t1 - a.t0;
    r.n_chan = a.n_chan;
    r.reference = a.reference;
    r.groups = a.groups;
    cpu::common_reference(r);
}

}  // namespace ks::kernels
