// End to end on a simulated recording: ks-sim (5 s, smoke preset, no drift) -> ks-filter ->
// ks-whiten, then whitening, wTEMP learned from the data, and universal detection batch by batch.
// The ground-truth spikes of the large units (> 100 µV) must be found (recall > 0.9).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/dtype.hpp"
#include "ks/filtered.hpp"
#include "ks/kernels/apply_matrix.hpp"
#include "ks/kernels/universal_templates.hpp"
#include "ks/npy.hpp"
#include "ks/probe.hpp"

namespace {

namespace fs = std::filesystem;

int run(const std::string& cmd) { return std::system((cmd + " > /dev/null 2>&1").c_str()); }

TEST(UniversalSim, RecallOfLargeUnits) {
    const std::string bin = KS_BIN_DIR;
    for (const char* tool : {"ks-sim", "ks-filter", "ks-whiten"})
        if (!fs::exists(bin + "/" + tool)) GTEST_SKIP() << bin << "/" << tool << " not built";
    const fs::path dir = fs::path(::testing::TempDir()) / ("ks_universal_sim_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string sim = (dir / "sim").string(), work = (dir / "work").string();
    ASSERT_EQ(run(bin + "/ks-sim --out " + sim + " --preset smoke --duration 5 --drift none --seed 1 -q"), 0);
    ASSERT_EQ(run(bin + "/ks-filter --rec " + sim + "/recording.bin --probe " + sim + "/probe.json --work " + work +
                  " --params " + sim + "/params.json -q"),
              0);
    ASSERT_EQ(run(bin + "/ks-whiten --work " + work + " -q"), 0);

    const ks::FilteredRecording fr(work);
    const int C = fr.n_channels();
    const int64_t N = fr.n_samples();
    std::vector<float> filt(static_cast<size_t>(C) * N), white(static_cast<size_t>(C) * N);
    fr.read(0, N, filt.data());
    const auto W = ks::read_npy_checked(work + "/whiten/whiten.npy", ks::Dtype::float32, 2).as<float>();
    ks::kernels::ApplyMatrixArgs am;
    am.w = W.data();
    am.n_out = am.n_in = C;
    am.x = filt.data();
    am.n_samples = am.ld_x = am.ld_out = N;
    am.out = white.data();
    ks::kernels::apply_matrix(ks::Device::open("cpu"), am);

    ks::kernels::SnippetCollector col(ks::kernels::SnippetSettings{});
    ASSERT_TRUE(col.add_batch(white.data(), C, N, N));
    const auto wtemp = ks::kernels::universal_wtemp(col.clips(), 61, 6);
    const auto probe = ks::Probe::load(work + "/probe.json");
    const auto grid = ks::kernels::make_universal_grid(probe, {});

    // Batches of 2 s with nt samples of context, zeros beyond the recording.
    const int64_t NT = 60000, ctx = 61;
    std::vector<int64_t> troughs;
    std::vector<double> ys;
    for (int64_t b0 = 0; b0 < N; b0 += NT) {
        const int64_t len = std::min(NT, N - b0), n = len + 2 * ctx;
        std::vector<float> x(static_cast<size_t>(C) * n, 0.f);
        for (int c = 0; c < C; ++c)
            for (int64_t t = 0; t < n; ++t) {
                const int64_t u = b0 - ctx + t;
                if (u >= 0 && u < N) x[c * n + t] = white[c * N + u];
            }
        ks::kernels::UniversalDetectArgs a;
        a.x = x.data();
        a.n_chan = C;
        a.n_samples = a.ld_x = n;
        a.context = ctx;
        a.wtemp = wtemp.data();
        a.nk = 6;
        a.nt = 61;
        a.nt0min = 20;
        a.grid = &grid;
        for (const auto& s : ks::kernels::detect_universal(ks::Device::open("cpu"), a)) {
            troughs.push_back(b0 + s.t_trough - ctx);
            ys.push_back(s.y_um);
        }
    }
    ASSERT_TRUE(std::is_sorted(troughs.begin(), troughs.end()));

    const auto st = ks::read_npy(sim + "/gt/spike_times.npy").as<int64_t>();
    const auto sc = ks::read_npy(sim + "/gt/spike_clusters.npy").as<int>();
    const auto amp = ks::read_npy(sim + "/gt/unit_amplitudes_uv.npy").as<float>();
    const auto pos = ks::read_npy(sim + "/gt/unit_positions.npy").as<float>();
    const double ymin = *std::min_element(probe.yc.begin(), probe.yc.end());
    const double ymax = *std::max_element(probe.yc.begin(), probe.yc.end());
    int64_t large = 0, found = 0;
    for (size_t i = 0; i < st.size(); ++i) {
        if (amp[sc[i]] <= 100.f) continue;
        ++large;
        const double uy = std::clamp(static_cast<double>(pos[sc[i] * 3 + 1]), ymin, ymax);
        auto lo = std::lower_bound(troughs.begin(), troughs.end(), st[i] - 10);
        for (auto it = lo; it != troughs.end() && *it <= st[i] + 10; ++it)
            if (std::fabs(ys[it - troughs.begin()] - uy) <= 80.0) {
                ++found;
                break;
            }
    }
    ASSERT_GT(large, 100);
    const double recall = static_cast<double>(found) / large;
    EXPECT_GT(recall, 0.9) << found << " of " << large << " spikes of units > 100 µV found; " << troughs.size()
                           << " detections in all";
    RecordProperty("recall", std::to_string(recall));
    fs::remove_all(dir);
}

}  // namespace
