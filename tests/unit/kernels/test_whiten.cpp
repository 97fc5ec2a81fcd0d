// Whitening: the covariance and apply-matrix kernels against naive loops (bit for bit: the order
// of the sums is specified), CUDA against CPU where a GPU exists, and the local ZCA against an
// independent inverse square root (Denman-Beavers iteration, no eigendecomposition).
#include <gtest/gtest.h>
#include <omp.h>

#include <Eigen/Dense>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/kernels/apply_matrix.hpp"
#include "ks/kernels/covariance.hpp"
#include "ks/probe.hpp"
#include "ks/stages/whiten.hpp"

namespace {

using ks::kernels::ApplyMatrixArgs;
using ks::kernels::CovarianceArgs;

std::vector<float> random_block(int rows, int64_t ld, uint32_t seed, float sd = 30.f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.f, sd);
    std::vector<float> v(static_cast<size_t>(rows) * ld);
    for (auto& x : v) x = g(rng);
    return v;
}

// The specified order (covariance_body.hpp), written out plainly: four lane sums, t = l mod 4.
std::vector<double> naive_lane_covariance(const std::vector<float>& x, int C, int64_t n, int64_t ld) {
    std::vector<double> out(static_cast<size_t>(C) * C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            double lane[4] = {0, 0, 0, 0};
            for (int64_t t = 0; t < n; ++t)
                lane[t % 4] += static_cast<double>(x[i * ld + t]) * static_cast<double>(x[j * ld + t]);
            out[static_cast<size_t>(i) * C + j] = (lane[0] + lane[1]) + (lane[2] + lane[3]);
        }
    return out;
}

// An order-free reference: long double sums.
std::vector<long double> exact_covariance(const std::vector<float>& x, int C, int64_t n, int64_t ld) {
    std::vector<long double> out(static_cast<size_t>(C) * C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            long double s = 0;
            for (int64_t t = 0; t < n; ++t) s += static_cast<long double>(x[i * ld + t]) * x[j * ld + t];
            out[static_cast<size_t>(i) * C + j] = s;
        }
    return out;
}

std::vector<double> run_covariance(const ks::Device& dev, const std::vector<float>& x, int C, int64_t n, int64_t ld,
                                   std::vector<double> sum = {}, int64_t gpu_chunk = 0) {
    if (sum.empty()) sum.assign(static_cast<size_t>(C) * C, 0.0);
    CovarianceArgs a;
    a.x = x.data();
    a.n_channels = C;
    a.n_samples = n;
    a.ld = ld;
    a.sum = sum.data();
    a.gpu_chunk_samples = gpu_chunk;
    ks::kernels::accumulate_covariance(dev, a);
    return sum;
}

struct Shape {
    int C;
    int64_t n, ld;
};
const Shape kCovShapes[] = {{1, 1, 1}, {1, 7, 9}, {3, 5, 5}, {4, 256, 260}, {33, 1237, 1240}, {70, 513, 513}, {5, 0, 3}};

TEST(Covariance, CpuEqualsSpecifiedOrderBitForBit) {
    const ks::Device cpu = ks::Device::open("cpu");
    for (const Shape& s : kCovShapes) {
        const auto x = random_block(s.C, s.ld, 7u + static_cast<uint32_t>(s.C));
        const auto got = run_covariance(cpu, x, s.C, s.n, s.ld);
        const auto want = naive_lane_covariance(x, s.C, s.n, s.ld);
        const auto exact = exact_covariance(x, s.C, s.n, s.ld);
        for (size_t k = 0; k < got.size(); ++k) {
            ASSERT_EQ(got[k], want[k]) << "C=" << s.C << " n=" << s.n << " ld=" << s.ld << " entry " << k;
            // And close to the exact sum: relative to the diagonal scale.
            const int i = static_cast<int>(k) / s.C, j = static_cast<int>(k) % s.C;
            const long double scale = std::sqrt(exact[i * s.C + i] * exact[j * s.C + j]) + 1e-30L;
            ASSERT_LT(std::fabs(static_cast<long double>(got[k]) - exact[k]) / scale, 1e-13L) << "C=" << s.C;
        }
    }
}

TEST(Covariance, AccumulatesIntoSumAndStaysSymmetric) {
    const ks::Device cpu = ks::Device::open("cpu");
    const int C = 37;
    const int64_t n = 301;
    const auto x = random_block(C, n, 3);
    std::vector<double> start(static_cast<size_t>(C) * C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) start[i * C + j] = 1000.0 + std::min(i, j) + std::max(i, j) * 0.5;
    const auto got = run_covariance(cpu, x, C, n, n, start);
    const auto once = run_covariance(cpu, x, C, n, n);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            ASSERT_EQ(got[i * C + j], start[i * C + j] + once[i * C + j]);
            ASSERT_EQ(got[i * C + j], got[j * C + i]);
        }
}

TEST(Covariance, SameBitsForAnyThreadCount) {
    const ks::Device cpu = ks::Device::open("cpu");
    const int C = 97;
    const int64_t n = 4099;
    const auto x = random_block(C, n, 11);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const auto one = run_covariance(cpu, x, C, n, n);
    omp_set_num_threads(3);
    const auto three = run_covariance(cpu, x, C, n, n);
    omp_set_num_threads(saved);
    EXPECT_EQ(one, three);
}

TEST(Covariance, CudaEqualsCpuBitForBitOrSkips) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const ks::Device cpu = ks::Device::open("cpu"), gpu = ks::Device::open("cuda");
    for (const Shape& s : kCovShapes) {
        const auto x = random_block(s.C, s.ld, 100u + static_cast<uint32_t>(s.C));
        EXPECT_EQ(run_covariance(gpu, x, s.C, s.n, s.ld), run_covariance(cpu, x, s.C, s.n, s.ld))
            << "C=" << s.C << " n=" << s.n << " ld=" << s.ld;
    }
    // Several channel tiles, and more than one time step of the kernel.
    const auto x = random_block(130, 70001, 5);
    const auto want = run_covariance(cpu, x, 130, 70001, 70001);
    EXPECT_EQ(run_covariance(gpu, x, 130, 70001, 70001), want) << "C=130 n=70001";
    // Streamed through the device in chunks (lane sums carried between them): the same bits.
    EXPECT_EQ(run_covariance(gpu, x, 130, 70001, 70001, {}, 1000), want) << "C=130 n=70001 chunks of 992";
}

// ---- apply_matrix -------------------------------------------------------------------------

std::vector<float> sparse_matrix(int n_out, int n_in, uint32_t seed, double density) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::uniform_real_distribution<double> keep(0, 1);
    std::vector<float> w(static_cast<size_t>(n_out) * n_in);
    for (auto& v : w) v = keep(rng) < density ? u(rng) : 0.f;
    return w;
}

void run_apply(const ks::Device& dev, const std::vector<float>& w, int n_out, int n_in, const std::vector<float>& x,
               int64_t n, int64_t ld_x, std::vector<float>& out, int64_t ld_out, int64_t gpu_chunk = 0) {
    ApplyMatrixArgs a;
    a.w = w.data();
    a.n_out = n_out;
    a.n_in = n_in;
    a.x = x.data();
    a.n_samples = n;
    a.ld_x = ld_x;
    a.out = out.data();
    a.ld_out = ld_out;
    a.gpu_chunk_samples = gpu_chunk;
    ks::kernels::apply_matrix(dev, a);
}

struct ApplyShape {
    int n_out, n_in;
    int64_t n, ld_x, ld_out;
    double density;
};
const ApplyShape kApplyShapes[] = {{1, 1, 1, 1, 1, 1.0},         {1, 1, 10, 12, 11, 1.0},    {3, 5, 7, 7, 7, 0.5},
                                   {32, 32, 2048 + 13, 2100, 2061, 1.0}, {40, 33, 999, 999, 1000, 0.2}, {6, 6, 0, 4, 4, 1.0}};

TEST(ApplyMatrix, CpuEqualsSpecifiedOrderBitForBit) {
    const ks::Device cpu = ks::Device::open("cpu");
    for (const ApplyShape& s : kApplyShapes) {
        const auto w = sparse_matrix(s.n_out, s.n_in, 1u + static_cast<uint32_t>(s.n_out), s.density);
        const auto x = random_block(s.n_in, s.ld_x, 2u + static_cast<uint32_t>(s.n_in));
        std::vector<float> out(static_cast<size_t>(s.n_out) * s.ld_out, -7.f);
        run_apply(cpu, w, s.n_out, s.n_in, x, s.n, s.ld_x, out, s.ld_out);
        for (int i = 0; i < s.n_out; ++i) {
            for (int64_t t = 0; t < s.n; ++t) {
                float acc = 0.f;
                double exact = 0;
                for (int k = 0; k < s.n_in; ++k) {
                    const float wk = w[static_cast<size_t>(i) * s.n_in + k];
                    if (wk != 0.f) acc = acc + wk * x[k * s.ld_x + t];
                    exact += static_cast<double>(wk) * x[k * s.ld_x + t];
                }
                ASSERT_EQ(out[i * s.ld_out + t], acc) << "n_out=" << s.n_out << " n_in=" << s.n_in << " n=" << s.n
                                                      << " i=" << i << " t=" << t;
                ASSERT_NEAR(out[i * s.ld_out + t], exact, 1e-4 * (1 + std::fabs(exact)));
            }
            for (int64_t t = s.n; t < s.ld_out; ++t) ASSERT_EQ(out[i * s.ld_out + t], -7.f) << "wrote past n_samples";
        }
    }
}

TEST(ApplyMatrix, CudaEqualsCpuBitForBitOrSkips) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    const ks::Device cpu = ks::Device::open("cpu"), gpu = ks::Device::open("cuda");
    for (const ApplyShape& s : kApplyShapes) {
        const auto w = sparse_matrix(s.n_out, s.n_in, 9u + static_cast<uint32_t>(s.n_out), s.density);
        const auto x = random_block(s.n_in, s.ld_x, 4u + static_cast<uint32_t>(s.n_in));
        std::vector<float> a(static_cast<size_t>(s.n_out) * s.ld_out, -7.f), b(a);
        run_apply(cpu, w, s.n_out, s.n_in, x, s.n, s.ld_x, a, s.ld_out);
        run_apply(gpu, w, s.n_out, s.n_in, x, s.n, s.ld_x, b, s.ld_out);
        EXPECT_EQ(a, b) << "n_out=" << s.n_out << " n_in=" << s.n_in << " n=" << s.n;
        std::vector<float> c(a.size(), -7.f);
        run_apply(gpu, w, s.n_out, s.n_in, x, s.n, s.ld_x, c, s.ld_out, 100);  // streamed in chunks
        EXPECT_EQ(a, c) << "n_out=" << s.n_out << " n_in=" << s.n_in << " n=" << s.n << " chunks of 100";
    }
}

// ---- batches and the covariance estimate ---------------------------------------------------

TEST(Whiten, CovarianceBatches) {
    using V = std::vector<int64_t>;
    EXPECT_EQ(ks::whiten::covariance_batches(10, 3, 1), (V{0, 1, 2}));  // 4 batches, the last left out
    EXPECT_EQ(ks::whiten::covariance_batches(10, 3, 2), (V{0, 2}));
    EXPECT_EQ(ks::whiten::covariance_batches(100, 1, 25), (V{0, 25, 50, 75}));
    EXPECT_EQ(ks::whiten::covariance_batches(6, 3, 25), (V{0}));        // 2 batches: only the first
    EXPECT_EQ(ks::whiten::covariance_batches(3, 3, 25), (V{0}));        // one batch: used (Kilosort4: none)
    EXPECT_EQ(ks::whiten::covariance_batches(2, 3, 25), (V{0}));        // shorter than one batch
    EXPECT_EQ(ks::whiten::covariance_batches(0, 3, 25), V{});
}

// A recording held in memory, channel-major, read as the stage reads filtered.bin.
struct MemRecording {
    int C;
    int64_t n;
    std::vector<float> x;
    ks::whiten::SampleReader reader() const {
        return [this](int64_t t0, int64_t len, float* out) {
            for (int c = 0; c < C; ++c)
                for (int64_t t = 0; t < len; ++t) out[c * len + t] = x[c * n + t0 + t];
        };
    }
};

TEST(Whiten, CovarianceUsesTheChosenBatchesWeightedByLength) {
    MemRecording rec{5, 1000, random_block(5, 1000, 21)};
    ks::whiten::Params p;
    p.batch_size = 120;  // 9 batches (the last 40 samples); nskip 3 -> batches 0, 3, 6
    p.nskip = 3;
    const auto cov = ks::whiten::estimate_covariance(ks::Device::open("cpu"), rec.reader(), rec.C, rec.n, p);
    EXPECT_EQ(cov.batches, (std::vector<int64_t>{0, 3, 6}));
    EXPECT_EQ(cov.n_samples_used, 360);
    for (int i = 0; i < rec.C; ++i)
        for (int j = 0; j < rec.C; ++j) {
            long double s = 0;
            for (const int b : {0, 3, 6})
                for (int64_t t = b * 120; t < (b + 1) * 120; ++t) s += static_cast<long double>(rec.x[i * rec.n + t]) * rec.x[j * rec.n + t];
            EXPECT_NEAR(cov.cc[i * rec.C + j], static_cast<double>(s / 360), 1e-12 * 900);
        }
    // Shorter than one batch: all samples, divided by their number.
    ks::whiten::Params big = p;
    big.batch_size = 60000;
    const auto one = ks::whiten::estimate_covariance(ks::Device::open("cpu"), rec.reader(), rec.C, rec.n, big);
    EXPECT_EQ(one.batches, (std::vector<int64_t>{0}));
    EXPECT_EQ(one.n_samples_used, 1000);
    long double s00 = 0;
    for (int64_t t = 0; t < rec.n; ++t) s00 += static_cast<long double>(rec.x[t]) * rec.x[t];
    EXPECT_NEAR(one.cc[0], static_cast<double>(s00 / 1000), 1e-12 * 900);
}

TEST(Whiten, NoSamplesIsAUsageError) {
    MemRecording rec{2, 0, {}};
    try {
        ks::whiten::estimate_covariance(ks::Device::open("cpu"), rec.reader(), 2, 0, ks::whiten::Params{});
        FAIL() << "no error";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::usage);
    }
}

// ---- neighbourhoods -------------------------------------------------------------------------

ks::Probe linear_probe(int n, double pitch_um = 20, int shanks = 1, double shank_gap_um = 250) {
    ks::Probe p;
    p.name = "test";
    const int per = n / shanks;
    for (int c = 0; c < n; ++c) {
        p.chanMap.push_back(c);
        p.kcoords.push_back(c / per);
        p.xc.push_back((c / per) * shank_gap_um);
        p.yc.push_back((c % per) * pitch_um);
    }
    return p;
}

TEST(Whiten, NeighbourhoodsByDistanceThenIndex) {
    const auto nb = ks::whiten::neighbourhoods(linear_probe(10), 3);
    EXPECT_EQ(nb[0], (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(nb[5], (std::vector<int>{5, 4, 6}));  // 4 and 6 tie at 20 µm: lower index first
    EXPECT_EQ(nb[9], (std::vector<int>{9, 8, 7}));
    const auto all = ks::whiten::neighbourhoods(linear_probe(4), 32);  // clipped to the probe
    EXPECT_EQ(all[2], (std::vector<int>{2, 1, 3, 0}));
    // Two contacts at one position: ordered by index, the channel itself need not come first.
    ks::Probe dup = linear_probe(3);
    dup.yc[2] = dup.yc[1];
    EXPECT_EQ(ks::whiten::neighbourhoods(dup, 2)[2], (std::vector<int>{1, 2}));
}

TEST(Whiten, NeighbourhoodsStayOnTheirShank) {
    // Shanks 15 µm apart, contacts 20 µm apart along a shank: by distance alone the other shank's
    // contact at the same depth would come second.
    const ks::Probe p = linear_probe(8, 20, 2, 15);
    const auto nb = ks::whiten::neighbourhoods(p, 3);
    for (int j = 0; j < 8; ++j)
        for (const int k : nb[j]) EXPECT_EQ(p.kcoords[k], p.kcoords[j]) << "channel " << j << " got " << k;
    EXPECT_EQ(nb[4], (std::vector<int>{4, 5, 6}));
    EXPECT_EQ(ks::whiten::neighbourhoods(p, 10)[0].size(), 4u);  // clipped to the shank's 4 channels
}

// ---- local ZCA ----------------------------------------------------------------------------

// Inverse square root of an SPD matrix by the Denman-Beavers iteration (no eigendecomposition).
Eigen::MatrixXd inv_sqrt_db(const Eigen::MatrixXd& a) {
    Eigen::MatrixXd y = a, z = Eigen::MatrixXd::Identity(a.rows(), a.cols());
    for (int it = 0; it < 100; ++it) {
        const Eigen::MatrixXd yi = y.inverse(), zi = z.inverse();
        const Eigen::MatrixXd y2 = 0.5 * (y + zi), z2 = 0.5 * (z + yi);
        const double change = (y2 - y).norm() / y.norm();
        y = y2;
        z = z2;
        if (change < 1e-15) break;
    }
    return z;  // z -> a^(-1/2)
}

// A covariance with spatially decaying correlations on a linear probe, plus independent noise.
std::vector<double> spatial_covariance(int C, uint32_t seed, double length_ch = 2.0) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(50, 150);
    std::vector<double> sd(C);
    for (auto& s : sd) s = std::sqrt(u(rng));
    Eigen::MatrixXd m(C, C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) m(i, j) = sd[i] * sd[j] * std::exp(-std::abs(i - j) / length_ch) + (i == j ? 20.0 : 0.0);
    std::vector<double> out(static_cast<size_t>(C) * C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) out[i * C + j] = m(i, j);
    return out;
}

Eigen::MatrixXd as_matrix(const std::vector<double>& v, int C) {
    Eigen::MatrixXd m(C, C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) m(i, j) = v[static_cast<size_t>(i) * C + j];
    return m;
}

TEST(Whiten, WideRangeIsTheGlobalZca) {
    const int C = 12;
    const auto cc = spatial_covariance(C, 1);
    const auto w = ks::whiten::local_zca(cc, C, ks::whiten::neighbourhoods(linear_probe(C), 32));
    const Eigen::MatrixXd want =
        inv_sqrt_db(as_matrix(cc, C) + ks::whiten::kEigenEpsilon * Eigen::MatrixXd::Identity(C, C));
    const Eigen::MatrixXd got = as_matrix(w, C);
    EXPECT_LT((got - want).cwiseAbs().maxCoeff() / want.cwiseAbs().maxCoeff(), 1e-10);
    EXPECT_LT((got - got.transpose()).cwiseAbs().maxCoeff(), 1e-12);  // global ZCA is symmetric
    const Eigen::MatrixXd white = got * as_matrix(cc, C) * got.transpose();
    EXPECT_LT((white - Eigen::MatrixXd::Identity(C, C)).cwiseAbs().maxCoeff(), 1e-6);
}

TEST(Whiten, EachRowIsItsNeighbourhoodsZcaRow) {
    const int C = 24, R = 6;
    const auto cc = spatial_covariance(C, 2);
    const auto nb = ks::whiten::neighbourhoods(linear_probe(C), R);
    const auto w = ks::whiten::local_zca(cc, C, nb);
    const Eigen::MatrixXd CC = as_matrix(cc, C);
    double worst_row = 0, worst_diag = 0, worst_off = 0;
    for (int j = 0; j < C; ++j) {
        Eigen::MatrixXd local(R, R);
        for (int a = 0; a < R; ++a)
            for (int b = 0; b < R; ++b) local(a, b) = CC(nb[j][a], nb[j][b]);
        const Eigen::MatrixXd z = inv_sqrt_db(local + ks::whiten::kEigenEpsilon * Eigen::MatrixXd::Identity(R, R));
        EXPECT_EQ(nb[j][0], j);
        for (int k = 0; k < C; ++k) {
            const auto it = std::find(nb[j].begin(), nb[j].end(), k);
            const double want = it == nb[j].end() ? 0.0 : z(0, it - nb[j].begin());
            if (it == nb[j].end()) {
                ASSERT_EQ(w[j * C + k], 0.0) << "weight outside the neighbourhood";
            }
            worst_row = std::max(worst_row, std::fabs(w[j * C + k] - want));
        }
    }
    EXPECT_LT(worst_row, 1e-10);
    // Whitened covariance: unit diagonal (exactly, up to eps), near zero within each neighbourhood.
    const Eigen::MatrixXd W = as_matrix(w, C);
    const Eigen::MatrixXd white = W * CC * W.transpose();
    for (int j = 0; j < C; ++j) {
        worst_diag = std::max(worst_diag, std::fabs(white(j, j) - 1));
        for (const int k : nb[j])
            if (k != j) worst_off = std::max(worst_off, std::fabs(white(j, k)));
    }
    EXPECT_LT(worst_diag, 1e-6);
    EXPECT_LT(worst_off, 0.1) << "local whitening far from identity over a neighbourhood";
    RecordProperty("max_offdiag_within_neighbourhood", std::to_string(worst_off));
    std::printf("local ZCA, C=%d R=%d: max |W CC Wt - I| off-diagonal within a neighbourhood %.4f\n", C, R, worst_off);
}

TEST(Whiten, NoWeightAcrossShanks) {
    const int C = 16;
    const ks::Probe p = linear_probe(C, 20, 2, 15);
    std::vector<double> cc = spatial_covariance(C, 3, 4.0);  // strong correlations across the shank boundary too
    const auto w = ks::whiten::local_zca(cc, C, ks::whiten::neighbourhoods(p, 32));
    for (int j = 0; j < C; ++j)
        for (int k = 0; k < C; ++k)
            if (p.kcoords[j] != p.kcoords[k]) {
                ASSERT_EQ(w[j * C + k], 0.0) << j << "," << k;
            }
}

TEST(Whiten, OneChannel) {
    const std::vector<double> cc = {400.0};
    const auto w = ks::whiten::local_zca(cc, 1, ks::whiten::neighbourhoods(linear_probe(1), 32));
    ASSERT_EQ(w.size(), 1u);
    EXPECT_NEAR(w[0], 1 / std::sqrt(400.0 + 1e-6), 1e-15);
    const auto inv = ks::whiten::whitening_inverse(w, 1);
    EXPECT_NEAR(inv[0], 1 / (w[0] + 1e-5), 1e-14);
}

TEST(Whiten, FlatChannelsGiveFiniteMatrices) {
    const int C = 10;
    auto cc = spatial_covariance(C, 4);
    for (int k = 0; k < C; ++k) cc[3 * C + k] = cc[k * C + 3] = 0.0;  // channel 3 all zero
    const auto nb = ks::whiten::neighbourhoods(linear_probe(C), 5);
    const auto w = ks::whiten::local_zca(cc, C, nb);
    for (const double v : w) ASSERT_TRUE(std::isfinite(v));
    EXPECT_NEAR(w[3 * C + 3], 1000.0, 1e-6);  // (0 + 1e-6)^(-1/2)
    for (int k = 0; k < C; ++k)
        if (k != 3) {
            EXPECT_NEAR(w[3 * C + k], 0.0, 1e-9) << "flat channel's row mixes in channel " << k;
        }
    // Applied to data whose channel 3 is zero, the flat channel's output stays (near) zero.
    auto x = random_block(C, 64, 8);
    for (int t = 0; t < 64; ++t) x[3 * 64 + t] = 0.f;
    std::vector<float> w32(w.begin(), w.end()), out(x.size());
    run_apply(ks::Device::open("cpu"), w32, C, C, x, 64, 64, out, 64);
    for (int t = 0; t < 64; ++t) EXPECT_NEAR(out[3 * 64 + t], 0.f, 1e-5f);
    for (const float v : out) ASSERT_TRUE(std::isfinite(v));
    const auto inv = ks::whiten::whitening_inverse(w, C);
    for (const double v : inv) ASSERT_TRUE(std::isfinite(v));

    // Every channel flat (an all-zero recording): W = 1000 I, inverse = I / (1000 + 1e-5).
    const std::vector<double> zero(static_cast<size_t>(C) * C, 0.0);
    const auto wz = ks::whiten::local_zca(zero, C, nb);
    const auto iz = ks::whiten::whitening_inverse(wz, C);
    for (int i = 0; i < C; ++i)
        for (int k = 0; k < C; ++k) {
            EXPECT_NEAR(wz[i * C + k], i == k ? 1000.0 : 0.0, 1e-9);
            EXPECT_NEAR(iz[i * C + k], i == k ? 1 / (1000.0 + 1e-5) : 0.0, 1e-15);
        }
}

TEST(Whiten, InverseUndoesTheRidgedMatrix) {
    const int C = 20;
    const auto cc = spatial_covariance(C, 5);
    const auto w = ks::whiten::local_zca(cc, C, ks::whiten::neighbourhoods(linear_probe(C), 8));
    const auto inv = ks::whiten::whitening_inverse(w, C);
    const Eigen::MatrixXd prod = (as_matrix(w, C) + 1e-5 * Eigen::MatrixXd::Identity(C, C)) * as_matrix(inv, C);
    EXPECT_LT((prod - Eigen::MatrixXd::Identity(C, C)).cwiseAbs().maxCoeff(), 1e-10);
}

}  // namespace
