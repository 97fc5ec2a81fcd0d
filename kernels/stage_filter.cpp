// ks-filter's stage driver: reads the raw recording (a file or a stream) batch by batch, runs the
// filter kernels, applies the artifact test, stores float16 and writes the stage's records.
#include "ks/stages/filter.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/output_file.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"
#include "ks/recording.hpp"

namespace ks::filter {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kUnknown = -1;
// Stands for "more samples than any block asks for" while a stream's length is not known yet.
constexpr int64_t kOpenEnd = int64_t(1) << 60;

// Where raw samples come from. Sample indices are relative to imin (the sorted range); fetch
// fills samples outside [0, n_samples) with copies of the edge samples.
class RawSource {
public:
    virtual ~RawSource() = default;
    virtual int64_t n_samples() const = 0;               // kUnknown while a stream is open
    virtual void ensure(int64_t t_end) = 0;              // make samples < t_end available if they exist
    virtual void fetch(int64_t t0, int64_t n, unsigned char* out) = 0;
    virtual void release_before(int64_t) {}              // samples < t are no longer needed
    virtual FileIdentity identity() const = 0;
    virtual std::string name() const = 0;
    int64_t row_bytes() const { return static_cast<int64_t>(n_chan_bin) * static_cast<int64_t>(dtype_size(dtype)); }

    Dtype dtype = Dtype::int16;
    int n_chan_bin = 0;
    double fs = 30000;
    int64_t imin = 0;
    float scale = 1, shift = 0;
    bool invert = false;
};

class FileSource : public RawSource {
public:
    FileSource(const std::string& path, const Settings& settings, const Probe& probe)
        : rec_(path, settings, probe), path_(path) {
        const RecordingInfo& ri = rec_.info();
        dtype = ri.dtype;
        n_chan_bin = ri.n_chan_bin;
        fs = ri.fs;
        imin = ri.imin;
    }
    int64_t n_samples() const override { return rec_.n_samples(); }
    void ensure(int64_t) override {}
    void fetch(int64_t t0, int64_t n, unsigned char* out) override {
        const int64_t N = rec_.n_samples(), rb = row_bytes();
        const int64_t lo = std::max<int64_t>(t0, 0), hi = std::min<int64_t>(t0 + n, N);
        if (lo >= hi) {  // entirely outside the range: copies of one edge sample
            std::vector<unsigned char> row(static_cast<size_t>(rb));
            rec_.read_raw(imin + (t0 + n <= 0 ? 0 : N - 1), 1, row.data());
            for (int64_t t = 0; t < n; ++t) std::memcpy(out + t * rb, row.data(), static_cast<size_t>(rb));
            return;
        }
        rec_.read_raw(imin + lo, hi - lo, out + (lo - t0) * rb);
        for (int64_t t = t0; t < lo; ++t) std::memcpy(out + (t - t0) * rb, out + (lo - t0) * rb, static_cast<size_t>(rb));
        for (int64_t t = hi; t < t0 + n; ++t) std::memcpy(out + (t - t0) * rb, out + (hi - 1 - t0) * rb, static_cast<size_t>(rb));
    }
    FileIdentity identity() const override { return file_identity(path_); }
    std::string name() const override { return path_; }

private:
    Recording rec_;
    std::string path_;
};

// Several files of one acquisition sorted as one recording (SpikeLab's concatenation): the files'
// samples one after the other, tmin/tmax counted on the whole. Each file is checked as a recording
// of its own (size, dtype, channel count).
class ConcatSource : public RawSource {
public:
    ConcatSource(const std::vector<std::string>& paths, const Settings& settings, const Probe& probe) : paths_(paths) {
        Settings whole(settings);
        whole.set_from_string("tmin=0");
        whole.set_from_string("tmax=inf");
        for (const auto& p : paths) {
            recs_.emplace_back(p, whole, probe);
            const RecordingInfo& ri = recs_.back().info();
            if (recs_.size() == 1) {
                dtype = ri.dtype;
                n_chan_bin = ri.n_chan_bin;
                fs = ri.fs;
            }
            starts_.push_back(total_);
            total_ += ri.n_samples_file;
        }
        const double tmin = settings.get_float("tmin"), tmax = settings.get_float("tmax");
        imin = std::clamp<int64_t>(static_cast<int64_t>(std::llround(std::max(0.0, tmin) * fs)), 0, total_);
        imax_ = std::isinf(tmax) ? total_ : std::clamp<int64_t>(static_cast<int64_t>(std::llround(tmax * fs)), 0, total_);
        if (imax_ <= imin)
            throw Error(Exit::usage, "settings tmin/tmax: the sorted range [" + std::to_string(imin) + ", " + std::to_string(imax_) +
                                         ") of the " + std::to_string(paths.size()) + " files (" + std::to_string(total_) +
                                         " samples) is empty");
    }
    int64_t n_samples() const override { return imax_ - imin; }
    void ensure(int64_t) override {}
    void fetch(int64_t t0, int64_t n, unsigned char* out) override {
        const int64_t N = n_samples(), rb = row_bytes();
        const int64_t lo = std::clamp<int64_t>(t0, 0, N), hi = std::clamp<int64_t>(t0 + n, 0, N);
        if (lo >= hi) {
            read_rows(t0 + n <= 0 ? 0 : N - 1, 1, out);
            for (int64_t t = 1; t < n; ++t) std::memcpy(out + t * rb, out, static_cast<size_t>(rb));
            return;
        }
        read_rows(lo, hi - lo, out + (lo - t0) * rb);
        for (int64_t t = t0; t < lo; ++t) std::memcpy(out + (t - t0) * rb, out + (lo - t0) * rb, static_cast<size_t>(rb));
        for (int64_t t = hi; t < t0 + n; ++t) std::memcpy(out + (t - t0) * rb, out + (hi - 1 - t0) * rb, static_cast<size_t>(rb));
    }
    FileIdentity identity() const override { return files_identity(paths_); }
    std::string name() const override { return paths_[0] + " (+" + std::to_string(paths_.size() - 1) + " files)"; }
    // Each file's first sample on the concatenated timeline (before tmin) and its length.
    const std::vector<int64_t>& starts() const { return starts_; }
    int64_t file_samples(size_t k) const { return recs_[k].info().n_samples_file; }

private:
    // Rows [t, t + n) of the sorted range, across file boundaries.
    void read_rows(int64_t t, int64_t n, unsigned char* out) const {
        int64_t g = imin + t;
        const int64_t rb = row_bytes();
        while (n > 0) {
            size_t k = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), g) - starts_.begin()) - 1;
            const int64_t in_file = std::min(n, starts_[k] + recs_[k].info().n_samples_file - g);
            recs_[k].read_raw(g - starts_[k], in_file, out);
            out += in_file * rb;
            g += in_file;
            n -= in_file;
        }
    }
    std::vector<std::string> paths_;
    std::vector<Recording> recs_;
    std::vector<int64_t> starts_;
    int64_t total_ = 0, imax_ = 0;
};

// Raw samples from a pipe or terminal, read ahead as far as the driver asks and kept until it
// releases them. The identity hashes the bytes read in 1 MiB blocks (formats/filtered.md).
class StreamSource : public RawSource {
public:
    StreamSource(int fd, const Settings& settings, const Probe& probe) : fd_(fd) {
        if (settings.is_none("n_chan_bin"))
            throw Error(Exit::usage, "setting n_chan_bin is required when reading standard input, e.g. --set n_chan_bin=385");
        const int64_t nc = settings.get_int("n_chan_bin");
        if (nc < 1) throw Error(Exit::usage, "setting n_chan_bin: expected 1 or more channels");
        n_chan_bin = static_cast<int>(nc);
        dtype = parse_dtype(settings.get_string("data_dtype"), "setting data_dtype");
        if (dtype != Dtype::int16 && dtype != Dtype::uint16 && dtype != Dtype::int32 && dtype != Dtype::float32)
            throw Error(Exit::usage, std::string("setting data_dtype: ") + dtype_name(dtype) +
                                         " is not supported for recordings; expected int16, uint16, int32 or float32");
        fs = settings.get_float("fs");
        probe.check_fits(n_chan_bin, "standard input");
        const double tmin = settings.get_float("tmin"), tmax = settings.get_float("tmax");
        if (!(tmin < tmax))
            throw Error(Exit::usage, log::format("settings tmin, tmax: tmin (%g s) must be less than tmax (%g s)", tmin, tmax));
        imin = static_cast<int64_t>(std::trunc(tmin * fs));
        if (!std::isinf(tmax)) {
            const double imax_d = std::trunc(tmax * fs);
            limit_ = imax_d <= static_cast<double>(imin) ? 0 : static_cast<int64_t>(imax_d) - imin;
            if (limit_ == 0)
                throw Error(Exit::usage, log::format("settings tmin, tmax: [%g, %g) s holds no samples at %g Hz", tmin, tmax, fs));
        }
        skip_bytes_ = imin * row_bytes();
    }

    int64_t n_samples() const override { return n_; }

    void ensure(int64_t t_end) override {
        const int64_t rb = row_bytes();
        while (n_ == kUnknown && win_t0_ + win_n_ < t_end) {
            // buf_ is storage; filled_ bytes of it hold samples from win_t0_ on (the last one
            // perhaps incomplete). It grows only when a read needs the room.
            const int64_t need = (t_end - win_t0_) * rb;
            if (static_cast<int64_t>(buf_.size()) < need)
                buf_.resize(static_cast<size_t>(std::max<int64_t>(need, 2 * static_cast<int64_t>(buf_.size()))));
            const int64_t got = read_some(buf_.data() + filled_, static_cast<int64_t>(buf_.size()) - filled_);
            if (got == 0) {
                finish_stream();
                break;
            }
            filled_ += got;
            win_n_ = filled_ / rb;
            if (limit_ >= 0 && win_t0_ + win_n_ >= limit_) {  // tmax reached: the rest is not read
                win_n_ = limit_ - win_t0_;
                filled_ = win_n_ * rb;
                n_ = limit_;
            }
        }
    }

    void fetch(int64_t t0, int64_t n, unsigned char* out) override {
        const int64_t rb = row_bytes();
        for (int64_t t = t0; t < t0 + n; ++t) {
            int64_t s = std::max<int64_t>(t, 0);
            if (n_ != kUnknown) s = std::min(s, n_ - 1);
            KS_ASSERT(s >= win_t0_ && s < win_t0_ + win_n_, "stream sample not buffered");
            std::memcpy(out + (t - t0) * rb, buf_.data() + (s - win_t0_) * rb, rb);
        }
    }

    void release_before(int64_t t) override {
        // Keep sample 0 while a block may still need edge copies of it, and the last sample.
        int64_t keep = std::max<int64_t>(t, 0);
        if (n_ != kUnknown) keep = std::min(keep, n_ - 1);
        if (keep <= win_t0_) return;
        const int64_t drop = std::min(keep - win_t0_, win_n_);
        const int64_t rb = row_bytes();
        std::memmove(buf_.data(), buf_.data() + drop * rb, static_cast<size_t>(filled_ - drop * rb));
        filled_ -= drop * rb;
        win_t0_ += drop;
        win_n_ -= drop;
    }

    FileIdentity identity() const override {
        FileIdentity id;
        id.path = "-";
        id.size = bytes_read_;
        id.hash = hex64(pending_.empty() ? hash_ : hash64(pending_.data(), pending_.size(), hash_));
        id.sampled = false;
        return id;
    }
    std::string name() const override { return "standard input"; }

private:
    // Reads up to `want` bytes of samples (after skipping tmin's bytes); 0 at end of input.
    int64_t read_some(unsigned char* dst, int64_t want) {
        while (true) {
            unsigned char* p = dst;
            int64_t cap = want;
            std::vector<unsigned char> skip;
            if (skip_bytes_ > 0) {
                skip.resize(static_cast<size_t>(std::min<int64_t>(skip_bytes_, int64_t(1) << 20)));
                p = skip.data();
                cap = static_cast<int64_t>(skip.size());
            }
            const ssize_t r = ::read(fd_, p, static_cast<size_t>(cap));
            if (r < 0) {
                if (errno == EINTR) continue;
                throw Error(Exit::resources, errno_message("standard input: read failed"));
            }
            add_to_hash(p, r);
            if (r == 0) return 0;
            if (skip_bytes_ > 0) {
                skip_bytes_ -= r;
                skipped_ += r;
                continue;
            }
            return r;
        }
    }

    void add_to_hash(const unsigned char* p, int64_t n) {
        bytes_read_ += n;
        constexpr size_t kBlock = size_t(1) << 20;
        pending_.insert(pending_.end(), p, p + n);
        size_t at = 0;
        for (; pending_.size() - at >= kBlock; at += kBlock) hash_ = hash64(pending_.data() + at, kBlock, hash_);
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(at));
    }

    void finish_stream() {
        const int64_t rb = row_bytes();
        const int64_t total_bytes = skipped_ + (win_t0_ * rb) + filled_;
        if (skip_bytes_ > 0 || (imin > 0 && total_bytes <= imin * rb))
            throw Error(Exit::usage, log::format("setting tmin: %g s is at or beyond the end of standard input (%lld samples "
                                                 "at %g Hz)",
                                                 static_cast<double>(imin) / fs,
                                                 static_cast<long long>(total_bytes / rb), fs));
        if (filled_ % rb != 0)
            throw Error(Exit::usage, log::format("standard input: %lld bytes is not a whole number of samples of %d "
                                                 "channels x %zu bytes (%s); is n_chan_bin right?",
                                                 static_cast<long long>(total_bytes), n_chan_bin, dtype_size(dtype),
                                                 dtype_name(dtype)));
        win_n_ = filled_ / rb;
        n_ = win_t0_ + win_n_;
        if (n_ == 0) throw Error(Exit::usage, "standard input: no samples (empty input)");
    }

    int fd_;
    int64_t limit_ = -1;          // imax - imin when tmax is finite
    int64_t skip_bytes_ = 0, skipped_ = 0;
    std::vector<unsigned char> buf_;
    int64_t filled_ = 0;
    int64_t win_t0_ = 0, win_n_ = 0;
    int64_t n_ = kUnknown;
    int64_t bytes_read_ = 0;
    uint64_t hash_ = 0;
    std::vector<unsigned char> pending_;
};

// One background thread running submitted jobs one at a time; a job's exception is rethrown
// by the next submit() or wait(). The destructor waits, so no job outlives the buffers it uses.
class Worker {
public:
    Worker() : thread_([this] { loop(); }) {}
    ~Worker() {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            done_cv_.wait(lock, [this] { return !busy_; });
            stop_ = true;
        }
        job_cv_.notify_one();
        thread_.join();
    }
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    void submit(std::function<void()> job) {
        wait();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = std::move(job);
            busy_ = true;
        }
        job_cv_.notify_one();
    }
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        done_cv_.wait(lock, [this] { return !busy_; });
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

private:
    void loop() {
        std::unique_lock<std::mutex> lock(mutex_);
        while (true) {
            job_cv_.wait(lock, [this] { return busy_ || stop_; });
            if (stop_) return;
            std::function<void()> job = std::move(job_);
            lock.unlock();
            std::exception_ptr err;
            try {
                job();
            } catch (...) {
                err = std::current_exception();
            }
            lock.lock();
            if (err && !error_) error_ = err;
            busy_ = false;
            done_cv_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable job_cv_, done_cv_;
    std::function<void()> job_;
    bool busy_ = false, stop_ = false;
    std::exception_ptr error_;
    std::thread thread_;  // last: started after the members it uses exist
};


// Reference groups: the channels of each shank (kcoords value, in order of first appearance).
// A shank of fewer than 3 channels gets no reference: the median of 1 channel is itself (and of 2
// the lower one), the mean of 1 or 2 is no better, so the reference would remove the signal.
struct Groups {
    std::vector<int> offsets{0}, channels;
    std::vector<int> skipped_shanks;
};

Groups make_groups(const Probe& probe, kernels::Reference ref) {
    Groups g;
    if (ref == kernels::Reference::none) return g;
    std::vector<int> order;
    std::map<int, std::vector<int>> by_shank;
    for (int c = 0; c < probe.n_chan(); ++c) {
        const int k = probe.kcoords.empty() ? 0 : probe.kcoords[static_cast<size_t>(c)];
        if (!by_shank.count(k)) order.push_back(k);
        by_shank[k].push_back(c);
    }
    for (const int k : order) {
        const auto& ch = by_shank[k];
        if (ch.size() < 3) {
            g.skipped_shanks.push_back(k);
            continue;
        }
        g.channels.insert(g.channels.end(), ch.begin(), ch.end());
        g.offsets.push_back(static_cast<int>(g.channels.size()));
    }
    return g;
}

// Raw float32 input must be finite: a NaN would spread through a whole block of the filter.
void check_finite_input(const unsigned char* raw, int64_t first_t, int64_t n, const RawSource& src,
                        const Probe& probe, int64_t row0) {
    for (int64_t t = 0; t < n; ++t) {
        const float* row = reinterpret_cast<const float*>(raw + (row0 + t) * src.row_bytes());
        for (int c = 0; c < probe.n_chan(); ++c) {
            const float v = row[probe.chanMap[static_cast<size_t>(c)]];
            if (!std::isfinite(v))
                throw Error(Exit::usage, log::format("%s: sample %lld, row %d is %s; expected finite float32 samples",
                                                     src.name().c_str(), static_cast<long long>(src.imin + first_t + t),
                                                     probe.chanMap[static_cast<size_t>(c)], std::isnan(v) ? "NaN" : "infinite"));
        }
    }
}

std::string join_ints(const std::vector<int64_t>& v, size_t max_n) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < max_n; ++i) s += (i ? "," : "") + std::to_string(v[i]);
    if (v.size() > max_n) s += ",...";
    return s;
}

}  // namespace

Params Params::from(const Settings& settings) {
    Params p;
    p.fs = settings.get_float("fs");
    p.batch_size = settings.get_int("batch_size");
    p.highpass_cutoff = settings.get_float("highpass_cutoff");
    p.reference = kernels::parse_reference(settings.get_string("common_reference"));
    p.artifact_threshold = settings.get_float("artifact_threshold");
    return p;
}

Summary run(const Inputs& in, Settings& settings, const Device& dev, const RunOptions& options) {
    if (in.rec.empty()) throw Error(Exit::usage, "--rec FILE is required (the raw recording; - for standard input)");
    if (options.work_dir.empty() && !options.stream_out)
        throw Error(Exit::usage, "nothing to write: give --work DIR (writes DIR/filter/) and/or --stdout");
    const bool from_stdin = in.rec == "-";
    RecordingMetadata meta;
    if (!from_stdin) {
        meta = find_recording_metadata(in.rec);
        apply_metadata(meta, settings);
    }
    std::string probe_spec = in.probe;
    if (probe_spec.empty()) {
        const std::string wp = options.work_dir.empty() ? "" : options.work_dir + "/probe.json";
        if (wp.empty() || !fs::exists(wp))
            throw Error(Exit::usage, "--probe P is required (a probe file or built-in name; or run ks-inspect --work first, "
                                     "which writes DIR/probe.json)");
        probe_spec = wp;
    }
    const Probe probe = Probe::load(probe_spec);
    if (!from_stdin) check_probe_against_metadata(meta, probe);

    const Params params = Params::from(settings);
    const kernels::HighpassDesign hp = kernels::design_highpass(params.fs, params.highpass_cutoff);
    std::unique_ptr<RawSource> src;
    std::vector<std::string> files = {in.rec};
    files.insert(files.end(), in.more_recs.begin(), in.more_recs.end());
    if (from_stdin && files.size() > 1) throw Error(Exit::usage, "--rec -: standard input is one recording; give files to concatenate");
    const ConcatSource* concat = nullptr;
    if (from_stdin) src = std::make_unique<StreamSource>(options.stdin_fd, settings, probe);
    else if (files.size() == 1) src = std::make_unique<FileSource>(in.rec, settings, probe);
    else {
        auto c = std::make_unique<ConcatSource>(files, settings, probe);
        concat = c.get();
        src = std::move(c);
    }
    src->scale = settings.is_none("scale") ? 1.0f : static_cast<float>(settings.get_float("scale"));
    src->shift = settings.is_none("shift") ? 0.0f : static_cast<float>(settings.get_float("shift"));
    src->invert = settings.get_bool("invert_sign");
    const FileIdentity input_id = from_stdin ? FileIdentity{} : src->identity();

    const int C = probe.n_chan();
    const Groups groups = make_groups(probe, params.reference);
    Summary sum;
    sum.n_channels = C;
    sum.imin = src->imin;
    sum.hp = hp;
    for (const int k : groups.skipped_shanks) {
        sum.unreferenced_shanks.push_back(k);
        int n = 0;
        for (int c = 0; c < C; ++c) n += (probe.kcoords.empty() ? 0 : probe.kcoords[static_cast<size_t>(c)]) == k;
        log::warn("shank %d has %d channel%s: no common reference there (a %s of fewer than 3 channels would remove "
                  "the signal itself)",
                  k, n, n == 1 ? "" : "s", kernels::reference_name(params.reference));
    }

    // Outputs. Stale results go first, the stage record before the data it vouches for, so a
    // failed or killed rerun never leaves a complete-looking stage.
    const std::string dir = options.work_dir.empty() ? "" : options.work_dir + "/filter";
    std::unique_ptr<OutputFile> bin;
    if (!dir.empty()) {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec) throw Error(Exit::usage, dir + ": cannot create: " + ec.message());
        remove_stale_output(dir + "/filter.json");
        remove_stale_output(dir + "/filtered.json");
        remove_stale_output(dir + "/filtered.bin");
        bin = std::make_unique<OutputFile>(dir + "/filtered.bin");
    }

    const int64_t NT = params.batch_size;
    int64_t N = src->n_samples();
    log::info("filtering %s: %d channels, %s%s, %g Hz; zero-phase Butterworth high-pass at %g Hz (context %lld "
              "samples), common reference %s; on %s",
              src->name().c_str(), C,
              N == kUnknown ? "length unknown until the end of the stream" : log::format("%lld samples", static_cast<long long>(N)).c_str(),
              N == kUnknown ? "" : log::format(" (%.1f s)", static_cast<double>(N) / src->fs).c_str(), src->fs,
              hp.cutoff_hz, static_cast<long long>(hp.context), kernels::reference_name(params.reference),
              dev.describe().c_str());
    if (NT < hp.block)
        log::info("batch_size %lld is shorter than the filter's blocks (%lld samples): each batch recomputes the "
                  "blocks it touches, so filtering is slower (the result is the same)",
                  static_cast<long long>(NT), static_cast<long long>(hp.block));
    Progress progress(options.progress, "filtering", N == kUnknown ? 0 : (N + NT - 1) / NT, "batches");

    // Reading batch b + 1 and writing batch b - 1 overlap the filtering of batch b: one thread
    // each, two buffers of each kind.
    struct Fetched {
        bool end = false;
        int64_t t0 = 0, t1 = 0, n_known = 0;
        kernels::SampleRange need;
        std::vector<unsigned char> raw;
    };
    struct Slot {
        std::vector<float> out;
        std::vector<uint16_t> half;
    };
    Fetched fetched[2];
    Slot slots[2];
    const int64_t rb = src->row_bytes();
    auto fetch_batch = [&](int64_t b, Fetched& f) {
        f.t0 = b * NT;
        // Samples before this batch's first block's context are never needed again; dropping them
        // before reading on keeps a stream's buffer at about one batch.
        src->release_before((f.t0 / hp.block) * hp.block - hp.context);
        if (N == kUnknown) {
            src->ensure(kernels::raw_range(hp, f.t0, f.t0 + NT, kOpenEnd).end);
            N = src->n_samples();
        }
        f.end = N != kUnknown && f.t0 >= N;
        if (f.end) return;
        f.n_known = N == kUnknown ? kOpenEnd : N;
        f.t1 = std::min(f.t0 + NT, f.n_known);
        f.need = kernels::raw_range(hp, f.t0, f.t1, f.n_known);
        f.raw.resize(static_cast<size_t>((f.need.end - f.need.begin) * rb));
        src->fetch(f.need.begin, f.need.end - f.need.begin, f.raw.data());
    };
    Worker reader, writer;
    const auto start = std::chrono::steady_clock::now();
    // A stream is read in the main thread, after each batch: a read blocked on a stalled pipe must
    // not keep an error from ending the run, and each batch leaves as soon as its input is in.
    const bool prefetch = !from_stdin;
    auto fetch_next = [&](int64_t b) {
        if (prefetch) reader.submit([&fetch_batch, &fetched, b] { fetch_batch(b, fetched[b % 2]); });
        else fetch_batch(b, fetched[b % 2]);
    };
    fetch_next(0);
    for (int64_t b = 0;; ++b) {
        reader.wait();
        Fetched& f = fetched[b % 2];
        if (f.end) break;
        if (prefetch) fetch_next(b + 1);
        const int64_t t0 = f.t0, t1 = f.t1;
        if (src->dtype == Dtype::float32) check_finite_input(f.raw.data(), t0, t1 - t0, *src, probe, t0 - f.need.begin);

        const int64_t n = t1 - t0;
        Slot& slot = slots[b % 2];  // its previous write finished before the last submit returned
        // The floats are written only to a stream; otherwise one buffer serves every batch.
        std::vector<float>& out = options.stream_out ? slot.out : slots[0].out;
        out.resize(static_cast<size_t>(n * C));
        kernels::FilterArgs a;
        a.dtype = src->dtype;
        a.raw = f.raw.data();
        a.raw_t0 = f.need.begin;
        a.raw_n = f.need.end - f.need.begin;
        a.row_stride = src->n_chan_bin;
        a.rows = probe.chanMap.data();
        a.n_chan = C;
        a.offset = src->dtype == Dtype::uint16 ? 32768.0f : 0.0f;
        a.scale = src->scale;
        a.shift = src->shift;
        a.invert = src->invert;
        a.hp = &hp;
        a.n_samples = f.n_known;
        a.t0 = t0;
        a.t1 = t1;
        a.reference = params.reference;
        a.groups.offsets = groups.offsets.data();
        a.groups.channels = groups.channels.data();
        a.groups.n_groups = static_cast<int>(groups.offsets.size()) - 1;
        a.out = out.data();
        kernels::filter_samples(dev, a);

        // One parallel pass over the batch: Kilosort4's artifact test needs max |value|, every
        // value must be finite, and filtered.bin wants float16.
        const int64_t count = n * C;
        constexpr int64_t kPiece = int64_t(1) << 15;
        const int64_t n_pieces = (count + kPiece - 1) / kPiece;
        if (bin) slot.half.resize(static_cast<size_t>(count));
        // max |value| on the bit patterns (sign cleared): an integer max vectorises, and any
        // pattern >= that of +inf is a NaN or an infinity.
        uint32_t peak_bits = 0;
#pragma omp parallel for schedule(static) reduction(max : peak_bits)
        for (int64_t k = 0; k < n_pieces; ++k) {
            const int64_t i0 = k * kPiece, i1 = std::min(count, i0 + kPiece);
            const float* v = out.data() + i0;
            uint32_t m = 0;
            for (int64_t i = 0; i < i1 - i0; ++i) {
                uint32_t bits;
                std::memcpy(&bits, v + i, sizeof bits);
                bits &= 0x7fffffffu;
                m = bits > m ? bits : m;
            }
            peak_bits = std::max(peak_bits, m);
            if (bin) floats_to_halves(v, slot.half.data() + i0, static_cast<size_t>(i1 - i0));
        }
        int64_t bad = -1;
        if (peak_bits >= 0x7f800000u)
            for (int64_t i = 0; i < count && bad < 0; ++i)
                if (!std::isfinite(out[static_cast<size_t>(i)])) bad = i;
        float peak;
        std::memcpy(&peak, &peak_bits, sizeof peak);
        if (bad >= 0)
            throw Error(Exit::usage, log::format("%s: filtered values are not finite at sample %lld (channel %lld): the "
                                                 "input after scale/shift is too large for float32 arithmetic",
                                                 src->name().c_str(), static_cast<long long>(src->imin + t0 + bad / C),
                                                 static_cast<long long>(bad % C)));
        // Kilosort4's artifact test (io.BinaryFiltered.filter): all or nothing per batch, |x| >= threshold.
        if (static_cast<double>(peak) >= params.artifact_threshold) {
            std::fill(out.begin(), out.end(), 0.0f);
            std::fill(slot.half.begin(), slot.half.end(), uint16_t(0));
            sum.zeroed_batches.push_back(b);
            log::debug("batch %lld: |value| up to %g >= artifact_threshold %g: zeroed", static_cast<long long>(b),
                       static_cast<double>(peak), params.artifact_threshold);
        } else if (bin && peak > kHalfMax) {
            // float16 holds up to 65504: clamp beyond (counted, warned), never write inf.
            for (int64_t i = 0; i < count; ++i) {
                const float v = out[static_cast<size_t>(i)];
                if (std::fabs(v) > kHalfMax) {
                    slot.half[static_cast<size_t>(i)] = float_to_half(v > 0 ? kHalfMax : -kHalfMax);
                    ++sum.n_saturated;
                }
            }
        }
        writer.submit([&slot, &bin, &options, count] {
            if (options.stream_out &&
                std::fwrite(slot.out.data(), sizeof(float), static_cast<size_t>(count), options.stream_out) !=
                    static_cast<size_t>(count))
                throw Error(Exit::resources, errno_message("standard output: write failed"));
            if (bin) bin->write(slot.half.data(), slot.half.size() * sizeof(uint16_t));
        });
        progress.advance(1);
        sum.n_batches = b + 1;
        if (!prefetch) fetch_next(b + 1);
    }
    writer.wait();
    progress.finish();
    sum.n_samples = N;
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (options.stream_out && std::fflush(options.stream_out) != 0)
        throw Error(Exit::resources, errno_message("standard output: write failed"));

    if (!sum.zeroed_batches.empty())
        log::warn("%zu of %lld batches had |values| >= artifact_threshold %g and were zeroed (batches %s)",
                  sum.zeroed_batches.size(), static_cast<long long>(sum.n_batches), params.artifact_threshold,
                  join_ints(sum.zeroed_batches, 20).c_str());
    if (sum.n_saturated > 0)
        log::warn("%lld values beyond +-65504 were clamped to fit float16 storage (the input is not in int16-like units? "
                  "see scale)",
                  static_cast<long long>(sum.n_saturated));
    const double mb = static_cast<double>(N) * rb / 1e6;
    log::info("filtered %lld samples x %d channels (%.1f s of data) in %.1f s: %.1f x real time, %.0f MB/s of raw input",
              static_cast<long long>(N), C, static_cast<double>(N) / src->fs, sum.seconds,
              static_cast<double>(N) / src->fs / std::max(sum.seconds, 1e-9), mb / std::max(sum.seconds, 1e-9));

    if (!bin) return sum;
    bin->commit();

    // Sidecar (formats/filtered.md).
    JsonWriter j(2);
    j.begin_object();
    j.key("format").value("ks-filtered").key("version").value(kFilteredVersion);
    j.key("dtype").value("float16").key("scale").value(1.0);
    j.key("n_channels").value(C).key("n_samples").value(N).key("fs").value(src->fs);
    j.key("imin").value(src->imin).key("imax").value(src->imin + N);
    j.key("uv_per_bit");
    if (meta.uv_per_bit && settings.is_none("scale")) j.value(*meta.uv_per_bit);
    else j.null();
    j.key("source").begin_object();
    // Absolute, so that later tools (ks-phy's params.py) find the recording from anywhere.
    std::string rec_path = in.rec;
    if (!from_stdin) {
        std::error_code ec;
        const std::filesystem::path a = std::filesystem::absolute(in.rec, ec);
        if (!ec) rec_path = a.lexically_normal().string();
    }
    j.key("path").value(from_stdin ? std::string("-") : rec_path).key("dtype").value(dtype_name(src->dtype));
    j.key("n_chan_bin").value(src->n_chan_bin);
    if (concat) {
        // The files sorted as one: where each starts on the concatenated timeline (imin counts on it).
        j.key("files").begin_array();
        for (size_t k = 0; k < files.size(); ++k) {
            std::error_code ec2;
            const std::filesystem::path a = std::filesystem::absolute(files[k], ec2);
            j.begin_object().key("path").value(ec2 ? files[k] : a.lexically_normal().string());
            j.key("first_sample").value(concat->starts()[k]).key("n_samples").value(concat->file_samples(k)).end_object();
        }
        j.end_array();
    }
    j.end_object();
    j.key("probe").begin_object();
    j.key("chanMap").value(std::vector<int64_t>(probe.chanMap.begin(), probe.chanMap.end()));
    j.key("xc").value(probe.xc).key("yc").value(probe.yc);
    j.key("kcoords").value(std::vector<int64_t>(probe.kcoords.begin(), probe.kcoords.end()));
    j.key("n_chan").value(C).end_object();
    j.key("highpass").begin_object();
    j.key("design").value("scipy.signal.butter(3, highpass_cutoff, 'highpass', fs=fs), applied forward-backward");
    j.key("cutoff_hz").value(hp.cutoff_hz);
    j.key("b").value(std::vector<double>(hp.b, hp.b + 4)).key("a").value(std::vector<double>(hp.a, hp.a + 4));
    j.key("pole_radius").value(hp.pole_radius);
    j.key("context_samples").value(hp.context).key("block_samples").value(hp.block).end_object();
    j.key("common_reference").value(kernels::reference_name(params.reference));
    j.key("unreferenced_shanks").begin_array();
    for (const int k : sum.unreferenced_shanks) j.value(k);
    j.end_array();
    j.key("batch_size").value(NT);
    j.key("artifact_threshold").value(params.artifact_threshold);
    j.key("zeroed_batches").value(sum.zeroed_batches);
    j.key("n_saturated").value(sum.n_saturated);
    j.key("settings").raw(settings.to_json("filter", 0));
    j.end_object();
    write_file_atomic(dir + "/filtered.json", j.str() + "\n");

    // The work folder's probe.json is what later stages read; ks-inspect normally writes it.
    const std::string work_probe = options.work_dir + "/probe.json";
    if (!fs::exists(work_probe)) {
        write_file_atomic(work_probe, probe.to_json() + "\n");
    } else if (fs::absolute(work_probe) != fs::absolute(probe_spec)) {
        try {
            if (Probe::load(work_probe).to_json() != probe.to_json())
                log::warn("%s differs from the probe used here (%s); later stages read %s", work_probe.c_str(),
                          probe_spec.c_str(), work_probe.c_str());
        } catch (const Error&) {
            log::warn("%s is not a readable probe; later stages read it", work_probe.c_str());
        }
    }

    Provenance p;
    p.tool = options.tool;
    p.stage = "filter";
    p.command_line = options.command_line;
    p.settings_json = settings.to_json("filter");
    p.inputs.push_back(from_stdin ? src->identity() : input_id);
    if (fs::is_regular_file(probe_spec)) p.inputs.push_back(file_identity(probe_spec));
    p.outputs = {file_identity(dir + "/filtered.bin"), file_identity(dir + "/filtered.json")};
    JsonWriter extra(0);
    extra.begin_object();
    extra.key("n_samples").value(N).key("n_channels").value(C).key("n_batches").value(sum.n_batches);
    extra.key("zeroed_batches").value(static_cast<int64_t>(sum.zeroed_batches.size()));
    extra.key("n_saturated").value(sum.n_saturated);
    extra.key("device").value(dev.describe());
    extra.end_object();
    p.extra_json = extra.str();
    write_provenance(dir + "/filter.json", p);
    return sum;
}

}  // namespace ks::filter
