// ks-filter's kernels and the filtered-recording reader: the Butterworth design against scipy,
// the zero-phase high-pass against a naive double-precision filtfilt written here, the common
// reference against sorting, batch-split invariance, float16 conversion, CUDA against CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "../../../kernels/common/filter_body.hpp"  // the shared bodies (not a public header)
#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/kernels/filter.hpp"

namespace {

using ks::kernels::FilterArgs;
using ks::kernels::HighpassDesign;
using ks::kernels::Reference;

// scipy 1.10.1: b, a = scipy.signal.butter(3, fc, 'highpass', fs=fs); r = max |pole| of the
// zpk form; context = ceil(log(1e-8) / log(r)).
struct ScipyCase {
    double fs, fc, b[4], a[4], r;
    int64_t context;
};
const ScipyCase kScipy[] = {
    {30000.0, 300.0, {0.9390916523119581, -2.8172749569358744, 2.8172749569358744, -0.9390916523119581},
     {1.0, -2.874356892677484, 2.7564831952256954, -0.8818931305924855}, 0.9690824520165578, 587},
    {30000.0, 150.0, {0.969071174031813, -2.907213522095439, 2.907213522095439, -0.969071174031813},
     {1.0, -2.9371707284498907, 2.8762997234793315, -0.939098940325283}, 0.9844160354595171, 1173},
    {20000.0, 300.0, {0.9100254306861612, -2.7300762920584836, 2.7300762920584836, -0.9100254306861612},
     {1.0, -2.811573677324689, 2.6404834927783396, -0.8281462753862606}, 0.9540025540817932, 392},
    {25000.0, 1000.0, {0.7772465214002012, -2.331739564200604, 2.331739564200604, -0.7772465214002012},
     {1.0, -2.4986083446911773, 2.1152541270031584, -0.6041096995072747}, 0.8825041256281975, 148},
    {30000.0, 5.0, {0.9989533505210132, -2.9968600515630395, 2.9968600515630395, -0.9989533505210132},
     {1.0, -2.997905604993305, 2.995813402657642, -0.9979077965171582}, 0.9994765383261434, 35181},
};

// Naive zero-phase filter in double, independent of the kernel's cascade: direct form I with
// scipy's b, a, started in the steady state of a constant first sample (past inputs = x[0],
// past outputs = 0, the DC gain being 0), on the signal padded with `pad` edge copies each side.
std::vector<double> naive_filtfilt(const ScipyCase& s, const std::vector<double>& x, int64_t pad) {
    const int64_t n = static_cast<int64_t>(x.size());
    std::vector<double> v(static_cast<size_t>(n + 2 * pad));
    for (int64_t i = 0; i < n + 2 * pad; ++i) v[static_cast<size_t>(i)] = x[static_cast<size_t>(std::clamp<int64_t>(i - pad, 0, n - 1))];
    auto run = [&s](std::vector<double>& u) {
        double xp[3] = {u[0], u[0], u[0]}, yp[3] = {0, 0, 0};
        for (double& ui : u) {
            const double in = ui;
            const double y = s.b[0] * in + s.b[1] * xp[0] + s.b[2] * xp[1] + s.b[3] * xp[2] - s.a[1] * yp[0] -
                             s.a[2] * yp[1] - s.a[3] * yp[2];
            xp[2] = xp[1], xp[1] = xp[0], xp[0] = in;
            yp[2] = yp[1], yp[1] = yp[0], yp[0] = y;
            ui = y;
        }
    };
    run(v);
    std::reverse(v.begin(), v.end());
    run(v);
    std::reverse(v.begin(), v.end());
    return std::vector<double>(v.begin() + pad, v.begin() + pad + n);
}

// A C-channel float32 recording (time-major), n samples: noise, DC offsets, slow waves, spikes.
std::vector<float> test_signal(int C, int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> noise(0, 10);
    std::vector<float> x(static_cast<size_t>(n * C));
    for (int c = 0; c < C; ++c) {
        const double dc = 500.0 * (c % 5) - 1000.0, f = 3.0 + c;
        for (int64_t t = 0; t < n; ++t) {
            double v = noise(rng) + dc + 200.0 * std::sin(2 * M_PI * f * t / 30000.0);
            if (t % 7919 == 100 + c) v -= 300;
            x[static_cast<size_t>(t * C + c)] = static_cast<float>(v);
        }
    }
    return x;
}

// Raw float32 samples [begin, end) of the range [0, n) with edge copies, as the stage fetches them.
std::vector<float> padded_raw(const std::vector<float>& x, int C, int64_t n, ks::kernels::SampleRange r) {
    std::vector<float> raw(static_cast<size_t>((r.end - r.begin) * C));
    for (int64_t t = r.begin; t < r.end; ++t) {
        const int64_t s = std::clamp<int64_t>(t, 0, n - 1);
        std::copy_n(&x[static_cast<size_t>(s * C)], C, &raw[static_cast<size_t>((t - r.begin) * C)]);
    }
    return raw;
}

// Runs the kernel over [t0, t1) of a float32 recording x (n x C).
std::vector<float> run_filter(const ks::Device& dev, const HighpassDesign& hp, const std::vector<float>& x, int C,
                              int64_t n, int64_t t0, int64_t t1, Reference ref, const std::vector<int>& offsets,
                              const std::vector<int>& channels, bool reference_step = true) {
    const auto r = ks::kernels::raw_range(hp, t0, t1, n);
    const std::vector<float> raw = padded_raw(x, C, n, r);
    std::vector<int> rows(static_cast<size_t>(C));
    for (int c = 0; c < C; ++c) rows[static_cast<size_t>(c)] = c;
    std::vector<float> out(static_cast<size_t>((t1 - t0) * C), -12345.f);
    FilterArgs a;
    a.dtype = ks::Dtype::float32;
    a.raw = raw.data();
    a.raw_t0 = r.begin;
    a.raw_n = r.end - r.begin;
    a.row_stride = C;
    a.rows = rows.data();
    a.n_chan = C;
    a.hp = &hp;
    a.n_samples = n;
    a.t0 = t0;
    a.t1 = t1;
    a.reference = ref;
    a.groups.offsets = offsets.data();
    a.groups.channels = channels.data();
    a.groups.n_groups = static_cast<int>(offsets.size()) - 1;
    a.out = out.data();
    if (reference_step) ks::kernels::filter_samples(dev, a);
    else ks::kernels::highpass(dev, a);
    return out;
}

double rms(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s / std::max<size_t>(1, v.size()));
}

TEST(FilterDesign, MatchesScipyButter) {
    for (const auto& s : kScipy) {
        const HighpassDesign d = ks::kernels::design_highpass(s.fs, s.fc);
        for (int i = 0; i < 4; ++i) {
            EXPECT_NEAR(d.b[i], s.b[i], 1e-12 * std::fabs(s.b[i])) << "fs " << s.fs << " fc " << s.fc << " b" << i;
            EXPECT_NEAR(d.a[i], s.a[i], 1e-12 * std::max(1.0, std::fabs(s.a[i]))) << "fs " << s.fs << " fc " << s.fc << " a" << i;
        }
        EXPECT_NEAR(d.pole_radius, s.r, 1e-13) << s.fc;
        EXPECT_EQ(d.context, s.context) << s.fc;
        EXPECT_GE(d.block, 4 * d.context);
        EXPECT_EQ(d.block % 1024, 0);
        // The cascade multiplies out to the same transfer function.
        const double* p = d.sections[0];
        const double* q = d.sections[1];
        const double bb[4] = {p[0] * q[0], p[0] * q[1] + p[1] * q[0], p[1] * q[1] + p[2] * q[0], p[2] * q[1]};
        const double aa[4] = {1, p[3] + q[3], p[4] + p[3] * q[3], p[4] * q[3]};
        for (int i = 0; i < 4; ++i) {
            EXPECT_NEAR(bb[i], s.b[i], 1e-12) << i;
            EXPECT_NEAR(aa[i], s.a[i], 1e-12) << i;
        }
    }
}

TEST(FilterDesign, RejectsCutoffsOutOfRange) {
    for (double fc : {0.0, -5.0, 15000.0, 20000.0, 0.1, std::nan("")}) {
        try {
            (void)ks::kernels::design_highpass(30000, fc);
            FAIL() << "accepted highpass_cutoff " << fc;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_NE(std::string(e.what()).find("highpass_cutoff"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW((void)ks::kernels::design_highpass(0, 300), ks::Error);
}

TEST(FilterDesign, RawRangeCoversBlocksWithContext) {
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    const auto r = ks::kernels::raw_range(d, 10000, 10001, 1000000);
    EXPECT_EQ(r.begin, (10000 / d.block) * d.block - d.context);
    EXPECT_EQ(r.end, (10000 / d.block + 1) * d.block + d.context);
    const auto last = ks::kernels::raw_range(d, 999990, 1000000, 1000000);
    EXPECT_EQ(last.end, 1000000 + d.context);  // the final block ends at the recording's end
}

// Zero-phase response: |H(f)|^2 of the digital Butterworth, 1 / (1 + (tan(pi fc/fs) / tan(pi f/fs))^6).
TEST(Highpass, SinusoidGainIsSquaredButterworthMagnitude) {
    const double fs = 30000, fc = 300;
    const HighpassDesign d = ks::kernels::design_highpass(fs, fc);
    const int64_t n = 60000;
    const auto dev = ks::Device::open("cpu");
    for (double f : {30.0, 150.0, 300.0, 600.0, 3000.0}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (int64_t t = 0; t < n; ++t) x[static_cast<size_t>(t)] = static_cast<float>(100.0 * std::sin(2 * M_PI * f * t / fs));
        const auto y = run_filter(dev, d, x, 1, n, 0, n, Reference::none, {0}, {});
        double sxy = 0, sxx = 0;  // least-squares gain over the middle (away from the ends' transients)
        for (int64_t t = n / 4; t < 3 * n / 4; ++t) {
            sxy += static_cast<double>(x[static_cast<size_t>(t)]) * y[static_cast<size_t>(t)];
            sxx += static_cast<double>(x[static_cast<size_t>(t)]) * x[static_cast<size_t>(t)];
        }
        const double ratio = std::tan(M_PI * fc / fs) / std::tan(M_PI * f / fs);
        const double want = 1.0 / (1.0 + std::pow(ratio, 6));
        EXPECT_NEAR(sxy / sxx, want, 1e-5 + 1e-4 * want) << "f = " << f << " Hz";
    }
}

TEST(Highpass, ImpulseResponseIsSymmetricWithZeroSum) {
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    const int64_t n = 20001, m = 10000;
    std::vector<float> x(static_cast<size_t>(n), 0.f);
    x[m] = 1000.f;
    const auto y = run_filter(ks::Device::open("cpu"), d, x, 1, n, 0, n, Reference::none, {0}, {});
    double sum = 0;
    for (float v : y) sum += v;
    EXPECT_NEAR(sum, 0.0, 1e-3);  // zero gain at DC
    EXPECT_GT(y[m], 800.f);       // about 1000 * sum of |H|^2 over frequency
    for (int64_t k = 1; k < 2000; ++k) EXPECT_NEAR(y[m + k], y[m - k], 2e-4) << k;  // zero phase
}

TEST(Highpass, ConstantGivesExactZerosAndStepMatchesNaive) {
    const ScipyCase& s = kScipy[0];
    const HighpassDesign d = ks::kernels::design_highpass(s.fs, s.fc);
    const int64_t n = 30000;
    std::vector<float> x(static_cast<size_t>(n), 1234.5f);
    for (float v : run_filter(ks::Device::open("cpu"), d, x, 1, n, 0, n, Reference::none, {0}, {})) ASSERT_EQ(v, 0.f);
    for (int64_t t = n / 2; t < n; ++t) x[static_cast<size_t>(t)] = -765.25f;
    const auto y = run_filter(ks::Device::open("cpu"), d, x, 1, n, 0, n, Reference::none, {0}, {});
    const auto want = naive_filtfilt(s, std::vector<double>(x.begin(), x.end()), d.context);
    for (int64_t t = 0; t < n; ++t) ASSERT_NEAR(y[static_cast<size_t>(t)], want[static_cast<size_t>(t)], 1e-3) << t;
}

// CPU against the naive filtfilt, everywhere including both ends. Tolerance: 2e-6 of the RMS
// plus 1e-7 of the largest value (samples are float32 between the steps, about 6e-8 relative;
// the recursion itself runs in double).
TEST(Highpass, MatchesNaiveFiltfiltAtEndsAndMiddle) {
    for (const auto& s : {kScipy[0], kScipy[2], kScipy[3]}) {
        const HighpassDesign d = ks::kernels::design_highpass(s.fs, s.fc);
        const int C = 5;
        const int64_t n = 3 * d.block + 777;  // several blocks, not a multiple of one
        const auto x = test_signal(C, n, 7);
        const auto y = run_filter(ks::Device::open("cpu"), d, x, C, n, 0, n, Reference::none, {0}, {});
        for (int c = 0; c < C; ++c) {
            std::vector<double> xc(static_cast<size_t>(n));
            for (int64_t t = 0; t < n; ++t) xc[static_cast<size_t>(t)] = x[static_cast<size_t>(t * C + c)];
            const auto want = naive_filtfilt(s, xc, d.context);
            double peak = 0;
            for (double v : want) peak = std::max(peak, std::fabs(v));
            const double tol = 2e-6 * rms(want) + 1e-7 * peak;
            double worst = 0;
            int64_t at = 0;
            for (int64_t t = 0; t < n; ++t) {
                const double e = std::fabs(y[static_cast<size_t>(t * C + c)] - want[static_cast<size_t>(t)]);
                if (e > worst) worst = e, at = t;
            }
            EXPECT_LE(worst, tol) << "fs " << s.fs << " fc " << s.fc << " channel " << c << " worst at sample " << at
                                  << " of " << n;
        }
    }
}

// Truncating the context at `context` samples costs less than 1e-7 of the RMS against an
// effectively infinite context (the naive filter run over the whole signal is that reference;
// here the kernel's own blocks are compared with a 4x longer context run of the naive one).
TEST(Highpass, ContextTruncationIsNegligible) {
    const ScipyCase& s = kScipy[0];
    const HighpassDesign d = ks::kernels::design_highpass(s.fs, s.fc);
    const int64_t n = 4 * d.block;
    const auto x = test_signal(1, n, 11);
    std::vector<double> xd(x.begin(), x.end());
    const auto full = naive_filtfilt(s, xd, 4 * d.context);
    // Naive filtfilt of one block cut out with only `context` samples each side.
    const int64_t b0 = d.block, b1 = 2 * d.block;
    std::vector<double> seg(xd.begin() + (b0 - d.context), xd.begin() + (b1 + d.context));
    const auto cut = naive_filtfilt(s, seg, 0);
    double worst = 0;
    for (int64_t t = b0; t < b1; ++t)
        worst = std::max(worst, std::fabs(cut[static_cast<size_t>(t - b0 + d.context)] - full[static_cast<size_t>(t)]));
    EXPECT_LT(worst, 1e-7 * rms(full)) << "worst " << worst;
}

TEST(Highpass, AnySplitIntoCallsGivesIdenticalBits) {
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    const int C = 7;
    const int64_t n = 5 * d.block + 123;
    const auto x = test_signal(C, n, 3);
    const std::vector<int> off = {0, C};
    std::vector<int> ch(static_cast<size_t>(C));
    for (int c = 0; c < C; ++c) ch[static_cast<size_t>(c)] = c;
    const auto dev = ks::Device::open("cpu");
    const auto whole = run_filter(dev, d, x, C, n, 0, n, Reference::median, off, ch);
    std::mt19937 rng(5);
    for (int trial = 0; trial < 4; ++trial) {
        std::vector<int64_t> cuts = {0, n};
        for (int k = 0; k < 3 + trial; ++k) cuts.push_back(1 + static_cast<int64_t>(rng() % (n - 1)));
        if (trial == 0) cuts.push_back(d.block);  // a cut on a block boundary
        std::sort(cuts.begin(), cuts.end());
        cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
        std::vector<float> joined;
        for (size_t i = 0; i + 1 < cuts.size(); ++i) {
            const auto part = run_filter(dev, d, x, C, n, cuts[i], cuts[i + 1], Reference::median, off, ch);
            joined.insert(joined.end(), part.begin(), part.end());
        }
        ASSERT_EQ(joined, whole) << "trial " << trial;
    }
}

TEST(Highpass, IntegerInputWithScaleShiftInvertMatchesFloatPath) {
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    const int C = 3, stride = 5;
    const int64_t n = 20000;
    std::mt19937 rng(9);
    std::vector<int16_t> raw16(static_cast<size_t>(n * stride));
    for (auto& v : raw16) v = static_cast<int16_t>(static_cast<int>(rng() % 2000) - 1000);
    const std::vector<int> rows = {4, 0, 2};
    // The same samples converted by hand: (x * 0.5 + 3), negated.
    std::vector<float> conv(static_cast<size_t>(n * C));
    for (int64_t t = 0; t < n; ++t)
        for (int c = 0; c < C; ++c)
            conv[static_cast<size_t>(t * C + c)] = -(static_cast<float>(raw16[static_cast<size_t>(t * stride + rows[static_cast<size_t>(c)])]) * 0.5f + 3.0f);
    const auto dev = ks::Device::open("cpu");
    const auto want = run_filter(dev, d, conv, C, n, 0, n, Reference::none, {0}, {});
    const auto r = ks::kernels::raw_range(d, 0, n, n);
    std::vector<int16_t> padded(static_cast<size_t>((r.end - r.begin) * stride));
    for (int64_t t = r.begin; t < r.end; ++t)
        std::copy_n(&raw16[static_cast<size_t>(std::clamp<int64_t>(t, 0, n - 1) * stride)], stride,
                    &padded[static_cast<size_t>((t - r.begin) * stride)]);
    std::vector<float> out(static_cast<size_t>(n * C));
    FilterArgs a;
    a.dtype = ks::Dtype::int16;
    a.raw = padded.data();
    a.raw_t0 = r.begin;
    a.raw_n = r.end - r.begin;
    a.row_stride = stride;
    a.rows = rows.data();
    a.n_chan = C;
    a.scale = 0.5f;
    a.shift = 3.0f;
    a.invert = true;
    a.hp = &d;
    a.n_samples = n;
    a.t0 = 0;
    a.t1 = n;
    a.reference = Reference::none;
    a.out = out.data();
    ks::kernels::filter_samples(dev, a);
    EXPECT_EQ(out, want);
}

// The common reference against sorting: lower median (PyTorch's) for odd and even counts,
// per group, groups with scattered channels.
TEST(CommonReference, MedianPerGroupMatchesSort) {
    std::mt19937 rng(21);
    std::normal_distribution<float> nd(0, 5);
    for (int C : {1, 2, 3, 4, 7, 8, 64, 65, 384}) {
        const int64_t n = 300;
        std::vector<float> x(static_cast<size_t>(n * C));
        for (auto& v : x) v = nd(rng);
        for (int64_t t = 0; t < n; t += 7) x[static_cast<size_t>(t * C)] = 0.0f;       // ties and zeros
        for (int64_t t = 3; t < n; t += 11) x[static_cast<size_t>(t * C + C / 2)] = -0.0f;
        for (int64_t t = 5; t < n; t += 13)
            for (int c = 0; c < C; ++c) x[static_cast<size_t>(t * C + c)] = 2.5f;       // all equal
        // Two groups: even channels, then odd channels (not contiguous), when C > 1.
        std::vector<int> off = {0}, ch;
        for (int c = 0; c < C; c += 2) ch.push_back(c);
        off.push_back(static_cast<int>(ch.size()));
        if (C > 1) {
            for (int c = 1; c < C; c += 2) ch.push_back(c);
            off.push_back(static_cast<int>(ch.size()));
        }
        std::vector<float> got = x;
        ks::kernels::ReferenceArgs a;
        a.x = got.data();
        a.n_samples = n;
        a.n_chan = C;
        a.reference = Reference::median;
        a.groups = {off.data(), ch.data(), static_cast<int>(off.size()) - 1};
        ks::kernels::common_reference(ks::Device::open("cpu"), a);
        for (int64_t t = 0; t < n; ++t) {
            for (size_t g = 0; g + 1 < off.size(); ++g) {
                std::vector<float> v;
                for (int i = off[g]; i < off[g + 1]; ++i) v.push_back(x[static_cast<size_t>(t * C + ch[static_cast<size_t>(i)])]);
                std::sort(v.begin(), v.end());
                const float med = v[(v.size() - 1) / 2];
                for (int i = off[g]; i < off[g + 1]; ++i) {
                    const size_t k = static_cast<size_t>(t * C + ch[static_cast<size_t>(i)]);
                    ASSERT_EQ(got[k], x[k] - med) << "C=" << C << " t=" << t << " group " << g;
                }
            }
        }
    }
}

TEST(CommonReference, MeanAndNoneAndUngroupedChannels) {
    std::mt19937 rng(4);
    std::normal_distribution<float> nd(0, 5);
    const int C = 11;
    const int64_t n = 50;
    std::vector<float> x(static_cast<size_t>(n * C));
    for (auto& v : x) v = nd(rng);
    const std::vector<int> off = {0, 9}, ch = {0, 1, 2, 3, 4, 5, 6, 7, 8};  // channels 9, 10: no group
    for (Reference ref : {Reference::mean, Reference::none}) {
        std::vector<float> got = x;
        ks::kernels::ReferenceArgs a;
        a.x = got.data();
        a.n_samples = n;
        a.n_chan = C;
        a.reference = ref;
        a.groups = {off.data(), ch.data(), 1};
        ks::kernels::common_reference(ks::Device::open("cpu"), a);
        for (int64_t t = 0; t < n; ++t) {
            long double m = 0;
            for (int c = 0; c < 9; ++c) m += x[static_cast<size_t>(t * C + c)];
            m /= 9;
            for (int c = 0; c < C; ++c) {
                const size_t k = static_cast<size_t>(t * C + c);
                const double want = (ref == Reference::mean && c < 9) ? x[k] - static_cast<double>(m) : x[k];
                ASSERT_NEAR(got[k], want, 1e-5) << "t " << t << " c " << c;
                if (c >= 9 || ref == Reference::none) {
                    ASSERT_EQ(got[k], x[k]);
                }
            }
        }
    }
}

TEST(CommonReference, SelectKeyFindsEveryRank) {
    std::mt19937 rng(8);
    for (int trial = 0; trial < 200; ++trial) {
        const int n = 1 + static_cast<int>(rng() % 50);
        std::vector<float> v(static_cast<size_t>(n));
        for (auto& e : v) e = static_cast<float>(static_cast<int>(rng() % 9) - 4) * (trial % 2 ? 0.37f : 1e-30f);
        std::vector<int32_t> keys(v.size());
        for (size_t i = 0; i < v.size(); ++i) keys[i] = ks::kernels::body::order_key(v[i]);
        auto count_below = [&](int32_t c) { return static_cast<int>(std::count_if(keys.begin(), keys.end(), [c](int32_t k) { return k < c; })); };
        auto min_at_least = [&](int32_t c) {
            int32_t m = INT32_MAX;
            for (int32_t k : keys) if (k >= c) m = std::min(m, k);
            return m;
        };
        std::vector<float> sorted = v;
        std::sort(sorted.begin(), sorted.end());
        for (int k = 0; k < n; ++k)
            ASSERT_EQ(ks::kernels::body::key_value(ks::kernels::body::select_key(n, k, count_below, min_at_least)), sorted[static_cast<size_t>(k)])
                << "n " << n << " k " << k;
    }
    for (float f : {-3.5f, -0.0f, 0.0f, 1e-40f, 7.25f, 3e38f})
        EXPECT_EQ(ks::kernels::body::key_value(ks::kernels::body::order_key(f)), f);
    EXPECT_LT(ks::kernels::body::order_key(-1.0f), ks::kernels::body::order_key(-0.5f));
    EXPECT_LT(ks::kernels::body::order_key(-1e-30f), ks::kernels::body::order_key(1e-30f));
}

TEST(Float16, KnownValuesRoundToNearestEven) {
    struct Case {
        float f;
        uint16_t h;
    };
    // numpy: np.float16(f).view(np.uint16)
    const Case cases[] = {{0.0f, 0x0000},      {-0.0f, 0x8000},       {1.0f, 0x3c00},         {-2.0f, 0xc000},
                          {0.1f, 0x2e66},      {65504.0f, 0x7bff},    {65519.0f, 0x7bff},     {65520.0f, 0x7c00},
                          {1e6f, 0x7c00},      {-1e6f, 0xfc00},       {5.9604645e-8f, 0x0001}, {2.9802322e-8f, 0x0000},
                          {8.940697e-8f, 0x0002}, {6.1035156e-5f, 0x0400}, {1.00048828125f, 0x3c00}, {1.00146484375f, 0x3c02},
                          {3.14159265f, 0x4248}, {-123.456f, 0xd7b7}};
    for (const auto& c : cases) {
        EXPECT_EQ(ks::float_to_half(c.f), c.h) << c.f;
        uint16_t h = 0;
        ks::floats_to_halves(&c.f, &h, 1);
        EXPECT_EQ(h, c.h) << c.f;
    }
    EXPECT_TRUE(std::isnan(ks::half_to_float(ks::float_to_half(std::nanf("")))));
}

TEST(Float16, RoundTripsEveryHalfAndBulkEqualsScalar) {
    std::vector<uint16_t> all;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = ks::half_to_float(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        ASSERT_EQ(ks::float_to_half(f), h) << h;
        all.push_back(static_cast<uint16_t>(h));
    }
    std::vector<float> f1(all.size()), f2(all.size());
    for (size_t i = 0; i < all.size(); ++i) f1[i] = ks::half_to_float(all[i]);
    ks::halves_to_floats(all.data(), f2.data(), all.size());
    ASSERT_EQ(0, std::memcmp(f1.data(), f2.data(), f1.size() * sizeof(float)));
    // Random floats (and every exact tie between two halves) through the bulk path, which uses
    // F16C where the CPU has it.
    std::mt19937 rng(2);
    std::vector<float> v;
    for (int i = 0; i < 200000; ++i) {
        uint32_t b = rng();
        float f;
        std::memcpy(&f, &b, sizeof f);
        if (!std::isnan(f)) v.push_back(f);
    }
    for (size_t i = 0; i + 1 < all.size(); ++i)
        if (all[i] != 0x7bff && all[i] != 0xfbff && all[i] != 0x7fff)
            v.push_back(0.5f * (ks::half_to_float(all[i]) + ks::half_to_float(all[i + 1])));
    std::vector<uint16_t> h1(v.size()), h2(v.size());
    for (size_t i = 0; i < v.size(); ++i) h1[i] = ks::float_to_half(v[i]);
    ks::floats_to_halves(v.data(), h2.data(), v.size());
    ASSERT_EQ(h1, h2);
}

// The reader of filter/filtered.{bin,json}.
struct TempDir {
    std::filesystem::path p;
    TempDir() {
        p = std::filesystem::path(::testing::TempDir()) /
            ("ks_filter_test_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(p);
        std::filesystem::create_directories(p / "filter");
    }
    ~TempDir() { std::filesystem::remove_all(p); }
};

void write_text(const std::filesystem::path& f, const std::string& s) { std::ofstream(f) << s; }

std::string sidecar(const std::string& dtype, int C, int64_t n, const std::string& extra = "") {
    return "{\"format\": \"ks-filtered\", \"version\": 1, \"dtype\": \"" + dtype + "\", \"scale\": 1, \"n_channels\": " +
           std::to_string(C) + ", \"n_samples\": " + std::to_string(n) + ", \"fs\": 30000, \"imin\": 5" + extra + "}";
}

TEST(FilteredRecording, ReadsFloat16ChannelMajorWithEdgeCopies) {
    TempDir d;
    const int C = 3;
    const int64_t n = 4;
    std::vector<uint16_t> h;
    for (int64_t t = 0; t < n; ++t)
        for (int c = 0; c < C; ++c) h.push_back(ks::float_to_half(static_cast<float>(10 * t + c) + 0.5f));
    std::ofstream(d.p / "filter/filtered.bin", std::ios::binary).write(reinterpret_cast<const char*>(h.data()), h.size() * 2);
    write_text(d.p / "filter/filtered.json", sidecar("float16", C, n));
    const ks::FilteredRecording rec(d.p.string());
    EXPECT_EQ(rec.n_channels(), C);
    EXPECT_EQ(rec.n_samples(), n);
    EXPECT_EQ(rec.info().imin, 5);
    EXPECT_EQ(rec.info().dtype, ks::Dtype::float16);
    std::vector<float> out(static_cast<size_t>(C * 7));
    rec.read(-2, 7, out.data());  // samples -2..4: two copies of sample 0, then 0..3, then a copy of 3
    const float want[3][7] = {{0.5f, 0.5f, 0.5f, 10.5f, 20.5f, 30.5f, 30.5f},
                              {1.5f, 1.5f, 1.5f, 11.5f, 21.5f, 31.5f, 31.5f},
                              {2.5f, 2.5f, 2.5f, 12.5f, 22.5f, 32.5f, 32.5f}};
    for (int c = 0; c < C; ++c)
        for (int t = 0; t < 7; ++t) EXPECT_EQ(out[static_cast<size_t>(c * 7 + t)], want[c][t]) << c << "," << t;
    rec.read(10, 2, out.data());  // wholly past the end: the last sample
    EXPECT_EQ(out[0], 30.5f);
    EXPECT_EQ(out[5], 32.5f);
}

TEST(FilteredRecording, RejectsBadSidecarsAndSizes) {
    TempDir d;
    const auto bin = d.p / "filter/filtered.bin";
    std::ofstream(bin, std::ios::binary).write("\0\0\0\0\0\0\0\0\0\0\0\0", 12);  // 2 samples x 3 ch x float16
    auto expect_usage = [&](const std::string& json, const std::string& mention) {
        write_text(d.p / "filter/filtered.json", json);
        try {
            ks::FilteredRecording rec(d.p.string());
            FAIL() << "accepted " << json;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage) << e.what();
            EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
        }
    };
    write_text(d.p / "filter/filtered.json", sidecar("float16", 3, 2));
    EXPECT_NO_THROW(ks::FilteredRecording rec(d.p.string()));
    expect_usage(sidecar("float16", 3, 3), "incomplete");                   // .bin too short
    expect_usage(sidecar("float32", 3, 2), "incomplete");                   // 4-byte samples
    expect_usage(sidecar("int8", 3, 2), "dtype");
    expect_usage("{\"format\": \"other\"}", "format");
    expect_usage("[1, 2]", "object");
    expect_usage("{not json", "JSON");
    expect_usage(sidecar("float16", 0, 2), "n_channels");
    std::string v2 = sidecar("float16", 3, 2);
    v2.replace(v2.find("\"version\": 1"), 12, "\"version\": 2");
    expect_usage(v2, "version 2");
    std::filesystem::remove(d.p / "filter/filtered.json");
    expect_usage("", "JSON");
    std::filesystem::remove(d.p / "filter/filtered.json");
    try {
        ks::FilteredRecording rec(d.p.string());
        FAIL();
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::usage);
        EXPECT_NE(std::string(e.what()).find("filtered.json"), std::string::npos);
    }
}

// CUDA against the CPU on the same input: identical bits (same bodies, explicit rounding).
TEST(FilterCuda, MatchesCpuBitForBitOrSkips) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    const int C = 70;
    const int64_t n = 3 * d.block + 55;
    const auto x = test_signal(C, n, 13);
    std::vector<int> off = {0, 40, 70}, ch(static_cast<size_t>(C));
    for (int c = 0; c < C; ++c) ch[static_cast<size_t>(c)] = (c * 17) % C;  // scattered groups
    for (Reference ref : {Reference::median, Reference::mean, Reference::none}) {
        const auto cpu = run_filter(ks::Device::open("cpu"), d, x, C, n, 1000, n - 7, ref, off, ch);
        const auto gpu = run_filter(ks::Device::open("cuda"), d, x, C, n, 1000, n - 7, ref, off, ch);
        ASSERT_EQ(cpu.size(), gpu.size());
        EXPECT_EQ(0, std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(float))) << ks::kernels::reference_name(ref);
    }
}

TEST(FilterCuda, ImpossibleAllocationIsResourcesOrSkips) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const HighpassDesign d = ks::kernels::design_highpass(30000, 300);
    std::vector<float> raw(1), out(1);
    std::vector<int> rows = {0};
    FilterArgs a;
    a.dtype = ks::Dtype::float32;
    a.raw = raw.data();
    a.raw_t0 = -d.context;
    a.raw_n = int64_t(1) << 46;  // 256 TiB of raw samples to upload: cudaMalloc fails first
    a.row_stride = 1;
    a.rows = rows.data();
    a.n_chan = 1;
    a.hp = &d;
    a.n_samples = 1;
    a.t0 = 0;
    a.t1 = 1;
    a.reference = Reference::none;
    a.out = out.data();
    try {
        ks::kernels::filter_samples(ks::Device::open("cuda"), a);
        FAIL() << "no error from a 256 TiB allocation";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::resources) << e.what();
    }
}

}  // namespace
