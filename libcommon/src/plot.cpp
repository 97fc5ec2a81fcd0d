// ks::plot: PNG writer, raster canvas, axis ticks. See ks/plot.hpp.
#include "ks/plot.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "ks/error.hpp"
#include "ks/log.hpp"
#include "ks/output_file.hpp"

namespace ks::plot {
namespace {

void check_size(const std::string& what, int width, int height) {
    if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide)
        throw Error(Exit::usage, log::format("%s: picture size %dx%d; expected 1 to %d pixels per side", what.c_str(),
                                             width, height, kMaxSide));
}

void put_u32(std::string& out, uint32_t v) {
    out.push_back(static_cast<char>(v >> 24));
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
}

// length, type, data, CRC-32 of type + data (PNG 1.2 section 5.3)
void put_chunk(std::string& out, const char type[4], const uint8_t* data, size_t n) {
    KS_ASSERT(n <= 0x7FFFFFFFu, "PNG chunk too long");
    put_u32(out, static_cast<uint32_t>(n));
    out.append(type, 4);
    if (n) out.append(reinterpret_cast<const char*>(data), n);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(type), 4);
    // crc32 takes uInt lengths; feed large chunks in pieces.
    for (size_t off = 0; off < n;) {
        const size_t piece = std::min<size_t>(n - off, 1u << 30);
        crc = crc32(crc, data + off, static_cast<uInt>(piece));
        off += piece;
    }
    put_u32(out, static_cast<uint32_t>(crc));
}

int abs_sum(const uint8_t* filtered, size_t n) {
    // Bytes read as signed differences: the usual "minimum sum of absolute differences" heuristic.
    long s = 0;
    for (size_t i = 0; i < n; ++i) s += std::abs(static_cast<int>(static_cast<int8_t>(filtered[i])));
    return static_cast<int>(std::min<long>(s, 0x7FFFFFFF));
}

// Filtered scanlines: a filter-type byte then the filtered row, for each row.
std::vector<uint8_t> filter_rows(int width, int height, const uint8_t* rgb) {
    const size_t row = static_cast<size_t>(width) * 3;
    std::vector<uint8_t> out(static_cast<size_t>(height) * (row + 1));
    std::vector<uint8_t> sub(row), up(row);
    for (int y = 0; y < height; ++y) {
        const uint8_t* cur = rgb + static_cast<size_t>(y) * row;
        const uint8_t* prev = y > 0 ? cur - row : nullptr;
        for (size_t i = 0; i < row; ++i) {
            sub[i] = static_cast<uint8_t>(cur[i] - (i >= 3 ? cur[i - 3] : 0));
            up[i] = static_cast<uint8_t>(cur[i] - (prev ? prev[i] : 0));
        }
        const int s_none = abs_sum(cur, row), s_sub = abs_sum(sub.data(), row), s_up = abs_sum(up.data(), row);
        uint8_t type = 0;
        const uint8_t* best = cur;
        if (s_sub < s_none) type = 1, best = sub.data();
        if (s_up < std::min(s_none, s_sub)) type = 2, best = up.data();
        uint8_t* dst = out.data() + static_cast<size_t>(y) * (row + 1);
        dst[0] = type;
        std::copy(best, best + row, dst + 1);
    }
    return out;
}

// Liang-Barsky: clips the segment to [xmin, xmax] x [ymin, ymax]; false when nothing is left.
bool clip_segment(double& x0, double& y0, double& x1, double& y1, double xmin, double ymin, double xmax,
                  double ymax) {
    const double dx = x1 - x0, dy = y1 - y0;
    double t0 = 0, t1 = 1;
    const double p[4] = {-dx, dx, -dy, dy};
    const double q[4] = {x0 - xmin, xmax - x0, y0 - ymin, ymax - y0};
    for (int i = 0; i < 4; ++i) {
        if (p[i] == 0) {
            if (q[i] < 0) return false;
            continue;
        }
        const double r = q[i] / p[i];
        if (p[i] < 0) {
            if (r > t1) return false;
            t0 = std::max(t0, r);
        } else {
            if (r < t0) return false;
            t1 = std::min(t1, r);
        }
    }
    // End points inside stay bit for bit (x0 + 1 * dx need not equal x1).
    const double ax = x0 + t0 * dx, ay = y0 + t0 * dy, bx = x0 + t1 * dx, by = y0 + t1 * dy;
    if (t1 < 1) x1 = bx, y1 = by;
    if (t0 > 0) x0 = ax, y0 = ay;
    return true;
}

int to_pixel_index(double v) { return static_cast<int>(std::floor(v + 0.5)); }

}  // namespace

void write_png(const std::string& path, int width, int height, const uint8_t* rgb) {
    check_size(path, width, height);
    KS_ASSERT(rgb != nullptr, "write_png: no pixels for " + path);
    std::vector<uint8_t> raw;
    std::vector<uint8_t> packed;
    uLongf packed_n = 0;
    try {
        raw = filter_rows(width, height, rgb);
        packed_n = compressBound(static_cast<uLong>(raw.size()));
        packed.resize(packed_n);
    } catch (const std::bad_alloc&) {
        throw Error(Exit::resources, log::format("%s: out of memory for a %dx%d picture", path.c_str(), width, height));
    }
    const int rc = compress2(packed.data(), &packed_n, raw.data(), static_cast<uLong>(raw.size()), 6);
    if (rc == Z_MEM_ERROR) throw Error(Exit::resources, path + ": out of memory while compressing the picture");
    KS_ASSERT(rc == Z_OK, "compress2 failed for " + path + " (zlib code " + std::to_string(rc) + ")");

    std::string head("\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13];
    const uint32_t w = static_cast<uint32_t>(width), h = static_cast<uint32_t>(height);
    for (int i = 0; i < 4; ++i) {
        ihdr[i] = static_cast<uint8_t>(w >> (24 - 8 * i));
        ihdr[4 + i] = static_cast<uint8_t>(h >> (24 - 8 * i));
    }
    ihdr[8] = 8;   // bit depth
    ihdr[9] = 2;   // colour type: truecolour
    ihdr[10] = 0;  // deflate
    ihdr[11] = 0;  // adaptive filtering
    ihdr[12] = 0;  // no interlace
    put_chunk(head, "IHDR", ihdr, sizeof ihdr);

    OutputFile f(path);
    f.write(head);
    constexpr size_t kIdatMax = size_t(1) << 20;
    std::string chunk;
    for (size_t off = 0; off < packed_n; off += kIdatMax) {
        chunk.clear();
        put_chunk(chunk, "IDAT", packed.data() + off, std::min<size_t>(kIdatMax, packed_n - off));
        f.write(chunk);
    }
    chunk.clear();
    put_chunk(chunk, "IEND", nullptr, 0);
    f.write(chunk);
    f.commit();
}

// ---- Canvas ---------------------------------------------------------------------------------------

Canvas::Canvas(int width, int height, Rgb background)
    : width_(width), height_(height), background_(background), clip_x0_(0), clip_y0_(0), clip_x1_(width),
      clip_y1_(height) {
    check_size("canvas", width, height);
    rgb_.resize(static_cast<size_t>(width) * height * 3);
    for (size_t i = 0; i < rgb_.size(); i += 3) {
        rgb_[i] = background.r;
        rgb_[i + 1] = background.g;
        rgb_[i + 2] = background.b;
    }
}

void Canvas::set_clip(int x, int y, int w, int h) {
    // In 64 bits: x + w may overflow an int for wild arguments.
    clip_x0_ = static_cast<int>(std::clamp<int64_t>(x, 0, width_));
    clip_y0_ = static_cast<int>(std::clamp<int64_t>(y, 0, height_));
    clip_x1_ = static_cast<int>(std::clamp<int64_t>(int64_t(x) + std::max(w, 0), clip_x0_, width_));
    clip_y1_ = static_cast<int>(std::clamp<int64_t>(int64_t(y) + std::max(h, 0), clip_y0_, height_));
}

void Canvas::reset_clip() {
    clip_x0_ = clip_y0_ = 0;
    clip_x1_ = width_;
    clip_y1_ = height_;
}

Rgb Canvas::get(int x, int y) const {
    KS_ASSERT(inside(x, y), log::format("Canvas::get(%d, %d) outside %dx%d", x, y, width_, height_));
    const uint8_t* p = rgb_.data() + (static_cast<size_t>(y) * width_ + x) * 3;
    return Rgb{p[0], p[1], p[2]};
}

void Canvas::set(int x, int y, Rgb c) {
    if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_) return;
    uint8_t* p = rgb_.data() + (static_cast<size_t>(y) * width_ + x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

void Canvas::blend(int x, int y, Rgb c, float alpha) {
    if (!(alpha > 0)) return;  // also NaN
    if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_) return;
    const float a = std::min(alpha, 1.0f);
    uint8_t* p = rgb_.data() + (static_cast<size_t>(y) * width_ + x) * 3;
    const uint8_t src[3] = {c.r, c.g, c.b};
    for (int i = 0; i < 3; ++i)
        p[i] = static_cast<uint8_t>(std::lround((1.0f - a) * static_cast<float>(p[i]) + a * static_cast<float>(src[i])));
}

void Canvas::stamp(int x, int y, Rgb c, int width) {
    const int lo = -(width - 1) / 2, hi = lo + width - 1;
    for (int dy = lo; dy <= hi; ++dy)
        for (int dx = lo; dx <= hi; ++dx) set(x + dx, y + dy, c);
}

void Canvas::bresenham(int x0, int y0, int x1, int y1, Rgb c, int width) {
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        stamp(x0, y0, c, width);
        if (x0 == x1 && y0 == y1) break;
        const int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

void Canvas::line(int x0, int y0, int x1, int y1, Rgb c, int width) {
    KS_ASSERT(width >= 1 && width <= 3, "Canvas::line: width must be 1 to 3");
    // A segment near the clip keeps its exact end points; others are clipped first, so that
    // far-away end points cost nothing (and differences cannot overflow).
    const int64_t m = width;
    const auto near_x = [&](int v) { return v >= clip_x0_ - m && v < clip_x1_ + m; };
    const auto near_y = [&](int v) { return v >= clip_y0_ - m && v < clip_y1_ + m; };
    if (near_x(x0) && near_x(x1) && near_y(y0) && near_y(y1)) {
        bresenham(x0, y0, x1, y1, c, width);
        return;
    }
    line(static_cast<double>(x0), static_cast<double>(y0), static_cast<double>(x1), static_cast<double>(y1), c, width);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, int width) {
    KS_ASSERT(width >= 1 && width <= 3, "Canvas::line: width must be 1 to 3");
    if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
    if (clip_x1_ <= clip_x0_ || clip_y1_ <= clip_y0_) return;
    // A margin of the stamp's width around the clip: the stamp reaches at most 1 pixel sideways.
    const double m = width;
    if (!clip_segment(x0, y0, x1, y1, clip_x0_ - m, clip_y0_ - m, clip_x1_ - 1 + m, clip_y1_ - 1 + m)) return;
    bresenham(to_pixel_index(x0), to_pixel_index(y0), to_pixel_index(x1), to_pixel_index(y1), c, width);
}

void Canvas::polyline(const std::vector<double>& x, const std::vector<double>& y, Rgb c, int width) {
    KS_ASSERT(x.size() == y.size(), "Canvas::polyline: x and y differ in length");
    if (x.size() == 1) {
        line(x[0], y[0], x[0], y[0], c, width);
        return;
    }
    for (size_t i = 1; i < x.size(); ++i) line(x[i - 1], y[i - 1], x[i], y[i], c, width);
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb c) {
    const int64_t xa = std::max<int64_t>(x, clip_x0_), xb = std::min<int64_t>(int64_t(x) + w, clip_x1_);
    const int64_t ya = std::max<int64_t>(y, clip_y0_), yb = std::min<int64_t>(int64_t(y) + h, clip_y1_);
    for (int64_t yy = ya; yy < yb; ++yy)
        for (int64_t xx = xa; xx < xb; ++xx) set(static_cast<int>(xx), static_cast<int>(yy), c);
}

void Canvas::blend_rect(int x, int y, int w, int h, Rgb c, float alpha) {
    const int64_t xa = std::max<int64_t>(x, clip_x0_), xb = std::min<int64_t>(int64_t(x) + w, clip_x1_);
    const int64_t ya = std::max<int64_t>(y, clip_y0_), yb = std::min<int64_t>(int64_t(y) + h, clip_y1_);
    for (int64_t yy = ya; yy < yb; ++yy)
        for (int64_t xx = xa; xx < xb; ++xx) blend(static_cast<int>(xx), static_cast<int>(yy), c, alpha);
}

void Canvas::rect(int x, int y, int w, int h, Rgb c) {
    if (w < 1 || h < 1) return;
    fill_rect(x, y, w, 1, c);
    fill_rect(x, static_cast<int>(std::min<int64_t>(int64_t(y) + h - 1, INT32_MAX)), w, 1, c);
    fill_rect(x, y, 1, h, c);
    fill_rect(static_cast<int>(std::min<int64_t>(int64_t(x) + w - 1, INT32_MAX)), y, 1, h, c);
}

int Canvas::text_width(const std::string& s, int scale) {
    const auto n = static_cast<int64_t>(decode_utf8(s).size());
    if (n == 0) return 0;
    return static_cast<int>(std::min<int64_t>((n * kGlyphAdvance - 1) * scale, INT32_MAX));
}

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale, Align align, bool vertical) {
    KS_ASSERT(scale >= 1 && scale <= 64, "Canvas::text: scale must be 1 to 64");
    const std::vector<char32_t> cps = decode_utf8(s);
    if (cps.empty()) return;
    const int64_t len = (static_cast<int64_t>(cps.size()) * kGlyphAdvance - 1) * scale;
    // u: offset along the reading direction from the text's start.
    const int64_t start = align == Align::left ? 0 : align == Align::centre ? -(len / 2) : -len;
    for (size_t k = 0; k < cps.size(); ++k) {
        const auto& g = glyph(cps[k]);
        const int64_t u0 = start + static_cast<int64_t>(k) * kGlyphAdvance * scale;
        for (int r = 0; r < kGlyphRows; ++r) {
            if (!g[r]) continue;
            for (int col = 0; col < kGlyphWidth; ++col) {
                if (!(g[r] & (1u << (kGlyphWidth - 1 - col)))) continue;
                for (int sy = 0; sy < scale; ++sy)
                    for (int sx = 0; sx < scale; ++sx) {
                        const int64_t u = u0 + col * scale + sx, v = r * scale + sy;
                        // Turned anticlockwise: reading direction up the picture, glyph tops left.
                        const int64_t px = vertical ? x + v : x + u;
                        const int64_t py = vertical ? y - u : y + v;
                        if (px < clip_x0_ || py < clip_y0_ || px >= clip_x1_ || py >= clip_y1_) continue;
                        set(static_cast<int>(px), static_cast<int>(py), c);
                    }
            }
        }
    }
}

void Canvas::write_png(const std::string& path) const { plot::write_png(path, width_, height_, rgb_.data()); }

// ---- ticks ------------------------------------------------------------------------------------------

namespace {

// A step m x 10^e held exactly, so that tick values are computed as decimal fractions.
struct Step {
    int m;  // 1, 2 or 5
    int e;
    double value() const { return e >= 0 ? m * std::pow(10.0, e) : m / std::pow(10.0, -e); }
    double at(int64_t i) const {
        return e >= 0 ? static_cast<double>(i * m) * std::pow(10.0, e) : static_cast<double>(i * m) / std::pow(10.0, -e);
    }
};

void check_range(double lo, double hi) {
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(hi > lo))
        throw Error(Exit::usage, log::format("axis range [%g, %g]: expected finite bounds with lo < hi", lo, hi));
}

// Indices i with lo <= i x step <= hi (a relative slack of 1e-9 steps absorbs rounding).
void index_range(double lo, double hi, const Step& s, int64_t& first, int64_t& last) {
    const double v = s.value();
    first = static_cast<int64_t>(std::ceil(lo / v - 1e-9));
    last = static_cast<int64_t>(std::floor(hi / v + 1e-9));
}

Step choose_step(double lo, double hi, int max_ticks) {
    KS_ASSERT(max_ticks >= 2, "nice_ticks: max_ticks must be at least 2");
    check_range(lo, hi);
    // Start one decade below the step that would give max_ticks intervals and walk up 1-2-5.
    int e = static_cast<int>(std::floor(std::log10((hi - lo) / max_ticks))) - 1;
    static const int kMantissa[3] = {1, 2, 5};
    for (;; ++e) {
        for (int m : kMantissa) {
            const Step s{m, e};
            // Ticks are counted in doubles first: huge ranges over a tiny step would overflow int64.
            if ((hi - lo) / s.value() > 4.0 * max_ticks) continue;
            // Indices must fit in int64 (a tiny range far from 0): take a coarser step.
            if (std::max(std::abs(lo), std::abs(hi)) / s.value() > 1e15) continue;
            int64_t first, last;
            index_range(lo, hi, s, first, last);
            if (last - first + 1 <= max_ticks) return s;
        }
    }
}

}  // namespace

double nice_step(double lo, double hi, int max_ticks) { return choose_step(lo, hi, max_ticks).value(); }

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
    const Step s = choose_step(lo, hi, max_ticks);
    int64_t first, last;
    index_range(lo, hi, s, first, last);
    std::vector<double> out;
    for (int64_t i = first; i <= last; ++i) out.push_back(s.at(i));
    return out;
}

std::string tick_label(double value, double step) {
    int decimals = 0;
    if (std::isfinite(step) && step > 0) decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    decimals = std::min(decimals, 15);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
    std::string s = buf;
    if (s.find('.') != std::string::npos) {
        while (!s.empty() && s.back() == '0') s.pop_back();
        if (!s.empty() && s.back() == '.') s.pop_back();
    }
    if (s == "-0") s = "0";
    return s;
}

std::vector<Tick> axis_ticks(const Axis& axis, int max_ticks) {
    const double lo = std::min(axis.data_lo, axis.data_hi), hi = std::max(axis.data_lo, axis.data_hi);
    const double step = nice_step(lo, hi, max_ticks);
    std::vector<Tick> out;
    for (double v : nice_ticks(lo, hi, max_ticks)) out.push_back(Tick{v, axis.to_pixel(v), tick_label(v, step)});
    return out;
}

}  // namespace ks::plot
