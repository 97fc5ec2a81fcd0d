// Raw recordings: flat interleaved binary files (formats/recording.md), Kilosort4's file model
// (kilosort4-algorithm.md section 1). Reads go through pread on one descriptor, so concurrent
// const reads share no file offset and need no lock.
#include "ks/recording.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks {
namespace {

// Bytes read per pread: large enough for sequential throughput, small enough that a read of
// any length stays within a few MB beyond its output.
constexpr int64_t kChunkBytes = int64_t(1) << 20;
// Samples converted per tile: a tile of rows (385 x 2 bytes x 256 = 197 KB) stays in L2 while
// every channel is gathered from it.
constexpr int64_t kTileSamples = 256;

// Closes a descriptor unless released, so a constructor that throws leaks nothing.
class FdHolder {
public:
    explicit FdHolder(int fd) : fd_(fd) {}
    ~FdHolder() {
        if (fd_ >= 0) ::close(fd_);
    }
    FdHolder(const FdHolder&) = delete;
    FdHolder& operator=(const FdHolder&) = delete;
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }

private:
    int fd_;
};

// Reads exactly `bytes` at `offset`, retrying short reads. A file that ends early was truncated
// after it was opened (its size was checked then).
void pread_full(int fd, void* dst, int64_t bytes, int64_t offset, const std::string& path) {
    auto* p = static_cast<unsigned char*>(dst);
    while (bytes > 0) {
        const ssize_t r = ::pread(fd, p, static_cast<size_t>(bytes), static_cast<off_t>(offset));
        if (r < 0) {
            if (errno == EINTR) continue;
            throw Error(Exit::resources, errno_message(path + ": read failed at byte " + std::to_string(offset)));
        }
        if (r == 0) {
            throw Error(Exit::usage, log::format("%s: file ends at byte %lld, before the size it had when opened; "
                                                 "was it truncated while being read?",
                                                 path.c_str(), static_cast<long long>(offset)));
        }
        p += r;
        bytes -= r;
        offset += r;
    }
}

bool supported_dtype(Dtype d) {
    return d == Dtype::int16 || d == Dtype::uint16 || d == Dtype::int32 || d == Dtype::float32;
}

// Kilosort4's conversion, step by step in float32 as it does: (float(x) - offset) * scale + shift,
// then * sign. With scale and shift off (1 and 0) the steps are exact, so they need no branches.
struct Conversion {
    float offset = 0;  // 32768 for uint16
    float scale = 1;
    float shift = 0;
    float sign = 1;    // -1 with invert_sign
};

// Converts `m` samples of interleaved rows `buf` (m x n_chan_bin) into out[c * ld + col0 + t]
// for the selected rows.
template <class T>
void gather_convert(const T* buf, int64_t m, int n_chan_bin, const std::vector<int>& rows, float* out,
                    int64_t ld, int64_t col0, const Conversion& cv) {
    const int n_rows = static_cast<int>(rows.size());
    for (int64_t t_tile = 0; t_tile < m; t_tile += kTileSamples) {
        const int64_t t_end = std::min(m, t_tile + kTileSamples);
        for (int c = 0; c < n_rows; ++c) {
            const T* src = buf + rows[c];
            float* dst = out + static_cast<int64_t>(c) * ld + col0;
            for (int64_t t = t_tile; t < t_end; ++t) {
                const float v = (static_cast<float>(src[t * n_chan_bin]) - cv.offset) * cv.scale + cv.shift;
                dst[t] = v * cv.sign;
            }
        }
    }
}

}  // namespace

int64_t BatchLayout::batch_length(int64_t b) const {
    KS_ASSERT(b >= 0 && b < n_batches(), "batch index out of range");
    return std::min(batch_size, n_samples - b * batch_size);
}

Recording::Recording(const std::string& path, const Settings& settings, const Probe& probe) : probe_(probe) {
    info_.path = path;
    if (settings.is_none("n_chan_bin")) {
        throw Error(Exit::usage,
                    "setting n_chan_bin is required (number of channels in the file), e.g. --set n_chan_bin=385; "
                    "SpikeGLX .meta or Open Ephys structure.oebin beside the file would supply it");
    }
    const int64_t n_chan_bin = settings.get_int("n_chan_bin");
    if (n_chan_bin < 1) {
        throw Error(Exit::usage, log::format("setting n_chan_bin: %lld channels is out of range; expected 1 or more "
                                             "(the number of rows per sample in %s)",
                                             static_cast<long long>(n_chan_bin), path.c_str()));
    }
    info_.n_chan_bin = static_cast<int>(n_chan_bin);
    info_.dtype = parse_dtype(settings.get_string("data_dtype"), "setting data_dtype");
    if (!supported_dtype(info_.dtype)) {
        throw Error(Exit::usage, std::string("setting data_dtype: ") + dtype_name(info_.dtype) +
                                     " is not supported for recordings; expected int16, uint16, int32 or float32");
    }
    info_.fs = settings.get_float("fs");
    if (!(info_.fs > 0) || !std::isfinite(info_.fs)) {
        throw Error(Exit::usage, log::format("setting fs: %g Hz; expected a positive sampling rate", info_.fs));
    }

    FdHolder fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw Error(Exit::usage, errno_message(path + ": cannot open the recording"));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw Error(Exit::usage, errno_message(path + ": cannot stat the recording"));
    if (S_ISDIR(st.st_mode)) {
        throw Error(Exit::usage, path + ": is a directory; expected a raw binary recording file");
    }
    if (!S_ISREG(st.st_mode)) {
        throw Error(Exit::usage, path + ": not a regular file; the recording is read at random offsets");
    }
    const int64_t size = static_cast<int64_t>(st.st_size);
    const int64_t itemsize = static_cast<int64_t>(dtype_size(info_.dtype));
    const int64_t row_bytes = n_chan_bin * itemsize;
    if (size == 0) {
        throw Error(Exit::usage, log::format("%s: file is empty (0 bytes); expected samples of %lld channels x "
                                             "%lld bytes (%s)",
                                             path.c_str(), static_cast<long long>(n_chan_bin),
                                             static_cast<long long>(itemsize), dtype_name(info_.dtype)));
    }
    if (size % row_bytes != 0) {
        throw Error(Exit::usage, log::format("%s: %lld bytes is not a whole number of samples of %lld channels x "
                                             "%lld bytes (%s); is n_chan_bin right?",
                                             path.c_str(), static_cast<long long>(size),
                                             static_cast<long long>(n_chan_bin), static_cast<long long>(itemsize),
                                             dtype_name(info_.dtype)));
    }
    info_.n_samples_file = size / row_bytes;
    probe_.check_fits(info_.n_chan_bin, path);

    // Time range as Kilosort4 computes it (int() truncates); compared as doubles before any
    // cast so absurd tmin/tmax cannot overflow.
    const double tmin = settings.get_float("tmin");
    const double tmax = settings.get_float("tmax");
    const int64_t n_file = info_.n_samples_file;
    const double file_s = static_cast<double>(n_file) / info_.fs;
    if (!(tmin < tmax)) {
        throw Error(Exit::usage, log::format("settings tmin, tmax: tmin (%g s) must be less than tmax (%g s)",
                                             tmin, tmax));
    }
    const double imin_d = std::trunc(tmin * info_.fs);
    if (imin_d >= static_cast<double>(n_file)) {
        throw Error(Exit::usage, log::format("setting tmin: %g s is at or beyond the end of %s (%g s, %lld samples "
                                             "at %g Hz)",
                                             tmin, path.c_str(), file_s, static_cast<long long>(n_file), info_.fs));
    }
    info_.imin = imin_d > 0 ? static_cast<int64_t>(imin_d) : 0;
    if (std::isinf(tmax)) {
        info_.imax = n_file;
    } else {
        const double imax_d = std::trunc(tmax * info_.fs);
        info_.imax = imax_d >= static_cast<double>(n_file) ? n_file
                     : imax_d <= 0                          ? 0
                                                            : static_cast<int64_t>(imax_d);
    }
    if (info_.imax <= info_.imin) {
        throw Error(Exit::usage, log::format("settings tmin, tmax: [%g, %g) s holds no samples of %s at %g Hz",
                                             tmin, tmax, path.c_str(), info_.fs));
    }

    scale_ = settings.is_none("scale") ? 1.0 : settings.get_float("scale");
    shift_ = settings.is_none("shift") ? 0.0 : settings.get_float("shift");
    invert_ = settings.get_bool("invert_sign");
    fd_ = fd.release();
    log::debug("%s: %lld samples x %d channels (%s) at %g Hz; sorting samples [%lld, %lld) on %d probe channels",
               path.c_str(), static_cast<long long>(n_file), info_.n_chan_bin, dtype_name(info_.dtype), info_.fs,
               static_cast<long long>(info_.imin), static_cast<long long>(info_.imax), probe_.n_chan());
}

Recording::~Recording() {
    if (fd_ >= 0) ::close(fd_);
}

Recording::Recording(Recording&& o) noexcept
    : info_(std::move(o.info_)),
      probe_(std::move(o.probe_)),
      scale_(o.scale_),
      shift_(o.shift_),
      invert_(o.invert_),
      fd_(std::exchange(o.fd_, -1)) {}

Recording& Recording::operator=(Recording&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        info_ = std::move(o.info_);
        probe_ = std::move(o.probe_);
        scale_ = o.scale_;
        shift_ = o.shift_;
        invert_ = o.invert_;
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

namespace {

// Samples [s0, s0 + m) of the sorted range (inside it) into out[c * ld + col0 + t].
template <class T>
void read_converted(int fd, const RecordingInfo& info, const std::vector<int>& rows, int64_t s0, int64_t m,
                    float* out, int64_t ld, int64_t col0, const Conversion& cv) {
    const int64_t row_bytes = static_cast<int64_t>(info.n_chan_bin) * static_cast<int64_t>(sizeof(T));
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(m, kChunkBytes / row_bytes));
    std::vector<T> buf(static_cast<size_t>(chunk * info.n_chan_bin));
    for (int64_t done = 0; done < m; done += chunk) {
        const int64_t k = std::min(chunk, m - done);
        pread_full(fd, buf.data(), k * row_bytes, (info.imin + s0 + done) * row_bytes, info.path);
        gather_convert(buf.data(), k, info.n_chan_bin, rows, out, ld, col0 + done, cv);
    }
}

}  // namespace

void Recording::read(int64_t t0, int64_t n, float* out) const {
    KS_ASSERT(n >= 0, "negative sample count");
    KS_ASSERT(fd_ >= 0, "read from a moved-from Recording");
    const int64_t C = probe_.n_chan();
    if (n == 0 || C == 0) return;
    const int64_t N = n_samples();
    Conversion cv;
    if (info_.dtype == Dtype::uint16) cv.offset = 32768.0f;
    cv.scale = static_cast<float>(scale_);
    cv.shift = static_cast<float>(shift_);
    cv.sign = invert_ ? -1.0f : 1.0f;

    // The part of [t0, t0 + n) inside [0, N); when there is none, the one edge sample that
    // every column repeats.
    int64_t a = std::max<int64_t>(t0, 0);
    int64_t b = std::min<int64_t>(t0 + n, N);
    int64_t col_a = a - t0;
    if (a >= b) {
        a = (t0 + n <= 0) ? 0 : N - 1;
        b = a + 1;
        col_a = 0;
    }
    const auto& rows = probe_.chanMap;
    switch (info_.dtype) {
        case Dtype::int16: read_converted<int16_t>(fd_, info_, rows, a, b - a, out, n, col_a, cv); break;
        case Dtype::uint16: read_converted<uint16_t>(fd_, info_, rows, a, b - a, out, n, col_a, cv); break;
        case Dtype::int32: read_converted<int32_t>(fd_, info_, rows, a, b - a, out, n, col_a, cv); break;
        case Dtype::float32: read_converted<float>(fd_, info_, rows, a, b - a, out, n, col_a, cv); break;
        default: KS_ASSERT(false, "unsupported dtype survived the constructor");
    }
    // Edge replication (Kilosort4's padding): columns before the data repeat its first column,
    // columns after it its last.
    const int64_t col_b = col_a + (b - a);  // one past the last filled column
    for (int64_t c = 0; c < C; ++c) {
        float* row = out + c * n;
        std::fill(row, row + col_a, row[col_a]);
        std::fill(row + col_b, row + n, row[col_b - 1]);
    }
}

void Recording::read_batch(const BatchLayout& layout, int64_t b, std::vector<float>& out) const {
    const int64_t len = layout.batch_length(b) + 2 * layout.pad;
    out.resize(static_cast<size_t>(probe_.n_chan()) * static_cast<size_t>(len));
    read(layout.batch_start(b) - layout.pad, len, out.data());
}

void Recording::read_raw(int64_t file_t0, int64_t n, void* out) const {
    KS_ASSERT(fd_ >= 0, "read from a moved-from Recording");
    KS_ASSERT(file_t0 >= 0 && n >= 0 && file_t0 <= info_.n_samples_file - n, "raw read outside the file");
    const int64_t row_bytes = static_cast<int64_t>(info_.n_chan_bin) * static_cast<int64_t>(dtype_size(info_.dtype));
    pread_full(fd_, out, n * row_bytes, file_t0 * row_bytes, info_.path);
}

}  // namespace ks
