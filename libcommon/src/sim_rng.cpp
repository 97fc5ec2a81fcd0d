// ks::sim random numbers: our own generators and distributions, so a seed gives the same
// bytes with any standard library, platform or thread count.
#include <cmath>

#include "ks/sim.hpp"

namespace ks::sim {

uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    // Chained mixing: each index perturbs the state after the previous one was mixed in, so
    // (a, b) and (b, a) give unrelated keys.
    uint64_t h = mix64(seed ^ 0x5EED5EED5EED5EEDull);
    h = mix64(h ^ a);
    h = mix64(h ^ (b + 0x632BE59BD9B4E019ull));
    h = mix64(h ^ (c + 0x8CB92BA72F3D8DD7ull));
    return h;
}

double unit_open(uint64_t bits) {
    // 53 bits, centred in their cell: never 0, never 1.
    return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double normal_quantile(double p) {
    // Wichura (1988), Algorithm AS 241 PPND16: rational approximations on three regions.
    const double q = p - 0.5;
    if (std::fabs(q) <= 0.425) {
        const double r = 0.180625 - q * q;
        return q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r +
                        45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r +
                     133.14166789178437745) * r + 3.387132872796366608) /
               (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r +
                    21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r +
                 42.313330701600911252) * r + 1.0);
    }
    double r = q < 0 ? p : 1.0 - p;
    r = std::sqrt(-std::log(r));
    double x;
    if (r <= 5.0) {
        r -= 1.6;
        x = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
                 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r +
              4.6303378461565452959) * r + 1.42343711074968357734) /
            (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
                 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r +
              2.05319162663775882187) * r + 1.0);
    } else {
        r -= 5.0;
        x = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r +
                 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r +
              5.4637849111641143699) * r + 6.6579046435011037772) /
            (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r +
                 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r +
              0.59983220655588793769) * r + 1.0);
    }
    return q < 0 ? -x : x;
}

namespace {
// Normal quantiles on a uniform grid of p (2^14 cells over (0, 1)), linearly interpolated;
// each normal takes 32 random bits (two per 64-bit hash): the top 14 pick the cell, the other
// 18 the position inside it. The 16 cells at each end (p < 0.001, where the quantile curves
// too much for a straight line) use the exact AS241 value; elsewhere the interpolation error
// is below 2e-4.
constexpr int kCellBits = 14;
constexpr int kCells = 1 << kCellBits;
constexpr int kExactCells = 16;
struct QuantileTable {
    float v[kCells + 1];
    QuantileTable() {
        for (int i = 0; i <= kCells; ++i)
            v[i] = (i < kExactCells || i > kCells - kExactCells) ? 0.f
                                                                : static_cast<float>(normal_quantile(static_cast<double>(i) / kCells));
    }
};
const QuantileTable& quantile_table() {
    static const QuantileTable t;
    return t;
}

inline float normal_from_bits(const QuantileTable& t, uint32_t bits) {
    const int j = static_cast<int>(bits >> (32 - kCellBits));
    if (j < kExactCells || j >= kCells - kExactCells)
        return static_cast<float>(normal_quantile((static_cast<double>(bits) + 0.5) * (1.0 / 4294967296.0)));
    const float f = static_cast<float>(bits & ((1u << (32 - kCellBits)) - 1)) * (1.0f / (1u << (32 - kCellBits)));
    return t.v[j] + f * (t.v[j + 1] - t.v[j]);
}

// splitmix64's output function at position i of the stream named by the key.
inline uint64_t stream_bits(uint64_t stream_key, uint64_t i) { return mix64(stream_key + i * 0x9E3779B97F4A7C15ull); }
}  // namespace

double counter_normal(uint64_t stream_key, uint64_t i) {
    const uint64_t h = stream_bits(stream_key, i >> 1);
    return normal_from_bits(quantile_table(), static_cast<uint32_t>((i & 1) ? h : h >> 32));
}

void counter_normals(uint64_t stream_key, uint64_t first, int64_t n, float scale, float* out) {
    const QuantileTable& t = quantile_table();
    int64_t j = 0;
    uint64_t i = first;
    if (n > 0 && (i & 1)) out[j++] = scale * static_cast<float>(counter_normal(stream_key, i++));
    for (; j + 1 < n; j += 2, i += 2) {
        const uint64_t h = stream_bits(stream_key, i >> 1);
        out[j] = scale * normal_from_bits(t, static_cast<uint32_t>(h >> 32));
        out[j + 1] = scale * normal_from_bits(t, static_cast<uint32_t>(h));
    }
    if (j < n) out[j] = scale * static_cast<float>(counter_normal(stream_key, i));
}

namespace {
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
    uint64_t x = seed;
    for (auto& s : s_) {
        x += 0x9E3779B97F4A7C15ull;
        s = mix64(x);
    }
}

uint64_t Rng::next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double Rng::uniform() { return unit_open(next()); }
double Rng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
double Rng::normal() { return normal_quantile(uniform()); }
double Rng::exponential(double mean) { return -mean * std::log(uniform()); }
double Rng::lognormal(double median, double sigma) { return median * std::exp(sigma * normal()); }

double Rng::truncated_lognormal(double median, double sigma, double lo, double hi) {
    for (int i = 0; i < 1000; ++i) {
        const double v = lognormal(median, sigma);
        if (v >= lo && v <= hi) return v;
    }
    return std::fmin(hi, std::fmax(lo, median));
}

int Rng::below(int n) {
    if (n <= 1) return 0;
    return static_cast<int>((next() >> 11) % static_cast<uint64_t>(n));
}

bool Rng::chance(double p) { return uniform() < p; }

}  // namespace ks::sim
