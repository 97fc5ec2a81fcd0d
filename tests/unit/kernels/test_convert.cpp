// convert_samples: CPU against a naive loop; CUDA against CPU where a GPU exists.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "ks/device.hpp"
#include "ks/error.hpp"
#include "ks/kernels/convert.hpp"

namespace {

template <class T>
std::vector<T> random_samples(int64_t n, int stride, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<T> v(static_cast<std::size_t>(n * stride));
    for (auto& x : v) x = static_cast<T>(static_cast<int32_t>(rng() % 60000) - (std::is_unsigned<T>::value ? 0 : 30000));
    return v;
}

template <class T>
void check_against_naive(ks::Dtype dtype, float offset, float scale, float shift, bool invert) {
    const int64_t n = 1237;  // not a multiple of any block size
    const int stride = 7;
    const std::vector<int> rows = {5, 0, 3};
    const auto raw = random_samples<T>(n, stride, 42);
    std::vector<float> out(rows.size() * n, -1.f);
    ks::kernels::ConvertArgs a;
    a.dtype = dtype;
    a.in = raw.data();
    a.n_samples = n;
    a.row_stride = stride;
    a.rows = rows.data();
    a.n_rows = static_cast<int>(rows.size());
    a.offset = offset;
    a.scale = scale;
    a.shift = shift;
    a.invert = invert;
    a.out = out.data();
    ks::kernels::convert_samples(ks::Device::open("cpu"), a);
    for (std::size_t c = 0; c < rows.size(); ++c)
        for (int64_t t = 0; t < n; ++t) {
            float want = (static_cast<float>(raw[t * stride + rows[c]]) - offset) * scale + shift;
            if (invert) want = -want;
            ASSERT_EQ(out[c * n + t], want) << "c=" << c << " t=" << t;
        }
    if (ks::gpu_info().count == 0) return;
    std::vector<float> gpu(out.size(), -1.f);
    a.out = gpu.data();
    ks::kernels::convert_samples(ks::Device::open("cuda"), a);
    EXPECT_EQ(gpu, out);  // same body, each step rounded: bit-identical
}

TEST(Convert, Int16MatchesNaive) { check_against_naive<int16_t>(ks::Dtype::int16, 0, 1, 0, false); }
TEST(Convert, Uint16SubtractsOffset) { check_against_naive<uint16_t>(ks::Dtype::uint16, 32768, 1, 0, false); }
TEST(Convert, Int32ScaleShiftInvert) { check_against_naive<int32_t>(ks::Dtype::int32, 0, 0.195f, -3.f, true); }
TEST(Convert, Float32) { check_against_naive<float>(ks::Dtype::float32, 0, 2.5f, 1.f, false); }

TEST(Convert, CudaMatchesCpuOrSkips) {
    if (ks::gpu_info().count == 0) GTEST_SKIP() << "no GPU: " << ks::gpu_info().why_not;
    check_against_naive<int16_t>(ks::Dtype::int16, 0, 0.5f, 0.25f, true);
}

TEST(Device, CpuAlwaysOpens) {
    const ks::Device d = ks::Device::open("cpu", 2);
    EXPECT_FALSE(d.is_cuda());
    EXPECT_EQ(d.threads(), 2);
    EXPECT_NE(d.describe().find("cpu"), std::string::npos);
}

TEST(Device, AutoFallsBackAndCudaFailsCleanlyWithoutGpu) {
    if (ks::gpu_info().count > 0) GTEST_SKIP() << "a GPU is present; this checks the no-GPU path";
    EXPECT_FALSE(ks::Device::open("auto").is_cuda());
    try {
        ks::Device::open("cuda");
        FAIL() << "--device cuda succeeded without a GPU";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::environment);
        EXPECT_NE(std::string(e.what()).find("no usable GPU"), std::string::npos);
    }
}

}  // namespace
