#pragma once
// .npy files (format 1.0 written; 1.0/2.0/3.0 read), little-endian, C order, and the
// zstd-compressed variant ".npy.zst" (a zstd frame holding a plain .npy; `zstd -d` restores it).
// See formats/npy.md.
#include <cstdint>
#include <string>
#include <vector>

#include "ks/dtype.hpp"

namespace ks {

// An array read from disk: raw little-endian bytes in C order.
struct NpyArray {
    Dtype dtype = Dtype::float32;
    std::vector<int64_t> shape;
    std::vector<char> bytes;

    int64_t size() const;  // product of shape (1 for a 0-d array)
    // Copy converted to T (any numeric dtype converts; float->int truncates toward zero).
    template <class T> std::vector<T> as() const;
};

// Reads `path` (.npy, or .npy.zst when the name ends in .zst). Throws Error(usage) naming the
// file on: missing file, bad magic, unsupported version or dtype, big-endian or Fortran order,
// malformed header, data shorter or longer than the header says.
NpyArray read_npy(const std::string& path);

// Reads and checks dtype and number of dimensions (ndim < 0: any). Converts nothing.
NpyArray read_npy_checked(const std::string& path, Dtype dtype, int ndim);

// Header text for a v1.0 file (magic, version, padded dict, total length % 64 == 0).
std::string npy_header(Dtype dtype, const std::vector<int64_t>& shape);

// Writes atomically (OutputFile). `.zst` suffix compresses with zstd at `zstd_level`.
void write_npy(const std::string& path, Dtype dtype, const std::vector<int64_t>& shape,
               const void* data, int zstd_level = 3);

template <class T>
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const T* data,
               int zstd_level = 3) {
    write_npy(path, dtype_of<T>(), shape, data, zstd_level);
}
template <class T>
void write_npy(const std::string& path, const std::vector<T>& v, int zstd_level = 3) {
    write_npy(path, dtype_of<T>(), {static_cast<int64_t>(v.size())}, v.data(), zstd_level);
}

// Streams rows of a 2-D (or 1-D) array whose length is not known in advance into a plain
// .npy: rows are appended, the header is rewritten with the final row count on commit().
// Not committed = no file (the .partial is removed).
class NpyRowWriter {
public:
    // `row_shape` is the shape of one row ({} for 1-D).
    NpyRowWriter(const std::string& path, Dtype dtype, std::vector<int64_t> row_shape);
    ~NpyRowWriter();
    NpyRowWriter(const NpyRowWriter&) = delete;
    NpyRowWriter& operator=(const NpyRowWriter&) = delete;

    void append(const void* rows, int64_t n_rows);
    void commit();
    int64_t rows() const { return rows_; }

private:
    struct Impl;
    Impl* impl_;
    int64_t rows_ = 0;
};

// Reads the rows of a .npy (or .npy.zst) front to back without holding the whole array: for
// arrays that may be larger than memory (a long recording's spikes). The header is checked as
// read_npy does; a file shorter than its header says throws Error(usage) naming it from read().
class NpyRowReader {
public:
    explicit NpyRowReader(const std::string& path);
    ~NpyRowReader();
    NpyRowReader(const NpyRowReader&) = delete;
    NpyRowReader& operator=(const NpyRowReader&) = delete;

    Dtype dtype() const { return dtype_; }
    const std::vector<int64_t>& shape() const { return shape_; }
    int64_t rows() const { return rows_; }    // shape[0] (1 for a 0-d array)
    // Copies the next min(max_rows, rows left) rows into out (raw little-endian bytes); returns how many.
    int64_t read(void* out, int64_t max_rows);

private:
    struct Impl;
    Impl* impl_;
    Dtype dtype_ = Dtype::float32;
    std::vector<int64_t> shape_;
    int64_t rows_ = 0, done_ = 0;
};

}  // namespace ks
