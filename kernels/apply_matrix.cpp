#include "ks/kernels/apply_matrix.hpp"

namespace ks::kernels {

void apply_matrix(const Device& dev, const ApplyMatrixArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::apply_matrix(a);
#else
    (void)dev;
#endif
    cpu::apply_matrix(a);
}

}  // namespace ks::kernels
