#include "ks/kernels/apply_matrix.hpp"

namespace ks::kernels {

SparseRows sparse_rows(const float* w, int n_out, int n_in) {
    SparseRows s;
    s.row_start.assign(static_cast<size_t>(n_out) + 1, 0);
    for (int i = 0; i < n_out; ++i) {
        for (int k = 0; k < n_in; ++k) {
            const float v = w[static_cast<int64_t>(i) * n_in + k];
            if (v != 0.f) {
                s.cols.push_back(k);
                s.vals.push_back(v);
            }
        }
        s.row_start[i + 1] = static_cast<int64_t>(s.cols.size());
    }
    return s;
}

void apply_matrix(const Device& dev, const ApplyMatrixArgs& a) {
#if KS_HAVE_CUDA
    if (dev.is_cuda()) return cuda::apply_matrix(a);
#else
    (void)dev;
#endif
    cpu::apply_matrix(a);
}

}  // namespace ks::kernels
