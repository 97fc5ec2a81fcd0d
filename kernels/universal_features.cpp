#include "ks/kernels/universal_features.hpp"

namespace ks::kernels {

void universal_features(const Device& dev, const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf) {
    if (spikes.empty()) return;
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::universal_features(a, spikes, tf);
#else
    (void)dev;
#endif
    cpu::universal_features(a, spikes, tf);
}

}  // namespace ks::kernels
