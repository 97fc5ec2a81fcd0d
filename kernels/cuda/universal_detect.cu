// Universal-template detection on the GPU: one kernel filters every channel with every wTEMP row (B),
// one applies the envelopes and keeps the best |A| per (centre, sample) (As), one applies the
// local-max rule. Each value is the CPU's sequence of float multiply-adds (common/universal_detect_body.hpp),
// so both backends give the same bits. The few detections are finished on the host
// (cpu::universal_finish). The whole batch lives on the device: about 4 (C (1 + nk) + 1.25 F) bytes a sample.
#include <cstdint>
#include <vector>

#include "common/universal_detect_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels::cuda {
namespace {

using cuda_detail::DeviceBuffer;

__global__ void filter_kernel(const float* x, int64_t n, const float* w, int nk, int nt, float* B) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int ck = blockIdx.y;  // c * nk + k
    if (t >= n) return;
    B[ck * n + t] = body::universal_filter_at(x + (ck / nk) * n, n, t, w + (ck % nk) * nt, nt);
}

__global__ void project_kernel(const float* B, int64_t n, const int* iC, const float* g, int F, int nC, int S, int nk,
                               float* as) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int f = blockIdx.y;
    if (t >= n) return;
    const int* ic = iC + f * nC;
    float best = 0.f;
    for (int s = 0; s < S; ++s) {
        const float* gw = g + (static_cast<int64_t>(s) * F + f) * nC;
        for (int k = 0; k < nk; ++k) {
            float acc = 0.f;
            for (int i = 0; i < nC; ++i)
                if (ic[i] >= 0) acc = body::universal_mac(acc, gw[i], B[(static_cast<int64_t>(ic[i]) * nk + k) * n + t]);
            best = body::universal_max(best, fabsf(acc));
        }
    }
    as[f * n + t] = best;
}

__global__ void localmax_kernel(const float* as, int64_t n, const int* iC2, int n_near, int64_t context, int nt0min,
                                float th, uint8_t* is_max) {
    const int64_t t = context + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int f = blockIdx.y;
    if (t >= n - context) return;
    is_max[f * n + t] = body::universal_is_local_max(as, n, iC2 + static_cast<int64_t>(f) * n_near, n_near, f, t, nt0min, th);
}

}  // namespace

std::vector<UniversalSpike> detect_universal(const UniversalDetectArgs& a) {
    KS_ASSERT(a.x && a.grid && a.wtemp && a.n_chan >= 1 && a.n_samples >= 0 && a.ld_x >= a.n_samples && a.nk >= 1 &&
                  a.nt >= 3 && a.nt % 2 == 1 && a.nt0min >= 0 && a.nt0min < a.nt &&
                  a.context >= a.nt0min + a.nt / 2 && 2 * a.context <= a.n_samples,
              "detect_universal: bad arguments");
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, nC = g.n_chan_near, S = g.n_sizes, nk = a.nk;
    for (int v : g.iC) KS_ASSERT(v < a.n_chan, "detect_universal: grid channel outside the block");
    KS_ASSERT(static_cast<int64_t>(a.n_chan) * nk <= 65535 && F <= 65535, "detect_universal: grid too large for CUDA");
    const int64_t n = a.n_samples;
    if (n == 0 || F == 0) return {};

    DeviceBuffer d_x(sizeof(float) * a.n_chan * n), d_w(sizeof(float) * nk * a.nt),
        d_B(sizeof(float) * a.n_chan * nk * n), d_ic(sizeof(int) * g.iC.size()), d_g(sizeof(float) * g.g.size()),
        d_ic2(sizeof(int) * g.iC2.size()), d_as(sizeof(float) * F * n), d_max(static_cast<size_t>(F) * n);
    KS_CUDA_CHECK(cudaMemcpy2D(d_x.p, n * sizeof(float), a.x, a.ld_x * sizeof(float), n * sizeof(float), a.n_chan,
                               cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_w.p, a.wtemp, sizeof(float) * nk * a.nt, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_ic.p, g.iC.data(), sizeof(int) * g.iC.size(), cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_g.p, g.g.data(), sizeof(float) * g.g.size(), cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_ic2.p, g.iC2.data(), sizeof(int) * g.iC2.size(), cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemset(d_max.p, 0, static_cast<size_t>(F) * n));

    const int threads = 256;
    const unsigned tblocks = static_cast<unsigned>((n + threads - 1) / threads);
    filter_kernel<<<dim3(tblocks, a.n_chan * nk), threads>>>(d_x.as<float>(), n, d_w.as<float>(), nk, a.nt,
                                                              d_B.as<float>());
    KS_CUDA_LAUNCHED();
    project_kernel<<<dim3(tblocks, F), threads>>>(d_B.as<float>(), n, d_ic.as<int>(), d_g.as<float>(), F, nC, S, nk,
                                                   d_as.as<float>());
    KS_CUDA_LAUNCHED();
    const int64_t central = n - 2 * a.context;
    if (central > 0) {
        localmax_kernel<<<dim3(static_cast<unsigned>((central + threads - 1) / threads), F), threads>>>(
            d_as.as<float>(), n, d_ic2.as<int>(), g.n_near, a.context, a.nt0min, a.Th_universal, d_max.as<uint8_t>());
        KS_CUDA_LAUNCHED();
    }
    std::vector<float> as(static_cast<size_t>(F) * n);
    std::vector<uint8_t> is_max(static_cast<size_t>(F) * n);
    KS_CUDA_CHECK(cudaMemcpy(as.data(), d_as.p, sizeof(float) * as.size(), cudaMemcpyDeviceToHost));
    KS_CUDA_CHECK(cudaMemcpy(is_max.data(), d_max.p, is_max.size(), cudaMemcpyDeviceToHost));
    return cpu::universal_finish(a, as.data(), is_max.data());
}

}  // namespace ks::kernels::cuda
