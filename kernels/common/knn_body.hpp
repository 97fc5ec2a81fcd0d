#pragma once
// The kNN screening's candidate list, shared by the CPU and CUDA backends (KS_HD): each row keeps the
// `cap` smallest float distances seen, in landmark order on ties, so a later exact re-rank in double
// (graph_knn.cpp) gives the same neighbours whichever backend screened.
#include <cstdint>

#include "ks/kernels/hd.hpp"

namespace ks::kernels::body {

struct KnnCand {
    float d;
    int32_t s;
};

// Screening distance |x|^2 + |l|^2 - 2 x.l (float).
KS_HD inline float knn_screen_dist(float nx, float nl, float dot) { return (nx + nl) - 2.f * dot; }

// Inserts (d, s) into lst[0..*fill) sorted ascending (capacity cap); later landmarks go after equal
// distances since landmarks are offered in index order.
KS_HD inline void knn_insert(KnnCand* lst, int* fill, int cap, float d, int32_t s) {
    int f = *fill;
    if (f == cap && !(d < lst[cap - 1].d)) return;
    int pos = (f == cap) ? cap - 1 : f;
    while (pos > 0 && lst[pos - 1].d > d) {
        lst[pos] = lst[pos - 1];
        --pos;
    }
    lst[pos] = KnnCand{d, s};
    if (f < cap) *fill = f + 1;
}

}  // namespace ks::kernels::body
