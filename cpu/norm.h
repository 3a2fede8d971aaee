// Row normalisation kernels (CPU reference): LayerNorm and RMSNorm over the
// last dim C of a contiguous [rows, C] input (rows = B * T, or any product
// of leading dims).
//
//   layer_norm: y = (x - mean) * rstd * weight + bias,
//               rstd = 1 / sqrt(var + eps), var the population variance
//               (Ba, Kiros & Hinton 2016; torch.nn.LayerNorm).
//   rms_norm:   y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps)
//               (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization").
//
// Conventions (as llm.c's layernorm): arguments are outputs, inputs,
// weights, sizes; in backward the gradients written, then dout, then saved
// activations. The forward saves per-row statistics (mean, rstd) in T so the
// backward never recomputes reductions over x. Activation grads (dx) are
// overwritten, parameter grads (dweight, dbias) accumulate (+=), summed over
// rows in a fixed order (deterministic, no atomics).
//
// Optional pointers: weight == nullptr means no scale (1), bias == nullptr
// no shift (0); mean/rstd outputs may be nullptr when not needed; in
// backward any of dx, dweight, dbias may be nullptr to skip that gradient.
// Reductions accumulate in double for both f32 and f64.
#pragma once
#include <cstdint>

namespace gl::cpu {

// out, x: [rows, C]; mean, rstd: [rows]; weight, bias: [C].
template <class T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t C, double eps);
template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                         const T* mean, const T* rstd, int64_t rows, int64_t C);

// The residual add fused into the norm that reads its result: sum = x + res
// (rounded to T, as the add op rounds), written to `sum`, then the norm of
// sum, in one pass over the rows instead of an add kernel and a re-read.
// sum, res: [rows, C]. The backward is the plain norm's, of sum.
template <class T>
void add_layer_norm_forward(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res,
                            const T* weight, const T* bias, int64_t rows, int64_t C, double eps);
template <class T>
void add_rms_norm_forward(T* sum, T* out, T* rstd, const T* x, const T* res, const T* weight,
                          int64_t rows, int64_t C, double eps);

// out, x: [rows, C]; rstd: [rows]; weight: [C].
template <class T>
void rms_norm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t rows, int64_t C,
                      double eps);
template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight,
                       const T* rstd, int64_t rows, int64_t C);

}  // namespace gl::cpu
