// The one place that asks the CUDA runtime whether a GPU is usable. Any error (no driver:
// cudaErrorInsufficientDriver = 35; driver but no device: 100) means "no GPU"; never abort.
#include <cuda_runtime.h>

#include <string>

#include "ks/device.hpp"

namespace ks::cuda_detail {

GpuInfo query_gpu() {
    GpuInfo g;
    g.compiled = true;
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error state
        g.count = 0;
        g.why_not = std::string(cudaGetErrorString(err)) + " (" + cudaGetErrorName(err) + ")";
        if (err == cudaErrorInsufficientDriver) g.why_not = "no NVIDIA driver (" + std::string(cudaGetErrorName(err)) + ")";
        if (err == cudaErrorNoDevice) g.why_not = "no CUDA device (cudaErrorNoDevice)";
        return g;
    }
    if (n <= 0) {
        g.why_not = "no CUDA device";
        return g;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        cudaGetLastError();
        g.why_not = "cannot read the properties of CUDA device 0";
        return g;
    }
    g.count = n;
    g.name = prop.name;
    g.memory_gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
    g.cc_major = prop.major;
    g.cc_minor = prop.minor;
    return g;
}

}  // namespace ks::cuda_detail
