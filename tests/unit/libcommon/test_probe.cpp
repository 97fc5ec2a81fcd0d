// ks::Probe readers (formats/probe.md): Kilosort4 JSON, .prb, Kilosort .mat, built-ins, checks.
// Expected values are written out by hand or computed by numpy/scipy (KS_PYTHON), never by the
// code under test.
#include "ks/probe.hpp"

#include <gtest/gtest.h>
#include <matio.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ks/error.hpp"

namespace fs = std::filesystem;
using ks::Error;
using ks::Exit;
using ks::Probe;

namespace {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (fs::path(::testing::TempDir()) / "ks_probe_XXXXXX").string();
        KS_ASSERT(mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::string write(const std::string& name, const std::string& content) const {
        std::ofstream(file(name), std::ios::binary) << content;
        return file(name);
    }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// Runs f, which must throw ks::Error(usage) whose message contains every string in `parts`.
void expect_usage(const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage) << e.what();
        for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' not in: " << e.what();
        return;
    }
    ADD_FAILURE() << "expected ks::Error(usage) mentioning " << (parts.empty() ? "" : parts[0]);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

bool have_scipy() {
    static const bool ok =
        std::system((std::string(KS_PYTHON) + " -c 'import numpy, scipy.io' >/dev/null 2>&1").c_str()) == 0;
    return ok;
}

int run_python(const TempDir& dir, const std::string& script, const std::string& args = "") {
    const std::string path = dir.write("script.py", script);
    return std::system((std::string(KS_PYTHON) + " " + path + " " + args).c_str());
}

std::vector<double> sorted_unique(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

std::vector<int> iota_vec(int n, int start = 0) {
    std::vector<int> v(n);
    for (int i = 0; i < n; ++i) v[i] = start + i;
    return v;
}

}  // namespace

// ---- Kilosort4 JSON -------------------------------------------------------------------------

TEST(ProbeJson, LoadsKilosort4Layout) {
    // As Kilosort4's save_probe writes it: floats for positions and kcoords, n_chan an int.
    const std::string text = R"({"chanMap": [3, 2, 1, 0], "xc": [11.0, 43.0, 27.5, -59.0],
        "yc": [20.0, 20.0, 40.0, 1e2], "kcoords": [0.0, 0.0, 1.0, 1.0], "n_chan": 4})";
    const Probe p = Probe::from_json_text(text, "dir/probe.json");
    EXPECT_EQ(p.name, "probe.json");
    EXPECT_EQ(p.chanMap, (std::vector<int>{3, 2, 1, 0}));
    EXPECT_EQ(p.xc, (std::vector<double>{11, 43, 27.5, -59}));
    EXPECT_EQ(p.yc, (std::vector<double>{20, 20, 40, 100}));
    EXPECT_EQ(p.kcoords, (std::vector<int>{0, 0, 1, 1}));
    EXPECT_EQ(p.n_chan(), 4);
    EXPECT_EQ(p.n_shanks(), 2);
}

TEST(ProbeJson, OptionalKeysAndNumberForms) {
    // No kcoords -> shank 0; chanMap written as floats; unknown keys ignored.
    const Probe p = Probe::from_json_text(R"({"chanMap": [0.0, 2.0], "xc": [0, 0], "yc": [0, 20], "comment": "x"})",
                                          "p.json");
    EXPECT_EQ(p.chanMap, (std::vector<int>{0, 2}));
    EXPECT_EQ(p.kcoords, (std::vector<int>{0, 0}));
    EXPECT_EQ(p.n_shanks(), 1);
    // n_chan larger than chanMap: what Kilosort4 writes after dropping disconnected .mat channels.
    EXPECT_EQ(Probe::from_json_text(R"({"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20], "n_chan": 3})", "p.json")
                  .n_chan(),
              2);
}

TEST(ProbeJson, ErrorsNameFileAndKey) {
    // The length message is exactly the one formats/probe.md shows.
    std::string xc31 = "[", cm32 = "[", yc32 = "[";
    for (int i = 0; i < 32; ++i) {
        cm32 += (i ? "," : "") + std::to_string(i);
        yc32 += (i ? "," : "") + std::to_string(20 * i);
        if (i < 31) xc31 += (i ? "," : "") + std::string("0");
    }
    const std::string mismatched = "{\"chanMap\": " + cm32 + "], \"xc\": " + xc31 + "], \"yc\": " + yc32 + "]}";
    EXPECT_EQ(error_of([&] { Probe::from_json_text(mismatched, "probe.json"); }),
              "probe.json: 'xc' has 31 entries, 'chanMap' has 32");

    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"", {"probe.json", "empty"}},
        {"  \n", {"probe.json", "empty"}},
        {R"({"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20)", {"probe.json", "not valid JSON"}},
        {"[1, 2]", {"probe.json", "JSON object"}},
        {R"({"chanMap": [0, 1], "yc": [0, 20]})", {"probe.json", "'xc'"}},
        {R"({"xc": [0, 0], "yc": [0, 20]})", {"probe.json", "'chanMap'"}},
        {R"({"chanMap": [0, 1], "xc": [0, 0]})", {"probe.json", "'yc'"}},
        {R"({"chanMap": 5, "xc": [0], "yc": [0]})", {"probe.json", "'chanMap' must be an array"}},
        {R"({"chanMap": [0, 1], "xc": [0, "1"], "yc": [0, 20]})", {"probe.json", "'xc' entry 1"}},
        {R"({"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20], "kcoords": [0, 0.5]})", {"probe.json", "'kcoords' entry 1", "0.5"}},
        {R"({"chanMap": [0, 1.25], "xc": [0, 0], "yc": [0, 20]})", {"probe.json", "'chanMap' entry 1"}},
        {R"({"chanMap": [0, 1e12], "xc": [0, 0], "yc": [0, 20]})", {"probe.json", "'chanMap' entry 1"}},
        {R"({"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20], "kcoords": [0]})", {"probe.json", "'kcoords' has 1 entries, 'chanMap' has 2"}},
        {R"({"chanMap": [0, 1, 2], "xc": [0, 0, 0], "yc": [0, 20, 40], "n_chan": 2})", {"probe.json", "'n_chan' is 2"}},
        {R"({"chanMap": [0, 1], "xc": [0, 0], "yc": [0, 20], "n_chan": "2"})", {"probe.json", "'n_chan'"}},
        {R"({"chanMap": [0, 0], "xc": [0, 0], "yc": [0, 20]})", {"probe.json", "file row 0 appears twice"}},
        {R"({"chanMap": [], "xc": [], "yc": []})", {"probe.json", "no channels"}},
    };
    for (const auto& [text, parts] : cases) {
        SCOPED_TRACE(text);
        expect_usage([&] { Probe::from_json_text(text, "probe.json"); }, parts);
    }
}

TEST(ProbeJson, RoundTripThroughOurReader) {
    for (const std::string name : {"neuropixels1", "neuropixels2-4shank", "linear3"}) {
        const Probe a = Probe::builtin(name);
        const Probe b = Probe::from_json_text(a.to_json(), name + ".json");
        EXPECT_EQ(a.chanMap, b.chanMap) << name;
        EXPECT_EQ(a.xc, b.xc) << name;
        EXPECT_EQ(a.yc, b.yc) << name;
        EXPECT_EQ(a.kcoords, b.kcoords) << name;
    }
    // Non-integral positions survive exactly (shortest round-trip formatting).
    Probe p;
    p.name = "odd";
    p.chanMap = {5, 0};
    p.xc = {0.1, -1.0 / 3.0};
    p.yc = {1e-7, 12345.678901234567};
    p.kcoords = {2, 7};
    const Probe q = Probe::from_json_text(p.to_json(), "odd.json");
    EXPECT_EQ(q.chanMap, p.chanMap);
    EXPECT_EQ(q.xc, p.xc);
    EXPECT_EQ(q.yc, p.yc);
    EXPECT_EQ(q.kcoords, p.kcoords);
}

TEST(ProbeJson, KilosortStyleReaderAcceptsToJson) {
    // Read our JSON the way Kilosort4's io.load_probe does (json.load, then chanMap as int32 and
    // every other list as float32, required keys chanMap/yc/xc/n_chan) and compare with the NP1
    // layout computed independently in numpy.
    if (!have_scipy()) GTEST_SKIP() << KS_PYTHON << " lacks numpy/scipy";
    TempDir dir;
    dir.write("np1.json", Probe::builtin("neuropixels1").to_json());
    const int rc = run_python(dir, R"(
import json, sys
import numpy as np
with open(sys.argv[1]) as f:
    probe = json.load(f)
for k in list(probe):
    if isinstance(probe[k], list):
        probe[k] = np.array(probe[k], dtype=np.int32 if k == 'chanMap' else np.float32)
for k in ['chanMap', 'yc', 'xc', 'n_chan']:
    assert k in probe, k
i = np.arange(384)
assert probe['n_chan'] == 384
assert (probe['chanMap'] == i).all()
assert (probe['xc'] == np.array([43, 11, 59, 27])[i % 4]).all()
assert (probe['yc'] == 20 * (i // 2) + 20).all()
assert (probe['kcoords'] == 0).all()
with open(sys.argv[1]) as f:
    raw = json.load(f)
assert all(isinstance(v, float) for v in raw['xc'] + raw['yc'] + raw['kcoords'])
assert all(isinstance(v, int) for v in raw['chanMap'])
)", dir.file("np1.json"));
    EXPECT_EQ(rc, 0);
}

// ---- .prb -----------------------------------------------------------------------------------

TEST(ProbePrb, GroupsInKeyOrderWithPythonSyntax) {
    const std::string ok = R"PRB("""Docstring: two tetrodes."""
# comment line
total_nb_channels = 9; radius = 100.5
extra = {'flag': True, 'other': False, 'nothing': None, "q": "it's", 'e': 'a\'b', 't': (), 'r': r'\d'}
channel_groups = {
    # group 2 comes second although written first
    2: {'channels': [8, 6,
                     7],            # continuation inside brackets
        'geometry': {6: (100, -20.5), 7: [116, 1e1], 8: (1.5E2, 3),},
        'graph': [(6, 7), (7, 8),],
       },
    0: {
        "channels": (1, 0,),
        "geometry": {0: (-16, 0), 1: (+16, 0), 99: (5, 5)},
    },
}
radius = \
    50
)PRB";
    const Probe p = Probe::from_prb_text(ok, "dir/t.prb");
    EXPECT_EQ(p.name, "t.prb");
    EXPECT_EQ(p.chanMap, (std::vector<int>{1, 0, 8, 6, 7}));
    EXPECT_EQ(p.xc, (std::vector<double>{16, -16, 150, 100, 116}));
    EXPECT_EQ(p.yc, (std::vector<double>{0, 0, 3, -20.5, 10}));
    EXPECT_EQ(p.kcoords, (std::vector<int>{0, 0, 2, 2, 2}));
    EXPECT_EQ(p.n_shanks(), 2);
}

TEST(ProbePrb, RangeAndListRange) {
    const std::string text = R"(
channel_groups = {
    0: {'channels': list(range(4)),
        'geometry': {0: (0, 0), 1: (0, 20), 2: (0, 40), 3: (0, 60)}},
    1: {'channels': range(10, 4, -2),
        'geometry': {10: (200, 0), 8: (200, 20), 6: (200, 40)}},
    3: {'channels': list(range(20, 22)), 'geometry': {20: (400, 0), 21: (400, 20)}},
}
)";
    const Probe p = Probe::from_prb_text(text, "r.prb");
    EXPECT_EQ(p.chanMap, (std::vector<int>{0, 1, 2, 3, 10, 8, 6, 20, 21}));
    EXPECT_EQ(p.kcoords, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 3, 3}));
    EXPECT_EQ(p.yc, (std::vector<double>{0, 20, 40, 60, 0, 20, 40, 0, 20}));
    EXPECT_EQ(p.xc, (std::vector<double>{0, 0, 0, 0, 200, 200, 200, 400, 400}));
}

TEST(ProbePrb, RepeatedKeysKeepTheLastAsPythonDoes) {
    const std::string text = R"(
channel_groups = {0: {'channels': [5], 'geometry': {5: (1, 1)}}}
channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 5), 1: (0, 20)}}, 0: {'channels': [2], 'geometry': {2: (3, 4)}}}
)";
    const Probe p = Probe::from_prb_text(text, "k.prb");
    EXPECT_EQ(p.chanMap, (std::vector<int>{2}));
    EXPECT_EQ(p.xc, (std::vector<double>{3}));
    const Probe q = Probe::from_prb_text(
        "channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 5), 1: (0, 20)}}}", "k.prb");
    EXPECT_EQ(q.yc, (std::vector<double>{0, 20}));
}

TEST(ProbePrb, FunctionCallIsRefusedNotRun) {
    TempDir dir;
    const std::string marker = dir.file("pwned");
    const std::string text = "channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 20)}}}\n"
                             "__import__('os').system('touch " + marker + "')\n";
    const std::string path = dir.write("evil.prb", text);
    expect_usage([&] { Probe::load(path); }, {path, "line 2", "__import__"});
    EXPECT_FALSE(fs::exists(marker));
}

TEST(ProbePrb, RefusesEverythingButLiterals) {
    const std::string head = "channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: ";
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {head + "(0, float('20'))}}}", {"line 1", "float(...)"}},
        {head + "(0, eval('20'))}}}", {"line 1", "eval(...)"}},
        {head + "(0, 20)}}}\nopen('/etc/passwd')\n", {"line 2", "open(...)"}},
        {head + "(0, y)}}}", {"line 1", "'y' is a name"}},
        {head + "(0, 2 * 10)}}}", {"line 1", "'*'"}},
        {head + "(0, 1 if True else 2)}}}", {"line 1", "'if'"}},
        {head + "(0, 20)}}}\nimport os\n", {"line 2", "'import'"}},
        {"import os\n" + head + "(0, 20)}}}", {"line 1", "'import'"}},
        {head + "(0, 20)}}}\nx = os.path\n", {"line 2", "'os' is a name"}},
        {head + "(0, 20)}}}\nx = (lambda: 1)\n", {"line 2", "'lambda'"}},
        {"channel_groups = {0: {'channels': [0 for c in range(2)], 'geometry': {}}}", {"line 1", "'for'"}},
        {"channel_groups = {0, 1}", {"line 1", "set literals"}},
        {"channel_groups = {0: {'channels': list(range(n=3))}}", {"line 1", "keyword"}},
        {"channel_groups = {0: {'channels': range(1, 2, 0)}}", {"line 1", "step"}},
        {"channel_groups = {0: {'channels': range(10**9)}}", {"line 1", "'*'"}},
        {"channel_groups = {0: {'channels': range(0, 100000000000)}}", {"line 1", "range(...) would hold"}},
        {"channel_groups = {0: {'channels': range(1.5)}}", {"line 1", "integers"}},
        {"channel_groups = {0: {'channels': list(5)}}", {"line 1", "list(...)"}},
        {"channel_groups = f'{0}'", {"line 1", "string prefix 'f'"}},
        {"channel_groups = b'x'", {"line 1", "string prefix 'b'"}},
        {"channel_groups = {0: 'abc}", {"line 1", "never closed"}},
        {"channel_groups = {0: 0x10}", {"line 1", "malformed number"}},
        {"channel_groups = {0: 1j}", {"line 1", "malformed number"}},
        {"channel_groups = {0: 99999999999999999999999}", {"line 1", "out of range"}},
        {"channel_groups = {[0]: 1}", {"line 1", "list cannot be a dict key"}},
        {"channel_groups = -'a'", {"line 1", "unary '-'"}},
        {"channel_groups = {0: 1} extra", {"line 1", "end of the statement"}},
        {"channel_groups = ", {"line 1", "value is missing"}},
        {"channel_groups = [1 2]", {"line 1", "expected ',' or ']'"}},
        {"channel_groups = (1]", {"line 1", "expected ',' or ')'"}},
        {"if True:\n    channel_groups = {}", {"line 1", "'if'"}},
        {"x = 1 \\ 2", {"line 1", "backslash"}},
        {"a.b = 1", {"line 1", "'a'"}},
        {"x = \x01", {"line 1", "byte 0x01"}},
    };
    for (const auto& [text, parts] : cases) {
        SCOPED_TRACE(text);
        std::vector<std::string> all = parts;
        all.insert(all.begin(), "x.prb: ");
        expect_usage([&] { Probe::from_prb_text(text, "x.prb"); }, all);
    }
}

TEST(ProbePrb, DeepNestingIsAnErrorNotACrash) {
    const std::string deep = "channel_groups = " + std::string(100000, '[') + std::string(100000, ']');
    expect_usage([&] { Probe::from_prb_text(deep, "deep.prb"); }, {"deep.prb", "nested"});
    const std::string neg = "channel_groups = " + std::string(100000, '-') + "1";
    expect_usage([&] { Probe::from_prb_text(neg, "neg.prb"); }, {"neg.prb", "nested"});
}

TEST(ProbePrb, TruncatedAndStructuralErrors) {
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"channel_groups = {\n    0: {\n        'channels': [0, 1],\n        'geometry': {0: (0, 0),\n",
         {"line 4", "'{' opened here is never closed", "truncated"}},
        {"channel_groups = {0: {'channels': [0, 1", {"line 1", "'[' opened here is never closed"}},
        {"channel_groups = {0: {'channels': list(range(3", {"line 1", "never closed"}},
        {"", {"empty"}},
        {"# only a comment\n", {"no `channel_groups"}},
        {"total_nb_channels = 32\n", {"no `channel_groups"}},
        {"channel_groups = [0, 1]", {"line 1", "must be a dict"}},
        {"channel_groups = {'a': {}}", {"line 1", "keys must be integer"}},
        {"channel_groups = {True: {}}", {"line 1", "keys must be integer"}},
        {"channel_groups = {-1: {'channels': [], 'geometry': {}}}", {"line 1", "not a valid shank id"}},
        {"channel_groups = {0: [1, 2]}", {"line 1", "group 0 must be a dict"}},
        {"channel_groups = {0: {'geometry': {}}}", {"line 1", "group 0 has no 'channels'"}},
        {"channel_groups = {0: {'channels': 3, 'geometry': {}}}", {"group 0: 'channels' must be a list"}},
        {"channel_groups = {0: {'channels': [0]}}", {"group 0 has no 'geometry'"}},
        {"channel_groups = {0: {'channels': [0], 'geometry': [(0, 0)]}}", {"'geometry' must be a dict"}},
        {"channel_groups = {0: {'channels': ['a'], 'geometry': {}}}", {"entries must be integer file rows"}},
        {"channel_groups = {0: {'channels': [0, 1, 2],\n 'geometry': {0: (0, 0), 1: (0, 20)}}}",
         {"line 2", "channel 2 has no position in 'geometry'"}},
        {"channel_groups = {0: {'channels': [0], 'geometry': {0: (0, 0, 0)}}}", {"must be (x, y)"}},
        {"channel_groups = {0: {'channels': [0], 'geometry': {0: ('a', 0)}}}", {"must be (x, y)"}},
        {"channel_groups = {0: {'channels': [], 'geometry': {}}}", {"no channels"}},
        {"channel_groups = {0: {'channels': [0, 0], 'geometry': {0: (0, 0)}}}", {"file row 0 appears twice"}},
        {"channel_groups = {0: {'channels': [0, 1], 'geometry': {0: (0, 0), 1: (0, 0)}}}", {"both at x=0 y=0"}},
    };
    for (const auto& [text, parts] : cases) {
        SCOPED_TRACE(text);
        std::vector<std::string> all = parts;
        all.insert(all.begin(), "t.prb: ");
        expect_usage([&] { Probe::from_prb_text(text, "t.prb"); }, all);
    }
}

TEST(ProbePrb, AgreesWithPythonExecOfTheSameFile) {
    // Python itself is the oracle for a representative file (run here on our own trusted text).
    if (!have_scipy()) GTEST_SKIP() << KS_PYTHON << " lacks numpy/scipy";
    TempDir dir;
    std::ostringstream prb;
    prb << "channel_groups = {\n";
    for (int g : {3, 1, 2}) {
        prb << "  " << g << ": {'channels': list(range(" << 10 * g << ", " << 10 * g + 6 << ")), 'geometry': {";
        for (int c = 10 * g; c < 10 * g + 6; ++c) prb << c << ": (" << 300 * g + 16 * (c % 2) << ", " << 12.5 * (c / 2) << "), ";
        prb << "}},\n";
    }
    prb << "}\n";
    const std::string path = dir.write("p.prb", prb.str());
    const int rc = run_python(dir, R"(
import sys
d = {}
exec(open(sys.argv[1]).read(), {}, d)
cg = d['channel_groups']
rows, xs, ys, ks = [], [], [], []
for g in sorted(cg):
    for c in cg[g]['channels']:
        rows.append(c); xs.append(cg[g]['geometry'][c][0]); ys.append(cg[g]['geometry'][c][1]); ks.append(g)
with open(sys.argv[2], 'w') as f:
    for v in (rows, xs, ys, ks):
        f.write(' '.join(repr(float(x)) for x in v) + '\n')
)", path + " " + dir.file("expected.txt"));
    ASSERT_EQ(rc, 0);
    std::ifstream in(dir.file("expected.txt"));
    std::vector<std::vector<double>> exp(4);
    std::string line;
    for (auto& v : exp) {
        std::getline(in, line);
        std::istringstream ls(line);
        for (double x; ls >> x;) v.push_back(x);
    }
    const Probe p = Probe::load(path);
    ASSERT_EQ(p.n_chan(), static_cast<int>(exp[0].size()));
    for (int i = 0; i < p.n_chan(); ++i) {
        EXPECT_EQ(p.chanMap[i], exp[0][i]);
        EXPECT_EQ(p.xc[i], exp[1][i]);
        EXPECT_EQ(p.yc[i], exp[2][i]);
        EXPECT_EQ(p.kcoords[i], exp[3][i]);
    }
}

// ---- Kilosort .mat (written by scipy.io.savemat) --------------------------------------------

namespace {
const char kMatScript[] = R"(
import sys
import numpy as np
import scipy.io
out = sys.argv[1]
rng = np.random.default_rng(7)
n = 40
perm = rng.permutation(n)
chan1 = (perm + 1).astype(float)                  # 1-based, shuffled
x = rng.choice([11.0, 27.0, 43.0, 59.0], n)
y = rng.permutation(n) * 20.0 + 0.25              # distinct depths
k = (np.arange(n) // 20) + 1.0                    # Kilosort maps use 1, 2, ...
conn = rng.random(n) > 0.2
variants = {
    # Kilosort 2/3 style: column vectors, double, both chanMap forms, logical connected
    'ks_columns': (dict(chanMap=chan1, chanMap0ind=chan1 - 1, xcoords=x, ycoords=y, kcoords=k,
                        connected=conn, fs=30000.0), 'column'),
    # row vectors, assorted numeric classes, connected as 0/1 doubles, 1-based only
    'rows_classes': (dict(chanMap=chan1.astype(np.int32), xcoords=x.astype(np.float32),
                          ycoords=(y - 0.25).astype(np.uint16), kcoords=k.astype(np.uint8),
                          connected=conn.astype(float)), 'row'),
    # 0-based only, int64, no kcoords, no connected
    'zero_based': (dict(chanMap0ind=(chan1 - 1).astype(np.int64), xcoords=x, ycoords=y), 'column'),
    # chanMap0ind wins over a chanMap that disagrees with it
    'prefer_0ind': (dict(chanMap0ind=chan1 - 1, chanMap=chan1[::-1].copy(), xcoords=x, ycoords=y), 'row'),
}
for name, (v, oned) in variants.items():
    scipy.io.savemat(f'{out}/{name}.mat', v, oned_as=oned)
    m = scipy.io.loadmat(f'{out}/{name}.mat')
    rows = (m['chanMap0ind'] if 'chanMap0ind' in m else m['chanMap'] - 1).ravel()
    keep = m['connected'].ravel().astype(bool) if 'connected' in m else np.ones(len(rows), bool)
    kk = m['kcoords'].ravel() if 'kcoords' in m else np.zeros(len(rows))
    with open(f'{out}/{name}.txt', 'w') as f:
        for arr in (rows[keep], m['xcoords'].ravel()[keep], m['ycoords'].ravel()[keep], kk[keep]):
            f.write(' '.join(repr(float(a)) for a in arr) + '\n')
)";

std::vector<std::vector<double>> read_rows(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::vector<double>> out;
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        out.emplace_back();
        for (double x; ls >> x;) out.back().push_back(x);
    }
    return out;
}
}  // namespace

TEST(ProbeMat, MatchesScipyReading) {
    if (!have_scipy()) GTEST_SKIP() << KS_PYTHON << " lacks numpy/scipy";
    TempDir dir;
    ASSERT_EQ(run_python(dir, kMatScript, dir.path().string()), 0);
    for (const std::string v : {"ks_columns", "rows_classes", "zero_based", "prefer_0ind"}) {
        SCOPED_TRACE(v);
        const auto exp = read_rows(dir.file(v + ".txt"));
        ASSERT_EQ(exp.size(), 4u);
        const Probe p = Probe::load(dir.file(v + ".mat"));
        EXPECT_EQ(p.name, v + ".mat");
        ASSERT_EQ(p.n_chan(), static_cast<int>(exp[0].size()));
        EXPECT_LT(p.n_chan(), v == "ks_columns" || v == "rows_classes" ? 40 : 41);  // some disconnected
        for (int i = 0; i < p.n_chan(); ++i) {
            EXPECT_EQ(p.chanMap[i], exp[0][i]) << i;
            EXPECT_EQ(p.xc[i], exp[1][i]) << i;
            EXPECT_EQ(p.yc[i], exp[2][i]) << i;
            EXPECT_EQ(p.kcoords[i], exp[3][i]) << i;
        }
    }
}

TEST(ProbeMat, Errors) {
    if (!have_scipy()) GTEST_SKIP() << KS_PYTHON << " lacks numpy/scipy";
    TempDir dir;
    ASSERT_EQ(run_python(dir, R"(
import sys
import numpy as np
import scipy.io
o = sys.argv[1]
scipy.io.savemat(o + '/no_x.mat', dict(chanMap=np.arange(1, 5.0), ycoords=np.arange(4.0)))
scipy.io.savemat(o + '/no_map.mat', dict(xcoords=np.zeros(2), ycoords=np.arange(2.0)))
scipy.io.savemat(o + '/short_y.mat', dict(chanMap=np.arange(1, 5.0), xcoords=np.zeros(4), ycoords=np.arange(3.0)))
scipy.io.savemat(o + '/cell.mat', dict(chanMap=np.arange(1, 3.0), xcoords=np.zeros(2),
                                       ycoords=np.array([[1.0], 'a'], dtype=object)))
scipy.io.savemat(o + '/text_x.mat', dict(chanMap=np.arange(1, 3.0), xcoords='ab', ycoords=np.arange(2.0)))
scipy.io.savemat(o + '/complex.mat', dict(chanMap=np.arange(1, 3.0), xcoords=np.zeros(2) + 1j, ycoords=np.arange(2.0)))
scipy.io.savemat(o + '/frac.mat', dict(chanMap=np.array([1.0, 2.5]), xcoords=np.zeros(2), ycoords=np.arange(2.0)))
scipy.io.savemat(o + '/good.mat', dict(chanMap=np.arange(1, 65.0), xcoords=np.zeros(64), ycoords=np.arange(64.0)))
scipy.io.savemat(o + '/good_z.mat', dict(chanMap=np.arange(1, 65.0), xcoords=np.zeros(64), ycoords=np.arange(64.0)),
                 do_compression=True)
)", dir.path().string()), 0);
    // Every truncation of a good file, plain and compressed, fails cleanly: never a crash, a
    // hang, or a probe built from the bytes that are missing.
    for (const std::string name : {"good.mat", "good_z.mat"}) {
        std::ifstream good(dir.file(name), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(good)), std::istreambuf_iterator<char>());
        ASSERT_GT(bytes.size(), 300u);
        EXPECT_EQ(Probe::load(dir.file(name)).n_chan(), 64);
        for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
            SCOPED_TRACE(name + " cut at " + std::to_string(cut));
            const std::string path = dir.write("cut.mat", bytes.substr(0, cut));
            expect_usage([&] { Probe::load(path); }, {path});
        }
    }
    const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
        {"no_x.mat", {"no variable 'xcoords'", "chanMap, ycoords"}},
        {"no_map.mat", {"'chanMap' or 'chanMap0ind'"}},
        {"short_y.mat", {"'ycoords' has 3 entries, 'chanMap' has 4"}},
        {"cell.mat", {"'ycoords' is a cell array"}},
        {"text_x.mat", {"'xcoords' is a char array"}},
        {"complex.mat", {"'xcoords' is complex"}},
        {"frac.mat", {"'chanMap' entry 1"}},
    };
    for (const auto& [name, parts] : cases) {
        SCOPED_TRACE(name);
        std::vector<std::string> all = parts;
        all.insert(all.begin(), dir.file(name) + ": ");
        expect_usage([&] { Probe::load(dir.file(name)); }, all);
    }
}

TEST(ProbeMat, Version4And73WrittenByMatio) {
    // scipy cannot write v7.3 (HDF5), so libmatio's own writer makes these: v4, v5 and v7.3.
    TempDir dir;
    const std::pair<mat_ft, const char*> versions[] = {
        {MAT_FT_MAT4, "v4.mat"}, {MAT_FT_MAT5, "v5.mat"}, {MAT_FT_MAT73, "v73.mat"}};
    for (const auto& [ver, name] : versions) {
        SCOPED_TRACE(name);
        const std::string path = dir.file(name);
        mat_t* m = Mat_CreateVer(path.c_str(), nullptr, ver);
        ASSERT_NE(m, nullptr);
        double chan[4] = {3, 1, 4, 2}, x[4] = {0, 16, 0, 16}, y[4] = {0, 0, 20, 20}, conn[4] = {1, 1, 0, 1};
        std::size_t dims[2] = {1, 4};  // row vectors
        for (auto [var, data] : {std::pair{"chanMap", chan}, {"xcoords", x}, {"ycoords", y}, {"connected", conn}}) {
            matvar_t* v = Mat_VarCreate(var, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, data, 0);
            ASSERT_NE(v, nullptr);
            EXPECT_EQ(Mat_VarWrite(m, v, MAT_COMPRESSION_NONE), 0);
            Mat_VarFree(v);
        }
        Mat_Close(m);
        const Probe p = Probe::load(path);
        EXPECT_EQ(p.chanMap, (std::vector<int>{2, 0, 1}));
        EXPECT_EQ(p.xc, (std::vector<double>{0, 16, 16}));
        EXPECT_EQ(p.yc, (std::vector<double>{0, 0, 20}));
        EXPECT_EQ(p.kcoords, (std::vector<int>{0, 0, 0}));
    }
}

TEST(ProbeMat, NotAMatFile) {
    TempDir dir;
    const std::string text = dir.write("text.mat", "chanMap = [1 2 3]\nxcoords = [0 0 0]\n");
    expect_usage([&] { Probe::load(text); }, {text + ": ", ".mat"});
    const std::string empty = dir.write("empty.mat", "");
    expect_usage([&] { Probe::load(empty); }, {empty + ": ", "empty"});
    const std::string json = dir.write("json.mat", R"({"chanMap": [0], "xc": [0], "yc": [0]})");
    expect_usage([&] { Probe::load(json); }, {json + ": "});
}

// ---- built-ins ------------------------------------------------------------------------------

TEST(ProbeBuiltin, Neuropixels1) {
    const Probe p = Probe::builtin("neuropixels1");
    EXPECT_EQ(p.name, "neuropixels1");
    ASSERT_EQ(p.n_chan(), 384);
    EXPECT_EQ(p.n_shanks(), 1);
    EXPECT_EQ(p.chanMap, iota_vec(384));
    EXPECT_EQ(sorted_unique(p.xc), (std::vector<double>{11, 27, 43, 59}));
    const auto ys = sorted_unique(p.yc);
    ASSERT_EQ(ys.size(), 192u);
    EXPECT_EQ(ys.front(), 20);
    EXPECT_EQ(ys.back(), 3840);
    for (std::size_t k = 1; k < ys.size(); ++k) EXPECT_EQ(ys[k] - ys[k - 1], 20);
    // Rows alternate between the (43, 11) pair and the (59, 27) pair: the staggered checkerboard.
    for (int row = 0; row < 192; ++row) {
        const bool even = row % 2 == 0;
        EXPECT_EQ(p.xc[2 * row], even ? 43 : 59);
        EXPECT_EQ(p.xc[2 * row + 1], even ? 11 : 27);
        EXPECT_EQ(p.yc[2 * row], 20 + 20 * row);
        EXPECT_EQ(p.yc[2 * row + 1], 20 + 20 * row);
    }
}

TEST(ProbeBuiltin, Neuropixels2SingleShank) {
    const Probe p = Probe::builtin("neuropixels2");
    ASSERT_EQ(p.n_chan(), 384);
    EXPECT_EQ(p.n_shanks(), 1);
    EXPECT_EQ(p.chanMap, iota_vec(384));
    EXPECT_EQ(sorted_unique(p.xc), (std::vector<double>{27, 59}));
    const auto ys = sorted_unique(p.yc);
    ASSERT_EQ(ys.size(), 192u);
    EXPECT_EQ(ys.front(), 0);
    EXPECT_EQ(ys.back(), 15 * 191);
    for (std::size_t k = 1; k < ys.size(); ++k) EXPECT_EQ(ys[k] - ys[k - 1], 15);
    for (int i = 0; i < 384; i += 2) {
        EXPECT_EQ(p.xc[i], 27);
        EXPECT_EQ(p.xc[i + 1], 59);
    }
}

TEST(ProbeBuiltin, Neuropixels2FourShank) {
    const Probe p = Probe::builtin("neuropixels2-4shank");
    ASSERT_EQ(p.n_chan(), 384);
    EXPECT_EQ(p.n_shanks(), 4);
    EXPECT_EQ(p.chanMap, iota_vec(384));
    std::map<int, std::vector<int>> by_shank;
    for (int i = 0; i < 384; ++i) by_shank[p.kcoords[i]].push_back(i);
    ASSERT_EQ(by_shank.size(), 4u);
    for (const auto& [s, idx] : by_shank) {
        SCOPED_TRACE(s);
        ASSERT_EQ(idx.size(), 96u);
        EXPECT_EQ(idx.front(), 96 * s);  // contiguous rows, shank order
        std::vector<double> xs, ys;
        for (int i : idx) {
            xs.push_back(p.xc[i]);
            ys.push_back(p.yc[i]);
        }
        EXPECT_EQ(sorted_unique(xs), (std::vector<double>{250.0 * s + 27, 250.0 * s + 59}));
        const auto uy = sorted_unique(ys);
        ASSERT_EQ(uy.size(), 48u);
        EXPECT_EQ(uy.front(), 0);
        for (std::size_t k = 1; k < uy.size(); ++k) EXPECT_EQ(uy[k] - uy[k - 1], 15);
    }
}

TEST(ProbeBuiltin, LinearAndAliases) {
    const Probe p = Probe::builtin("linear32");
    EXPECT_EQ(p.name, "linear32");
    ASSERT_EQ(p.n_chan(), 32);
    for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(p.chanMap[i], i);
        EXPECT_EQ(p.xc[i], 0);
        EXPECT_EQ(p.yc[i], 20 * i);
        EXPECT_EQ(p.kcoords[i], 0);
    }
    EXPECT_EQ(Probe::builtin("Linear1").n_chan(), 1);
    const std::vector<std::pair<std::string, std::string>> aliases = {
        {"NP1", "neuropixels1"}, {"np1.0", "neuropixels1"}, {"Neuropixels-1.0", "neuropixels1"},
        {"PHASE3B", "neuropixels1"}, {"np2", "neuropixels2"}, {"NP2.0", "neuropixels2"},
        {"np2-1shank", "neuropixels2"}, {"NP2-4SHANK", "neuropixels2-4shank"}, {"np2.4", "neuropixels2-4shank"},
        {"Neuropixels2-4Shank", "neuropixels2-4shank"},
    };
    for (const auto& [alias, name] : aliases) {
        EXPECT_EQ(Probe::builtin(alias).name, name) << alias;
        EXPECT_EQ(Probe::load(alias).name, name) << alias;
    }
    for (const std::string& n : Probe::builtin_probe_names()) {
        if (n == "linear<N>") continue;
        EXPECT_EQ(Probe::builtin(n).name, n);
        EXPECT_NO_THROW(Probe::builtin(n).validate(n));
    }
    const auto names = Probe::builtin_probe_names();
    for (const char* n : {"neuropixels1", "neuropixels2", "neuropixels2-4shank", "linear<N>"})
        EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
    expect_usage([] { Probe::builtin("linear0"); }, {"linear0", "1 <= N"});
    expect_usage([] { Probe::builtin("linear99999999999"); }, {"linear99999999999"});
    expect_usage([] { Probe::builtin("neuropixels3"); }, {"neuropixels3", "neuropixels1", "linear<N>"});
    expect_usage([] { Probe::builtin("linear"); }, {"not a built-in"});
    expect_usage([] { Probe::builtin("linear-4"); }, {"not a built-in"});
}

// ---- load() dispatch, validate, check_fits --------------------------------------------------

TEST(ProbeLoad, DispatchAndMissingFiles) {
    TempDir dir;
    const std::string json = dir.write("a.JSON", R"({"chanMap": [1, 0], "xc": [0, 0], "yc": [0, 20]})");
    EXPECT_EQ(Probe::load(json).chanMap, (std::vector<int>{1, 0}));
    const std::string prb = dir.write("b.prb", "channel_groups = {0: {'channels': [0], 'geometry': {0: (1, 2)}}}");
    EXPECT_EQ(Probe::load(prb).xc, (std::vector<double>{1}));

    for (const std::string& missing : std::vector<std::string>{dir.file("nope.json"), dir.file("nope.prb"), dir.file("nope.mat"),
                                      std::string("no-such-probe")}) {
        SCOPED_TRACE(missing);
        expect_usage([&] { Probe::load(missing); },
                     {missing + ": no such probe file, and not a built-in probe (neuropixels1, "});
    }
    const std::string txt = dir.write("probe.txt", "0 0 0\n");
    expect_usage([&] { Probe::load(txt); }, {txt + ": unknown probe file type '.txt'"});
    fs::create_directory(dir.file("d.json"));
    expect_usage([&] { Probe::load(dir.file("d.json")); }, {dir.file("d.json") + ": is a directory"});
    const std::string empty = dir.write("e.json", "");
    expect_usage([&] { Probe::load(empty); }, {empty + ": file is empty"});
    const std::string bad = dir.write("bad.json", "{\"chanMap\": [0,");
    expect_usage([&] { Probe::load(bad); }, {bad + ": not valid JSON"});
}

TEST(ProbeValidate, ConsistencyChecks) {
    Probe ok;
    ok.name = "p";
    ok.chanMap = {4, 1, 7};
    ok.xc = {0, 0, 0};
    ok.yc = {0, 20, 40};
    ok.kcoords = {0, 0, 0};
    EXPECT_NO_THROW(ok.validate("p"));

    auto with = [&](auto change) {
        Probe p = ok;
        change(p);
        return p;
    };
    expect_usage([&] { with([](Probe& p) { p.chanMap = {}; p.xc = {}; p.yc = {}; p.kcoords = {}; }).validate("o"); },
                 {"o: the probe has no channels"});
    expect_usage([&] { with([](Probe& p) { p.yc.pop_back(); }).validate("o"); }, {"o: 'yc' has 2 entries, 'chanMap' has 3"});
    expect_usage([&] { with([](Probe& p) { p.kcoords.push_back(0); }).validate("o"); },
                 {"o: 'kcoords' has 4 entries, 'chanMap' has 3"});
    expect_usage([&] { with([](Probe& p) { p.chanMap[2] = 4; }).validate("o"); },
                 {"o: file row 4 appears twice in chanMap (entries 0 and 2)"});
    expect_usage([&] { with([](Probe& p) { p.chanMap[1] = -3; }).validate("o"); }, {"o: chanMap[1] is -3"});
    expect_usage([&] { with([](Probe& p) { p.kcoords[1] = -1; }).validate("o"); }, {"o: kcoords[1] is -1"});
    expect_usage([&] { with([](Probe& p) { p.xc[2] = NAN; }).validate("o"); }, {"o: the position of chanMap[2]", "not finite"});
    expect_usage([&] { with([](Probe& p) { p.yc[0] = INFINITY; }).validate("o"); }, {"not finite"});
    expect_usage([&] { with([](Probe& p) { p.yc[2] = 0; }).validate("o"); },
                 {"o: chanMap[0] and chanMap[2] (file rows 4 and 7) are both at x=0 y=0 µm on shank 0"});
    // The same (x, y) on different shanks is fine (shanks are separate needles).
    EXPECT_NO_THROW(with([](Probe& p) { p.yc[2] = 0; p.kcoords[2] = 1; }).validate("o"));
}

TEST(ProbeCheckFits, AgainstNChanBin) {
    const Probe np1 = Probe::builtin("np1");
    EXPECT_NO_THROW(np1.check_fits(384, "rec.bin"));
    EXPECT_NO_THROW(np1.check_fits(385, "rec.bin"));  // NP1 files carry a sync row
    EXPECT_EQ(error_of([&] { np1.check_fits(100, "rec.bin"); }),
              "rec.bin: probe neuropixels1 has 384 channels but n_chan_bin is 100");

    Probe p = Probe::builtin("linear3");
    p.chanMap = {0, 384, 2};
    EXPECT_EQ(error_of([&] { p.check_fits(384, "rec.bin"); }),
              "rec.bin: probe linear3 uses file row 384 but n_chan_bin is 384 (rows 0..383)");
    try {
        p.check_fits(384, "rec.bin");
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), Exit::usage);
    }
    EXPECT_NO_THROW(p.check_fits(385, "rec.bin"));
    expect_usage([&] { p.check_fits(0, "rec.bin"); }, {"rec.bin: n_chan_bin is 0"});
}

// ---- formats/examples/probe -----------------------------------------------------------------

TEST(ProbeExamples, ValidLoadInvalidFail) {
    const fs::path root = fs::path(KS_FORMATS_DIR) / "examples" / "probe";
    ASSERT_TRUE(fs::is_directory(root / "valid")) << root;
    std::ifstream readme_in(root / "README.md");
    const std::string readme((std::istreambuf_iterator<char>(readme_in)), std::istreambuf_iterator<char>());
    int n_valid = 0, n_invalid = 0;
    for (const auto& e : fs::directory_iterator(root / "valid")) {
        SCOPED_TRACE(e.path().string());
        Probe p;
        EXPECT_NO_THROW(p = Probe::load(e.path().string()));
        EXPECT_GE(p.n_chan(), 1);
        ++n_valid;
    }
    for (const auto& e : fs::directory_iterator(root / "invalid")) {
        SCOPED_TRACE(e.path().string());
        expect_usage([&] { Probe::load(e.path().string()); }, {e.path().string() + ": "});
        EXPECT_NE(readme.find("`" + e.path().filename().string() + "`"), std::string::npos)
            << "README.md does not explain " << e.path().filename();
        ++n_invalid;
    }
    EXPECT_GE(n_valid, 7);
    EXPECT_GE(n_invalid, 31);
}

TEST(ProbeExamples, ValidContents) {
    const fs::path v = fs::path(KS_FORMATS_DIR) / "examples" / "probe" / "valid";
    const Probe two = Probe::load((v / "kilosort4_two_shanks.json").string());
    EXPECT_EQ(two.chanMap, (std::vector<int>{3, 2, 1, 0, 4, 5, 6, 7}));
    EXPECT_EQ(two.kcoords, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));
    EXPECT_EQ(two.xc[5], 216);

    const Probe tet = Probe::load((v / "tetrodes.prb").string());
    EXPECT_EQ(tet.chanMap, iota_vec(8));
    EXPECT_EQ(tet.xc, (std::vector<double>{-10.5, 10.5, -10.5, 10.5, 0, 20, 0, 20}));
    EXPECT_EQ(tet.yc, (std::vector<double>{0, 0, 25, 25, 0, 0, 20, 20}));
    EXPECT_EQ(tet.kcoords, (std::vector<int>{0, 0, 0, 0, 1, 1, 1, 1}));

    const Probe lin = Probe::load((v / "linear16_range.prb").string());
    EXPECT_EQ(lin.chanMap, iota_vec(16));
    EXPECT_EQ(lin.yc[15], 375);

    // Row 3 (0-based) is not connected; kcoords stay as written (1).
    const Probe ks = Probe::load((v / "kilosort_chanmap.mat").string());
    EXPECT_EQ(ks.chanMap, (std::vector<int>{0, 1, 2, 4, 5, 6, 7}));
    EXPECT_EQ(ks.xc, (std::vector<double>{43, 11, 59, 43, 11, 59, 27}));
    EXPECT_EQ(ks.yc, (std::vector<double>{20, 20, 40, 60, 60, 80, 80}));
    EXPECT_EQ(ks.kcoords, std::vector<int>(7, 1));

    const Probe rows = Probe::load((v / "row_vectors_int_classes.mat").string());
    EXPECT_EQ(rows.chanMap, (std::vector<int>{1, 0, 2}));
    EXPECT_EQ(rows.xc, (std::vector<double>{0, 32, 0}));
    EXPECT_EQ(rows.yc, (std::vector<double>{0, 0, 15.5}));
    EXPECT_EQ(rows.kcoords, (std::vector<int>{0, 0, 0}));
}
