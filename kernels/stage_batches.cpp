// Whitened (and drift-corrected) batches of the filtered recording: see stages/batches.hpp.
#include "ks/stages/batches.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ks/error.hpp"
#include "ks/kernels/apply_matrix.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"

namespace ks {

namespace fs = std::filesystem;

WhitenedBatches::WhitenedBatches(const std::string& work_dir, const Device& dev, int64_t batch_size, int64_t context)
    : work_(work_dir), dev_(dev), batch_size_(batch_size), context_(context) {
    KS_ASSERT(batch_size >= 1 && context >= 0, "WhitenedBatches: batch_size and context");
    std::error_code ec;
    const std::string probe_path = work_dir + "/probe.json";
    const std::string filter_record = work_dir + "/filter/filter.json";
    const std::string whiten_record = work_dir + "/whiten/whiten.json";
    if (!fs::exists(probe_path, ec))
        throw Error(Exit::usage, probe_path + ": not found; run ks-inspect --work " + work_dir + " first");
    if (!fs::exists(filter_record, ec))
        throw Error(Exit::usage, filter_record + ": not found; run ks-filter --work " + work_dir + " first");
    if (!fs::exists(whiten_record, ec))
        throw Error(Exit::usage, whiten_record + ": not found; run ks-whiten --work " + work_dir + " first");
    probe_ = Probe::load(probe_path);
    rec_ = std::make_unique<FilteredRecording>(work_dir);
    const int C = rec_->n_channels();
    if (C != probe_.n_chan())
        throw Error(Exit::usage, log::format("%s/filter/filtered.json: %d channels, but %s has %d", work_dir.c_str(), C,
                                             probe_path.c_str(), probe_.n_chan()));
    const std::string wpath = work_dir + "/whiten/whiten.npy";
    const NpyArray w = read_npy_checked(wpath, Dtype::float32, 2);
    if (w.shape[0] != C || w.shape[1] != C)
        throw Error(Exit::usage, log::format("%s: shape (%lld, %lld), expected (%d, %d) for the probe's channels",
                                             wpath.c_str(), static_cast<long long>(w.shape[0]),
                                             static_cast<long long>(w.shape[1]), C, C));
    wrot_ = w.as<float>();
    for (float v : wrot_)
        if (!std::isfinite(v)) throw Error(Exit::usage, wpath + ": holds non-finite values");
    const int64_t N = rec_->n_samples();
    n_batches_ = static_cast<int>(N <= 0 ? 0 : (N + batch_size - 1) / batch_size);
}

int64_t WhitenedBatches::batch_length(int b) const {
    return std::max<int64_t>(0, std::min(batch_size_, n_samples() - batch_start(b)));
}

void WhitenedBatches::use_motion(const drift::MotionEstimate& motion, double sig_interp_um) {
    if (motion.status != drift::MotionStatus::ok) {
        kriging_.reset();
        motion_.reset();
        return;
    }
    KS_ASSERT(motion.n_batches == n_batches_, "use_motion: motion for another number of batches");
    kriging_ = std::make_unique<drift::Kriging>(probe_.xc, probe_.yc, probe_.kcoords, sig_interp_um);
    motion_ = std::make_unique<drift::MotionEstimate>(motion);
}

int64_t WhitenedBatches::read(int b, std::vector<float>& scratch, std::vector<float>& out) const {
    KS_ASSERT(b >= 0 && b < n_batches_, "WhitenedBatches::read: batch out of range");
    const int C = n_channels();
    const int64_t n = batch_length(b) + 2 * context_;
    scratch.resize(static_cast<size_t>(C) * n);
    out.resize(scratch.size());
    rec_->read(batch_start(b) - context_, n, scratch.data());
    std::vector<float> m;
    if (motion_) m = drift::batch_matrix(*kriging_, *motion_, b, wrot_);
    kernels::ApplyMatrixArgs a;
    a.w = motion_ ? m.data() : wrot_.data();
    a.n_out = a.n_in = C;
    a.x = scratch.data();
    a.n_samples = n;
    a.ld_x = a.ld_out = n;
    a.out = out.data();
    kernels::apply_matrix(dev_, a);
    return n;
}

int64_t WhitenedBatches::read_range(int64_t start, int64_t length, int64_t context, std::vector<float>& scratch,
                                    std::vector<float>& out) const {
    KS_ASSERT(length >= 0 && context >= 0 && n_batches_ > 0, "WhitenedBatches::read_range: arguments");
    const int C = n_channels();
    const int64_t n = length + 2 * context, first = start - context;
    scratch.resize(static_cast<size_t>(C) * n);
    out.resize(scratch.size());
    rec_->read(first, n, scratch.data());
    // Runs of samples that share a batch, each with that batch's matrix.
    for (int64_t i = 0; i < n;) {
        const int64_t s = first + i;
        const int b = static_cast<int>(std::clamp<int64_t>(s < 0 ? 0 : s / batch_size_, 0, n_batches_ - 1));
        int64_t end = n;   // first buffer index of another batch
        if (b < n_batches_ - 1) end = std::min(n, batch_start(b + 1) - first);
        std::vector<float> m;
        if (motion_) m = drift::batch_matrix(*kriging_, *motion_, b, wrot_);
        kernels::ApplyMatrixArgs a;
        a.w = motion_ ? m.data() : wrot_.data();
        a.n_out = a.n_in = C;
        a.x = scratch.data() + i;
        a.n_samples = end - i;
        a.ld_x = a.ld_out = n;
        a.out = out.data() + i;
        kernels::apply_matrix(dev_, a);
        i = end;
    }
    return n;
}

std::vector<std::string> WhitenedBatches::input_files() const {
    return {work_ + "/probe.json", work_ + "/filter/filter.json", work_ + "/whiten/whiten.json"};
}

}  // namespace ks
