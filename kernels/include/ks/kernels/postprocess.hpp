#pragma once
// Kilosort4's post-processing of the final clustering (kilosort4-algorithm.md §7.3, §7.6, §7.7):
// merges of clusters that share a refractory period and look alike, spike positions, amplitudes.
// Duplicate removal, contamination and the good label are in ccg.hpp.
#include <cstdint>
#include <vector>

namespace ks::post {

struct MergeParams {
    double fs = 30000;
    double acg_threshold = 0.2;    // a cluster absorbs others only when its own ACG is refractory
    double ccg_threshold = 0.25;   // the pair's CCG must be refractory
    double min_similarity = 0.5;   // candidates in decreasing template similarity down to this
};

struct MergeResult {
    int K = 0;                       // clusters after the merges, renumbered 0..K-1 keeping their order
    std::vector<int32_t> into;       // per input cluster: the output cluster it is now part of
    std::vector<int32_t> shift;      // per input cluster: samples added to its spike times (0 unless absorbed)
    int n_merges = 0;
};

// §7.3. times: spike times (samples) of every spike, any order; labels: 0..K-1. U: K x C x P templates
// (PC coefficients over wpca, P x nt), replaced by the merged ones (count-weighted averages, the absorbed
// template shifted in time to line up). Clusters are visited by decreasing spike count; only clusters
// with a refractory ACG absorb; candidates in decreasing similarity; the first whose CCG with the
// cluster is refractory is merged, its spike times shifted by the similarity's best lag, and the same
// cluster is visited again. The caller applies `into` and `shift` to the spikes.
MergeResult ccg_merge(const std::vector<int64_t>& times, const std::vector<int32_t>& labels, int K,
                      std::vector<float>& U, int C, int P, const float* wpca, int nt, const MergeParams& p);

// §7.6: a spike's position is the mean of its channels' positions weighted by the norm of its features
// there (features nC x P on channels chans[0..nC), chans[0] its template's peak channel); channels farther
// than position_limit_um from chans[0], or -1, weigh 0. All weights 0: the peak channel's position.
void spike_position(const float* features, const int32_t* chans, int nC, int P, const std::vector<double>& xc,
                    const std::vector<double>& yc, double position_limit_um, double* x_um, double* y_um);

}  // namespace ks::post
