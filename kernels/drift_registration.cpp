// Motion estimation from detected spikes: fingerprints, rigid then block-wise alignment
// (kilosort4-algorithm.md sections 3.2-3.5). See drift_registration.hpp for conventions.
#include "ks/kernels/drift_registration.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks::drift {

const char* motion_status_name(MotionStatus s) {
    switch (s) {
        case MotionStatus::ok: return "ok";
        case MotionStatus::disabled: return "disabled";
        case MotionStatus::too_few_spikes: return "too_few_spikes";
    }
    return "unknown";
}

DepthBins depth_bins(double ymin_um, double ymax_um, double binning_depth) {
    DepthBins b;
    b.dd_um = binning_depth;
    b.y0_um = ymin_um - 1.0;
    b.n_y = 1 + static_cast<int>(std::ceil((ymax_um - b.y0_um) / binning_depth));
    b.ysamp.resize(b.n_y);
    for (int k = 0; k < b.n_y; ++k) b.ysamp[k] = b.y0_um + binning_depth * k - binning_depth / 2;
    return b;
}

std::vector<int> block_starts(int n_y, int nblocks, int* block_len) {
    const int yl = n_y / nblocks;
    const int m = 2 * nblocks - 1;
    std::vector<int> s(m, 0);
    if (m > 1) {
        const double step = static_cast<double>(n_y - yl) / (m - 1);
        // nearbyint rounds half to even in the default rounding mode, as numpy's round does.
        for (int i = 0; i < m; ++i) s[i] = static_cast<int>(std::nearbyint(i * step));
    }
    if (block_len) *block_len = yl;
    return s;
}

DriftHistogram::DriftHistogram(int64_t batch_size, int n_batches, double ymin_um, double ymax_um,
                               const RegistrationParams& params)
    : batch_size_(batch_size), n_batches_(n_batches), p_(params) {
    if (p_.nblocks < 0)
        throw Error(Exit::usage, "nblocks: " + std::to_string(p_.nblocks) + " is negative, expected >= 0");
    if (!(p_.binning_depth > 0) || !std::isfinite(p_.binning_depth))
        throw Error(Exit::usage, "binning_depth: expected a positive number of µm");
    if (!(p_.Th_universal > 0 && p_.Th_universal < kAmplitudeMax))
        throw Error(Exit::usage, "Th_universal: expected a value in (0, 100)");
    for (double s : p_.drift_smoothing)
        if (!(s >= 0) || !std::isfinite(s))
            throw Error(Exit::usage, "drift_smoothing: expected three non-negative numbers");
    if (n_batches < 1) throw Error(Exit::usage, "n_batches: expected at least 1 batch");
    if (batch_size < 1) throw Error(Exit::usage, "batch_size: expected at least 1 sample");
    if (!(ymax_um >= ymin_um) || !std::isfinite(ymin_um) || !std::isfinite(ymax_um))
        throw Error(Exit::usage, "probe: channel depths must be finite (max(yc) >= min(yc))");
    bins_ = depth_bins(ymin_um, ymax_um, p_.binning_depth);
    if (p_.nblocks > 0 && bins_.n_y / p_.nblocks < 2)
        throw Error(Exit::usage, "nblocks: " + std::to_string(p_.nblocks) + " blocks leave fewer than 2 depth bins ("
                                     + std::to_string(bins_.n_y) + " bins of binning_depth) per block");
    counts_.assign(static_cast<size_t>(n_batches_) * bins_.n_y * kAmplitudeBins, 0u);
    per_batch_.assign(n_batches_, 0);
}

void DriftHistogram::add_batch(int batch, const float* depth_um, const float* amplitude, int64_t n) {
    if (batch < 0 || batch >= n_batches_) {
        outside_ += n;
        return;
    }
    const double lth = std::log10(p_.Th_universal);
    const double span = std::log10(kAmplitudeMax) - lth;
    uint32_t* hb = counts_.data() + static_cast<size_t>(batch) * bins_.n_y * kAmplitudeBins;
    for (int64_t i = 0; i < n; ++i) {
        const double y = depth_um[i], a = amplitude[i];
        const double t = (y - bins_.y0_um) / bins_.dd_um;
        // Kilosort4 truncates toward zero, so (-1, 0) still lands in row 0.
        if (!std::isfinite(t) || !(t > -1.0 && t < bins_.n_y) || !std::isfinite(a) || !(a > 0)) {
            ++outside_;
            continue;
        }
        const int row = static_cast<int>(t);
        const double af = (std::log10(std::min(a, 99.0)) - lth) / span;
        int col = static_cast<int>(1e-5 + kAmplitudeBins * af);  // truncation, as astype(int32)
        col = std::clamp(col, 0, kAmplitudeBins - 1);
        ++hb[static_cast<size_t>(row) * kAmplitudeBins + col];
        ++per_batch_[batch];
    }
}

void DriftHistogram::add_spikes(const int64_t* t_samples, const float* depth_um, const float* amplitude,
                                int64_t n) {
    int64_t i = 0;
    while (i < n) {
        // Runs of spikes in one batch go in together (sorted input is one run per batch).
        const int64_t t = t_samples[i];
        if (t < 0) {
            ++outside_;
            ++i;
            continue;
        }
        const int b = static_cast<int>(std::min<int64_t>(t / batch_size_, n_batches_ - 1));
        int64_t j = i + 1;
        while (j < n && t_samples[j] >= 0 &&
               static_cast<int>(std::min<int64_t>(t_samples[j] / batch_size_, n_batches_ - 1)) == b)
            ++j;
        add_batch(b, depth_um + i, amplitude + i, j - i);
        i = j;
    }
}

static MotionEstimate zero_motion(int n_batches, int n_blocks, std::vector<double> yblk, MotionStatus st) {
    MotionEstimate m;
    m.status = st;
    m.n_batches = n_batches;
    m.n_blocks = n_blocks;
    m.dshift.assign(static_cast<size_t>(n_batches) * n_blocks, 0.0);
    m.yblk = std::move(yblk);
    m.rigid_shift_bins.assign(n_batches, 0);
    m.reference_batch = std::min(300, n_batches / 2);
    return m;
}

MotionEstimate DriftHistogram::estimate() const {
    std::vector<bool> empty(n_batches_);
    int64_t total = 0;
    for (int b = 0; b < n_batches_; ++b) {
        empty[b] = per_batch_[b] == 0;
        total += per_batch_[b];
    }
    MotionEstimate m;
    if (p_.nblocks == 0) {
        double mean = 0;
        for (double y : bins_.ysamp) mean += y;
        m = zero_motion(n_batches_, 1, {mean / bins_.n_y}, MotionStatus::disabled);
    } else if (static_cast<double>(total) < p_.min_spikes_per_batch * n_batches_) {
        int yl = 0;
        const auto st = block_starts(bins_.n_y, p_.nblocks, &yl);
        std::vector<double> yblk(st.size());
        for (size_t k = 0; k < st.size(); ++k) {
            double s = 0;
            for (int i = 0; i < yl; ++i) s += bins_.ysamp[st[k] + i];
            yblk[k] = s / yl;
        }
        m = zero_motion(n_batches_, static_cast<int>(st.size()), std::move(yblk), MotionStatus::too_few_spikes);
        log::warn("drift: %lld spikes in %d batches (fewer than min_spikes_per_batch = %g per batch): "
                  "motion set to zero", static_cast<long long>(total), n_batches_, p_.min_spikes_per_batch);
    } else {
        std::vector<double> F(counts_.size());
        for (size_t i = 0; i < counts_.size(); ++i) F[i] = std::log2(1.0 + counts_[i]);
        m = register_fingerprints(F, n_batches_, bins_, p_, empty);
    }
    m.spikes_per_batch = per_batch_;
    m.n_spikes_binned = total;
    m.n_spikes_outside = outside_;
    for (int b = 0; b < n_batches_; ++b)
        if (empty[b]) m.empty_batches.push_back(b);
    return m;
}

void gaussian_filter_axis(std::vector<double>& a, const std::array<int, 3>& dims, int axis, double sigma) {
    if (!(sigma > 1e-15)) return;  // scipy skips such axes
    const int n = dims[axis];
    const int radius = static_cast<int>(4.0 * sigma + 0.5);
    std::vector<double> w(2 * radius + 1);
    double sum = 0;
    for (int x = -radius; x <= radius; ++x) sum += (w[x + radius] = std::exp(-0.5 * x * x / (sigma * sigma)));
    for (double& v : w) v /= sum;
    // Mode 'reflect' (d c b a | a b c d | d c b a): mirror about the outer edges, period 2n.
    auto reflect = [n](int j) {
        if (n == 1) return 0;
        const int period = 2 * n;
        j %= period;
        if (j < 0) j += period;
        return j >= n ? period - 1 - j : j;
    };
    const int64_t stride = axis == 0 ? static_cast<int64_t>(dims[1]) * dims[2] : axis == 1 ? dims[2] : 1;
    const int64_t total = static_cast<int64_t>(dims[0]) * dims[1] * dims[2];
    std::vector<double> line(n), out(n);
    for (int64_t base = 0; base < total; ++base) {
        // base enumerates the line starts: index with coordinate 0 on `axis`.
        if ((base / stride) % n != 0) continue;
        for (int i = 0; i < n; ++i) line[i] = a[base + i * stride];
        for (int i = 0; i < n; ++i) {
            double s = 0;
            for (int x = -radius; x <= radius; ++x) s += w[x + radius] * line[reflect(i + x)];
            out[i] = s;
        }
        for (int i = 0; i < n; ++i) a[base + i * stride] = out[i];
    }
}

MotionEstimate register_fingerprints(const std::vector<double>& F, int nb, const DepthBins& bins,
                                     const RegistrationParams& p, const std::vector<bool>& empty) {
    const int ny = bins.n_y;
    constexpr int A = kAmplitudeBins;
    KS_ASSERT(F.size() == static_cast<size_t>(nb) * ny * A, "fingerprint shape");
    KS_ASSERT(empty.size() == static_cast<size_t>(nb), "empty flags shape");
    KS_ASSERT(p.nblocks >= 1, "register_fingerprints needs nblocks >= 1");

    // G = F minus its mean over depth, per batch and amplitude column.
    std::vector<double> G(F);
    for (int b = 0; b < nb; ++b) {
        double* g = G.data() + static_cast<size_t>(b) * ny * A;
        for (int a = 0; a < A; ++a) {
            double s = 0;
            for (int i = 0; i < ny; ++i) s += g[i * A + a];
            const double mu = s / ny;
            for (int i = 0; i < ny; ++i) g[i * A + a] -= mu;
        }
    }
    auto mod = [](int i, int n) {
        int r = i % n;
        return r < 0 ? r + n : r;
    };
    // Kilosort4's reference batch; if it has no spikes, the nearest one that has (earlier on ties),
    // since an all-zero template scores every shift equally and would send every batch to -15 bins.
    int ref = std::min(300, nb / 2);
    for (int off = 0; off < nb && empty[ref]; ++off) {
        if (ref - off >= 0 && !empty[ref - off]) {
            ref -= off;
            break;
        }
        if (ref + off < nb && !empty[ref + off]) {
            ref += off;
            break;
        }
    }
    std::vector<double> F0(G.begin() + static_cast<size_t>(ref) * ny * A,
                           G.begin() + static_cast<size_t>(ref + 1) * ny * A);
    // Rolling is kept implicit: rolled G_b[i] = G_b[(i - cum[b]) mod ny] (torch.roll by +cum).
    std::vector<int> cum(nb, 0);
    const double norm = 1.0 / (static_cast<double>(ny) * A);
    for (int it = 0; it < kRigidIterations; ++it) {
        if (it < kRigidIterations - 1) {
            // Batches are independent here; each writes only its own cum[b], so threads change nothing.
#pragma omp parallel for schedule(static)
            for (int b = 0; b < nb; ++b) {
                if (empty[b]) continue;  // no information: keep its shift (Kilosort4 would pick -15)
                const double* g = G.data() + static_cast<size_t>(b) * ny * A;
                double best = -INFINITY;
                int best_s = 0;
                // On a short probe (fewer than 2x15 + 1 depth bins) a circular roll by more than half the
                // bins is the same as one the other way: keep the search within that, so the shifts cannot
                // run around the probe (the unbounded rule reported -630 µm on a 4-channel probe).
                const int max_s = std::min(kRigidMaxShiftBins, (ny - 1) / 2);
                for (int s = -max_s; s <= max_s; ++s) {
                    double sc = 0;
                    for (int i = 0; i < ny; ++i) {
                        const double* gr = g + static_cast<size_t>(mod(i - cum[b] - s, ny)) * A;
                        const double* fr = F0.data() + static_cast<size_t>(i) * A;
                        for (int a = 0; a < A; ++a) sc += gr[a] * fr[a];
                    }
                    sc *= norm;
                    if (sc > best) {  // first maximum, as argmax
                        best = sc;
                        best_s = s;
                    }
                }
                cum[b] += best_s;
                // The same circular roll, expressed as the shift of least size (no change on a long probe:
                // 9 iterations x 15 bins stay below half its bins).
                if (2 * std::abs(cum[b]) > ny) cum[b] = mod(cum[b] + ny / 2, ny) - ny / 2;
            }
        }
        std::fill(F0.begin(), F0.end(), 0.0);
        for (int b = 0; b < nb; ++b) {
            const double* g = G.data() + static_cast<size_t>(b) * ny * A;
            for (int i = 0; i < ny; ++i) {
                const double* gr = g + static_cast<size_t>(mod(i - cum[b], ny)) * A;
                for (int a = 0; a < A; ++a) F0[static_cast<size_t>(i) * A + a] += gr[a];
            }
        }
        for (double& v : F0) v /= nb;
    }

    // Nonrigid: per block, roll the (rigidly aligned) fingerprint circularly within the block.
    int yl = 0;
    const std::vector<int> first = block_starts(ny, p.nblocks, &yl);
    const int nblk = static_cast<int>(first.size());
    constexpr int NS = 2 * kBlockMaxShiftBins + 1;
    std::vector<double> dcs(static_cast<size_t>(NS) * nb * nblk, 0.0);
    std::vector<double> yblk(nblk);
    const double bnorm = 1.0 / (static_cast<double>(yl) * A);
    for (int k = 0; k < nblk; ++k) {
        double ys = 0;
        for (int i = 0; i < yl; ++i) ys += bins.ysamp[first[k] + i];
        yblk[k] = ys / yl;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; ++b) {
            const double* g = G.data() + static_cast<size_t>(b) * ny * A;
            for (int t = 0; t < NS; ++t) {
                const int s = t - kBlockMaxShiftBins;
                double sc = 0;
                for (int i = 0; i < yl; ++i) {
                    const int src = first[k] + mod(i - s, yl);  // roll within the block
                    const double* gr = g + static_cast<size_t>(mod(src - cum[b], ny)) * A;
                    const double* fr = F0.data() + static_cast<size_t>(first[k] + i) * A;
                    for (int a = 0; a < A; ++a) sc += gr[a] * fr[a];
                }
                dcs[(static_cast<size_t>(t) * nb + b) * nblk + k] = sc * bnorm;
            }
        }
    }
    const std::array<int, 3> dims = {NS, nb, nblk};
    for (int ax = 0; ax < 3; ++ax) gaussian_filter_axis(dcs, dims, ax, p.drift_smoothing[ax]);

    // Upsample x10 with an unnormalised Gaussian (σ = 1 bin) and take the first maximum.
    constexpr int NU = 2 * kBlockMaxShiftBins * kUpsample + 1;
    std::vector<double> dtup(NU), K(static_cast<size_t>(NS) * NU);
    for (int u = 0; u < NU; ++u) dtup[u] = -kBlockMaxShiftBins + static_cast<double>(u) / kUpsample;
    for (int t = 0; t < NS; ++t)
        for (int u = 0; u < NU; ++u) {
            const double d = (t - kBlockMaxShiftBins) - dtup[u];
            K[static_cast<size_t>(t) * NU + u] = std::exp(-0.5 * d * d);
        }

    MotionEstimate m;
    m.status = MotionStatus::ok;
    m.n_batches = nb;
    m.n_blocks = nblk;
    m.yblk = yblk;
    m.rigid_shift_bins = cum;
    m.reference_batch = ref;
    m.dshift.assign(static_cast<size_t>(nb) * nblk, 0.0);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; ++b)
        for (int k = 0; k < nblk; ++k) {
            double best = -INFINITY;
            int bu = 0;
            for (int u = 0; u < NU; ++u) {
                double s = 0;
                for (int t = 0; t < NS; ++t)
                    s += K[static_cast<size_t>(t) * NU + u] * dcs[(static_cast<size_t>(t) * nb + b) * nblk + k];
                if (s > best) {
                    best = s;
                    bu = u;
                }
            }
            m.dshift[static_cast<size_t>(b) * nblk + k] = (dtup[bu] + cum[b]) * bins.dd_um;
        }

    // Empty batches carry no information: copy the previous non-empty batch (the next one at the start).
    auto row = [&](int b) { return m.dshift.begin() + static_cast<size_t>(b) * nblk; };
    int last = -1;
    for (int b = 0; b < nb; ++b) {
        if (!empty[b]) {
            if (last < 0)
                for (int e = 0; e < b; ++e) std::copy_n(row(b), nblk, row(e));
            last = b;
        } else if (last >= 0) {
            std::copy_n(row(last), nblk, row(b));
        }
    }
    return m;
}

}  // namespace ks::drift
