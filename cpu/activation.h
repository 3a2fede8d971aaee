// Elementwise activation kernels (CPU reference): GELU, exact and tanh form.
//   ERF:  gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
//         (Hendrycks & Gimpel 2016; torch GELU(approximate='none'), HF "gelu")
//   TANH: gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//         (GPT-2; torch GELU(approximate='tanh'), HF "gelu_new")
// https://pytorch.org/docs/stable/generated/torch.nn.GELU.html
// Backward uses the analytic derivative of the chosen form (not the other's).
// Conventions: outputs, inputs, sizes; dx is overwritten. Contiguous data.
// The CPU reference evaluates in double and rounds once to T.
#pragma once
#include <cstdint>

namespace gl {

enum class GeluKind : uint8_t { ERF, TANH };

namespace cpu {
template <class T>
void gelu_forward(T* out, const T* x, int64_t n, GeluKind kind);
template <class T>
void gelu_backward(T* dx, const T* dout, const T* x, int64_t n, GeluKind kind);

// A linear layer's bias fused into its activation: out = gelu(y + bias) for
// y [rows, C], bias [C], where y + bias is rounded to T (as the bias add of
// linear() rounds) before gelu. y itself is kept for the backward, which
// recomputes y + bias instead of storing it: one write less per forward.
// Backward: dy = dout * gelu'(y + bias) (overwritten), and, when dbias is
// not null, dbias += the column sums of dy (rows in order, in double).
template <class T>
void bias_gelu_forward(T* out, const T* y, const T* bias, int64_t rows, int64_t C, GeluKind kind);
template <class T>
void bias_gelu_backward(T* dy, T* dbias, const T* dout, const T* y, const T* bias, int64_t rows,
                        int64_t C, GeluKind kind);
}  // namespace cpu

}  // namespace gl
