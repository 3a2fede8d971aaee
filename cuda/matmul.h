// Matrix products (CUDA) through cuBLAS: same contract as cpu/matmul.h.
#pragma once
#include "cpu/matmul.h"

namespace gl::cuda {
template <class T>
void matmul_forward(T* out, const T* a, const T* b, const MatmulShape& s);
}  // namespace gl::cuda
