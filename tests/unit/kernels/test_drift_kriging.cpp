// Kriging drift correction (kilosort4-algorithm.md 3.6): per-channel shifts, the matrix against
// closed forms (zero motion: Kxx (Kxx + 0.01 I)^-1 = I - 0.01 (Kxx + 0.01 I)^-1), interpolation of a
// smooth field at shifted positions, shank separation and the whitening product.
#include <gtest/gtest.h>

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "ks/error.hpp"
#include "ks/kernels/kriging.hpp"

namespace {

using ks::drift::Kriging;

// Two columns 32 µm apart, rows 20 µm apart (n_rows rows), shank `shank`, x offset x0.
void add_shank(std::vector<double>& xc, std::vector<double>& yc, std::vector<int>& kc, int n_rows, int shank,
               double x0) {
    for (int r = 0; r < n_rows; ++r)
        for (int col = 0; col < 2; ++col) {
            xc.push_back(x0 + 32.0 * col);
            yc.push_back(20.0 * r);
            kc.push_back(shank);
        }
}

double field(double x, double y) {
    // Smooth on the 20 µm scale: a broad bump plus a slow ramp in x.
    return std::exp(-(y - 300.0) * (y - 300.0) / (2 * 80.0 * 80.0)) + 0.002 * x;
}

template <class F>
ks::Exit code_of(F&& f) {
    try {
        f();
    } catch (const ks::Error& e) {
        return e.code();
    }
    return ks::Exit::ok;
}

}  // namespace

TEST(DriftKriging, ChannelShiftsInterpolateAndExtrapolate) {
    const std::vector<double> yc = {0, 50, 100, 150, 250, 400};
    EXPECT_EQ(ks::drift::channel_shifts({3.0}, {200.0}, yc), std::vector<double>(6, 3.0));
    // Blocks at 100 and 200 and 300 with shifts 2, 6, 0.
    const auto d = ks::drift::channel_shifts({2.0, 6.0, 0.0}, {100.0, 200.0, 300.0}, yc);
    const double want[] = {-2.0, 0.0, 2.0, 4.0, 3.0, -6.0};  // linear extrapolation with the outer slopes
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(d[i], want[i], 1e-12) << i;
}

TEST(DriftKriging, ZeroMotionIsKxxTimesInverse) {
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 30, 0, 0.0);
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    // Independent: build Kxx here and check iKxx (Kxx + 0.01 I) = I, then M = I - 0.01 iKxx.
    Eigen::MatrixXd K(C, C), iK(C, C), M(C, C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            const double dx = xc[i] - xc[j], dy = yc[i] - yc[j];
            K(i, j) = std::exp(-(dx * dx + dy * dy) / 800.0);
            iK(i, j) = k.iKxx()[i * C + j];
        }
    const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(C, C);
    EXPECT_LT((iK * (K + 0.01 * I) - I).cwiseAbs().maxCoeff(), 1e-9);
    const auto m = k.matrix(std::vector<double>(C, 0.0));
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) M(i, j) = m[i * C + j];
    EXPECT_LT((M - (I - 0.01 * iK)).cwiseAbs().maxCoeff(), 1e-9);
    // Not the identity, but a mild smoothing: diagonal near 1, rows summing to about 1 inside the probe.
    EXPECT_GT((M - I).cwiseAbs().maxCoeff(), 1e-4);
    for (int i = 10; i < C - 10; ++i) {
        EXPECT_GT(M(i, i), 0.8);
        EXPECT_NEAR(M.row(i).sum(), 1.0, 0.02);
    }
}

TEST(DriftKriging, ReproducesSmoothFieldAtShiftedPositions) {
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 30, 0, 0.0);   // 0..580 µm
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    std::vector<double> rec(C);
    for (int i = 0; i < C; ++i) rec[i] = field(xc[i], yc[i]);
    // Rigid shift d and a depth-dependent one (two blocks); corrected channel i reads the field at
    // (x_i, y_i - δ_i).
    for (int variant = 0; variant < 3; ++variant) {
        std::vector<double> m;
        std::vector<double> delta(C);
        if (variant < 2) {
            const double d = variant == 0 ? 7.0 : -13.0;
            m = k.matrix({d}, {300.0});
            std::fill(delta.begin(), delta.end(), d);
        } else {
            m = k.matrix({-10.0, 10.0}, {100.0, 500.0});
            delta = ks::drift::channel_shifts({-10.0, 10.0}, {100.0, 500.0}, yc);
        }
        double worst = 0;
        for (int i = 0; i < C; ++i) {
            if (yc[i] < 60 || yc[i] > 520) continue;   // kriging degrades within ~3 rows of the ends
            double v = 0;
            for (int j = 0; j < C; ++j) v += m[i * C + j] * rec[j];
            worst = std::max(worst, std::abs(v - field(xc[i], yc[i] - delta[i])));
        }
        EXPECT_LT(worst, 0.01) << "variant " << variant;   // field peak is 1; numpy gives 0.0035
    }
}

TEST(DriftKriging, NoWeightAcrossShanks) {
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 12, 0, 0.0);
    add_shank(xc, yc, kc, 12, 1, 50.0);  // close enough that Kilosort4's joint inverse would couple them
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    const auto m = k.matrix({6.0}, {100.0});
    // Shank 1 alone gives the same block.
    std::vector<double> x1(xc.begin() + 24, xc.end()), y1(yc.begin() + 24, yc.end());
    const Kriging k1(x1, y1, std::vector<int>(24, 1));
    const auto m1 = k1.matrix({6.0}, {100.0});
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            if (kc[i] != kc[j]) {
                EXPECT_EQ(m[i * C + j], 0.0);
                EXPECT_EQ(k.iKxx()[i * C + j], 0.0);
            } else if (kc[i] == 1) {
                EXPECT_NEAR(m[i * C + j], m1[(i - 24) * 24 + (j - 24)], 1e-12);
            }
        }
}

TEST(DriftKriging, CombineWithWhitening) {
    const int C = 5;
    std::vector<double> m(C * C), w(C * C);
    std::vector<float> wf(C * C);
    for (int i = 0; i < C * C; ++i) {
        m[i] = std::sin(0.7 * i);
        w[i] = std::cos(1.3 * i);
        wf[i] = static_cast<float>(w[i]);
    }
    const auto r = ks::drift::combine_with_whitening(m, w, C);
    const auto rf = ks::drift::combine_with_whitening(m, wf, C);
    for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
            double s = 0;
            for (int l = 0; l < C; ++l) s += m[i * C + l] * w[l * C + j];
            EXPECT_NEAR(r[i * C + j], s, 1e-12);
            EXPECT_NEAR(rf[i * C + j], s, 1e-5);
        }
}

TEST(DriftKriging, RejectsBadInput) {
    std::vector<double> xc = {0, 0}, yc = {0, 20};
    std::vector<int> kc = {0, 0};
    EXPECT_EQ(code_of([&] { Kriging(xc, yc, kc, 0.0); }), ks::Exit::usage);
    EXPECT_EQ(code_of([&] { Kriging(xc, yc, {0}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([&] { Kriging({}, {}, {}); }), ks::Exit::usage);
    EXPECT_EQ(code_of([&] { Kriging({0, NAN}, yc, kc); }), ks::Exit::usage);
    // Coinciding contacts without the ridge: Kxx is singular.
    EXPECT_EQ(code_of([&] { Kriging({0, 0}, {0, 0}, kc, 20.0, 0.0); }), ks::Exit::unsortable);
    EXPECT_EQ(code_of([&] { Kriging({0, 0}, {0, 0}, kc); }), ks::Exit::ok);   // the 0.01 ridge keeps it invertible
}

TEST(DriftKriging, CombineDropsSmallEntriesPerRow) {
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 40, 0, 0.0);
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    const auto m = k.matrix({8.0}, {400.0});
    std::vector<float> eye(C * C, 0.0f);
    for (int i = 0; i < C; ++i) eye[i * C + i] = 1.0f;
    const auto full = ks::drift::combine_with_whitening(m, eye, C);
    const auto cut = ks::drift::combine_with_whitening(m, eye, C, 1e-3);
    int nz_full = 0, nz_cut = 0;
    for (int i = 0; i < C; ++i) {
        double mx = 0;
        for (int j = 0; j < C; ++j) mx = std::max(mx, std::abs(m[i * C + j]));
        for (int j = 0; j < C; ++j) {
            const double v = m[i * C + j];
            EXPECT_EQ(full[i * C + j], static_cast<float>(v));        // drop_below = 0 keeps everything
            if (std::abs(v) < 1e-3 * mx)
                EXPECT_EQ(cut[i * C + j], 0.0f);
            else
                EXPECT_EQ(cut[i * C + j], static_cast<float>(v));
            nz_full += full[i * C + j] != 0.0f;
            nz_cut += cut[i * C + j] != 0.0f;
        }
    }
    EXPECT_EQ(nz_full, C * C);     // dense: Gaussian tails never reach zero exactly on 800 µm
    // The weights ring (alternating signs, ~1% of the peak 5 rows away: the 0.01 ridge), so even at
    // 1e-3 about 34 of 80 entries a row stay (numpy: 2418 of 6400).
    EXPECT_LT(nz_cut, C * C / 2);
}

TEST(DriftKriging, UndoesMotionWithKilosortSign) {
    // Tissue displaced by +m (units appear at y + m, ks-sim's sign): the recording samples the rest
    // field at y - m. The registration reports dshift = -m; M_b then restores the rest field.
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 30, 0, 0.0);
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    const double motion = 9.0;
    std::vector<double> rec(C);
    for (int i = 0; i < C; ++i) rec[i] = field(xc[i], yc[i] - motion);
    const auto m = k.matrix({-motion}, {300.0});
    double worst = 0;
    for (int i = 0; i < C; ++i) {
        if (yc[i] < 60 || yc[i] > 520) continue;
        double v = 0;
        for (int j = 0; j < C; ++j) v += m[i * C + j] * rec[j];
        worst = std::max(worst, std::abs(v - field(xc[i], yc[i])));
    }
    EXPECT_LT(worst, 0.01);
}

TEST(DriftKriging, BatchMatrix) {
    std::vector<double> xc, yc;
    std::vector<int> kc;
    add_shank(xc, yc, kc, 10, 0, 0.0);
    const Kriging k(xc, yc, kc);
    const int C = k.n_channels();
    std::vector<float> w(C * C);
    for (int i = 0; i < C * C; ++i) w[i] = static_cast<float>(std::cos(0.37 * i));
    ks::drift::MotionEstimate m;
    m.n_batches = 2;
    m.n_blocks = 3;
    m.dshift = {0, 0, 0, 4, -2, 6};
    m.yblk = {40, 90, 140};
    for (auto st : {ks::drift::MotionStatus::disabled, ks::drift::MotionStatus::too_few_spikes}) {
        m.status = st;
        EXPECT_EQ(ks::drift::batch_matrix(k, m, 1, w), w);   // no drift matrix at all
    }
    m.status = ks::drift::MotionStatus::ok;
    const auto b1 = ks::drift::batch_matrix(k, m, 1, w);
    const auto want = ks::drift::combine_with_whitening(k.matrix({4, -2, 6}, {40, 90, 140}), w, C);
    EXPECT_EQ(b1, want);
}
