#pragma once
// Pictures without Python: an 8-bit RGB raster canvas with lines, rectangles and a built-in
// bitmap font, "nice" axis ticks, and a PNG writer (zlib deflate, no libpng).
//
// Coordinates: x to the right, y downwards, (0, 0) the top-left pixel. Double coordinates put
// pixel centres on integers: v lands on pixel floor(v + 0.5). Every drawing call is clipped to
// the canvas and to the clip rectangle (set_clip), so nothing is ever written outside the buffer
// whatever the coordinates (huge, negative, NaN).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ks::plot {

// PNG size limits (pixels per side) for write_png and Canvas.
constexpr int kMaxSide = 20000;

// Writes an 8-bit RGB PNG (colour type 2, no interlace) atomically through ks::OutputFile.
// rgb: height rows top to bottom, each width x {r, g, b}. Each row gets the PNG filter (none,
// sub or up) with the smallest sum of absolute filtered bytes; the data is deflated with
// compress2 at level 6 and stored in IDAT chunks of at most 1 MiB. The same pixels give the same
// bytes. Throws Error(usage) naming path when width or height is outside 1..kMaxSide (or the path
// is not writable, ks::OutputFile's rule), Error(resources) on a failed write or allocation.
void write_png(const std::string& path, int width, int height, const uint8_t* rgb);

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(Rgb a, Rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
    friend bool operator!=(Rgb a, Rgb b) { return !(a == b); }
};

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kBlack{0, 0, 0};

enum class Align { left, centre, right };

// The built-in font: glyphs of kGlyphWidth x kGlyphRows pixels (capitals and digits in the top 7
// rows, descenders in the 8th), advancing kGlyphAdvance pixels per character, times `scale`.
constexpr int kGlyphWidth = 5;
constexpr int kGlyphRows = 8;
constexpr int kGlyphAdvance = 6;
// One byte per row, top row first; bit 4 is the leftmost column. Covers ASCII 32..126, 'µ'
// (U+00B5 and Greek mu U+03BC) and '°' (U+00B0); any other code point gets the '?' glyph.
const std::array<uint8_t, kGlyphRows>& glyph(char32_t code_point);

// The code points of a UTF-8 string; malformed bytes become '?' (one per byte).
std::vector<char32_t> decode_utf8(const std::string& s);

class Canvas {
public:
    // Throws Error(usage) when width or height is outside 1..kMaxSide.
    Canvas(int width, int height, Rgb background);

    int width() const { return width_; }
    int height() const { return height_; }
    Rgb background() const { return background_; }
    bool inside(int x, int y) const { return x >= 0 && y >= 0 && x < width_ && y < height_; }

    // Drawing is limited to this rectangle (intersected with the canvas) until reset_clip().
    void set_clip(int x, int y, int w, int h);
    void reset_clip();

    Rgb get(int x, int y) const;  // x, y inside the canvas (checked: KS_ASSERT)
    void set(int x, int y, Rgb c);  // ignored outside the canvas or clip
    // out = round((1 - alpha) * out + alpha * c); alpha clamped to [0, 1], NaN draws nothing.
    void blend(int x, int y, Rgb c, float alpha);

    // Bresenham line including both end points; width 1..3 pixels (a square stamp per point).
    void line(int x0, int y0, int x1, int y1, Rgb c, int width = 1);
    void line(double x0, double y0, double x1, double y1, Rgb c, int width = 1);
    // Segments between consecutive points; a non-finite coordinate breaks the line there.
    // x and y have the same length.
    void polyline(const std::vector<double>& x, const std::vector<double>& y, Rgb c, int width = 1);
    void fill_rect(int x, int y, int w, int h, Rgb c);
    void blend_rect(int x, int y, int w, int h, Rgb c, float alpha);
    void rect(int x, int y, int w, int h, Rgb c);  // 1-pixel outline of the w x h box at (x, y)

    // Text in the built-in font (UTF-8, one line). Horizontal: y is the top of the text box and
    // x its left edge, centre or right edge by `align`. Vertical text reads bottom to top (the
    // glyphs turned 90° anticlockwise, their tops to the left): x is the box's left edge and y
    // where the text starts (left), its middle (centre) or where it ends (right).
    void text(int x, int y, const std::string& s, Rgb c, int scale = 1, Align align = Align::left,
              bool vertical = false);
    // Length of the text along its reading direction in pixels: 0 for "", else
    // (n * kGlyphAdvance - 1) * scale for n code points.
    static int text_width(const std::string& s, int scale = 1);
    static int text_height(int scale = 1) { return kGlyphRows * scale; }

    // width x height x 3 bytes, rows top to bottom (write_png's layout).
    const std::vector<uint8_t>& pixels() const { return rgb_; }
    void write_png(const std::string& path) const;  // ks::plot::write_png

private:
    void stamp(int x, int y, Rgb c, int width);
    void bresenham(int x0, int y0, int x1, int y1, Rgb c, int width);  // no clipping of end points
    int width_, height_;
    Rgb background_;
    int clip_x0_, clip_y0_, clip_x1_, clip_y1_;  // half-open [x0, x1) x [y0, y1)
    std::vector<uint8_t> rgb_;
};

// ---- axes --------------------------------------------------------------------------------------

// Tick values on [lo, hi]: multiples of the smallest step of the form {1, 2, 5} x 10^k that
// gives at most max_ticks ticks inside the range (for max_ticks = 10: 4 to 10 ticks). Values
// are i x step computed exactly from the decimal step (0.9, not 0.9000000000000001).
// Throws Error(usage) for a non-finite range or hi <= lo; max_ticks >= 2 (KS_ASSERT).
std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 10);
// The step nice_ticks chose (distance between consecutive ticks).
double nice_step(double lo, double hi, int max_ticks = 10);
// A tick's label: as many decimals as the step needs, trailing zeros dropped ("0.5", "1.25",
// "300", never "-0").
std::string tick_label(double value, double step);

// A linear map from a data range to a pixel range. pixel_lo is where data_lo lands, pixel_hi
// where data_hi lands (pixel_hi < pixel_lo for a y axis pointing up).
struct Axis {
    double data_lo = 0, data_hi = 1;
    double pixel_lo = 0, pixel_hi = 1;
    double to_pixel(double v) const {
        return pixel_lo + (v - data_lo) * (pixel_hi - pixel_lo) / (data_hi - data_lo);
    }
};

struct Tick {
    double value;
    double pixel;       // axis.to_pixel(value)
    std::string label;  // tick_label(value, step)
};

// nice_ticks over the axis's data range, with positions and labels.
std::vector<Tick> axis_ticks(const Axis& axis, int max_ticks = 10);

}  // namespace ks::plot
