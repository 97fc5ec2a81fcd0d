// Universal-template settings and learning, shared by ks-drift and ks-detect (stages/universal.hpp).
#include "ks/stages/universal.hpp"

#include <algorithm>
#include <string>

#include "ks/error.hpp"

namespace ks {

UniversalParams UniversalParams::from(const Settings& s) {
    UniversalParams p;
    p.nt = s.get_int32("nt");
    p.nt0min = s.is_none("nt0min") ? static_cast<int>(20.0 * p.nt / 61.0) : s.get_int32("nt0min");
    if (p.nt < 3 || p.nt % 2 == 0) throw Error(Exit::usage, "setting nt: must be odd and at least 3");
    p.templates_from_data = s.get_bool("templates_from_data");
    p.n_templates = s.get_int32("n_templates");
    p.n_pcs = s.get_int32("n_pcs");
    if (p.n_pcs > p.nt) throw Error(Exit::usage, "setting n_pcs: must not exceed nt");
    p.Th_single_ch = static_cast<float>(s.get_float("Th_single_ch"));
    p.Th_universal = static_cast<float>(s.get_float("Th_universal"));
    p.grid.dmin = s.is_none("dmin") ? 0.0 : s.get_float("dmin");
    p.grid.dminx = s.get_float("dminx");
    p.grid.min_template_size = s.get_float("min_template_size");
    p.grid.template_sizes = s.get_int32("template_sizes");
    p.grid.max_channel_distance = s.get_float("max_channel_distance");
    p.grid.nearest_chans = s.get_int32("nearest_chans");
    p.grid.nearest_templates = s.get_int32("nearest_templates");
    return p;
}

UniversalTemplates learn_universal_templates(const WhitenedBatches& wb, const UniversalParams& p, ProgressMode mode) {
    kernels::SnippetSettings ss;
    ss.nt = p.nt;
    ss.nt0min = p.nt0min;
    ss.Th_single_ch = p.Th_single_ch;
    kernels::SnippetCollector collector(ss);
    const int nb = wb.n_batches();
    Progress progress(mode, "learning universal templates", (nb + kTemplateBatchStride - 1) / kTemplateBatchStride,
                      "batches");
    std::vector<float> scratch, x;
    for (int b = 0; b < nb; b += static_cast<int>(kTemplateBatchStride)) {
        const int64_t n = wb.read(b, scratch, x);
        if (!collector.add_batch(x.data(), wb.n_channels(), n, n)) break;
        progress.advance(1);
    }
    progress.finish();
    UniversalTemplates t;
    t.n_clips = collector.n_clips();
    if (t.n_clips < std::max(p.n_templates, p.n_pcs)) return t;
    t.wpca = kernels::universal_wpca(collector.clips(), p.nt, p.n_pcs);
    t.wtemp = kernels::universal_wtemp(collector.clips(), p.nt, p.n_templates);
    return t;
}

}  // namespace ks
