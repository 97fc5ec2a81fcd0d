#include <cstdint>
#include <vector>

#include "common/convert_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/convert.hpp"

namespace ks::kernels::cuda {
namespace {

template <class T>
__global__ void convert_kernel(const T* in, int64_t n_samples, int row_stride, const int* rows, int n_rows,
                               float offset, float scale, float shift, bool invert, float* out) {
    const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int c = blockIdx.y;
    if (t >= n_samples || c >= n_rows) return;
    out[static_cast<int64_t>(c) * n_samples + t] =
        body::convert_sample(static_cast<float>(in[t * row_stride + rows[c]]), offset, scale, shift, invert);
}

// Device buffer freed on scope exit, so an exception never leaks GPU memory.
using cuda_detail::DeviceBuffer;

template <class T>
void run(const ConvertArgs& a) {
    const size_t in_bytes = static_cast<size_t>(a.n_samples) * a.row_stride * sizeof(T);
    const size_t out_bytes = static_cast<size_t>(a.n_samples) * a.n_rows * sizeof(float);
    DeviceBuffer d_in(in_bytes), d_rows(a.n_rows * sizeof(int)), d_out(out_bytes);
    KS_CUDA_CHECK(cudaMemcpy(d_in.p, a.in, in_bytes, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_rows.p, a.rows, a.n_rows * sizeof(int), cudaMemcpyHostToDevice));
    const int threads = 256;
    const dim3 grid(static_cast<unsigned>((a.n_samples + threads - 1) / threads), static_cast<unsigned>(a.n_rows));
    if (a.n_samples > 0 && a.n_rows > 0) {
        convert_kernel<T><<<grid, threads>>>(static_cast<const T*>(d_in.p), a.n_samples, a.row_stride,
                                             static_cast<const int*>(d_rows.p), a.n_rows, a.offset, a.scale, a.shift,
                                             a.invert, static_cast<float*>(d_out.p));
        KS_CUDA_LAUNCHED();
    }
    KS_CUDA_CHECK(cudaMemcpy(a.out, d_out.p, out_bytes, cudaMemcpyDeviceToHost));
}

}  // namespace

void convert_samples(const ConvertArgs& a) {
    switch (a.dtype) {
        case Dtype::int16: run<int16_t>(a); break;
        case Dtype::uint16: run<uint16_t>(a); break;
        case Dtype::int32: run<int32_t>(a); break;
        case Dtype::float32: run<float>(a); break;
        default: KS_ASSERT(false, "convert_samples: unsupported dtype");
    }
}

}  // namespace ks::kernels::cuda
