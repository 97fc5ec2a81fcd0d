// kNN screening on the GPU: one thread per row, landmarks staged through shared memory in tiles, the
// candidate list in registers/local memory (common/knn_body.hpp, the CPU's list logic). Rows are done
// in chunks so device memory stays bounded; the host re-ranks the candidates exactly.
#include <algorithm>
#include <cstdint>

#include "common/knn_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/graph_knn_cuda.hpp"

namespace ks::cluster::cuda {
namespace {

using cuda_detail::DeviceBuffer;
using kernels::body::KnnCand;

constexpr int kThreads = 128;
constexpr int kTile = 16;          // landmarks per shared-memory tile
constexpr int kMaxCap = 96;        // longest candidate list handled on the device

__global__ void screen_kernel(const float* X, int64_t n, int D, const float* L, const float* nl, int64_t ns,
                              const float* nx, int cap, KnnCand* lists, int* fill) {
    extern __shared__ float tile[];   // kTile x D
    const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    KnnCand lst[kMaxCap];
    int f = 0;
    const float* x = i < n ? X + i * D : nullptr;
    for (int64_t s0 = 0; s0 < ns; s0 += kTile) {
        const int sb = static_cast<int>(ns - s0 < kTile ? ns - s0 : kTile);
        __syncthreads();
        for (int j = threadIdx.x; j < sb * D; j += blockDim.x) tile[j] = L[s0 * D + j];
        __syncthreads();
        if (i >= n) continue;
        for (int c = 0; c < sb; ++c) {
            float dot = 0.f;
            const float* l = tile + c * D;
            for (int j = 0; j < D; ++j) dot += x[j] * l[j];
            kernels::body::knn_insert(lst, &f, cap, kernels::body::knn_screen_dist(nx[i], nl[s0 + c], dot),
                                      static_cast<int32_t>(s0 + c));
        }
    }
    if (i >= n) return;
    for (int c = 0; c < f; ++c) lists[i * cap + c] = lst[c];
    fill[i] = f;
}

}  // namespace

void screen_knn(const float* X, int64_t n, int D, const float* L, const float* nl, int64_t ns, const float* nx, int cap,
                KnnCand* lists, int* fill) {
    KS_ASSERT(cap >= 1 && cap <= kMaxCap, "screen_knn: candidate list too long for the device kernel");
    DeviceBuffer d_l(sizeof(float) * ns * D), d_nl(sizeof(float) * ns);
    KS_CUDA_CHECK(cudaMemcpy(d_l.p, L, sizeof(float) * ns * D, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_nl.p, nl, sizeof(float) * ns, cudaMemcpyHostToDevice));
    const int64_t chunk = std::min<int64_t>(n, 1 << 18);
    DeviceBuffer d_x(sizeof(float) * chunk * D), d_nx(sizeof(float) * chunk), d_lists(sizeof(KnnCand) * chunk * cap),
        d_fill(sizeof(int) * chunk);
    const size_t shared = sizeof(float) * kTile * D;
    if (shared > 48 * 1024)
        KS_CUDA_CHECK(cudaFuncSetAttribute(screen_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t rb = std::min(chunk, n - r0);
        KS_CUDA_CHECK(cudaMemcpy(d_x.p, X + r0 * D, sizeof(float) * rb * D, cudaMemcpyHostToDevice));
        KS_CUDA_CHECK(cudaMemcpy(d_nx.p, nx + r0, sizeof(float) * rb, cudaMemcpyHostToDevice));
        screen_kernel<<<static_cast<unsigned>((rb + kThreads - 1) / kThreads), kThreads, shared>>>(
            d_x.as<float>(), rb, D, d_l.as<float>(), d_nl.as<float>(), ns, d_nx.as<float>(), cap, d_lists.as<KnnCand>(),
            d_fill.as<int>());
        KS_CUDA_LAUNCHED();
        KS_CUDA_CHECK(cudaMemcpy(lists + r0 * cap, d_lists.p, sizeof(KnnCand) * rb * cap, cudaMemcpyDeviceToHost));
        KS_CUDA_CHECK(cudaMemcpy(fill + r0, d_fill.p, sizeof(int) * rb, cudaMemcpyDeviceToHost));
    }
}

}  // namespace ks::cluster::cuda
