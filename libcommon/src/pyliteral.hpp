#pragma once
// A reader for the Python subset found in .prb probe files: `name = <literal>` statements whose
// values are dicts, lists, tuples, numbers, strings, True/False/None, range(...) and
// list(range(...)). Nothing is executed; any other construct is an Error(usage) naming the file
// and line. Private to libcommon (used by probe.cpp).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ks::pyliteral {

struct Value {
    enum class Kind { none, boolean, integer, real, string, list, tuple, dict };
    Kind kind = Kind::none;
    int line = 0;              // 1-based source line where the value starts (for messages)
    bool b = false;
    int64_t i = 0;
    double d = 0.0;
    std::string s;
    std::vector<Value> items;                      // list, tuple
    std::vector<std::pair<Value, Value>> entries;  // dict, in source order (duplicates kept)

    bool is_number() const { return kind == Kind::integer || kind == Kind::real; }
    bool is_sequence() const { return kind == Kind::list || kind == Kind::tuple; }
    double as_double() const { return kind == Kind::integer ? static_cast<double>(i) : d; }
    // Python's equality for the key types that matter here (int, float, str, bool, None, tuple).
    bool equals(const Value& other) const;
    // Dict lookup with Python semantics: the last entry with an equal key wins. nullptr if absent.
    const Value* find(const Value& key) const;
    const Value* find(const std::string& key) const;
    const Value* find(int64_t key) const;
    // "dict", "list", "int", ... for messages.
    const char* type_name() const;
};

struct Assignment {
    std::string name;
    Value value;
};

// Parses a whole file. `origin` names the file in error messages ("probe.prb: line 3: ...").
// Throws Error(usage) on anything that is not a plain literal assignment.
std::vector<Assignment> parse_assignments(const std::string& text, const std::string& origin);

// Parses a single expression (whole text), for tests and small uses.
Value parse_expression(const std::string& text, const std::string& origin);

}  // namespace ks::pyliteral
