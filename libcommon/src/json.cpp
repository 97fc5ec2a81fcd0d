#include "ks/json.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "ks/error.hpp"

namespace ks {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid (overlong,
// surrogate, beyond U+10FFFF, cut short).
std::size_t utf8_length(const std::string& s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    }
    return n;
}

}  // namespace

std::string json_escape(const std::string& s) {
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
            ++i;
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
            ++i;
        } else if (const std::size_t n = utf8_length(s, i)) {
            out.append(s, i, n);
            i += n;
        } else {
            // Paths may hold bytes that are not UTF-8; a replacement character keeps the
            // record readable by strict JSON parsers (simdjson, Python).
            out += "\\ufffd";
            ++i;
        }
    }
    return out + "\"";
}

std::string json_number(double v) {
    if (std::isnan(v)) return "null";
    if (std::isinf(v)) return v > 0 ? "\"inf\"" : "\"-inf\"";
    char buf[40];
    // Whole numbers print as integers ("3", not "3.0"); below 2^53 they are exact.
    if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
        if (v == 0 && std::signbit(v)) return "-0.0";  // "-0" would read back as the integer 0
        std::snprintf(buf, sizeof buf, "%.0f", v);
        return buf;
    }
    // The shortest of 15, 16, 17 significant digits that reads back as the same double
    // (17 always does): 0.1 prints as "0.1", not "0.10000000000000001".
    for (int digits = 15; digits <= 17; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        if (digits == 17 || std::strtod(buf, nullptr) == v) break;
    }
    return buf;
}

void JsonWriter::newline() {
    if (indent_ <= 0) return;
    out_ += '\n';
    out_.append(first_.size() * static_cast<std::size_t>(indent_), ' ');
}

void JsonWriter::before_value() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (first_.empty()) {
        KS_ASSERT(out_.empty(), "JsonWriter: a second top-level value");
        return;
    }
    // Inside an object every value needs a key first, so only arrays get here.
    if (!first_.back()) out_ += ',';
    first_.back() = false;
    newline();
}

JsonWriter& JsonWriter::begin_object() {
    before_value();
    out_ += '{';
    first_.push_back(true);
    objects_.push_back(true);
    return *this;
}

JsonWriter& JsonWriter::begin_array() {
    before_value();
    out_ += '[';
    first_.push_back(true);
    objects_.push_back(false);
    return *this;
}

JsonWriter& JsonWriter::end_object() {
    KS_ASSERT(!objects_.empty() && objects_.back() && !after_key_, "JsonWriter: end_object without an open object");
    close('}');
    return *this;
}

JsonWriter& JsonWriter::end_array() {
    KS_ASSERT(!objects_.empty() && !objects_.back(), "JsonWriter: end_array without an open array");
    close(']');
    return *this;
}

void JsonWriter::close(char bracket) {
    const bool empty = first_.back();
    first_.pop_back();
    objects_.pop_back();
    if (!empty) newline();  // "{}" and "[]" stay on one line
    out_ += bracket;
}

JsonWriter& JsonWriter::key(const std::string& k) {
    KS_ASSERT(!objects_.empty() && objects_.back() && !after_key_, "JsonWriter: key '" + k + "' outside an object");
    if (!first_.back()) out_ += ',';
    first_.back() = false;
    newline();
    out_ += json_escape(k);
    out_ += indent_ > 0 ? ": " : ":";
    after_key_ = true;
    return *this;
}

JsonWriter& JsonWriter::raw(const std::string& json_text) {
    before_value();
    if (indent_ <= 0) {
        out_ += json_text;
        return *this;
    }
    // Newlines in JSON text are always whitespace (strings escape them), so indenting after
    // each one nests a pretty-printed value at the current depth.
    const std::string pad(first_.size() * static_cast<std::size_t>(indent_), ' ');
    for (char c : json_text) {
        out_ += c;
        if (c == '\n') out_ += pad;
    }
    return *this;
}

JsonWriter& JsonWriter::value(const std::string& s) { return raw(json_escape(s)); }
JsonWriter& JsonWriter::value(double v) { return raw(json_number(v)); }
JsonWriter& JsonWriter::value(int64_t v) { return raw(std::to_string(v)); }
JsonWriter& JsonWriter::value(bool v) { return raw(v ? "true" : "false"); }
JsonWriter& JsonWriter::null() { return raw("null"); }

// Number lists stay on one line even when pretty-printing: a column of numbers is hard to read.
template <class T>
static std::string number_list(const std::vector<T>& v, bool pretty) {
    std::string s = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += pretty ? ", " : ",";
        if constexpr (std::is_same_v<T, double>) s += json_number(v[i]);
        else s += std::to_string(v[i]);
    }
    return s + "]";
}

JsonWriter& JsonWriter::value(const std::vector<double>& v) { return raw(number_list(v, indent_ > 0)); }
JsonWriter& JsonWriter::value(const std::vector<int64_t>& v) { return raw(number_list(v, indent_ > 0)); }

}  // namespace ks
