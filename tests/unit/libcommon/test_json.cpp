// ks::JsonWriter, json_escape, json_number; Python's json module checks what we write.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <unistd.h>

#include "ks/error.hpp"
#include "ks/json.hpp"

namespace {

bool have_python() {
    return std::system(KS_PYTHON " -c 'import json' >/dev/null 2>&1") == 0;
}

// Runs `script` with /usr/bin/python3 on `json_text` (as argv[1], a file); returns the exit code.
int run_python(const std::string& script, const std::string& json_text) {
    std::string dir = ::testing::TempDir() + "ks_json_XXXXXX";
    if (!mkdtemp(dir.data())) return -1;
    std::ofstream(dir + "/check.py") << script;
    std::ofstream(dir + "/doc.json", std::ios::binary) << json_text;
    const int rc = std::system((KS_PYTHON " " + dir + "/check.py " + dir + "/doc.json").c_str());
    std::filesystem::remove_all(dir);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST(JsonEscape, QuotesBackslashesAndControlCharacters) {
    EXPECT_EQ(ks::json_escape(""), "\"\"");
    EXPECT_EQ(ks::json_escape("a\"b\\c"), "\"a\\\"b\\\\c\"");
    EXPECT_EQ(ks::json_escape("tab\there\nnl"), "\"tab\\u0009here\\u000anl\"");
    EXPECT_EQ(ks::json_escape(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
    EXPECT_EQ(ks::json_escape(std::string("nul\0x", 5)), "\"nul\\u0000x\"");
    EXPECT_EQ(ks::json_escape("/path/to/data.bin"), "\"/path/to/data.bin\"");
}

TEST(JsonEscape, KeepsUtf8AndReplacesInvalidBytes) {
    EXPECT_EQ(ks::json_escape("\xc2\xb5V"), "\"\xc2\xb5V\"");                      // µV
    EXPECT_EQ(ks::json_escape("\xf0\x9f\x99\x82"), "\"\xf0\x9f\x99\x82\"");           // 4-byte emoji
    EXPECT_EQ(ks::json_escape("a\xff" "b"), "\"a\\ufffdb\"");                         // not UTF-8
    EXPECT_EQ(ks::json_escape("\xc3"), "\"\\ufffd\"");                                // cut short
    EXPECT_EQ(ks::json_escape("\xc0\xaf"), "\"\\ufffd\\ufffd\"");                     // overlong '/'
    EXPECT_EQ(ks::json_escape("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");          // surrogate
}

TEST(JsonNumber, IntegersAndSpecialValues) {
    EXPECT_EQ(ks::json_number(0), "0");
    EXPECT_EQ(ks::json_number(3), "3");
    EXPECT_EQ(ks::json_number(-30000), "-30000");
    EXPECT_EQ(ks::json_number(60000), "60000");
    EXPECT_EQ(ks::json_number(9007199254740991.0), "9007199254740991");  // 2^53 - 1
    EXPECT_EQ(ks::json_number(1e20), "1e+20");
    EXPECT_EQ(ks::json_number(-0.0), "-0.0");
    EXPECT_EQ(ks::json_number(std::numeric_limits<double>::infinity()), "\"inf\"");
    EXPECT_EQ(ks::json_number(-std::numeric_limits<double>::infinity()), "\"-inf\"");
    EXPECT_EQ(ks::json_number(std::nan("")), "null");
}

TEST(JsonNumber, ShortestOfFifteenToSeventeenDigitsThatRoundTrips) {
    EXPECT_EQ(ks::json_number(0.1), "0.1");
    EXPECT_EQ(ks::json_number(2.5), "2.5");
    EXPECT_EQ(ks::json_number(1e-5), "1e-05");
    EXPECT_EQ(ks::json_number(0.1 + 0.2), "0.30000000000000004");  // needs all 17
    EXPECT_EQ(ks::json_number(1.0 / 3.0), "0.3333333333333333");    // 16 suffice
    EXPECT_EQ(ks::json_number(static_cast<double>(0.1f)), "0.10000000149011612");  // a float32 widened
    std::mt19937_64 rng(20240601);
    std::uniform_int_distribution<uint64_t> bits;
    for (int i = 0; i < 20000; ++i) {
        double v;
        const uint64_t b = bits(rng);
        std::memcpy(&v, &b, sizeof v);
        if (!std::isfinite(v)) continue;
        const std::string s = ks::json_number(v);
        ASSERT_EQ(std::strtod(s.c_str(), nullptr), v) << s << " (bits " << b << ")";
        ASSERT_LE(s.size(), 24u) << s;
    }
}

TEST(JsonWriter, CompactOutput) {
    ks::JsonWriter w(0);
    w.begin_object().key("a").value(1).key("b").value("x\"y").key("c").begin_array();
    w.value(true).value(false).null().value(0.5).end_array();
    w.key("d").begin_object().end_object().key("e").begin_array().end_array();
    w.key("f").value(std::vector<double>{1, 2.5}).key("g").value(std::vector<int64_t>{-1, 7}).end_object();
    EXPECT_EQ(w.str(), R"({"a":1,"b":"x\"y","c":[true,false,null,0.5],"d":{},"e":[],"f":[1,2.5],"g":[-1,7]})");
}

TEST(JsonWriter, PrettyOutputIndentsNestedContainers) {
    ks::JsonWriter w(2);
    w.begin_object().key("tool").value("ks-filter").key("list").value(std::vector<double>{0.5, 0.5});
    w.key("items").begin_array().value(int64_t{1}).begin_object().key("k").value(2.0).end_object().end_array();
    w.key("empty").begin_object().end_object().end_object();
    EXPECT_EQ(w.str(),
              "{\n"
              "  \"tool\": \"ks-filter\",\n"
              "  \"list\": [0.5, 0.5],\n"
              "  \"items\": [\n"
              "    1,\n"
              "    {\n"
              "      \"k\": 2\n"
              "    }\n"
              "  ],\n"
              "  \"empty\": {}\n"
              "}");
}

TEST(JsonWriter, RawValuesAreReindentedAtTheirDepth) {
    ks::JsonWriter inner(2);
    inner.begin_object().key("fs").value(30000).key("nblocks").value(1).end_object();
    ks::JsonWriter w(2);
    w.begin_object().key("settings").raw(inner.str()).end_object();
    EXPECT_EQ(w.str(),
              "{\n"
              "  \"settings\": {\n"
              "    \"fs\": 30000,\n"
              "    \"nblocks\": 1\n"
              "  }\n"
              "}");
    ks::JsonWriter top(2);
    top.begin_array().value(1).end_array();
    EXPECT_EQ(top.str(), "[\n  1\n]");
}

TEST(JsonWriter, MisuseIsAnInternalError) {
    auto internal = [](auto f) {
        try {
            f();
            ADD_FAILURE() << "no exception";
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::internal) << e.what();
        }
    };
    internal([] { ks::JsonWriter w; w.begin_array().key("k"); });
    internal([] { ks::JsonWriter w; w.begin_object().end_array(); });
    internal([] { ks::JsonWriter w; w.begin_array().end_object(); });
    internal([] { ks::JsonWriter w; w.end_object(); });
    internal([] { ks::JsonWriter w; w.value(1).value(2); });
}

TEST(JsonWriter, PythonParsesWhatWeWrite) {
    if (!have_python()) GTEST_SKIP() << KS_PYTHON << " not found";
    for (const int indent : {0, 2, 4}) {
        ks::JsonWriter w(indent);
        w.begin_object();
        w.key("path").value(std::string("/data/\xc2\xb5/rec\x01\xff.bin"));
        w.key("numbers").value(std::vector<double>{0.1, -2.5e-300, 1e300, 3, std::nan(""),
                                                   std::numeric_limits<double>::infinity()});
        w.key("ints").value(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 0, 42});
        w.key("nested").begin_array().begin_object().key("ok").value(true).end_object().begin_array().end_array();
        w.end_array().key("none").null().end_object();
        const std::string script =
            "import json, math, sys\n"
            "d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
            "assert d['path'] == '/data/\\u00b5/rec\\x01\\ufffd.bin', d['path']\n"
            "n = d['numbers']\n"
            "assert n[:4] == [0.1, -2.5e-300, 1e300, 3] and n[4] is None and n[5] == 'inf', n\n"
            "assert isinstance(n[3], int)\n"
            "assert d['ints'] == [-2**63, 0, 42]\n"
            "assert d['nested'] == [{'ok': True}, []] and d['none'] is None\n";
        EXPECT_EQ(run_python(script, w.str()), 0) << "indent " << indent << ":\n" << w.str();
    }
}
