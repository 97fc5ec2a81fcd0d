#include "ks/device.hpp"

#include <cstdlib>
#include <omp.h>

#include "ks/error.hpp"
#include "ks/log.hpp"

namespace ks {

#if KS_HAVE_CUDA
namespace cuda_detail {
GpuInfo query_gpu();  // kernels/cuda/device_query.cu
}
#endif

const GpuInfo& gpu_info() {
    static const GpuInfo info = [] {
        GpuInfo g;
#if KS_HAVE_CUDA
        g = cuda_detail::query_gpu();
        g.compiled = true;
        const char* force = std::getenv("KS_FORCE_CPU");
        if (force && *force && std::string(force) != "0") {
            g.count = 0;
            g.why_not = "KS_FORCE_CPU is set";
        }
#else
        g.compiled = false;
        g.why_not = "this build has no CUDA backend (built without nvcc or with -DKS_ENABLE_CUDA=OFF)";
#endif
        return g;
    }();
    return info;
}

Device Device::open(const std::string& which, int threads) {
    Device d;
    d.threads_ = threads > 0 ? threads : omp_get_max_threads();
    const GpuInfo& g = gpu_info();
    if (which == "cpu") {
        d.why_ = "asked for --device cpu";
    } else if (which == "cuda") {
        if (g.count <= 0) throw Error(Exit::environment, "--device cuda: no usable GPU: " + g.why_not);
        d.kind_ = DeviceKind::cuda;
        d.why_ = "asked for --device cuda";
    } else if (which == "auto") {
        if (g.count > 0) {
            d.kind_ = DeviceKind::cuda;
            d.why_ = "a GPU is usable";
        } else {
            d.why_ = "no usable GPU: " + g.why_not;
        }
    } else {
        throw Error(Exit::usage, "--device " + which + ": expected auto, cpu or cuda");
    }
    return d;
}

std::string Device::describe() const {
    if (kind_ == DeviceKind::cuda) {
        const GpuInfo& g = gpu_info();
        return log::format("cuda:0 %s (%.1f GiB, compute %d.%d)", g.name.c_str(), g.memory_gib, g.cc_major, g.cc_minor);
    }
    return log::format("cpu (%d thread%s)", threads_, threads_ == 1 ? "" : "s");
}

}  // namespace ks
