#pragma once
// The compute device a tool runs on. No CUDA types here: tools compile with g++ alone.
#include <memory>
#include <string>

namespace ks {

enum class DeviceKind { cpu, cuda };

struct GpuInfo {
    bool compiled = false;    // this binary has the CUDA backend
    int count = 0;            // usable CUDA devices
    std::string why_not;      // why none is usable ("no NVIDIA driver (cudaErrorInsufficientDriver)")
    std::string name;         // first device's name
    double memory_gib = 0;
    int cc_major = 0, cc_minor = 0;
};

// Probes the GPU once per process; never throws, never aborts (any CUDA error = no GPU).
// KS_FORCE_CPU=1 in the environment hides the GPU.
const GpuInfo& gpu_info();

class Device {
public:
    // "auto": CUDA when a GPU is usable, else CPU. "cpu". "cuda": throws
    // Error(environment) with a one-line reason when no GPU is usable. Else Error(usage).
    static Device open(const std::string& which, int threads = 0);

    DeviceKind kind() const { return kind_; }
    bool is_cuda() const { return kind_ == DeviceKind::cuda; }
    int threads() const { return threads_; }          // CPU threads (OpenMP)
    std::string describe() const;                      // "cpu (2 threads)" / "cuda:0 NVIDIA H100 ..."
    const std::string& why() const { return why_; }    // why this device was chosen

private:
    DeviceKind kind_ = DeviceKind::cpu;
    int threads_ = 1;
    std::string why_;
};

}  // namespace ks
