#include "ks/npy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <sys/stat.h>
#include <type_traits>
#include <zstd.h>

#include "ks/error.hpp"
#include "ks/output_file.hpp"

// Array bytes go to and from disk by memcpy; .npy data here is always little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ks-tools needs a little-endian host");

namespace ks {
namespace {

const char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;
// numpy refuses headers over 10000 bytes by default; ours are under 200. Anything this big is
// not a header, and refusing it keeps a corrupt length from allocating gigabytes.
constexpr std::size_t kMaxHeaderLen = 1 << 20;

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) { throw Error(Exit::usage, path + ": " + what); }

struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// The bytes of a .npy, from a plain file or decoded on the fly from a .npy.zst, so a
// compressed array is never held twice in memory.
class Source {
public:
    explicit Source(const std::string& path) : path_(path), zst_(ends_with(path, ".zst")) {
        f_.reset(std::fopen(path.c_str(), "rb"));
        if (!f_) throw Error(Exit::usage, errno_message(path));
        struct stat st {};
        if (fstat(fileno(f_.get()), &st) == 0 && S_ISDIR(st.st_mode)) bad(path, "is a folder; expected a .npy file");
        if (!zst_) {
            content_size_ = S_ISREG(st.st_mode) ? static_cast<int64_t>(st.st_size) : -1;
            return;
        }
        ds_ = ZSTD_createDStream();
        if (!ds_) throw Error(Exit::resources, path + ": out of memory for zstd decompression");
        in_.resize(ZSTD_DStreamInSize());
        fill();
        const unsigned long long cs = ZSTD_getFrameContentSize(in_.data(), in_size_);
        if (cs != ZSTD_CONTENTSIZE_UNKNOWN && cs != ZSTD_CONTENTSIZE_ERROR) content_size_ = static_cast<int64_t>(cs);
    }
    ~Source() { ZSTD_freeDStream(ds_); }

    // Size of the whole .npy (header and data) when the container records it, else -1.
    int64_t content_size() const { return content_size_; }

    // Returns fewer than n bytes only at the end of the .npy content.
    std::size_t read(void* dst, std::size_t n) {
        if (!zst_) {
            const std::size_t got = std::fread(dst, 1, n, f_.get());
            if (got < n && std::ferror(f_.get())) throw Error(Exit::usage, errno_message(path_ + ": cannot read"));
            return got;
        }
        ZSTD_outBuffer out{dst, n, 0};
        while (out.pos < n && !frame_done_) {
            const bool eof = in_pos_ == in_size_ && !fill();
            const std::size_t before = out.pos;
            ZSTD_inBuffer in{in_.data(), in_size_, in_pos_};
            const std::size_t r = ZSTD_decompressStream(ds_, &out, &in);
            in_pos_ = in.pos;
            if (ZSTD_isError(r)) bad(path_, std::string("not valid zstd data (") + ZSTD_getErrorName(r) + ")");
            frame_done_ = r == 0;
            if (eof && !frame_done_ && out.pos == before)
                bad(path_, "zstd data ends inside its frame (truncated file?)");
        }
        return out.pos;
    }

    // After the data: a .npy.zst is exactly one zstd frame.
    void finish() {
        if (zst_ && (in_pos_ < in_size_ || fill())) bad(path_, "extra data after the zstd frame; expected a single frame");
    }

private:
    bool fill() {
        in_size_ = std::fread(in_.data(), 1, in_.size(), f_.get());
        in_pos_ = 0;
        if (in_size_ == 0 && std::ferror(f_.get())) throw Error(Exit::usage, errno_message(path_ + ": cannot read"));
        return in_size_ > 0;
    }

    std::string path_;
    bool zst_;
    FilePtr f_;
    int64_t content_size_ = -1;
    ZSTD_DStream* ds_ = nullptr;
    std::vector<char> in_;
    std::size_t in_size_ = 0, in_pos_ = 0;
    bool frame_done_ = false;
};

// Where write_npy's bytes go: straight into the OutputFile, or through a zstd stream.
class Sink {
public:
    Sink(const std::string& path, int zstd_level, uint64_t total_size) : out_(path) {
        if (!ends_with(path, ".zst")) return;
        cctx_ = ZSTD_createCCtx();
        if (!cctx_) throw Error(Exit::resources, path + ": out of memory for zstd compression");
        ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, zstd_level);
        ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 1);  // as the zstd command does
        ZSTD_CCtx_setPledgedSrcSize(cctx_, total_size);         // recorded, so `zstd -l` shows it
        buf_.resize(ZSTD_CStreamOutSize());
    }
    ~Sink() { ZSTD_freeCCtx(cctx_); }

    void write(const void* data, std::size_t n) {
        if (cctx_) push(data, n, ZSTD_e_continue);
        else out_.write(data, n);
    }
    void commit() {
        if (cctx_) push(nullptr, 0, ZSTD_e_end);
        out_.commit();
    }

private:
    void push(const void* data, std::size_t n, ZSTD_EndDirective mode) {
        ZSTD_inBuffer in{data, n, 0};
        for (;;) {
            ZSTD_outBuffer o{buf_.data(), buf_.size(), 0};
            const std::size_t r = ZSTD_compressStream2(cctx_, &o, &in, mode);
            if (ZSTD_isError(r))
                throw Error(Exit::resources, out_.path() + ": zstd compression failed: " + ZSTD_getErrorName(r));
            out_.write(buf_.data(), o.pos);
            if (mode == ZSTD_e_end ? r == 0 : in.pos == in.size) break;
        }
    }

    OutputFile out_;
    ZSTD_CCtx* cctx_ = nullptr;
    std::vector<char> buf_;
};

// ---- the header dict: a Python literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }

struct Header {
    std::string descr;
    bool fortran_order = false;
    std::vector<int64_t> shape;
};

// Accepts what numpy's writers produce (and numpy's reader accepts): exactly the three keys, a
// string descr, True/False, a tuple of non-negative integers (Python 2's "3L" included).
class HeaderParser {
public:
    HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

    Header parse() {
        Header h;
        bool seen_descr = false, seen_order = false, seen_shape = false;
        expect('{');
        while (!peek('}')) {
            const std::string key = string_literal();
            expect(':');
            if (key == "descr" && !seen_descr) {
                if (peek('[')) bad(path_, "unsupported dtype: structured arrays are not supported");
                h.descr = string_literal();
                seen_descr = true;
            } else if (key == "fortran_order" && !seen_order) {
                h.fortran_order = boolean();
                seen_order = true;
            } else if (key == "shape" && !seen_shape) {
                h.shape = shape();
                seen_shape = true;
            } else {
                fail("unexpected or repeated key '" + key + "'");
            }
            if (!peek('}')) expect(',');
        }
        expect('}');
        skip_space();
        if (pos_ != s_.size()) fail("text after the closing '}'");
        if (!seen_descr || !seen_order || !seen_shape) fail("'descr', 'fortran_order' and 'shape' are all required");
        return h;
    }

private:
    [[noreturn]] void fail(const std::string& what) {
        // Quote the header on the same line: no padding, no control characters, not too long.
        std::string shown = s_.substr(0, 120);
        while (!shown.empty() && (shown.back() == ' ' || shown.back() == '\n')) shown.pop_back();
        for (char& c : shown)
            if (static_cast<unsigned char>(c) < 0x20) c = ' ';
        bad(path_, "malformed .npy header (" + what + "): " + shown);
    }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    bool peek(char c) {
        skip_space();
        return pos_ < s_.size() && s_[pos_] == c;
    }
    void expect(char c) {
        if (!peek(c)) fail(std::string("expected '") + c + "'");
        ++pos_;
    }
    std::string string_literal() {
        skip_space();
        if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) fail("expected a quoted string");
        const char quote = s_[pos_++];
        const auto end = s_.find(quote, pos_);
        if (end == std::string::npos) fail("unterminated string");
        std::string out = s_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return out;
    }
    bool boolean() {
        skip_space();
        for (const bool b : {true, false}) {
            const std::string word = b ? "True" : "False";
            if (s_.compare(pos_, word.size(), word) == 0) {
                pos_ += word.size();
                return b;
            }
        }
        fail("fortran_order must be True or False");
    }
    std::vector<int64_t> shape() {
        std::vector<int64_t> dims;
        expect('(');
        bool trailing_comma = false;
        while (!peek(')')) {
            const std::size_t start = pos_;
            int64_t d = 0;
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
                if (__builtin_mul_overflow(d, 10, &d) || __builtin_add_overflow(d, s_[pos_] - '0', &d))
                    fail("shape dimension too large");
                ++pos_;
            }
            if (pos_ == start) fail("shape must be a tuple of non-negative integers");
            if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;
            dims.push_back(d);
            trailing_comma = peek(',');
            if (!trailing_comma) break;
            ++pos_;
        }
        expect(')');
        // "(5)" is the integer 5 in Python, not a tuple; numpy rejects it too.
        if (dims.size() == 1 && !trailing_comma) fail("a 1-d shape needs a trailing comma, as in (5,)");
        return dims;
    }

    const std::string& s_;
    const std::string& path_;
    std::size_t pos_ = 0;
};

std::string dict_text(Dtype dtype, const std::vector<int64_t>& shape) {
    std::string s = std::string("{'descr': '") + dtype_npy_descr(dtype) + "', 'fortran_order': False, 'shape': (";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",), }" : "), }");
}

// A v1.0 header whose dict is padded to at least `min_dict_len`, so NpyRowWriter can later
// rewrite it in place with any row count.
std::string header_text(Dtype dtype, const std::vector<int64_t>& shape, std::size_t min_dict_len) {
    std::string dict = dict_text(dtype, shape);
    if (dict.size() < min_dict_len) dict.append(min_dict_len - dict.size(), ' ');
    // magic + version + 2-byte length + dict + '\n', padded with spaces to a multiple of 64 so
    // the data starts aligned (as numpy does).
    const std::size_t total = (kMagicLen + 4 + dict.size() + 1 + 63) / 64 * 64;
    const std::size_t header_len = total - kMagicLen - 4;
    KS_ASSERT(header_len <= 65535, "npy header too long for format 1.0");
    std::string out(kMagic, kMagicLen);
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(header_len & 0xFF);
    out += static_cast<char>(header_len >> 8);
    out += dict;
    out.append(header_len - dict.size() - 1, ' ');
    out += '\n';
    return out;
}

// Bytes of data for `shape`, or -1 when the product overflows.
int64_t data_bytes(Dtype dtype, const std::vector<int64_t>& shape) {
    int64_t n = static_cast<int64_t>(dtype_size(dtype));
    for (const int64_t d : shape)
        if (__builtin_mul_overflow(n, d, &n)) return -1;
    return n;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

float half_to_float(uint16_t h) {
    const int exponent = (h >> 10) & 0x1F;
    const int mantissa = h & 0x3FF;
    float v;
    if (exponent == 0) v = std::ldexp(static_cast<float>(mantissa), -24);  // zero and subnormals
    else if (exponent == 31) v = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
    else v = std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
    return (h & 0x8000) ? -v : v;
}

// Floating point to integer is undefined in C++ for NaN and out-of-range values; saturate
// instead (NaN -> 0) so a bad value cannot crash or differ between compilers.
template <class T, class S>
T convert(S s) {
    if constexpr (std::is_integral_v<T> && std::is_floating_point_v<S>) {
        if (std::isnan(s)) return 0;
        if (s <= static_cast<S>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
        if (s >= static_cast<S>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    }
    return static_cast<T>(s);
}

template <class T, class S>
void convert_all(const char* src, int64_t n, T* dst) {
    for (int64_t i = 0; i < n; ++i) {
        S s;
        std::memcpy(&s, src + i * static_cast<int64_t>(sizeof(S)), sizeof(S));
        dst[i] = convert<T>(s);
    }
}

}  // namespace

int64_t NpyArray::size() const {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    return n;
}

template <class T>
std::vector<T> NpyArray::as() const {
    const int64_t n = size();
    KS_ASSERT(static_cast<int64_t>(bytes.size()) == n * static_cast<int64_t>(dtype_size(dtype)),
              "NpyArray bytes do not match its shape");
    std::vector<T> out(static_cast<std::size_t>(n));
    const char* src = bytes.data();
    switch (dtype) {
        case Dtype::int8: convert_all<T, int8_t>(src, n, out.data()); break;
        case Dtype::uint8: convert_all<T, uint8_t>(src, n, out.data()); break;
        case Dtype::int16: convert_all<T, int16_t>(src, n, out.data()); break;
        case Dtype::uint16: convert_all<T, uint16_t>(src, n, out.data()); break;
        case Dtype::int32: convert_all<T, int32_t>(src, n, out.data()); break;
        case Dtype::uint32: convert_all<T, uint32_t>(src, n, out.data()); break;
        case Dtype::int64: convert_all<T, int64_t>(src, n, out.data()); break;
        case Dtype::uint64: convert_all<T, uint64_t>(src, n, out.data()); break;
        case Dtype::float32: convert_all<T, float>(src, n, out.data()); break;
        case Dtype::float64: convert_all<T, double>(src, n, out.data()); break;
        case Dtype::bool_:  // any non-zero byte is True, as in numpy
            for (int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<T>(src[i] != 0 ? 1 : 0);
            break;
        case Dtype::float16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t h;
                std::memcpy(&h, src + 2 * i, 2);
                out[static_cast<std::size_t>(i)] = convert<T>(half_to_float(h));
            }
            break;
    }
    return out;
}

template std::vector<float> NpyArray::as<float>() const;
template std::vector<double> NpyArray::as<double>() const;
template std::vector<int8_t> NpyArray::as<int8_t>() const;
template std::vector<uint8_t> NpyArray::as<uint8_t>() const;
template std::vector<int16_t> NpyArray::as<int16_t>() const;
template std::vector<uint16_t> NpyArray::as<uint16_t>() const;
template std::vector<int32_t> NpyArray::as<int32_t>() const;
template std::vector<uint32_t> NpyArray::as<uint32_t>() const;
template std::vector<int64_t> NpyArray::as<int64_t>() const;
template std::vector<uint64_t> NpyArray::as<uint64_t>() const;

namespace {

// Reads and checks the header; leaves `src` at the first data byte. Returns the data size in bytes.
int64_t read_header(Source& src, const std::string& path, NpyArray& a) {
    unsigned char pre[12];
    const std::size_t got = src.read(pre, 10);
    if (got < 8 || std::memcmp(pre, kMagic, kMagicLen) != 0)
        bad(path, "not a .npy file (it does not start with \"\\x93NUMPY\")");
    const int major = pre[6], minor = pre[7];
    if (minor != 0 || major < 1 || major > 3)
        bad(path, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                      "; expected 1.0, 2.0 or 3.0");
    // Version 1.0 has a 2-byte header length, 2.0 and 3.0 a 4-byte one.
    const std::size_t prefix = major == 1 ? 10 : 12;
    if (got < 10 || (prefix == 12 && src.read(pre + 10, 2) < 2)) bad(path, "truncated .npy header");
    std::size_t header_len = pre[8] | (pre[9] << 8);
    if (prefix == 12) header_len |= static_cast<std::size_t>(pre[10]) << 16 | static_cast<std::size_t>(pre[11]) << 24;
    if (header_len > kMaxHeaderLen)
        bad(path, "malformed .npy header (header length " + std::to_string(header_len) + " bytes is implausible)");
    std::string text(header_len, '\0');
    if (src.read(text.data(), header_len) < header_len)
        bad(path, "truncated .npy header (the file ends before the " + std::to_string(header_len) + " header bytes it announces)");

    const Header h = HeaderParser(text, path).parse();
    a.dtype = parse_dtype(h.descr, path);
    if (h.fortran_order)
        bad(path, "fortran_order True is not supported; save a C-ordered array (np.ascontiguousarray)");
    a.shape = h.shape;
    const int64_t n_bytes = data_bytes(a.dtype, a.shape);
    if (n_bytes < 0) bad(path, "malformed .npy header (shape " + shape_text(a.shape) + " is too large)");

    // Compare with the recorded size first: a clear message, and no huge allocation for a bad header.
    const int64_t expected = static_cast<int64_t>(prefix + header_len) + n_bytes;
    const int64_t actual = src.content_size();
    const std::string what = std::string(dtype_name(a.dtype)) + " " + shape_text(a.shape);
    if (actual >= 0 && actual < expected)
        bad(path, "truncated: " + std::to_string(actual - static_cast<int64_t>(prefix + header_len)) +
                      " bytes of data, the header says " + std::to_string(n_bytes) + " (" + what + ")");
    if (actual > expected)
        bad(path, std::to_string(actual - expected) + " extra bytes after the data of " + what);
    return n_bytes;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
    Source src(path);
    NpyArray a;
    const int64_t n_bytes = read_header(src, path, a);
    const std::string what = std::string(dtype_name(a.dtype)) + " " + shape_text(a.shape);
    try {
        a.bytes.resize(static_cast<std::size_t>(n_bytes));
    } catch (const std::bad_alloc&) {
        throw Error(Exit::resources, path + ": out of memory for " + std::to_string(n_bytes) + " bytes (" + what + ")");
    }
    const std::size_t data_got = src.read(a.bytes.data(), a.bytes.size());
    if (data_got < a.bytes.size())
        bad(path, "truncated: " + std::to_string(data_got) + " bytes of data, the header says " +
                      std::to_string(n_bytes) + " (" + what + ")");
    char extra;
    if (src.read(&extra, 1) > 0) bad(path, "extra bytes after the data of " + what);
    src.finish();
    return a;
}

struct NpyRowReader::Impl {
    explicit Impl(const std::string& p) : path(p), src(p) {}
    std::string path;
    Source src;
    int64_t row_bytes = 0;
};

NpyRowReader::NpyRowReader(const std::string& path) : impl_(new Impl(path)) {
    try {
        NpyArray a;
        const int64_t n_bytes = read_header(impl_->src, path, a);
        dtype_ = a.dtype;
        shape_ = a.shape;
        rows_ = shape_.empty() ? 1 : shape_[0];
        impl_->row_bytes = rows_ > 0 ? n_bytes / rows_ : 0;
    } catch (...) {
        delete impl_;
        throw;
    }
}

NpyRowReader::~NpyRowReader() { delete impl_; }

int64_t NpyRowReader::read(void* out, int64_t max_rows) {
    const int64_t n = std::min(max_rows, rows_ - done_);
    if (n <= 0) return 0;
    const std::size_t want = static_cast<std::size_t>(n * impl_->row_bytes);
    if (impl_->src.read(out, want) < want)
        bad(impl_->path, "truncated: the data end before the " + std::to_string(rows_) + " rows the header announces");
    done_ += n;
    return n;
}

NpyArray read_npy_checked(const std::string& path, Dtype dtype, int ndim) {
    NpyArray a = read_npy(path);
    if (a.dtype != dtype)
        bad(path, std::string("dtype is ") + dtype_name(a.dtype) + ", expected " + dtype_name(dtype));
    if (ndim >= 0 && static_cast<int>(a.shape.size()) != ndim)
        bad(path, "shape " + shape_text(a.shape) + " has " + std::to_string(a.shape.size()) + " dimensions, expected " +
                      std::to_string(ndim));
    return a;
}

std::string npy_header(Dtype dtype, const std::vector<int64_t>& shape) { return header_text(dtype, shape, 0); }

void write_npy(const std::string& path, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
               int zstd_level) {
    for (const int64_t d : shape) KS_ASSERT(d >= 0, path + ": negative dimension in " + shape_text(shape));
    const int64_t n_bytes = data_bytes(dtype, shape);
    KS_ASSERT(n_bytes >= 0, path + ": shape " + shape_text(shape) + " overflows");
    KS_ASSERT(data || n_bytes == 0, path + ": no data");
    const std::string header = npy_header(dtype, shape);
    Sink sink(path, zstd_level, header.size() + static_cast<uint64_t>(n_bytes));
    sink.write(header.data(), header.size());
    sink.write(data, static_cast<std::size_t>(n_bytes));
    sink.commit();
}

struct NpyRowWriter::Impl {
    explicit Impl(const std::string& path) : out(path) {}
    OutputFile out;
    Dtype dtype = Dtype::float32;
    std::vector<int64_t> row_shape;
    std::size_t row_bytes = 0;
    std::size_t dict_len = 0;  // reserved: the dict for the largest possible row count

    std::string header(int64_t rows) const {
        std::vector<int64_t> shape{rows};
        shape.insert(shape.end(), row_shape.begin(), row_shape.end());
        return header_text(dtype, shape, dict_len);
    }
};

NpyRowWriter::NpyRowWriter(const std::string& path, Dtype dtype, std::vector<int64_t> row_shape) {
    KS_ASSERT(!ends_with(path, ".zst"), path + ": NpyRowWriter writes plain .npy only");
    const int64_t row_bytes = data_bytes(dtype, row_shape);
    KS_ASSERT(row_bytes >= 0, path + ": row shape overflows");
    std::vector<int64_t> largest{std::numeric_limits<int64_t>::max()};
    largest.insert(largest.end(), row_shape.begin(), row_shape.end());
    impl_ = new Impl(path);
    impl_->dtype = dtype;
    impl_->row_bytes = static_cast<std::size_t>(row_bytes);
    impl_->dict_len = dict_text(dtype, largest).size();
    impl_->row_shape = std::move(row_shape);
    try {
        impl_->out.write(impl_->header(0));
    } catch (...) {
        delete impl_;
        throw;
    }
}

NpyRowWriter::~NpyRowWriter() { delete impl_; }

void NpyRowWriter::append(const void* rows, int64_t n_rows) {
    KS_ASSERT(n_rows >= 0 && (rows || n_rows == 0), impl_->out.path() + ": bad append");
    impl_->out.write(rows, static_cast<std::size_t>(n_rows) * impl_->row_bytes);
    rows_ += n_rows;
}

void NpyRowWriter::commit() {
    const std::string header = impl_->header(rows_);
    impl_->out.seek(0);
    impl_->out.write(header);
    impl_->out.commit();
}

}  // namespace ks
