// ks-curate: quality metrics, curation criteria and history. See stages/curate.hpp, formats/curation.md.
#include "ks/stages/curate.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/filtered.hpp"
#include "ks/json.hpp"
#include "ks/log.hpp"
#include "ks/npy.hpp"
#include "ks/output_file.hpp"
#include "ks/probe.hpp"
#include "ks/provenance.hpp"

namespace ks::curate {

namespace fs = std::filesystem;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Criteria Criteria::from(const Settings& s) {
    Criteria c;
    auto opt = [&](const char* name) { return s.is_none(name) ? kNaN : s.get_float(name); };
    c.threshold_ms = s.get_float("threshold_ms");
    c.min_spikes = opt("min_spikes");
    c.min_rate_hz = opt("min_rate_hz");
    c.isi_max = opt("isi_max");
    c.min_snr = opt("min_snr");
    c.max_std_norm = opt("max_std_norm");
    c.min_presence = opt("min_presence");
    c.max_amplitude_cutoff = opt("max_amplitude_cutoff");
    c.dist_um = opt("dist_um");
    c.merge_cosine = s.get_float("merge_cosine");
    c.merge_max_isi = s.get_float("merge_max_isi");
    return c;
}

double presence_ratio(const std::vector<double>& t_s, double duration_s, double bin_s) {
    const auto n_bins = static_cast<int64_t>(std::floor(duration_s / bin_s));
    if (n_bins < 1) return kNaN;
    std::vector<char> hit(n_bins, 0);
    for (double t : t_s) {
        const auto b = static_cast<int64_t>(std::floor(t / bin_s));
        if (b >= 0 && b < n_bins) hit[b] = 1;
    }
    return static_cast<double>(std::count(hit.begin(), hit.end(), 1)) / static_cast<double>(n_bins);
}

void isi_violations(const std::vector<double>& t_s, double duration_s, double threshold_s, double* ratio,
                    double* fraction) {
    const auto N = static_cast<double>(t_s.size());
    int64_t nv = 0;
    for (size_t i = 1; i < t_s.size(); ++i)
        if (t_s[i] - t_s[i - 1] < threshold_s) ++nv;
    *ratio = N > 0 ? static_cast<double>(nv) * duration_s / (2 * N * N * threshold_s) : kNaN;
    *fraction = N > 0 ? static_cast<double>(nv) / N : kNaN;
}

double amplitude_cutoff(const std::vector<double>& amplitudes) {
    constexpr int kBins = 100;
    if (amplitudes.size() < 500) return kNaN;
    const auto [mn, mx] = std::minmax_element(amplitudes.begin(), amplitudes.end());
    const double lo = *mn, hi = *mx, w = (hi - lo) / kBins;
    if (!(w > 0)) return kNaN;
    std::vector<double> pdf(kBins, 0.0);
    for (double a : amplitudes) pdf[std::min(kBins - 1, static_cast<int>((a - lo) / w))] += 1;
    for (double& v : pdf) v /= static_cast<double>(amplitudes.size()) * w;   // density
    std::vector<double> sm(kBins, 0.0);
    for (int i = 0; i < kBins; ++i) {
        double s = 0, ws = 0;
        for (int j = std::max(0, i - 12); j <= std::min(kBins - 1, i + 12); ++j) {
            const double g = std::exp(-0.5 * (i - j) * (i - j) / 9.0);
            s += g * pdf[j];
            ws += g;
        }
        sm[i] = s / ws;
    }
    const int peak = static_cast<int>(std::max_element(sm.begin(), sm.end()) - sm.begin());
    int g = peak;
    double best = INFINITY;
    for (int i = peak; i < kBins; ++i)
        if (std::fabs(sm[i] - sm[0]) < best) {
            best = std::fabs(sm[i] - sm[0]);
            g = i;
        }
    double missed = 0;
    for (int i = g; i < kBins; ++i) missed += sm[i] * w;
    return std::min(missed, 0.5);
}

namespace {

std::string fmt(double v, const char* f = "%.6g") { return std::isnan(v) ? "nan" : log::format(f, v); }

double median(std::vector<double> v) {
    if (v.empty()) return kNaN;
    const size_t m = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + m, v.end());
    double r = v[m];
    if (v.size() % 2 == 0) r = 0.5 * (r + *std::max_element(v.begin(), v.begin() + m));
    return r;
}

struct FinalRecord {
    int nt = 61, nt0min = 20;
};

double uv_per_bit(const std::string& filtered_json) {
    simdjson::dom::parser parser;
    simdjson::padded_string text;
    simdjson::dom::element root;
    double v = 0;
    if (simdjson::padded_string::load(filtered_json).get(text) || parser.parse(text).get(root)) return kNaN;
    if (root["uv_per_bit"].get_double().get(v)) return kNaN;
    return v;
}

}  // namespace

Summary run(const std::string& work_dir, const Criteria& cr, const RunOptions& opt) {
    if (work_dir.empty()) throw Error(Exit::usage, "--work DIR is required");
    const std::string fdir = work_dir + "/final", record = fdir + "/final.json";
    std::error_code ec;
    if (!fs::exists(record, ec))
        throw Error(Exit::usage, record + ": not found; run ks-cluster --work " + work_dir + " --final first");
    // Refuse a folder another version wrote, or one truncated or changed after its stage finished.
    verify_stage_record(fdir, "final", "ks-clusters", 1, "rerun ks-cluster --work " + work_dir + " --final", "final");
    verify_stage_record(work_dir + "/filter", "filter", "", 0, "rerun ks-filter");
    const Probe probe = Probe::load(work_dir + "/probe.json");
    const FilteredRecording rec(work_dir);
    const FilteredInfo info = rec.info();
    const double fs_hz = info.fs, T = static_cast<double>(info.n_samples) / fs_hz;
    const double uvpb = uv_per_bit(work_dir + "/filter/filtered.json");
    const int C = probe.n_chan();

    const std::vector<int64_t> t = read_npy_checked(fdir + "/spike_times.npy", Dtype::int64, 1).as<int64_t>();
    const std::vector<int32_t> clu = read_npy_checked(fdir + "/spike_clusters.npy", Dtype::int32, 1).as<int32_t>();
    const NpyArray wall_a = read_npy_checked(fdir + "/templates_pc.npy", Dtype::float32, 3);
    const NpyArray pos_a = read_npy_checked(fdir + "/spike_positions.npy", Dtype::float32, 2);
    const std::vector<double> contam = read_npy_checked(fdir + "/contam_pct.npy", Dtype::float64, 1).as<double>();
    const auto N = static_cast<int64_t>(t.size());
    const int K = static_cast<int>(wall_a.shape[0]), P = static_cast<int>(wall_a.shape[2]);
    if (static_cast<int64_t>(clu.size()) != N || pos_a.shape[0] != N || static_cast<int>(contam.size()) != K ||
        wall_a.shape[1] != C)
        throw Error(Exit::usage, fdir + ": the files disagree in length or channels; rerun ks-cluster --final");
    const std::vector<float> wall = wall_a.as<float>(), pos = pos_a.as<float>();
    const int nt = static_cast<int>(read_npy_checked(work_dir + "/detect/wPCA.npy", Dtype::float32, 2).shape[1]);
    const int nt0min = static_cast<int>(std::lround(20.0 * nt / 61.0));

    // Per unit: spikes, and the channels a waveform is read on (largest template energy first).
    constexpr int kChans = 8, kMaxWave = 500;
    std::vector<std::vector<int64_t>> spikes(K);
    for (int64_t i = 0; i < N; ++i) {
        if (clu[i] < 0 || clu[i] >= K) throw Error(Exit::usage, fdir + "/spike_clusters.npy: a unit outside templates_pc.npy's");
        spikes[clu[i]].push_back(i);
    }
    // SpikeLab's duplicate merge (when dist_um is set): lab[i] = the unit spike i ends in, -1 = dropped
    // as a duplicate of the unit it merged into; merged_into[k] = k, or the unit k went into.
    std::vector<int32_t> lab(clu), merged_into(K);
    std::iota(merged_into.begin(), merged_into.end(), 0);
    JsonWriter merges(0);
    merges.begin_array();
    int n_merges = 0;
    if (!std::isnan(cr.dist_um)) {
        const NpyArray T_a = read_npy_checked(fdir + "/templates.npy", Dtype::float32, 3);
        const std::vector<float> tw = T_a.as<float>();
        const int ntw = static_cast<int>(T_a.shape[1]);
        std::vector<double> ux(K), uy(K);
        for (int k = 0; k < K; ++k) {
            std::vector<double> xs, ys;
            for (int64_t i : spikes[k]) {
                xs.push_back(pos[2 * i]);
                ys.push_back(pos[2 * i + 1]);
            }
            ux[k] = median(xs);
            uy[k] = median(ys);
        }
        // Cosine of two units' mean (whitened) waveforms over all channels, best over lags of +-10 samples.
        auto cosine = [&](int a, int b) {
            const float* wa = tw.data() + static_cast<size_t>(a) * ntw * C;
            const float* wb = tw.data() + static_cast<size_t>(b) * ntw * C;
            double na = 0, nb = 0;
            for (size_t i = 0; i < static_cast<size_t>(ntw) * C; ++i) {
                na += static_cast<double>(wa[i]) * wa[i];
                nb += static_cast<double>(wb[i]) * wb[i];
            }
            if (!(na > 0 && nb > 0)) return 0.0;
            double best = -1;
            for (int l = -10; l <= 10; ++l) {
                double d = 0;
                for (int u = std::max(0, -l); u < std::min(ntw, ntw - l); ++u)
                    for (int c = 0; c < C; ++c)
                        d += static_cast<double>(wa[static_cast<size_t>(u) * C + c]) * wb[static_cast<size_t>(u + l) * C + c];
                best = std::max(best, d / std::sqrt(na * nb));
            }
            return best;
        };
        struct Pair {
            double cos, dist;
            int a, b;
        };
        std::vector<Pair> pairs;
        for (int a = 0; a < K; ++a)
            for (int b = a + 1; b < K; ++b) {
                const double d = std::hypot(ux[a] - ux[b], uy[a] - uy[b]);
                if (!(d <= cr.dist_um)) continue;
                const double c = cosine(a, b);
                if (c >= cr.merge_cosine) pairs.push_back({c, d, a, b});
            }
        std::stable_sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) { return x.cos > y.cos; });
        const double thr_s = cr.threshold_ms / 1000.0;
        const auto dup = static_cast<int64_t>(0.4e-3 * fs_hz);   // SpikeLab drops spikes within 0.4 ms
        std::vector<std::vector<int64_t>> members = spikes;   // spike indices, time order
        auto isi_frac = [&](const std::vector<int64_t>& m) {
            std::vector<double> ts;
            for (int64_t i : m) ts.push_back(static_cast<double>(t[i]) / fs_hz);
            double r, f;
            isi_violations(ts, T, thr_s, &r, &f);
            return f;
        };
        auto root = [&](int k) {
            while (merged_into[k] != k) k = merged_into[k];
            return k;
        };
        for (const Pair& pr : pairs) {
            const int ra = root(pr.a), rb = root(pr.b);
            if (ra == rb) continue;
            const double fa = isi_frac(members[ra]), fb = isi_frac(members[rb]);
            merges.begin_object();
            merges.key("units").begin_array().value(ra).value(rb).end_array();
            merges.key("cosine").value(pr.cos);
            merges.key("distance_um").value(pr.dist);
            merges.key("isi_fraction_before").begin_array().value(fa).value(fb).end_array();
            const char* verdict = "merged";
            std::vector<int64_t> m;
            double fm = kNaN;
            if (fa > cr.merge_max_isi || fb > cr.merge_max_isi) {
                verdict = "rejected: a unit's ISI-violation fraction is above merge_max_isi";
            } else {
                std::merge(members[ra].begin(), members[ra].end(), members[rb].begin(), members[rb].end(),
                           std::back_inserter(m), [&](int64_t x, int64_t y) { return t[x] < t[y]; });
                std::vector<int64_t> kept_m;
                for (int64_t i : m)
                    if (kept_m.empty() || t[i] - t[kept_m.back()] >= dup) kept_m.push_back(i);
                m.swap(kept_m);
                fm = isi_frac(m);
                merges.key("isi_fraction_after").value(fm);
                if (fm > std::max(fa, fb) + cr.merge_max_isi)
                    verdict = "rejected: the merge raises the ISI-violation fraction by more than merge_max_isi";
            }
            merges.key("result").value(verdict);
            if (m.empty() || std::string(verdict) != "merged") {
                merges.end_object();
                continue;
            }
            const bool a_keeps = members[ra].size() > members[rb].size() ||
                                 (members[ra].size() == members[rb].size() && ra < rb);
            const int keep = a_keeps ? ra : rb, gone = a_keeps ? rb : ra;
            merges.key("kept").value(keep);
            merges.key("absorbed").value(gone);
            merges.end_object();
            members[keep].swap(m);
            members[gone].clear();
            merged_into[gone] = keep;
            ++n_merges;
        }
        std::fill(lab.begin(), lab.end(), -1);
        for (int k = 0; k < K; ++k)
            for (int64_t i : members[k]) lab[i] = k;
        spikes.swap(members);
    }
    merges.end_array();
    const int nch = std::min(kChans, C);
    std::vector<int> cand(static_cast<size_t>(K) * nch);
    for (int k = 0; k < K; ++k) {
        std::vector<double> e(C, 0.0);
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < P; ++p) e[c] += std::pow(wall[(static_cast<size_t>(k) * C + c) * P + p], 2);
        std::vector<int> order(C);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return e[a] > e[b]; });
        for (int j = 0; j < nch; ++j) cand[static_cast<size_t>(k) * nch + j] = order[j];
    }
    std::vector<char> use_wave(N, 0);
    for (int k = 0; k < K; ++k) {
        const size_t stride = std::max<size_t>(1, (spikes[k].size() + kMaxWave - 1) / kMaxWave);
        for (size_t r = 0; r < spikes[k].size(); r += stride) use_wave[spikes[k][r]] = 1;
    }

    // One pass over the filtered recording: each spike's trough on its unit's main channel, and the
    // subsampled waveforms' sums on the unit's channels.
    std::vector<double> amp(N, 0.0), wsum(static_cast<size_t>(K) * nch * nt, 0.0), wsq(wsum.size(), 0.0);
    std::vector<int64_t> wcount(K, 0);
    {
        constexpr int64_t kChunk = 1 << 16;
        std::vector<float> x;
        int64_t i = 0;
        Progress progress(opt.progress, "reading waveforms", info.n_samples, "samples");
        for (int64_t s0 = 0; s0 < info.n_samples && i < N; s0 += kChunk) {
            const int64_t s1 = std::min(info.n_samples, s0 + kChunk), b0 = s0 - nt, len = s1 - s0 + 2 * nt;
            x.resize(static_cast<size_t>(C) * len);
            rec.read(b0, len, x.data());
            for (; i < N && t[i] < s1; ++i) {
                if (t[i] < s0 || lab[i] < 0) continue;
                const int k = lab[i];
                const int* ch = cand.data() + static_cast<size_t>(k) * nch;
                amp[i] = -x[static_cast<size_t>(ch[0]) * len + (t[i] - b0)];
                if (!use_wave[i]) continue;
                ++wcount[k];
                for (int j = 0; j < nch; ++j)
                    for (int tau = 0; tau < nt; ++tau) {
                        const double v = x[static_cast<size_t>(ch[j]) * len + (t[i] - nt0min + tau - b0)];
                        wsum[(static_cast<size_t>(k) * nch + j) * nt + tau] += v;
                        wsq[(static_cast<size_t>(k) * nch + j) * nt + tau] += v * v;
                    }
            }
            progress.advance(s1 - s0);
        }
        progress.finish();
    }
    // Noise of each channel: MAD / 0.6745 over up to 20 evenly spaced stretches of 10 000 samples.
    std::vector<double> noise(C, 0.0);
    {
        const int64_t len = std::min<int64_t>(10000, info.n_samples);
        const int n_chunks = static_cast<int>(std::min<int64_t>(20, std::max<int64_t>(1, info.n_samples / len)));
        std::vector<float> x(static_cast<size_t>(C) * len);
        std::vector<std::vector<double>> vals(C);
        for (int q = 0; q < n_chunks; ++q) {
            const int64_t s0 = n_chunks == 1 ? 0 : (info.n_samples - len) * q / (n_chunks - 1);
            rec.read(s0, len, x.data());
            for (int c = 0; c < C; ++c) vals[c].insert(vals[c].end(), x.begin() + static_cast<size_t>(c) * len, x.begin() + static_cast<size_t>(c + 1) * len);
        }
        for (int c = 0; c < C; ++c) {
            const double m = median(vals[c]);
            for (double& v : vals[c]) v = std::fabs(v - m);
            noise[c] = median(vals[c]) / 0.6745;
        }
    }

    // Metrics and criteria.
    const double to_uv = std::isnan(uvpb) ? 1.0 : uvpb;
    const std::vector<std::string> names = {"n_spikes", "firing_rate_hz", "presence_ratio", "isi_violations_ratio",
                                            "isi_violations_fraction", "contam_pct", "amplitude_median",
                                            "amplitude_cutoff", "snr", "std_norm", "peak_channel", "x_um", "y_um"};
    const size_t M = names.size();
    std::vector<double> met(static_cast<size_t>(K) * M, kNaN);
    struct Check {
        const char* criterion;
        const char* metric;
        double threshold;
        bool min;   // true: metric must be >= threshold
    };
    const std::vector<Check> checks = {{"min_spikes", "n_spikes", cr.min_spikes, true},
                                       {"min_rate_hz", "firing_rate_hz", cr.min_rate_hz, true},
                                       {"min_presence", "presence_ratio", cr.min_presence, true},
                                       {"isi_max", "isi_violations_ratio", cr.isi_max, false},
                                       {"max_amplitude_cutoff", "amplitude_cutoff", cr.max_amplitude_cutoff, false},
                                       {"min_snr", "snr", cr.min_snr, true},
                                       {"max_std_norm", "std_norm", cr.max_std_norm, false}};
    auto col = [&](const char* name) {
        return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
    };
    std::vector<uint8_t> kept(K, 1);
    JsonWriter hist(2);
    hist.begin_object();
    hist.key("format").value("ks-curation-history");
    hist.key("version").value(1);
    hist.key("criteria").begin_object();
    for (const auto& c : checks) {
        hist.key(c.criterion);
        if (std::isnan(c.threshold)) hist.null(); else hist.value(c.threshold);
    }
    hist.key("threshold_ms").value(cr.threshold_ms);
    hist.key("dist_um");
    if (std::isnan(cr.dist_um)) hist.null(); else hist.value(cr.dist_um);
    hist.key("merge_cosine").value(cr.merge_cosine);
    hist.key("merge_max_isi").value(cr.merge_max_isi);
    hist.end_object();
    hist.key("merges").raw(merges.str());
    hist.key("units").begin_array();
    int n_kept = 0;
    for (int k = 0; k < K; ++k) {
        double* m = met.data() + static_cast<size_t>(k) * M;
        if (merged_into[k] != k) {
            int r = k;
            while (merged_into[r] != r) r = merged_into[r];
            m[0] = 0;   // n_spikes: its spikes are now the other unit's
            hist.begin_object();
            hist.key("unit").value(k);
            hist.key("kept").value(false);
            hist.key("removed_by").value("merge");
            hist.key("merged_into").value(r);
            hist.end_object();
            kept[k] = 0;
            continue;
        }
        std::vector<double> ts;
        ts.reserve(spikes[k].size());
        for (int64_t i : spikes[k]) ts.push_back(static_cast<double>(t[i]) / fs_hz);
        std::vector<double> a;
        for (int64_t i : spikes[k]) a.push_back(amp[i] * to_uv);
        m[col("n_spikes")] = static_cast<double>(ts.size());
        m[col("firing_rate_hz")] = static_cast<double>(ts.size()) / T;
        m[col("presence_ratio")] = presence_ratio(ts, T);
        isi_violations(ts, T, cr.threshold_ms / 1000.0, &m[col("isi_violations_ratio")], &m[col("isi_violations_fraction")]);
        m[col("contam_pct")] = contam[k];
        m[col("amplitude_median")] = median(a);
        m[col("amplitude_cutoff")] = amplitude_cutoff(a);
        if (wcount[k] > 0) {
            // Peak: the channel and sample of the largest |mean|; SNR and std_norm there.
            double best = -1;
            int bj = 0, bt = 0;
            for (int j = 0; j < nch; ++j)
                for (int tau = 0; tau < nt; ++tau) {
                    const double mean = wsum[(static_cast<size_t>(k) * nch + j) * nt + tau] / wcount[k];
                    if (std::fabs(mean) > best) {
                        best = std::fabs(mean);
                        bj = j;
                        bt = tau;
                    }
                }
            const int pc = cand[static_cast<size_t>(k) * nch + bj];
            const double mean = wsum[(static_cast<size_t>(k) * nch + bj) * nt + bt] / wcount[k];
            const double var = std::max(0.0, wsq[(static_cast<size_t>(k) * nch + bj) * nt + bt] / wcount[k] - mean * mean);
            m[col("snr")] = noise[pc] > 0 ? std::fabs(mean) / noise[pc] : kNaN;
            m[col("std_norm")] = std::fabs(mean) > 0 ? std::sqrt(var) / std::fabs(mean) : kNaN;
            m[col("peak_channel")] = pc;
        }
        std::vector<double> xs, ys;
        for (int64_t i : spikes[k]) {
            xs.push_back(pos[2 * i]);
            ys.push_back(pos[2 * i + 1]);
        }
        m[col("x_um")] = median(xs);
        m[col("y_um")] = median(ys);

        hist.begin_object();
        hist.key("unit").value(k);
        const char* decided = nullptr;
        double decided_value = 0, decided_threshold = 0;
        hist.key("checks").begin_object();
        for (const auto& c : checks) {
            if (std::isnan(c.threshold)) continue;
            const double v = m[col(c.metric)];
            // An undefined metric (NaN: too short a recording or too few spikes) does not remove a unit.
            const bool pass = std::isnan(v) || (c.min ? v >= c.threshold : v <= c.threshold);
            hist.key(c.criterion).begin_object();
            hist.key("metric").value(c.metric);
            hist.key("value");
            if (std::isnan(v)) hist.null(); else hist.value(v);
            hist.key("threshold").value(c.threshold);
            hist.key("passed").value(pass);
            hist.end_object();
            if (!pass && !decided) {
                decided = c.criterion;
                decided_value = v;
                decided_threshold = c.threshold;
            }
        }
        hist.end_object();
        hist.key("kept").value(decided == nullptr);
        if (decided) {
            hist.key("removed_by").value(decided);
            hist.key("value").value(decided_value);
            hist.key("threshold").value(decided_threshold);
            kept[k] = 0;
        } else {
            ++n_kept;
        }
        hist.end_object();
    }
    hist.end_array();
    hist.key("n_units").value(K);
    hist.key("n_kept").value(n_kept);
    hist.end_object();

    const std::string dir = work_dir + "/curate";
    fs::create_directories(dir, ec);
    if (ec) throw Error(Exit::resources, dir + ": cannot create: " + ec.message());
    remove_stale_output(dir + "/curate.json");
    {
        // KS4's label, read back from final/.
        std::vector<std::string> ks(K, "mua");
        std::FILE* f = std::fopen((fdir + "/cluster_KSLabel.tsv").c_str(), "r");
        if (f) {
            char line[256];
            while (std::fgets(line, sizeof line, f)) {
                int id = -1;
                char lab[64] = {0};
                if (std::sscanf(line, "%d\t%63s", &id, lab) == 2 && id >= 0 && id < K) ks[id] = lab;
            }
            std::fclose(f);
        }
        std::string tsv = "cluster_id\tKSLabel\tcurated";
        for (const auto& n : names) tsv += "\t" + n;
        tsv += "\n";
        for (int k = 0; k < K; ++k) {
            tsv += std::to_string(k) + "\t" + ks[k] + "\t" + (merged_into[k] != k ? "merged" : kept[k] ? "pass" : "fail");
            for (size_t j = 0; j < M; ++j) tsv += "\t" + fmt(met[static_cast<size_t>(k) * M + j]);
            tsv += "\n";
        }
        write_file_atomic(dir + "/metrics.tsv", tsv);
    }
    write_npy(dir + "/metrics.npy", {K, static_cast<int64_t>(M)}, met.data());
    write_npy(dir + "/unit_kept.npy", {K}, kept.data());
    {
        std::vector<int64_t> ct;
        std::vector<int32_t> cc;
        for (int64_t i = 0; i < N; ++i)
            if (lab[i] >= 0 && kept[lab[i]]) {
                ct.push_back(t[i]);
                cc.push_back(lab[i]);
            }
        write_npy(dir + "/spike_times.npy", {static_cast<int64_t>(ct.size())}, ct.data());
        write_npy(dir + "/spike_clusters.npy", {static_cast<int64_t>(cc.size())}, cc.data());
    }
    {
        // Mean filtered (unwhitened) waveform of each unit on its channels, for the report's
        // footprints and for cross-session matching; NaN for a unit merged into another.
        std::vector<float> mw(wsum.size());
        for (int k = 0; k < K; ++k)
            for (size_t q = 0; q < static_cast<size_t>(nch) * nt; ++q) {
                const size_t i = static_cast<size_t>(k) * nch * nt + q;
                mw[i] = wcount[k] > 0 ? static_cast<float>(wsum[i] / wcount[k] * to_uv) : std::numeric_limits<float>::quiet_NaN();
            }
        write_npy(dir + "/mean_waveforms.npy", {K, nch, nt}, mw.data());
        write_npy(dir + "/waveform_channels.npy", {K, nch}, cand.data());
    }
    write_file_atomic(dir + "/curation.json", hist.str() + "\n");

    Provenance prov;
    prov.tool = opt.tool;
    prov.stage = "curate";
    prov.command_line = opt.command_line;
    prov.settings_json = opt.settings_json;
    prov.inputs = {file_identity(record), file_identity(work_dir + "/filter/filter.json"), file_identity(work_dir + "/probe.json")};
    for (const char* f : {"metrics.tsv", "metrics.npy", "unit_kept.npy", "spike_times.npy", "spike_clusters.npy", "mean_waveforms.npy",
                          "waveform_channels.npy", "curation.json"})
        prov.outputs.push_back(file_identity(dir + "/" + f));
    JsonWriter j(0);
    j.begin_object();
    j.key("format").value("ks-curation");
    j.key("version").value(1);
    j.key("n_units").value(K);
    j.key("n_kept").value(n_kept);
    j.key("n_merges").value(n_merges);
    j.key("amplitude_unit").value(std::isnan(uvpb) ? "recording units" : "uV");
    j.key("waveform_samples").value(nt);
    j.key("waveform_nt0min").value(nt0min);
    j.key("metrics").begin_array();
    for (const auto& n : names) j.value(n);
    j.end_array();
    j.end_object();
    prov.extra_json = j.str();
    write_provenance(dir + "/curate.json", prov);
    log::info("%d of %d units pass the curation criteria: %s/ (metrics.tsv, curation.json)", n_kept, K, dir.c_str());
    return {K, n_kept};
}

}  // namespace ks::curate
