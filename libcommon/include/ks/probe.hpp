#pragma once
// Probes: which file rows hold ephys channels and where the contacts are (formats/probe.md).
// Readers: Kilosort4 JSON, .prb (Python-literal channel_groups, parsed not executed),
// Kilosort .mat channel maps (libmatio), and built-in Neuropixels layouts by name.
#include <string>
#include <vector>

namespace ks {

struct Probe {
    std::string name;            // file name or built-in name
    std::vector<int> chanMap;    // 0-based file rows, in the channel order used downstream
    std::vector<double> xc, yc;  // contact positions (µm), parallel to chanMap
    std::vector<int> kcoords;    // shank (group) index per channel, parallel to chanMap

    int n_chan() const { return static_cast<int>(chanMap.size()); }
    int n_shanks() const;        // number of distinct kcoords values

    // A path (.json, .prb, .mat) or a built-in name (see builtin_probe_names()).
    // Throws Error(usage) naming the file and what is wrong.
    static Probe load(const std::string& path_or_name);
    static Probe from_json_text(const std::string& text, const std::string& origin);
    static Probe from_prb_text(const std::string& text, const std::string& origin);
    static Probe from_mat(const std::string& path);
    static Probe builtin(const std::string& name);   // throws Error(usage) listing the names
    static std::vector<std::string> builtin_probe_names();

    // Consistency: equal lengths, no duplicate channels, finite positions, >= 1 channel.
    void validate(const std::string& origin) const;
    // Against a recording with `n_chan_bin` rows: every chanMap entry < n_chan_bin.
    void check_fits(int n_chan_bin, const std::string& recording) const;

    // Kilosort4's JSON layout: {"chanMap": [...], "xc": [...], "yc": [...], "kcoords": [...], "n_chan": N}.
    std::string to_json() const;
};

}  // namespace ks
