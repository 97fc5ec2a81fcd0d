// Correlogram statistics and the rules built on them (kilosort4-algorithm.md §5.7, §7.2-7.5).
#include "ks/kernels/ccg.hpp"

#include <algorithm>
#include <cmath>

#include "ks/error.hpp"

namespace ks::ccg {

namespace {

constexpr int kBins = 500;        // ±500 bins of 1 ms
constexpr double kBin = 1e-3;

}  // namespace

double poisson_cdf(double n, double lam) {
    if (!(lam > 0)) return 1;
    const double k_max = std::floor(n + 1e-9);
    if (k_max < 0) return 0;
    // Far above the mean the tail is 1 to double precision; the sum below would only cost time.
    if (k_max > lam + 40 * std::sqrt(lam) + 40) return 1;
    double total = 0;
    for (double k = 0; k <= k_max; ++k) total += std::exp(k * std::log(lam) - lam - std::lgamma(k + 1));
    return std::min(total, 1.0);
}

Stats ccg_stats(const double* a, int64_t na, const double* b, int64_t nb, bool acg) {
    (void)acg;   // the i == j pairs need no special case: they fall in lag 0 like any other pair
    Stats s;
    if (na <= 0 || nb <= 0) return s;
    for (int64_t i = 1; i < na; ++i) KS_ASSERT(a[i] >= a[i - 1], "ccg_stats: first train not sorted");
    for (int64_t j = 1; j < nb; ++j) KS_ASSERT(b[j] >= b[j - 1], "ccg_stats: second train not sorted");
    const double T = std::max(a[na - 1], b[nb - 1]) - std::min(a[0], b[0]);
    if (!(T > 0)) return s;
    const double window = kBins * kBin;
    std::vector<double> K(2 * kBins + 1, 0.0);
    // For each b_j, the a_i with b_j - 0.5 s < a_i <= b_j + 0.5 s, binned at round((b_j - a_i) / 1 ms).
    int64_t lo = 0, hi = 0;
    for (int64_t j = 0; j < nb; ++j) {
        while (hi < na && a[hi] <= b[j] + window) ++hi;
        while (lo < na && a[lo] <= b[j] - window) ++lo;
        for (int64_t i = lo; i < hi; ++i) {
            const int bin = static_cast<int>(std::nearbyint((b[j] - a[i]) / kBin));
            if (bin >= -kBins && bin <= kBins) K[bin + kBins] += 1;
        }
    }
    const double rate = static_cast<double>(na) * static_cast<double>(nb) / T;   // pairs per second of lag
    auto sum = [&](int l0, int l1) {   // lags l0..l1 inclusive
        double t = 0;
        for (int l = l0; l <= l1; ++l) t += K[l + kBins];
        return t;
    };
    // Far shoulders: lags -499..-251 and 250..499 (499 bins); near: -50..-11 and 10..49 (40 bins each).
    const double far = sum(-499, -251) + sum(250, 499), near_l = sum(-50, -11), near_r = sum(10, 49);
    s.R00 = far / (499 * kBin * rate);
    s.R01 = std::max(near_l / (40 * kBin * rate), near_r / (40 * kBin * rate));
    s.Q00 = std::max({near_l / 40, near_r / 40, far / 499});
    K[kBins] = 0;
    double rmin = INFINITY, qmin = INFINITY, qexact = INFINITY;
    for (int i = 1; i <= 10; ++i) {
        const double c = sum(-i, i);
        rmin = std::min(rmin, c / (2 * i * kBin * rate));
        const double n = c / 2, lam = s.Q00 * i;
        qmin = std::min(qmin, 0.5 * (1 + std::erf((n - lam) / std::sqrt(1e-10 + 2 * lam))));
        qexact = std::min(qexact, poisson_cdf(n, lam));
    }
    s.R12 = rmin / (1e-10 + std::max(s.R00, s.R01));
    s.Q12 = qmin;
    s.Q12_poisson = qexact;
    return s;
}

// A real correlogram with Q00 == 0 has lambda_i = 0 and so Q12 >= 0.5; with Q00 > 0 some shoulder bin
// counts, so R00 or R01 > 0. All three zero is therefore only ever the no-correlogram result.
bool undefined(const Stats& s) { return s.R00 == 0 && s.R01 == 0 && s.Q12 == 0; }

bool acg_refractory(const Stats& s, double acg_threshold) {
    return !undefined(s) && s.R12 < acg_threshold && s.Q12 < 0.2;
}

bool acg_refractory_poisson(const Stats& s, double acg_threshold) {
    return !undefined(s) && s.R12 < acg_threshold && s.Q12_poisson < 0.2;
}

bool ccg_refractory(const Stats& s, double ccg_threshold) {
    return !undefined(s) && s.R12 < ccg_threshold && s.Q12 < 0.05;
}

bool ccg_refractory_poisson(const Stats& s, double ccg_threshold) {
    return !undefined(s) && s.R12 < ccg_threshold && s.Q12_poisson < 0.05;
}

bool split_vetoed_by_refractory(const double* a, int64_t na, const double* b, int64_t nb) {
    const Stats s = ccg_stats(a, na, b, nb, false);
    return !undefined(s) && s.R12 < 0.25 && (s.Q12 < 0.05 || s.Q00 < 0.25);
}

std::vector<uint8_t> remove_duplicates(const int64_t* t, const int32_t* clu, int64_t n, int64_t dup_samples) {
    std::vector<uint8_t> kept(static_cast<size_t>(n), 1);
    if (dup_samples <= 0 || n == 0) return kept;
    const int32_t K = *std::max_element(clu, clu + n) + 1;
    std::vector<int64_t> last(static_cast<size_t>(std::max(K, 1)), INT64_MIN);
    for (int64_t i = 0; i < n; ++i) {
        KS_ASSERT(clu[i] >= 0, "remove_duplicates: negative cluster");
        KS_ASSERT(i == 0 || t[i] >= t[i - 1], "remove_duplicates: times not sorted");
        int64_t& l = last[clu[i]];
        if (l != INT64_MIN && t[i] - l < dup_samples) {
            kept[i] = 0;
        } else {
            l = t[i];
        }
    }
    return kept;
}

void contamination(const int64_t* t, const int32_t* clu, int64_t n, int K, double fs, double acg_threshold,
                   std::vector<double>* contam_pct, std::vector<uint8_t>* good, bool exact_tail) {
    std::vector<std::vector<double>> train(K);
    for (int64_t i = 0; i < n; ++i) {
        KS_ASSERT(clu[i] >= 0 && clu[i] < K, "contamination: cluster out of range");
        train[clu[i]].push_back(static_cast<double>(t[i]) / fs);
    }
    contam_pct->assign(K, 0.0);
    good->assign(K, 0);
    for (int k = 0; k < K; ++k) {
        auto& s = train[k];
        std::sort(s.begin(), s.end());
        if (s.size() <= 10 || s.back() == s.front()) continue;
        const auto ns = static_cast<int64_t>(s.size());
        const Stats st = ccg_stats(s.data(), ns, s.data(), ns, true);
        (*contam_pct)[k] = 100 * st.R12;
        (*good)[k] = (exact_tail ? acg_refractory_poisson(st, acg_threshold) : acg_refractory(st, acg_threshold)) ? 1 : 0;
    }
}

}  // namespace ks::ccg
