// ks::DriftMap: spikes land on the expected pixels with the expected grey, motion traces run through
// the expected rows, chunking does not change the picture, bad settings are usage errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "test_support.hpp"
#include "ks/drift_map.hpp"
#include "ks/error.hpp"
#include "ks/plot.hpp"

namespace fs = std::filesystem;
using ks::DriftMap;
using ks::DriftMapConfig;
using ks::PixelRect;
using ks::plot::Rgb;
using ks::test::exit_code_of;
using ks::test::TempDir;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// 10 s at 1 kHz over depths 0..1000 µm, amplitudes 10 (light grey, 200) to 50 (black).
DriftMapConfig small_config() {
    DriftMapConfig c;
    c.duration_s = 10;
    c.fs_hz = 1000;
    c.ymin_um = 0;
    c.ymax_um = 1000;
    c.amp_min = 10;
    c.amp_max = 50;
    c.title = "test: drift map";
    c.width = 600;
    c.height = 400;
    return c;
}

// The header's mapping, written out independently: time t -> column, depth -> row (depth upwards).
int col_of(const PixelRect& a, double t_s, double duration_s) {
    return a.x + std::min(a.w - 1, static_cast<int>(std::floor(t_s / duration_s * a.w)));
}
int row_of(const PixelRect& a, double depth_um, double ymin, double ymax) {
    return a.y + std::min(a.h - 1, static_cast<int>(std::floor((ymax - depth_um) / (ymax - ymin) * a.h)));
}

bool is_grey(Rgb c) { return c.r == c.g && c.g == c.b; }
Rgb grey(int v) { return Rgb{uint8_t(v), uint8_t(v), uint8_t(v)}; }

// Every pixel of the panel's data area that is not white, with its colour.
std::map<std::pair<int, int>, Rgb> marks(const ks::plot::Canvas& cv, const PixelRect& a) {
    std::map<std::pair<int, int>, Rgb> m;
    for (int y = a.y; y < a.y + a.h; ++y)
        for (int x = a.x; x < a.x + a.w; ++x)
            if (cv.get(x, y) != ks::plot::kWhite) m[{x, y}] = cv.get(x, y);
    return m;
}

struct Spikes {
    std::vector<int64_t> t;
    std::vector<float> depth, corrected, amp;
    void add(double t_s, double fs, float d, float dc, float a) {
        t.push_back(static_cast<int64_t>(std::llround(t_s * fs)));
        depth.push_back(d);
        corrected.push_back(dc);
        amp.push_back(a);
    }
    int64_t n() const { return static_cast<int64_t>(t.size()); }
};

}  // namespace

TEST(DriftMap, BadSettingsAreUsageNamingThem) {
    const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
    const std::vector<std::pair<std::string, std::function<void(DriftMapConfig&)>>> cases = {
        {"duration_s", [](DriftMapConfig& c) { c.duration_s = 0; }},
        {"duration_s", [&](DriftMapConfig& c) { c.duration_s = nan; }},
        {"duration_s", [&](DriftMapConfig& c) { c.duration_s = inf; }},
        {"fs_hz", [](DriftMapConfig& c) { c.fs_hz = -30000; }},
        {"ymax_um", [](DriftMapConfig& c) { c.ymax_um = c.ymin_um; }},
        {"ymax_um", [](DriftMapConfig& c) { c.ymin_um = 2000; }},
        {"ymin_um", [&](DriftMapConfig& c) { c.ymin_um = nan; }},
        {"amp_max", [](DriftMapConfig& c) { c.amp_max = 5; }},
        {"amp_min", [&](DriftMapConfig& c) { c.amp_min = inf; }},
        {"size", [](DriftMapConfig& c) { c.width = 100; }},
        {"size", [](DriftMapConfig& c) { c.height = 20001; }},
        {"size", [](DriftMapConfig& c) { c.width = 0; }},
    };
    for (const auto& [needle, change] : cases) {
        DriftMapConfig c = small_config();
        change(c);
        std::string msg;
        EXPECT_EQ(exit_code_of([&] { DriftMap m(c); }, &msg), ks::Exit::usage) << needle;
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
    EXPECT_EQ(exit_code_of([] { DriftMap m(small_config()); }), ks::Exit::ok);
}

TEST(DriftMap, PanelsAreInsideThePictureSideBySideAndFramed) {
    DriftMap map(small_config());
    ASSERT_EQ(map.n_panels(), 2);
    const PixelRect l = map.plot_area(0), r = map.plot_area(1);
    EXPECT_EQ(l.w, r.w);
    EXPECT_EQ(l.h, r.h);
    EXPECT_EQ(l.y, r.y);
    EXPECT_GT(l.w, 100);
    EXPECT_GT(l.h, 200);
    EXPECT_GT(l.x, 20);                 // room for y ticks and label
    EXPECT_GT(r.x, l.x + l.w + 20);     // and again between the panels
    EXPECT_LT(r.x + r.w + 1, 600);      // frame inside
    EXPECT_GT(l.y, 20);                 // title above
    EXPECT_LT(l.y + l.h + 20, 400);     // ticks and x label below
    const auto cv = map.render();
    for (const PixelRect& a : {l, r}) {
        for (int x = a.x - 1; x <= a.x + a.w; ++x) {
            EXPECT_EQ(cv.get(x, a.y - 1), ks::plot::kBlack) << "top frame at x " << x;
            EXPECT_EQ(cv.get(x, a.y + a.h), ks::plot::kBlack) << "bottom frame at x " << x;
        }
        for (int y = a.y - 1; y <= a.y + a.h; ++y) {
            EXPECT_EQ(cv.get(a.x - 1, y), ks::plot::kBlack);
            EXPECT_EQ(cv.get(a.x + a.w, y), ks::plot::kBlack);
        }
        EXPECT_TRUE(marks(cv, a).empty()) << "no spikes, no motion: an empty data area";
    }
    // Title, panel titles, tick labels: some ink above and left of the data.
    int above = 0, left = 0;
    for (int y = 0; y < l.y - 1; ++y)
        for (int x = 0; x < 600; ++x) above += cv.get(x, y) != ks::plot::kWhite;
    for (int y = l.y; y < l.y + l.h; ++y)
        for (int x = 0; x < l.x - 1; ++x) left += cv.get(x, y) != ks::plot::kWhite;
    EXPECT_GT(above, 100);
    EXPECT_GT(left, 100);
}

TEST(DriftMap, SpikesDarkenTheirPixelByAmplitude) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    Spikes s;
    s.add(2.5, c.fs_hz, 250, 750, 50);  // black on the left at 250 µm, on the right at 750 µm
    s.add(7.5, c.fs_hz, 600, 600, 10);  // amp_min: light grey 200 in both panels
    s.add(5.0, c.fs_hz, 900, 100, 30);  // half way: grey 100
    s.add(1.0, c.fs_hz, 400, 420, 3);   // below amp_min: still drawn light
    s.add(9.0, c.fs_hz, 50, 60, 900);   // far above amp_max: black
    map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
    const auto cv = map.render();
    const int expected_grey[5] = {0, 200, 100, 200, 0};
    for (int panel : {0, 1}) {
        const PixelRect a = map.plot_area(panel);
        std::map<std::pair<int, int>, Rgb> expected;
        for (size_t i = 0; i < s.t.size(); ++i) {
            const double d = panel == 0 ? s.depth[i] : s.corrected[i];
            expected[{col_of(a, s.t[i] / c.fs_hz, c.duration_s), row_of(a, d, c.ymin_um, c.ymax_um)}] = grey(expected_grey[i]);
        }
        EXPECT_EQ(marks(cv, a), expected) << "panel " << panel;
    }
    // The first spike's pixel in the right panel (where its recorded depth would be) stays white.
    const PixelRect r = map.plot_area(1);
    EXPECT_EQ(cv.get(col_of(r, 2.5, 10), row_of(r, 250, 0, 1000)), ks::plot::kWhite);
}

TEST(DriftMap, LargestAmplitudeWinsAPixelInAnyOrder) {
    const DriftMapConfig c = small_config();
    for (bool big_first : {true, false}) {
        DriftMap map(c);
        Spikes s;
        s.add(3.0, c.fs_hz, 500, 500, big_first ? 40 : 20);
        s.add(3.0, c.fs_hz, 500, 500, big_first ? 20 : 40);
        map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
        const auto cv = map.render();
        const PixelRect a = map.plot_area(0);
        EXPECT_EQ(cv.get(col_of(a, 3.0, 10), row_of(a, 500, 0, 1000)), grey(50));  // 200 * (1 - 30/40)
    }
}

TEST(DriftMap, AxisEdgesLandInTheFirstAndLastPixels) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    Spikes s;
    s.add(0.0, c.fs_hz, 1000, 1000, 50);  // top-left corner
    s.add(10.0, c.fs_hz, 0, 0, 50);       // bottom-right corner (t = duration_s, depth = ymin_um)
    map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
    const auto cv = map.render();
    const PixelRect a = map.plot_area(0);
    const std::map<std::pair<int, int>, Rgb> expected = {{{a.x, a.y}, grey(0)}, {{a.x + a.w - 1, a.y + a.h - 1}, grey(0)}};
    EXPECT_EQ(marks(cv, a), expected);
}

TEST(DriftMap, SkipsNonFiniteAndOutOfRangeSpikes) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
    Spikes s;
    s.add(1.0, c.fs_hz, nan, nan, 30);
    s.add(1.0, c.fs_hz, 300, 300, nan);
    s.add(1.0, c.fs_hz, 300, 300, inf);
    s.add(1.0, c.fs_hz, -inf, 300, 30);  // left: skipped; right: drawn
    s.add(-0.5, c.fs_hz, 300, 300, 30);  // before the start
    s.add(10.01, c.fs_hz, 300, 300, 30); // after the end
    s.add(2.0, c.fs_hz, 1000.5f, -0.5f, 30);  // just outside the depth range
    map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
    const auto cv = map.render();
    EXPECT_TRUE(marks(cv, map.plot_area(0)).empty());
    const PixelRect r = map.plot_area(1);
    const std::map<std::pair<int, int>, Rgb> expected = {{{col_of(r, 1.0, 10), row_of(r, 300, 0, 1000)}, grey(100)}};
    EXPECT_EQ(marks(cv, r), expected);
}

TEST(DriftMap, WithoutCorrectedDepthsOnlyTheLeftPanelFills) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    Spikes s;
    for (int i = 0; i < 50; ++i) s.add(0.2 * i, c.fs_hz, 20.0f * i, 0, 45);
    map.add_spikes(s.t.data(), s.depth.data(), nullptr, s.amp.data(), s.n());
    map.add_spikes(nullptr, nullptr, nullptr, nullptr, 0);  // an empty chunk is fine
    const auto cv = map.render();
    EXPECT_EQ(marks(cv, map.plot_area(0)).size(), 50u);
    EXPECT_TRUE(marks(cv, map.plot_area(1)).empty());
}

TEST(DriftMap, OnePanelWithoutCorrection) {
    DriftMapConfig c = small_config();
    const PixelRect two = DriftMap(c).plot_area(0);
    c.corrected_panel = false;
    c.note = "too few spikes: motion not estimated";
    DriftMap map(c);
    EXPECT_EQ(map.n_panels(), 1);
    const PixelRect a = map.plot_area(0);
    EXPECT_GT(a.w, 2 * two.w);
    EXPECT_LT(a.h, two.h);  // the note takes a line
    Spikes s;
    s.add(4.0, c.fs_hz, 500, 100, 50);  // the corrected depth is ignored
    map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
    const auto cv = map.render();
    const std::map<std::pair<int, int>, Rgb> expected = {{{col_of(a, 4.0, 10), row_of(a, 500, 0, 1000)}, grey(0)}};
    EXPECT_EQ(marks(cv, a), expected);
    // Nothing to the right of the panel but its frame and tick labels: no second data area.
    int ink = 0;
    for (int y = a.y; y < a.y + a.h; ++y)
        for (int x = a.x + a.w + 1; x < c.width; ++x) ink += cv.get(x, y) != ks::plot::kWhite;
    EXPECT_EQ(ink, 0);
}

TEST(DriftMap, ChunkingAndOrderGiveTheSameBytes) {
    const DriftMapConfig c = small_config();
    std::mt19937_64 rng(11);
    std::uniform_real_distribution<double> U(0, 1);
    Spikes s;
    for (int i = 0; i < 20000; ++i) {
        const double d = 1000 * U(rng);
        s.add(10 * U(rng), c.fs_hz, float(d + 10 * std::sin(i)), float(d), float(5 + 50 * U(rng)));
    }
    std::vector<double> centres, yblk{250, 500, 750}, dshift;
    for (int b = 0; b < 20; ++b) {
        centres.push_back(0.25 + 0.5 * b);
        for (int k = 0; k < 3; ++k) dshift.push_back(8 * std::sin(0.3 * b + k));
    }
    TempDir dir;
    auto draw = [&](const std::string& name, int64_t chunk, bool reversed) {
        Spikes in = s;
        if (reversed) {
            std::reverse(in.t.begin(), in.t.end());
            std::reverse(in.depth.begin(), in.depth.end());
            std::reverse(in.corrected.begin(), in.corrected.end());
            std::reverse(in.amp.begin(), in.amp.end());
        }
        DriftMap map(c);
        map.set_motion(centres, yblk, dshift);  // before or after the spikes: traces are drawn last
        for (int64_t i = 0; i < in.n(); i += chunk) {
            const int64_t n = std::min(chunk, in.n() - i);
            map.add_spikes(in.t.data() + i, in.depth.data() + i, in.corrected.data() + i, in.amp.data() + i, n);
        }
        map.write_png(dir / name);
        return slurp(dir / name);
    };
    const std::string one = draw("one.png", s.n(), false);
    ASSERT_GT(one.size(), 1000u);
    EXPECT_EQ(one.compare(1, 3, "PNG"), 0);
    EXPECT_EQ(draw("by1.png", 1, false), one);
    EXPECT_EQ(draw("by7.png", 7, false), one);
    EXPECT_EQ(draw("by4096.png", 4096, true), one);
    EXPECT_FALSE(fs::exists(dir / "one.png.partial"));
}

TEST(DriftMap, RigidMotionTracesRunThroughTheExpectedRows) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    // Spikes appear 50 µm higher in every batch: Kilosort4's sign gives dshift = -50, so the blocks'
    // units are seen at 350 and 750 µm (left) and sit at 300 and 700 µm after correction (right).
    std::vector<double> centres, dshift;
    for (int b = 0; b < 10; ++b) {
        centres.push_back(b + 0.5);
        dshift.push_back(-50);
        dshift.push_back(-50);
    }
    map.set_motion(centres, {300, 700}, dshift);
    const auto cv = map.render();
    for (int panel : {0, 1}) {
        const PixelRect a = map.plot_area(panel);
        const std::set<int> rows = panel == 0 ? std::set<int>{row_of(a, 350, 0, 1000), row_of(a, 750, 0, 1000)}
                                              : std::set<int>{row_of(a, 300, 0, 1000), row_of(a, 700, 0, 1000)};
        const int first = col_of(a, 0.5, 10), last = col_of(a, 9.5, 10);
        std::set<int> coloured_rows;
        for (const auto& [p, colour] : marks(cv, a)) {
            EXPECT_FALSE(is_grey(colour)) << "only the traces are drawn";
            EXPECT_GE(p.first, first);
            EXPECT_LE(p.first, last);
            coloured_rows.insert(p.second);
        }
        EXPECT_EQ(coloured_rows, rows) << "panel " << panel;
        for (int row : rows)
            for (int x = first; x <= last; ++x) EXPECT_NE(cv.get(x, row), ks::plot::kWhite) << x << "," << row;
        // Two blocks, two colours.
        EXPECT_NE(cv.get(first, *rows.begin()), cv.get(first, *rows.rbegin()));
    }
}

TEST(DriftMap, MovingTracePassesThroughEachBatchCentre) {
    const DriftMapConfig c = small_config();
    DriftMap map(c);
    std::vector<double> centres, dshift;
    for (int b = 0; b < 10; ++b) {
        centres.push_back(b + 0.5);
        dshift.push_back(-20.0 * b);  // units seen 20 µm higher each batch
    }
    map.set_motion(centres, {400}, dshift);
    const auto cv = map.render();
    const PixelRect a = map.plot_area(0);
    for (int b = 0; b < 10; ++b) {
        const int x = col_of(a, b + 0.5, 10), y = row_of(a, 400 + 20.0 * b, 0, 1000);
        EXPECT_FALSE(is_grey(cv.get(x, y))) << "batch " << b;
        EXPECT_EQ(cv.get(x, y - 4), ks::plot::kWhite) << "batch " << b;
        EXPECT_EQ(cv.get(x, y + 4), ks::plot::kWhite) << "batch " << b;
    }
}

TEST(DriftMap, MotionOfTheWrongShapeIsUsage) {
    DriftMap map(small_config());
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { map.set_motion({0.5, 1.5}, {100, 200, 300}, std::vector<double>(5, 0.0)); }, &msg),
              ks::Exit::usage);
    EXPECT_NE(msg.find("dshift"), std::string::npos) << msg;
    EXPECT_EQ(exit_code_of([&] { map.set_motion({0.5, 1.5}, {100, 200, 300}, std::vector<double>(6, 0.0)); }),
              ks::Exit::ok);
}

TEST(DriftMap, WritesThePngOfItsRenderAtTheDefaultSize) {
    DriftMapConfig c = small_config();
    c.width = 1800;
    c.height = 900;
    DriftMap map(c);
    Spikes s;
    for (int i = 0; i < 1000; ++i) s.add(0.01 * i, c.fs_hz, 500 + 100 * std::sin(0.01 * i), 500, 30);
    map.add_spikes(s.t.data(), s.depth.data(), s.corrected.data(), s.amp.data(), s.n());
    TempDir dir;
    map.write_png(dir / "drift_map.png");
    const auto cv = map.render();
    ks::plot::write_png(dir / "direct.png", cv.width(), cv.height(), cv.pixels().data());
    const std::string bytes = slurp(dir / "drift_map.png");
    EXPECT_EQ(bytes, slurp(dir / "direct.png"));
    ASSERT_GT(bytes.size(), 24u);
    // IHDR width and height, big-endian, right after the signature and the chunk header.
    auto be32 = [&](size_t at) {
        return uint32_t(uint8_t(bytes[at])) << 24 | uint32_t(uint8_t(bytes[at + 1])) << 16 |
               uint32_t(uint8_t(bytes[at + 2])) << 8 | uint8_t(bytes[at + 3]);
    };
    EXPECT_EQ(be32(16), 1800u);
    EXPECT_EQ(be32(20), 900u);
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { map.write_png(dir / "missing/drift_map.png"); }, &msg), ks::Exit::usage);
}
