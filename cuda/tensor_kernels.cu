// CUDA versions of the Tensor-level primitives of core/device_hooks.h:
// strided copy, dtype conversion, fill and Philox draws. Conversions use the
// same rounding as the CPU (round-to-nearest-even for bf16/f16, saturating
// truncation for integers), so both devices hold the same bits.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "core/device_hooks.h"
#include "core/philox.h"
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace gl::cuda_hooks {

namespace {

constexpr int kMaxDims = 12;
struct StridedArgs {
  int64_t shape[kMaxDims], dst_strides[kMaxDims], src_strides[kMaxDims];
  int ndim;
};

__global__ void copy_strided_kernel(char* dst, const char* src, StridedArgs a, int64_t n,
                                    int elsize) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, so = 0, d_o = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
      const int64_t idx = rem % a.shape[d];
      rem /= a.shape[d];
      so += idx * a.src_strides[d];
      d_o += idx * a.dst_strides[d];
    }
    const char* s = src + so * elsize;
    char* o = dst + d_o * elsize;
    switch (elsize) {
      case 2: *reinterpret_cast<uint16_t*>(o) = *reinterpret_cast<const uint16_t*>(s); break;
      case 4: *reinterpret_cast<uint32_t*>(o) = *reinterpret_cast<const uint32_t*>(s); break;
      case 8: *reinterpret_cast<uint64_t*>(o) = *reinterpret_cast<const uint64_t*>(s); break;
      default: for (int b = 0; b < elsize; ++b) o[b] = s[b];
    }
  }
}

__device__ double load(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::F16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::U16: return static_cast<const uint16_t*>(p)[i];
  }
  return 0.0;
}

template <class I>
__device__ I to_int(double v, double lo, double hi) {
  if (isnan(v)) return 0;
  if (v <= lo) return I(lo);
  if (v >= hi) return I(hi);
  return I(v);
}

__device__ void store(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    // Through f32 first, exactly like the CPU path, so double rounding agrees.
    case DType::BF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(float(v)); break;
    case DType::F16: static_cast<__half*>(p)[i] = __float2half_rn(float(v)); break;
    case DType::I32:
      static_cast<int32_t*>(p)[i] = to_int<int32_t>(v, -2147483648.0, 2147483647.0);
      break;
    case DType::I64: {
      // 2^63 is not representable as int64; saturate like the CPU path.
      int64_t r;
      if (isnan(v)) r = 0;
      else if (v <= -9223372036854775808.0) r = INT64_MIN;
      else if (v >= 9223372036854775807.0) r = INT64_MAX;
      else r = int64_t(v);
      static_cast<int64_t*>(p)[i] = r;
      break;
    }
    case DType::U16: static_cast<uint16_t*>(p)[i] = to_int<uint16_t>(v, 0.0, 65535.0); break;
  }
}

__global__ void convert_kernel(void* dst, DType dd, const void* src, DType sd, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (dd == DType::I64 && sd == DType::I64)
      static_cast<int64_t*>(dst)[i] = static_cast<const int64_t*>(src)[i];
    else
      store(dst, dd, i, load(src, sd, i));
  }
}

__global__ void fill_kernel(void* dst, DType dt, int64_t n, double value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(dst, dt, i, value);
}

__global__ void random_kernel(void* dst, DType dt, int64_t n, uint64_t seed, uint64_t offset,
                              RandomKind kind, double a, double b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    // fma in f64, as on the CPU (std::fma), so the rounding is identical.
    const double v = kind == RandomKind::UNIFORM
                         ? fma(b - a, double(philox_uniform(seed, offset, uint64_t(i))), a)
                         : fma(b, philox_normal(seed, offset, uint64_t(i)), a);
    store(dst, dt, i, v);
  }
}

constexpr int kThreads = 256;

}  // namespace

void copy_strided(int device, void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int ndim, size_t elsize) {
  GL_CHECK(ndim <= kMaxDims, "cuda copy_strided: ", ndim, " dims (at most ", kMaxDims, ")");
  StridedArgs a{};
  a.ndim = ndim;
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    a.shape[d] = shape[d];
    a.dst_strides[d] = dst_strides[d];
    a.src_strides[d] = src_strides[d];
    n *= shape[d];
  }
  if (n == 0) return;
  gl::cuda::DeviceGuard guard(device);
  copy_strided_kernel<<<gl::cuda::blocks_for(n, kThreads), kThreads, 0,
                        gl::cuda::current_stream()>>>(
      static_cast<char*>(dst), static_cast<const char*>(src), a, n, int(elsize));
  CUDA_CHECK_LAUNCH("copy_strided_kernel");
}

void convert(int device, void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n) {
  if (n == 0) return;
  gl::cuda::DeviceGuard guard(device);
  convert_kernel<<<gl::cuda::blocks_for(n, kThreads), kThreads, 0, gl::cuda::current_stream()>>>(
      dst, dst_dtype, src, src_dtype, n);
  CUDA_CHECK_LAUNCH("convert_kernel");
}

void fill(int device, void* dst, DType dtype, int64_t n, double value) {
  if (n == 0) return;
  gl::cuda::DeviceGuard guard(device);
  fill_kernel<<<gl::cuda::blocks_for(n, kThreads), kThreads, 0, gl::cuda::current_stream()>>>(
      dst, dtype, n, value);
  CUDA_CHECK_LAUNCH("fill_kernel");
}

void random(int device, void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t offset,
            RandomKind kind, double a, double b) {
  if (n == 0) return;
  gl::cuda::DeviceGuard guard(device);
  random_kernel<<<gl::cuda::blocks_for(n, kThreads), kThreads, 0, gl::cuda::current_stream()>>>(
      dst, dtype, n, seed, offset, kind, a, b);
  CUDA_CHECK_LAUNCH("random_kernel");
}

}  // namespace gl::cuda_hooks
