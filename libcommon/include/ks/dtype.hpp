#pragma once
// Element types shared by .npy files and raw recordings.
#include <cstddef>
#include <cstdint>
#include <string>

namespace ks {

enum class Dtype { int8, uint8, int16, uint16, int32, uint32, int64, uint64, float16, float32, float64, bool_ };

std::size_t dtype_size(Dtype d);
const char* dtype_name(Dtype d);          // "int16", "float32", ...
const char* dtype_npy_descr(Dtype d);     // "<i2", "<f4", "|u1", "|b1", ...
// Parses a name ("int16") or a numpy descr ("<i2"); throws Error(usage) naming `what`.
Dtype parse_dtype(const std::string& text, const std::string& what);

template <class T> constexpr Dtype dtype_of();
template <> constexpr Dtype dtype_of<int8_t>() { return Dtype::int8; }
template <> constexpr Dtype dtype_of<uint8_t>() { return Dtype::uint8; }
template <> constexpr Dtype dtype_of<int16_t>() { return Dtype::int16; }
template <> constexpr Dtype dtype_of<uint16_t>() { return Dtype::uint16; }
template <> constexpr Dtype dtype_of<int32_t>() { return Dtype::int32; }
template <> constexpr Dtype dtype_of<uint32_t>() { return Dtype::uint32; }
template <> constexpr Dtype dtype_of<int64_t>() { return Dtype::int64; }
template <> constexpr Dtype dtype_of<uint64_t>() { return Dtype::uint64; }
template <> constexpr Dtype dtype_of<float>() { return Dtype::float32; }
template <> constexpr Dtype dtype_of<double>() { return Dtype::float64; }
template <> constexpr Dtype dtype_of<bool>() { return Dtype::bool_; }

}  // namespace ks
