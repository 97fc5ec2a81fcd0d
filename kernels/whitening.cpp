// ks-whiten's maths: which batches, the covariance estimate, neighbourhoods, local ZCA, inverse.
// Apart from the stage driver (stage_whiten.cpp) so that tests reach it without the file readers.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "ks/error.hpp"
#include "ks/kernels/covariance.hpp"
#include "ks/log.hpp"
#include "ks/stages/whiten.hpp"

namespace ks::whiten {

Params Params::from(const Settings& settings) {
    Params p;
    p.batch_size = settings.get_int("batch_size");
    p.nskip = settings.get_int("nskip");
    const int64_t range = settings.get_int("whitening_range");
    // The table allows [1, inf); a range beyond any probe is clipped to the shank size anyway.
    p.whitening_range = static_cast<int>(std::min<int64_t>(range, std::numeric_limits<int>::max()));
    if (p.batch_size < 1) throw Error(Exit::usage, "setting batch_size: must be >= 1");
    if (p.nskip < 1) throw Error(Exit::usage, "setting nskip: must be >= 1");
    if (p.whitening_range < 1) throw Error(Exit::usage, "setting whitening_range: must be >= 1");
    return p;
}

std::vector<int64_t> covariance_batches(int64_t n_samples, int64_t batch_size, int64_t nskip) {
    KS_ASSERT(batch_size >= 1 && nskip >= 1, "covariance_batches: batch_size and nskip must be >= 1");
    std::vector<int64_t> out;
    if (n_samples <= 0) return out;
    const int64_t n_batches = (n_samples - 1) / batch_size + 1;
    if (n_batches == 1) return {0};
    for (int64_t b = 0; b < n_batches - 1; b += nskip) out.push_back(b);
    return out;
}

Covariance estimate_covariance(const Device& dev, const SampleReader& read, int n_channels, int64_t n_samples,
                               const Params& params, Progress* progress) {
    KS_ASSERT(n_channels >= 1, "estimate_covariance: no channels");
    if (n_samples <= 0) throw Error(Exit::usage, "filtered recording: no samples to estimate the covariance from");
    Covariance cov;
    cov.n_channels = n_channels;
    cov.batches = covariance_batches(n_samples, params.batch_size, params.nskip);
    const size_t C = static_cast<size_t>(n_channels);
    std::vector<double> sum(C * C, 0.0);
    std::vector<float> buf;
    for (const int64_t b : cov.batches) {
        const int64_t t0 = b * params.batch_size;
        const int64_t n = std::min(params.batch_size, n_samples - t0);
        buf.resize(C * static_cast<size_t>(n));
        read(t0, n, buf.data());
        kernels::CovarianceArgs a;
        a.x = buf.data();
        a.n_channels = n_channels;
        a.n_samples = n;
        a.ld = n;
        a.sum = sum.data();
        kernels::accumulate_covariance(dev, a);
        cov.n_samples_used += n;
        if (progress) progress->advance(1);
    }
    cov.cc.resize(C * C);
    const double inv_n = 1.0 / static_cast<double>(cov.n_samples_used);
    for (size_t k = 0; k < C * C; ++k) cov.cc[k] = sum[k] * inv_n;
    return cov;
}

std::vector<std::vector<int>> neighbourhoods(const Probe& probe, int whitening_range) {
    KS_ASSERT(whitening_range >= 1, "neighbourhoods: whitening_range must be >= 1");
    const int C = probe.n_chan();
    std::vector<std::vector<int>> out(C);
    for (int j = 0; j < C; ++j) {
        std::vector<std::pair<double, int>> cand;  // (squared distance, channel)
        for (int k = 0; k < C; ++k) {
            if (probe.kcoords[k] != probe.kcoords[j]) continue;
            const double dx = probe.xc[k] - probe.xc[j], dy = probe.yc[k] - probe.yc[j];
            cand.emplace_back(dx * dx + dy * dy, k);
        }
        std::sort(cand.begin(), cand.end());  // (distance, index): ties broken by channel index
        const size_t m = std::min(cand.size(), static_cast<size_t>(whitening_range));
        out[j].reserve(m);
        for (size_t i = 0; i < m; ++i) out[j].push_back(cand[i].second);
    }
    return out;
}

std::vector<double> local_zca(const std::vector<double>& cc, int n_channels,
                              const std::vector<std::vector<int>>& neighbours, double eps) {
    const int C = n_channels;
    KS_ASSERT(C >= 1 && cc.size() == static_cast<size_t>(C) * C && neighbours.size() == static_cast<size_t>(C),
              "local_zca: shapes disagree");
    std::vector<double> w(static_cast<size_t>(C) * C, 0.0);
    // The decomposition is done on the neighbourhood's channels in index order, so channels whose
    // neighbourhoods are the same set share one (with whitening_range >= a shank's size, every
    // channel of the shank: one C x C decomposition instead of C of them).
    struct Local {
        Eigen::MatrixXd e;   // eigenvectors (columns)
        Eigen::VectorXd s;   // (max(d, 0) + eps)^(-1/2)
    };
    std::map<std::vector<int>, Local> cache;
    for (int j = 0; j < C; ++j) {
        std::vector<int> set = neighbours[j];
        std::sort(set.begin(), set.end());
        const int m = static_cast<int>(set.size());
        const auto self = std::lower_bound(set.begin(), set.end(), j);
        KS_ASSERT(m >= 1 && self != set.end() && *self == j &&
                      std::adjacent_find(set.begin(), set.end()) == set.end(),
                  "local_zca: a channel's neighbourhood must contain it, once");
        const int p = static_cast<int>(self - set.begin());
        auto it = cache.find(set);
        if (it == cache.end()) {
            Eigen::MatrixXd local(m, m);
            for (int a = 0; a < m; ++a)
                for (int b = 0; b < m; ++b) local(a, b) = cc[static_cast<size_t>(set[a]) * C + set[b]];
            const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(local);
            if (es.info() != Eigen::Success)
                throw Error(Exit::unsortable, log::format("whitening: eigendecomposition failed for channel %d", j));
            Local l;
            l.e = es.eigenvectors();
            l.s.resize(m);
            // Rounding can leave a zero eigenvalue slightly negative; Kilosort4's SVD takes |d|.
            for (int k = 0; k < m; ++k) l.s(k) = 1.0 / std::sqrt(std::max(es.eigenvalues()(k), 0.0) + eps);
            it = cache.emplace(set, std::move(l)).first;
        }
        const Local& l = it->second;
        const Eigen::RowVectorXd row = (l.e.row(p).array() * l.s.transpose().array()).matrix() * l.e.transpose();
        for (int b = 0; b < m; ++b) w[static_cast<size_t>(j) * C + set[b]] = row(b);
    }
    return w;
}

std::vector<double> whitening_inverse(const std::vector<double>& w, int n_channels, double ridge) {
    const int C = n_channels;
    KS_ASSERT(C >= 1 && w.size() == static_cast<size_t>(C) * C, "whitening_inverse: shape");
    Eigen::MatrixXd m(C, C);
    for (int i = 0; i < C; ++i)
        for (int k = 0; k < C; ++k) m(i, k) = w[static_cast<size_t>(i) * C + k] + (i == k ? ridge : 0.0);
    const Eigen::FullPivLU<Eigen::MatrixXd> lu(m);
    if (!lu.isInvertible())
        throw Error(Exit::unsortable, "whitening: the whitening matrix + 1e-5 I is singular; cannot write whiten_inv.npy");
    const Eigen::MatrixXd inv = lu.inverse();
    std::vector<double> out(static_cast<size_t>(C) * C);
    for (int i = 0; i < C; ++i)
        for (int k = 0; k < C; ++k) out[static_cast<size_t>(i) * C + k] = inv(i, k);
    for (const double v : out)
        if (!std::isfinite(v)) throw Error(Exit::unsortable, "whitening: the inverse whitening matrix is not finite");
    return out;
}

}  // namespace ks::whiten
