#pragma once
// Motion on disk (formats/motion.md): the drift/ folder ks-drift writes and the stages after it read,
// and motion computed elsewhere (DREDge, SpikeInterface, a ks-sim ground truth) turned into the
// per-batch, per-block shifts the kriging correction uses.
#include <cstdint>
#include <string>
#include <vector>

#include "ks/kernels/drift_registration.hpp"

namespace ks::drift {

constexpr int kMotionFormatVersion = 1;

// What the stages after ks-drift need from drift/: the motion and how to apply it.
struct MotionFile {
    MotionEstimate motion;        // status, n_batches, n_blocks, dshift, yblk (the rest left empty)
    int64_t batch_size = 0;
    double sig_interp_um = 20;
    std::string source;           // "estimated" or "external"
};

// Reads <work>/drift/{drift.json,dshift.npy,yblk.npy} and checks them against each other and against
// the work folder's batches (n_batches, batch_size). Throws Error(usage) naming the file: missing,
// other format version, shapes that disagree, unknown status, non-finite values, yblk not increasing,
// dshift not all zero when status is not ok, n_batches or batch_size different from expected.
MotionFile read_motion(const std::string& work_dir, int64_t expected_batch_size, int expected_n_batches);

// Motion from elsewhere: displacement of the tissue relative to the probe (µm; positive = the
// units appear at larger y), sampled at time bin centres (s, from the first sample of the raw
// file) and depths (µm, the probe's y). SpikeInterface's convention, and ks-sim's gt/motion.npy's.
struct ExternalMotion {
    std::vector<double> time_s;            // T, strictly increasing
    std::vector<double> depth_um;          // D >= 1, strictly increasing (D = 1: rigid)
    std::vector<double> displacement_um;   // T x D, row-major
    std::string source;                    // what was read, for messages and the record
};

// Accepts (formats/motion.md "External motion"):
//  - a JSON file {"time_bins_s": [...], "depth_bins_um": [...], "displacement_um": [[...], ...]}
//    (one row of D numbers per time bin; "displacement_um": [...] with one depth is also accepted);
//  - a SpikeInterface motion folder (Motion.save): spatial_bins_um.npy, temporal_bins_s_seg0.npy,
//    displacement_seg0.npy; only one segment;
//  - a ks-sim ground-truth folder (its gt/): motion.npy, motion_time_s.npy, motion_depth_um.npy.
// Throws Error(usage) naming the file and what is wrong.
ExternalMotion load_external_motion(const std::string& path);

// The per-batch shifts the correction applies: yblk = depth_um, and for batch b (samples
// [b·batch_size, min((b+1)·batch_size, n_samples)) of the sorted range, which starts at raw sample
// imin) dshift[b, j] = −(mean over the batch of the displacement at depth j), the displacement being
// linear in time between bin centres and constant beyond the first and last. Status ok.
MotionEstimate motion_from_external(const ExternalMotion& e, int64_t batch_size, int n_batches, int64_t n_samples,
                                    double fs_hz, int64_t imin);

}  // namespace ks::drift
