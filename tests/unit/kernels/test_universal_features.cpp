// Per-spike PC features (§4.6) against a plain double-precision sum, empty channel slots, block
// edges, and CUDA against CPU bit for bit (skipped without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/universal_features.hpp"
#include "ks/probe.hpp"

namespace {

constexpr int kNt = 61, kP = 3;

// n contacts in one column, 20 µm apart: fewer than nearest_chans = 10 when n < 10 (slots of -1).
ks::Probe column(int n) {
    ks::Probe p;
    for (int c = 0; c < n; ++c) {
        p.chanMap.push_back(c);
        p.xc.push_back(0.0);
        p.yc.push_back(20.0 * c);
        p.kcoords.push_back(0);
    }
    return p;
}

struct Case {
    ks::kernels::UniversalGrid grid;
    std::vector<float> x, w;
    int C;
    int64_t n;
    std::vector<ks::kernels::UniversalSpike> spikes;
};

Case make_case(int C, int64_t n) {
    Case k;
    k.C = C;
    k.n = n;
    k.grid = ks::kernels::make_universal_grid(column(C), {});
    std::mt19937 rng(11);
    std::normal_distribution<float> N(0.f, 1.f);
    k.x.resize(static_cast<size_t>(C) * n);
    for (float& v : k.x) v = N(rng);
    k.w.resize(kP * kNt);
    for (float& v : k.w) v = N(rng) * 0.1f;
    // Spikes anywhere, including within nt/2 of both ends of the block (zeros beyond).
    for (int64_t t : {int64_t{0}, int64_t{5}, int64_t{100}, n / 2, n - 3, n - 1})
        for (int f = 0; f < k.grid.n_pos; f += 3) {
            ks::kernels::UniversalSpike s;
            s.t_center = t;
            s.pos = f;
            k.spikes.push_back(s);
        }
    return k;
}

std::vector<float> features(const Case& k, const char* device) {
    ks::kernels::FeatureArgs a;
    a.x = k.x.data();
    a.n_chan = k.C;
    a.n_samples = a.ld_x = k.n;
    a.wpca = k.w.data();
    a.n_pcs = kP;
    a.nt = kNt;
    a.grid = &k.grid;
    std::vector<float> tf(k.spikes.size() * k.grid.n_chan_near * kP, -1.f);
    ks::kernels::universal_features(ks::Device::open(device, 2), a, k.spikes, tf.data());
    return tf;
}

}  // namespace

TEST(UniversalFeatures, EqualThePlainSumOnTheNearestChannels) {
    for (int C : {6, 24}) {
        const Case k = make_case(C, 500);
        const auto tf = features(k, "cpu");
        const int nC = k.grid.n_chan_near;
        int n_empty = 0;
        for (size_t s = 0; s < k.spikes.size(); ++s)
            for (int i = 0; i < nC; ++i) {
                const int c = k.grid.iC[static_cast<size_t>(k.spikes[s].pos) * nC + i];
                for (int p = 0; p < kP; ++p) {
                    const float got = tf[(s * nC + i) * kP + p];
                    if (c < 0) {
                        EXPECT_EQ(got, 0.f);
                        ++n_empty;
                        continue;
                    }
                    double want = 0;
                    for (int tau = 0; tau < kNt; ++tau) {
                        const int64_t u = k.spikes[s].t_center - kNt / 2 + tau;
                        if (u >= 0 && u < k.n) want += static_cast<double>(k.w[p * kNt + tau]) * k.x[c * k.n + u];
                    }
                    EXPECT_NEAR(got, want, 1e-4) << "C " << C << " spike " << s << " slot " << i << " pc " << p;
                }
            }
        if (C < 10) {
            EXPECT_GT(n_empty, 0) << "a 6-channel probe leaves empty slots";
        }
    }
}

TEST(UniversalFeatures, SameBitsForOneAndTwoThreads) {
    const Case k = make_case(24, 400);
    ks::kernels::FeatureArgs a;
    a.x = k.x.data();
    a.n_chan = k.C;
    a.n_samples = a.ld_x = k.n;
    a.wpca = k.w.data();
    a.n_pcs = kP;
    a.nt = kNt;
    a.grid = &k.grid;
    std::vector<float> one(k.spikes.size() * k.grid.n_chan_near * kP), two(one.size());
    ks::kernels::universal_features(ks::Device::open("cpu", 1), a, k.spikes, one.data());
    ks::kernels::universal_features(ks::Device::open("cpu", 2), a, k.spikes, two.data());
    EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
}

TEST(UniversalFeatures, CudaMatchesCpuBitForBit) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const Case k = make_case(24, 2000);
    const auto cpu = features(k, "cpu");
    const auto gpu = features(k, "cuda");
    ASSERT_EQ(cpu.size(), gpu.size());
    EXPECT_EQ(std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(float)), 0);
}
