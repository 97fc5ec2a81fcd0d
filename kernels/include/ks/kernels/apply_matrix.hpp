#pragma once
// out = W x for a block of samples: a channel-mixing matrix (whitening, later whitening with drift
// correction folded in) applied to every sample of a channel-major float32 block.
#include <cstdint>
#include <vector>

#include "ks/device.hpp"

namespace ks::kernels {

struct ApplyMatrixArgs {
    const float* w = nullptr;    // n_out x n_in, row-major (host memory)
    int n_out = 0, n_in = 0;
    const float* x = nullptr;    // n_in x n_samples, channel-major, row stride ld_x (host memory)
    int64_t n_samples = 0;
    int64_t ld_x = 0;            // >= n_samples
    float* out = nullptr;        // n_out x n_samples, row stride ld_out (host memory); must not overlap x
    int64_t ld_out = 0;          // >= n_samples
    int64_t gpu_chunk_samples = 0;  // CUDA: samples on the device at a time; 0 = automatic (~256 MiB)
};

// The nonzeros of a row-major n_out x n_in matrix, row by row in increasing column order
// (compressed sparse rows): what both backends of apply_matrix sum over.
struct SparseRows {
    std::vector<int64_t> row_start;  // n_out + 1
    std::vector<int> cols;
    std::vector<float> vals;
};
SparseRows sparse_rows(const float* w, int n_out, int n_in);

// out[i, t] = sum_k w[i, k] * x[k, t] in float32, summed over the nonzero w[i, k] in increasing k
// (common/apply_matrix_body.hpp), so a sparse W (local whitening: whitening_range nonzeros a row)
// costs only its nonzeros, and CPU and CUDA give the same bits. Skipping zeros is exact for
// finite x (0 * inf would be NaN). Runs on `dev`; a shape error is a bug (KS_ASSERT), a CUDA
// failure throws Error(resources/environment).
void apply_matrix(const Device& dev, const ApplyMatrixArgs& a);

namespace cpu {
void apply_matrix(const ApplyMatrixArgs& a);
}
#if KS_HAVE_CUDA
namespace cuda {
void apply_matrix(const ApplyMatrixArgs& a);
}
#endif

}  // namespace ks::kernels
