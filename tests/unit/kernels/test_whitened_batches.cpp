// WhitenedBatches: the batches later stages see are W·x (or M_b·W·x with a motion) over the batch
// plus its context, edge samples repeated, computed here independently in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "test_support.hpp"
#include "ks/device.hpp"
#include "ks/filtered.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/npy.hpp"
#include "ks/stages/batches.hpp"

namespace fs = std::filesystem;
using ks::test::TempDir;
using ks::test::exit_code_of;

namespace {

constexpr int kC = 6;
constexpr int64_t kN = 250;

// probe.json (2 columns, 20 µm rows), filter/ with float16 samples x[c][t], whiten/whiten.npy = W.
struct Work {
    TempDir dir;
    std::vector<float> x;   // C x N, the values as stored (float16-exact)
    std::vector<float> w;   // C x C
    ks::Probe probe;

    Work() {
        for (int c = 0; c < kC; ++c) {
            probe.chanMap.push_back(c);
            probe.xc.push_back((c % 2) * 32.0);
            probe.yc.push_back((c / 2) * 20.0);
            probe.kcoords.push_back(0);
        }
        std::ofstream(dir / "probe.json")
            << R"({"chanMap": [0,1,2,3,4,5], "xc": [0,32,0,32,0,32], "yc": [0,0,20,20,40,40], "kcoords": [0,0,0,0,0,0], "n_chan": 6})";
        fs::create_directories(dir / "filter");
        fs::create_directories(dir / "whiten");
        std::mt19937 rng(5);
        std::normal_distribution<float> N(0.f, 3.f);
        x.resize(kC * kN);
        std::vector<uint16_t> stored(kC * kN);
        for (int64_t t = 0; t < kN; ++t)
            for (int c = 0; c < kC; ++c) {
                const uint16_t h = ks::float_to_half(N(rng));
                stored[t * kC + c] = h;   // time-major on disk
                x[c * kN + t] = ks::half_to_float(h);
            }
        std::ofstream(dir / "filter/filtered.bin", std::ios::binary)
            .write(reinterpret_cast<const char*>(stored.data()), stored.size() * 2);
        std::ofstream(dir / "filter/filtered.json")
            << R"({"format": "ks-filtered", "version": 1, "dtype": "float16", "n_channels": 6, "n_samples": 250,)"
            << R"( "imin": 0, "fs": 30000.0, "scale": 1.0})";
        std::ofstream(dir / "filter/filter.json") << "{}";
        w.resize(kC * kC);
        for (int i = 0; i < kC; ++i)
            for (int j = 0; j < kC; ++j) w[i * kC + j] = i == j ? 1.5f : (std::abs(i - j) == 1 ? -0.25f : 0.f);
        ks::write_npy(dir / "whiten/whiten.npy", {kC, kC}, w.data());
        std::ofstream(dir / "whiten/whiten.json") << "{}";
    }

    // m (C x C) applied to the samples [t0, t0 + n) with edges repeated, in double.
    std::vector<double> expect(const std::vector<float>& m, int64_t t0, int64_t n) const {
        std::vector<double> out(kC * n, 0.0);
        for (int i = 0; i < kC; ++i)
            for (int64_t k = 0; k < n; ++k) {
                const int64_t t = std::clamp<int64_t>(t0 + k, 0, kN - 1);
                for (int j = 0; j < kC; ++j) out[i * n + k] += static_cast<double>(m[i * kC + j]) * x[j * kN + t];
            }
        return out;
    }
};

}  // namespace

TEST(WhitenedBatches, BatchesAreTheWhitenedWindowWithEdgesRepeated) {
    Work work;
    const ks::Device dev = ks::Device::open("cpu", 1);
    const ks::WhitenedBatches wb(work.dir.path(), dev, 100, 7);
    EXPECT_EQ(wb.n_batches(), 3);
    EXPECT_EQ(wb.batch_length(2), 50);
    std::vector<float> scratch, out;
    for (int b = 0; b < 3; ++b) {
        const int64_t n = wb.read(b, scratch, out);
        ASSERT_EQ(n, wb.batch_length(b) + 14);
        const auto want = work.expect(work.w, wb.batch_start(b) - 7, n);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(out[i], want[i], 1e-4) << "batch " << b << " at " << i;
    }
}

TEST(WhitenedBatches, MotionAppliesTheBatchsKrigingMatrixAfterWhitening) {
    Work work;
    const ks::Device dev = ks::Device::open("cpu", 1);
    ks::WhitenedBatches wb(work.dir.path(), dev, 100, 3);
    ks::drift::MotionEstimate m;
    m.status = ks::drift::MotionStatus::ok;
    m.n_batches = 3;
    m.n_blocks = 1;
    m.dshift = {0.0, 7.5, -4.0};
    m.yblk = {20.0};
    wb.use_motion(m, 20.0);
    EXPECT_TRUE(wb.corrected());
    const ks::drift::Kriging k(work.probe.xc, work.probe.yc, work.probe.kcoords, 20.0);
    std::vector<float> scratch, out;
    for (int b = 0; b < 3; ++b) {
        const int64_t n = wb.read(b, scratch, out);
        const std::vector<double> mb = k.matrix(std::vector<double>{m.dshift[b]}, m.yblk);
        // M_b · W in double, then applied.
        std::vector<float> mw(kC * kC, 0.f);
        for (int i = 0; i < kC; ++i)
            for (int j = 0; j < kC; ++j) {
                double s = 0;
                for (int l = 0; l < kC; ++l) s += mb[i * kC + l] * work.w[l * kC + j];
                mw[i * kC + j] = static_cast<float>(s);
            }
        const auto want = work.expect(mw, wb.batch_start(b) - 3, n);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(out[i], want[i], 1e-4) << "batch " << b << " at " << i;
    }
    // A motion that is not ok switches the correction off again.
    m.status = ks::drift::MotionStatus::too_few_spikes;
    wb.use_motion(m, 20.0);
    EXPECT_FALSE(wb.corrected());
}

TEST(WhitenedBatches, RangesUseEachSamplesOwnBatchMatrixWhateverTheRange) {
    Work work;
    const ks::Device dev = ks::Device::open("cpu", 1);
    ks::WhitenedBatches wb(work.dir.path(), dev, 100, 0);
    ks::drift::MotionEstimate m;
    m.status = ks::drift::MotionStatus::ok;
    m.n_batches = 3;
    m.n_blocks = 1;
    m.dshift = {0.0, 7.5, -4.0};
    m.yblk = {20.0};
    wb.use_motion(m, 20.0);
    // Reference: sample s (clamped into the recording's batches) from read(b) of its own batch.
    std::vector<float> scratch, out;
    std::vector<std::vector<float>> per_batch(3);
    for (int b = 0; b < 3; ++b) wb.read(b, scratch, per_batch[b]);
    auto want = [&](int64_t s, int c) {
        const int64_t sc = std::clamp<int64_t>(s, 0, wb.n_samples() - 1);
        const int b = static_cast<int>(sc / 100);
        const int64_t len = wb.batch_length(b);
        // Outside the recording the edge sample is repeated, whitened with the edge batch's matrix.
        return per_batch[b][static_cast<size_t>(c) * len + (sc - wb.batch_start(b))];
    };
    for (auto [start, length, context] : {std::tuple<int64_t, int64_t, int64_t>{0, 300, 0}, {37, 120, 25},
                                          {-5, 40, 10}, {150, 200, 30}, {95, 10, 4}}) {
        const int64_t n = wb.read_range(start, length, context, scratch, out);
        ASSERT_EQ(n, length + 2 * context);
        for (int c = 0; c < kC; ++c)
            for (int64_t i = 0; i < n; ++i)
                ASSERT_NEAR(out[static_cast<size_t>(c) * n + i], want(start - context + i, c), 1e-5)
                    << "range " << start << "+" << length << " ctx " << context << " ch " << c << " at " << i;
    }
}

TEST(WhitenedBatches, MissingStagesAreUsageErrorsNamingWhatToRun) {
    Work work;
    const ks::Device dev = ks::Device::open("cpu", 1);
    fs::remove(work.dir / "whiten/whiten.json");
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { ks::WhitenedBatches(work.dir.path(), dev, 100, 3); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("ks-whiten"), std::string::npos) << msg;
    std::ofstream(work.dir / "whiten/whiten.json") << "{}";
    const std::vector<float> bad(4 * 4, 1.f);
    ks::write_npy(work.dir / "whiten/whiten.npy", {4, 4}, bad.data());
    EXPECT_EQ(exit_code_of([&] { ks::WhitenedBatches(work.dir.path(), dev, 100, 3); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("whiten.npy"), std::string::npos) << msg;
}
