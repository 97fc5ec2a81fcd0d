// Raw recording reader (formats/recording.md): every dtype, channel selection, edge replication,
// time range, scaling, batches, raw reads and every input error.
#include <gtest/gtest.h>

#include <cstdlib>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/recording.hpp"

namespace {

namespace fs = std::filesystem;
using ks::Dtype;
using ks::Error;
using ks::Exit;
using ks::Probe;
using ks::Recording;
using ks::Settings;

using ks::test::TempDir;

Probe make_probe(const std::vector<int>& rows) {
    Probe p;
    p.name = "test_probe.json";
    p.chanMap = rows;
    for (size_t i = 0; i < rows.size(); ++i) {
        p.xc.push_back(static_cast<double>(i % 2) * 32);
        p.yc.push_back(static_cast<double>(i) * 20);
        p.kcoords.push_back(0);
    }
    return p;
}

Settings data_settings(int n_chan_bin, const std::string& dtype, double fs_hz = 1000) {
    Settings s;
    s.set_from_string("n_chan_bin=" + std::to_string(n_chan_bin));
    s.set_from_string("data_dtype=" + dtype);
    char buf[64];
    std::snprintf(buf, sizeof buf, "fs=%.17g", fs_hz);
    s.set_from_string(buf);
    return s;
}

// A file's contents as exact doubles, row-major (sample, channel row), and its dtype.
struct FileData {
    Dtype dtype;
    int64_t n_samples;
    int n_chan_bin;
    std::vector<double> x;
    double at(int64_t t, int r) const { return x[static_cast<size_t>(t * n_chan_bin + r)]; }
};

// Values that reach each dtype's extremes (int32 beyond float's 24-bit mantissa, so the
// int -> float rounding is exercised).
FileData make_data(Dtype d, int64_t n_samples, int n_chan_bin) {
    FileData f{d, n_samples, n_chan_bin, {}};
    f.x.resize(static_cast<size_t>(n_samples * n_chan_bin));
    for (int64_t t = 0; t < n_samples; ++t) {
        for (int r = 0; r < n_chan_bin; ++r) {
            const uint64_t h = static_cast<uint64_t>(t) * 2654435761ULL + static_cast<uint64_t>(r) * 40503ULL + 17;
            double v = 0;
            switch (d) {
                case Dtype::int16: v = static_cast<double>(static_cast<int64_t>(h % 65536) - 32768); break;
                case Dtype::uint16: v = static_cast<double>(h % 65536); break;
                case Dtype::int32:
                    v = static_cast<double>(static_cast<int64_t>(h % 4294967296ULL) - 2147483648LL);
                    break;
                case Dtype::float32:
                    v = static_cast<double>(static_cast<float>(static_cast<double>(h % 20011) * 0.37 - 3000.0 + r));
                    break;
                default: ADD_FAILURE() << "unexpected dtype";
            }
            f.x[static_cast<size_t>(t * n_chan_bin + r)] = v;
        }
    }
    return f;
}

template <class T>
void write_as(const std::string& path, const std::vector<double>& x) {
    std::vector<T> v(x.size());
    for (size_t i = 0; i < x.size(); ++i) v[i] = static_cast<T>(x[i]);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
    ASSERT_TRUE(out.good()) << path;
}

void write_file(const std::string& path, const FileData& f) {
    switch (f.dtype) {
        case Dtype::int16: write_as<int16_t>(path, f.x); break;
        case Dtype::uint16: write_as<uint16_t>(path, f.x); break;
        case Dtype::int32: write_as<int32_t>(path, f.x); break;
        case Dtype::float32: write_as<float>(path, f.x); break;
        default: FAIL() << "unexpected dtype";
    }
}

void write_bytes(const std::string& path, size_t n) {
    std::ofstream out(path, std::ios::binary);
    const std::vector<char> zeros(n, 0);
    out.write(zeros.data(), static_cast<std::streamsize>(n));
}

// The closed form the reader must produce: clamp the index into [imin, imax), pick the row,
// (x - 32768 for uint16) * scale + shift, negate. Computed in double; tests use values where
// the float32 result is exact.
struct Expect {
    const FileData& f;
    std::vector<int> rows;
    int64_t imin, imax;
    double scale = 1, shift = 0;
    bool invert = false;

    float value(int64_t t, int c) const {
        const int64_t tf = imin + std::clamp<int64_t>(t, 0, imax - imin - 1);
        double v = f.at(tf, rows[static_cast<size_t>(c)]);
        if (f.dtype == Dtype::uint16) v -= 32768;
        v = v * scale + shift;
        return static_cast<float>(invert ? -v : v);
    }
    // Index of the first mismatch in out (C x n channel-major), or -1.
    int64_t first_mismatch(int64_t t0, int64_t n, const std::vector<float>& out) const {
        for (size_t c = 0; c < rows.size(); ++c) {
            for (int64_t t = 0; t < n; ++t) {
                const size_t i = c * static_cast<size_t>(n) + static_cast<size_t>(t);
                if (out[i] != value(t0 + t, static_cast<int>(c))) return static_cast<int64_t>(i);
            }
        }
        return -1;
    }
};

std::vector<float> read_window(const Recording& rec, int64_t t0, int64_t n) {
    std::vector<float> out(static_cast<size_t>(rec.n_channels() * n), std::nanf(""));
    rec.read(t0, n, out.data());
    return out;
}

// Expects Error(usage) whose message contains every one of `parts`.
void expect_usage(const std::function<void()>& fn, const std::vector<std::string>& parts) {
    try {
        fn();
        ADD_FAILURE() << "no error thrown; expected Exit::usage mentioning " << parts.front();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage) << e.what();
        for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
}

const std::vector<std::pair<int64_t, int64_t>> kWindows = {
    {0, 1000},    // whole range
    {0, 1},       {999, 1},     {123, 300},  // inside, tile boundaries crossed
    {-7, 20},     // starts before the data
    {990, 25},    // runs past the end
    {-3, 1006},   // both sides
    {-50, 10},    // wholly before: repeats sample 0
    {1000, 10},   // wholly after: repeats the last sample
    {5000, 3},    // far after
    {-100000, 2}, // far before
    {500, 0},     // empty
};

TEST(Recording, ReadsEveryDtypeWithChannelSelectionAndEdgeReplication) {
    TempDir dir;
    const std::vector<int> rows = {3, 0, 2};  // picks and reorders rows of a 5-row file
    for (const char* name : {"int16", "uint16", "int32", "float32"}) {
        SCOPED_TRACE(name);
        const Dtype d = ks::parse_dtype(name, "test");
        const FileData f = make_data(d, 1000, 5);
        const std::string path = dir.file(std::string("rec_") + name + ".bin");
        write_file(path, f);
        const Recording rec(path, data_settings(5, name), make_probe(rows));
        EXPECT_EQ(rec.info().n_samples_file, 1000);
        EXPECT_EQ(rec.info().imin, 0);
        EXPECT_EQ(rec.info().imax, 1000);
        EXPECT_EQ(rec.info().dtype, d);
        EXPECT_EQ(rec.n_channels(), 3);
        EXPECT_EQ(rec.n_samples(), 1000);
        EXPECT_DOUBLE_EQ(rec.info().duration_s(), 1.0);
        const Expect ex{f, rows, 0, 1000};
        for (const auto& [t0, n] : kWindows) {
            const auto out = read_window(rec, t0, n);
            EXPECT_EQ(ex.first_mismatch(t0, n, out), -1) << "t0=" << t0 << " n=" << n;
        }
    }
}

TEST(Recording, EdgeReplicationRepeatsTheFirstAndLastSample) {
    TempDir dir;
    const FileData f = make_data(Dtype::int16, 50, 2);
    const std::string path = dir.file("r.bin");
    write_file(path, f);
    const Recording rec(path, data_settings(2, "int16"), make_probe({1, 0}));
    const auto out = read_window(rec, -3, 56);  // columns 0..2 before, 53..55 after
    for (int t = 0; t < 56; ++t) {
        const int src = std::clamp(t - 3, 0, 49);
        EXPECT_EQ(out[static_cast<size_t>(t)], static_cast<float>(f.at(src, 1))) << t;
        EXPECT_EQ(out[static_cast<size_t>(56 + t)], static_cast<float>(f.at(src, 0))) << t;
    }
}

TEST(Recording, ScaleShiftAndInvertSignInKilosortOrder) {
    TempDir dir;
    struct Case {
        const char* dtype;
        const char* scale;
        const char* shift;
        bool invert;
        double scale_v, shift_v;
    };
    const std::vector<Case> cases = {
        {"int16", "0.5", "-3", true, 0.5, -3},
        {"int16", "None", "7", false, 1, 7},
        {"int16", "2", "None", true, 2, 0},
        {"uint16", "0.25", "1.5", false, 0.25, 1.5},
        {"uint16", "None", "None", true, 1, 0},
        {"float32", "None", "None", true, 1, 0},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string(c.dtype) + " scale=" + c.scale + " shift=" + c.shift +
                     " invert=" + (c.invert ? "1" : "0"));
        const Dtype d = ks::parse_dtype(c.dtype, "test");
        const FileData f = make_data(d, 300, 4);
        const std::string path = dir.file(std::string("s_") + c.dtype + ".bin");
        write_file(path, f);
        Settings s = data_settings(4, c.dtype);
        s.set_from_string(std::string("scale=") + c.scale);
        s.set_from_string(std::string("shift=") + c.shift);
        s.set_from_string(std::string("invert_sign=") + (c.invert ? "true" : "false"));
        const Recording rec(path, s, make_probe({0, 1, 2, 3}));
        Expect ex{f, {0, 1, 2, 3}, 0, 300};
        ex.scale = c.scale_v;
        ex.shift = c.shift_v;
        ex.invert = c.invert;
        for (const auto& [t0, n] : std::vector<std::pair<int64_t, int64_t>>{{-5, 310}, {100, 7}}) {
            EXPECT_EQ(ex.first_mismatch(t0, n, read_window(rec, t0, n)), -1) << "t0=" << t0 << " n=" << n;
        }
    }
}

TEST(Recording, TimeRangeFromTminTmax) {
    TempDir dir;
    const FileData f = make_data(Dtype::int16, 1000, 3);
    const std::string path = dir.file("t.bin");
    write_file(path, f);
    struct Case {
        const char* tmin;
        const char* tmax;
        int64_t imin, imax;
    };
    // fs = 1000 Hz: imin = int(tmin*fs), imax = min(int(tmax*fs), 1000); int() truncates.
    const std::vector<Case> cases = {
        {"0", "inf", 0, 1000},     {"0.1005", "0.9", 100, 900}, {"0.25", "5", 250, 1000},
        {"0", "0.0019", 0, 1},     {"0.999", "inf", 999, 1000},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(std::string("tmin=") + c.tmin + " tmax=" + c.tmax);
        Settings s = data_settings(3, "int16");
        s.set_from_string(std::string("tmin=") + c.tmin);
        s.set_from_string(std::string("tmax=") + c.tmax);
        const Recording rec(path, s, make_probe({2, 1}));
        EXPECT_EQ(rec.info().imin, c.imin);
        EXPECT_EQ(rec.info().imax, c.imax);
        EXPECT_EQ(rec.n_samples(), c.imax - c.imin);
        const Expect ex{f, {2, 1}, c.imin, c.imax};
        const int64_t n = c.imax - c.imin;
        for (const auto& [t0, len] : std::vector<std::pair<int64_t, int64_t>>{{-4, 9}, {0, n}, {n - 3, 8}}) {
            EXPECT_EQ(ex.first_mismatch(t0, len, read_window(rec, t0, len)), -1) << "t0=" << t0;
        }
    }
}

TEST(Recording, ReadsAcrossReadChunks) {
    // 250000 samples x 5 rows x 2 bytes = 2.5 MB: several 1 MiB preads per read.
    TempDir dir;
    const FileData f = make_data(Dtype::int16, 250000, 5);
    const std::string path = dir.file("big.bin");
    write_file(path, f);
    const Recording rec(path, data_settings(5, "int16"), make_probe({4, 1}));
    const Expect ex{f, {4, 1}, 0, 250000};
    for (const auto& [t0, n] : std::vector<std::pair<int64_t, int64_t>>{{-10, 250020}, {104000, 1000}}) {
        EXPECT_EQ(ex.first_mismatch(t0, n, read_window(rec, t0, n)), -1) << "t0=" << t0;
    }
}

TEST(Recording, ReadBatchEqualsReadOfTheSameSpan) {
    TempDir dir;
    const FileData f = make_data(Dtype::int16, 1000, 5);
    const std::string path = dir.file("b.bin");
    write_file(path, f);
    const Recording rec(path, data_settings(5, "int16"), make_probe({3, 0, 2}));
    ks::BatchLayout layout;
    layout.batch_size = 300;
    layout.pad = 61;
    layout.n_samples = rec.n_samples();
    ASSERT_EQ(layout.n_batches(), 4);
    EXPECT_EQ(layout.batch_length(0), 300);
    EXPECT_EQ(layout.batch_length(3), 100);
    std::vector<float> batch;
    for (int64_t b : {0, 1, 3}) {
        rec.read_batch(layout, b, batch);
        const int64_t len = layout.batch_length(b) + 2 * layout.pad;
        ASSERT_EQ(batch.size(), static_cast<size_t>(3 * len)) << b;
        EXPECT_EQ(batch, read_window(rec, layout.batch_start(b) - layout.pad, len)) << "batch " << b;
    }
}

TEST(Recording, CentralPartsOfAllBatchesConcatenateToTheRecording) {
    TempDir dir;
    const FileData f = make_data(Dtype::float32, 1000, 5);
    const std::string path = dir.file("c.bin");
    write_file(path, f);
    Settings s = data_settings(5, "float32");
    s.set_from_string("tmin=0.013");
    const Recording rec(path, s, make_probe({3, 0, 2}));
    const int64_t N = rec.n_samples();
    const int C = rec.n_channels();
    std::vector<std::vector<float>> joined;
    for (const auto& [nt, pad] : std::vector<std::pair<int64_t, int64_t>>{{300, 61}, {256, 20}, {2000, 61}}) {
        ks::BatchLayout layout;
        layout.batch_size = nt;
        layout.pad = pad;
        layout.n_samples = N;
        std::vector<float> all(static_cast<size_t>(C * N));
        std::vector<float> batch;
        int64_t covered = 0;
        for (int64_t b = 0; b < layout.n_batches(); ++b) {
            rec.read_batch(layout, b, batch);
            const int64_t L = layout.batch_length(b), W = L + 2 * pad;
            for (int c = 0; c < C; ++c) {
                std::copy_n(batch.begin() + c * W + pad, L, all.begin() + c * N + layout.batch_start(b));
            }
            covered += L;
        }
        EXPECT_EQ(covered, N);
        joined.push_back(all);
    }
    EXPECT_EQ(joined[0], joined[1]);
    EXPECT_EQ(joined[0], joined[2]);
    EXPECT_EQ(joined[0], read_window(rec, 0, N));
}

TEST(Recording, BatchLayoutCounts) {
    ks::BatchLayout l;
    l.batch_size = 60000;
    l.n_samples = 0;
    EXPECT_EQ(l.n_batches(), 0);
    l.n_samples = 60000;
    EXPECT_EQ(l.n_batches(), 1);
    EXPECT_EQ(l.batch_length(0), 60000);
    l.n_samples = 120001;
    EXPECT_EQ(l.n_batches(), 3);
    EXPECT_EQ(l.batch_length(2), 1);
    EXPECT_EQ(l.batch_start(2), 120000);
    try {
        (void)l.batch_length(3);
        ADD_FAILURE() << "batch 3 of 3 accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::internal);
    }
}

TEST(Recording, ReadRawReturnsFileBytes) {
    TempDir dir;
    const FileData f = make_data(Dtype::uint16, 200, 5);
    const std::string path = dir.file("raw.bin");
    write_file(path, f);
    Settings s = data_settings(5, "uint16");
    s.set_from_string("tmin=0.05");  // raw reads ignore the sorted range
    const Recording rec(path, s, make_probe({1}));
    std::vector<uint16_t> raw(10 * 5);
    rec.read_raw(3, 10, raw.data());
    for (int t = 0; t < 10; ++t) {
        for (int r = 0; r < 5; ++r) EXPECT_EQ(raw[static_cast<size_t>(t * 5 + r)], f.at(3 + t, r));
    }
    rec.read_raw(200, 0, raw.data());
    rec.read_raw(190, 10, raw.data());
    EXPECT_EQ(raw[9 * 5 + 4], f.at(199, 4));
    for (const auto& [t0, n] : std::vector<std::pair<int64_t, int64_t>>{{191, 10}, {-1, 2}}) {
        try {
            rec.read_raw(t0, n, raw.data());
            ADD_FAILURE() << "raw read outside the file accepted: " << t0;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), Exit::internal);
        }
    }
}

TEST(Recording, MoveKeepsTheFileOpen) {
    TempDir dir;
    const FileData f = make_data(Dtype::int16, 100, 2);
    const std::string path = dir.file("m.bin");
    write_file(path, f);
    Recording a(path, data_settings(2, "int16"), make_probe({0, 1}));
    Recording b(std::move(a));
    const Expect ex{f, {0, 1}, 0, 100};
    EXPECT_EQ(ex.first_mismatch(0, 100, read_window(b, 0, 100)), -1);
    const FileData g = make_data(Dtype::int16, 40, 1);
    const std::string path2 = dir.file("m2.bin");
    write_file(path2, g);
    Recording c(path2, data_settings(1, "int16"), make_probe({0}));
    c = std::move(b);
    EXPECT_EQ(c.n_samples(), 100);
    EXPECT_EQ(ex.first_mismatch(-2, 104, read_window(c, -2, 104)), -1);
}

TEST(Recording, ConcurrentReadsAgree) {
    TempDir dir;
    const FileData f = make_data(Dtype::int32, 5000, 6);
    const std::string path = dir.file("th.bin");
    write_file(path, f);
    const Recording rec(path, data_settings(6, "int32"), make_probe({5, 2, 0}));
    const Expect ex{f, {5, 2, 0}, 0, 5000};
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 8; ++k) {
        threads.emplace_back([&, k] {
            for (int i = 0; i < 40; ++i) {
                const int64_t t0 = (k * 997 + i * 331) % 5200 - 100, n = 1 + (k * 13 + i * 57) % 700;
                if (ex.first_mismatch(t0, n, read_window(rec, t0, n)) != -1) ++bad;
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
}

// numpy computes the expectation on its own: np.fromfile, slice [imin:imax], pick rows,
// edge padding by clipped indices, float32 scale/shift/negate.
TEST(Recording, MatchesNumpyReference) {
    if (std::system(KS_PYTHON " -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << KS_PYTHON << " has no numpy";
    TempDir dir;
    const std::string script = dir.file("ref.py");
    {
        std::ofstream py(script);
        py << "import sys, numpy as np\n"
              "d = sys.argv[1]\n"
              "rng = np.random.default_rng(3)\n"
              "x = (rng.standard_normal((3001, 7)) * 40).astype(np.float32)\n"
              "x.tofile(d + '/data.bin')\n"
              "fs, tmin, tmax = 1000.0, 0.1, 2.5\n"
              "imin = max(int(tmin * fs), 0); imax = min(int(tmax * fs), x.shape[0])\n"
              "seg = x[imin:imax][:, [6, 1, 4, 0]]\n"
              "outs = []\n"
              "for t0, n in [(-40, 200), (2350, 100), (1000, 61)]:\n"
              "    idx = np.clip(np.arange(t0, t0 + n), 0, seg.shape[0] - 1)\n"
              "    y = seg[idx].T.astype(np.float32)\n"
              "    y = -((y * np.float32(2.5)) + np.float32(-0.75))\n"
              "    outs.append(np.ascontiguousarray(y).ravel())\n"
              "np.concatenate(outs).astype('<f4').tofile(d + '/expected.bin')\n";
    }
    const std::string cmd = std::string(KS_PYTHON) + " " + script + " " + dir.path();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(dir.file("expected.bin"), std::ios::binary);
    std::vector<float> expected((200 + 100 + 61) * 4);
    in.read(reinterpret_cast<char*>(expected.data()), static_cast<std::streamsize>(expected.size() * 4));
    ASSERT_TRUE(in.good());

    Settings s = data_settings(7, "float32");
    s.set_from_string("tmin=0.1");
    s.set_from_string("tmax=2.5");
    s.set_from_string("scale=2.5");
    s.set_from_string("shift=-0.75");
    s.set_from_string("invert_sign=true");
    const Recording rec(dir.file("data.bin"), s, make_probe({6, 1, 4, 0}));
    ASSERT_EQ(rec.n_samples(), 2400);
    size_t off = 0;
    for (const auto& [t0, n] : std::vector<std::pair<int64_t, int64_t>>{{-40, 200}, {2350, 100}, {1000, 61}}) {
        const auto out = read_window(rec, t0, n);
        for (size_t i = 0; i < out.size(); ++i) {
            ASSERT_NEAR(out[i], expected[off + i], 1e-6 * std::max(1.0f, std::fabs(expected[off + i])))
                << "t0=" << t0 << " element " << i;
        }
        off += out.size();
    }
}

// ---- errors ------------------------------------------------------------------------------

TEST(RecordingErrors, MissingFile) {
    TempDir dir;
    const std::string path = dir.file("nope.bin");
    expect_usage([&] { Recording(path, data_settings(4, "int16"), make_probe({0})); }, {path});
}

TEST(RecordingErrors, Directory) {
    TempDir dir;
    expect_usage([&] { Recording(dir.path(), data_settings(4, "int16"), make_probe({0})); },
                 {dir.path(), "directory"});
}

TEST(RecordingErrors, EmptyFile) {
    TempDir dir;
    const std::string path = dir.file("empty.bin");
    write_bytes(path, 0);
    expect_usage([&] { Recording(path, data_settings(4, "int16"), make_probe({0})); }, {path, "empty"});
}

TEST(RecordingErrors, SizeNotAWholeNumberOfSamples) {
    TempDir dir;
    const std::string path = dir.file("odd.bin");
    write_bytes(path, 1000001);
    try {
        Recording(path, data_settings(64, "int16"), make_probe({0}));
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage);
        EXPECT_EQ(std::string(e.what()), path + ": 1000001 bytes is not a whole number of samples of 64 channels x 2 "
                                                "bytes (int16); is n_chan_bin right?");
    }
    // 12 bytes are 3 int16 samples of 2 channels but not whole float32 samples of 2 channels.
    write_bytes(path, 12);
    expect_usage([&] { Recording(path, data_settings(2, "float32"), make_probe({0})); },
                 {path, "12 bytes", "2 channels x 4 bytes (float32)"});
}

TEST(RecordingErrors, NChanBinRequired) {
    TempDir dir;
    const std::string path = dir.file("r.bin");
    write_bytes(path, 64);
    Settings s;
    try {
        Recording(path, s, make_probe({0}));
        ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage);
        EXPECT_EQ(std::string(e.what()),
                  "setting n_chan_bin is required (number of channels in the file), e.g. --set n_chan_bin=385; "
                  "SpikeGLX .meta or Open Ephys structure.oebin beside the file would supply it");
    }
}

TEST(RecordingErrors, ProbeDoesNotFit) {
    TempDir dir;
    const std::string path = dir.file("r.bin");
    write_bytes(path, 400);
    // Row 4 does not exist in a 4-row file.
    expect_usage([&] { Recording(path, data_settings(4, "int16"), make_probe({0, 4})); }, {path, "4"});
}

TEST(RecordingErrors, TimeRange) {
    TempDir dir;
    const std::string path = dir.file("r.bin");
    write_bytes(path, 2 * 2 * 1000);  // 1000 samples of 2 int16 channels: 1 s at 1000 Hz
    auto with = [&](const char* tmin, const char* tmax) {
        Settings s = data_settings(2, "int16");
        s.set_from_string(std::string("tmin=") + tmin);
        s.set_from_string(std::string("tmax=") + tmax);
        return s;
    };
    expect_usage([&] { Recording(path, with("1", "inf"), make_probe({0})); }, {"tmin", path, "end"});
    expect_usage([&] { Recording(path, with("7.5", "9"), make_probe({0})); }, {"tmin", path});
    expect_usage([&] { Recording(path, with("0.5", "0.5"), make_probe({0})); }, {"tmin", "tmax"});
    expect_usage([&] { Recording(path, with("0.6", "0.2"), make_probe({0})); }, {"tmin", "tmax"});
    // [0.5, 0.5004) s is less than one sample at 1000 Hz.
    expect_usage([&] { Recording(path, with("0.5", "0.5004"), make_probe({0})); }, {"tmin", "tmax", path});
}

}  // namespace
