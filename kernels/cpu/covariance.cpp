// Covariance sums on the CPU: the output is cut into 32 x 32 tiles of the lower triangle, one
// OpenMP job each, so every entry is summed by one thread in the order of covariance_body.hpp
// whatever the thread count. A job converts its rows to double kChunk samples at a time (an
// L2-sized buffer) and runs a register-blocked micro kernel whose lane loop the compiler vectorises.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/covariance_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/covariance.hpp"

namespace ks::kernels::cpu {
namespace {

constexpr int kTile = 32;                 // output rows/cols per job
constexpr int kChunk = 256;               // samples per conversion (multiple of kCovLanes)
constexpr int kMr = 4, kMc = 4;           // micro tile: output rows x cols held in registers
constexpr int kL = body::kCovLanes;
static_assert(kChunk % kL == 0 && kTile % kMr == 0 && kTile % kMc == 0, "tile sizes");

// lanes[kMr][kMc][kL] += the products of rows xi[0..kMr) and xj[0..kMc) over n4 samples.
void micro(const double* xi, const double* xj, int n4, double* lanes) {
    double acc[kMr][kMc][kL];
    for (int r = 0; r < kMr; ++r)
        for (int c = 0; c < kMc; ++c)
            for (int l = 0; l < kL; ++l) acc[r][c][l] = lanes[(r * kMc + c) * kL + l];
    for (int t = 0; t < n4; t += kL)
        for (int r = 0; r < kMr; ++r)
            for (int c = 0; c < kMc; ++c)
                for (int l = 0; l < kL; ++l)
                    acc[r][c][l] = body::cov_mac(acc[r][c][l], xi[r * kChunk + t + l], xj[c * kChunk + t + l]);
    for (int r = 0; r < kMr; ++r)
        for (int c = 0; c < kMc; ++c)
            for (int l = 0; l < kL; ++l) lanes[(r * kMc + c) * kL + l] = acc[r][c][l];
}

// Rows [row0, row0 + kTile) of samples [s, s + len) as double, zero past the last channel and
// from len up to the next multiple of kL.
void load_rows(const CovarianceArgs& a, int row0, int64_t s, int len, double* buf) {
    const int len4 = (len + kL - 1) / kL * kL;
    for (int r = 0; r < kTile; ++r) {
        double* b = buf + static_cast<int64_t>(r) * kChunk;
        const int row = row0 + r;
        if (row >= a.n_channels) {
            std::fill(b, b + len4, 0.0);
            continue;
        }
        const float* x = a.x + row * a.ld + s;
        for (int t = 0; t < len; ++t) b[t] = x[t];
        for (int t = len; t < len4; ++t) b[t] = 0.0;
    }
}

}  // namespace

void accumulate_covariance(const CovarianceArgs& a) {
    KS_ASSERT(a.n_channels >= 1 && a.n_samples >= 0 && a.ld >= a.n_samples && a.x && a.sum,
              "accumulate_covariance: bad arguments");
    if (a.n_samples == 0) return;
    const int C = a.n_channels;
    const int n_tiles = (C + kTile - 1) / kTile;
    std::vector<std::pair<int, int>> jobs;  // (row tile, col tile), row >= col
    for (int bi = 0; bi < n_tiles; ++bi)
        for (int bj = 0; bj <= bi; ++bj) jobs.emplace_back(bi * kTile, bj * kTile);

#pragma omp parallel
    {
        std::vector<double> xi(static_cast<size_t>(kTile) * kChunk), xj(xi.size());
        std::vector<double> lanes(static_cast<size_t>(kTile) * kTile * kL);
#pragma omp for schedule(dynamic, 1)
        for (int job = 0; job < static_cast<int>(jobs.size()); ++job) {
            const int i0 = jobs[job].first, j0 = jobs[job].second;
            const bool diagonal = i0 == j0;
            std::fill(lanes.begin(), lanes.end(), 0.0);
            for (int64_t s = 0; s < a.n_samples; s += kChunk) {
                const int len = static_cast<int>(std::min<int64_t>(kChunk, a.n_samples - s));
                const int len4 = (len + kL - 1) / kL * kL;
                load_rows(a, i0, s, len, xi.data());
                if (!diagonal) load_rows(a, j0, s, len, xj.data());
                const double* yj = diagonal ? xi.data() : xj.data();
                for (int r = 0; r < kTile; r += kMr)
                    for (int c = 0; c < kTile; c += kMc) {
                        if (diagonal && r + kMr - 1 < c) continue;  // wholly above the diagonal
                        micro(xi.data() + static_cast<int64_t>(r) * kChunk, yj + static_cast<int64_t>(c) * kChunk,
                              len4, lanes.data() + (static_cast<int64_t>(r / kMr) * (kTile / kMc) + c / kMc) * kMr * kMc * kL);
                    }
            }
            for (int r = 0; r < kTile; ++r)
                for (int c = 0; c < kTile; ++c) {
                    const int i = i0 + r, j = j0 + c;
                    if (i >= C || j >= C || j > i) continue;
                    const int m = (r / kMr) * (kTile / kMc) + c / kMc;
                    const double tot = body::cov_lane_total(&lanes[((static_cast<int64_t>(m) * kMr + r % kMr) * kMc + c % kMc) * kL]);
                    a.sum[static_cast<int64_t>(i) * C + j] += tot;
                    if (i != j) a.sum[static_cast<int64_t>(j) * C + i] += tot;
                }
        }
    }
}

}  // namespace ks::kernels::cpu
