// Kriging drift-correction matrices (kilosort4-algorithm.md section 3.6). See kriging.hpp.
#include "ks/kernels/kriging.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "ks/error.hpp"

namespace ks::drift {

using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double shift_at(const double* d, const std::vector<double>& yblk, double y) {
    const size_t n = yblk.size();
    if (n == 1) return d[0];
    // Segment: the one containing y, or the outer one for extrapolation.
    size_t k = std::upper_bound(yblk.begin(), yblk.end(), y) - yblk.begin();
    k = std::clamp<size_t>(k, 1, n - 1);
    const double y0 = yblk[k - 1], y1 = yblk[k];
    const double w = (y - y0) / (y1 - y0);
    return d[k - 1] + w * (d[k] - d[k - 1]);
}

std::vector<double> channel_shifts(const std::vector<double>& d, const std::vector<double>& yblk,
                                   const std::vector<double>& yc) {
    KS_ASSERT(!d.empty() && d.size() == yblk.size(), "dshift row and yblk lengths");
    std::vector<double> out(yc.size());
    for (size_t c = 0; c < yc.size(); ++c) out[c] = shift_at(d.data(), yblk, yc[c]);
    return out;
}

Kriging::Kriging(std::vector<double> xc, std::vector<double> yc, std::vector<int> kcoords, double sig_interp_um,
                 double ridge)
    : xc_(std::move(xc)), yc_(std::move(yc)), kcoords_(std::move(kcoords)), sig_(sig_interp_um) {
    if (!(sig_ > 0) || !std::isfinite(sig_))
        throw Error(Exit::usage, "sig_interp: expected a positive number of µm");
    const size_t C = yc_.size();
    if (C == 0 || xc_.size() != C || kcoords_.size() != C)
        throw Error(Exit::usage, "probe: xc, yc and kcoords must have the same, non-zero length");
    for (size_t i = 0; i < C; ++i)
        if (!std::isfinite(xc_[i]) || !std::isfinite(yc_[i]))
            throw Error(Exit::usage, "probe: channel " + std::to_string(i) + " has a non-finite position");
    std::map<int, std::vector<int>> by;
    for (size_t i = 0; i < C; ++i) by[kcoords_[i]].push_back(static_cast<int>(i));
    for (auto& kv : by) shanks_.push_back(kv.second);

    ikxx_.assign(C * C, 0.0);
    const double s2 = 2.0 * sig_ * sig_;
    for (const auto& ch : shanks_) {
        const int n = static_cast<int>(ch.size());
        Eigen::MatrixXd K(n, n);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) {
                const double dx = xc_[ch[i]] - xc_[ch[j]], dy = yc_[ch[i]] - yc_[ch[j]];
                K(i, j) = std::exp(-(dx * dx + dy * dy) / s2) + (i == j ? ridge : 0.0);
            }
        // Kxx is positive semi-definite, so Kxx + ridge I is SPD unless ridge <= 0 and contacts coincide.
        Eigen::LLT<Eigen::MatrixXd> llt(K);
        if (llt.info() != Eigen::Success)
            throw Error(Exit::unsortable,
                        "probe: the kriging kernel (Kxx + ridge I) is singular; duplicate contact positions?");
        const Eigen::MatrixXd inv = llt.solve(Eigen::MatrixXd::Identity(n, n));
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) ikxx_[static_cast<size_t>(ch[i]) * C + ch[j]] = inv(i, j);
    }
}

std::vector<double> Kriging::matrix(const std::vector<double>& delta) const {
    const size_t C = yc_.size();
    KS_ASSERT(delta.size() == C, "channel shifts length");
    std::vector<double> out(C * C, 0.0);
    const double s2 = 2.0 * sig_ * sig_;
    for (const auto& ch : shanks_) {
        const int n = static_cast<int>(ch.size());
        Eigen::MatrixXd Kyx(n, n), iK(n, n);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) {
                const double dx = xc_[ch[i]] - xc_[ch[j]];
                const double dy = (yc_[ch[i]] - delta[ch[i]]) - yc_[ch[j]];
                Kyx(i, j) = std::exp(-(dx * dx + dy * dy) / s2);
                iK(i, j) = ikxx_[static_cast<size_t>(ch[i]) * C + ch[j]];
            }
        const Eigen::MatrixXd M = Kyx * iK;
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) out[static_cast<size_t>(ch[i]) * C + ch[j]] = M(i, j);
    }
    return out;
}

std::vector<double> combine_with_whitening(const std::vector<double>& m, const std::vector<double>& wrot,
                                           int n_channels) {
    const size_t C = static_cast<size_t>(n_channels);
    KS_ASSERT(m.size() == C * C && wrot.size() == C * C, "combine_with_whitening shapes");
    Eigen::Map<const RowMat> M(m.data(), n_channels, n_channels), W(wrot.data(), n_channels, n_channels);
    std::vector<double> out(C * C);
    Eigen::Map<RowMat>(out.data(), n_channels, n_channels).noalias() = M * W;
    return out;
}

std::vector<float> combine_with_whitening(const std::vector<double>& m, const std::vector<float>& wrot,
                                          int n_channels, double drop_below) {
    const std::vector<double> wd(wrot.begin(), wrot.end());
    const std::vector<double> r = combine_with_whitening(m, wd, n_channels);
    std::vector<float> out(r.size());
    const size_t C = static_cast<size_t>(n_channels);
    for (size_t i = 0; i < C; ++i) {
        double mx = 0;
        for (size_t j = 0; j < C; ++j) mx = std::max(mx, std::abs(r[i * C + j]));
        const double cut = drop_below * mx;
        for (size_t j = 0; j < C; ++j) {
            const double v = r[i * C + j];
            out[i * C + j] = std::abs(v) < cut ? 0.0f : static_cast<float>(v);
        }
    }
    return out;
}

std::vector<float> batch_matrix(const Kriging& k, const MotionEstimate& motion, int batch,
                                const std::vector<float>& wrot, double drop_below) {
    const int C = k.n_channels();
    KS_ASSERT(wrot.size() == static_cast<size_t>(C) * C, "whitening matrix shape");
    if (motion.status != MotionStatus::ok) return wrot;
    KS_ASSERT(batch >= 0 && batch < motion.n_batches, "batch index");
    const auto first = motion.dshift.begin() + static_cast<size_t>(batch) * motion.n_blocks;
    const std::vector<double> row(first, first + motion.n_blocks);
    return combine_with_whitening(k.matrix(row, motion.yblk), wrot, C, drop_below);
}

}  // namespace ks::drift
