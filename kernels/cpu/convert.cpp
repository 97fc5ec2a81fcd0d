#include <cstdint>

#include "common/convert_body.hpp"
#include "ks/error.hpp"
#include "ks/kernels/convert.hpp"

namespace ks::kernels::cpu {
namespace {
template <class T>
void run(const ConvertArgs& a) {
    const T* in = static_cast<const T*>(a.in);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < a.n_rows; ++c) {
        const int r = a.rows[c];
        float* o = a.out + static_cast<int64_t>(c) * a.n_samples;
        for (int64_t t = 0; t < a.n_samples; ++t)
            o[t] = body::convert_sample(static_cast<float>(in[t * a.row_stride + r]), a.offset, a.scale, a.shift, a.invert);
    }
}
}  // namespace

void convert_samples(const ConvertArgs& a) {
    switch (a.dtype) {
        case Dtype::int16: run<int16_t>(a); break;
        case Dtype::uint16: run<uint16_t>(a); break;
        case Dtype::int32: run<int32_t>(a); break;
        case Dtype::float32: run<float>(a); break;
        default: KS_ASSERT(false, std::string("convert_samples: unsupported dtype ") + dtype_name(a.dtype));
    }
}

}  // namespace ks::kernels::cpu
