#pragma once
// CUDA screening for knn_landmarks (graph_cluster.hpp): float distances of every row to every landmark
// and the `cap` best per row (common/knn_body.hpp); the exact re-rank stays on the host.
#include <cstdint>

#if KS_HAVE_CUDA
namespace ks::kernels::body {
struct KnnCand;
}
namespace ks::cluster::cuda {
// X: n x D rows; L: ns x D landmarks; nx, nl: their squared norms (float, as the CPU computes them).
// lists: n x cap candidates, fill: n counts.
void screen_knn(const float* X, int64_t n, int D, const float* L, const float* nl, int64_t ns, const float* nx, int cap,
                kernels::body::KnnCand* lists, int* fill);
}  // namespace ks::cluster::cuda
#endif
