#pragma once
// The drift map ks-drift writes (drift/drift_map.png, formats/motion.md): spike depth against
// time, darker for larger amplitude, at the recorded depth (left panel, "recorded") and at the
// corrected depth (right panel, "motion-corrected"), with the estimated motion drawn over them.
//
// Spikes are streamed in: each lands on one pixel of its panel's grid, which keeps the largest
// amplitude seen there, so memory depends on the picture size only (not on the number of spikes)
// and any chunking or order of add_spikes calls gives the same picture. A pixel's grey goes
// linearly from light grey (amplitude <= amp_min) to black (>= amp_max); pixels without spikes
// stay white. The output is deterministic: the same inputs give the same PNG bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "ks/plot.hpp"

namespace ks {

struct DriftMapConfig {
    double duration_s = 0;             // x axis 0..duration_s (time from the start of the sorted range)
    double fs_hz = 30000;              // t_samples / fs_hz = time in s
    double ymin_um = 0, ymax_um = 0;   // y axis range (probe depth range, padded by the caller)
    double amp_min = 9, amp_max = 40;  // shading: amp_min -> light grey, >= amp_max -> black
    std::string title;                 // e.g. "data.ks: drift map (nblocks=5, 9 blocks)"
    std::string note;                  // optional line under the title
    int width = 1800, height = 900;    // whole picture (both panels)
    bool corrected_panel = true;       // false: one panel only (no correction available)
};

// A rectangle in picture pixels: columns x..x+w-1, rows y..y+h-1.
struct PixelRect {
    int x = 0, y = 0, w = 0, h = 0;
};

class DriftMap {
public:
    // Minimum picture size (the axes need room).
    static constexpr int kMinWidth = 300, kMinHeight = 200;

    // Throws Error(usage) naming the setting: duration_s or fs_hz not finite and > 0, ymax_um <=
    // ymin_um or not finite, amp_max <= amp_min or not finite, width/height outside
    // kMinWidth/kMinHeight..plot::kMaxSide.
    explicit DriftMap(const DriftMapConfig& c);

    // n spikes: t_samples (from the start of the sorted range), depth_um, amplitude and, when not
    // null, corrected_depth_um (null: only the left panel gets the spikes; also ignored without a
    // corrected panel). A spike with a non-finite value or outside the axes is skipped (in the
    // panel where it is outside). n = 0 is allowed.
    void add_spikes(const int64_t* t_samples, const float* depth_um, const float* corrected_depth_um,
                    const float* amplitude, int64_t n);

    // Motion traces, replacing earlier ones. batch_centre_s: n_b times (s); yblk: n_k block
    // centres (µm); dshift: n_b x n_k row-major, Kilosort4's sign (a batch whose spikes appear
    // higher by d µm has dshift = -d). Left panel: one polyline per block through
    // (batch_centre_s[b], yblk[k] - dshift[b, k]), 2 pixels wide (at the default size), a colour
    // per block from a fixed palette. Right panel: the same blocks after correction, flat at
    // yblk[k] over the batches' time span, 1 pixel wide and half transparent. Drawn over the
    // spikes, clipped to the panel. Throws Error(usage) when dshift.size() != n_b x n_k.
    void set_motion(std::vector<double> batch_centre_s, std::vector<double> yblk, std::vector<double> dshift);

    int n_panels() const { return corrected_panel_ ? 2 : 1; }
    // The data area of panel 0 (left) or 1 (right) in picture pixels. Time t maps to column
    // x + floor(t / duration_s * w), depth y to row y + floor((ymax_um - y) / (ymax_um - ymin_um) * h)
    // (depth increasing upwards; the upper edges fall in the last column/row).
    PixelRect plot_area(int panel) const;

    plot::Canvas render() const;
    // render() written as PNG (plot::write_png's errors).
    void write_png(const std::string& path) const;

private:
    struct Grid {
        std::vector<float> max_amp;  // w x h row-major; -inf: no spike
    };
    void accumulate(int panel, double t_s, double depth_um, float amp);
    void draw_panel(plot::Canvas& cv, int panel) const;
    void draw_motion(plot::Canvas& cv) const;

    DriftMapConfig c_;
    bool corrected_panel_;
    int font_scale_, title_scale_;
    PixelRect area_[2];
    Grid grid_[2];
    std::vector<double> batch_centre_s_, yblk_, dshift_;
};

}  // namespace ks
