#pragma once
// Shared CUDA helpers: error checks that become ks::Error.
#include <cuda_runtime.h>

#include <string>

#include "ks/error.hpp"

namespace ks::cuda_detail {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* expr, const char* file, int line) {
    const bool oom = err == cudaErrorMemoryAllocation;
    throw Error(oom ? Exit::resources : Exit::environment,
                std::string(oom ? "GPU out of memory" : "CUDA error") + ": " + cudaGetErrorString(err) + " in " + expr +
                    " (" + file + ":" + std::to_string(line) + ")");
}

}  // namespace ks::cuda_detail

#define KS_CUDA_CHECK(expr)                                                                   \
    do {                                                                                      \
        const cudaError_t ks_err_ = (expr);                                                   \
        if (ks_err_ != cudaSuccess) ::ks::cuda_detail::cuda_fail(ks_err_, #expr, __FILE__, __LINE__); \
    } while (0)

// After every launch; synchronises under the KS_CUDA_SYNC build option to pin errors to a kernel.
#if defined(KS_CUDA_SYNC)
#define KS_CUDA_LAUNCHED() do { KS_CUDA_CHECK(cudaGetLastError()); KS_CUDA_CHECK(cudaDeviceSynchronize()); } while (0)
#else
#define KS_CUDA_LAUNCHED() KS_CUDA_CHECK(cudaGetLastError())
#endif

namespace ks::cuda_detail {

// Device memory freed on scope exit, so an exception never leaks GPU memory.
struct DeviceBuffer {
    void* p = nullptr;
    explicit DeviceBuffer(size_t bytes) { KS_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1)); }
    ~DeviceBuffer() { cudaFree(p); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    template <class T>
    T* as() const {
        return static_cast<T*>(p);
    }
};

}  // namespace ks::cuda_detail
