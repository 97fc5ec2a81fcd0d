// Covariance sums on the GPU, in double, without atomics: a block owns a 32 x 32 tile of the lower
// triangle, each thread 2 x 2 entries with body::kCovLanes lane sums each, so every entry is summed
// in covariance_body.hpp's order and the result equals the CPU's bit for bit. Long blocks are
// streamed through the GPU in chunks; the lane sums live in device memory between chunks.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/covariance_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/covariance.hpp"

namespace ks::kernels::cuda {
namespace {

constexpr int kT = 32;    // output tile edge
constexpr int kTs = 32;   // samples per shared-memory step (multiple of kCovLanes)
constexpr int kL = body::kCovLanes;
static_assert(kTs % kL == 0, "sample step must hold whole lane groups");

using cuda_detail::DeviceBuffer;

// lanes[(i*C + j)*kL + l] += lane l of sum_t x[i,t] x[j,t] over this chunk, for the tile's i >= j.
// Block (16, 16): thread (tx, ty) holds rows i0+ty, i0+ty+16 and columns j0+tx, j0+tx+16.
__global__ void cov_kernel(const float* x, int C, int64_t n, int64_t ld, const int2* tiles, double* lanes) {
    __shared__ double si[kT][kTs + 1], sj[kT][kTs + 1];  // +1: no bank conflicts between rows
    const int2 tile = tiles[blockIdx.x];
    const int i0 = tile.x * kT, j0 = tile.y * kT;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    double acc[2][2][kL];
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
            const int i = i0 + ty + 16 * a, j = j0 + tx + 16 * b;
            const bool ok = i < C && j < C;
            for (int l = 0; l < kL; ++l) acc[a][b][l] = ok ? lanes[(static_cast<int64_t>(i) * C + j) * kL + l] : 0.0;
        }
    for (int64_t s0 = 0; s0 < n; s0 += kTs) {
        for (int e = tid; e < kT * kTs; e += 256) {
            const int r = e / kTs, t = e % kTs;
            const bool in_time = s0 + t < n;
            const int ri = i0 + r, rj = j0 + r;
            si[r][t] = (ri < C && in_time) ? static_cast<double>(x[ri * ld + s0 + t]) : 0.0;
            sj[r][t] = (rj < C && in_time) ? static_cast<double>(x[rj * ld + s0 + t]) : 0.0;
        }
        __syncthreads();
#pragma unroll
        for (int t = 0; t < kTs; t += kL)
#pragma unroll
            for (int l = 0; l < kL; ++l)
#pragma unroll
                for (int a = 0; a < 2; ++a)
#pragma unroll
                    for (int b = 0; b < 2; ++b)
                        acc[a][b][l] = body::cov_mac(acc[a][b][l], si[ty + 16 * a][t + l], sj[tx + 16 * b][t + l]);
        __syncthreads();
    }
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
            const int i = i0 + ty + 16 * a, j = j0 + tx + 16 * b;
            if (i >= C || j >= C || j > i) continue;
            for (int l = 0; l < kL; ++l) lanes[(static_cast<int64_t>(i) * C + j) * kL + l] = acc[a][b][l];
        }
}

__global__ void lane_total_kernel(const double* lanes, int C, double* tot) {
    const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    if (k >= static_cast<int64_t>(C) * C) return;
    const int i = static_cast<int>(k / C), j = static_cast<int>(k % C);
    tot[k] = j <= i ? body::cov_lane_total(lanes + k * kL) : 0.0;
}

}  // namespace

void accumulate_covariance(const CovarianceArgs& a) {
    KS_ASSERT(a.n_channels >= 1 && a.n_samples >= 0 && a.ld >= a.n_samples && a.x && a.sum,
              "accumulate_covariance: bad arguments");
    if (a.n_samples == 0) return;
    const int C = a.n_channels;
    const int n_tiles = (C + kT - 1) / kT;
    std::vector<int2> tiles;
    for (int bi = 0; bi < n_tiles; ++bi)
        for (int bj = 0; bj <= bi; ++bj) tiles.push_back(make_int2(bi, bj));
    // At most ~256 MiB of samples on the device at a time; chunk starts stay multiples of kTs.
    const int64_t budget = a.gpu_chunk_samples > 0 ? a.gpu_chunk_samples : (int64_t{256} << 20) / (4 * static_cast<int64_t>(C));
    const int64_t max_chunk = std::max<int64_t>(kTs, budget / kTs * kTs);
    const int64_t chunk = std::min(a.n_samples, max_chunk);
    const size_t cc = static_cast<size_t>(C) * C;
    DeviceBuffer d_x(static_cast<size_t>(chunk) * C * sizeof(float)), d_lanes(cc * kL * sizeof(double)),
        d_tot(cc * sizeof(double)), d_tiles(tiles.size() * sizeof(int2));
    KS_CUDA_CHECK(cudaMemcpy(d_tiles.p, tiles.data(), tiles.size() * sizeof(int2), cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemset(d_lanes.p, 0, cc * kL * sizeof(double)));
    for (int64_t s = 0; s < a.n_samples; s += chunk) {
        const int64_t len = std::min(chunk, a.n_samples - s);
        KS_CUDA_CHECK(cudaMemcpy2D(d_x.p, len * sizeof(float), a.x + s, a.ld * sizeof(float), len * sizeof(float), C,
                                   cudaMemcpyHostToDevice));
        cov_kernel<<<static_cast<unsigned>(tiles.size()), dim3(16, 16)>>>(
            static_cast<const float*>(d_x.p), C, len, len, static_cast<const int2*>(d_tiles.p),
            static_cast<double*>(d_lanes.p));
        KS_CUDA_LAUNCHED();
    }
    const int threads = 256;
    lane_total_kernel<<<static_cast<unsigned>((cc + threads - 1) / threads), threads>>>(
        static_cast<const double*>(d_lanes.p), C, static_cast<double*>(d_tot.p));
    KS_CUDA_LAUNCHED();
    std::vector<double> tot(cc);
    KS_CUDA_CHECK(cudaMemcpy(tot.data(), d_tot.p, cc * sizeof(double), cudaMemcpyDeviceToHost));
    for (int i = 0; i < C; ++i)
        for (int j = 0; j <= i; ++j) {
            const double v = tot[static_cast<size_t>(i) * C + j];
            a.sum[static_cast<int64_t>(i) * C + j] += v;
            if (i != j) a.sum[static_cast<int64_t>(j) * C + i] += v;
        }
}

}  // namespace ks::kernels::cuda
