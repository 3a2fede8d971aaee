// Shared by every .cu file: checked CUDA/cuBLAS calls, the per-device
// stream, launch geometry. Included only by nvcc-compiled files.
//
// Convention for all kernel launchers (as in llm.c): arguments are outputs,
// inputs, weights, then sizes; every launcher runs on current_stream() of
// the current device (set by the op's dispatch) and checks the launch with
// the kernel's name, so an error names the kernel that failed.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"

namespace gl::cuda {

void check(cudaError_t err, const char* what, const char* file, int line);
void check_cublas(cublasStatus_t st, const char* what, const char* file, int line);
// After a launch: reports a launch error with the kernel's name.
void check_launch(const char* kernel, const char* file, int line);

cudaStream_t current_stream();  // of the current device
cublasHandle_t cublas_handle();  // of the current device, bound to current_stream()

inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535LL * 32 ? 65535LL * 32 : b));
}

}  // namespace gl::cuda

#define CUDA_CHECK(call) ::gl::cuda::check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) ::gl::cuda::check_cublas((call), #call, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH(kernel) ::gl::cuda::check_launch(kernel, __FILE__, __LINE__)
