// Universal-template detection on the CPU (§4.4, §4.5). Time is cut into fixed chunks (not
// depending on the thread count). Per chunk, each channel is filtered with every wTEMP row (B) just
// before the first centre that needs it, while it is still in cache; then each centre's envelopes
// are applied (A) and the best |A| kept (As). Every value is the scalar body's fixed sequence of
// float multiply-adds (common/universal_detect_body.hpp): B over tau ascending, A over the centre's
// channels in slot order. Only the loops around those sequences are arranged for speed: register
// tiles in which each loaded operand serves several outputs, vectorised along time, compiled once
// per instruction set and picked at run time. Separate IEEE multiplies and adds (-ffp-contract=off:
// never fused) give the same bits in every lane of every clone, so results do not depend on the
// CPU, the number of threads or where a chunk starts, and match the CUDA backend.
// Only the values of As above Th_universal are kept, per chunk: no other value can pass the
// local-max test or fail a candidate. The batch's whole As (4 F n bytes, 370 MB for Neuropixels 1)
// took a fifth of the detection's time just to obtain from the system and to scan.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "common/universal_detect_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/universal_templates.hpp"

namespace ks::kernels::cpu {
namespace {

// Samples per job: a multiple of every clone's tile width, so only a batch's last chunk is ragged.
// B for one chunk of 384 channels is 3.5 MB, but only the few channels around the current centre
// are touched at a time.
constexpr int64_t kChunk = 384;

// ---- vectors -----------------------------------------------------------------------------------
// GCC vector extensions: lane-wise IEEE operations, the scalar body's in every lane. They are
// passed by reference only: the helpers are inlined into clones built for different instruction
// sets, which would disagree on how to pass a vector by value.
typedef float F4 __attribute__((vector_size(16)));
typedef float F8 __attribute__((vector_size(32)));
typedef float F16 __attribute__((vector_size(64)));
typedef int32_t I4 __attribute__((vector_size(16)));
typedef int32_t I8 __attribute__((vector_size(32)));
typedef int32_t I16 __attribute__((vector_size(64)));
template <class V> struct IntOf;
template <> struct IntOf<F4> { using type = I4; };
template <> struct IntOf<F8> { using type = I8; };
template <> struct IntOf<F16> { using type = I16; };
template <class V> constexpr int kLanes = sizeof(V) / sizeof(float);

#define KS_INLINE __attribute__((always_inline)) inline

template <class V> KS_INLINE void vload(V& v, const float* p) { std::memcpy(&v, p, sizeof v); }  // unaligned
template <class V> KS_INLINE void vstore(float* p, const V& v) { std::memcpy(p, &v, sizeof v); }
// best <- body::universal_max(best, std::fabs(v)) lane by lane (fabs: clear the sign bit).
template <class V> KS_INLINE void vmax_abs(V& best, const V& v) {
    using I = typename IntOf<V>::type;
    const V a = reinterpret_cast<V>(reinterpret_cast<I>(v) & 0x7fffffff);
    best = best < a ? a : best;
}
// Whether any lane of any of the n vectors is > th.
template <class V> KS_INLINE bool any_above(const V* v, int n, float th) {
    using I = typename IntOf<V>::type;
    I hit = v[0] > th;
    for (int i = 1; i < n; ++i) hit |= v[i] > th;
    int32_t lanes[kLanes<V>];
    std::memcpy(lanes, &hit, sizeof hit);
    int32_t any = 0;
    for (int32_t l : lanes) any |= l;
    return any != 0;
}

// ---- what every chunk shares ---------------------------------------------------------------------

struct Plan {
    const UniversalDetectArgs* a = nullptr;
    int F = 0, S = 0, nk = 0, nt = 0, nC = 0;
    int64_t n = 0;
    // Per centre, its channels with iC >= 0 in slot order (the sum skips the others) and their
    // envelope weights: n_valid[f]; chans[f * nC + j]; gw[(f * S + s) * nC + j].
    std::vector<int> n_valid, chans;
    std::vector<float> gw;
};

Plan make_plan(const UniversalDetectArgs& a) {
    const UniversalGrid& g = *a.grid;
    Plan p;
    p.a = &a;
    p.F = g.n_pos;
    p.S = g.n_sizes;
    p.nk = a.nk;
    p.nt = a.nt;
    p.nC = g.n_chan_near;
    p.n = a.n_samples;
    p.n_valid.assign(p.F, 0);
    p.chans.assign(static_cast<size_t>(p.F) * p.nC, 0);
    p.gw.assign(static_cast<size_t>(p.F) * p.S * p.nC, 0.f);
    for (int f = 0; f < p.F; ++f) {
        int j = 0;
        for (int i = 0; i < p.nC; ++i) {
            const int c = g.iC[static_cast<size_t>(f) * p.nC + i];
            if (c < 0) continue;
            p.chans[static_cast<size_t>(f) * p.nC + j] = c;
            for (int s = 0; s < p.S; ++s)
                p.gw[(static_cast<size_t>(f) * p.S + s) * p.nC + j] = g.g[(static_cast<size_t>(s) * p.F + f) * p.nC + i];
            ++j;
        }
        p.n_valid[f] = j;
    }
    return p;
}

// As[f, t0 + dt] = v, in the chunk starting at t0.
struct Above {
    int32_t f, dt;
    float v;
};

// The values of As above Th_universal in one chunk (samples t0 .. t0 + len - 1): a list while they
// are few (12 bytes each); beyond an eighth of the chunk's F len values, the chunk's As itself
// (-inf where no tile had a value above threshold), so that a low threshold never takes much more
// memory than the dense statistic would.
struct ChunkAs {
    int F = 0;
    int64_t len = 0;
    std::vector<Above> list;   // in order of f, then dt
    std::vector<float> dense;  // F x len, or empty

    // As[f, t0 + dt + i] = v[i], i < m: a tile with some value above th. The list is built in
    // `building` (one per thread, reused, so that growing it costs no allocation per chunk).
    void add_tile(int f, int64_t dt, const float* v, int64_t m, float th, std::vector<Above>& building) {
        if (!dense.empty()) {
            std::copy(v, v + m, dense.begin() + f * len + dt);
            return;
        }
        for (int64_t i = 0; i < m; ++i)
            if (v[i] > th) building.push_back({f, static_cast<int32_t>(dt + i), v[i]});
        if (static_cast<int64_t>(building.size()) > F * len / 8) {
            dense.assign(static_cast<size_t>(F) * len, -INFINITY);
            for (const Above& e : building) dense[e.f * len + e.dt] = e.v;
            building.clear();
        }
    }
    void done(const std::vector<Above>& building) {
        if (dense.empty()) list.assign(building.begin(), building.end());
    }
    // fn(f, dt, v) for every value above th.
    template <class Fn> void for_each(float th, const Fn& fn) const {
        if (dense.empty()) {
            for (const Above& e : list) fn(e.f, e.dt, e.v);
            return;
        }
        for (int f = 0; f < F; ++f)
            for (int64_t dt = 0; dt < len; ++dt)
                if (dense[f * len + dt] > th) fn(f, dt, dense[f * len + dt]);
    }
};

// One thread's buffers, reused over its chunks.
struct Scratch {
    std::vector<float> B;        // n_chan x nk x ld: B of the current chunk, ld = its padded length
    std::vector<float> pad;      // ld + nt - 1 samples of one channel, zero outside the batch
    std::vector<int64_t> stamp;  // per channel: the chunk whose B it holds (-1: none)
    std::vector<const float*> rows;  // nC: a centre's B rows for one template
    std::vector<float> tile;     // one tile of As, lane by lane
    std::vector<Above> building;  // the current chunk's values above threshold
};

// ---- B: the temporal filter ---------------------------------------------------------------------
// A KB x TV tile: templates k0 .. k0+KB-1 of one channel at TV vectors of time. Each input vector
// is loaded once per tau and serves KB templates; each output is 0 + w[0] x[.] + w[1] x[.] + ...,
// tau ascending, as body::universal_filter_at.
template <class V, int KB, int TV>
KS_INLINE void filter_tile(const float* x, const float* w, int nt, float* out, int64_t ld) {
    constexpr int L = kLanes<V>;
    V acc[KB][TV];
    for (int kb = 0; kb < KB; ++kb)
        for (int v = 0; v < TV; ++v) acc[kb][v] = V{};
    for (int tau = 0; tau < nt; ++tau) {
        V xv[TV];
        for (int v = 0; v < TV; ++v) vload(xv[v], x + tau + v * L);
        for (int kb = 0; kb < KB; ++kb) {
            const float wk = w[kb * nt + tau];
            for (int v = 0; v < TV; ++v) acc[kb][v] = acc[kb][v] + wk * xv[v];
        }
    }
    for (int kb = 0; kb < KB; ++kb)
        for (int v = 0; v < TV; ++v) vstore(out + kb * ld + v * L, acc[kb][v]);
}

// All templates of one channel over ld samples (a multiple of the tile width); x holds ld + nt - 1.
template <class V, int KB, int TV>
KS_INLINE void filter_channel(const float* x, const float* w, int nk, int nt, float* out, int64_t ld) {
    constexpr int W = TV * kLanes<V>;
    int k0 = 0;
    for (; k0 + KB <= nk; k0 += KB)
        for (int64_t t = 0; t < ld; t += W) filter_tile<V, KB, TV>(x + t, w + k0 * nt, nt, out + k0 * ld + t, ld);
    for (; k0 < nk; ++k0)  // nk not a multiple of KB: the rest one template at a time
        for (int64_t t = 0; t < ld; t += W) filter_tile<V, 1, TV>(x + t, w + k0 * nt, nt, out + k0 * ld + t, ld);
}

// ---- A and As: the envelopes ----------------------------------------------------------------------
// An SB x TV tile: sizes s0 .. s0+SB-1 of one centre and one template at TV vectors of time. Each
// channel's B vector is loaded once and serves SB sizes; each A is 0 + g[0] B[c0] + g[1] B[c1] + ...
// over the centre's channels in slot order, as the scalar body. The running max of |A| does not
// depend on the order of the (s, k) it visits: |A| >= 0, and a NaN never replaces best.
template <class V, int SB, int TV>
KS_INLINE void project_tile(const float* const* rows, int nv, const float* g, int ldg, V* best) {
    constexpr int L = kLanes<V>;
    V acc[SB][TV];
    for (int sb = 0; sb < SB; ++sb)
        for (int v = 0; v < TV; ++v) acc[sb][v] = V{};
    for (int j = 0; j < nv; ++j) {
        V bv[TV];
        for (int v = 0; v < TV; ++v) vload(bv[v], rows[j] + v * L);
        for (int sb = 0; sb < SB; ++sb) {
            const float gs = g[sb * ldg + j];
            for (int v = 0; v < TV; ++v) acc[sb][v] = acc[sb][v] + gs * bv[v];
        }
    }
    for (int sb = 0; sb < SB; ++sb)
        for (int v = 0; v < TV; ++v) vmax_abs(best[v], acc[sb][v]);
}

template <class V, int TV>
KS_INLINE void project_sizes(const float* const* rows, int nv, const float* g, int ldg, int S, V* best) {
    constexpr int kSB = 5;  // KS4's template_sizes: the default S in one tile
    int s0 = 0;
    for (; s0 + kSB <= S; s0 += kSB) project_tile<V, kSB, TV>(rows, nv, g + s0 * ldg, ldg, best);
    const float* gr = g + s0 * ldg;
    switch (S - s0) {
        case 4: project_tile<V, 4, TV>(rows, nv, gr, ldg, best); break;
        case 3: project_tile<V, 3, TV>(rows, nv, gr, ldg, best); break;
        case 2: project_tile<V, 2, TV>(rows, nv, gr, ldg, best); break;
        case 1: project_tile<V, 1, TV>(rows, nv, gr, ldg, best); break;
        default: break;
    }
}

// ---- one chunk ----------------------------------------------------------------------------------
// As[f, t0 .. t0+len) for every centre f; its values above threshold go to `out`. V, KB x TVB
// (filter tile) and 5 x TVA (envelope tile) are chosen per clone to fill, not overflow, its
// vector registers.
template <class V, int KB, int TVB, int TVA>
KS_INLINE void chunk_impl(const Plan& p, int64_t chunk, Scratch& sc, ChunkAs& out) {
    constexpr int L = kLanes<V>;
    constexpr int64_t W = std::lcm(TVB, TVA) * L;
    static_assert(kChunk % W == 0, "kChunk must be a multiple of the tile widths");
    const UniversalDetectArgs& a = *p.a;
    const int nk = p.nk, nt = p.nt, h = nt / 2, nC = p.nC, S = p.S;
    const float th = a.Th_universal;
    const int64_t n = p.n, t0 = chunk * kChunk, len = std::min(kChunk, n - t0), ld = (len + W - 1) / W * W;
    const float** rows = sc.rows.data();
    sc.building.clear();

    for (int f = 0; f < p.F; ++f) {
        const int nv = p.n_valid[f];
        const int* ch = p.chans.data() + static_cast<size_t>(f) * nC;
        const float* gw = p.gw.data() + static_cast<size_t>(f) * S * nC;
        for (int j = 0; j < nv; ++j) {
            const int c = ch[j];
            if (sc.stamp[c] == chunk) continue;
            // The channel's samples t0 - h .. t0 + ld + h - 1, zero outside the batch as
            // universal_filter_at assumes, so every tile reads in bounds.
            const float* xr = a.x + static_cast<size_t>(c) * a.ld_x;
            const int64_t m = ld + nt - 1, lo = std::max<int64_t>(0, h - t0), hi = std::min(m, n - (t0 - h));
            std::fill(sc.pad.begin(), sc.pad.begin() + m, 0.f);
            std::copy(xr + (t0 - h + lo), xr + (t0 - h + hi), sc.pad.begin() + lo);
            filter_channel<V, KB, TVB>(sc.pad.data(), a.wtemp, nk, nt, sc.B.data() + static_cast<size_t>(c) * nk * ld, ld);
            sc.stamp[c] = chunk;
        }
        for (int64_t t = 0; t < len; t += TVA * L) {
            V best[TVA];
            for (int v = 0; v < TVA; ++v) best[v] = V{};
            for (int k = 0; k < nk; ++k) {
                for (int j = 0; j < nv; ++j) rows[j] = sc.B.data() + (static_cast<size_t>(ch[j]) * nk + k) * ld + t;
                project_sizes<V, TVA>(rows, nv, gw, nC, S, best);
            }
            if (!any_above(best, TVA, th)) continue;
            for (int v = 0; v < TVA; ++v) vstore(sc.tile.data() + v * L, best[v]);
            const int64_t m = std::min<int64_t>(TVA * L, len - t);  // the tile's samples inside the batch
            out.add_tile(f, t, sc.tile.data(), m, th, sc.building);
        }
    }
    out.done(sc.building);
}

// ---- clones -------------------------------------------------------------------------------------
using ChunkFn = void (*)(const Plan&, int64_t, Scratch&, ChunkAs&);

// 4 lanes: SSE2 on any x86-64, NEON elsewhere.
void chunk_generic(const Plan& p, int64_t chunk, Scratch& sc, ChunkAs& out) {
    chunk_impl<F4, 6, 2, 2>(p, chunk, sc, out);
}

#if defined(__x86_64__) || defined(__i386__)
// 16 registers: 12 filter or 10 envelope accumulators plus their operands.
__attribute__((target("avx2"))) void chunk_avx2(const Plan& p, int64_t chunk, Scratch& sc, ChunkAs& out) {
    chunk_impl<F8, 6, 2, 2>(p, chunk, sc, out);
}
// 32 registers of 16 lanes. Even where the CPU splits a 512-bit operation in two (AMD Zen 4), it
// is one instruction to issue instead of two, and issue bounds these loops at 8 lanes.
__attribute__((target("avx512f"))) void chunk_avx512(const Plan& p, int64_t chunk, Scratch& sc, ChunkAs& out) {
    chunk_impl<F16, 6, 2, 4>(p, chunk, sc, out);
}
#endif

struct IsaVariant {
    const char* name;
    ChunkFn chunk;
    bool usable;  // this CPU (and OS) runs it
};

// Fastest first.
std::vector<IsaVariant> isa_variants() {
    std::vector<IsaVariant> v;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    v.push_back({"avx512", chunk_avx512, __builtin_cpu_supports("avx512f") != 0});
    v.push_back({"avx2", chunk_avx2, __builtin_cpu_supports("avx2") != 0});
#endif
    v.push_back({"generic", chunk_generic, true});
    return v;
}

ChunkFn best_chunk_fn() {
    static const ChunkFn fn = [] {
        for (const auto& v : isa_variants())
            if (v.usable) return v.chunk;
        return chunk_generic;
    }();
    return fn;
}

// The batch's values of As above threshold, chunk by chunk, computed with the clone `fn`.
std::vector<ChunkAs> compute_as(const UniversalDetectArgs& a, ChunkFn fn) {
    const Plan p = make_plan(a);
    const int64_t n_chunks = (p.n + kChunk - 1) / kChunk;
    std::vector<ChunkAs> above(n_chunks);
    for (int64_t ch = 0; ch < n_chunks; ++ch) {
        above[ch].F = p.F;
        above[ch].len = std::min(kChunk, p.n - ch * kChunk);
    }
#pragma omp parallel
    {
        Scratch sc;
        sc.B.resize(static_cast<size_t>(a.n_chan) * p.nk * kChunk);
        sc.pad.resize(kChunk + p.nt);
        sc.stamp.assign(a.n_chan, -1);
        sc.rows.resize(std::max(p.nC, 1));
        sc.tile.resize(kChunk);
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < n_chunks; ++ch) fn(p, ch, sc, above[ch]);
    }
    return above;
}

// The spike at (f, t), a local maximum of As = amp: its best (s, k), sign and weighted depth,
// recomputed with the arithmetic of the statistic.
UniversalSpike spike_at(const UniversalDetectArgs& a, int f, int64_t t, float amp) {
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, nC = g.n_chan_near, S = g.n_sizes, nk = a.nk, nt = a.nt;
    const int64_t n = a.n_samples;
    const int* ic = g.iC.data() + static_cast<size_t>(f) * nC;
    std::vector<float> b(static_cast<size_t>(nk) * nC, 0.f);
    for (int i = 0; i < nC; ++i)
        if (ic[i] >= 0)
            for (int k = 0; k < nk; ++k) b[k * nC + i] = body::universal_filter_at(a.x + ic[i] * a.ld_x, n, t, a.wtemp + k * nt, nt);
    float bestv = -1.f;
    int code = 0, sign = 1;
    for (int s = 0; s < S; ++s) {
        const float* gw = g.g.data() + (static_cast<size_t>(s) * F + f) * nC;
        for (int k = 0; k < nk; ++k) {
            float v = 0.f;
            for (int i = 0; i < nC; ++i)
                if (ic[i] >= 0) v = body::universal_mac(v, gw[i], b[k * nC + i]);
            if (std::fabs(v) > bestv) {
                bestv = std::fabs(v);
                code = s * nk + k;
                sign = v < 0 ? -1 : 1;
            }
        }
    }
    const int kb = code % nk;
    double wsum = 0, ysum = 0;
    for (int i = 0; i < nC; ++i) {
        if (ic[i] < 0) continue;
        const double w = std::max(0.0, static_cast<double>(sign) * b[kb * nC + i]);
        wsum += w;
        ysum += w * g.ch_y_um[ic[i]];
    }
    UniversalSpike sp;
    sp.t_center = t;
    sp.t_trough = t - nt / 2 + a.nt0min;
    sp.pos = f;
    sp.size_template = code;
    sp.sign = sign;
    sp.amp = amp;
    sp.x_um = g.x_um[f];
    sp.y_um = g.y_um[f];
    sp.y_weighted_um = wsum > 0 ? ysum / wsum : g.y_um[f];
    return sp;
}

// (t_center, pos) order, as the interface promises.
void sort_spikes(std::vector<UniversalSpike>& v) {
    std::sort(v.begin(), v.end(), [](const UniversalSpike& p, const UniversalSpike& q) {
        return p.t_center != q.t_center ? p.t_center < q.t_center : p.pos < q.pos;
    });
}

// universal_finish from the values above threshold only. A value at or below Th_universal can
// neither be a detection nor beat one, so each chunk's candidates are tested, by the same body
// function, on a window of As around the chunk (+- nt0min) that holds those values and -inf
// elsewhere. Window positions outside the batch stay -inf and so never beat a candidate, as the
// dense test's clamping to the batch leaves them out: the answers are the same.
std::vector<UniversalSpike> finish_above(const UniversalDetectArgs& a, const std::vector<ChunkAs>& above) {
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos, r = a.nt0min;
    const float th = a.Th_universal;
    const int64_t n = a.n_samples, n_chunks = static_cast<int64_t>(above.size());
    const int64_t ld = kChunk + 2 * r;  // a window row: samples t0 - r .. t0 + kChunk + r - 1
    std::vector<std::vector<UniversalSpike>> per_chunk(n_chunks);
#pragma omp parallel
    {
        std::vector<float> win;  // F x ld, all -inf between chunks
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < n_chunks; ++c) {
            const int64_t t0 = c * kChunk, w0 = t0 - r;
            const auto inside = [&](int64_t dt) { return t0 + dt >= a.context && t0 + dt < n - a.context; };
            bool any = false;
            above[c].for_each(th, [&](int, int64_t dt, float) { any = any || inside(dt); });
            if (!any) continue;
            if (win.empty()) win.assign(static_cast<size_t>(F) * ld, -INFINITY);
            // Writes the values above threshold of the chunks the window overlaps, or -inf again.
            const auto fill = [&](bool restore) {
                const int64_t d0 = std::max<int64_t>(0, w0) / kChunk, d1 = std::min(n - 1, w0 + ld - 1) / kChunk;
                for (int64_t d = d0; d <= d1; ++d)
                    above[d].for_each(th, [&](int f, int64_t dt, float v) {
                        const int64_t u = d * kChunk + dt - w0;
                        if (u >= 0 && u < ld) win[static_cast<size_t>(f) * ld + u] = restore ? -INFINITY : v;
                    });
            };
            fill(false);
            above[c].for_each(th, [&](int f, int64_t dt, float v) {
                const int* ic2 = g.iC2.data() + static_cast<size_t>(f) * g.n_near;
                if (inside(dt) && body::universal_is_local_max(win.data(), ld, ic2, g.n_near, f, dt + r, r, th))
                    per_chunk[c].push_back(spike_at(a, f, t0 + dt, v));
            });
            fill(true);
        }
    }
    std::vector<UniversalSpike> out;
    for (auto& v : per_chunk) out.insert(out.end(), v.begin(), v.end());
    sort_spikes(out);
    return out;
}

}  // namespace

std::vector<UniversalSpike> detect_universal(const UniversalDetectArgs& a) {
    KS_ASSERT(a.x && a.grid && a.wtemp && a.n_chan >= 1 && a.n_samples >= 0 && a.ld_x >= a.n_samples && a.nk >= 1 &&
                  a.nt >= 3 && a.nt % 2 == 1 && a.nt0min >= 0 && a.nt0min < a.nt &&
                  a.context >= a.nt0min + a.nt / 2 && 2 * a.context <= a.n_samples,
              "detect_universal: bad arguments");
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos;
    for (int v : g.iC) KS_ASSERT(v < a.n_chan, "detect_universal: grid channel outside the block");
    const int64_t n = a.n_samples;
    if (n == 0 || F == 0) return {};

    return finish_above(a, compute_as(a, best_chunk_fn()));
}

std::vector<UniversalSpike> universal_finish(const UniversalDetectArgs& a, const float* as, const uint8_t* is_max) {
    const UniversalGrid& g = *a.grid;
    const int F = g.n_pos;
    const int64_t n = a.n_samples, lo = a.context, hi = n - a.context;
    const float th = a.Th_universal;
    std::vector<std::vector<UniversalSpike>> per_f(F);
#pragma omp parallel for schedule(dynamic, 4)
    for (int f = 0; f < F; ++f) {
        const int* ic2 = g.iC2.data() + static_cast<size_t>(f) * g.n_near;
        const float* row = as + static_cast<size_t>(f) * n;
        if (is_max) {
            for (int64_t t = lo; t < hi; ++t)
                if (is_max[static_cast<size_t>(f) * n + t]) per_f[f].push_back(spike_at(a, f, t, row[t]));
            continue;
        }
        // Nearly all of As is below threshold, which universal_is_local_max rejects first: skip
        // such stretches with one vectorisable pass before testing sample by sample.
        constexpr int64_t kBlock = 64;
        for (int64_t t0 = lo; t0 < hi; t0 += kBlock) {
            const int64_t t1 = std::min(t0 + kBlock, hi);
            int above = 0;  // a count, not a bool, so that GCC vectorises it
            for (int64_t t = t0; t < t1; ++t) above += row[t] > th;
            if (above == 0) continue;
            for (int64_t t = t0; t < t1; ++t)
                if (body::universal_is_local_max(as, n, ic2, g.n_near, f, t, a.nt0min, th))
                    per_f[f].push_back(spike_at(a, f, t, row[t]));
        }
    }
    std::vector<UniversalSpike> out;
    for (auto& v : per_f) out.insert(out.end(), v.begin(), v.end());
    sort_spikes(out);
    return out;
}

}  // namespace ks::kernels::cpu
