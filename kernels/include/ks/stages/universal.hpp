#pragma once
// What ks-drift and ks-detect share: the universal-template settings and learning the templates from
// whitened batches (kilosort4-algorithm.md §4.1-4.3).
#include <cstdint>
#include <vector>

#include "ks/kernels/universal_templates.hpp"
#include "ks/progress.hpp"
#include "ks/settings.hpp"
#include "ks/stages/batches.hpp"

namespace ks {

// Kilosort4's stride over batches when learning the universal templates (hard-coded there).
constexpr int64_t kTemplateBatchStride = 25;

struct UniversalParams {
    int nt = 61, nt0min = 20;
    bool templates_from_data = true;
    int n_templates = 6, n_pcs = 6;
    float Th_single_ch = 6;
    float Th_universal = 9;
    kernels::UniversalGridSettings grid;

    // From resolved settings; nt0min None = int(20 nt / 61). Error(usage) naming a setting out of range.
    static UniversalParams from(const Settings& settings);
};

struct UniversalTemplates {
    std::vector<float> wtemp;   // n_templates x nt; empty when too few clips
    std::vector<float> wpca;    // n_pcs x nt
    int64_t n_clips = 0;
    bool predefined = false;    // the predefined shapes (asked for, or too few clips to learn from)
};

// Clips from whitened batches 0, 25, 50, ... (as Kilosort4), then wPCA and wTEMP (k-means, seed 1).
// Too few clips (fewer than max(n_templates, n_pcs)): a warning, and the predefined shapes.
// templates_from_data = false: predefined_universal_templates(p), no data read.
// Kilosort4's templates_from_data = false with our own shapes (Kilosort4's file is not ours to ship):
// a fixed family of 160 spike shapes (trough at nt0min, widths, repolarisation lobes) reduced to wTEMP
// and wPCA exactly as clips from data are. n_clips = 0. Error(usage) when n_templates or n_pcs > 160.
UniversalTemplates predefined_universal_templates(const UniversalParams& p);

UniversalTemplates learn_universal_templates(const WhitenedBatches& wb, const UniversalParams& p, ProgressMode mode);

}  // namespace ks
