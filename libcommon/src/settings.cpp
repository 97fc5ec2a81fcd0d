#include "ks/settings.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include <simdjson.h>

#include "ks/error.hpp"
#include "ks/json.hpp"
#include "ks/output_file.hpp"

namespace ks {
namespace {

std::string trim(const std::string& s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t sub = prev[j - 1] + (std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

const char* type_name(SettingType t) {
    switch (t) {
        case SettingType::Int: return "an integer";
        case SettingType::Float: return "a number";
        case SettingType::Bool: return "true or false";
        case SettingType::FloatList: return "a list of numbers";
        case SettingType::String: return "a string";
    }
    return "?";
}

std::string range_text(const SettingSpec& s) {
    auto num = [](double v) {
        if (std::isinf(v)) return std::string(v > 0 ? "inf" : "-inf");
        return json_number(v);
    };
    std::string r = "[" + num(s.min) + ", " + num(s.max) + "]";
    if (!s.exclude.empty()) {
        r += " excluding";
        for (double e : s.exclude) r += " " + num(e);
    }
    return r;
}

// Parses a number the way a user types it: 1e3, inf, -inf, 60000.
bool parse_number(const std::string& text, double& out) {
    const std::string t = lower(trim(text));
    if (t == "inf" || t == "+inf" || t == "infinity" || t == "np.inf") { out = INFINITY; return true; }
    if (t == "-inf" || t == "-infinity" || t == "-np.inf") { out = -INFINITY; return true; }
    if (t.empty()) return false;
    char* end = nullptr;
    out = std::strtod(t.c_str(), &end);
    return end && *end == '\0' && !std::isnan(out);
}

[[noreturn]] void bad(const std::string& origin, const std::string& msg) {
    throw Error(Exit::usage, origin + ": " + msg);
}

// Converts text to a value of the spec's type (no range check).
SettingValue parse_text(const SettingSpec& spec, const std::string& raw, const std::string& origin) {
    const std::string text = trim(raw);
    const std::string lt = lower(text);
    SettingValue v;
    // A string setting may have "none" among its choices (common_reference=none): that is the string.
    const bool is_choice = std::find(spec.choices.begin(), spec.choices.end(), text) != spec.choices.end();
    if ((lt == "none" || lt == "null") && !is_choice) {
        if (!spec.nullable) bad(origin, "setting " + spec.name + " cannot be None (it must be " + type_name(spec.type) + ")");
        return v;  // none
    }
    v.none = false;
    switch (spec.type) {
        case SettingType::Int: {
            double d;
            if (!parse_number(text, d) || (std::isfinite(d) && d != std::floor(d)))
                bad(origin, "setting " + spec.name + " must be an integer, got '" + text + "'");
            if (std::isinf(d)) bad(origin, "setting " + spec.name + " must be a finite integer, got '" + text + "'");
            if (std::fabs(d) > 9.0e15) bad(origin, "setting " + spec.name + " is too large: '" + text + "'");
            v.i = static_cast<int64_t>(d);
            break;
        }
        case SettingType::Float:
            if (!parse_number(text, v.f)) bad(origin, "setting " + spec.name + " must be a number, got '" + text + "'");
            break;
        case SettingType::Bool:
            if (lt == "true" || lt == "1" || lt == "yes" || lt == "on") v.b = true;
            else if (lt == "false" || lt == "0" || lt == "no" || lt == "off") v.b = false;
            else bad(origin, "setting " + spec.name + " must be true or false, got '" + text + "'");
            break;
        case SettingType::FloatList: {
            std::string body = text;
            if (!body.empty() && (body.front() == '[' || body.front() == '(')) {
                const char close = body.front() == '[' ? ']' : ')';
                if (body.back() != close) bad(origin, "setting " + spec.name + ": unbalanced brackets in '" + text + "'");
                body = body.substr(1, body.size() - 2);
            }
            std::stringstream ss(body);
            std::string item;
            while (std::getline(ss, item, ',')) {
                if (trim(item).empty()) continue;
                double d;
                if (!parse_number(item, d)) bad(origin, "setting " + spec.name + " must be a list of numbers, got '" + text + "'");
                v.list.push_back(d);
            }
            break;
        }
        case SettingType::String:
            v.s = text;
            if (v.s.size() >= 2 && (v.s.front() == '"' || v.s.front() == '\'') && v.s.back() == v.s.front())
                v.s = v.s.substr(1, v.s.size() - 2);
            break;
    }
    return v;
}

}  // namespace

void check_setting(const SettingSpec& spec, const SettingValue& v, const std::string& origin) {
    if (v.none) {
        if (!spec.nullable) bad(origin, "setting " + spec.name + " cannot be None");
        return;
    }
    auto check_range = [&](double x) {
        if (std::isnan(x) || x < spec.min || x > spec.max)
            bad(origin, "setting " + spec.name + " = " + json_number(x) + " is out of range; allowed: " + range_text(spec));
        for (double e : spec.exclude)
            if (x == e) bad(origin, "setting " + spec.name + " = " + json_number(x) + " is not allowed; allowed: " + range_text(spec));
    };
    switch (spec.type) {
        case SettingType::Int: check_range(static_cast<double>(v.i)); break;
        case SettingType::Float: check_range(v.f); break;
        case SettingType::FloatList:
            if (spec.name == "drift_smoothing" && v.list.size() != 3)
                bad(origin, "setting drift_smoothing needs 3 numbers (correlation, time, depth), got " + std::to_string(v.list.size()));
            for (double x : v.list) check_range(x);
            break;
        case SettingType::String:
            if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), v.s) == spec.choices.end()) {
                std::string allowed;
                for (const auto& c : spec.choices) allowed += (allowed.empty() ? "" : ", ") + c;
                bad(origin, "setting " + spec.name + " = '" + v.s + "' is not one of: " + allowed);
            }
            break;
        case SettingType::Bool: break;
    }
}

Settings::Settings() {
    for (const auto& s : table()) {
        values_[s.name] = s.default_value;
        origins_[s.name] = "default";
    }
}

const SettingSpec* Settings::find(const std::string& name) {
    for (const auto& s : table())
        if (s.name == name) return &s;
    return nullptr;
}

std::string Settings::suggest(const std::string& unknown) {
    std::string best;
    std::size_t best_d = static_cast<std::size_t>(-1);
    for (const auto& s : table()) {
        const std::size_t d = edit_distance(unknown, s.name);
        if (d < best_d) { best_d = d; best = s.name; }
    }
    // A far-off name is no help; substring matches (e.g. "threshold") still are.
    if (best_d > std::max<std::size_t>(3, unknown.size() / 2)) {
        for (const auto& s : table())
            if (lower(s.name).find(lower(unknown)) != std::string::npos) return s.name;
        return "";
    }
    return best;
}

static const SettingSpec& require_spec(const std::string& name, const std::string& origin) {
    const SettingSpec* spec = Settings::find(name);
    if (!spec) {
        const std::string near = Settings::suggest(name);
        throw Error(Exit::usage, origin + ": unknown setting '" + name + "'" +
                                     (near.empty() ? "" : "; did you mean '" + near + "'?") +
                                     " (ks-inspect --list-settings lists them all)");
    }
    return *spec;
}

void Settings::set(const std::string& name, const SettingValue& value, const std::string& origin) {
    const SettingSpec& spec = require_spec(name, origin);
    check_setting(spec, value, origin);
    values_[name] = value;
    origins_[name] = origin;
}

void Settings::set_from_string(const std::string& kv) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
        throw Error(Exit::usage, "--set " + kv + ": expected KEY=VALUE, e.g. --set Th_learned=7");
    const std::string key = trim(kv.substr(0, eq));
    const std::string origin = "--set " + key;
    const SettingSpec& spec = require_spec(key, origin);
    set(key, parse_text(spec, kv.substr(eq + 1), origin), "--set");
}

void Settings::load_json_file(const std::string& path) {
    load_json_text(read_text_file(path), path);
}

void Settings::load_json_text(const std::string& text, const std::string& origin) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    const simdjson::padded_string padded(text);
    if (auto err = parser.parse(padded).get(root))
        bad(origin, std::string("not valid JSON (") + simdjson::error_message(err) + ")");
    simdjson::dom::object obj;
    if (root.get_object().get(obj)) bad(origin, "expected a JSON object of settings, e.g. {\"n_chan_bin\": 385, \"fs\": 30000}");
    for (auto field : obj) {
        const std::string key(field.key);
        const std::string where = origin + ": setting " + key;
        const SettingSpec& spec = require_spec(key, origin);
        const simdjson::dom::element el = field.value;
        SettingValue v;
        switch (el.type()) {
            case simdjson::dom::element_type::NULL_VALUE:
                v = parse_text(spec, "None", origin);
                break;
            case simdjson::dom::element_type::BOOL:
                if (spec.type != SettingType::Bool) bad(origin, "setting " + key + " must be " + type_name(spec.type) + ", got a boolean");
                v.none = false;
                v.b = bool(el);
                break;
            case simdjson::dom::element_type::INT64:
            case simdjson::dom::element_type::UINT64:
            case simdjson::dom::element_type::DOUBLE: {
                if (spec.type != SettingType::Int && spec.type != SettingType::Float)
                    bad(origin, "setting " + key + " must be " + type_name(spec.type) + ", got a number");
                double d = 0;
                if (el.is_double()) d = double(el);
                else if (el.is_int64()) d = static_cast<double>(int64_t(el));
                else d = static_cast<double>(uint64_t(el));
                std::ostringstream os;
                os.precision(17);
                os << d;
                v = parse_text(spec, os.str(), origin);
                break;
            }
            case simdjson::dom::element_type::STRING: {
                const std::string s{std::string_view(el)};
                if (spec.type == SettingType::String) {
                    v.none = false;
                    v.s = s;
                } else {
                    v = parse_text(spec, s, origin);  // "inf", "1e3", "[0.5, 0.5, 0.5]"
                }
                break;
            }
            case simdjson::dom::element_type::ARRAY: {
                if (spec.type != SettingType::FloatList) bad(origin, "setting " + key + " must be " + type_name(spec.type) + ", got a list");
                v.none = false;
                for (auto item : el.get_array()) {
                    double d;
                    if (item.is_double()) d = double(item);
                    else if (item.is_int64()) d = static_cast<double>(int64_t(item));
                    else if (item.is_uint64()) d = static_cast<double>(uint64_t(item));
                    else if (item.is_string() && parse_number(std::string(std::string_view(item)), d)) {}
                    else bad(origin, "setting " + key + " must be a list of numbers");
                    v.list.push_back(d);
                }
                break;
            }
            case simdjson::dom::element_type::OBJECT:
                bad(origin, "setting " + key + " must be " + type_name(spec.type) + ", got an object");
        }
        (void)where;
        set(key, v, origin);
    }
}

const SettingValue& Settings::value(const std::string& name) const {
    auto it = values_.find(name);
    KS_ASSERT(it != values_.end(), "unknown setting " + name);
    return it->second;
}

const std::string& Settings::origin(const std::string& name) const {
    auto it = origins_.find(name);
    KS_ASSERT(it != origins_.end(), "unknown setting " + name);
    return it->second;
}

bool Settings::is_none(const std::string& name) const { return value(name).none; }

static const SettingValue& need(const Settings& s, const std::string& name, SettingType want) {
    const SettingSpec* spec = Settings::find(name);
    KS_ASSERT(spec, "unknown setting " + name);
    KS_ASSERT(spec->type == want || (want == SettingType::Float && spec->type == SettingType::Int),
              "setting " + name + " read with the wrong type");
    const SettingValue& v = s.value(name);
    if (v.none)
        throw Error(Exit::usage, "setting " + name + " is required here but is None (" + spec->description +
                                     "); give it with --set " + name + "=VALUE or in a --params file");
    return v;
}

int64_t Settings::get_int(const std::string& name) const { return need(*this, name, SettingType::Int).i; }
int Settings::get_int32(const std::string& name) const {
    const int64_t v = get_int(name);
    if (v > std::numeric_limits<int>::max() || v < std::numeric_limits<int>::min())
        throw Error(Exit::usage, "setting " + name + ": " + std::to_string(v) + " is too large");
    return static_cast<int>(v);
}
double Settings::get_float(const std::string& name) const {
    const SettingValue& v = need(*this, name, SettingType::Float);
    return find(name)->type == SettingType::Int ? static_cast<double>(v.i) : v.f;
}
bool Settings::get_bool(const std::string& name) const { return need(*this, name, SettingType::Bool).b; }
std::vector<double> Settings::get_list(const std::string& name) const {
    return need(*this, name, SettingType::FloatList).list;
}
std::string Settings::get_string(const std::string& name) const { return need(*this, name, SettingType::String).s; }

void Settings::check_consistency() const {
    const int64_t nt = get_int("nt");
    auto who = [&](const std::string& name) {
        return name + " = " + value_to_string(*find(name), value(name)) + " (" + origin(name) + ")";
    };
    if (nt % 2 == 0) throw Error(Exit::usage, who("nt") + ": must be odd, so waveforms have a centre sample (Kilosort4 uses 61)");
    if (!is_none("nt0min") && get_int("nt0min") >= nt)
        throw Error(Exit::usage, who("nt0min") + " must be smaller than " + who("nt"));
    if (get_int("batch_size") < nt)
        throw Error(Exit::usage, who("batch_size") + " must be at least " + who("nt") + " (the padding of each batch)");
    if (get_float("tmin") >= get_float("tmax"))
        throw Error(Exit::usage, who("tmin") + " must be smaller than " + who("tmax"));
}

static bool same_value(const SettingSpec& spec, const SettingValue& a, const SettingValue& b) {
    if (a.none || b.none) return a.none == b.none;
    switch (spec.type) {
        case SettingType::Int: return a.i == b.i;
        case SettingType::Float: return a.f == b.f;
        case SettingType::Bool: return a.b == b.b;
        case SettingType::FloatList: return a.list == b.list;
        case SettingType::String: return a.s == b.s;
    }
    return false;
}

std::vector<std::string> Settings::changed() const {
    std::vector<std::string> out;
    for (const auto& s : table())
        if (!same_value(s, s.default_value, value(s.name))) out.push_back(s.name);
    return out;
}

static void write_value(JsonWriter& w, const SettingSpec& spec, const SettingValue& v) {
    if (v.none) { w.null(); return; }
    switch (spec.type) {
        case SettingType::Int: w.value(v.i); break;
        case SettingType::Float: w.value(v.f); break;
        case SettingType::Bool: w.value(v.b); break;
        case SettingType::FloatList: w.value(v.list); break;
        case SettingType::String: w.value(v.s); break;
    }
}

std::string Settings::to_json(const std::string& only_stage, int indent) const {
    const auto& stages = pipeline_stages();
    std::size_t limit = stages.size();
    if (!only_stage.empty()) {
        auto it = std::find(stages.begin(), stages.end(), only_stage);
        KS_ASSERT(it != stages.end(), "unknown stage " + only_stage);
        limit = static_cast<std::size_t>(it - stages.begin());
    }
    JsonWriter w(indent);
    w.begin_object();
    for (const auto& s : table()) {
        const auto pos = static_cast<std::size_t>(std::find(stages.begin(), stages.end(), s.stage) - stages.begin());
        if (pos > limit) continue;
        w.key(s.name);
        write_value(w, s, value(s.name));
    }
    w.end_object();
    return w.str();
}

std::string Settings::value_to_string(const SettingSpec& spec, const SettingValue& v) {
    if (v.none) return "None";
    switch (spec.type) {
        case SettingType::Int: return std::to_string(v.i);
        case SettingType::Float: return std::isinf(v.f) ? (v.f > 0 ? "inf" : "-inf") : json_number(v.f);
        case SettingType::Bool: return v.b ? "true" : "false";
        case SettingType::FloatList: {
            std::string s = "[";
            for (std::size_t i = 0; i < v.list.size(); ++i) s += (i ? ", " : "") + json_number(v.list[i]);
            return s + "]";
        }
        case SettingType::String: return v.s;
    }
    return "?";
}

std::string Settings::help_for_stages(const std::vector<std::string>& stages) {
    std::string out;
    for (const auto& s : table()) {
        if (std::find(stages.begin(), stages.end(), s.stage) == stages.end()) continue;
        std::string line = "  " + s.name + " = " + value_to_string(s, s.default_value);
        if (line.size() < 34) line.resize(34, ' ');
        else line += "  ";
        out += line + s.description + "\n";
    }
    return out;
}

}  // namespace ks
