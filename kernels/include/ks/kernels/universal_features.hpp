#pragma once
// Per-spike PC features of Kilosort4's detection (kilosort4-algorithm.md §4.6): the projections of the
// whitened window centred on each detection onto the temporal PCs (wPCA), on the nearest channels
// of the spike's grid centre. What ks-cluster clusters.
#include <cstdint>
#include <vector>

#include "ks/device.hpp"
#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels {

struct FeatureArgs {
    const float* x = nullptr;    // n_chan x n_samples, channel-major, row stride ld_x (the detection block)
    int n_chan = 0;
    int64_t n_samples = 0, ld_x = 0;
    const float* wpca = nullptr; // n_pcs x nt, row-major
    int n_pcs = 0, nt = 0;
    const UniversalGrid* grid = nullptr;
};

// tF[n, i, p] = sum over tau ascending of wPCA[p, tau] * x[iC[i, f_n], t_n - nt/2 + tau], with t_n the
// spike's t_center and f_n its pos; x taken as 0 outside [0, n_samples); 0 where iC[i, f_n] is -1.
// Output: spikes.size() x nC x n_pcs floats, row-major. CPU and CUDA give the same bits.
void universal_features(const Device& dev, const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf);

namespace cpu {
void universal_features(const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf);
}
#if KS_HAVE_CUDA
namespace cuda {
void universal_features(const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf);
}
#endif

}  // namespace ks::kernels
