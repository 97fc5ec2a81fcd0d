// ks-filter on the CPU. The high-pass runs over time-major tiles (one block with its context x a
// group of channels), so the recursion, serial in time, is vectorised across channels; OpenMP
// spreads (block, channel group) tiles over threads. The reference runs per sample, in parallel
// over samples.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/convert_body.hpp"
#include "common/filter_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/filter.hpp"

namespace ks::kernels::cpu {
namespace {

// Tile floats kept near 1 Mi (4 MB) so a tile stays in the last-level cache between the passes.
constexpr int64_t kTileFloats = int64_t(1) << 20;
constexpr int kMaxGroup = 64;

// Forward pass over the segment's rows, reading the raw samples directly (conversion fused in):
// tile row t = the cascade's output at segment sample t. The loops run across the group's
// channels (independent recursions, one per vector lane); rows are contiguous in the file for
// the usual chanMap, so the gather becomes a plain load.
template <class T, bool kContiguous>
inline __attribute__((always_inline)) void forward(const FilterArgs& a, int64_t seg_begin, int64_t len, int c0, int gc,
                                                   const double* sec, float* __restrict tile) {
    const T* raw = static_cast<const T*>(a.raw) + (seg_begin - a.raw_t0) * a.row_stride;
    const int* rows = a.rows + c0;
    const int r0 = rows[0];
    alignas(64) float x[kMaxGroup], base[kMaxGroup];
    alignas(64) double s0[kMaxGroup], s1[kMaxGroup], s2[kMaxGroup];
    for (int64_t t = 0; t < len; ++t) {
        const T* src = raw + t * a.row_stride;
        for (int j = 0; j < gc; ++j)
            x[j] = body::convert_sample(static_cast<float>(kContiguous ? src[r0 + j] : src[rows[j]]), a.offset, a.scale,
                                        a.shift, a.invert);
        if (t == 0) {
            for (int j = 0; j < gc; ++j) {
                base[j] = x[j];
                s0[j] = s1[j] = s2[j] = 0.0;
            }
        }
        float* __restrict row = tile + t * gc;
        for (int j = 0; j < gc; ++j) {
            double st[3] = {s0[j], s1[j], s2[j]};
            row[j] = static_cast<float>(body::highpass_step(sec, body::pass_input(x[j], base[j]), st));
            s0[j] = st[0];
            s1[j] = st[1];
            s2[j] = st[2];
        }
    }
}

// Backward pass from the segment's last row down to the row of output sample o0; rows of output
// samples [o0, o1) go straight to out (time-major, stride n_chan), the right context is only run
// through to settle the state.
inline __attribute__((always_inline)) void backward(const FilterArgs& a, const float* tile, int64_t seg_begin,
                                                    int64_t len, int64_t o0, int64_t o1, int c0, int gc,
                                                    const double* sec) {
    alignas(64) float base[kMaxGroup], z[kMaxGroup];
    alignas(64) double s0[kMaxGroup], s1[kMaxGroup], s2[kMaxGroup];
    const float* last = tile + (len - 1) * gc;
    for (int j = 0; j < gc; ++j) {
        base[j] = last[j];
        s0[j] = s1[j] = s2[j] = 0.0;
    }
    for (int64_t i = len - 1; i >= o0 - seg_begin; --i) {
        const float* row = tile + i * gc;
        for (int j = 0; j < gc; ++j) {
            double st[3] = {s0[j], s1[j], s2[j]};
            z[j] = static_cast<float>(body::highpass_step(sec, body::pass_input(row[j], base[j]), st));
            s0[j] = st[0];
            s1[j] = st[1];
            s2[j] = st[2];
        }
        const int64_t t = seg_begin + i;
        if (t < o1) {
            float* __restrict dst = a.out + (t - a.t0) * a.n_chan + c0;
            for (int j = 0; j < gc; ++j) dst[j] = z[j];
        }
    }
}

// One (block, channel group) tile: both passes. Compiled twice, for the x86-64 baseline (SSE2:
// two doubles per vector) and for AVX2 (four), chosen at run time. Neither uses FMA
// (-ffp-contract=off and no "fma" target), so both give the same bits.
template <class T>
inline __attribute__((always_inline)) void tile_passes(const FilterArgs& a, int64_t seg_begin, int64_t len, int64_t o0,
                                                       int64_t o1, int c0, int gc, bool contiguous, const double* sec,
                                                       float* tile) {
    if (contiguous) forward<T, true>(a, seg_begin, len, c0, gc, sec, tile);
    else forward<T, false>(a, seg_begin, len, c0, gc, sec, tile);
    backward(a, tile, seg_begin, len, o0, o1, c0, gc, sec);
}
template <class T>
void tile_passes_base(const FilterArgs& a, int64_t seg_begin, int64_t len, int64_t o0, int64_t o1, int c0, int gc,
                      bool contiguous, const double* sec, float* tile) {
    tile_passes<T>(a, seg_begin, len, o0, o1, c0, gc, contiguous, sec, tile);
}
#if defined(__x86_64__)
template <class T>
__attribute__((target("avx2"))) void tile_passes_avx2(const FilterArgs& a, int64_t seg_begin, int64_t len, int64_t o0,
                                                      int64_t o1, int c0, int gc, bool contiguous, const double* sec,
                                                      float* tile) {
    tile_passes<T>(a, seg_begin, len, o0, o1, c0, gc, contiguous, sec, tile);
}
bool have_avx2() {
    static const bool yes = __builtin_cpu_supports("avx2");
    return yes;
}
#endif

template <class T>
void highpass_typed(const FilterArgs& a) {
    const HighpassDesign& hp = *a.hp;
    const int64_t S = hp.block, L = hp.context;
    const int64_t k0 = a.t0 / S, k1 = (a.t1 - 1) / S;
    const int64_t n_blocks = k1 - k0 + 1;
    const int64_t seg_max = S + 2 * L;
    int group = static_cast<int>(std::min<int64_t>(kMaxGroup, std::max<int64_t>(8, kTileFloats / seg_max / 8 * 8)));
    group = std::max(1, std::min<int>(group, a.n_chan));
    const int n_cgroups = (a.n_chan + group - 1) / group;
    const int64_t n_tasks = n_blocks * n_cgroups;
    double sec[10];
    for (int i = 0; i < 5; ++i) sec[i] = hp.sections[0][i], sec[5 + i] = hp.sections[1][i];

#pragma omp parallel
    {
        // Kept across calls: a fresh multi-MB buffer per batch costs page faults.
        static thread_local std::vector<float> tile;
        if (tile.size() < static_cast<size_t>(seg_max * group)) tile.resize(static_cast<size_t>(seg_max * group));
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; ++task) {
            const int64_t k = k0 + task / n_cgroups;
            const int c0 = static_cast<int>(task % n_cgroups) * group;
            const int gc = std::min<int>(group, a.n_chan - c0);
            const int64_t s0 = k * S, s1 = std::min(s0 + S, a.n_samples);
            const int64_t seg_begin = s0 - L, len = s1 + L - seg_begin;
            const int64_t o0 = std::max(s0, a.t0), o1 = std::min(s1, a.t1);  // outputs wanted here
            bool contiguous = true;
            for (int j = 1; j < gc; ++j) contiguous = contiguous && a.rows[c0 + j] == a.rows[c0] + j;
#if defined(__x86_64__)
            if (have_avx2()) {
                tile_passes_avx2<T>(a, seg_begin, len, o0, o1, c0, gc, contiguous, sec, tile.data());
                continue;
            }
#endif
            tile_passes_base<T>(a, seg_begin, len, o0, o1, c0, gc, contiguous, sec, tile.data());
        }
    }
}

// Per-sample median of one group by bisection on order keys (body::select_key), the counting
// loops vectorised over channels.
inline __attribute__((always_inline)) float group_median(const float* x, const int* ch, int n, bool contiguous,
                                                         int32_t* __restrict keys) {
    if (contiguous) {
        const float* v = x + ch[0];
        for (int i = 0; i < n; ++i) keys[i] = body::order_key(v[i]);
    } else {
        for (int i = 0; i < n; ++i) keys[i] = body::order_key(x[ch[i]]);
    }
    auto count_below = [keys, n](int32_t c) {
        int cnt = 0;
        for (int i = 0; i < n; ++i) cnt += keys[i] < c;
        return cnt;
    };
    // Smallest key >= c as c + min(key - c) in unsigned arithmetic: keys below c wrap to values
    // above every valid difference, and an unsigned min vectorises.
    auto min_at_least = [keys, n](int32_t c) {
        uint32_t m = std::numeric_limits<uint32_t>::max();
        for (int i = 0; i < n; ++i) {
            const uint32_t d = static_cast<uint32_t>(keys[i]) - static_cast<uint32_t>(c);
            m = d < m ? d : m;
        }
        return static_cast<int32_t>(static_cast<uint32_t>(c) + m);
    };
    return body::key_value(body::select_key(n, body::lower_median_rank(n), count_below, min_at_least));
}

// Samples [t_begin, t_end): each group's reference subtracted. Compiled for the baseline and
// for AVX2 (eight keys per compare instead of four); integer counting, so identical results.
inline __attribute__((always_inline)) void reference_samples(const ReferenceArgs& a, const char* contiguous,
                                                             int64_t t_begin, int64_t t_end, int32_t* keys) {
    const ReferenceGroups& g = a.groups;
    for (int64_t t = t_begin; t < t_end; ++t) {
        float* x = a.x + t * a.n_chan;
        for (int k = 0; k < g.n_groups; ++k) {
            const int* ch = g.channels + g.offsets[k];
            const int n = g.offsets[k + 1] - g.offsets[k];
            if (n == 0) continue;
            const float ref = a.reference == Reference::median ? group_median(x, ch, n, contiguous[k] != 0, keys)
                                                               : body::group_mean(x, ch, n);
            if (contiguous[k]) {
                float* v = x + ch[0];
                for (int i = 0; i < n; ++i) v[i] = body::fsub(v[i], ref);
            } else {
                for (int i = 0; i < n; ++i) x[ch[i]] = body::fsub(x[ch[i]], ref);
            }
        }
    }
}
void reference_samples_base(const ReferenceArgs& a, const char* contiguous, int64_t t_begin, int64_t t_end,
                            int32_t* keys) {
    reference_samples(a, contiguous, t_begin, t_end, keys);
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) void reference_samples_avx2(const ReferenceArgs& a, const char* contiguous,
                                                            int64_t t_begin, int64_t t_end, int32_t* keys) {
    reference_samples(a, contiguous, t_begin, t_end, keys);
}
#endif

}  // namespace

void highpass(const FilterArgs& a) {
    KS_ASSERT(a.hp && a.raw && a.rows && a.out && a.n_chan > 0, "filter: missing input");
    KS_ASSERT(a.t0 >= 0 && a.t0 < a.t1 && a.t1 <= a.n_samples, "filter: output range outside the recording");
    const SampleRange need = raw_range(*a.hp, a.t0, a.t1, a.n_samples);
    KS_ASSERT(a.raw_t0 <= need.begin && a.raw_t0 + a.raw_n >= need.end, "filter: raw input does not cover the context");
    switch (a.dtype) {
        case Dtype::int16: highpass_typed<int16_t>(a); break;
        case Dtype::uint16: highpass_typed<uint16_t>(a); break;
        case Dtype::int32: highpass_typed<int32_t>(a); break;
        case Dtype::float32: highpass_typed<float>(a); break;
        default: KS_ASSERT(false, std::string("filter: unsupported dtype ") + dtype_name(a.dtype));
    }
}

void common_reference(const ReferenceArgs& a) {
    if (a.reference == Reference::none || a.groups.n_groups == 0 || a.n_samples == 0) return;
    const ReferenceGroups& g = a.groups;
    int max_n = 0;
    std::vector<char> contiguous(static_cast<size_t>(g.n_groups));
    for (int k = 0; k < g.n_groups; ++k) {
        const int* ch = g.channels + g.offsets[k];
        const int n = g.offsets[k + 1] - g.offsets[k];
        max_n = std::max(max_n, n);
        bool cont = true;
        for (int i = 1; i < n; ++i) cont = cont && ch[i] == ch[0] + i;
        contiguous[k] = cont;
    }
    constexpr int64_t kChunk = 256;  // samples per scheduling unit
    const int64_t n_chunks = (a.n_samples + kChunk - 1) / kChunk;
#pragma omp parallel
    {
        std::vector<int32_t> keys(static_cast<size_t>(max_n));
#pragma omp for schedule(static)
        for (int64_t q = 0; q < n_chunks; ++q) {
            const int64_t t_begin = q * kChunk, t_end = std::min(a.n_samples, t_begin + kChunk);
#if defined(__x86_64__)
            if (have_avx2()) {
                reference_samples_avx2(a, contiguous.data(), t_begin, t_end, keys.data());
                continue;
            }
#endif
            reference_samples_base(a, contiguous.data(), t_begin, t_end, keys.data());
        }
    }
}

}  // namespace ks::kernels::cpu
