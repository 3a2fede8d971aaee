// The one dispatch point between ops and kernels. An op calls
//
//   dispatch("layernorm", x, [&](auto t) { cpu::layernorm_forward<decltype(t)>(...); },
//                            [&](auto t) { cuda::layernorm_forward<decltype(t)>(...); });
//
// which picks the element type (f32 or f64; `t` is a value of that type,
// used only for its type) and the device. The lambdas are generic, so the
// CUDA one is never instantiated in a build without CUDA and the CUDA
// kernels need not exist there.
#pragma once
#include "core/tensor.h"
#include "cuda/runtime.h"

namespace gl {

template <class CpuFn, class CudaFn>
void dispatch(const char* op, const Tensor& like, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
  auto run = [&](auto tag) {
    if (like.device().is_cuda()) {
#if GRIDLOCK_CUDA
      cuda::DeviceGuard guard(like.device().index);
      cuda_fn(tag);
#else
      GL_CHECK(false, op, ": CUDA tensor in a build without CUDA");
#endif
    } else {
      cpu_fn(tag);
    }
  };
  switch (like.dtype()) {
    case DType::F32: run(float{}); break;
    case DType::F64: run(double{}); break;
    default:
      GL_CHECK(false, op, ": dtype ", dtype_name(like.dtype()), " not supported (", like.describe(),
               "); ops compute in f32 or f64, convert with .to(DType::F32)");
  }
}

// Index tensors (token ids, targets): calls fn(int32_t{}) or fn(int64_t{})
// by the dtype, which the op has already checked to be I32 or I64.
template <class Fn>
void with_index_type(const Tensor& ids, Fn&& fn) {
  if (ids.dtype() == DType::I32) fn(int32_t{});
  else fn(int64_t{});
}

// Checks shared by most ops: defined, floating, same dtype and device as `ref`.
void check_same(const char* op, const Tensor& ref, const Tensor& other, const char* other_name);

}  // namespace gl
