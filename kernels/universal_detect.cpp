#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels {

std::vector<UniversalSpike> detect_universal(const Device& dev, const UniversalDetectArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::detect_universal(a);
#else
    (void)dev;
#endif
    return cpu::detect_universal(a);
}

}  // namespace ks::kernels
