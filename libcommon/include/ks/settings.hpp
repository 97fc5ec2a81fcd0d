#pragma once
// Settings: every Kilosort4 setting (names, defaults, ranges as in Kilosort4's parameter
// table) plus ks-tools' own, resolved from defaults, --params files and --set values.
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ks {

enum class SettingType { Int, Float, Bool, FloatList, String };

// A setting's value. `none` is Kilosort4's None ("determined automatically" / "off").
struct SettingValue {
    bool none = true;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::vector<double> list;
    std::string s;
};

struct SettingSpec {
    std::string name;
    SettingType type;
    SettingValue default_value;
    double min = -std::numeric_limits<double>::infinity();  // inclusive
    double max = std::numeric_limits<double>::infinity();   // inclusive
    std::vector<double> exclude;           // values not allowed inside [min, max]
    std::vector<std::string> choices;      // allowed strings (String type)
    bool nullable = false;                 // may be None
    std::string ks4_step;                  // Kilosort4's 'step' ("" for ks-tools' own settings)
    std::string stage;                     // first ks-tools stage that uses it (filter, whiten, ...)
    std::string description;               // one or two sentences
    bool ks4 = true;                       // false for ks-tools' own settings
};

// The stages in pipeline order. A setting belongs to the first stage that uses it;
// changing it makes that stage and every later one stale.
const std::vector<std::string>& pipeline_stages();

// Where a resolved value came from, for reports ("default", a file path, "--set").
struct SettingOrigin {
    std::string source = "default";
};

class Settings {
public:
    Settings();  // all defaults

    static const std::vector<SettingSpec>& table();
    static const SettingSpec* find(const std::string& name);
    // Nearest known name by edit distance (for "did you mean").
    static std::string suggest(const std::string& unknown);

    // Merge a JSON object of settings (Kilosort4 names). Unknown keys, wrong types and
    // out-of-range values throw Error(usage) naming the file and the setting.
    void load_json_file(const std::string& path);
    void load_json_text(const std::string& text, const std::string& origin);
    // "KEY=VALUE" from the command line. VALUE is parsed by the setting's type:
    // ints, floats (inf allowed), true/false, lists "0.5,0.5,0.5" or "[0.5, 0.5, 0.5]", None/null.
    void set_from_string(const std::string& key_equals_value);
    void set(const std::string& name, const SettingValue& value, const std::string& origin);

    // Typed access. Throws Error(usage) when the value is None and the caller needs one
    // ("setting n_chan_bin is required ...").
    int64_t get_int(const std::string& name) const;
    // The same for code that needs an int: Error(usage) naming the setting when it does not fit.
    int get_int32(const std::string& name) const;
    double get_float(const std::string& name) const;  // Int settings convert
    bool get_bool(const std::string& name) const;
    std::vector<double> get_list(const std::string& name) const;
    std::string get_string(const std::string& name) const;
    bool is_none(const std::string& name) const;
    const SettingValue& value(const std::string& name) const;
    const std::string& origin(const std::string& name) const;

    // Rules between settings that single ranges cannot express (nt odd, nt0min < nt,
    // batch_size >= nt, tmin < tmax). Throws Error(usage) naming the settings.
    void check_consistency() const;

    // Settings whose value differs from the default.
    std::vector<std::string> changed() const;

    // JSON object {name: value, ...} (inf as "inf", None as null). With `stage`, only the
    // settings of that stage and earlier ones (what the stage's outputs depend on).
    std::string to_json(const std::string& only_stage = "", int indent = 2) const;

    // Value as text the way --set accepts it.
    static std::string value_to_string(const SettingSpec& spec, const SettingValue& v);

    // Help text lines for the settings of the given stages: "  name = default  description".
    static std::string help_for_stages(const std::vector<std::string>& stages);

private:
    std::map<std::string, SettingValue> values_;
    std::map<std::string, std::string> origins_;
};

// Validate and convert a value for `spec`; throws Error(usage) mentioning `origin`.
void check_setting(const SettingSpec& spec, const SettingValue& v, const std::string& origin);

}  // namespace ks
