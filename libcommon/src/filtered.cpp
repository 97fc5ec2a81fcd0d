// The filtered recording (formats/filtered.md): sidecar parsing, the reader, float16 conversion.
#include "ks/filtered.hpp"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks {
namespace {

constexpr int64_t kChunkBytes = int64_t(1) << 20;  // bytes per pread, as ks::Recording

uint32_t float_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}
float bits_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}

#if defined(__x86_64__)
__attribute__((target("avx,f16c"))) void floats_to_halves_f16c(const float* in, uint16_t* out, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
    }
    for (; i < n; ++i) out[i] = float_to_half(in[i]);
}
__attribute__((target("avx,f16c"))) void halves_to_floats_f16c(const uint16_t* in, float* out, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
    for (; i < n; ++i) out[i] = half_to_float(in[i]);
}
bool have_f16c() {
    static const bool yes = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    return yes;
}
#endif

void pread_full(int fd, void* dst, int64_t bytes, int64_t offset, const std::string& path) {
    auto* p = static_cast<unsigned char*>(dst);
    while (bytes > 0) {
        const ssize_t r = ::pread(fd, p, static_cast<size_t>(bytes), static_cast<off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            throw Error(Exit::resources, errno_message(path + ": read failed at byte " + std::to_string(offset)));
        }
        if (r == 0)
            throw Error(Exit::usage, log::format("%s: file ends at byte %lld, before the size filtered.json gives; "
                                                 "was it truncated?",
                                                 path.c_str(), static_cast<long long>(offset)));
        p += r;
        bytes -= r;
        offset += r;
    }
}

// Converts m interleaved samples (m x C stored values) into out[c * ld + col0 + t].
template <class T>
void scatter_rows(const T* buf, int64_t m, int C, double scale, float* out, int64_t ld, int64_t col0,
                  std::vector<float>& tmp) {
    const float s = static_cast<float>(scale);
    const size_t count = static_cast<size_t>(m) * C;
    const float* vals;
    if constexpr (std::is_same<T, uint16_t>::value) {  // float16
        tmp.resize(count);
        halves_to_floats(buf, tmp.data(), count);
        vals = tmp.data();
    } else if constexpr (std::is_same<T, float>::value) {
        vals = buf;
    } else {
        tmp.resize(count);
        for (size_t i = 0; i < count; ++i) tmp[i] = static_cast<float>(buf[i]);
        vals = tmp.data();
    }
    for (int c = 0; c < C; ++c) {
        float* dst = out + static_cast<int64_t>(c) * ld + col0;
        for (int64_t t = 0; t < m; ++t) dst[t] = vals[t * C + c] * s;
    }
}

}  // namespace

uint16_t float_to_half(float x) {
    const uint32_t b = float_bits(x);
    const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000u);
    const uint32_t a = b & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, inf
    if (a >= 0x477ff000u) return sign | 0x7c00u;                                // >= 65520 rounds to inf
    if (a < 0x38800000u) {
        // Below 2^-14: a subnormal half, a multiple of 2^-24. The product is exact and
        // nearbyint rounds to nearest even in the default rounding mode.
        const float m = std::nearbyint(bits_float(a) * 16777216.0f);
        return sign | static_cast<uint16_t>(m);
    }
    const uint32_t mant = a & 0x7fffffu;
    uint32_t h = ((((a >> 23) - 127 + 15) << 10) | (mant >> 13));
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent correctly
    return sign | static_cast<uint16_t>(h);
}

float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
        return sign ? -v : v;
    }
    if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
    return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

void floats_to_halves(const float* in, uint16_t* out, std::size_t n) {
#if defined(__x86_64__)
    if (have_f16c()) return floats_to_halves_f16c(in, out, n);
#endif
    for (std::size_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

void halves_to_floats(const uint16_t* in, float* out, std::size_t n) {
#if defined(__x86_64__)
    if (have_f16c()) return halves_to_floats_f16c(in, out, n);
#endif
    for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(in[i]);
}

FilteredInfo read_filtered_info(const std::string& path) {
    simdjson::padded_string text;
    if (simdjson::padded_string::load(path).get(text) != simdjson::SUCCESS)
        throw Error(Exit::usage, path + ": cannot read the filtered recording's description; run ks-filter first");
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (const auto err = parser.parse(text).get(root))
        throw Error(Exit::usage, path + ": not valid JSON (" + simdjson::error_message(err) + ")");
    simdjson::dom::object obj;
    if (root.get_object().get(obj) != simdjson::SUCCESS) throw Error(Exit::usage, path + ": expected a JSON object");

    auto bad = [&path](const std::string& what) { return Error(Exit::usage, path + ": " + what); };
    std::string_view format;
    if (obj["format"].get_string().get(format) != simdjson::SUCCESS || format != "ks-filtered")
        throw bad("\"format\" is not \"ks-filtered\"; not a ks-filter output");
    int64_t version = 0;
    if (obj["version"].get_int64().get(version) != simdjson::SUCCESS)
        throw bad("\"version\" is missing or not an integer");
    if (version != kFilteredVersion)
        throw bad(log::format("format version %lld; this ks-tools reads version %d (rerun ks-filter)",
                              static_cast<long long>(version), kFilteredVersion));
    auto get_int = [&](const char* key, int64_t lo, int64_t hi) {
        int64_t v = 0;
        if (obj[key].get_int64().get(v) != simdjson::SUCCESS)
            throw bad(std::string("\"") + key + "\" is missing or not an integer");
        if (v < lo || v > hi)
            throw bad(log::format("\"%s\" = %lld is out of range [%lld, %lld]", key, static_cast<long long>(v),
                                  static_cast<long long>(lo), static_cast<long long>(hi)));
        return v;
    };
    auto get_positive = [&](const char* key) {
        double v = 0;
        if (obj[key].get_double().get(v) != simdjson::SUCCESS)
            throw bad(std::string("\"") + key + "\" is missing or not a number");
        if (!(v > 0) || !std::isfinite(v)) throw bad(log::format("\"%s\" = %g; expected a positive number", key, v));
        return v;
    };
    FilteredInfo info;
    std::string_view dtype;
    if (obj["dtype"].get_string().get(dtype) != simdjson::SUCCESS) throw bad("\"dtype\" is missing or not a string");
    if (dtype == "float16") info.dtype = Dtype::float16;
    else if (dtype == "int16") info.dtype = Dtype::int16;
    else if (dtype == "float32") info.dtype = Dtype::float32;
    else throw bad("\"dtype\" = \"" + std::string(dtype) + "\"; expected float16, int16 or float32");
    info.n_channels = static_cast<int>(get_int("n_channels", 1, 1 << 20));
    info.n_samples = get_int("n_samples", 1, int64_t(1) << 50);
    info.imin = get_int("imin", 0, int64_t(1) << 50);
    info.fs = get_positive("fs");
    info.scale = get_positive("scale");
    return info;
}

FilteredRecording::FilteredRecording(const std::string& work_dir) {
    const std::string dir = work_dir + "/filter";
    info_ = read_filtered_info(dir + "/filtered.json");
    bin_path_ = dir + "/filtered.bin";
    const int fd = ::open(bin_path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(Exit::usage, errno_message(bin_path_ + ": cannot open the filtered recording"));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(Exit::usage, bin_path_ + ": not a regular file");
    }
    const int64_t want = info_.n_samples * info_.n_channels * static_cast<int64_t>(dtype_size(info_.dtype));
    if (static_cast<int64_t>(st.st_size) != want) {
        ::close(fd);
        throw Error(Exit::usage, log::format("%s: %lld bytes, but filtered.json describes %lld samples x %d channels "
                                             "x %zu bytes (%s) = %lld bytes; incomplete or from another run",
                                             bin_path_.c_str(), static_cast<long long>(st.st_size),
                                             static_cast<long long>(info_.n_samples), info_.n_channels,
                                             dtype_size(info_.dtype), dtype_name(info_.dtype),
                                             static_cast<long long>(want)));
    }
    fd_ = fd;
}

FilteredRecording::~FilteredRecording() {
    if (fd_ >= 0) ::close(fd_);
}

void FilteredRecording::read(int64_t t0, int64_t n, float* out) const {
    KS_ASSERT(n >= 0, "negative sample count");
    const int C = info_.n_channels;
    const int64_t N = info_.n_samples;
    if (n == 0) return;
    // The part of [t0, t0 + n) inside [0, N); when there is none, the one edge sample every column repeats.
    int64_t a = std::max<int64_t>(t0, 0), b = std::min<int64_t>(t0 + n, N), col_a = a - t0;
    if (a >= b) {
        a = (t0 + n <= 0) ? 0 : N - 1;
        b = a + 1;
        col_a = 0;
    }
    const int64_t item = static_cast<int64_t>(dtype_size(info_.dtype));
    const int64_t row_bytes = C * item;
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(b - a, kChunkBytes / row_bytes));
    std::vector<unsigned char> buf(static_cast<size_t>(chunk * row_bytes));
    std::vector<float> tmp;
    for (int64_t done = 0; done < b - a; done += chunk) {
        const int64_t m = std::min(chunk, b - a - done);
        pread_full(fd_, buf.data(), m * row_bytes, (a + done) * row_bytes, bin_path_);
        switch (info_.dtype) {
            case Dtype::float16:
                scatter_rows(reinterpret_cast<const uint16_t*>(buf.data()), m, C, info_.scale, out, n, col_a + done, tmp);
                break;
            case Dtype::int16:
                scatter_rows(reinterpret_cast<const int16_t*>(buf.data()), m, C, info_.scale, out, n, col_a + done, tmp);
                break;
            case Dtype::float32:
                scatter_rows(reinterpret_cast<const float*>(buf.data()), m, C, info_.scale, out, n, col_a + done, tmp);
                break;
            default: KS_ASSERT(false, "unsupported filtered dtype survived the constructor");
        }
    }
    const int64_t col_b = col_a + (b - a);
    for (int c = 0; c < C; ++c) {
        float* row = out + static_cast<int64_t>(c) * n;
        std::fill(row, row + col_a, row[col_a]);
        std::fill(row + col_b, row + n, row[col_b - 1]);
    }
}

}  // namespace ks
