#include "ks/kernels/convert.hpp"

namespace ks::kernels {

void convert_samples(const Device& dev, const ConvertArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::convert_samples(a);
#else
    (void)dev;
#endif
    cpu::convert_samples(a);
}

}  // namespace ks::kernels
