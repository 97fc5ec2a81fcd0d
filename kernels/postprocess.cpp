// Post-processing of the final clustering: CCG merges (§7.3) and spike positions (§7.6).
#include "ks/kernels/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ks/error.hpp"
#include "ks/kernels/ccg.hpp"
#include "ks/kernels/template_match.hpp"

namespace ks::post {

namespace {

// Template k's waveform moved `l` samples earlier (w'(tau) = w(tau + l), zero fill), back in PCs.
void shift_template(float* u, int C, int P, const float* wpca, int nt, int l) {
    if (l == 0) return;
    std::vector<double> wave(static_cast<size_t>(nt));
    for (int c = 0; c < C; ++c) {
        std::fill(wave.begin(), wave.end(), 0.0);
        bool any = false;
        for (int p = 0; p < P; ++p) {
            const double v = u[c * P + p];
            if (v == 0) continue;
            any = true;
            for (int t = 0; t < nt; ++t) wave[t] += v * wpca[static_cast<size_t>(p) * nt + t];
        }
        if (!any) continue;
        for (int p = 0; p < P; ++p) {
            double s = 0;
            for (int t = 0; t < nt; ++t)
                if (t + l >= 0 && t + l < nt) s += wave[t + l] * wpca[static_cast<size_t>(p) * nt + t];
            u[c * P + p] = static_cast<float>(s);
        }
    }
}

}  // namespace

MergeResult ccg_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                      std::vector<float>& U, int C, int P, const float* wpca, int nt, const MergeParams& p) {
    KS_ASSERT(times.size() == labels.size() && U.size() == static_cast<size_t>(K) * C * P, "ccg_merge: shapes");
    const size_t D = static_cast<size_t>(C) * P;
    // Spike trains in seconds, per cluster, sorted.
    std::vector<std::vector<double>> train(K);
    for (size_t i = 0; i < times.size(); ++i) {
        KS_ASSERT(labels[i] >= 0 && labels[i] < K, "ccg_merge: label out of range");
        train[labels[i]].push_back(static_cast<double>(times[i]) / p.fs);
    }
    for (auto& t : train) std::sort(t.begin(), t.end());
    std::vector<char> is_ref(K, 0), alive(K, 1);
    for (int k = 0; k < K; ++k) {
        // As Kilosort4's CCG.refract: only clusters with more than 10 spikes over a nonzero span can be
        // refractory, hence absorb others.
        const auto& t = train[k];
        if (t.size() <= 10 || t.back() == t.front()) continue;
        is_ref[k] = ccg::acg_refractory(ccg::ccg_stats(t.data(), static_cast<int64_t>(t.size()), t.data(),
                                                       static_cast<int64_t>(t.size()), true),
                                        p.acg_threshold);
    }
    MergeResult r;
    r.into.resize(K);
    std::iota(r.into.begin(), r.into.end(), 0);
    r.shift.assign(K, 0);
    std::vector<int> order(K);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return train[a].size() > train[b].size(); });
    std::vector<float> sim;
    std::vector<int> lag;
    for (int a : order) {
        if (!is_ref[a] || !alive[a]) continue;
        for (;;) {
            match::template_similarity_row(U.data(), K, C, P, wpca, nt, a, &sim, &lag);
            std::vector<int> cand;
            for (int b = 0; b < K; ++b)
                if (b != a && alive[b] && !train[b].empty() && sim[b] >= p.min_similarity) cand.push_back(b);
            std::stable_sort(cand.begin(), cand.end(), [&](int x, int y) { return sim[x] > sim[y]; });
            int merged = -1;
            for (int b : cand) {
                const ccg::Stats s = ccg::ccg_stats(train[a].data(), static_cast<int64_t>(train[a].size()), train[b].data(),
                                                    static_cast<int64_t>(train[b].size()), false);
                if (ccg::ccg_refractory(s, p.ccg_threshold)) {
                    merged = b;
                    break;
                }
            }
            if (merged < 0) break;
            // a centred at t0 + l matches b centred at t0: b's spikes are a's at t + l.
            const int l = lag[merged];
            shift_template(U.data() + merged * D, C, P, wpca, nt, l);
            const double na = static_cast<double>(train[a].size()), nb = static_cast<double>(train[merged].size());
            for (size_t i = 0; i < D; ++i)
                U[a * D + i] = static_cast<float>((na * U[a * D + i] + nb * U[merged * D + i]) / (na + nb));
            std::fill(U.begin() + merged * D, U.begin() + (merged + 1) * D, 0.f);
            for (double& t : train[merged]) t += l / p.fs;
            train[a].insert(train[a].end(), train[merged].begin(), train[merged].end());
            std::sort(train[a].begin(), train[a].end());
            train[merged].clear();
            alive[merged] = 0;
            for (int k = 0; k < K; ++k)
                if (r.into[k] == merged) {
                    r.into[k] = a;
                    r.shift[k] += l;
                }
            ++r.n_merges;
        }
    }
    // Renumber the survivors in their order; drop the absorbed templates.
    std::vector<int32_t> renum(K, -1);
    std::vector<float> kept;
    for (int k = 0; k < K; ++k)
        if (alive[k]) {
            renum[k] = r.K++;
            kept.insert(kept.end(), U.begin() + k * D, U.begin() + (k + 1) * D);
        }
    for (int32_t& t : r.into) t = renum[t];
    U.swap(kept);
    return r;
}

void spike_position(const float* features, const int32_t* chans, int nC, int P, const std::vector<double>& xc,
                    const std::vector<double>& yc, double position_limit_um, double* x_um, double* y_um) {
    const int c0 = chans[0];
    double wsum = 0, x = 0, y = 0;
    for (int i = 0; i < nC; ++i) {
        const int c = chans[i];
        if (c < 0) continue;
        const double dx = xc[c] - xc[c0], dy = yc[c] - yc[c0];
        if (dx * dx + dy * dy > position_limit_um * position_limit_um) continue;
        double s = 0;
        for (int q = 0; q < P; ++q) s += static_cast<double>(features[i * P + q]) * features[i * P + q];
        const double w = std::sqrt(s);
        wsum += w;
        x += w * xc[c];
        y += w * yc[c];
    }
    if (wsum > 0) {
        *x_um = x / wsum;
        *y_um = y / wsum;
    } else {
        *x_um = xc[c0];
        *y_um = yc[c0];
    }
}

}  // namespace ks::post
