// ks::plot: PNG writer (decoded here by an independent reader), canvas drawing and clipping, the
// built-in font, nice axis ticks.
#include <gtest/gtest.h>

#include <zlib.h>

#include <climits>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sys/resource.h>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/plot.hpp"

namespace fs = std::filesystem;
using ks::plot::Align;
using ks::plot::Canvas;
using ks::plot::Rgb;
using ks::test::exit_code_of;
using ks::test::TempDir;

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// CRC-32 (ISO 3309, reflected polynomial 0xEDB88320) bit by bit, independent of zlib's tables.
uint32_t crc32_bitwise(const uint8_t* p, size_t n, uint32_t crc = 0) {
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

struct Chunk {
    std::string type;
    std::vector<uint8_t> data;
};

struct DecodedPng {
    int width = 0, height = 0;
    std::vector<Chunk> chunks;
    std::vector<uint8_t> filter_types;  // one per row
    std::vector<uint8_t> rgb;
};

// A minimal PNG reader following the PNG specification: checks the signature and every chunk's CRC,
// inflates the IDAT stream and undoes the five filter types. ADD_FAILURE on anything unexpected.
DecodedPng decode_png(const std::string& bytes) {
    DecodedPng out;
    const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
    const std::string sig("\x89PNG\r\n\x1a\n", 8);
    if (bytes.compare(0, 8, sig) != 0) {
        ADD_FAILURE() << "bad PNG signature";
        return out;
    }
    size_t pos = 8;
    while (pos < bytes.size()) {
        if (pos + 12 > bytes.size()) {
            ADD_FAILURE() << "truncated chunk at " << pos;
            return out;
        }
        const uint32_t len = be32(b + pos);
        if (pos + 12 + len > bytes.size()) {
            ADD_FAILURE() << "chunk overruns the file at " << pos;
            return out;
        }
        Chunk c;
        c.type.assign(bytes, pos + 4, 4);
        c.data.assign(b + pos + 8, b + pos + 8 + len);
        EXPECT_EQ(be32(b + pos + 8 + len), crc32_bitwise(b + pos + 4, 4 + len)) << "CRC of chunk " << c.type;
        out.chunks.push_back(std::move(c));
        pos += 12 + len;
    }
    EXPECT_EQ(pos, bytes.size());
    if (out.chunks.empty() || out.chunks.front().type != "IHDR" || out.chunks.front().data.size() != 13) {
        ADD_FAILURE() << "first chunk is not a 13-byte IHDR";
        return out;
    }
    EXPECT_EQ(out.chunks.back().type, "IEND");
    EXPECT_TRUE(out.chunks.back().data.empty());
    const auto& h = out.chunks.front().data;
    out.width = static_cast<int>(be32(h.data()));
    out.height = static_cast<int>(be32(h.data() + 4));
    EXPECT_EQ(h[8], 8) << "bit depth";
    EXPECT_EQ(h[9], 2) << "colour type (truecolour)";
    EXPECT_EQ(h[10], 0) << "compression method";
    EXPECT_EQ(h[11], 0) << "filter method";
    EXPECT_EQ(h[12], 0) << "interlace method";

    std::vector<uint8_t> z;
    bool seen_idat = false, idat_ended = false;
    for (const auto& c : out.chunks) {
        if (c.type == "IDAT") {
            EXPECT_FALSE(idat_ended) << "IDAT chunks must be consecutive";
            seen_idat = true;
            z.insert(z.end(), c.data.begin(), c.data.end());
        } else if (seen_idat) {
            idat_ended = true;
        }
    }
    const size_t stride = static_cast<size_t>(out.width) * 3;
    const size_t expected = static_cast<size_t>(out.height) * (1 + stride);
    std::vector<uint8_t> raw(expected + 16);  // room to notice a stream that is too long
    uLongf raw_n = static_cast<uLongf>(raw.size());
    const int rc = uncompress(raw.data(), &raw_n, z.data(), static_cast<uLong>(z.size()));
    EXPECT_EQ(rc, Z_OK);
    EXPECT_EQ(raw_n, expected) << "inflated IDAT must be height * (1 + 3 * width) bytes";
    if (rc != Z_OK || raw_n != expected) return out;

    out.rgb.assign(static_cast<size_t>(out.height) * stride, 0);
    for (int y = 0; y < out.height; ++y) {
        const uint8_t ft = raw[static_cast<size_t>(y) * (1 + stride)];
        out.filter_types.push_back(ft);
        const uint8_t* in = raw.data() + static_cast<size_t>(y) * (1 + stride) + 1;
        uint8_t* cur = out.rgb.data() + static_cast<size_t>(y) * stride;
        const uint8_t* prev = y > 0 ? cur - stride : nullptr;
        for (size_t i = 0; i < stride; ++i) {
            const int a = i >= 3 ? cur[i - 3] : 0, up = prev ? prev[i] : 0, c = (prev && i >= 3) ? prev[i - 3] : 0;
            int pred = 0;
            switch (ft) {
                case 0: pred = 0; break;
                case 1: pred = a; break;
                case 2: pred = up; break;
                case 3: pred = (a + up) / 2; break;
                case 4: {
                    const int p = a + up - c, pa = std::abs(p - a), pb = std::abs(p - up), pc = std::abs(p - c);
                    pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? up : c);
                    break;
                }
                default: ADD_FAILURE() << "filter type " << int(ft) << " in row " << y; return out;
            }
            cur[i] = static_cast<uint8_t>(in[i] + pred);
        }
    }
    return out;
}

std::vector<uint8_t> gradient_image(int w, int h) {
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = rgb.data() + (static_cast<size_t>(y) * w + x) * 3;
            p[0] = static_cast<uint8_t>(37 * x + 11 * y);
            p[1] = static_cast<uint8_t>(255 - 29 * y);
            p[2] = static_cast<uint8_t>((x * y) % 7 == 0 ? 255 : x);
        }
    return rgb;
}

std::vector<uint8_t> noise_image(int w, int h, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (auto& v : rgb) v = static_cast<uint8_t>(rng() >> 24);
    return rgb;
}

// All pixels of a canvas that differ from its background.
std::set<std::pair<int, int>> inked(const Canvas& cv) {
    std::set<std::pair<int, int>> s;
    for (int y = 0; y < cv.height(); ++y)
        for (int x = 0; x < cv.width(); ++x)
            if (cv.get(x, y) != cv.background()) s.insert({x, y});
    return s;
}

constexpr Rgb kRed{255, 0, 0};

}  // namespace

// ---- PNG ---------------------------------------------------------------------------------------------

TEST(WritePng, DecodesToThePixelsWritten) {
    TempDir dir;
    for (auto [w, h] : {std::pair{1, 1}, std::pair{7, 5}, std::pair{64, 3}, std::pair{3, 40}}) {
        const auto rgb = gradient_image(w, h);
        const std::string path = dir / ("g" + std::to_string(w) + "x" + std::to_string(h) + ".png");
        ks::plot::write_png(path, w, h, rgb.data());
        EXPECT_FALSE(fs::exists(path + ".partial"));
        const DecodedPng png = decode_png(slurp(path));
        EXPECT_EQ(png.width, w);
        EXPECT_EQ(png.height, h);
        EXPECT_EQ(png.rgb, rgb) << w << "x" << h;
        for (uint8_t ft : png.filter_types) EXPECT_LE(ft, 2) << "only none, sub and up are written";
    }
}

TEST(WritePng, UniformRowsAndStripesPickUpAndSubFilters) {
    // A picture of uniform rows: "up" (or "sub") filtering turns all rows after the first into zeros.
    const int w = 300, h = 200;
    std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            uint8_t* p = rgb.data() + (static_cast<size_t>(y) * w + x) * 3;
            p[0] = static_cast<uint8_t>(x), p[1] = static_cast<uint8_t>(2 * x), p[2] = 200;
        }
    TempDir dir;
    ks::plot::write_png(dir / "flat.png", w, h, rgb.data());
    const std::string bytes = slurp(dir / "flat.png");
    const DecodedPng png = decode_png(bytes);
    EXPECT_EQ(png.rgb, rgb);
    ASSERT_EQ(png.filter_types.size(), static_cast<size_t>(h));
    for (int y = 1; y < h; ++y) EXPECT_EQ(png.filter_types[y], 2) << "identical rows: 'up' gives zeros, row " << y;
    EXPECT_LT(bytes.size(), rgb.size() / 20);

    // Horizontal stripes of unrelated colours: 'sub' gives zeros after each row's first pixel.
    std::mt19937 rng(99);
    for (int y = 0; y < h; ++y) {
        const uint8_t c[3] = {static_cast<uint8_t>(rng() >> 24), static_cast<uint8_t>(rng() >> 24), static_cast<uint8_t>(rng() >> 24)};
        for (int x = 0; x < w; ++x) std::copy(c, c + 3, rgb.data() + (static_cast<size_t>(y) * w + x) * 3);
    }
    ks::plot::write_png(dir / "stripes.png", w, h, rgb.data());
    const DecodedPng stripes = decode_png(slurp(dir / "stripes.png"));
    EXPECT_EQ(stripes.rgb, rgb);
    ASSERT_EQ(stripes.filter_types.size(), static_cast<size_t>(h));
    for (int y = 0; y < h; ++y) EXPECT_EQ(stripes.filter_types[y], 1) << "row " << y;
}

TEST(WritePng, LargeImageIsSplitIntoIdatChunksOfAtMostOneMiB) {
    const int w = 700, h = 700;  // incompressible noise: about 1.5 MB of deflate output
    const auto rgb = noise_image(w, h, 12345);
    TempDir dir;
    ks::plot::write_png(dir / "noise.png", w, h, rgb.data());
    const DecodedPng png = decode_png(slurp(dir / "noise.png"));
    EXPECT_EQ(png.rgb, rgb);
    int n_idat = 0;
    for (const auto& c : png.chunks)
        if (c.type == "IDAT") {
            ++n_idat;
            EXPECT_LE(c.data.size(), size_t(1) << 20);
        }
    EXPECT_GE(n_idat, 2);
}

TEST(WritePng, SamePixelsGiveTheSameBytes) {
    const auto rgb = noise_image(50, 30, 7);
    TempDir dir;
    ks::plot::write_png(dir / "a.png", 50, 30, rgb.data());
    ks::plot::write_png(dir / "b.png", 50, 30, rgb.data());
    EXPECT_EQ(slurp(dir / "a.png"), slurp(dir / "b.png"));
}

// A second, unrelated reader: Python's zlib and a few lines of unfiltering.
TEST(WritePng, PythonReaderAgrees) {
    const int w = 23, h = 17;
    const auto rgb = gradient_image(w, h);
    TempDir dir;
    const std::string png = dir / "p.png", raw = dir / "p.rgb";
    ks::plot::write_png(png, w, h, rgb.data());
    std::ofstream(raw, std::ios::binary).write(reinterpret_cast<const char*>(rgb.data()), rgb.size());
    const std::string script = dir.write("read_png.py", R"(
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n'
pos, idat, ihdr = 8, b'', None
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    assert struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
    if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
    if kind == b'IDAT': idat += body
    pos += 12 + n
w, h = ihdr[0], ihdr[1]
assert ihdr[2:] == (8, 2, 0, 0, 0), ihdr
raw = zlib.decompress(idat)
assert len(raw) == h * (1 + 3 * w)
out, prev = bytearray(), bytearray(3 * w)
for y in range(h):
    ft, line = raw[y * (1 + 3 * w)], bytearray(raw[y * (1 + 3 * w) + 1:(y + 1) * (1 + 3 * w)])
    for i in range(3 * w):
        a = line[i - 3] if i >= 3 else 0
        line[i] = (line[i] + {0: 0, 1: a, 2: prev[i]}[ft]) & 255
    out += line
    prev = line
sys.exit(0 if bytes(out) == open(sys.argv[2], 'rb').read() else 3)
)");
    const std::string cmd = std::string(KS_PYTHON) + " " + script + " " + png + " " + raw;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(WritePng, BadSizeIsUsageNamingThePath) {
    TempDir dir;
    const uint8_t px[3] = {1, 2, 3};
    const std::string path = dir / "bad.png";
    for (auto [w, h] : {std::pair{0, 1}, std::pair{1, 0}, std::pair{-5, 3}, std::pair{20001, 1}, std::pair{1, 20001}}) {
        std::string msg;
        EXPECT_EQ(exit_code_of([&] { ks::plot::write_png(path, w, h, px); }, &msg), ks::Exit::usage) << w << "x" << h;
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
    }
    EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(WritePng, MissingFolderIsUsage) {
    // ks::OutputFile's rule: a place the user chose that cannot hold the file is a usage error.
    TempDir dir;
    const uint8_t px[3] = {1, 2, 3};
    const std::string path = dir / "no_such_folder/x.png";
    std::string msg;
    EXPECT_EQ(exit_code_of([&] { ks::plot::write_png(path, 1, 1, px); }, &msg), ks::Exit::usage);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

// A failed write (here a file-size limit, as a full disk would) is Exit::resources and leaves
// neither the PNG nor its .partial. Run in a child so the limit does not leak.
TEST(WritePngDeathTest, FailedWriteIsResourcesAndLeavesNothing) {
    TempDir dir;
    const std::string path = dir / "big.png";
    const auto rgb = noise_image(200, 200, 3);  // about 120 kB, incompressible
    auto child = [&] {
        std::signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim {
            16384, 16384
        };
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
        try {
            ks::plot::write_png(path, 200, 200, rgb.data());
            _exit(11);
        } catch (const ks::Error& e) {
            if (e.code() != ks::Exit::resources) _exit(12);
            if (std::string(e.what()).find(path) == std::string::npos) _exit(13);
            if (fs::exists(path) || fs::exists(path + ".partial")) _exit(14);
            _exit(0);
        }
    };
    EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// ---- Canvas ------------------------------------------------------------------------------------------

TEST(Canvas, BadSizeIsUsage) {
    EXPECT_EQ(exit_code_of([] { Canvas(0, 10, ks::plot::kWhite); }), ks::Exit::usage);
    EXPECT_EQ(exit_code_of([] { Canvas(10, 20001, ks::plot::kWhite); }), ks::Exit::usage);
    EXPECT_EQ(exit_code_of([] { Canvas(1, 1, ks::plot::kWhite); }), ks::Exit::ok);
}

TEST(Canvas, StartsAsBackgroundAndSetsPixels) {
    const Rgb bg{10, 20, 30};
    Canvas cv(4, 3, bg);
    for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 4; ++x) EXPECT_EQ(cv.get(x, y), bg);
    cv.set(3, 2, kRed);
    EXPECT_EQ(cv.get(3, 2), kRed);
    // pixels() is the PNG layout: row-major RGB.
    EXPECT_EQ(cv.pixels()[(2 * 4 + 3) * 3 + 0], 255);
    EXPECT_EQ(cv.pixels()[(2 * 4 + 3) * 3 + 1], 0);
    cv.set(-1, 0, kRed);
    cv.set(4, 0, kRed);
    cv.set(0, 3, kRed);
    EXPECT_EQ(inked(cv).size(), 1u);
}

TEST(Canvas, BlendMixesByAlpha) {
    Canvas cv(5, 1, ks::plot::kWhite);
    cv.blend(0, 0, ks::plot::kBlack, 0.5f);   // 127.5 rounds to 128
    cv.blend(1, 0, Rgb{0, 100, 200}, 0.25f);  // 0.75 * 255 + 0.25 * c
    cv.blend(2, 0, kRed, 0.0f);
    cv.blend(3, 0, kRed, 7.0f);  // clamped to 1
    cv.blend(4, 0, kRed, std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(cv.get(0, 0), (Rgb{128, 128, 128}));
    EXPECT_EQ(cv.get(1, 0), (Rgb{191, 216, 241}));
    EXPECT_EQ(cv.get(2, 0), ks::plot::kWhite);
    EXPECT_EQ(cv.get(3, 0), kRed);
    EXPECT_EQ(cv.get(4, 0), ks::plot::kWhite);
}

TEST(Canvas, HorizontalVerticalAndDiagonalLines) {
    Canvas cv(20, 20, ks::plot::kWhite);
    cv.line(2, 3, 10, 3, kRed);
    std::set<std::pair<int, int>> expected;
    for (int x = 2; x <= 10; ++x) expected.insert({x, 3});
    EXPECT_EQ(inked(cv), expected);

    Canvas v(20, 20, ks::plot::kWhite);
    v.line(5, 15, 5, 4, kRed);  // drawn upwards
    expected.clear();
    for (int y = 4; y <= 15; ++y) expected.insert({5, y});
    EXPECT_EQ(inked(v), expected);

    Canvas d(20, 20, ks::plot::kWhite);
    d.line(0, 0, 19, 19, kRed);
    expected.clear();
    for (int i = 0; i < 20; ++i) expected.insert({i, i});
    EXPECT_EQ(inked(d), expected);
}

TEST(Canvas, SlopedLineHasBothEndsAndStaysOnTheIdealLine) {
    for (auto [x0, y0, x1, y1] : {std::array{1, 2, 17, 9}, std::array{18, 1, 3, 14}, std::array{4, 18, 6, 0}}) {
        Canvas cv(20, 20, ks::plot::kWhite);
        cv.line(x0, y0, x1, y1, kRed);
        const auto px = inked(cv);
        EXPECT_TRUE(px.count({x0, y0})) << "start of " << x0 << "," << y0 << " -> " << x1 << "," << y1;
        EXPECT_TRUE(px.count({x1, y1})) << "end";
        // One pixel per step along the major axis, each within half a pixel of the ideal line.
        const int dx = x1 - x0, dy = y1 - y0;
        EXPECT_EQ(px.size(), static_cast<size_t>(std::max(std::abs(dx), std::abs(dy)) + 1));
        for (auto [x, y] : px) {
            const double off = std::abs(dx) >= std::abs(dy) ? std::abs(y - (y0 + double(dy) * (x - x0) / dx))
                                                             : std::abs(x - (x0 + double(dx) * (y - y0) / dy));
            EXPECT_LE(off, 0.5 + 1e-12) << x << "," << y;
        }
    }
}

TEST(Canvas, WideLinesCoverTheirWidth) {
    Canvas cv(20, 10, ks::plot::kWhite);
    cv.line(2, 5, 12, 5, kRed, 3);
    std::set<std::pair<int, int>> expected;
    for (int x = 1; x <= 13; ++x)
        for (int y = 4; y <= 6; ++y) expected.insert({x, y});
    EXPECT_EQ(inked(cv), expected);
    Canvas two(20, 10, ks::plot::kWhite);
    two.line(2, 5, 12, 5, kRed, 2);
    EXPECT_EQ(inked(two).size(), 2u * 12u);  // 2 rows, 11 + 1 columns
}

TEST(Canvas, DrawingFarOutsideTouchesNothing) {
    Canvas cv(30, 20, ks::plot::kWhite);
    const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
    cv.line(-1000000, -5, -1000000, 1000000, kRed, 3);
    cv.line(INT_MIN, INT_MIN, INT_MIN + 10, INT_MAX, kRed, 2);
    cv.line(INT_MIN, -3, INT_MAX, -3, kRed, 1);  // a row above the canvas, clear of a 1-pixel stamp
    cv.line(-1e300, 1e300, 1e300, 1e300, kRed, 3);
    cv.line(nan, 5.0, 10.0, 5.0, kRed);
    cv.line(0.0, inf, 10.0, 5.0, kRed);
    cv.polyline({-1e9, -1e9, nan, 1e9}, {-50, 1e9, 3, 1e12}, kRed, 3);
    cv.fill_rect(-100, -100, 90, 500, kRed);
    cv.fill_rect(INT_MAX - 5, INT_MAX - 5, INT_MAX, INT_MAX, kRed);
    cv.rect(-10, -10, 5, 5, kRed);
    cv.text(-500, 5, "far left", kRed, 3);
    cv.text(10, 10000, "far below", kRed, 2, Align::centre);
    cv.text(40, -2, "vertical", kRed, 1, Align::left, true);  // starts off the right side
    EXPECT_TRUE(inked(cv).empty());
}

TEST(Canvas, LinesFromFarAwayAreClippedOntoTheCanvas) {
    Canvas cv(25, 25, ks::plot::kWhite);
    cv.line(-1e9, -1e9, 1e9, 1e9, kRed);  // the diagonal, and nothing else
    std::set<std::pair<int, int>> expected;
    for (int i = 0; i < 25; ++i) expected.insert({i, i});
    EXPECT_EQ(inked(cv), expected);

    Canvas h(25, 25, ks::plot::kWhite);
    h.line(INT_MIN, 7, INT_MAX, 7, kRed);
    expected.clear();
    for (int x = 0; x < 25; ++x) expected.insert({x, 7});
    EXPECT_EQ(inked(h), expected);
}

TEST(Canvas, ClipRectangleLimitsEveryDrawingCall) {
    Canvas cv(12, 12, ks::plot::kWhite);
    cv.set_clip(2, 3, 4, 5);
    cv.fill_rect(0, 0, 12, 12, kRed);
    cv.line(0, 0, 11, 11, ks::plot::kBlack, 3);
    cv.text(0, 0, "WWW", ks::plot::kBlack, 2);
    for (int y = 0; y < 12; ++y)
        for (int x = 0; x < 12; ++x) {
            const bool in = x >= 2 && x < 6 && y >= 3 && y < 8;
            EXPECT_EQ(cv.get(x, y) != ks::plot::kWhite, in) << x << "," << y;
        }
    cv.reset_clip();
    cv.set(11, 11, kRed);
    EXPECT_EQ(cv.get(11, 11), kRed);
}

TEST(Canvas, PolylineJoinsPointsAndBreaksAtNaN) {
    Canvas cv(20, 20, ks::plot::kWhite);
    const double nan = std::nan("");
    cv.polyline({1, 8, 8, nan, 15, 15}, {1, 1, 6, 0, 10, 18}, kRed);
    std::set<std::pair<int, int>> expected;
    for (int x = 1; x <= 8; ++x) expected.insert({x, 1});
    for (int y = 1; y <= 6; ++y) expected.insert({8, y});
    for (int y = 10; y <= 18; ++y) expected.insert({15, y});
    EXPECT_EQ(inked(cv), expected);
}

TEST(Canvas, DoubleCoordinatesRoundToPixelCentres) {
    Canvas cv(10, 10, ks::plot::kWhite);
    cv.line(1.49, 2.5, 6.4, 2.51, kRed);  // x 1..6 on row 3 (2.5 rounds up)
    std::set<std::pair<int, int>> expected;
    for (int x = 1; x <= 6; ++x) expected.insert({x, 3});
    EXPECT_EQ(inked(cv), expected);
}

// ---- font and text -----------------------------------------------------------------------------------

TEST(Font, EveryPrintableGlyphIsDrawnAndDistinct) {
    std::set<std::array<uint8_t, ks::plot::kGlyphRows>> seen;
    for (char32_t c = 33; c <= 126; ++c) {
        const auto& g = ks::plot::glyph(c);
        int n = 0;
        for (uint8_t row : g) {
            EXPECT_EQ(row >> ks::plot::kGlyphWidth, 0) << "glyph " << char(c) << " wider than the cell";
            n += __builtin_popcount(row);
        }
        EXPECT_GT(n, 0) << "glyph " << char(c) << " is empty";
        EXPECT_TRUE(seen.insert(g).second) << "glyph " << char(c) << " repeats another";
    }
    for (uint8_t row : ks::plot::glyph(U' ')) EXPECT_EQ(row, 0);
    EXPECT_TRUE(seen.insert(ks::plot::glyph(U'\u00B5')).second) << "µ must differ from ASCII glyphs (u)";
    EXPECT_EQ(ks::plot::glyph(U'\u03BC'), ks::plot::glyph(U'\u00B5'));
    EXPECT_EQ(ks::plot::glyph(U'\u4E2D'), ks::plot::glyph(U'?'));
    EXPECT_EQ(ks::plot::glyph(U'\n'), ks::plot::glyph(U'?'));
}

TEST(Font, DecodesUtf8AndReplacesMalformedBytes) {
    EXPECT_EQ(ks::plot::decode_utf8("a\xC2\xB5m"), (std::vector<char32_t>{U'a', 0xB5, U'm'}));
    EXPECT_EQ(ks::plot::decode_utf8("\xE4\xB8\xAD"), (std::vector<char32_t>{0x4E2D}));
    EXPECT_EQ(ks::plot::decode_utf8("x\xFFy"), (std::vector<char32_t>{U'x', U'?', U'y'}));
    EXPECT_EQ(ks::plot::decode_utf8("\xC2"), (std::vector<char32_t>{U'?'}));          // truncated
    EXPECT_EQ(ks::plot::decode_utf8("\xC0\xAF"), (std::vector<char32_t>{U'?', U'?'}));  // overlong '/'
    EXPECT_TRUE(ks::plot::decode_utf8("").empty());
}

TEST(Text, PixelsAreTheGlyphsScaled) {
    for (int scale : {1, 2, 3}) {
        Canvas cv(80, 40, ks::plot::kWhite);
        const int x0 = 3, y0 = 4;
        cv.text(x0, y0, "k7", kRed, scale);
        std::set<std::pair<int, int>> expected;
        const char32_t chars[2] = {U'k', U'7'};
        for (int k = 0; k < 2; ++k) {
            const auto& g = ks::plot::glyph(chars[k]);
            for (int r = 0; r < ks::plot::kGlyphRows; ++r)
                for (int c = 0; c < ks::plot::kGlyphWidth; ++c)
                    if (g[r] >> (ks::plot::kGlyphWidth - 1 - c) & 1)
                        for (int sy = 0; sy < scale; ++sy)
                            for (int sx = 0; sx < scale; ++sx)
                                expected.insert({x0 + (k * ks::plot::kGlyphAdvance + c) * scale + sx, y0 + r * scale + sy});
        }
        EXPECT_EQ(inked(cv), expected) << "scale " << scale;
        for (const auto& p : inked(cv)) EXPECT_EQ(cv.get(p.first, p.second), kRed);
    }
}

TEST(Text, WidthMatchesTheInkOfFullWidthGlyphs) {
    // 'H' and 'M' use all five columns, so the ink spans exactly text_width.
    for (const std::string s : {"H", "HM", "MHMHM"})
        for (int scale : {1, 2, 4}) {
            Canvas cv(200, 60, ks::plot::kWhite);
            cv.text(10, 5, s, kRed, scale);
            int xmin = INT_MAX, xmax = INT_MIN, ymin = INT_MAX, ymax = INT_MIN;
            for (auto [x, y] : inked(cv)) {
                xmin = std::min(xmin, x), xmax = std::max(xmax, x);
                ymin = std::min(ymin, y), ymax = std::max(ymax, y);
            }
            EXPECT_EQ(xmin, 10);
            EXPECT_EQ(xmax - xmin + 1, Canvas::text_width(s, scale)) << s << " scale " << scale;
            EXPECT_EQ(ymin, 5);
            EXPECT_EQ(ymax - ymin + 1, 7 * scale);  // capitals use the top 7 of the 8 rows
        }
    EXPECT_EQ(Canvas::text_width("", 3), 0);
    EXPECT_EQ(Canvas::text_width("ab", 1), 11);
    EXPECT_EQ(Canvas::text_width("\xC2\xB5m", 2), 22);  // two code points, not three bytes
    EXPECT_EQ(Canvas::text_height(3), 24);
}

TEST(Text, AlignmentMovesTheBox) {
    const std::string s = "HMH";
    const int w = Canvas::text_width(s, 2);
    for (auto [align, first] : {std::pair{Align::left, 50}, std::pair{Align::centre, 50 - w / 2},
                                std::pair{Align::right, 50 - w}}) {
        Canvas cv(120, 30, ks::plot::kWhite);
        cv.text(50, 5, s, kRed, 2, align);
        int xmin = INT_MAX, xmax = INT_MIN;
        for (auto [x, y] : inked(cv)) xmin = std::min(xmin, x), xmax = std::max(xmax, x);
        EXPECT_EQ(xmin, first) << static_cast<int>(align);
        EXPECT_EQ(xmax, first + w - 1) << static_cast<int>(align);
    }
}

TEST(Text, VerticalTextReadsUpwardsWithGlyphTopsToTheLeft) {
    Canvas cv(30, 30, ks::plot::kWhite);
    cv.text(5, 20, "L", kRed, 1, Align::left, true);
    // 'L': a stem in column 0 (rows 0-6) and a foot in row 6. Turned anticlockwise, the stem runs
    // along row y (from x = 5 to 11) and the foot up column x + 6 (from y = 20 to 16).
    std::set<std::pair<int, int>> expected;
    for (int r = 0; r <= 6; ++r) expected.insert({5 + r, 20});
    for (int c = 0; c <= 4; ++c) expected.insert({11, 20 - c});
    EXPECT_EQ(inked(cv), expected);

    Canvas v(40, 80, ks::plot::kWhite);
    v.text(5, 40, "HMH", kRed, 2, Align::centre, true);
    int ymin = INT_MAX, ymax = INT_MIN;
    for (auto [x, y] : inked(v)) ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    EXPECT_EQ(ymax - ymin + 1, Canvas::text_width("HMH", 2));
    EXPECT_EQ(ymax, 40 + Canvas::text_width("HMH", 2) / 2);
}

// ---- ticks -------------------------------------------------------------------------------------------

TEST(NiceTicks, KnownRanges) {
    EXPECT_EQ(ks::plot::nice_ticks(0, 300), (std::vector<double>{0, 50, 100, 150, 200, 250, 300}));
    EXPECT_EQ(ks::plot::nice_ticks(20, 3840), (std::vector<double>{500, 1000, 1500, 2000, 2500, 3000, 3500}));
    EXPECT_EQ(ks::plot::nice_ticks(0.5, 0.9), (std::vector<double>{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9}));
    EXPECT_EQ(ks::plot::nice_ticks(-35, 42), (std::vector<double>{-30, -20, -10, 0, 10, 20, 30, 40}));
    EXPECT_EQ(ks::plot::nice_ticks(0, 600, 5), (std::vector<double>{0, 200, 400, 600}));
    EXPECT_DOUBLE_EQ(ks::plot::nice_step(0.5, 0.9), 0.05);
}

TEST(NiceTicks, RandomRangesGiveFourToTenEvenlySpacedOneTwoFiveTicks) {
    std::mt19937_64 rng(2024);
    std::uniform_real_distribution<double> U(0, 1);
    for (int trial = 0; trial < 2000; ++trial) {
        const double scale = std::pow(10.0, -4 + 10 * U(rng));
        const double lo = (U(rng) - 0.5) * 4 * scale, hi = lo + scale * (0.01 + U(rng));
        const auto t = ks::plot::nice_ticks(lo, hi);
        const double step = ks::plot::nice_step(lo, hi);
        SCOPED_TRACE(::testing::Message() << "range [" << lo << ", " << hi << "] step " << step);
        ASSERT_GE(t.size(), 4u);
        ASSERT_LE(t.size(), 10u);
        const double e = std::floor(std::log10(step) + 1e-9), m = step / std::pow(10.0, e);
        EXPECT_TRUE(std::abs(m - 1) < 1e-9 || std::abs(m - 2) < 1e-9 || std::abs(m - 5) < 1e-9) << m;
        for (size_t i = 0; i < t.size(); ++i) {
            EXPECT_GE(t[i], lo - 1e-9 * step);
            EXPECT_LE(t[i], hi + 1e-9 * step);
            EXPECT_NEAR(std::remainder(t[i], step), 0.0, 1e-6 * step);
            if (i) {
                EXPECT_NEAR(t[i] - t[i - 1], step, 1e-6 * step);
            }
        }
        // No smaller step fits: the next smaller 1-2-5 step would give more than 10 ticks.
        const double smaller = m == 1 ? step / 2 : m == 2 ? step / 2 : step * 2 / 5;
        const double n_smaller = std::floor(hi / smaller + 1e-9) - std::ceil(lo / smaller - 1e-9) + 1;
        EXPECT_GT(n_smaller, 10) << "smaller step " << smaller;
    }
}

TEST(NiceTicks, BadRangeIsUsage) {
    const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
    EXPECT_EQ(exit_code_of([] { ks::plot::nice_ticks(1, 1); }), ks::Exit::usage);
    EXPECT_EQ(exit_code_of([] { ks::plot::nice_ticks(5, 2); }), ks::Exit::usage);
    EXPECT_EQ(exit_code_of([&] { ks::plot::nice_ticks(nan, 2); }), ks::Exit::usage);
    EXPECT_EQ(exit_code_of([&] { ks::plot::nice_ticks(0, inf); }), ks::Exit::usage);
}

TEST(NiceTicks, LabelsHaveNoTrailingZeros) {
    EXPECT_EQ(ks::plot::tick_label(300, 50), "300");
    EXPECT_EQ(ks::plot::tick_label(0.55, 0.05), "0.55");
    EXPECT_EQ(ks::plot::tick_label(0.6, 0.05), "0.6");
    EXPECT_EQ(ks::plot::tick_label(2, 0.5), "2");
    EXPECT_EQ(ks::plot::tick_label(-1.5, 0.5), "-1.5");
    EXPECT_EQ(ks::plot::tick_label(-0.0, 0.1), "0");
    EXPECT_EQ(ks::plot::tick_label(-1e-17, 0.1), "0");
    EXPECT_EQ(ks::plot::tick_label(3500, 500), "3500");
    EXPECT_EQ(ks::plot::tick_label(0.0002, 0.0001), "0.0002");
}

TEST(Axis, MapsDataToPixelsAndLabelsTicks) {
    // A y axis pointing up: data 0 at pixel 99.5, data 1000 at pixel -0.5.
    const ks::plot::Axis a{0, 1000, 99.5, -0.5};
    EXPECT_DOUBLE_EQ(a.to_pixel(0), 99.5);
    EXPECT_DOUBLE_EQ(a.to_pixel(1000), -0.5);
    EXPECT_DOUBLE_EQ(a.to_pixel(250), 74.5);
    const auto t = ks::plot::axis_ticks(a, 6);
    ASSERT_EQ(t.size(), 6u);  // step 200
    for (size_t i = 0; i < t.size(); ++i) {
        EXPECT_DOUBLE_EQ(t[i].value, 200.0 * i);
        EXPECT_DOUBLE_EQ(t[i].pixel, 99.5 - 0.1 * 200.0 * i);
        EXPECT_EQ(t[i].label, std::to_string(200 * i));
    }
}
