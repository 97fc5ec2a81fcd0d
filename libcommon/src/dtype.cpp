#include "ks/dtype.hpp"

#include "ks/error.hpp"

namespace ks {
namespace {

struct DtypeInfo {
    Dtype dtype;
    std::size_t size;
    const char* name;
    const char* descr;
};

// One table so size, name and descr can never disagree.
constexpr DtypeInfo kDtypes[] = {
    {Dtype::int8, 1, "int8", "|i1"},         {Dtype::uint8, 1, "uint8", "|u1"},
    {Dtype::int16, 2, "int16", "<i2"},       {Dtype::uint16, 2, "uint16", "<u2"},
    {Dtype::int32, 4, "int32", "<i4"},       {Dtype::uint32, 4, "uint32", "<u4"},
    {Dtype::int64, 8, "int64", "<i8"},       {Dtype::uint64, 8, "uint64", "<u8"},
    {Dtype::float16, 2, "float16", "<f2"},   {Dtype::float32, 4, "float32", "<f4"},
    {Dtype::float64, 8, "float64", "<f8"},   {Dtype::bool_, 1, "bool", "|b1"},
};

const DtypeInfo& info(Dtype d) {
    for (const auto& i : kDtypes)
        if (i.dtype == d) return i;
    assert_fail("known Dtype", __FILE__, __LINE__, "Dtype value " + std::to_string(static_cast<int>(d)));
}

}  // namespace

std::size_t dtype_size(Dtype d) { return info(d).size; }
const char* dtype_name(Dtype d) { return info(d).name; }
const char* dtype_npy_descr(Dtype d) { return info(d).descr; }

Dtype parse_dtype(const std::string& text, const std::string& what) {
    for (const auto& i : kDtypes) {
        if (text == i.name) return i.dtype;
        // numpy writes '|' for one-byte types and '<' otherwise, but '<u1' or '=i2' is the same
        // type ('=' is native, and ks-tools only runs on little-endian hosts); byte order does
        // not matter for one byte.
        if (text.size() != 3 || text.substr(1) != i.descr + 1) continue;
        if (text[0] == '<' || text[0] == '|' || text[0] == '=' || (i.size == 1 && text[0] == '>')) return i.dtype;
    }
    if (text.size() == 3 && text[0] == '>') {
        throw Error(Exit::usage, what + ": big-endian dtype '" + text +
                                     "' is not supported; expected little-endian (e.g. '<" + text.substr(1) + "')");
    }
    throw Error(Exit::usage, what + ": unsupported dtype '" + text +
                                 "'; expected one of int8 uint8 int16 uint16 int32 uint32 int64 uint64 float16 "
                                 "float32 float64 bool (or a little-endian numpy descr such as '<i2')");
}

}  // namespace ks
