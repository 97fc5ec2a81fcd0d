// Per-spike PC features on the CPU: one (spike, channel, PC) value is one fixed sequence of float
// multiply-adds (common/universal_features_body.hpp); spikes are independent, so threads only split them.
#include <cstdint>
#include <vector>

#include "common/universal_features_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/universal_features.hpp"

namespace ks::kernels::cpu {

void universal_features(const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf) {
    KS_ASSERT(a.x && a.wpca && a.grid && a.n_pcs >= 1 && a.nt >= 1 && a.ld_x >= a.n_samples, "universal_features: bad arguments");
    const UniversalGrid& g = *a.grid;
    const int nC = g.n_chan_near, P = a.n_pcs;
    const auto N = static_cast<int64_t>(spikes.size());
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < N; ++s) {
        const UniversalSpike& sp = spikes[s];
        const int* ic = g.iC.data() + static_cast<size_t>(sp.pos) * nC;
        float* out = tf + static_cast<size_t>(s) * nC * P;
        for (int i = 0; i < nC; ++i)
            for (int p = 0; p < P; ++p)
                out[i * P + p] = ic[i] < 0 ? 0.f
                                           : body::feature_at(a.x + static_cast<int64_t>(ic[i]) * a.ld_x, a.n_samples,
                                                              sp.t_center, a.wpca + static_cast<size_t>(p) * a.nt, a.nt);
    }
}

}  // namespace ks::kernels::cpu
