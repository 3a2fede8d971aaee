// The few device-level primitives the Tensor class itself needs (memory,
// copies, dtype conversion, fills, random draws), one CPU and one CUDA
// implementation each. Op kernels live in cpu/ and cuda/, not here.
//
// CUDA versions are defined in cuda/runtime.cu and cuda/tensor_kernels.cu;
// when gridlock is built without CUDA, core/no_cuda.cpp defines them to
// throw "built without CUDA", so a CUDA tensor can never be created.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace gl {

enum class RandomKind : uint8_t { UNIFORM, NORMAL };

// Pointers are element 0 of their view. copy_strided moves elements of
// `shape` between two arbitrary strided views; every other primitive works
// on contiguous buffers.
namespace cpu_hooks {
void copy_strided(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int ndim, size_t elsize);
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n);
void fill(void* dst, DType dtype, int64_t n, double value);
void random(void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t offset, RandomKind kind,
            double a, double b);  // uniform: [a, b); normal: mean a, std b
}  // namespace cpu_hooks

namespace cuda_hooks {
bool built();  // compiled with CUDA support
int device_count();  // 0 when built without CUDA or no device is visible
void* alloc(size_t nbytes, int device);
void free(void* p, int device);
// Copies nbytes between any two devices (host-device, device-device).
void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);
void copy_strided(int device, void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int ndim, size_t elsize);
void convert(int device, void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n);
void fill(int device, void* dst, DType dtype, int64_t n, double value);
void random(int device, void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t offset,
            RandomKind kind, double a, double b);
}  // namespace cuda_hooks

}  // namespace gl
