// Knowledge-distillation kernels (CUDA): same contracts as cpu/distill.h
// (dloss and weight are device pointers; sums in T rather than double).
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void distill_kl_forward(T* kl, T* lse_s, T* lse_t, const T* student, const T* teacher,
                        const T* weight, int64_t N, int64_t V, double inv_tau);
template <class T>
void distill_kl_backward(T* dstudent, const T* dloss, const T* student, const T* teacher,
                         const T* lse_s, const T* lse_t, const T* weight, int64_t N, int64_t V,
                         double inv_tau, double coef);

}  // namespace gl::cuda
