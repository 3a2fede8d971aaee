// Elementwise ops with numpy broadcasting: add, sub, mul, div, scale,
// add_scalar, neg. Backward of a broadcast input sums the gradient over the
// broadcast dims (sum_to).
#pragma once
#include "autograd/var.h"
#include "cpu/elementwise.h"

namespace gl {

// --- tensor level (no autograd): used by backward closures and optimizers
Tensor binary(const Tensor& a, const Tensor& b, BinaryOp op);
Tensor affine(const Tensor& x, double alpha, double beta);  // alpha * x + beta
void add_(Tensor& dst, const Tensor& src);  // dst += src; same shape, dst contiguous

// --- autograd ops
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var scale(const Var& x, double alpha);
Var add_scalar(const Var& x, double beta);
Var neg(const Var& x);

inline Var operator+(const Var& a, const Var& b) { return add(a, b); }
inline Var operator-(const Var& a, const Var& b) { return sub(a, b); }
inline Var operator*(const Var& a, const Var& b) { return mul(a, b); }
inline Var operator/(const Var& a, const Var& b) { return div(a, b); }
inline Var operator*(const Var& a, double s) { return scale(a, s); }
inline Var operator*(double s, const Var& a) { return scale(a, s); }
inline Var operator-(const Var& a) { return neg(a); }

}  // namespace gl
