// Universal-template settings and learning, shared by ks-drift and ks-detect (stages/universal.hpp).
#include "ks/stages/universal.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ks/error.hpp"
#include "ks/log.hpp"

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

UniversalTemplates predefined_universal_templates(const UniversalParams& p) {
    // A family of extracellular spike shapes (samples at ~30 kHz): a negative trough at nt0min of width
    // sigma, an optional small positive lobe before it, and a slower positive repolarisation lobe after
    // it; every combination on a fixed grid, unit norm. Learned the same way as clips from data.
    std::vector<float> clips;
    int64_t n = 0;
    for (double sigma : {2.0, 3.0, 4.0, 5.5, 7.0})
        for (double lobe : {0.0, 0.15, 0.3, 0.5})
            for (double delay : {8.0, 12.0, 16.0, 22.0})
                for (double pre : {0.0, 0.15}) {
                    std::vector<double> w(p.nt);
                    double norm = 0;
                    for (int t = 0; t < p.nt; ++t) {
                        const double u = t - p.nt0min;
                        const double trough = -std::exp(-0.5 * u * u / (sigma * sigma));
                        const double after = lobe * std::exp(-0.5 * (u - delay) * (u - delay) / (4 * sigma * sigma));
                        const double before = pre * std::exp(-0.5 * (u + 2.5 * sigma) * (u + 2.5 * sigma) / (sigma * sigma));
                        w[t] = trough + after + before;
                        norm += w[t] * w[t];
                    }
                    for (double v : w) clips.push_back(static_cast<float>(v / std::sqrt(norm)));
                    ++n;
                }
    UniversalTemplates t;
    t.n_clips = 0;   // none from the data
    t.predefined = true;
    if (n < std::max(p.n_templates, p.n_pcs))
        throw Error(Exit::usage, "settings n_templates / n_pcs: at most " + std::to_string(n) +
                                     " with templates_from_data = false (the predefined shapes)");
    t.wpca = kernels::universal_wpca(clips, p.nt, p.n_pcs);
    t.wtemp = kernels::universal_wtemp(clips, p.nt, p.n_templates);
    return t;
}

UniversalTemplates learn_universal_templates(const WhitenedBatches& wb, const UniversalParams& p, ProgressMode mode) {
    if (!p.templates_from_data) return predefined_universal_templates(p);
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
    if (t.n_clips < std::max(p.n_templates, p.n_pcs)) {
        // Too few isolated spikes to learn from (a short file, few channels, a quiet recording):
        // Kilosort4 stops here; the predefined shapes still let the recording be sorted.
        log::warn("only %lld isolated spike waveforms above Th_single_ch = %g to learn the universal templates "
                  "from: using the predefined shapes (as templates_from_data = false)",
                  static_cast<long long>(t.n_clips), static_cast<double>(p.Th_single_ch));
        UniversalTemplates pre = predefined_universal_templates(p);
        pre.n_clips = t.n_clips;
        pre.predefined = true;
        return pre;
    }
    t.wpca = kernels::universal_wpca(collector.clips(), p.nt, p.n_pcs);
    t.wtemp = kernels::universal_wtemp(collector.clips(), p.nt, p.n_templates);
    return t;
}

}  // namespace ks
