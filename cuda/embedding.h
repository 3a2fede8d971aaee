// Embedding lookup kernels (CUDA): same contracts as cpu/embedding.h
// (bad_pos is a device pointer).
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T, class I>
void embedding_forward(T* out, int64_t* bad_pos, const I* ids, const T* weight, int64_t N,
                       int64_t V, int64_t C);
template <class T, class I>
void embedding_backward(T* dweight, const T* dout, const I* ids, int64_t N, int64_t V,
                        int64_t C);

}  // namespace gl::cuda
