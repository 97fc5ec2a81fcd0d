#pragma once
// ks-sim's engine: a ground-truth simulator of extracellular recordings (formats/ground-truth.md).
//
// Units are point-source neurons (soma, dendritic return currents, or an axon) placed in 3-D
// around the probe; their spikes are rendered on every channel from the current sources'
// distances, so a unit that moves relative to the probe (drift) changes shape on each channel.
// Noise is coloured (AP-band spectrum) and correlated across channels. Every random draw comes
// from ks::sim's own generators keyed on (seed, what, index), so the output is identical
// for a given seed and configuration on any platform and thread count.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ks/probe.hpp"
#include "ks/progress.hpp"

namespace ks::sim {

inline constexpr int kFormatVersion = 1;   // formats/ground-truth.md "History"
inline constexpr int kTemplateNt = 61;     // gt/templates.npy samples per waveform (Kilosort4's nt)
inline constexpr int kTemplateNt0min = 20; // index of the peak sample in gt/templates.npy (nt0min)

// ---- deterministic random numbers ------------------------------------------------------------

// splitmix64's finaliser: a bijective 64-bit mixer.
uint64_t mix64(uint64_t x);
// A stream key from a seed and up to three indices (unit, session, purpose, ...).
uint64_t key(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);
// 53 random bits -> a double in the open interval (0, 1).
double unit_open(uint64_t bits);
// Inverse of the standard normal CDF, 0 < p < 1 (Wichura's AS241, about 1e-16 relative error).
double normal_quantile(double p);
// N(0, 1) for index `i` of stream `stream_key`, by random access: the same value whatever the
// order or chunking in which samples are asked for.
double counter_normal(uint64_t stream_key, uint64_t i);
// out[j] = scale * counter_normal(stream_key, first + j) for j < n (faster in bulk).
void counter_normals(uint64_t stream_key, uint64_t first, int64_t n, float scale, float* out);

// xoshiro256** seeded through splitmix64; its own distributions, not std::'s (those differ
// between standard libraries).
class Rng {
public:
    explicit Rng(uint64_t seed);
    uint64_t next();
    double uniform();                          // (0, 1)
    double uniform(double lo, double hi);
    double normal();
    double normal(double mean, double sd) { return mean + sd * normal(); }
    double exponential(double mean);
    double lognormal(double median, double sigma);
    // Log-normal restricted to [lo, hi] by rejection (falls back to clamping after 1000 tries).
    double truncated_lognormal(double median, double sigma, double lo, double hi);
    int below(int n);                          // uniform in [0, n)
    bool chance(double p);

private:
    uint64_t s_[4];
};

// ---- configuration ---------------------------------------------------------------------------

// Probe motion relative to the tissue (formats/ground-truth.md "Motion").
struct DriftConfig {
    bool rigid = false;      // slow smooth drift reaching +-rigid_um over the recording
    bool jitter = false;     // fast random motion, RMS jitter_um, 0.1-3 Hz
    bool step = false;       // one sudden step of step_um (random sign) in the middle third
    bool nonrigid = false;   // depth dependence: slow drift scaled along the probe + a stretch term
    double rigid_um = 30;
    double jitter_um = 2;
    double step_um = 20;
    double nonrigid_um = 15;   // stretch amplitude at the probe's ends (0 in its middle)
    double nonrigid_gain = 0.3;  // rigid+step drift is (1 + gain * relative depth) times larger at the top

    bool any() const { return rigid || jitter || step || nonrigid; }
    // "none", or a comma list of rigid, jitter, step, nonrigid; "mixed" = all four.
    // Throws Error(usage) naming --drift.
    static DriftConfig parse(const std::string& text);
    std::string describe() const;  // the canonical text parse() accepts
};

struct Config {
    std::string preset = "smoke";
    uint64_t seed = 1;
    double fs_hz = 30000;
    double duration_s = 30;
    Probe probe;                  // channels rendered (probe order); file rows = probe.chanMap
    std::string probe_source;     // what --probe named, or the preset's layout
    int n_chan_bin = 0;           // file rows; 0 = max(chanMap) + 1

    // units
    int n_units = -1;             // -1: units_per_100um x the placement range's length
    double units_per_100um = 10;  // per 100 µm of depth, over each shank's placement range
                                  // (its sites' extent + margin_um at both ends)
    double amp_min_uv = 20, amp_max_uv = 450;        // peak |amplitude| on the best channel (µV)
    double amp_median_uv = 70, amp_sigma = 0.6;      // log-normal, truncated to the range
    double rate_min_hz = 0.5, rate_max_hz = 30;      // mean firing rate
    double rate_median_hz = 3, rate_sigma = 1.0;     // log-normal, truncated to the range
    double refractory_min_ms = 1.5, refractory_max_ms = 3.0;  // per-unit absolute refractory period
    double frac_narrow = 0.2, frac_positive = 0.06, frac_axonal = 0.05;  // rest are regular-spiking
    double frac_large_repol = 0.15;  // of regular-spiking units: repolarisation 50-90% of the trough
    double burst_fraction = 0.15;    // of regular-spiking units: complex-spike bursts
    double twin_fraction = 0.1;      // units given a near twin (10-25 µm away, similar waveform)
    double sync_fraction = 0.2;      // units driving a near partner (some spikes within 0.6 ms)
    double rate_modulation = 0.3;    // sigma of the slow log-rate fluctuation
    double amp_jitter = 0.06;        // per-spike amplitude sigma (log)
    double margin_um = 50;           // units placed up to this far beyond the probe's ends/sides
    double z_min_um = 6, z_max_um = 80;  // soma's distance from the probe plane

    // noise (µV), AP band
    double noise_uv = 10;            // RMS per channel (median; channels vary by noise_spread)
    double noise_spread = 0.08;      // sigma of per-channel noise level (relative)
    double noise_corr = 0.3;         // correlation of nearest-neighbour channels
    double noise_common = 0.05;      // fraction of noise variance common to all channels
    double noise_length_um = 40;     // length scale of the spatially correlated part
    double lfp_uv = 15;              // RMS of slow (1-250 Hz) field potential left in the AP band
    double artifact_rate_hz = 0;     // large transients on all channels (0 = none)

    DriftConfig drift;

    // file
    double uv_per_bit = 2.34375;     // Neuropixels 1.0 AP band, gain 500: 1.2 V / 1024 / 500
    int adc_bits = 10;               // samples saturate at +-2^(adc_bits-1) codes

    // sessions
    int sessions = 1;
    double session_shift_um = 50;    // probe offset per session, up to this in depth
    double turnover = 0.15;          // fraction of units replaced between consecutive sessions
    double session_change = 0.05;    // relative waveform change per session (amplitude, width)

    // motion ground truth sampling
    double motion_bin_s = 0.1;
    double motion_depth_bin_um = 20;

    std::string command_line;        // recorded in sim.json
};

std::vector<std::string> preset_names();
// The named preset (smoke, np64, np64-drift, np384). Throws Error(usage) naming --preset.
Config preset(const std::string& name);
// Applies "--name value" options (names without the dashes: out is ignored) on top of
// preset(options["preset"] or "smoke"), then validates. Throws Error(usage) naming the option.
Config config_from_options(const std::vector<std::pair<std::string, std::string>>& options);
// Throws Error(usage) naming the option that is out of range.
void validate(const Config& cfg);
// The resolved configuration as a JSON object (sim.json "config").
std::string config_json(const Config& cfg);
// Channels (probe indices) of a Neuropixels 1.0 section: the first n sites of neuropixels1.
Probe neuropixels1_section(int n_chan);

// ---- units -----------------------------------------------------------------------------------

enum class UnitType { regular, narrow, positive, axonal };
const char* unit_type_name(UnitType t);

// A point where a unit's membrane current enters or leaves: its offset from the soma (µm), and
// the radius over which its current is spread (a soma, a stretch of dendrite), which softens
// its potential near the probe: 1 / sqrt(d^2 + r^2).
struct Source {
    double dx_um = 0, dy_um = 0, dz_um = 0;
    double radius_um = 6;
};

// An asymmetric Gaussian bump in time: a * exp(-(t-mu)^2 / 2 sigma^2), sigma left/right (ms).
struct Bump {
    double a, mu_ms, sl_ms, sr_ms;
};

// One current component of a spike (a sodium sink, a potassium source, one dendrite node of a
// back-propagating spike, an axon node firing): its time course, shared by every source, and the signed share
// of each source. The weights sum to zero, so charge is conserved at every instant and the
// unit's far field is a dipole, not a monopole.
struct Component {
    Bump shape;
    std::vector<double> weight;   // per source
};

// What makes a unit, in the brain frame (session 0's probe coordinates).
struct UnitParams {
    int global_id = 0;
    UnitType type = UnitType::regular;
    double x_um = 0, y_um = 0, z_um = 0;   // soma position
    double amplitude_uv = 100;             // peak |V| on the best channel, at rest
    double rate_hz = 3;
    double refractory_ms = 2;
    bool large_repol = false;
    bool bursting = false;
    double burst_prob = 0;      // probability that an event is a burst
    double burst_isi_ms = 4;    // mean interval inside bursts
    double burst_drop = 0;      // relative amplitude drop per spike inside a burst
    int twin_of = -1;           // global id of the unit this one is a near copy of
    int sync_partner = -1;      // global id of a near unit driven by this one
    double sync_prob = 0;       // probability that a spike of this unit drives the partner
    std::vector<Source> sources;        // sources[0] is the soma (or the axon node at x, y, z)
    std::vector<Component> components;  // the membrane currents
};

// A unit ready to render on a probe: params in that probe's frame plus its waveform tables.
struct Unit {
    UnitParams p;
    int local_id = 0;
    int peak_channel = 0;            // probe index
    double trough_to_peak_ms = 0;    // on the peak channel
    std::vector<int> channels;       // probe indices it is rendered on (footprint), ascending
    int os = 8;                      // sub-sample phases per sample
    int pre = 30, nt = 91;           // samples before the peak and window length
    std::vector<float> table;        // (os+1) x n_sources x nt: source currents, scaled to µV·µm
};

// Waveform window in samples at fs: 1 ms before the peak (>= 20), 2 ms after (>= 40).
void waveform_window(double fs_hz, int& pre, int& nt);
// Builds the unit's tables and footprint. `max_motion_um` widens the footprint to cover drift.
Unit build_unit(const UnitParams& p, const Probe& probe, double fs_hz, double max_motion_um);
// Adds one spike (peak at sample t_spike, sub-sample phase index 0..os with os/2 = on time,
// tissue displaced by motion_um in y, amplitude factor amp) into buf (channel-major,
// channels [ch_lo, ch_hi) of the probe, samples [buf_t0, buf_t0 + buf_len), row stride buf_len).
void render_spike(const Unit& u, const Probe& probe, double motion_um, int phase, float amp,
                  int64_t t_spike, int64_t buf_t0, int64_t buf_len, int ch_lo, int ch_hi, float* buf);
// The unit's mean waveform (µV) at rest: nt x n_chan (probe order), peak at nt0min.
std::vector<float> unit_template(const Unit& u, const Probe& probe, double motion_um, int nt, int nt0min);

// ---- motion ----------------------------------------------------------------------------------

// Displacement of the tissue relative to the probe (µm, + = units appear at larger y).
class Motion {
public:
    Motion() = default;
    Motion(const DriftConfig& d, uint64_t seed, double duration_s, double y_lo_um, double y_hi_um);
    double at(double t_s, double y_um) const;
    double max_abs_um() const { return max_abs_; }  // bound on |at()| over the recording
    double step_time_s() const { return step_t_; }

private:
    struct Wave { double amp, freq_hz, phase; };
    static double sum(const std::vector<Wave>& w, double t);
    DriftConfig d_;
    double duration_ = 0, y_mid_ = 0, y_half_ = 1;
    std::vector<Wave> slow_, stretch_, jitter_;
    double slow_trend_ = 0, stretch_trend_ = 0, slow_norm_ = 0, stretch_norm_ = 0;
    double step_t_ = -1, step_sign_ = 1;
    double max_abs_ = 0;
};

// ---- spike trains ----------------------------------------------------------------------------

struct Spikes {
    std::vector<int64_t> t;       // peak sample, ascending (ties: ascending unit)
    std::vector<int32_t> unit;    // local unit index
    std::vector<float> amp;       // per-spike amplitude factor (burst attenuation x jitter)
    std::vector<int8_t> phase;    // sub-sample phase index 0..os (os/2 = exactly on the sample)
    std::size_t size() const { return t.size(); }
};

// Spike trains of `units` over [first, last] samples (spikes whose waveform fits the file).
// Refractory periods hold in whole samples: t[i+1] - t[i] >= ceil(refractory * fs) per unit.
Spikes make_spikes(const std::vector<Unit>& units, uint64_t seed, int session, double fs_hz,
                   int64_t first, int64_t last, double rate_modulation, double amp_jitter, int os);
int64_t refractory_samples(double refractory_ms, double fs_hz);

// ---- noise -----------------------------------------------------------------------------------

class Noise {
public:
    Noise() = default;
    Noise(const Config& cfg, const Probe& probe, uint64_t seed);
    // Adds noise (+ LFP) for samples [t0, t0 + n) into out (channel-major, stride n).
    // OpenMP over channels; identical for any thread count.
    void add(int64_t t0, int64_t n, float* out) const;
    const std::vector<double>& channel_uv() const { return chan_uv_; }   // configured RMS per channel
    double expected_neighbour_corr() const { return nn_corr_; }
    double fraction_independent() const { return f_ind_; }
    double fraction_correlated() const { return f_bio_; }

private:
    struct Tap { int source; float w; };
    double fs_ = 30000;
    uint64_t key_ind_ = 0, key_src_ = 0, key_com_ = 0;
    int n_chan_ = 0, n_src_ = 0, warmup_ = 0;
    std::vector<double> chan_uv_;
    std::vector<std::vector<Tap>> taps_;  // per channel: sources of the correlated part
    double f_ind_ = 1, f_bio_ = 0, f_com_ = 0, nn_corr_ = 0;
    // filter: s = white_gain * x + pink_gain * LP1(x), then HP1, then Butterworth LP2
    double gain_norm_ = 1, lp1_b0_ = 0, lp1_a1_ = 0, hp_b0_ = 0, hp_a1_ = 0;
    double lp2_b_[3] = {0, 0, 0}, lp2_a_[2] = {0, 0};
    double white_gain_ = 0.25, pink_gain_ = 1;
    // LFP: sum of sinusoids, channel value A(t) + B(t) * relative depth
    std::vector<double> lfp_freq_, lfp_phase_, lfp_a_, lfp_b_;
    std::vector<float> chan_rel_depth_;
};

// ---- sessions and writing --------------------------------------------------------------------

struct Artifact {
    int64_t start = 0, length = 0;   // samples
    double amp_uv = 0, tau_ms = 1, freq_hz = 0;
};

// The whole population across sessions (brain frame) and who is present when.
struct Population {
    std::vector<UnitParams> units;               // by global id
    std::vector<std::vector<int>> present;       // per session: global ids, ascending
    std::vector<std::pair<double, double>> probe_offset_um;  // per session: probe (x, y) shift
};
Population make_population(const Config& cfg);
// Unit `global_id` as it is in `session` (slow changes applied), in that session's probe frame.
UnitParams session_unit(const Config& cfg, const Population& pop, int global_id, int session);

// One session, everything needed to render any stretch of it.
class Session {
public:
    Session(const Config& cfg, const Population& pop, int index);
    int index() const { return index_; }
    int64_t n_samples() const { return n_samples_; }
    const std::vector<Unit>& units() const { return units_; }
    const Spikes& spikes() const { return spikes_; }
    const Motion& motion() const { return motion_; }
    const Noise& noise() const { return noise_; }
    const std::vector<Artifact>& artifacts() const { return artifacts_; }
    const Probe& probe() const { return cfg_.probe; }

    // Samples [t0, t0 + n) in µV before quantisation, channel-major (probe order, stride n).
    void render(int64_t t0, int64_t n, float* out_uv) const;
    // µV (channel-major, stride n) -> int16 file rows (n x n_chan_bin, interleaved).
    void quantise(const float* uv, int64_t n, int16_t* rows) const;
    int n_chan_bin() const { return n_chan_bin_; }

private:
    Config cfg_;
    int index_ = 0, n_chan_bin_ = 0;
    int64_t n_samples_ = 0;
    std::vector<Unit> units_;
    Spikes spikes_;
    Motion motion_;
    Noise noise_;
    std::vector<Artifact> artifacts_;
};

struct SimSummary {
    int n_sessions = 0;
    int n_units_total = 0;
    int64_t n_samples = 0;
    int64_t n_spikes = 0;             // all sessions
    double seconds = 0;               // wall time
    std::vector<std::string> dirs;    // the folders holding recording.bin
};

// Writes one recording folder (recording.bin, probe.json, params.json, gt/, sim.json last)
// or, with cfg.sessions > 1, out_dir/session_NN/ folders plus out_dir/sessions.json.
// out_dir may exist only if empty or a former ks-sim output (Error(usage) otherwise);
// failed writes throw Error(resources). Every file is atomic (OutputFile).
SimSummary simulate(const Config& cfg, const std::string& out_dir, ProgressMode progress);

}  // namespace ks::sim
