// out = W x on the GPU: one thread per (output row, sample) runs the body's multiply-add over the
// row's nonzeros in increasing column order (the CPU's order), so both backends give the same bits.
// Reads of x are coalesced along time; long blocks are streamed in chunks.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/apply_matrix_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/apply_matrix.hpp"

namespace ks::kernels::cuda {
namespace {

using cuda_detail::DeviceBuffer;

__global__ void apply_kernel(const int64_t* row_start, const int* cols, const float* vals, const float* x,
                             int64_t n, float* out) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int i = blockIdx.y;
    if (t >= n) return;
    float acc = 0.f;
    for (int64_t e = row_start[i]; e < row_start[i + 1]; ++e) acc = body::apply_mac(acc, vals[e], x[cols[e] * n + t]);
    out[i * n + t] = acc;
}

}  // namespace

void apply_matrix(const ApplyMatrixArgs& a) {
    KS_ASSERT(a.n_out >= 1 && a.n_in >= 1 && a.n_out <= 65535 && a.n_samples >= 0 && a.ld_x >= a.n_samples &&
                  a.ld_out >= a.n_samples && a.w && a.x && a.out,
              "apply_matrix: bad arguments");
    if (a.n_samples == 0) return;
    const SparseRows rows = sparse_rows(a.w, a.n_out, a.n_in);
    const std::vector<int64_t>& row_start = rows.row_start;
    const std::vector<int>& cols = rows.cols;
    const std::vector<float>& vals = rows.vals;
    const size_t nnz = cols.size();
    // At most ~256 MiB of samples (in + out) on the device at a time.
    const int64_t per_sample = 4 * static_cast<int64_t>(a.n_in + a.n_out);
    const int64_t budget = a.gpu_chunk_samples > 0 ? a.gpu_chunk_samples : std::max<int64_t>(256, (int64_t{256} << 20) / per_sample);
    const int64_t chunk = std::min(a.n_samples, budget);
    DeviceBuffer d_rs(row_start.size() * sizeof(int64_t)), d_cols(nnz * sizeof(int)), d_vals(nnz * sizeof(float)),
        d_x(static_cast<size_t>(chunk) * a.n_in * sizeof(float)), d_out(static_cast<size_t>(chunk) * a.n_out * sizeof(float));
    KS_CUDA_CHECK(cudaMemcpy(d_rs.p, row_start.data(), row_start.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
    if (nnz) {
        KS_CUDA_CHECK(cudaMemcpy(d_cols.p, cols.data(), nnz * sizeof(int), cudaMemcpyHostToDevice));
        KS_CUDA_CHECK(cudaMemcpy(d_vals.p, vals.data(), nnz * sizeof(float), cudaMemcpyHostToDevice));
    }
    const int threads = 256;
    for (int64_t s = 0; s < a.n_samples; s += chunk) {
        const int64_t len = std::min(chunk, a.n_samples - s);
        KS_CUDA_CHECK(cudaMemcpy2D(d_x.p, len * sizeof(float), a.x + s, a.ld_x * sizeof(float), len * sizeof(float),
                                   a.n_in, cudaMemcpyHostToDevice));
        const dim3 grid(static_cast<unsigned>((len + threads - 1) / threads), static_cast<unsigned>(a.n_out));
        apply_kernel<<<grid, threads>>>(static_cast<const int64_t*>(d_rs.p), static_cast<const int*>(d_cols.p),
                                        static_cast<const float*>(d_vals.p), static_cast<const float*>(d_x.p), len,
                                        static_cast<float*>(d_out.p));
        KS_CUDA_LAUNCHED();
        KS_CUDA_CHECK(cudaMemcpy2D(a.out + s, a.ld_out * sizeof(float), d_out.p, len * sizeof(float), len * sizeof(float),
                                   a.n_out, cudaMemcpyDeviceToHost));
    }
}

}  // namespace ks::kernels::cuda
