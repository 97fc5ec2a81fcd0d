// Per-spike PC features on the GPU: one thread per (spike, channel, PC), the CPU's arithmetic
// (common/universal_features_body.hpp), so both backends give the same bits. The block is copied
// whole; in ks-detect it is the batch already on the host.
#include <cstdint>
#include <vector>

#include "common/universal_features_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/universal_features.hpp"

namespace ks::kernels::cuda {
namespace {

using cuda_detail::DeviceBuffer;

__global__ void features_kernel(const float* x, int64_t n, const int64_t* t, const int* pos, int64_t n_spikes,
                                const int* iC, int nC, const float* w, int P, int nt, float* tf) {
    const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;  // (spike, i, p)
    if (j >= n_spikes * nC * P) return;
    const int64_t s = j / (nC * P);
    const int i = static_cast<int>((j / P) % nC), p = static_cast<int>(j % P);
    const int c = iC[static_cast<int64_t>(pos[s]) * nC + i];
    tf[j] = c < 0 ? 0.f : body::feature_at(x + static_cast<int64_t>(c) * n, n, t[s], w + static_cast<int64_t>(p) * nt, nt);
}

}  // namespace

void universal_features(const FeatureArgs& a, const std::vector<UniversalSpike>& spikes, float* tf) {
    KS_ASSERT(a.x && a.wpca && a.grid && a.n_pcs >= 1 && a.nt >= 1 && a.ld_x >= a.n_samples, "universal_features: bad arguments");
    const UniversalGrid& g = *a.grid;
    const int nC = g.n_chan_near, P = a.n_pcs;
    const auto N = static_cast<int64_t>(spikes.size());
    if (N == 0) return;
    const int64_t n = a.n_samples;
    std::vector<int64_t> t(N);
    std::vector<int> pos(N);
    for (int64_t s = 0; s < N; ++s) {
        t[s] = spikes[s].t_center;
        pos[s] = spikes[s].pos;
    }
    DeviceBuffer d_x(sizeof(float) * a.n_chan * n), d_t(sizeof(int64_t) * N), d_pos(sizeof(int) * N),
        d_ic(sizeof(int) * g.iC.size()), d_w(sizeof(float) * P * a.nt), d_tf(sizeof(float) * N * nC * P);
    KS_CUDA_CHECK(cudaMemcpy2D(d_x.p, n * sizeof(float), a.x, a.ld_x * sizeof(float), n * sizeof(float), a.n_chan,
                               cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_t.p, t.data(), sizeof(int64_t) * N, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_pos.p, pos.data(), sizeof(int) * N, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_ic.p, g.iC.data(), sizeof(int) * g.iC.size(), cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_w.p, a.wpca, sizeof(float) * P * a.nt, cudaMemcpyHostToDevice));
    const int threads = 256;
    const int64_t total = N * nC * P;
    features_kernel<<<static_cast<unsigned>((total + threads - 1) / threads), threads>>>(
        d_x.as<float>(), n, d_t.as<int64_t>(), d_pos.as<int>(), N, d_ic.as<int>(), nC, d_w.as<float>(), P, a.nt,
        d_tf.as<float>());
    KS_CUDA_LAUNCHED();
    KS_CUDA_CHECK(cudaMemcpy(tf, d_tf.p, sizeof(float) * total, cudaMemcpyDeviceToHost));
}

}  // namespace ks::kernels::cuda
