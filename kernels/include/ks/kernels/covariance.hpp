#pragma once
// Channel covariance sums for the whitening matrix: sum += X Xᵀ over a block of samples, float32
// samples accumulated in float64 (products of two floats are exact in double, so only the sums
// round). No centring: the filtered recording is high-passed and so already near zero mean.
#include <cstdint>

#include "ks/device.hpp"

namespace ks::kernels {

struct CovarianceArgs {
    const float* x = nullptr;   // n_channels x n_samples, channel-major, row stride ld (host memory)
    int n_channels = 0;
    int64_t n_samples = 0;
    int64_t ld = 0;             // values between the starts of two channel rows (>= n_samples)
    double* sum = nullptr;      // n_channels x n_channels, row-major, accumulated: sum += X Xᵀ
                                // (both triangles written; exactly symmetric)
    int64_t gpu_chunk_samples = 0;  // CUDA: samples on the device at a time; 0 = automatic (~256 MiB).
                                    // Rounded down to a multiple of 32. Results do not depend on it.
};

// Runs on `dev` (CUDA when dev.is_cuda(), else CPU threads). Every entry of X Xᵀ is summed in the
// order body::kCovLanes defines (common/covariance_body.hpp): lane l sums the samples t = l mod 4 in
// increasing t, the lanes are then added pairwise. The order depends on n_samples alone, never on
// the thread count, the backend or scheduling, so CPU and CUDA give the same bits. A shape error is
// a bug (KS_ASSERT); a CUDA failure throws Error(resources/environment).
void accumulate_covariance(const Device& dev, const CovarianceArgs& a);

namespace cpu {
void accumulate_covariance(const CovarianceArgs& a);
}
#if KS_HAVE_CUDA
namespace cuda {
void accumulate_covariance(const CovarianceArgs& a);
}
#endif

}  // namespace ks::kernels
