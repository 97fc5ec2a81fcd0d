#include "ks/kernels/covariance.hpp"

namespace ks::kernels {

void accumulate_covariance(const Device& dev, const CovarianceArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::accumulate_covariance(a);
#else
    (void)dev;
#endif
    cpu::accumulate_covariance(a);
}

}  // namespace ks::kernels
