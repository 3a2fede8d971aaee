// Causal attention kernels (CUDA): same contracts as cpu/attention.h
// (q [BH, Tq, HS], k and v [BH, Tk, HS], Tk >= Tq, queries aligned to the
// end of the keys).
// Correctness-first kernels (no T x T buffer in global memory, no atomics);
// a tiled, tensor-core version is later work.
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t Tq, int64_t Tk, int64_t HS, double scale);

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t Tq,
                        int64_t Tk, int64_t HS, double scale);

}  // namespace gl::cuda
