// Motion on disk: external motion (JSON, SpikeInterface folder, ks-sim gt/) turned into per-batch
// shifts, and the drift/ folder reader with what it rejects (formats/motion.md).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/kernels/motion_files.hpp"
#include "ks/npy.hpp"
#include "ks/provenance.hpp"

namespace fs = std::filesystem;
using ks::test::TempDir;
using ks::test::exit_code_of;

namespace {

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A displacement linear in time, d(t, depth_j) = (j + 1) * t µm, on bins every 0.5 s from 0.25 s.
ks::drift::ExternalMotion linear_motion(int n_t, int n_d) {
    ks::drift::ExternalMotion e;
    for (int i = 0; i < n_t; ++i) e.time_s.push_back(0.25 + 0.5 * i);
    for (int j = 0; j < n_d; ++j) e.depth_um.push_back(100.0 * j);
    for (int i = 0; i < n_t; ++i)
        for (int j = 0; j < n_d; ++j) e.displacement_um.push_back((j + 1) * e.time_s[i]);
    return e;
}

}  // namespace

TEST(ExternalMotion, JsonFileIsRead) {
    TempDir dir;
    write_text(dir / "m.json",
               R"({"time_bins_s": [1, 2, 3], "depth_bins_um": [0, 200],
                   "displacement_um": [[1, 2], [3, 4], [5, 6]]})");
    const auto e = ks::drift::load_external_motion(dir / "m.json");
    EXPECT_EQ(e.time_s, (std::vector<double>{1, 2, 3}));
    EXPECT_EQ(e.depth_um, (std::vector<double>{0, 200}));
    EXPECT_EQ(e.displacement_um, (std::vector<double>{1, 2, 3, 4, 5, 6}));
    // Rigid: one depth, rows may be plain numbers.
    write_text(dir / "r.json", R"({"time_bins_s": [1, 2], "depth_bins_um": [500], "displacement_um": [4, [5]]})");
    const auto r = ks::drift::load_external_motion(dir / "r.json");
    EXPECT_EQ(r.displacement_um, (std::vector<double>{4, 5}));
}

TEST(ExternalMotion, BadJsonIsUsageNamingTheFile) {
    TempDir dir;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"notjson.json", "{time"},
        {"missing.json", R"({"time_bins_s": [1], "depth_bins_um": [0]})"},
        {"rows.json", R"({"time_bins_s": [1, 2], "depth_bins_um": [0], "displacement_um": [1]})"},
        {"cols.json", R"({"time_bins_s": [1], "depth_bins_um": [0, 1], "displacement_um": [[1]]})"},
        {"order.json", R"({"time_bins_s": [2, 1], "depth_bins_um": [0], "displacement_um": [1, 2]})"},
        {"depth.json", R"({"time_bins_s": [1], "depth_bins_um": [5, 5], "displacement_um": [[1, 2]]})"},
        {"text.json", R"({"time_bins_s": [1], "depth_bins_um": [0], "displacement_um": ["a"]})"},
        {"empty.json", R"({"time_bins_s": [], "depth_bins_um": [0], "displacement_um": []})"},
    };
    for (const auto& [name, text] : cases) {
        write_text(dir / name, text);
        std::string msg;
        EXPECT_EQ(exit_code_of([&] { ks::drift::load_external_motion(dir / name); }, &msg), ks::Exit::usage) << name;
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
    }
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { ks::drift::load_external_motion(dir / "absent"); }, &msg), ks::Exit::usage);
    fs::create_directories(dir / "emptydir");
    EXPECT_EQ(exit_code_of([&] { ks::drift::load_external_motion(dir / "emptydir"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("displacement_seg0.npy"), std::string::npos) << msg;
}

TEST(ExternalMotion, SpikeInterfaceAndKsSimFolders) {
    TempDir dir;
    const auto want = linear_motion(4, 3);
    fs::create_directories(dir / "si");
    ks::write_npy(dir / "si/temporal_bins_s_seg0.npy", want.time_s);
    ks::write_npy(dir / "si/spatial_bins_um.npy", want.depth_um);
    ks::write_npy(dir / "si/displacement_seg0.npy", {4, 3}, want.displacement_um.data());
    const auto si = ks::drift::load_external_motion(dir / "si");
    EXPECT_EQ(si.displacement_um, want.displacement_um);
    EXPECT_EQ(si.depth_um, want.depth_um);

    // ks-sim writes float32 arrays in gt/; the folder or its parent is accepted.
    fs::create_directories(dir / "sim/gt");
    std::vector<float> t(want.time_s.begin(), want.time_s.end()), d(want.depth_um.begin(), want.depth_um.end()),
        m(want.displacement_um.begin(), want.displacement_um.end());
    ks::write_npy(dir / "sim/gt/motion_time_s.npy", t);
    ks::write_npy(dir / "sim/gt/motion_depth_um.npy", d);
    ks::write_npy(dir / "sim/gt/motion.npy", {4, 3}, m.data());
    for (const std::string p : {dir / "sim", dir / "sim/gt"}) {
        const auto g = ks::drift::load_external_motion(p);
        ASSERT_EQ(g.displacement_um.size(), 12u);
        for (size_t i = 0; i < 12; ++i) EXPECT_NEAR(g.displacement_um[i], want.displacement_um[i], 1e-5);
    }
    // Shape disagreements name the file.
    ks::write_npy(dir / "si/displacement_seg0.npy", {3, 3}, want.displacement_um.data());
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { ks::drift::load_external_motion(dir / "si"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("displacement_seg0.npy"), std::string::npos) << msg;
    ks::write_npy(dir / "si/displacement_seg1.npy", {3, 3}, want.displacement_um.data());
    EXPECT_EQ(exit_code_of([&] { ks::drift::load_external_motion(dir / "si"); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("segment"), std::string::npos) << msg;
}

TEST(ExternalMotion, BatchShiftIsMinusTheBatchMean) {
    // Displacement (j+1)·t, linear in time, so its mean over a batch is its value at the batch's
    // middle; beyond the last bin centre (t > 1.75 s) it stays at the last value.
    const auto e = linear_motion(4, 2);
    const double fs = 1000;
    const int64_t batch = 500, n_samples = 2300;   // batches [0,0.5) [0.5,1) [1,1.5) [1.5,2) [2,2.3) s
    const auto m = ks::drift::motion_from_external(e, batch, 5, n_samples, fs, /*imin=*/0);
    EXPECT_EQ(m.status, ks::drift::MotionStatus::ok);
    ASSERT_EQ(m.n_blocks, 2);
    EXPECT_EQ(m.yblk, e.depth_um);
    // Batch 0: [0, 0.5) s: constant 0.25 up to 0.25 s, then linear: mean = 0.25/2 + (0.25+0.5)/2/2 = 0.3125.
    EXPECT_NEAR(m.at(0, 0), -0.3125, 1e-9);
    EXPECT_NEAR(m.at(1, 0), -0.75, 1e-9);
    EXPECT_NEAR(m.at(2, 1), -2 * 1.25, 1e-9);
    EXPECT_NEAR(m.at(4, 0), -1.75, 1e-9);   // wholly beyond the last centre
    EXPECT_NEAR(m.at(4, 1), -3.5, 1e-9);
    // imin shifts the batches in the recording's time: batch 0 then covers [1, 1.5) s.
    const auto s = ks::drift::motion_from_external(e, batch, 1, 500, fs, /*imin=*/1000);
    EXPECT_NEAR(s.at(0, 0), -1.25, 1e-9);
}

namespace {

// A drift/ folder as ks-drift writes it.
void write_drift(const std::string& work, const std::string& status, int nb, int nblk, int64_t batch_size,
                 const std::vector<double>& dshift, const std::vector<double>& yblk, int version = 1) {
    fs::create_directories(work + "/drift");
    ks::write_npy(work + "/drift/dshift.npy", {nb, nblk}, dshift.data());
    ks::write_npy(work + "/drift/yblk.npy", {static_cast<int64_t>(yblk.size())}, yblk.data());
    ks::JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-motion");
    j.key("version").value(version);
    j.key("status").value(status);
    j.key("source").value("estimated");
    j.key("n_batches").value(nb);
    j.key("n_blocks").value(nblk);
    j.key("batch_size").value(batch_size);
    j.key("sig_interp").value(20.0);
    j.end_object();
    ks::Provenance p;
    p.tool = "ks-drift";
    p.stage = "drift";
    p.extra_json = j.str();
    ks::write_provenance(work + "/drift/drift.json", p);
}

}  // namespace

TEST(MotionFile, ReadsWhatTheStageWrites) {
    TempDir dir;
    write_drift(dir.path(), "ok", 3, 2, 1000, {1, 2, 3, 4, 5, 6}, {10, 50});
    const auto f = ks::drift::read_motion(dir.path(), 1000, 3);
    EXPECT_EQ(f.motion.status, ks::drift::MotionStatus::ok);
    EXPECT_EQ(f.motion.at(2, 1), 6);
    EXPECT_EQ(f.motion.yblk, (std::vector<double>{10, 50}));
    EXPECT_EQ(f.sig_interp_um, 20);
    EXPECT_EQ(f.source, "estimated");
}

TEST(MotionFile, RejectsWhatDoesNotFit) {
    struct Case {
        const char* what;
        std::string status;
        int nb, nblk;
        std::vector<double> d, y;
        int64_t expect_batch;
        int expect_nb;
        int version;
        const char* names;   // file the message must name
    };
    const double inf = INFINITY;
    const std::vector<Case> cases = {
        {"other batch size", "ok", 2, 1, {0, 0}, {5}, 500, 2, 1, "drift.json"},
        {"other batch count", "ok", 2, 1, {0, 0}, {5}, 1000, 3, 1, "drift.json"},
        {"unknown status", "great", 2, 1, {0, 0}, {5}, 1000, 2, 1, "drift.json"},
        {"newer version", "ok", 2, 1, {0, 0}, {5}, 1000, 2, 2, "drift.json"},
        {"non-finite", "ok", 2, 1, {0, inf}, {5}, 1000, 2, 1, "dshift.npy"},
        {"yblk not increasing", "ok", 1, 2, {0, 0}, {5, 5}, 1000, 1, 1, "yblk.npy"},
        {"nonzero when disabled", "disabled", 2, 1, {0, 1}, {5}, 1000, 2, 1, "dshift.npy"},
    };
    for (const Case& c : cases) {
        TempDir dir;
        write_drift(dir.path(), c.status, c.nb, c.nblk, 1000, c.d, c.y, c.version);
        std::string msg;
        EXPECT_EQ(exit_code_of([&] { ks::drift::read_motion(dir.path(), c.expect_batch, c.expect_nb); }, &msg),
                  ks::Exit::usage)
            << c.what;
        EXPECT_NE(msg.find(c.names), std::string::npos) << c.what << ": " << msg;
    }
    // dshift.npy with a shape that disagrees with drift.json.
    TempDir dir;
    write_drift(dir.path(), "ok", 2, 1, 1000, {0, 0}, {5});
    ks::write_npy(dir / "drift/dshift.npy", {1, 2}, std::vector<double>{0, 0}.data());
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { ks::drift::read_motion(dir.path(), 1000, 2); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("dshift.npy"), std::string::npos) << msg;
    TempDir none;
    EXPECT_EQ(exit_code_of([&] { ks::drift::read_motion(none.path(), 1000, 2); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find("ks-drift"), std::string::npos) << msg;
}
