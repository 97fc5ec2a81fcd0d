// The grid of universal-template centres (§4.2) and its envelopes (§4.3) against positions and
// counts worked out by hand for a linear probe, a 4-column Neuropixels 1.0 section and a 2-shank probe.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/universal_templates.hpp"
#include "ks/probe.hpp"

namespace {

using ks::kernels::make_universal_grid;
using ks::kernels::UniversalGridSettings;

ks::Probe make_probe(const std::vector<double>& x, const std::vector<double>& y, const std::vector<int>& k) {
    ks::Probe p;
    p.name = "test";
    for (size_t i = 0; i < x.size(); ++i) p.chanMap.push_back(static_cast<int>(i));
    p.xc = x;
    p.yc = y;
    p.kcoords = k;
    return p;
}

// 8 contacts in a line, 20 µm apart.
ks::Probe linear8() {
    std::vector<double> x(8, 0.0), y;
    for (int i = 0; i < 8; ++i) y.push_back(20.0 * i);
    return make_probe(x, y, std::vector<int>(8, 0));
}

// Neuropixels 1.0 checkerboard, 16 contacts: y = 20 * (i / 2), x cycles 43, 11, 59, 27.
ks::Probe np1_section(int n = 16) {
    const double xs[4] = {43, 11, 59, 27};
    std::vector<double> x, y;
    for (int i = 0; i < n; ++i) {
        x.push_back(xs[i % 4]);
        y.push_back(20.0 * (i / 2));
    }
    return make_probe(x, y, std::vector<int>(n, 0));
}

TEST(UniversalGrid, LinearProbe) {
    UniversalGridSettings s;
    const auto g = make_universal_grid(linear8(), s);
    EXPECT_DOUBLE_EQ(g.dmin_um, 20.0);
    // y from 0 to 140 in steps of dmin/2 = 10: 15 rows; one x (xmin == xmax).
    ASSERT_EQ(g.n_pos, 15);
    for (int f = 0; f < 15; ++f) {
        EXPECT_DOUBLE_EQ(g.x_um[f], 0.0);
        EXPECT_DOUBLE_EQ(g.y_um[f], 10.0 * f);
    }
    // Centre at y = 30: channels at 20 and 40 (distance 10; the lower row first), then 0 and 60, ...
    const int f = 3;
    EXPECT_EQ(g.iC[f * 10 + 0], 1);
    EXPECT_EQ(g.iC[f * 10 + 1], 2);
    EXPECT_EQ(g.iC[f * 10 + 2], 0);
    EXPECT_EQ(g.iC[f * 10 + 3], 3);
    EXPECT_DOUBLE_EQ(g.ds_um2[f * 10 + 0], 100.0);
    EXPECT_DOUBLE_EQ(g.ds_um2[f * 10 + 2], 900.0);
    // Only 8 channels: the last two slots are empty.
    EXPECT_EQ(g.iC[f * 10 + 8], -1);
    EXPECT_EQ(g.iC[f * 10 + 9], -1);
    EXPECT_TRUE(std::isinf(g.ds_um2[f * 10 + 9]));
    // Local-max neighbourhood: all 15 centres, itself first, then 2 and 4; 85 empty slots.
    EXPECT_EQ(g.iC2[f * 100 + 0], 3);
    EXPECT_EQ(g.iC2[f * 100 + 1], 2);
    EXPECT_EQ(g.iC2[f * 100 + 2], 4);
    EXPECT_EQ(g.iC2[f * 100 + 14], 14);
    EXPECT_EQ(g.iC2[f * 100 + 15], -1);
}

TEST(UniversalGrid, EnvelopesClosedForm) {
    const auto g = make_universal_grid(linear8(), UniversalGridSettings{});
    ASSERT_EQ(g.n_sizes, 5);
    const int F = g.n_pos, f = 3;  // y = 30: contacts 10, 10, 30, 30, 50, 70, 90, 110 µm away
    const double d2[8] = {100, 100, 900, 900, 2500, 4900, 8100, 12100};
    for (int s = 0; s < 5; ++s) {
        const double sig = 10.0 * (s + 1);
        double norm2 = 0;
        for (double d : d2) norm2 += std::exp(-2 * d / (sig * sig));
        for (int i = 0; i < 8; ++i)
            EXPECT_NEAR(g.g[(s * F + f) * 10 + i], std::exp(-d2[i] / (sig * sig)) / std::sqrt(norm2), 1e-6);
        EXPECT_EQ(g.g[(s * F + f) * 10 + 8], 0.f);
    }
}

TEST(UniversalGrid, Np1Section) {
    UniversalGridSettings s;
    const auto g = make_universal_grid(np1_section(), s);
    EXPECT_DOUBLE_EQ(g.dmin_um, 20.0);
    // 15 y rows (0..140 step 10) x 4 x columns (11, 27, 43, 59; (59 - 11) / 16 + 1 = 4), all within 32 µm.
    ASSERT_EQ(g.n_pos, 60);
    const double xs[4] = {11, 27, 43, 59};
    for (int r = 0; r < 15; ++r)
        for (int j = 0; j < 4; ++j) {
            EXPECT_DOUBLE_EQ(g.y_um[r * 4 + j], 10.0 * r);
            EXPECT_DOUBLE_EQ(g.x_um[r * 4 + j], xs[j]);
        }
    // Centre (43, 0) sits on channel 0; channels 2 (59, 20) and 3 (27, 20) are both 16^2 + 20^2 = 656
    // away (a tie, broken by channel row), channel 1 (11, 0) is 32^2 = 1024 away.
    const int f = 2;
    EXPECT_EQ(g.iC[f * 10 + 0], 0);
    EXPECT_DOUBLE_EQ(g.ds_um2[f * 10 + 0], 0.0);
    EXPECT_EQ(g.iC[f * 10 + 1], 2);
    EXPECT_EQ(g.iC[f * 10 + 2], 3);
    EXPECT_DOUBLE_EQ(g.ds_um2[f * 10 + 1], 656.0);
    EXPECT_EQ(g.iC[f * 10 + 3], 1);
    EXPECT_DOUBLE_EQ(g.ds_um2[f * 10 + 3], 1024.0);

    // max_channel_distance = 10: rows at multiples of 20 keep only the 2 centres on a contact,
    // rows in between keep all 4 (a contact 10 µm above or below): 8 * 2 + 7 * 4 = 44.
    s.max_channel_distance = 10;
    const auto g10 = make_universal_grid(np1_section(), s);
    EXPECT_EQ(g10.n_pos, 44);
    EXPECT_DOUBLE_EQ(g10.x_um[0], 11.0);  // y = 0 keeps x = 11 and 43
    EXPECT_DOUBLE_EQ(g10.x_um[1], 43.0);
    EXPECT_DOUBLE_EQ(g10.y_um[2], 10.0);
}

TEST(UniversalGrid, TwoShanksNeverMix) {
    // Two shanks 250 µm apart, 4 contacts each at y = 0, 20, 40, 60.
    std::vector<double> x, y;
    std::vector<int> k;
    for (int sh = 0; sh < 2; ++sh)
        for (int i = 0; i < 4; ++i) {
            x.push_back(250.0 * sh);
            y.push_back(20.0 * i);
            k.push_back(sh);
        }
    UniversalGridSettings s;
    s.nearest_chans = 6;
    s.nearest_templates = 10;
    const auto g = make_universal_grid(make_probe(x, y, k), s);
    ASSERT_EQ(g.n_pos, 14);  // 7 rows per shank
    for (int f = 0; f < 14; ++f) {
        const int sh = f / 7;
        EXPECT_EQ(g.shank[f], sh);
        EXPECT_DOUBLE_EQ(g.x_um[f], 250.0 * sh);
        EXPECT_DOUBLE_EQ(g.y_um[f], 10.0 * (f % 7));
        for (int i = 0; i < 6; ++i) {
            const int c = g.iC[f * 6 + i];
            if (i < 4)
                EXPECT_EQ(c / 4, sh) << "centre " << f << " uses a channel of the other shank";
            else
                EXPECT_EQ(c, -1);
        }
        for (int j = 0; j < 10; ++j) {
            const int h = g.iC2[f * 10 + j];
            if (j < 7)
                EXPECT_EQ(h / 7, sh);
            else
                EXPECT_EQ(h, -1);
        }
    }
}

TEST(UniversalGrid, Np1FullProbeCount) {
    // The whole NP1 (384 contacts): 383 rows x 4 columns = 1532 centres (docs §4.2).
    const auto g = make_universal_grid(np1_section(384), UniversalGridSettings{});
    EXPECT_EQ(g.n_pos, 1532);
}

TEST(UniversalGrid, BadSettingsAreUsageErrors) {
    const auto p = linear8();
    auto expect_usage = [&](UniversalGridSettings s, const char* name) {
        try {
            make_universal_grid(p, s);
            ADD_FAILURE() << name << " accepted";
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        }
    };
    UniversalGridSettings s;
    s.dminx = 0;
    expect_usage(s, "dminx");
    s = {};
    s.template_sizes = 0;
    expect_usage(s, "template_sizes");
    s = {};
    s.nearest_chans = 0;
    expect_usage(s, "nearest_chans");
    s = {};
    s.min_template_size = -1;
    expect_usage(s, "min_template_size");
    s = {};
    s.max_channel_distance = std::nan("");
    expect_usage(s, "max_channel_distance");
}

}  // namespace
