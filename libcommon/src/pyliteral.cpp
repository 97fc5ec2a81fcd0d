#include "pyliteral.hpp"

#include <charconv>
#include <cstdio>
#include <cmath>
#include <limits>

#include "ks/error.hpp"

namespace ks::pyliteral {
namespace {

constexpr int kMaxNesting = 64;              // deeper than any probe file; guards the stack
constexpr int64_t kMaxRangeLength = 10000000;  // range(10**12) must not exhaust memory

const char kNotExecuted[] =
    "a .prb file is read, not executed: only literals, range(...) and list(range(...)) are accepted";

struct Token {
    enum class Type { name, number, string, op, newline, end };
    Type type = Type::end;
    int line = 0;
    std::string text;       // name, op character, or the number's source text
    bool is_float = false;  // number
    int64_t ival = 0;
    double dval = 0.0;
    std::string sval;       // string contents after escapes
};

[[noreturn]] void fail(const std::string& origin, int line, const std::string& what) {
    throw Error(Exit::usage, origin + ": line " + std::to_string(line) + ": " + what);
}

std::string describe(const Token& t) {
    switch (t.type) {
        case Token::Type::name: return "'" + t.text + "'";
        case Token::Type::number: return "the number " + t.text;
        case Token::Type::string: return "a string";
        case Token::Type::newline: return "the end of the line";
        case Token::Type::end: return "the end of the file";
        case Token::Type::op: break;
    }
    const unsigned char c = static_cast<unsigned char>(t.text[0]);
    if (c < 0x20 || c >= 0x7f) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
        return buf;
    }
    return "'" + t.text + "'";
}

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

class Lexer {
public:
    Lexer(const std::string& text, const std::string& origin) : s_(text), origin_(origin) {}

    std::vector<Token> run() {
        std::vector<Token> out;
        while (pos_ < s_.size()) {
            const char c = s_[pos_];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
                ++pos_;
            } else if (c == '#') {
                while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
            } else if (c == '\\') {
                // Explicit line continuation: backslash, optional \r, newline.
                std::size_t p = pos_ + 1;
                if (p < s_.size() && s_[p] == '\r') ++p;
                if (p >= s_.size() || s_[p] != '\n') fail(origin_, line_, "stray backslash outside a string");
                pos_ = p + 1;
                ++line_;
            } else if (c == '\n') {
                // Inside brackets a newline is only whitespace (implicit continuation).
                if (depth_ == 0) out.push_back(simple(Token::Type::newline, "\n"));
                ++pos_;
                ++line_;
            } else if (is_digit(c) || (c == '.' && pos_ + 1 < s_.size() && is_digit(s_[pos_ + 1]))) {
                out.push_back(number());
            } else if (c == '\'' || c == '"') {
                out.push_back(string(false));
            } else if (is_name_start(c)) {
                std::size_t p = pos_;
                while (p < s_.size() && is_name_char(s_[p])) ++p;
                const std::string word = s_.substr(pos_, p - pos_);
                if (p < s_.size() && (s_[p] == '\'' || s_[p] == '"') && word.size() <= 2) {
                    // String prefixes: u'' is plain, r'' is raw; bytes and f-strings are refused
                    // (an f-string would evaluate code).
                    if (word == "u" || word == "U") {
                        pos_ = p;
                        out.push_back(string(false));
                        continue;
                    }
                    if (word == "r" || word == "R") {
                        pos_ = p;
                        out.push_back(string(true));
                        continue;
                    }
                    fail(origin_, line_, "string prefix '" + word + "' is not accepted (" + kNotExecuted + ")");
                }
                Token t = simple(Token::Type::name, word);
                pos_ = p;
                out.push_back(t);
            } else {
                if (c == '(' || c == '[' || c == '{') ++depth_;
                if ((c == ')' || c == ']' || c == '}') && depth_ > 0) --depth_;
                out.push_back(simple(Token::Type::op, std::string(1, c)));
                ++pos_;
            }
        }
        if (depth_ == 0) out.push_back(simple(Token::Type::newline, "\n"));
        out.push_back(simple(Token::Type::end, ""));
        return out;
    }

private:
    Token simple(Token::Type type, const std::string& text) const {
        Token t;
        t.type = type;
        t.text = text;
        t.line = line_;
        return t;
    }

    Token number() {
        Token t = simple(Token::Type::number, "");
        std::size_t p = pos_;
        std::string digits;  // without underscores, for from_chars
        auto take_digits = [&] {
            while (p < s_.size() && (is_digit(s_[p]) || s_[p] == '_')) {
                if (s_[p] != '_') digits += s_[p];
                ++p;
            }
        };
        take_digits();
        if (p < s_.size() && s_[p] == '.') {
            t.is_float = true;
            digits += '.';
            ++p;
            take_digits();
        }
        if (p < s_.size() && (s_[p] == 'e' || s_[p] == 'E')) {
            std::size_t q = p + 1;
            if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
            if (q < s_.size() && is_digit(s_[q])) {
                t.is_float = true;
                digits += 'e';
                digits.append(s_, p + 1, q - (p + 1));
                p = q;
                take_digits();
            }
        }
        t.text = s_.substr(pos_, p - pos_);
        if (p < s_.size() && (is_name_char(s_[p]) || s_[p] == '.'))
            fail(origin_, line_, "malformed number '" + s_.substr(pos_, p - pos_ + 1) +
                                     "' (decimal integers and floats only)");
        const char* first = digits.data();
        const char* last = digits.data() + digits.size();
        if (t.is_float) {
            const auto r = std::from_chars(first, last, t.dval);
            if (r.ec != std::errc() || r.ptr != last || !std::isfinite(t.dval))
                fail(origin_, line_, "number " + t.text + " is out of range");
        } else {
            const auto r = std::from_chars(first, last, t.ival);
            if (r.ec != std::errc() || r.ptr != last)
                fail(origin_, line_, "integer " + t.text + " is out of range");
        }
        pos_ = p;
        return t;
    }

    Token string(bool raw) {
        Token t = simple(Token::Type::string, "");
        const int start_line = line_;
        const char q = s_[pos_];
        const bool triple = s_.compare(pos_, 3, std::string(3, q)) == 0;
        pos_ += triple ? 3 : 1;
        std::string out;
        for (;;) {
            if (pos_ >= s_.size())
                fail(origin_, start_line, "string starting here is never closed");
            const char c = s_[pos_];
            if (triple && s_.compare(pos_, 3, std::string(3, q)) == 0) {
                pos_ += 3;
                break;
            }
            if (!triple && c == q) {
                ++pos_;
                break;
            }
            if (c == '\n') {
                if (!triple) fail(origin_, start_line, "string starting here is never closed");
                ++line_;
                out += c;
                ++pos_;
                continue;
            }
            if (c == '\\' && pos_ + 1 < s_.size()) {
                const char e = s_[pos_ + 1];
                pos_ += 2;
                if (e == '\n') {
                    ++line_;
                    if (raw) out += "\\\n";
                    continue;
                }
                if (raw) {
                    out += '\\';
                    out += e;
                    continue;
                }
                switch (e) {
                    case 'n': out += '\n'; break;
                    case 't': out += '\t'; break;
                    case 'r': out += '\r'; break;
                    case '0': out += '\0'; break;
                    case '\\': out += '\\'; break;
                    case '\'': out += '\''; break;
                    case '"': out += '"'; break;
                    default:  // Python keeps unknown escapes as written
                        out += '\\';
                        out += e;
                }
                continue;
            }
            out += c;
            ++pos_;
        }
        t.sval = std::move(out);
        t.text = "string";
        return t;
    }

    const std::string& s_;
    const std::string& origin_;
    std::size_t pos_ = 0;
    int line_ = 1;
    int depth_ = 0;
};

class Parser {
public:
    Parser(std::vector<Token> tokens, const std::string& origin) : t_(std::move(tokens)), origin_(origin) {}

    std::vector<Assignment> module() {
        std::vector<Assignment> out;
        for (;;) {
            const Token& tok = peek();
            if (tok.type == Token::Type::end) break;
            if (tok.type == Token::Type::newline || is_op(tok, ';')) {
                ++i_;
                continue;
            }
            if (tok.type == Token::Type::string) {  // a docstring or bare string: no effect
                expression();
                end_of_statement();
                continue;
            }
            if (tok.type == Token::Type::name && is_op(peek(1), '=') && !is_op(peek(2), '=')) {
                Assignment a;
                a.name = tok.text;
                i_ += 2;
                a.value = expression();
                end_of_statement();
                out.push_back(std::move(a));
                continue;
            }
            if (tok.type == Token::Type::name && is_op(peek(1), '(')) refuse_call(tok);
            fail(origin_, tok.line, "only `name = literal` assignments are accepted, found " + describe(tok) +
                                        " (" + kNotExecuted + ")");
        }
        return out;
    }

    Value whole_expression() {
        while (peek().type == Token::Type::newline) ++i_;
        Value v = expression();
        while (peek().type == Token::Type::newline) ++i_;
        if (peek().type != Token::Type::end)
            fail(origin_, peek().line, "unexpected " + describe(peek()) + " after the value");
        return v;
    }

private:
    const Token& peek(std::size_t ahead = 0) const {
        const std::size_t k = i_ + ahead;
        return k < t_.size() ? t_[k] : t_.back();
    }
    static bool is_op(const Token& t, char c) { return t.type == Token::Type::op && t.text[0] == c; }

    void end_of_statement() {
        const Token& tok = peek();
        if (tok.type == Token::Type::newline || tok.type == Token::Type::end || is_op(tok, ';')) return;
        fail(origin_, tok.line, "expected the end of the statement, found " + describe(tok));
    }

    [[noreturn]] void refuse_call(const Token& name) {
        fail(origin_, name.line, "call to " + name.text + "(...) is not accepted (" + kNotExecuted + ")");
    }

    [[noreturn]] void unclosed(const Token& open) {
        fail(origin_, open.line, "'" + open.text + "' opened here is never closed (the file ends on line " +
                                     std::to_string(peek().line) + "; is it truncated?)");
    }

    struct DepthGuard {
        Parser& p;
        explicit DepthGuard(Parser& parser, int line) : p(parser) {
            if (++p.depth_ > kMaxNesting)
                fail(p.origin_, line, "values nested more than " + std::to_string(kMaxNesting) + " deep");
        }
        ~DepthGuard() { --p.depth_; }
    };

    Value expression() {
        const Token tok = peek();
        DepthGuard guard(*this, tok.line);
        Value v;
        v.line = tok.line;
        switch (tok.type) {
            case Token::Type::number:
                ++i_;
                if (tok.is_float) {
                    v.kind = Value::Kind::real;
                    v.d = tok.dval;
                } else {
                    v.kind = Value::Kind::integer;
                    v.i = tok.ival;
                }
                return v;
            case Token::Type::string:
                v.kind = Value::Kind::string;
                while (peek().type == Token::Type::string) v.s += t_[i_++].sval;  // 'a' 'b' == 'ab'
                return v;
            case Token::Type::name: return name_or_call();
            case Token::Type::end: fail(origin_, tok.line, "unexpected end of file: a value is missing");
            case Token::Type::newline: fail(origin_, tok.line, "a value is missing at the end of the line");
            case Token::Type::op: break;
        }
        const char c = tok.text[0];
        if (c == '-' || c == '+') {
            ++i_;
            Value x = expression();
            if (!x.is_number())
                fail(origin_, tok.line, std::string("unary '") + c + "' applied to a " + x.type_name());
            if (c == '-') {
                if (x.kind == Value::Kind::integer) {
                    if (x.i == std::numeric_limits<int64_t>::min())
                        fail(origin_, tok.line, "integer is out of range");
                    x.i = -x.i;
                } else {
                    x.d = -x.d;
                }
            }
            x.line = tok.line;
            return x;
        }
        if (c == '[') return list();
        if (c == '(') return tuple_or_parens();
        if (c == '{') return dict();
        fail(origin_, tok.line, "unexpected " + describe(tok) + " where a value was expected");
    }

    Value name_or_call() {
        const Token tok = peek();
        ++i_;
        Value v;
        v.line = tok.line;
        if (tok.text == "True" || tok.text == "False") {
            v.kind = Value::Kind::boolean;
            v.b = tok.text == "True";
            return v;
        }
        if (tok.text == "None") return v;
        if (!is_op(peek(), '(')) {
            fail(origin_, tok.line, "'" + tok.text + "' is a name, not a literal (" + kNotExecuted + ")");
        }
        if (tok.text != "range" && tok.text != "list") refuse_call(tok);
        const Token open = peek();
        ++i_;
        std::vector<Value> args;
        for (;;) {
            const Token& t = peek();
            if (is_op(t, ')')) {
                ++i_;
                break;
            }
            if (t.type == Token::Type::end) unclosed(open);
            if (t.type == Token::Type::name && is_op(peek(1), '='))
                fail(origin_, t.line, "keyword arguments are not accepted in " + tok.text + "(...)");
            args.push_back(expression());
            if (is_op(peek(), ',')) {
                ++i_;
            } else if (!is_op(peek(), ')')) {
                if (peek().type == Token::Type::end) unclosed(open);
                fail(origin_, peek().line, "expected ',' or ')' in " + tok.text + "(...), found " + describe(peek()));
            }
        }
        if (tok.text == "list") {
            if (args.size() != 1 || !args[0].is_sequence())
                fail(origin_, tok.line, "list(...) takes one list, tuple or range(...)");
            Value out = std::move(args[0]);
            out.kind = Value::Kind::list;
            out.line = tok.line;
            return out;
        }
        // range(stop), range(start, stop), range(start, stop, step), as in Python.
        if (args.empty() || args.size() > 3)
            fail(origin_, tok.line, "range(...) takes 1 to 3 integers, got " + std::to_string(args.size()));
        for (const Value& a : args)
            if (a.kind != Value::Kind::integer)
                fail(origin_, tok.line, std::string("range(...) takes integers, got a ") + a.type_name());
        const int64_t start = args.size() >= 2 ? args[0].i : 0;
        const int64_t stop = args.size() >= 2 ? args[1].i : args[0].i;
        const int64_t step = args.size() == 3 ? args[2].i : 1;
        if (step == 0) fail(origin_, tok.line, "range(...) step must not be zero");
        // Length computed in long double so huge bounds cannot overflow before the check.
        const long double span = static_cast<long double>(stop) - static_cast<long double>(start);
        const long double n = span / step > 0 ? std::ceil(span / step) : 0;
        if (n > kMaxRangeLength)
            fail(origin_, tok.line, "range(...) would hold more than " + std::to_string(kMaxRangeLength) + " values");
        v.kind = Value::Kind::list;
        const int64_t count = static_cast<int64_t>(n);
        v.items.reserve(static_cast<std::size_t>(count));
        for (int64_t k = 0; k < count; ++k) {
            Value e;
            e.kind = Value::Kind::integer;
            e.i = start + k * step;
            e.line = tok.line;
            v.items.push_back(e);
        }
        return v;
    }

    // Items up to `close`, with an optional trailing comma. Returns whether any comma was seen.
    bool items(const Token& open, char close, std::vector<Value>& out) {
        bool comma = false;
        for (;;) {
            const Token& t = peek();
            if (is_op(t, close)) {
                ++i_;
                return comma;
            }
            if (t.type == Token::Type::end) unclosed(open);
            out.push_back(expression());
            if (is_op(peek(), ',')) {
                comma = true;
                ++i_;
            } else if (!is_op(peek(), close)) {
                if (peek().type == Token::Type::end) unclosed(open);
                fail(origin_, peek().line, std::string("expected ',' or '") + close + "', found " + describe(peek()));
            }
        }
    }

    Value list() {
        const Token open = peek();
        ++i_;
        Value v;
        v.kind = Value::Kind::list;
        v.line = open.line;
        items(open, ']', v.items);
        return v;
    }

    Value tuple_or_parens() {
        const Token open = peek();
        ++i_;
        std::vector<Value> xs;
        const bool comma = items(open, ')', xs);
        if (xs.size() == 1 && !comma) return std::move(xs[0]);  // (x) is just x
        Value v;
        v.kind = Value::Kind::tuple;
        v.line = open.line;
        v.items = std::move(xs);
        return v;
    }

    Value dict() {
        const Token open = peek();
        ++i_;
        Value v;
        v.kind = Value::Kind::dict;
        v.line = open.line;
        for (;;) {
            const Token& t = peek();
            if (is_op(t, '}')) {
                ++i_;
                return v;
            }
            if (t.type == Token::Type::end) unclosed(open);
            Value key = expression();
            if (key.kind == Value::Kind::list || key.kind == Value::Kind::dict)
                fail(origin_, key.line, std::string("a ") + key.type_name() + " cannot be a dict key");
            if (!is_op(peek(), ':')) {
                if (peek().type == Token::Type::end) unclosed(open);
                if (is_op(peek(), ',') || is_op(peek(), '}'))
                    fail(origin_, peek().line, "expected ':' after a dict key (set literals are not accepted)");
                fail(origin_, peek().line, "expected ':' after a dict key, found " + describe(peek()));
            }
            ++i_;
            Value val = expression();
            v.entries.emplace_back(std::move(key), std::move(val));
            if (is_op(peek(), ',')) {
                ++i_;
            } else if (!is_op(peek(), '}')) {
                if (peek().type == Token::Type::end) unclosed(open);
                fail(origin_, peek().line, "expected ',' or '}', found " + describe(peek()));
            }
        }
    }

    std::vector<Token> t_;
    const std::string& origin_;
    std::size_t i_ = 0;
    int depth_ = 0;
};

bool numeric_like(const Value& v) { return v.is_number() || v.kind == Value::Kind::boolean; }
double numeric(const Value& v) {
    if (v.kind == Value::Kind::boolean) return v.b ? 1.0 : 0.0;
    return v.as_double();
}

}  // namespace

bool Value::equals(const Value& o) const {
    if (numeric_like(*this) && numeric_like(o)) {
        if (kind == Kind::integer && o.kind == Kind::integer) return i == o.i;
        return numeric(*this) == numeric(o);
    }
    if (kind != o.kind) return false;
    switch (kind) {
        case Kind::none: return true;
        case Kind::string: return s == o.s;
        case Kind::tuple:
        case Kind::list:
            if (items.size() != o.items.size()) return false;
            for (std::size_t k = 0; k < items.size(); ++k)
                if (!items[k].equals(o.items[k])) return false;
            return true;
        default: return false;
    }
}

const Value* Value::find(const Value& key) const {
    for (auto it = entries.rbegin(); it != entries.rend(); ++it)
        if (it->first.equals(key)) return &it->second;
    return nullptr;
}

const Value* Value::find(const std::string& key) const {
    Value k;
    k.kind = Kind::string;
    k.s = key;
    return find(k);
}

const Value* Value::find(int64_t key) const {
    Value k;
    k.kind = Kind::integer;
    k.i = key;
    return find(k);
}

const char* Value::type_name() const {
    switch (kind) {
        case Kind::none: return "None";
        case Kind::boolean: return "bool";
        case Kind::integer: return "int";
        case Kind::real: return "float";
        case Kind::string: return "str";
        case Kind::list: return "list";
        case Kind::tuple: return "tuple";
        case Kind::dict: return "dict";
    }
    return "value";
}

std::vector<Assignment> parse_assignments(const std::string& text, const std::string& origin) {
    Parser p(Lexer(text, origin).run(), origin);
    return p.module();
}

Value parse_expression(const std::string& text, const std::string& origin) {
    Parser p(Lexer(text, origin).run(), origin);
    return p.whole_expression();
}

}  // namespace ks::pyliteral
