#pragma once
// A small JSON writer (records, settings, provenance). Reading uses simdjson inside libcommon.
#include <cstdint>
#include <string>
#include <vector>

namespace ks {

std::string json_escape(const std::string& s);  // with the surrounding quotes
std::string json_number(double v);             // shortest round-trip text; inf -> "inf" (a string), nan -> null

// Builds a JSON object or array in order; values are added as already-serialised text.
class JsonWriter {
public:
    explicit JsonWriter(int indent = 2) : indent_(indent) {}
    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    JsonWriter& key(const std::string& k);
    JsonWriter& value(const std::string& s);
    JsonWriter& value(const char* s) { return value(std::string(s)); }
    JsonWriter& value(double v);
    JsonWriter& value(int64_t v);
    JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
    JsonWriter& value(bool v);
    JsonWriter& null();
    JsonWriter& raw(const std::string& json_text);  // an already-serialised value
    JsonWriter& value(const std::vector<double>& v);
    JsonWriter& value(const std::vector<int64_t>& v);
    const std::string& str() const { return out_; }

private:
    void before_value();
    void newline();
    void close(char bracket);
    std::string out_;
    std::vector<bool> first_;   // per open container: no element written yet
    std::vector<bool> objects_; // per open container: an object (else an array), to catch misuse
    int indent_;
    bool after_key_ = false;
};

}  // namespace ks
