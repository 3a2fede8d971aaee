// Causal attention kernels (CUDA): same contracts as cpu/attention.h.
// Correctness-first kernels (no T x T buffer in global memory, no atomics);
// a tiled, tensor-core version is later work.
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t seq_len, int64_t HS, double scale);

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t seq_len,
                        int64_t HS, double scale);

}  // namespace gl::cuda
