// ks::hash64, file_identity, write_provenance. hash64 and the sampling are checked against the
// independent Python implementation in formats/provenance.md.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <unistd.h>

#include "test_support.hpp"
#include "ks/error.hpp"
#include "ks/output_file.hpp"
#include "ks/provenance.hpp"
#include "ks/version.hpp"

namespace fs = std::filesystem;

namespace {

using ks::test::TempDir;

bool have_python() { return std::system(KS_PYTHON " -c 'import json' >/dev/null 2>&1") == 0; }

int run_python(const TempDir& dir, const std::string& script, const std::string& args) {
    std::ofstream(dir / "check.py") << script;
    const int rc = std::system((KS_PYTHON " " + (dir / "check.py") + " " + args).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The Python hash64 and identity() of formats/provenance.md, taken from the spec itself so the
// spec and the C++ cannot drift apart.
std::string python_reference() {
    std::ifstream in(std::string(KS_FORMATS_DIR) + "/provenance.md");
    const std::string md((std::istreambuf_iterator<char>(in)), {});
    const auto def = md.find("def hash64(");
    const auto start = md.rfind("```python\n", def);
    const auto end = md.find("```", def);
    if (def == std::string::npos || start == std::string::npos || end == std::string::npos) return "raise SystemExit(3)\n";
    return "import sys\n" + md.substr(start + 10, end - start - 10);
}

std::vector<unsigned char> pattern(std::size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<unsigned char> v(n);
    for (auto& c : v) c = static_cast<unsigned char>(rng());
    return v;
}

}  // namespace

TEST(Hash64, MatchesThePythonReferenceForEveryTailLength) {
    if (!have_python()) GTEST_SKIP() << KS_PYTHON << " not found";
    TempDir dir;
    // Lengths 0..100 cover empty input, partial words, whole words and whole stripes.
    const auto data = pattern(100, 7);
    std::ofstream(dir / "data.bin", std::ios::binary).write(reinterpret_cast<const char*>(data.data()), 100);
    std::string expected = "expected = [";
    for (std::size_t n = 0; n <= 100; ++n) expected += "'" + ks::hex64(ks::hash64(data.data(), n)) + "',";
    expected += "]\nseeded = ['" + ks::hex64(ks::hash64(data.data(), 100, 1)) + "', '" +
                ks::hex64(ks::hash64(data.data(), 37, 0xFFFFFFFFFFFFFFFFull)) + "']\n";
    const std::string script = python_reference() + expected +
                               "b = open(sys.argv[1], 'rb').read()\n"
                               "got = ['%016x' % hash64(b[:n]) for n in range(101)]\n"
                               "bad = [n for n in range(101) if got[n] != expected[n]]\n"
                               "assert not bad, ('lengths', bad, got[bad[0]], expected[bad[0]])\n"
                               "assert seeded == ['%016x' % hash64(b, 1), '%016x' % hash64(b[:37], 2**64 - 1)], seeded\n";
    EXPECT_EQ(run_python(dir, script, dir / "data.bin"), 0);
}

TEST(Hash64, PinnedValuesNeverChange) {
    // Recorded hashes in users' work folders depend on these; see formats/provenance.md.
    EXPECT_EQ(ks::hex64(ks::hash64("", 0)), "a44605b1e58efb5f");
    EXPECT_EQ(ks::hex64(ks::hash64("abc", 3)), "48d612e1fba2b102");
    EXPECT_EQ(ks::hex64(ks::hash64("0123456789abcdef0123456789abcdef!", 33)), "4462bdadd544eb9a");
}

TEST(Hash64, EveryInputBitFlipsAboutHalfTheOutputBits) {
    for (const std::size_t n : {1u, 8u, 13u, 32u, 64u, 100u}) {
        auto data = pattern(n, static_cast<uint32_t>(n));
        const uint64_t base = ks::hash64(data.data(), n);
        double total = 0;
        int worst = 64;
        for (std::size_t bit = 0; bit < 8 * n; ++bit) {
            data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
            const int flipped = __builtin_popcountll(base ^ ks::hash64(data.data(), n));
            data[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
            total += flipped;
            worst = std::min(worst, flipped);
        }
        const double mean = total / static_cast<double>(8 * n);
        EXPECT_NEAR(mean, 32.0, 2.0) << "length " << n;
        EXPECT_GE(worst, 14) << "length " << n;
    }
}

TEST(Hash64, NoCollisionsOnCountersZerosOrSeeds) {
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < 200000; ++i) seen.insert(ks::hash64(&i, sizeof i));
    EXPECT_EQ(seen.size(), 200000u);
    // Zero buffers of different lengths differ (the length is hashed), as do seeds.
    const std::vector<unsigned char> zeros(300, 0);
    std::set<uint64_t> by_length, by_seed;
    for (std::size_t n = 0; n <= 300; ++n) by_length.insert(ks::hash64(zeros.data(), n));
    for (uint64_t s = 0; s < 1000; ++s) by_seed.insert(ks::hash64(zeros.data(), 64, s));
    EXPECT_EQ(by_length.size(), 301u);
    EXPECT_EQ(by_seed.size(), 1000u);
}

TEST(Hash64, Hex64IsSixteenLowercaseDigits) {
    EXPECT_EQ(ks::hex64(0), "0000000000000000");
    EXPECT_EQ(ks::hex64(0xDEADBEEF12345678ull), "deadbeef12345678");
}

TEST(FileIdentity, SmallFileIsHashedWhole) {
    TempDir dir;
    const auto data = pattern(5000, 3);
    const std::string content(data.begin(), data.end());
    ks::write_file_atomic(dir / "small.bin", content);
    const ks::FileIdentity id = ks::file_identity(dir / "small.bin");
    EXPECT_EQ(id.path, dir / "small.bin");
    EXPECT_EQ(id.size, 5000);
    EXPECT_FALSE(id.sampled);
    EXPECT_EQ(id.hash, ks::hex64(ks::hash64(content.data(), content.size())));
    ks::write_file_atomic(dir / "empty.bin", "");
    EXPECT_EQ(ks::file_identity(dir / "empty.bin").hash, ks::hex64(ks::hash64("", 0)));
}

TEST(FileIdentity, MissingFileOrFolderIsUsage) {
    TempDir dir;
    for (const std::string& p : {dir / "absent.bin", dir.path()}) {
        try {
            ks::file_identity(p);
            ADD_FAILURE() << "no exception for " << p;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
        }
    }
}

namespace {
// A sparse file (no disk used) with marker bytes at the given offsets.
void make_sparse(const std::string& path, int64_t size, const std::vector<int64_t>& markers) {
    {
        std::ofstream f(path, std::ios::binary);
    }
    fs::resize_file(path, static_cast<uintmax_t>(size));
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    for (const int64_t m : markers) {
        f.seekp(m);
        f.put(static_cast<char>(0x5A));
    }
}
}  // namespace

TEST(FileIdentity, LargeFileIsSampledAsSpecified) {
    TempDir dir;
    const int64_t limit = 64ll << 20;
    make_sparse(dir / "limit.bin", limit, {0, limit - 1});
    EXPECT_FALSE(ks::file_identity(dir / "limit.bin").sampled);  // exactly 64 MiB: whole

    const int64_t size = limit + 12345;
    const std::vector<int64_t> markers = {0, 1000000, size / 2, size - 1};
    make_sparse(dir / "big.bin", size, markers);
    const ks::FileIdentity id = ks::file_identity(dir / "big.bin");
    EXPECT_TRUE(id.sampled);
    EXPECT_EQ(id.size, size);

    // A change in the last block shows; one between sampled blocks does not (the documented trade-off).
    make_sparse(dir / "tail.bin", size, {0, 1000000, size / 2, size - 1, size - 100});
    EXPECT_NE(ks::file_identity(dir / "tail.bin").hash, id.hash);
    const int64_t step = (size - 65536) / 63;
    make_sparse(dir / "gap.bin", size, {0, 1000000, size / 2, size - 1, step + 65536 + 10});
    EXPECT_EQ(ks::file_identity(dir / "gap.bin").hash, id.hash);

    if (!have_python()) GTEST_SKIP() << KS_PYTHON << " not found; sampling not cross-checked";
    const std::string script = python_reference() +
                               "got = identity(sys.argv[1])\n"
                               "want = (" + std::to_string(id.size) + ", '" + id.hash + "', True)\n"
                               "assert got == want, (got, want)\n";
    EXPECT_EQ(run_python(dir, script, dir / "big.bin"), 0);
}

TEST(WriteProvenance, RecordHasEveryFieldAndPythonReadsIt) {
    if (!have_python()) GTEST_SKIP() << KS_PYTHON << " not found";
    TempDir dir;
    ks::write_file_atomic(dir / "in.bin", "input bytes");
    ks::write_file_atomic(dir / "out.npy", "output bytes");
    ks::Provenance p;
    p.tool = "ks-filter";
    p.stage = "filter";
    p.command_line = "ks-filter --work \"my data.ks\" --set fs=30000";
    p.settings_json = "{\n  \"fs\": 30000,\n  \"Th_universal\": 9.5,\n  \"tmax\": \"inf\"\n}";
    p.inputs = {ks::file_identity(dir / "in.bin")};
    p.outputs = {ks::file_identity(dir / "out.npy")};
    p.extra_json = "{\"n_batches\": 12}";
    ks::write_provenance(dir / "filter.json", p);
    EXPECT_FALSE(fs::exists(dir / "filter.json.partial"));

    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const std::string script =
        "import json, re, sys\n"
        "d = json.load(open(sys.argv[1]))\n"
        "assert list(d) == ['format', 'version', 'tool', 'stage', 'ks_version', 'ks_git_describe',\n"
        "    'command_line', 'host', 'pid', 'finished', 'wall_s', 'cpu_s', 'peak_rss_mib', 'settings', 'inputs',\n"
        "    'outputs', 'extra'], list(d)\n"
        "assert 0 <= d['wall_s'] < 3600 and 0 <= d['cpu_s'] < 3600 and 1 < d['peak_rss_mib'] < 65536, d\n"
        "assert d['format'] == 'ks-provenance' and d['version'] == 1\n"
        "assert d['tool'] == 'ks-filter' and d['stage'] == 'filter'\n"
        "assert d['ks_version'] == '" KS_VERSION "' and d['ks_git_describe'] == '" KS_GIT_DESCRIBE "'\n"
        "assert d['command_line'] == 'ks-filter --work \"my data.ks\" --set fs=30000'\n"
        "assert d['host'] == sys.argv[2] and d['pid'] == int(sys.argv[3])\n"
        "assert re.fullmatch(r'\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ', d['finished']), d['finished']\n"
        "assert d['settings'] == {'fs': 30000, 'Th_universal': 9.5, 'tmax': 'inf'}\n"
        "exec(open(sys.argv[4]).read())\n"
        "for key, name in (('inputs', 'in.bin'), ('outputs', 'out.npy')):\n"
        "    [e] = d[key]\n"
        "    assert list(e) == ['path', 'size', 'hash', 'sampled'], e\n"
        "    assert (e['size'], e['hash'], e['sampled']) == identity(e['path']), e\n"
        "    assert e['path'].endswith('/' + name)\n"
        "assert d['extra'] == {'n_batches': 12}\n";
    std::ofstream(dir / "reference.py") << python_reference();
    EXPECT_EQ(run_python(dir, script,
                         (dir / "filter.json") + " '" + host + "' " + std::to_string(getpid()) + " " +
                             (dir / "reference.py")),
              0);
}

TEST(WriteProvenance, ExtraIsOmittedWhenEmptyAndSettingsMustBeAnObject) {
    TempDir dir;
    ks::Provenance p;
    p.tool = "ks-whiten";
    p.stage = "whiten";
    ks::write_provenance(dir / "whiten.json", p);
    const std::string text = ks::read_text_file(dir / "whiten.json");
    EXPECT_EQ(text.find("\"extra\""), std::string::npos);
    EXPECT_NE(text.find("\"settings\": {}"), std::string::npos) << text;
    EXPECT_NE(text.find("\"inputs\": []"), std::string::npos) << text;

    p.settings_json = "[1, 2]";
    try {
        ks::write_provenance(dir / "bad.json", p);
        ADD_FAILURE() << "no exception";
    } catch (const ks::Error& e) {
        EXPECT_EQ(e.code(), ks::Exit::internal) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "bad.json"));
}
