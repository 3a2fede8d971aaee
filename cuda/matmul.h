// Matrix products (CUDA) through cuBLAS: same contract as cpu/matmul.h.
#pragma once
#include "cpu/matmul.h"

namespace gl::cuda {
template <class T>
void matmul_forward(T* out, const T* a, const T* b, const MatmulShape& s);

// f32 out (+)= op(a) . op(b) with a and b in bf16 (f16 when `f16`), f32
// accumulation, on the tensor cores through cuBLASLt (cuda/matmul_lt.cu).
void matmul_forward_lowp(float* out, const void* a, const void* b, bool f16,
                         const MatmulShape& s);
}  // namespace gl::cuda
