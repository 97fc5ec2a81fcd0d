// ks-filter on CUDA: one thread per (channel, block) runs both passes of the high-pass over the
// block and its context; one warp per sample selects the median by bisection on order keys.
// Same bodies as the CPU (kernels/common/filter_body.hpp), so the bits agree. Only the CUDA
// runtime is used (no cuFFT/cuBLAS), so the binaries keep no dynamic CUDA library dependency.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/convert_body.hpp"
#include "common/filter_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/filter.hpp"

namespace ks::kernels::cuda {
namespace {

struct Sections {
    double c[10];
};

// A device buffer that grows on demand and is reused across batches (a cudaMalloc per batch
// would cost more than the filtering).
struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
    void* get(size_t n) {
        if (n > bytes) {
            if (p) cudaFree(p);
            p = nullptr;
            bytes = 0;
            KS_CUDA_CHECK(cudaMalloc(&p, n ? n : 1));
            bytes = n;
        }
        return p;
    }
    ~Buffer() {
        if (p) cudaFree(p);  // at exit the runtime may be gone; nothing to report then
    }
};

struct Buffers {
    Buffer raw, rows, scratch, out, offsets, channels;
};
Buffers& buffers() {
    static Buffers b;
    return b;
}

template <class T>
__global__ void highpass_kernel(const T* raw, int64_t raw_t0, int row_stride, const int* rows, int n_chan,
                                float offset, float scale, float shift, bool invert, Sections sec, int64_t S,
                                int64_t L, int64_t k0, int64_t n_samples, int64_t t0, int64_t t1, float* scratch,
                                float* out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_chan) return;
    const int64_t kb = blockIdx.y;
    const int64_t s0 = (k0 + kb) * S, s1 = min(s0 + S, n_samples);
    const int64_t seg_begin = s0 - L, len = s1 + L - seg_begin;
    const int64_t o0 = max(s0, t0), o1 = min(s1, t1);
    float* w = scratch + kb * (S + 2 * L) * n_chan;
    const T* src = raw + (seg_begin - raw_t0) * row_stride + rows[c];

    double st[3] = {0, 0, 0};
    const float x0 = body::convert_sample(static_cast<float>(src[0]), offset, scale, shift, invert);
    for (int64_t i = 0; i < len; ++i) {
        const float x = body::convert_sample(static_cast<float>(src[i * row_stride]), offset, scale, shift, invert);
        w[i * n_chan + c] = static_cast<float>(body::highpass_step(sec.c, body::pass_input(x, x0), st));
    }
    st[0] = st[1] = st[2] = 0;
    const float y0 = w[(len - 1) * n_chan + c];
    for (int64_t i = len - 1; i >= o0 - seg_begin; --i) {
        const float z = static_cast<float>(body::highpass_step(sec.c, body::pass_input(w[i * n_chan + c], y0), st));
        if (seg_begin + i < o1) out[(seg_begin + i - t0) * n_chan + c] = z;
    }
}

constexpr int kWarpsPerBlock = 8;

__device__ inline int warp_sum(int v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline int32_t warp_min(int32_t v) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// One warp per sample; every lane runs the same bisection (counts are warp-wide), so the warp
// never diverges around the shuffles.
__global__ void median_kernel(float* x, int64_t n_samples, int n_chan, const int* offsets, const int* channels,
                              int n_groups) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    if (t >= n_samples) return;
    const int lane = threadIdx.x % 32;
    float* row = x + t * n_chan;
    for (int g = 0; g < n_groups; ++g) {
        const int* ch = channels + offsets[g];
        const int n = offsets[g + 1] - offsets[g];
        if (n == 0) continue;
        auto count_below = [&](int32_t cand) {
            int cnt = 0;
            for (int i = lane; i < n; i += 32) cnt += body::order_key(row[ch[i]]) < cand;
            return warp_sum(cnt);
        };
        auto min_at_least = [&](int32_t cand) {
            int32_t m = 0x7fffffff;
            for (int i = lane; i < n; i += 32) {
                const int32_t k = body::order_key(row[ch[i]]);
                if (k >= cand) m = min(m, k);
            }
            return warp_min(m);
        };
        const float ref = body::key_value(body::select_key(n, body::lower_median_rank(n), count_below, min_at_least));
        __syncwarp();
        for (int i = lane; i < n; i += 32) row[ch[i]] = body::fsub(row[ch[i]], ref);
        __syncwarp();
    }
}

__global__ void mean_kernel(float* x, int64_t n_samples, int n_chan, const int* offsets, const int* channels,
                            int n_groups) {
    const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t >= n_samples) return;
    float* row = x + t * n_chan;
    for (int g = 0; g < n_groups; ++g) {
        const int* ch = channels + offsets[g];
        const int n = offsets[g + 1] - offsets[g];
        if (n == 0) continue;
        const float ref = body::group_mean(row, ch, n);
        for (int i = 0; i < n; ++i) row[ch[i]] = body::fsub(row[ch[i]], ref);
    }
}

template <class T>
void launch_highpass(const FilterArgs& a, const void* d_raw, const int* d_rows, float* d_out) {
    const HighpassDesign& hp = *a.hp;
    const int64_t S = hp.block, L = hp.context;
    const int64_t k0 = a.t0 / S, k1 = (a.t1 - 1) / S, n_blocks = k1 - k0 + 1;
    float* d_scratch = static_cast<float*>(
        buffers().scratch.get(static_cast<size_t>(n_blocks) * static_cast<size_t>(S + 2 * L) * a.n_chan * sizeof(float)));
    Sections sec;
    for (int i = 0; i < 5; ++i) sec.c[i] = hp.sections[0][i], sec.c[5 + i] = hp.sections[1][i];
    const int threads = 128;
    const dim3 grid(static_cast<unsigned>((a.n_chan + threads - 1) / threads), static_cast<unsigned>(n_blocks));
    highpass_kernel<T><<<grid, threads>>>(static_cast<const T*>(d_raw), a.raw_t0, a.row_stride, d_rows, a.n_chan,
                                          a.offset, a.scale, a.shift, a.invert, sec, S, L, k0, a.n_samples, a.t0, a.t1,
                                          d_scratch, d_out);
    KS_CUDA_LAUNCHED();
}

// Uploads the raw samples and channel rows, runs the high-pass into the device output buffer.
float* run_highpass(const FilterArgs& a) {
    KS_ASSERT(a.hp && a.raw && a.rows && a.out && a.n_chan > 0, "filter: missing input");
    KS_ASSERT(a.t0 >= 0 && a.t0 < a.t1 && a.t1 <= a.n_samples, "filter: output range outside the recording");
    const SampleRange need = raw_range(*a.hp, a.t0, a.t1, a.n_samples);
    KS_ASSERT(a.raw_t0 <= need.begin && a.raw_t0 + a.raw_n >= need.end, "filter: raw input does not cover the context");
    Buffers& b = buffers();
    const size_t raw_bytes = static_cast<size_t>(a.raw_n) * a.row_stride * dtype_size(a.dtype);
    const size_t out_bytes = static_cast<size_t>(a.t1 - a.t0) * a.n_chan * sizeof(float);
    void* d_raw = b.raw.get(raw_bytes);
    int* d_rows = static_cast<int*>(b.rows.get(a.n_chan * sizeof(int)));
    float* d_out = static_cast<float*>(b.out.get(out_bytes));
    KS_CUDA_CHECK(cudaMemcpy(d_raw, a.raw, raw_bytes, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_rows, a.rows, a.n_chan * sizeof(int), cudaMemcpyHostToDevice));
    switch (a.dtype) {
        case Dtype::int16: launch_highpass<int16_t>(a, d_raw, d_rows, d_out); break;
        case Dtype::uint16: launch_highpass<uint16_t>(a, d_raw, d_rows, d_out); break;
        case Dtype::int32: launch_highpass<int32_t>(a, d_raw, d_rows, d_out); break;
        case Dtype::float32: launch_highpass<float>(a, d_raw, d_rows, d_out); break;
        default: KS_ASSERT(false, "filter: unsupported dtype");
    }
    return d_out;
}

void run_reference(float* d_x, int64_t n_samples, int n_chan, Reference reference, const ReferenceGroups& g) {
    if (reference == Reference::none || g.n_groups == 0 || n_samples == 0) return;
    Buffers& b = buffers();
    const int n_listed = g.offsets[g.n_groups];
    int* d_off = static_cast<int*>(b.offsets.get((g.n_groups + 1) * sizeof(int)));
    int* d_ch = static_cast<int*>(b.channels.get(std::max(1, n_listed) * sizeof(int)));
    KS_CUDA_CHECK(cudaMemcpy(d_off, g.offsets, (g.n_groups + 1) * sizeof(int), cudaMemcpyHostToDevice));
    if (n_listed > 0) KS_CUDA_CHECK(cudaMemcpy(d_ch, g.channels, n_listed * sizeof(int), cudaMemcpyHostToDevice));
    if (reference == Reference::median) {
        const unsigned blocks = static_cast<unsigned>((n_samples + kWarpsPerBlock - 1) / kWarpsPerBlock);
        median_kernel<<<blocks, kWarpsPerBlock * 32>>>(d_x, n_samples, n_chan, d_off, d_ch, g.n_groups);
    } else {
        const int threads = 256;
        const unsigned blocks = static_cast<unsigned>((n_samples + threads - 1) / threads);
        mean_kernel<<<blocks, threads>>>(d_x, n_samples, n_chan, d_off, d_ch, g.n_groups);
    }
    KS_CUDA_LAUNCHED();
}

}  // namespace

void highpass(const FilterArgs& a) {
    float* d_out = run_highpass(a);
    KS_CUDA_CHECK(cudaMemcpy(a.out, d_out, static_cast<size_t>(a.t1 - a.t0) * a.n_chan * sizeof(float),
                             cudaMemcpyDeviceToHost));
}

void filter_samples(const FilterArgs& a) {
    float* d_out = run_highpass(a);
    run_reference(d_out, a.t1 - a.t0, a.n_chan, a.reference, a.groups);
    KS_CUDA_CHECK(cudaMemcpy(a.out, d_out, static_cast<size_t>(a.t1 - a.t0) * a.n_chan * sizeof(float),
                             cudaMemcpyDeviceToHost));
}

void common_reference(const ReferenceArgs& a) {
    if (a.reference == Reference::none || a.groups.n_groups == 0 || a.n_samples == 0) return;
    const size_t bytes = static_cast<size_t>(a.n_samples) * a.n_chan * sizeof(float);
    float* d_x = static_cast<float*>(buffers().out.get(bytes));
    KS_CUDA_CHECK(cudaMemcpy(d_x, a.x, bytes, cudaMemcpyHostToDevice));
    run_reference(d_x, a.n_samples, a.n_chan, a.reference, a.groups);
    KS_CUDA_CHECK(cudaMemcpy(a.x, d_x, bytes, cudaMemcpyDeviceToHost));
}

}  // namespace ks::kernels::cuda
