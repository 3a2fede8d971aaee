// Cross-entropy kernels (CUDA): same contracts as cpu/cross_entropy.h
// (status and dloss are device pointers).
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T, class I>
void cross_entropy_forward(T* losses, T* lse, int64_t* status, const T* logits, const I* targets,
                           int64_t N, int64_t V, int64_t ignore_index);
template <class T, class I>
void cross_entropy_backward(T* dlogits, const T* dloss, const T* logits, const T* lse,
                            const I* targets, int64_t N, int64_t V, int64_t ignore_index,
                            double inv_n_valid);

}  // namespace gl::cuda
