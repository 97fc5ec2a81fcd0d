// The drift map picture. See ks/drift_map.hpp.
#include "ks/drift_map.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks {
namespace {

using plot::Align;
using plot::Canvas;
using plot::Rgb;

constexpr Rgb kInk{0, 0, 0};
constexpr Rgb kNoteInk{150, 30, 30};  // the note says why something is missing: make it stand out
constexpr int kLightGrey = 200;       // grey level of a spike at amp_min (0 = black at amp_max)
constexpr float kNoSpike = -std::numeric_limits<float>::infinity();

// One colour per block, distinct on white and on grey spikes.
constexpr Rgb kPalette[] = {
    {228, 26, 28},  {55, 126, 184}, {77, 175, 74},  {152, 78, 163}, {255, 127, 0},
    {166, 86, 40},  {231, 41, 138}, {0, 150, 150},  {150, 150, 0},
};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

const char* const kPanelTitle[2] = {"recorded", "motion-corrected"};
const char* const kXLabel = "time (s)";
const char* const kYLabel = "depth (\xC2\xB5m)";

bool finite_positive(double v) { return std::isfinite(v) && v > 0; }

// Layout quantities in pixels, from the font scale s.
struct Metrics {
    int s, ts;
    int ch, pad, gap, tick;
    explicit Metrics(int s_, int ts_) : s(s_), ts(ts_), ch(Canvas::text_height(s_)), pad(6 * s_), gap(3 * s_), tick(3 * s_) {}
};

// Digits sit in the glyphs' top 7 rows: this centres them on a tick.
int digit_top(double centre, int s) { return static_cast<int>(std::floor(centre + 0.5)) - (7 * s) / 2; }

}  // namespace

DriftMap::DriftMap(const DriftMapConfig& c) : c_(c), corrected_panel_(c.corrected_panel) {
    if (!finite_positive(c.duration_s))
        throw Error(Exit::usage, log::format("drift map: duration_s = %g; expected a finite time > 0 s", c.duration_s));
    if (!finite_positive(c.fs_hz))
        throw Error(Exit::usage, log::format("drift map: fs_hz = %g; expected a finite rate > 0 Hz", c.fs_hz));
    if (!std::isfinite(c.ymin_um) || !std::isfinite(c.ymax_um) || !(c.ymax_um > c.ymin_um))
        throw Error(Exit::usage, log::format("drift map: depth range ymin_um = %g, ymax_um = %g; expected finite "
                                             "values with ymin_um < ymax_um",
                                             c.ymin_um, c.ymax_um));
    if (!std::isfinite(c.amp_min) || !std::isfinite(c.amp_max) || !(c.amp_max > c.amp_min))
        throw Error(Exit::usage, log::format("drift map: amplitude range amp_min = %g, amp_max = %g; expected "
                                             "finite values with amp_min < amp_max",
                                             c.amp_min, c.amp_max));
    if (c.width < kMinWidth || c.width > plot::kMaxSide || c.height < kMinHeight || c.height > plot::kMaxSide)
        throw Error(Exit::usage, log::format("drift map: size %dx%d; expected %d to %d pixels wide and %d to %d high",
                                             c.width, c.height, kMinWidth, plot::kMaxSide, kMinHeight, plot::kMaxSide));

    // Text scale follows the picture: 2 at the default 1800 x 900, titles half as large again.
    font_scale_ = std::max(1, std::min(c.width / 900, c.height / 450));
    title_scale_ = font_scale_ + font_scale_ / 2;
    const Metrics m(font_scale_, title_scale_);

    // Rows, top to bottom: title, note, panel titles, data; then tick labels and the x label.
    int top = m.pad + Canvas::text_height(m.ts) + m.gap;
    if (!c.note.empty()) top += m.ch + m.gap;
    top += m.ch + 2 * m.gap + 1;  // panel titles, then the frame's line
    const int bottom = c.height - (m.pad + m.ch + m.gap + m.ch + m.gap + m.tick + 1);
    const int area_h = bottom - top;

    // Left margin: the vertical y label, the widest y tick label, the tick, the frame.
    const plot::Axis y_axis{c.ymin_um, c.ymax_um, 0, 1};
    const int y_max_ticks = std::clamp(area_h / (3 * m.ch), 2, 10);
    int y_label_w = 0;
    if (area_h > 0)
        for (const auto& t : plot::axis_ticks(y_axis, y_max_ticks)) y_label_w = std::max(y_label_w, Canvas::text_width(t.label, m.s));
    const int left = m.pad + m.ch + m.gap + y_label_w + m.gap + m.tick + 1;
    // Right margin: room for half an x tick label at the panel's right end, and a gap.
    const int right = 1 + Canvas::text_width("00000", m.s) / 2 + m.pad;
    const int n = n_panels();
    const int area_w = (c.width - n * (left + right)) / n;
    if (area_w < 10 || area_h < 10)
        throw Error(Exit::usage, log::format("drift map: size %dx%d leaves no room for the data (%dx%d pixels per "
                                             "panel); use a larger picture",
                                             c.width, c.height, std::max(area_w, 0), std::max(area_h, 0)));
    for (int p = 0; p < n; ++p) {
        area_[p] = PixelRect{left + p * (left + right + area_w), top, area_w, area_h};
        grid_[p].max_amp.assign(static_cast<size_t>(area_w) * area_h, kNoSpike);
    }
}

PixelRect DriftMap::plot_area(int panel) const {
    KS_ASSERT(panel >= 0 && panel < n_panels(), "DriftMap::plot_area: no such panel");
    return area_[panel];
}

void DriftMap::accumulate(int panel, double t_s, double depth_um, float amp) {
    if (!std::isfinite(depth_um) || depth_um < c_.ymin_um || depth_um > c_.ymax_um) return;
    const PixelRect& a = area_[panel];
    const double fx = t_s / c_.duration_s, fy = (c_.ymax_um - depth_um) / (c_.ymax_um - c_.ymin_um);
    const int col = std::min(static_cast<int>(std::floor(fx * a.w)), a.w - 1);
    const int row = std::min(static_cast<int>(std::floor(fy * a.h)), a.h - 1);
    float& v = grid_[panel].max_amp[static_cast<size_t>(row) * a.w + col];
    v = std::max(v, amp);
}

void DriftMap::add_spikes(const int64_t* t_samples, const float* depth_um, const float* corrected_depth_um,
                          const float* amplitude, int64_t n) {
    KS_ASSERT(n >= 0, "DriftMap::add_spikes: negative count");
    if (n == 0) return;
    KS_ASSERT(t_samples && depth_um && amplitude, "DriftMap::add_spikes: missing spike arrays");
    const bool right = corrected_panel_ && corrected_depth_um != nullptr;
    for (int64_t i = 0; i < n; ++i) {
        const float amp = amplitude[i];
        if (!std::isfinite(amp)) continue;
        const double t_s = static_cast<double>(t_samples[i]) / c_.fs_hz;
        if (!(t_s >= 0 && t_s <= c_.duration_s)) continue;
        accumulate(0, t_s, depth_um[i], amp);
        if (right) accumulate(1, t_s, corrected_depth_um[i], amp);
    }
}

void DriftMap::set_motion(std::vector<double> batch_centre_s, std::vector<double> yblk, std::vector<double> dshift) {
    if (dshift.size() != batch_centre_s.size() * yblk.size())
        throw Error(Exit::usage, log::format("drift map: dshift has %zu values; expected n_batches x n_blocks = %zu x %zu",
                                             dshift.size(), batch_centre_s.size(), yblk.size()));
    batch_centre_s_ = std::move(batch_centre_s);
    yblk_ = std::move(yblk);
    dshift_ = std::move(dshift);
}

void DriftMap::draw_panel(Canvas& cv, int panel) const {
    const Metrics m(font_scale_, title_scale_);
    const PixelRect& a = area_[panel];

    // Spikes: light grey at amp_min to black at amp_max.
    const std::vector<float>& g = grid_[panel].max_amp;
    const double span = c_.amp_max - c_.amp_min;
    for (int r = 0; r < a.h; ++r)
        for (int col = 0; col < a.w; ++col) {
            const float v = g[static_cast<size_t>(r) * a.w + col];
            if (v == kNoSpike) continue;
            const double f = std::clamp((static_cast<double>(v) - c_.amp_min) / span, 0.0, 1.0);
            const auto grey = static_cast<uint8_t>(std::lround(kLightGrey * (1.0 - f)));
            cv.set(a.x + col, a.y + r, Rgb{grey, grey, grey});
        }

    cv.rect(a.x - 1, a.y - 1, a.w + 2, a.h + 2, kInk);
    cv.text(a.x + a.w / 2, a.y - 1 - m.gap - m.ch, kPanelTitle[panel], kInk, m.s, Align::centre);

    // y axis: depth upwards; row y + floor((ymax - v) / range * h) has its centre at the continuous
    // coordinate below, so ticks and spikes agree.
    const plot::Axis y_axis{c_.ymin_um, c_.ymax_um, a.y + a.h - 0.5, a.y - 0.5};
    const int y_max_ticks = std::clamp(a.h / (3 * m.ch), 2, 10);
    const int y_tick_right = a.x - 2;
    for (const auto& t : plot::axis_ticks(y_axis, y_max_ticks)) {
        const int py = static_cast<int>(std::floor(t.pixel + 0.5));
        cv.line(y_tick_right - m.tick + 1, py, y_tick_right, py, kInk, 1);
        cv.text(y_tick_right - m.tick - m.gap, digit_top(t.pixel, m.s), t.label, kInk, m.s, Align::right);
    }
    cv.text(m.pad + (panel == 0 ? 0 : area_[1].x - area_[0].x), a.y + a.h / 2, kYLabel, kInk, m.s, Align::centre,
            /*vertical=*/true);

    // x axis: fewer ticks until neighbouring labels are clear of each other.
    const plot::Axis x_axis{0, c_.duration_s, a.x - 0.5, a.x + a.w - 0.5};
    std::vector<plot::Tick> xt;
    for (int max_ticks = 10; max_ticks >= 2; --max_ticks) {
        xt = plot::axis_ticks(x_axis, max_ticks);
        int widest = 0;
        for (const auto& t : xt) widest = std::max(widest, Canvas::text_width(t.label, m.s));
        const double step_px = xt.size() > 1 ? xt[1].pixel - xt[0].pixel : a.w;
        if (step_px >= widest + 3 * plot::kGlyphAdvance * m.s) break;
    }
    const int x_tick_top = a.y + a.h + 1;
    for (const auto& t : xt) {
        const int px = static_cast<int>(std::floor(t.pixel + 0.5));
        cv.line(px, x_tick_top, px, x_tick_top + m.tick - 1, kInk, 1);
        cv.text(px, x_tick_top + m.tick + m.gap, t.label, kInk, m.s, Align::centre);
    }
    cv.text(a.x + a.w / 2, c_.height - m.pad - m.ch, kXLabel, kInk, m.s, Align::centre);
}

void DriftMap::draw_motion(Canvas& cv) const {
    const size_t nb = batch_centre_s_.size(), nk = yblk_.size();
    if (nb == 0 || nk == 0) return;
    const auto px_x = [&](const PixelRect& a, double t) { return a.x - 0.5 + t / c_.duration_s * a.w; };
    const auto px_y = [&](const PixelRect& a, double y) {
        return a.y - 0.5 + (c_.ymax_um - y) / (c_.ymax_um - c_.ymin_um) * a.h;
    };

    // Recorded frame: where each block's units appear, batch by batch.
    const PixelRect& left = area_[0];
    cv.set_clip(left.x, left.y, left.w, left.h);
    const int width = std::clamp(font_scale_, 1, 3);
    std::vector<double> xs(nb), ys(nb);
    for (size_t k = 0; k < nk; ++k) {
        for (size_t b = 0; b < nb; ++b) {
            xs[b] = px_x(left, batch_centre_s_[b]);
            ys[b] = px_y(left, yblk_[k] - dshift_[b * nk + k]);
        }
        cv.polyline(xs, ys, kPalette[k % kPaletteSize], width);
    }

    // Corrected frame: the same blocks are flat at their centres, drawn light so the spikes show.
    if (corrected_panel_) {
        const PixelRect& right = area_[1];
        cv.set_clip(right.x, right.y, right.w, right.h);
        double t0 = std::numeric_limits<double>::infinity(), t1 = -t0;
        for (double t : batch_centre_s_)
            if (std::isfinite(t)) t0 = std::min(t0, t), t1 = std::max(t1, t);
        if (t0 <= t1) {
            const double xa = std::max(px_x(right, t0), right.x - 1.0), xb = std::min(px_x(right, t1), right.x + right.w + 0.0);
            for (size_t k = 0; k < nk; ++k) {
                const double y = px_y(right, yblk_[k]);
                if (!std::isfinite(y) || y < right.y - 1.0 || y > right.y + right.h + 0.0) continue;
                const int row = static_cast<int>(std::floor(y + 0.5));
                for (int col = static_cast<int>(std::floor(xa + 0.5)); col <= static_cast<int>(std::floor(xb + 0.5)); ++col)
                    cv.blend(col, row, kPalette[k % kPaletteSize], 0.5f);
            }
        }
    }
    cv.reset_clip();
}

Canvas DriftMap::render() const {
    const Metrics m(font_scale_, title_scale_);
    Canvas cv(c_.width, c_.height, plot::kWhite);
    int y = m.pad;
    cv.text(c_.width / 2, y, c_.title, kInk, m.ts, Align::centre);
    y += Canvas::text_height(m.ts) + m.gap;
    if (!c_.note.empty()) cv.text(c_.width / 2, y, c_.note, kNoteInk, m.s, Align::centre);

    for (int p = 0; p < n_panels(); ++p) draw_panel(cv, p);
    draw_motion(cv);

    // Amplitude key at the bottom right, when it clears the last panel's x label.
    const PixelRect& last = area_[n_panels() - 1];
    const std::string lo = plot::tick_label(c_.amp_min, 0.1), hi = plot::tick_label(c_.amp_max, 0.1);
    const std::string name = "amplitude";
    const int bar_w = 20 * plot::kGlyphAdvance * m.s / 3, bar_h = m.ch - m.s;
    const int key_w = Canvas::text_width(name, m.s) + m.gap * 4 + Canvas::text_width(lo, m.s) + bar_w +
                      Canvas::text_width(hi, m.s);
    const int key_right = c_.width - m.pad;
    const int key_left = key_right - key_w;
    const int label_end = last.x + last.w / 2 + Canvas::text_width(kXLabel, m.s) / 2;
    if (key_left > label_end + 4 * m.gap) {
        const int ky = c_.height - m.pad - m.ch;
        int x = key_left;
        cv.text(x, ky, name, kInk, m.s);
        x += Canvas::text_width(name, m.s) + 2 * m.gap;
        cv.text(x, ky, lo, kInk, m.s);
        x += Canvas::text_width(lo, m.s) + m.gap;
        for (int i = 0; i < bar_w; ++i) {
            const auto grey = static_cast<uint8_t>(std::lround(kLightGrey * (1.0 - static_cast<double>(i) / (bar_w - 1))));
            cv.fill_rect(x + i, ky, 1, bar_h, Rgb{grey, grey, grey});
        }
        x += bar_w + m.gap;
        cv.text(x, ky, hi, kInk, m.s);
    }
    return cv;
}

void DriftMap::write_png(const std::string& path) const { render().write_png(path); }

}  // namespace ks
