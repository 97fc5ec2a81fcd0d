// ks::read_npy / write_npy / NpyRowWriter / dtype helpers, cross-checked with numpy: numpy
// loads what we write, we load what numpy writes, and every malformed file is Exit::usage.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "test_support.hpp"
#include "ks/dtype.hpp"
#include "ks/error.hpp"
#include "ks/npy.hpp"

namespace fs = std::filesystem;
using ks::Dtype;

namespace {

using ks::test::TempDir;

bool have_numpy() { return std::system(KS_PYTHON " -c 'import numpy' >/dev/null 2>&1") == 0; }
bool have_zstd() { return std::system("zstd --version >/dev/null 2>&1") == 0; }

int run_python(const TempDir& dir, const std::string& script) {
    std::ofstream(dir / "check.py") << script;
    const int rc = std::system((KS_PYTHON " " + (dir / "check.py") + " " + dir.path()).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

const Dtype kAllDtypes[] = {Dtype::int8,  Dtype::uint8,   Dtype::int16,   Dtype::uint16,  Dtype::int32, Dtype::uint32,
                            Dtype::int64, Dtype::uint64,  Dtype::float16, Dtype::float32, Dtype::float64, Dtype::bool_};
const std::vector<std::vector<int64_t>> kShapes = {{7}, {3, 4}, {2, 3, 4}, {0}, {0, 5}, {}};

// Test values for flat index k; kPythonExpected below computes the same ones in numpy.
template <class T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
std::string pattern_bytes(Dtype d, int64_t n) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) {
        const int64_t base = (k * 37 + 11) % 251;
        switch (d) {
            case Dtype::int8: put<int8_t>(out, static_cast<int8_t>(base - 125)); break;
            case Dtype::int16: put<int16_t>(out, static_cast<int16_t>((base - 125) * 127)); break;
            case Dtype::int32: put<int32_t>(out, static_cast<int32_t>((base - 125) * 1000000)); break;
            case Dtype::int64: put<int64_t>(out, (base - 125) * 1000000000000000ll); break;
            case Dtype::uint8: put<uint8_t>(out, static_cast<uint8_t>(base)); break;
            case Dtype::uint16: put<uint16_t>(out, static_cast<uint16_t>(base * 250)); break;
            case Dtype::uint32: put<uint32_t>(out, static_cast<uint32_t>(base * 10000000)); break;
            case Dtype::uint64: put<uint64_t>(out, static_cast<uint64_t>(base) * 70000000000000000ull); break;
            case Dtype::float16: put<uint16_t>(out, static_cast<uint16_t>((k * 97) % 0x7C00)); break;
            case Dtype::float32: put<float>(out, static_cast<float>(static_cast<double>(base - 100) / 7.0)); break;
            case Dtype::float64: put<double>(out, static_cast<double>(base - 100) / 7.0); break;
            case Dtype::bool_: put<uint8_t>(out, k % 3 == 0 ? 1 : 0); break;
        }
    }
    return out;
}

const char kPythonExpected[] = R"(
import io, os, subprocess, sys
import numpy as np
SCALE = {'|i1': 1, '<i2': 127, '<i4': 10**6, '<i8': 10**15, '|u1': 1, '<u2': 250, '<u4': 10**7, '<u8': 7 * 10**16}
def expected(descr, shape):
    k = np.arange(int(np.prod(shape)), dtype=np.int64)
    base = (k * 37 + 11) % 251
    if descr in ('|i1', '<i2', '<i4', '<i8'): a = np.array([(int(b) - 125) * SCALE[descr] for b in base], dtype=descr)
    elif descr[1] == 'u': a = np.array([int(b) * SCALE[descr] for b in base], dtype=descr)
    elif descr == '<f2': a = np.array((k * 97) % 0x7C00, dtype='<u2').view('<f2')
    elif descr == '|b1': a = k % 3 == 0
    else: a = ((base - 100) / 7).astype(descr)
    return a.reshape(shape)
def load(path):
    if path.endswith('.zst'):  # the recipe of formats/npy.md
        return np.load(io.BytesIO(subprocess.run(['zstd', '-dc', path], stdout=subprocess.PIPE, check=True).stdout))
    return np.load(path)
d = sys.argv[1]
)";

std::string py_shape(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (const int64_t v : shape) s += std::to_string(v) + ",";
    return s + ")";
}

std::string file_name(Dtype d, const std::vector<int64_t>& shape) {
    std::string s = ks::dtype_name(d);
    for (const int64_t v : shape) s += "_" + std::to_string(v);
    return s + (shape.empty() ? "_scalar" : "");
}

int64_t count(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (const int64_t v : shape) n *= v;
    return n;
}

void expect_usage(const std::string& path, const std::string& needle) {
    try {
        ks::read_npy(path);
        ADD_FAILURE() << path << ": read without error; expected one mentioning '" << needle << "'";
    } catch (const ks::Error& e) {
        const std::string msg = e.what();
        EXPECT_EQ(e.code(), ks::Exit::usage) << msg;
        EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
    }
}

// A .npy header built by hand (format 1.0 unless told), for broken files.
std::string raw_npy(const std::string& dict, const std::string& data, int major = 1) {
    std::string text = dict;
    const std::size_t prefix = major == 1 ? 10 : 12;
    while ((prefix + text.size() + 1) % 64) text += ' ';
    text += '\n';
    std::string out = "\x93NUMPY";
    out += static_cast<char>(major);
    out += '\0';
    const std::size_t n = text.size();
    for (std::size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xFF);
    return out + text + data;
}

}  // namespace

TEST(Dtype, TableAndParsing) {
    for (const Dtype d : kAllDtypes) {
        EXPECT_EQ(ks::parse_dtype(ks::dtype_name(d), "test"), d);
        EXPECT_EQ(ks::parse_dtype(ks::dtype_npy_descr(d), "test"), d);
        EXPECT_EQ(ks::dtype_size(d), std::string(ks::dtype_npy_descr(d)).back() - '0');
    }
    EXPECT_STREQ(ks::dtype_npy_descr(Dtype::int16), "<i2");
    EXPECT_STREQ(ks::dtype_npy_descr(Dtype::bool_), "|b1");
    EXPECT_STREQ(ks::dtype_name(Dtype::bool_), "bool");
    EXPECT_EQ(ks::parse_dtype("<u1", "x"), Dtype::uint8);  // same type as numpy's '|u1'
    EXPECT_EQ(ks::parse_dtype("=f4", "x"), Dtype::float32);
    for (const char* text : {"complex64", "<c8", ">f4", "f4", "", "int"}) {
        try {
            ks::parse_dtype(text, "setting data_dtype");
            ADD_FAILURE() << text;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_EQ(std::string(e.what()).rfind("setting data_dtype: ", 0), 0u) << e.what();
        }
    }
}

TEST(Npy, HeaderIsVersion1PaddedTo64Bytes) {
    const std::string h = ks::npy_header(Dtype::float32, {3, 4});
    EXPECT_EQ(h.size() % 64, 0u);
    EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    EXPECT_EQ(static_cast<std::size_t>(static_cast<unsigned char>(h[8]) | static_cast<unsigned char>(h[9]) << 8),
              h.size() - 10);
    EXPECT_EQ(h.substr(10, 59), "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
    EXPECT_EQ(h.back(), '\n');
    EXPECT_NE(ks::npy_header(Dtype::int64, {5}).find("'shape': (5,), }"), std::string::npos);
    EXPECT_NE(ks::npy_header(Dtype::bool_, {}).find("'descr': '|b1', 'fortran_order': False, 'shape': (), }"),
              std::string::npos);
}

TEST(Npy, RoundTripEveryDtypeAndShape) {
    TempDir dir;
    for (const Dtype d : kAllDtypes) {
        for (const auto& shape : kShapes) {
            for (const std::string ext : {".npy", ".npy.zst"}) {
                const std::string path = dir / (file_name(d, shape) + ext);
                const std::string bytes = pattern_bytes(d, count(shape));
                ks::write_npy(path, d, shape, bytes.data());
                EXPECT_FALSE(fs::exists(path + ".partial"));
                const ks::NpyArray a = ks::read_npy(path);
                EXPECT_EQ(a.dtype, d) << path;
                EXPECT_EQ(a.shape, shape) << path;
                EXPECT_EQ(a.size(), count(shape)) << path;
                EXPECT_EQ(std::string(a.bytes.begin(), a.bytes.end()), bytes) << path;
                if (ext == ".npy") EXPECT_EQ(slurp(path), ks::npy_header(d, shape) + bytes) << path;
                else EXPECT_EQ(slurp(path).substr(0, 4), "\x28\xb5\x2f\xfd") << "zstd magic: " << path;
            }
        }
    }
}

TEST(Npy, NumpyLoadsWhatWeWrite) {
    if (!have_numpy()) GTEST_SKIP() << KS_PYTHON << " with numpy not found";
    const bool zst = have_zstd();
    TempDir dir;
    std::string cases = "cases = [\n";
    auto add = [&](Dtype d, const std::vector<int64_t>& shape, const std::string& ext) {
        const std::string name = file_name(d, shape) + ext;
        ks::write_npy(dir / name, d, shape, pattern_bytes(d, count(shape)).data());
        cases += "  ('" + name + "', '" + ks::dtype_npy_descr(d) + "', " + py_shape(shape) + "),\n";
    };
    for (const Dtype d : kAllDtypes) {
        for (const auto& shape : kShapes) {
            add(d, shape, ".npy");
            if (zst) add(d, shape, ".npy.zst");
        }
    }
    // Several MB: many zstd blocks and stream buffers on both sides.
    if (zst) add(Dtype::float32, {1000, 1000}, ".npy.zst");
    // Typed convenience overloads.
    ks::write_npy(dir / "typed_vector.npy", std::vector<int32_t>{-5, 0, 7});
    const std::vector<double> m = {1.5, -2.5, 3.25, 0.0, 1e300, -1e-300};
    ks::write_npy(dir / "typed_2x3.npy", {2, 3}, m.data());
    const std::string script = std::string(kPythonExpected) + cases +
                               "]\n"
                               "for name, descr, shape in cases:\n"
                               "    a = load(os.path.join(d, name))\n"
                               "    assert a.dtype.str == descr and a.shape == shape, (name, a.dtype.str, a.shape)\n"
                               "    e = expected(descr, shape)\n"
                               "    assert a.tobytes() == e.tobytes() and np.array_equal(a, e), name\n"
                               "    assert a.flags['C_CONTIGUOUS']\n"
                               "v = np.load(os.path.join(d, 'typed_vector.npy'))\n"
                               "assert v.dtype == np.int32 and v.tolist() == [-5, 0, 7], v\n"
                               "m = np.load(os.path.join(d, 'typed_2x3.npy'))\n"
                               "assert m.dtype == np.float64 and m.tolist() == [[1.5, -2.5, 3.25], [0.0, 1e300, -1e-300]], m\n"
                               "print('numpy checked', len(cases) + 2, 'files')\n";
    EXPECT_EQ(run_python(dir, script), 0);
    if (!zst) GTEST_SKIP() << "zstd command not found: .npy.zst files not checked";
}

TEST(Npy, WeLoadWhatNumpyWrites) {
    if (!have_numpy()) GTEST_SKIP() << KS_PYTHON << " with numpy not found";
    const bool zst = have_zstd();
    TempDir dir;
    std::string cases = "cases = [\n";
    for (const Dtype d : kAllDtypes)
        for (const auto& shape : kShapes)
            cases += "  ('" + file_name(d, shape) + "', '" + ks::dtype_npy_descr(d) + "', " + py_shape(shape) + "),\n";
    const std::string script =
        std::string(kPythonExpected) + cases +
        "]\n"
        "for name, descr, shape in cases:\n"
        "    np.save(os.path.join(d, name + '.npy'), expected(descr, shape))\n"
        "    with open(os.path.join(d, name + '_v2.npy'), 'wb') as f:\n"
        "        np.lib.format.write_array(f, expected(descr, shape), version=(2, 0))\n"
        "    with open(os.path.join(d, name + '_v3.npy'), 'wb') as f:\n"
        "        np.lib.format.write_array(f, expected(descr, shape), version=(3, 0))\n"
        "np.save(os.path.join(d, 'big.npy'), expected('<f4', (1000, 1000)))\n"
        "# a transposed view: numpy writes it in Fortran order\n"
        "np.save(os.path.join(d, 'transposed.npy'), expected('<i4', (4, 3)).T)\n";
    ASSERT_EQ(run_python(dir, script), 0);
    for (const Dtype d : kAllDtypes) {
        for (const auto& shape : kShapes) {
            for (const std::string suffix : {"", "_v2", "_v3"}) {
                const std::string path = dir / (file_name(d, shape) + suffix + ".npy");
                const ks::NpyArray a = ks::read_npy(path);
                EXPECT_EQ(a.dtype, d) << path;
                EXPECT_EQ(a.shape, shape) << path;
                EXPECT_EQ(std::string(a.bytes.begin(), a.bytes.end()), pattern_bytes(d, count(shape))) << path;
            }
        }
    }
    // np.save writes a transposed (Fortran-contiguous) array with fortran_order True, which
    // ks-tools rejects with a hint rather than misreading it.
    expect_usage(dir / "transposed.npy", "np.ascontiguousarray");
    if (!zst) GTEST_SKIP() << "zstd command not found: .npy.zst not checked";
    // Compressed by the zstd command, not by us.
    ASSERT_EQ(std::system(("zstd -q " + (dir / "big.npy") + " -o " + (dir / "big.npy.zst")).c_str()), 0);
    const ks::NpyArray big = ks::read_npy(dir / "big.npy.zst");
    EXPECT_EQ(big.shape, (std::vector<int64_t>{1000, 1000}));
    EXPECT_EQ(std::string(big.bytes.begin(), big.bytes.end()), pattern_bytes(Dtype::float32, 1000000));
    // Streamed from stdin, so the frame does not record the content size.
    ASSERT_EQ(std::system(("zstd -q -c < " + (dir / "big.npy") + " > " + (dir / "stdin.npy.zst")).c_str()), 0);
    EXPECT_EQ(ks::read_npy(dir / "stdin.npy.zst").bytes, big.bytes);
}

TEST(Npy, AsConvertsEveryDtype) {
    ks::NpyArray a;
    a.dtype = Dtype::float64;
    a.shape = {6};
    const std::vector<double> v = {-2.7, 2.7, 1e30, -1e30, std::nan(""), 255.9};
    a.bytes.assign(reinterpret_cast<const char*>(v.data()), reinterpret_cast<const char*>(v.data() + 6));
    // Truncation toward zero; out-of-range and NaN saturate rather than being undefined.
    EXPECT_EQ(a.as<int32_t>(), (std::vector<int32_t>{-2, 2, INT32_MAX, INT32_MIN, 0, 255}));
    EXPECT_EQ(a.as<uint8_t>(), (std::vector<uint8_t>{0, 2, 255, 0, 0, 255}));
    EXPECT_EQ(a.as<int64_t>()[2], INT64_MAX);
    EXPECT_EQ(a.as<float>()[0], -2.7f);

    // float16 bit patterns: 1, -2, smallest subnormal 2^-24, 65504, inf, NaN, -0.
    const std::vector<uint16_t> half = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x7C00, 0x7E00, 0x8000};
    a.dtype = Dtype::float16;
    a.shape = {7};
    a.bytes.assign(reinterpret_cast<const char*>(half.data()), reinterpret_cast<const char*>(half.data() + 7));
    const std::vector<float> f = a.as<float>();
    EXPECT_EQ(f[0], 1.0f);
    EXPECT_EQ(f[1], -2.0f);
    EXPECT_EQ(f[2], std::ldexp(1.0f, -24));
    EXPECT_EQ(f[3], 65504.0f);
    EXPECT_TRUE(std::isinf(f[4]) && f[4] > 0);
    EXPECT_TRUE(std::isnan(f[5]));
    EXPECT_TRUE(f[6] == 0.0f && std::signbit(f[6]));

    a.dtype = Dtype::bool_;
    a.shape = {3};
    a.bytes = {0, 1, 7};  // numpy treats any non-zero byte as True
    EXPECT_EQ(a.as<double>(), (std::vector<double>{0, 1, 1}));

    const std::string u = pattern_bytes(Dtype::uint64, 3);
    a.dtype = Dtype::uint64;
    a.bytes.assign(u.begin(), u.end());
    EXPECT_EQ(a.as<uint64_t>(), (std::vector<uint64_t>{11 * 70000000000000000ull, 48 * 70000000000000000ull,
                                                       85 * 70000000000000000ull}));
    EXPECT_EQ(a.as<double>()[1], 48 * 7e16);
    const std::string i8 = pattern_bytes(Dtype::int8, 2);
    a.dtype = Dtype::int8;
    a.shape = {2};
    a.bytes.assign(i8.begin(), i8.end());
    EXPECT_EQ(a.as<int16_t>(), (std::vector<int16_t>{-114, -77}));
    EXPECT_EQ(a.as<uint16_t>().size(), 2u);
    EXPECT_EQ(a.as<uint32_t>().size(), 2u);
    EXPECT_EQ(a.as<int8_t>(), (std::vector<int8_t>{-114, -77}));
}

TEST(Npy, ReadCheckedNamesFileDtypeAndDimensions) {
    TempDir dir;
    ks::write_npy(dir / "a.npy", {2, 3}, std::vector<float>(6, 1.0f).data());
    EXPECT_EQ(ks::read_npy_checked(dir / "a.npy", Dtype::float32, 2).shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(ks::read_npy_checked(dir / "a.npy", Dtype::float32, -1).size(), 6);
    for (const auto& [dtype, ndim, needle] : std::vector<std::tuple<Dtype, int, std::string>>{
             {Dtype::float64, 2, "dtype is float32, expected float64"}, {Dtype::float32, 1, "expected 1"}}) {
        try {
            ks::read_npy_checked(dir / "a.npy", dtype, ndim);
            ADD_FAILURE() << needle;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_NE(std::string(e.what()).find(dir / "a.npy"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    }
}

TEST(Npy, WriteIntoMissingFolderIsUsage) {
    TempDir dir;
    const std::vector<float> v(3, 0.0f);
    for (const std::string name : {"nowhere/x.npy", "nowhere/x.npy.zst"}) {
        try {
            ks::write_npy(dir / name, v);
            ADD_FAILURE() << name;
        } catch (const ks::Error& e) {
            EXPECT_EQ(e.code(), ks::Exit::usage);
            EXPECT_NE(std::string(e.what()).find(dir / "nowhere"), std::string::npos) << e.what();
        }
    }
}

TEST(NpyRowWriter, AppendsRowsAndRewritesTheShape) {
    TempDir dir;
    const std::string bytes = pattern_bytes(Dtype::float32, 8 * 4);
    {
        ks::NpyRowWriter w(dir / "rows.npy", Dtype::float32, {4});
        w.append(bytes.data(), 3);
        w.append(nullptr, 0);
        w.append(bytes.data() + 3 * 16, 5);
        EXPECT_EQ(w.rows(), 8);
        EXPECT_FALSE(fs::exists(dir / "rows.npy"));
        w.commit();
    }
    const ks::NpyArray a = ks::read_npy(dir / "rows.npy");
    EXPECT_EQ(a.shape, (std::vector<int64_t>{8, 4}));
    EXPECT_EQ(std::string(a.bytes.begin(), a.bytes.end()), bytes);
    {
        ks::NpyRowWriter w(dir / "times.npy", Dtype::int64, {});
        const std::string t = pattern_bytes(Dtype::int64, 5);
        w.append(t.data(), 5);
        w.commit();
    }
    {
        ks::NpyRowWriter w(dir / "empty.npy", Dtype::int16, {2, 3});
        w.commit();
    }
    EXPECT_EQ(ks::read_npy(dir / "empty.npy").shape, (std::vector<int64_t>{0, 2, 3}));
    {
        ks::NpyRowWriter w(dir / "abandoned.npy", Dtype::float32, {4});
        w.append(bytes.data(), 2);
    }
    EXPECT_FALSE(fs::exists(dir / "abandoned.npy"));
    EXPECT_FALSE(fs::exists(dir / "abandoned.npy.partial"));

    if (!have_numpy()) GTEST_SKIP() << KS_PYTHON << " with numpy not found";
    const std::string script = std::string(kPythonExpected) +
                               "a = np.load(os.path.join(d, 'rows.npy'))\n"
                               "assert a.shape == (8, 4) and np.array_equal(a, expected('<f4', (8, 4))), a\n"
                               "t = np.load(os.path.join(d, 'times.npy'))\n"
                               "assert t.shape == (5,) and np.array_equal(t, expected('<i8', (5,))), t\n"
                               "e = np.load(os.path.join(d, 'empty.npy'))\n"
                               "assert e.shape == (0, 2, 3) and e.dtype == np.int16\n";
    EXPECT_EQ(run_python(dir, script), 0);
}

TEST(NpyRowReader, ReadsRowsInAnyChunksPlainAndCompressed) {
    TempDir dir;
    const std::string bytes = pattern_bytes(Dtype::float32, 7 * 3);
    for (const char* name : {"a.npy", "a.npy.zst"}) {
        ks::write_npy(dir / name, Dtype::float32, {7, 3}, bytes.data());
        for (int64_t chunk : {1, 2, 3, 7, 100}) {
            ks::NpyRowReader r(dir / name);
            EXPECT_EQ(r.dtype(), Dtype::float32);
            EXPECT_EQ(r.shape(), (std::vector<int64_t>{7, 3}));
            EXPECT_EQ(r.rows(), 7);
            std::string got;
            std::vector<char> buf(static_cast<size_t>(chunk) * 12);
            int64_t n;
            while ((n = r.read(buf.data(), chunk)) > 0) got.append(buf.data(), static_cast<size_t>(n) * 12);
            EXPECT_EQ(got, bytes) << name << " chunk " << chunk;
            EXPECT_EQ(r.read(buf.data(), chunk), 0);
        }
    }
    // A file cut short inside the data: the constructor (size check) or read() names it.
    {
        std::ofstream(dir / "short.npy", std::ios::binary) << ks::npy_header(Dtype::int64, {4}) << std::string(8, 'x');
        const ks::Exit code = ks::test::exit_code_of([&] {
            ks::NpyRowReader r(dir / "short.npy");
            std::vector<int64_t> v(4);
            r.read(v.data(), 4);
        });
        EXPECT_EQ(code, ks::Exit::usage);
    }
    EXPECT_EQ(ks::test::exit_code_of([&] { ks::NpyRowReader r(dir / "missing.npy"); }), ks::Exit::usage);
}

TEST(NpyRowWriter, HeaderHasRoomForTheLargestRowCount) {
    // The header is rewritten in place, so it must be as long for 0 rows as for 2^63 - 1.
    TempDir dir;
    ks::NpyRowWriter w(dir / "r.npy", Dtype::uint16, {385, 2});
    w.commit();
    const std::string text = slurp(dir / "r.npy");
    const std::size_t header_len = static_cast<unsigned char>(text[8]) | static_cast<unsigned char>(text[9]) << 8;
    EXPECT_EQ(text.size(), 10 + header_len);
    EXPECT_EQ(text.size() % 64, 0u);
    const std::string dict = "{'descr': '<u2', 'fortran_order': False, 'shape': (9223372036854775807, 385, 2), }";
    EXPECT_GE(header_len, dict.size() + 1);
    EXPECT_EQ(text.substr(10, 54), "{'descr': '<u2', 'fortran_order': False, 'shape': (0, ");
}

TEST(NpyReject, EveryMalformedFileIsUsageNamingIt) {
    TempDir dir;
    const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    const std::string data(24, '\0');
    const std::string good = raw_npy(good_dict, data);
    spit(dir / "good.npy", good);
    ASSERT_EQ(ks::read_npy(dir / "good.npy").shape, (std::vector<int64_t>{2, 3}));

    expect_usage(dir / "missing.npy", "No such file");
    expect_usage(dir.path(), "folder");
    spit(dir / "magic.npy", "\x93NUMPZ" + good.substr(6));
    expect_usage(dir / "magic.npy", "not a .npy file");
    spit(dir / "short.npy", "\x93NU");
    expect_usage(dir / "short.npy", "not a .npy file");
    spit(dir / "v4.npy", good.substr(0, 6) + std::string("\x04\x00", 2) + good.substr(8));
    expect_usage(dir / "v4.npy", "version 4.0");
    spit(dir / "v1_1.npy", good.substr(0, 6) + std::string("\x01\x01", 2) + good.substr(8));
    expect_usage(dir / "v1_1.npy", "version 1.1");

    const std::vector<std::pair<std::string, std::string>> dicts = {
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", "unsupported dtype '<c8'"},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", "unsupported dtype"},
        {"{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (3,), }", "structured"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", "big-endian"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "fortran_order True"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (6,), }", "malformed"},
        {"{'descr': '<f4', 'shape': (6,), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1, }", "malformed"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,) ", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), } x", "malformed"},
        {"hello", "malformed"},
        {"", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': 6, }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", "malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", "truncated"},
    };
    for (std::size_t i = 0; i < dicts.size(); ++i) {
        const std::string path = dir / ("dict" + std::to_string(i) + ".npy");
        spit(path, raw_npy(dicts[i].first, data));
        expect_usage(path, dicts[i].second);
    }
    spit(dir / "trunc.npy", good.substr(0, good.size() - 1));
    expect_usage(dir / "trunc.npy", "truncated: 23 bytes of data, the header says 24");
    spit(dir / "trail.npy", good + "x");
    expect_usage(dir / "trail.npy", "1 extra bytes");
    spit(dir / "trunc_header.npy", good.substr(0, 30));
    expect_usage(dir / "trunc_header.npy", "truncated .npy header");
    spit(dir / "v2_trunc.npy", raw_npy(good_dict, data.substr(1), 2));
    expect_usage(dir / "v2_trunc.npy", "truncated");
    std::string huge_len = good;
    huge_len[8] = '\xff';
    huge_len[9] = '\xff';
    spit(dir / "huge_len.npy", huge_len);
    expect_usage(dir / "huge_len.npy", "truncated .npy header");

    if (!have_zstd()) GTEST_SKIP() << "zstd command not found: .npy.zst rejections not checked";
    auto compress = [&](const std::string& name, const std::string& content, const std::string& flags = "") {
        spit(dir / "plain.tmp", content);
        EXPECT_EQ(std::system(("zstd -q -f " + flags + " " + (dir / "plain.tmp") + " -o " + (dir / name)).c_str()), 0);
    };
    compress("ok.npy.zst", good);
    EXPECT_EQ(ks::read_npy(dir / "ok.npy.zst").shape, (std::vector<int64_t>{2, 3}));
    compress("trunc.npy.zst", good.substr(0, good.size() - 1));
    expect_usage(dir / "trunc.npy.zst", "truncated: 23 bytes");
    compress("trail.npy.zst", good + "xy");
    expect_usage(dir / "trail.npy.zst", "2 extra bytes");
    compress("fortran.npy.zst", raw_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", data));
    expect_usage(dir / "fortran.npy.zst", "fortran_order");
    const std::string z = slurp(dir / "ok.npy.zst");
    spit(dir / "cut.npy.zst", z.substr(0, z.size() - 3));
    expect_usage(dir / "cut.npy.zst", "zst");
    spit(dir / "garbage.npy.zst", z + "garbage");
    expect_usage(dir / "garbage.npy.zst", "zstd");
    spit(dir / "plain.npy.zst", good);
    expect_usage(dir / "plain.npy.zst", "not valid zstd data");
    spit(dir / "empty.npy.zst", "");
    expect_usage(dir / "empty.npy.zst", "zstd");
    std::string flipped = z;
    flipped[z.size() / 2] = static_cast<char>(flipped[z.size() / 2] ^ 0x55);
    spit(dir / "flipped.npy.zst", flipped);
    expect_usage(dir / "flipped.npy.zst", dir / "flipped.npy.zst");
}

// formats/examples/npy: valid files read, invalid ones are rejected (README explains each).
TEST(NpyExamples, ValidFilesReadAndInvalidFilesAreRejected) {
    const std::string root = std::string(KS_FORMATS_DIR) + "/examples/npy";
    const std::string readme = slurp(root + "/README.md");
    int n_valid = 0, n_invalid = 0;
    for (const auto& e : fs::directory_iterator(root + "/valid")) {
        const std::string path = e.path().string();
        EXPECT_NO_THROW({
            const ks::NpyArray a = ks::read_npy(path);
            EXPECT_EQ(a.bytes.size(), static_cast<std::size_t>(a.size()) * ks::dtype_size(a.dtype)) << path;
        }) << path;
        EXPECT_NE(readme.find("`" + e.path().filename().string() + "`"), std::string::npos) << "README lacks " << path;
        ++n_valid;
    }
    const std::map<std::string, std::string> why = {
        {"empty.npy", "not a .npy file"},          {"bad_magic.npy", "not a .npy file"},
        {"version_4_0.npy", "version 4.0"},        {"big_endian.npy", "big-endian"},
        {"fortran_order.npy", "fortran_order"},    {"complex64.npy", "unsupported dtype"},
        {"structured.npy", "structured"},          {"missing_shape.npy", "malformed"},
        {"not_a_dict.npy", "malformed"},           {"negative_shape.npy", "malformed"},
        {"shape_not_tuple.npy", "malformed"},      {"header_too_long.npy", "truncated .npy header"},
        {"truncated.npy", "truncated"},            {"trailing_bytes.npy", "extra bytes"},
        {"truncated.npy.zst", "truncated"},        {"not_zstd.npy.zst", "not valid zstd"},
        {"two_frames.npy.zst", "single frame"},
    };
    for (const auto& e : fs::directory_iterator(root + "/invalid")) {
        const std::string name = e.path().filename().string();
        const auto it = why.find(name);
        expect_usage(e.path().string(), it == why.end() ? "" : it->second);
        EXPECT_NE(it, why.end()) << "add " << name << " to this test";
        EXPECT_NE(readme.find("`" + name + "`"), std::string::npos) << "README lacks " << name;
        ++n_invalid;
    }
    EXPECT_GE(n_valid, 10);
    EXPECT_EQ(n_invalid, static_cast<int>(why.size()));
}
