#pragma once
// Drift correction by kriging (Gaussian-process) interpolation, kilosort4-algorithm.md section 3.6:
// per batch, M_b = Kyx · (Kxx + 0.01 I)^-1 maps the C recorded channels to C motion-corrected
// channels, where Kyx is the Gaussian kernel (sig_interp) between the shifted target positions
// (xc, yc - δ_c) and the contacts. Applied after whitening: X <- (M_b · Wrot) X.
//
// CPU only (Eigen, double): forming M_b is C² exponentials and one C x C product per batch (a few
// ms for 384 channels), small next to applying it; the stages hand the combined matrix to the
// apply-matrix kernel, which has a CUDA path.
//
// Multi-shank probes: Kxx is inverted per shank and M_b has no weight between channels of different
// shanks (Kilosort4 inverts over all channels at once; with shanks >= 150 µm apart the cross terms
// are below exp(-28) anyway, so the two agree to rounding on real probes).
//
// With zero motion M_b = Kxx (Kxx + 0.01 I)^-1, which is not the identity: it is a slight spatial
// smoothing (eigenvalues λ/(λ + 0.01) of Kxx's eigenvalues λ), exactly what Kilosort4 applies.
#include <vector>

#include "ks/kernels/drift_registration.hpp"

namespace ks::drift {

constexpr double kKrigingRidge = 0.01;   // Kilosort4's (Kxx + 0.01 I)

// Per-channel shift δ_c (µm) for one batch: with one block the block's value everywhere; otherwise
// linear interpolation of dshift_row over yblk (increasing) at yc, extrapolated linearly beyond the
// outer block centres with the slope of the outer segment.
std::vector<double> channel_shifts(const std::vector<double>& dshift_row, const std::vector<double>& yblk,
                                   const std::vector<double>& yc);
// The same at one depth y: dshift_row has yblk.size() values.
double shift_at(const double* dshift_row, const std::vector<double>& yblk, double y);

class Kriging {
public:
    // xc, yc: contact positions (µm) in the sorted channel order; kcoords: shank per channel.
    // Throws Error(usage) naming the setting for sig_interp <= 0, or the probe for unequal lengths,
    // no channels or non-finite positions; Error(unsortable) if a shank's Kxx + ridge I is singular.
    Kriging(std::vector<double> xc, std::vector<double> yc, std::vector<int> kcoords,
            double sig_interp_um = 20.0, double ridge = kKrigingRidge);

    int n_channels() const { return static_cast<int>(yc_.size()); }

    // M_b (C x C, row-major): row i = corrected channel i, column j = recorded channel j.
    // delta_um: per-channel shift δ_c (channel_shifts); target positions are (xc, yc - δ_c).
    std::vector<double> matrix(const std::vector<double>& delta_um) const;
    // Same from a batch's dshift row and the block centres.
    std::vector<double> matrix(const std::vector<double>& dshift_row, const std::vector<double>& yblk) const {
        return matrix(channel_shifts(dshift_row, yblk, yc_));
    }

    // (Kxx + ridge I)^-1 over all channels: block diagonal per shank (C x C row-major).
    const std::vector<double>& iKxx() const { return ikxx_; }

private:
    std::vector<double> xc_, yc_;
    std::vector<int> kcoords_;
    double sig_;
    std::vector<std::vector<int>> shanks_;   // channel indices per shank
    std::vector<double> ikxx_;
};

// M_b · Wrot, both C x C row-major (double), in double: the one matrix per batch that maps
// filtered samples to whitened, drift-corrected samples.
std::vector<double> combine_with_whitening(const std::vector<double>& m, const std::vector<double>& wrot,
                                           int n_channels);
// Same with a float32 whitening matrix (as whiten.npy stores it), result in float32 for the
// apply-matrix kernel. M_b is dense (Gaussian tails), so the product is too; the kernel skips zero
// entries, so drop_below > 0 zeroes entries with |v| < drop_below · max|row| (per row) to make it
// sparser (only moderately: the weights ring with alternating signs, ~1% of the peak 5 rows away).
// 0 (default) keeps every entry, as Kilosort4 does. An output moves by at most the dropped entries'
// |v| · |x|, each below drop_below · max|row|.
std::vector<float> combine_with_whitening(const std::vector<double>& m, const std::vector<float>& wrot,
                                          int n_channels, double drop_below = 0.0);

// The matrix a stage applies to batch b's filtered samples: M_b · Wrot (float32, C x C row-major)
// when motion.status is ok, else Wrot itself (Kilosort4 applies no drift matrix when nblocks = 0;
// for too_few_spikes the stage decides, and zero motion here means "uncorrected", not Kxx·iKxx).
// A batch index or shape that does not fit is a bug (KS_ASSERT).
std::vector<float> batch_matrix(const Kriging& k, const MotionEstimate& motion, int batch,
                                const std::vector<float>& wrot, double drop_below = 0.0);

}  // namespace ks::drift
