// The settings table: Kilosort4's parameters (names, defaults, ranges, steps as in its parameter
// table, v4.1.5) plus ks-tools' own. formats/settings.md documents the same table.
#include <limits>

#include "ks/settings.hpp"

namespace ks {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

SettingValue none() { return {}; }
SettingValue iv(int64_t v) { SettingValue s; s.none = false; s.i = v; return s; }
SettingValue fv(double v) { SettingValue s; s.none = false; s.f = v; return s; }
SettingValue bv(bool v) { SettingValue s; s.none = false; s.b = v; return s; }
SettingValue lv(std::vector<double> v) { SettingValue s; s.none = false; s.list = std::move(v); return s; }
SettingValue sv(std::string v) { SettingValue s; s.none = false; s.s = std::move(v); return s; }

SettingSpec spec(std::string name, SettingType type, SettingValue def, double min, double max,
                 std::vector<double> exclude, std::string ks4_step, std::string stage,
                 std::string description, bool nullable = false) {
    SettingSpec s;
    s.name = std::move(name);
    s.type = type;
    s.default_value = std::move(def);
    s.min = min;
    s.max = max;
    s.exclude = std::move(exclude);
    s.ks4_step = std::move(ks4_step);
    s.stage = std::move(stage);
    s.description = std::move(description);
    s.nullable = nullable || s.default_value.none;
    return s;
}

std::vector<SettingSpec> build_table() {
    using T = SettingType;
    std::vector<SettingSpec> t;
    // ---- Kilosort4 main parameters
    t.push_back(spec("n_chan_bin", T::Int, none(), 0, kInf, {0}, "data", "filter",
                     "Total number of channels in the binary file, including non-ephys channels (e.g. 385 "
                     "for Neuropixels with a sync channel). Required unless SpikeGLX/Open Ephys metadata gives it."));
    t.push_back(spec("fs", T::Float, fv(30000), 0, kInf, {0}, "data", "filter", "Sampling frequency (Hz)."));
    t.push_back(spec("batch_size", T::Int, iv(60000), 1, kInf, {}, "data", "filter",
                     "Number of samples in each batch of data."));
    t.push_back(spec("nblocks", T::Int, iv(1), 0, kInf, {}, "preprocessing", "drift",
                     "Number of non-overlapping blocks for drift correction (nblocks-1 more in the overlaps); "
                     "0 switches drift correction off, 1 is rigid."));
    t.push_back(spec("Th_universal", T::Float, fv(9), 0, kInf, {0}, "spike detection", "drift",
                     "Spike detection threshold for universal templates (also used by drift estimation)."));
    t.push_back(spec("Th_learned", T::Float, fv(8), 0, kInf, {0}, "spike detection", "match",
                     "Spike detection threshold for learned templates (template matching)."));
    t.push_back(spec("tmin", T::Float, fv(0), 0, kInf, {}, "data", "filter",
                     "Time in seconds where the sorted part of the recording begins."));
    t.push_back(spec("tmax", T::Float, fv(kInf), 0, kInf, {0}, "data", "filter",
                     "Time in seconds where the sorted part ends (inf: end of the recording)."));
    // ---- Kilosort4 extra parameters: data
    t.push_back(spec("nt", T::Int, iv(61), 1, kInf, {}, "data", "filter",
                     "Number of samples per waveform; also the padding on each side of a batch."));
    t.push_back(spec("shift", T::Float, none(), -kInf, kInf, {}, "data", "filter",
                     "Added to the data after `scale` (data*scale + shift); None: off."));
    t.push_back(spec("scale", T::Float, none(), -kInf, kInf, {}, "data", "filter",
                     "Multiplies the data before anything else; None: off. Set shift/scale so float32 data "
                     "is roughly in -100..100."));
    // ---- preprocessing
    t.push_back(spec("artifact_threshold", T::Float, fv(kInf), 0, kInf, {}, "preprocessing", "filter",
                     "A batch with any absolute filtered value above this is zeroed (inf: never)."));
    t.push_back(spec("nskip", T::Int, iv(25), 1, kInf, {}, "preprocessing", "whiten",
                     "Batch stride for computing the whitening matrix."));
    t.push_back(spec("whitening_range", T::Int, iv(32), 1, kInf, {}, "preprocessing", "whiten",
                     "Number of nearby channels used to estimate the whitening matrix."));
    t.push_back(spec("highpass_cutoff", T::Float, fv(300), 0, kInf, {}, "preprocessing", "filter",
                     "Cutoff (Hz) of the high-pass Butterworth filter."));
    t.push_back(spec("binning_depth", T::Float, fv(5), 0, kInf, {0}, "preprocessing", "drift",
                     "Vertical bin size (µm) of the drift-estimation histogram."));
    t.push_back(spec("sig_interp", T::Float, fv(20), 0, kInf, {0}, "preprocessing", "drift",
                     "Spatial smoothness scale (µm) of the kriging interpolation used for drift correction."));
    {
        SettingSpec s = spec("drift_smoothing", T::FloatList, lv({0.5, 0.5, 0.5}), 0, kInf, {},
                             "preprocessing", "drift",
                             "Gaussian smoothing of the drift estimate over (correlation, time in batches, "
                             "depth in blocks); three numbers >= 0.");
        t.push_back(s);
    }
    // ---- spike detection
    t.push_back(spec("nt0min", T::Int, none(), 0, kInf, {}, "spike detection", "drift",
                     "Sample index at which waveforms are aligned (None: int(20*nt/61))."));
    t.push_back(spec("dmin", T::Float, none(), 0, kInf, {0}, "spike detection", "drift",
                     "Vertical spacing (µm) of template centres for detection (None: from the probe)."));
    t.push_back(spec("dminx", T::Float, fv(32), 0, kInf, {0}, "spike detection", "drift",
                     "Horizontal spacing (µm) of template centres for detection."));
    t.push_back(spec("min_template_size", T::Float, fv(10), 0, kInf, {0}, "spike detection", "drift",
                     "Standard deviation (µm) of the smallest spatial envelope of the universal templates."));
    t.push_back(spec("template_sizes", T::Int, iv(5), 1, kInf, {}, "spike detection", "drift",
                     "Number of universal template sizes (multiples of min_template_size)."));
    t.push_back(spec("nearest_chans", T::Int, iv(10), 1, kInf, {}, "spike detection", "drift",
                     "Number of nearest channels considered when finding local maxima in detection."));
    t.push_back(spec("nearest_templates", T::Int, iv(100), 1, kInf, {}, "spike detection", "drift",
                     "Number of nearest template locations considered when finding local maxima."));
    t.push_back(spec("max_channel_distance", T::Float, fv(32), 1, kInf, {}, "spike detection", "drift",
                     "Templates farther than this (µm) from their nearest channel are not used."));
    t.push_back(spec("max_peels", T::Int, iv(100), 1, 10000, {}, "spike detection", "match",
                     "Iterations of the matching pursuit over each batch in template matching."));
    t.push_back(spec("templates_from_data", T::Bool, bv(true), 0, 0, {}, "spike detection", "drift",
                     "Learn the single-channel template shapes from the data (else predefined shapes)."));
    t.push_back(spec("n_templates", T::Int, iv(6), 1, kInf, {}, "spike detection", "drift",
                     "Number of single-channel templates of the universal templates."));
    t.push_back(spec("n_pcs", T::Int, iv(6), 1, kInf, {}, "spike detection", "drift",
                     "Number of single-channel principal components for spike features."));
    t.push_back(spec("Th_single_ch", T::Float, fv(6), 0, kInf, {0}, "spike detection", "drift",
                     "Single-channel threshold (whitened SD) for collecting waveforms to learn templates."));
    // ---- clustering
    t.push_back(spec("acg_threshold", T::Float, fv(0.2), 0, kInf, {0}, "clustering", "final",
                     "Allowed fraction of refractory violations in the ACG relative to baseline; assigns 'good'."));
    t.push_back(spec("ccg_threshold", T::Float, fv(0.25), 0, kInf, {0}, "clustering", "final",
                     "Allowed fraction of refractory violations in the CCG relative to baseline; splits and merges."));
    t.push_back(spec("cluster_neighbors", T::Int, iv(10), 2, kInf, {}, "clustering", "cluster",
                     "Nearest neighbours per spike in the clustering graph."));
    t.push_back(spec("cluster_downsampling", T::Int, iv(1), 1, kInf, {}, "clustering", "cluster",
                     "Inverse fraction of spikes used as landmarks in clustering (capped by max_cluster_subset)."));
    t.push_back(spec("max_cluster_subset", T::Int, iv(25000), 1, kInf, {kInf}, "clustering", "cluster",
                     "Maximum number of landmark spikes per clustering centre (None: no limit).", true));
    t.push_back(spec("x_centers", T::Int, none(), 1, kInf, {}, "clustering", "cluster",
                     "Number of x positions of clustering centres (None: from the channel density)."));
    {
        SettingSpec s = spec("cluster_init_seed", T::Int, iv(5), 0, kInf, {}, "", "cluster",
                             "Seed of the clustering initialisation (Kilosort4 hard-codes 5).");
        s.ks4 = false;  // not in Kilosort4's parameter table
        t.push_back(s);
    }
    {
        SettingSpec s = spec("final_min_group_spikes", T::Int, iv(300), 1, kInf, {}, "", "final",
                             "Final clustering: a position group with fewer matched spikes stays one cluster "
                             "(Kilosort4 hard-codes 1000, as the first pass keeps).");
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("fragment_similarity", T::Float, fv(0.8), 0, 1, {}, "", "final",
                             "Merge pieces of one drifting neuron that fire at different times: template "
                             "similarity at least this (None: Kilosort4's merges only).", true);
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("fragment_overlap", T::Float, fv(0.35), 0, 1, {}, "", "final",
                             "Most that two such pieces' firing over time may overlap (0: disjoint, 1: the same).");
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("fragment_max_shift", T::Float, fv(40), 0, 200, {}, "", "final",
                             "Largest vertical shift (µm) under which two such pieces' templates are compared: "
                             "residual drift after correction (None: unshifted templates only).",
                             true);
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("redundant_fraction", T::Float, fv(0.5), 0, 1, {}, "", "final",
                             "Merge a unit into a larger one when at least this fraction of its spikes coincide "
                             "with that unit's at a fixed lag within 1 ms: the same spikes found twice (None: off).",
                             true);
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("refractory_test", T::String, sv("normal"), 0, 0, {}, "", "final",
                             "Significance of a unit's refractory dip for the 'good' label: normal (Kilosort4's "
                             "normal approximation, lenient on small units) or poisson (the exact Poisson tail).");
        s.choices = {"normal", "poisson"};
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("merge_refractory_test", T::String, sv("poisson"), 0, 0, {}, "", "final",
                             "Significance of a pair's shared refractory dip for Kilosort4's merge: poisson (the "
                             "exact Poisson tail) or normal (Kilosort4's approximation, which merges small "
                             "distinct units on little evidence).");
        s.choices = {"poisson", "normal"};
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("piece_similarity", T::Float, fv(0.9), 0, 1, {}, "", "final",
                             "A good unit whose template is at least this similar to a larger good unit's (also "
                             "under vertical shifts up to fragment_max_shift) and which fires within 1.5 ms of it "
                             "at most ccg_threshold times as often as independent neurons would (where they "
                             "would at least 0.5 times) is probably a piece of it: 'mua' (None: off).",
                             true);
        s.ks4 = false;
        t.push_back(s);
    }
    {
        SettingSpec s = spec("good_amplitude_margin", T::Float, fv(2), 0, kInf, {}, "", "final",
                             "A unit is 'good' only if its template's norm and the median of its spikes' matched "
                             "amplitudes exceed Th_learned by at least this much (whitened units, about noise SDs): "
                             "below it, its spikes are noise crossings the threshold let through, spaced by the "
                             "matching, or the top of a neuron the threshold mostly hid (None: Kilosort4's label).",
                             true);
        s.ks4 = false;
        t.push_back(s);
    }
    // ---- postprocessing
    t.push_back(spec("duplicate_spike_ms", T::Float, fv(0.25), 0, kInf, {}, "postprocessing", "final",
                     "Spikes of one unit closer than this (ms) are duplicates and removed; 0 disables."));
    t.push_back(spec("position_limit", T::Float, fv(100), 0, kInf, {}, "postprocessing", "final",
                     "Maximum channel distance (µm) used to estimate spike positions."));

    // ---- ks-tools' own settings (Kilosort4's run_kilosort arguments and additions)
    auto own = [&](SettingSpec s) {
        s.ks4 = false;
        t.push_back(std::move(s));
    };
    {
        SettingSpec s = spec("data_dtype", T::String, sv("int16"), 0, 0, {}, "", "filter",
                             "Sample type of the recording file: int16, uint16, int32 or float32.");
        s.choices = {"int16", "uint16", "int32", "float32"};
        own(s);
    }
    own(spec("invert_sign", T::Bool, bv(false), 0, 0, {}, "", "filter",
             "Multiply the data by -1 (for recordings whose spikes are positive-going)."));
    {
        SettingSpec s = spec("common_reference", T::String, sv("median"), 0, 0, {}, "", "filter",
                             "Common reference per shank after removing each channel's mean: median "
                             "(Kilosort4's), mean, or none.");
        s.choices = {"median", "mean", "none"};
        own(s);
    }
    // ---- ks-curate's criteria (SpikeLab's and the field's; formats/curation.md). None = not applied.
    own(spec("threshold_ms", T::Float, fv(1.5), 0, kInf, {0}, "", "curate",
             "Refractory period (ms) for the ISI-violation metrics."));
    own(spec("min_spikes", T::Int, none(), 0, kInf, {}, "", "curate",
             "Curation: remove units with fewer spikes (None: not applied)."));
    own(spec("min_rate_hz", T::Float, none(), 0, kInf, {}, "", "curate",
             "Curation: remove units firing less often (Hz; None: not applied)."));
    own(spec("isi_max", T::Float, none(), 0, kInf, {}, "", "curate",
             "Curation: remove units whose ISI-violation ratio (Hill et al.) exceeds this (None: not applied)."));
    own(spec("min_snr", T::Float, none(), 0, kInf, {}, "", "curate",
             "Curation: remove units with a lower SNR (None: not applied)."));
    own(spec("max_std_norm", T::Float, none(), 0, kInf, {}, "", "curate",
             "Curation: remove units whose waveform spread (std_norm) exceeds this (None: not applied)."));
    own(spec("min_presence", T::Float, none(), 0, 1, {}, "", "curate",
             "Curation: remove units present in a smaller fraction of 60-s bins (None: not applied)."));
    own(spec("max_amplitude_cutoff", T::Float, none(), 0, 0.5, {}, "", "curate",
             "Curation: remove units missing more of their amplitude distribution (None: not applied)."));
    own(spec("dist_um", T::Float, none(), 0, kInf, {}, "", "curate",
             "Curation: merge duplicate units closer than this (µm) with similar waveforms (None: no merging)."));
    own(spec("merge_cosine", T::Float, fv(0.9), -1, 1, {}, "", "curate",
             "Curation: waveform cosine similarity at or above which nearby units may merge."));
    own(spec("merge_max_isi", T::Float, fv(0.04), 0, 1, {}, "", "curate",
             "Curation: ISI-violation fraction bound for merging (each unit, and the rise a merge may cause)."));
    return t;
}

}  // namespace

const std::vector<SettingSpec>& Settings::table() {
    static const std::vector<SettingSpec> t = build_table();
    return t;
}

const std::vector<std::string>& pipeline_stages() {
    static const std::vector<std::string> s = {"filter", "whiten", "drift",  "detect", "cluster",
                                               "match",  "final",  "curate", "phy",   "report"};
    return s;
}

}  // namespace ks
