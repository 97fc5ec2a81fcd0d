#pragma once
// The data every stage after ks-whiten works on: batches of the filtered recording, whitened and,
// once ks-drift has run, drift-corrected on the fly with one combined matrix per batch
// (M_b · Wrot, kriging.hpp). ks-drift reads them whitened only; ks-detect and ks-match corrected.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ks/device.hpp"
#include "ks/filtered.hpp"
#include "ks/kernels/drift_registration.hpp"
#include "ks/kernels/kriging.hpp"
#include "ks/probe.hpp"

namespace ks {

class WhitenedBatches {
public:
    // Opens <work>/probe.json, <work>/filter/ and <work>/whiten/whiten.npy (whiten/whiten.json must
    // exist: the stage finished). batch_size >= 1; context: samples read on each side of a batch
    // (edge samples repeated at the ends of the recording). Throws Error(usage) naming the missing or
    // inconsistent file.
    WhitenedBatches(const std::string& work_dir, const Device& dev, int64_t batch_size, int64_t context);

    // From now on batches are drift-corrected with this motion (status ok; otherwise nothing changes).
    // motion.n_batches must equal n_batches().
    void use_motion(const drift::MotionEstimate& motion, double sig_interp_um);
    bool corrected() const { return motion_ != nullptr; }

    const Probe& probe() const { return probe_; }
    const FilteredRecording& recording() const { return *rec_; }
    const std::vector<float>& whitening() const { return wrot_; }
    int n_channels() const { return probe_.n_chan(); }
    int64_t n_samples() const { return rec_->n_samples(); }
    int n_batches() const { return n_batches_; }
    int64_t batch_size() const { return batch_size_; }
    int64_t context() const { return context_; }
    int64_t batch_start(int b) const { return static_cast<int64_t>(b) * batch_size_; }
    int64_t batch_length(int b) const;

    // Batch b: samples [start - context, start + length + context) whitened (and corrected),
    // channel-major; returns the row stride (length + 2·context). `scratch` and `out` are resized.
    int64_t read(int b, std::vector<float>& scratch, std::vector<float>& out) const;

    // Any range: samples [start - context, start + length + context), each sample whitened and corrected
    // with the matrix of the batch it belongs to (samples outside the recording: edge samples, first or
    // last batch's matrix). So a sample's value does not depend on which range reads it, and a stage
    // that reads in chunks of its own size gets the same data whatever that size. Returns the stride.
    int64_t read_range(int64_t start, int64_t length, int64_t context, std::vector<float>& scratch,
                       std::vector<float>& out) const;

    // Paths of the inputs, for the provenance record.
    std::vector<std::string> input_files() const;

private:
    std::string work_;
    const Device& dev_;
    Probe probe_;
    std::unique_ptr<FilteredRecording> rec_;
    std::vector<float> wrot_;
    int64_t batch_size_, context_;
    int n_batches_ = 0;
    std::unique_ptr<drift::Kriging> kriging_;
    std::unique_ptr<drift::MotionEstimate> motion_;
};

}  // namespace ks
