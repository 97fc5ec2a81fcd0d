// Template matching's projections on the GPU (the arithmetic heavy part, kilosort4-algorithm.md §6.2):
// temporal-PC coefficients of every used channel, then every template's projection, with the CPU's
// sums (common/template_match_body.hpp), so the peeling that follows on the host sees the same numbers.
#include <cstdint>
#include <vector>

#include "common/template_match_body.hpp"
#include "cuda/common.cuh"
#include "ks/kernels/template_match.hpp"

namespace ks::match::cuda {
namespace {

using cuda_detail::DeviceBuffer;

// bpc[(r * ld) + t] for used channel r (channel chan[r]), PC p: t in [t0, t1).
__global__ void pc_kernel(const float* x, int64_t ld_x, const int* chan, int n_used, const float* w, int P, int nt,
                          int64_t t0, int64_t t1, float* bpc, int64_t ld) {
    const int64_t t = t0 + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int rp = blockIdx.y;   // used channel x PC
    if (t >= t1) return;
    const int r = rp / P, p = rp % P;
    bpc[static_cast<int64_t>(rp) * ld + t] =
        kernels::body::pc_project(w + static_cast<int64_t>(p) * nt, nt, x + static_cast<int64_t>(chan[r]) * ld_x + t - nt / 2);
}

__global__ void project_kernel(const float* coeffs, int D, const int* row, const int* templ, const float* bpc,
                               int64_t ld, int64_t t0, int64_t t1, float* bk) {
    const int64_t t = t0 + blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
    const int i = blockIdx.y;
    if (t >= t1) return;
    bk[static_cast<int64_t>(templ[i]) * ld + t] =
        kernels::body::template_project(coeffs + static_cast<int64_t>(i) * D, D, row, bpc, ld, t);
}

}  // namespace

void projections(const MatchTemplates& T, const float* x, int64_t n, int64_t ld_x, int64_t t0, int64_t t1, float* bk) {
    const int C = T.C, P = T.P;
    std::vector<int> used_row(C, -1), chan;
    for (const auto& g : T.groups)
        for (int c : g.channels)
            if (used_row[c] < 0) {
                used_row[c] = static_cast<int>(chan.size());
                chan.push_back(c);
            }
    const int n_used = static_cast<int>(chan.size());
    DeviceBuffer d_x(sizeof(float) * C * n), d_chan(sizeof(int) * n_used), d_w(sizeof(float) * P * T.nt),
        d_bpc(sizeof(float) * n_used * P * n), d_bk(sizeof(float) * T.K * n);
    KS_CUDA_CHECK(cudaMemcpy2D(d_x.p, n * sizeof(float), x, ld_x * sizeof(float), n * sizeof(float), C, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_chan.p, chan.data(), sizeof(int) * n_used, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemcpy(d_w.p, T.wpca.data(), sizeof(float) * P * T.nt, cudaMemcpyHostToDevice));
    KS_CUDA_CHECK(cudaMemset(d_bk.p, 0, sizeof(float) * T.K * n));
    const int threads = 256;
    const auto blocks = static_cast<unsigned>((t1 - t0 + threads - 1) / threads);
    pc_kernel<<<dim3(blocks, static_cast<unsigned>(n_used * P)), threads>>>(d_x.as<float>(), n, d_chan.as<int>(), n_used,
                                                                            d_w.as<float>(), P, T.nt, t0, t1,
                                                                            d_bpc.as<float>(), n);
    KS_CUDA_LAUNCHED();
    for (const auto& g : T.groups) {
        const int S = static_cast<int>(g.channels.size()), kg = static_cast<int>(g.templates.size()), D = S * P;
        std::vector<int> row(D);
        for (int s = 0; s < S; ++s)
            for (int p = 0; p < P; ++p) row[s * P + p] = used_row[g.channels[s]] * P + p;
        DeviceBuffer d_coeffs(sizeof(float) * kg * D), d_row(sizeof(int) * D), d_templ(sizeof(int) * kg);
        KS_CUDA_CHECK(cudaMemcpy(d_coeffs.p, g.coeffs.data(), sizeof(float) * kg * D, cudaMemcpyHostToDevice));
        KS_CUDA_CHECK(cudaMemcpy(d_row.p, row.data(), sizeof(int) * D, cudaMemcpyHostToDevice));
        KS_CUDA_CHECK(cudaMemcpy(d_templ.p, g.templates.data(), sizeof(int) * kg, cudaMemcpyHostToDevice));
        project_kernel<<<dim3(blocks, static_cast<unsigned>(kg)), threads>>>(d_coeffs.as<float>(), D, d_row.as<int>(),
                                                                           d_templ.as<int>(), d_bpc.as<float>(), n, t0,
                                                                           t1, d_bk.as<float>());
        KS_CUDA_LAUNCHED();
    }
    KS_CUDA_CHECK(cudaMemcpy(bk, d_bk.p, sizeof(float) * T.K * n, cudaMemcpyDeviceToHost));
}

}  // namespace ks::match::cuda
