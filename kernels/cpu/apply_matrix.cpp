// out = W x on the CPU: W's nonzeros are listed per row once, then each (time block, output row)
// job runs the body's multiply-add over that row's nonzeros, vectorised along time. Jobs go
// time-block-major, so the rows of x a block needs stay in cache while all output rows use them.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/apply_matrix_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/apply_matrix.hpp"

namespace ks::kernels::cpu {

void apply_matrix(const ApplyMatrixArgs& a) {
    KS_ASSERT(a.n_out >= 1 && a.n_in >= 1 && a.n_samples >= 0 && a.ld_x >= a.n_samples && a.ld_out >= a.n_samples &&
                  a.w && a.x && a.out,
              "apply_matrix: bad arguments");
    if (a.n_samples == 0) return;
    const SparseRows rows = sparse_rows(a.w, a.n_out, a.n_in);
    const std::vector<int64_t>& row_start = rows.row_start;
    const std::vector<int>& cols = rows.cols;
    const std::vector<float>& vals = rows.vals;
    constexpr int64_t kBlock = 2048;  // samples per job: an output row block stays in L1
    const int64_t n_blocks = (a.n_samples + kBlock - 1) / kBlock;
    const int64_t n_jobs = n_blocks * a.n_out;
#pragma omp parallel for schedule(static)
    for (int64_t job = 0; job < n_jobs; ++job) {
        const int64_t t0 = (job / a.n_out) * kBlock;
        const int i = static_cast<int>(job % a.n_out);
        const int64_t len = std::min(kBlock, a.n_samples - t0);
        float* o = a.out + i * a.ld_out + t0;
        std::fill(o, o + len, 0.f);
        const int64_t end = row_start[i + 1];
        int64_t e = row_start[i];
        // Four nonzeros per pass over the output block: same order of additions, a quarter of the
        // loads and stores of o.
        for (; e + 4 <= end; e += 4) {
            const float w0 = vals[e], w1 = vals[e + 1], w2 = vals[e + 2], w3 = vals[e + 3];
            const float* x0 = a.x + cols[e] * a.ld_x + t0;
            const float* x1 = a.x + cols[e + 1] * a.ld_x + t0;
            const float* x2 = a.x + cols[e + 2] * a.ld_x + t0;
            const float* x3 = a.x + cols[e + 3] * a.ld_x + t0;
            for (int64_t t = 0; t < len; ++t) {
                float acc = body::apply_mac(o[t], w0, x0[t]);
                acc = body::apply_mac(acc, w1, x1[t]);
                acc = body::apply_mac(acc, w2, x2[t]);
                o[t] = body::apply_mac(acc, w3, x3[t]);
            }
        }
        for (; e < end; ++e) {
            const float w = vals[e];
            const float* xk = a.x + cols[e] * a.ld_x + t0;
            for (int64_t t = 0; t < len; ++t) o[t] = body::apply_mac(o[t], w, xk[t]);
        }
    }
}

}  // namespace ks::kernels::cpu
