#pragma once
// Raw interleaved samples -> float32, channel-major, with Kilosort4's scaling order.
#include <cstdint>

#include "ks/device.hpp"
#include "ks/dtype.hpp"

namespace ks::kernels {

struct ConvertArgs {
    Dtype dtype = Dtype::int16;   // int16, uint16, int32 or float32
    const void* in = nullptr;     // n_samples x row_stride values, interleaved (host memory)
    int64_t n_samples = 0;
    int row_stride = 0;           // values per sample in `in` (n_chan_bin)
    const int* rows = nullptr;    // n_rows file rows to keep, in output order
    int n_rows = 0;
    float offset = 0;             // subtracted first (32768 for uint16)
    float scale = 1, shift = 0;   // then x*scale + shift
    bool invert = false;          // then negated
    float* out = nullptr;         // n_rows x n_samples, channel-major (host memory)
};

// Runs on `dev` (CUDA when dev.is_cuda(), else CPU threads). Both give identical floats:
// the body is one expression without contraction-sensitive steps.
void convert_samples(const Device& dev, const ConvertArgs& a);

namespace cpu {
void convert_samples(const ConvertArgs& a);
}
#if KS_HAVE_CUDA
namespace cuda {
void convert_samples(const ConvertArgs& a);  // throws Error(environment/resources) on CUDA failure
}
#endif

}  // namespace ks::kernels
