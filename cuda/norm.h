// Row normalisation kernels (CUDA): same contracts as cpu/norm.h (plain C++
// header, no CUDA types). f32 reduces in f32 (block trees), f64 in f64; the
// parameter gradients are reduced deterministically (per-block partials,
// then a second pass in a fixed order), never with atomics.
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t C, double eps);
template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                         const T* mean, const T* rstd, int64_t rows, int64_t C);

template <class T>
void add_layer_norm_forward(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res,
                            const T* weight, const T* bias, int64_t rows, int64_t C, double eps);
template <class T>
void add_rms_norm_forward(T* sum, T* out, T* rstd, const T* x, const T* res, const T* weight,
                          int64_t rows, int64_t C, double eps);

template <class T>
void rms_norm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t rows, int64_t C,
                      double eps);
template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight,
                       const T* rstd, int64_t rows, int64_t C);

}  // namespace gl::cuda
