#pragma once
// KS_HD marks arithmetic shared by the CPU and CUDA backends: __host__ __device__ under nvcc,
// nothing under g++. Bodies using it live in kernels/common/*_body.hpp, header-only and inline.
#if defined(__CUDACC__)
#define KS_HD __host__ __device__
#else
#define KS_HD
#endif
