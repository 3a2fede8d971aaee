#include "cpu/elementwise.h"

namespace gl::cpu {

template <class T>
static inline T apply(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::ADD: return x + y;
    case BinaryOp::SUB: return x - y;
    case BinaryOp::MUL: return x * y;
    case BinaryOp::DIV: return x / y;
  }
  return T(0);
}

template <class T, BinaryOp OP>
static void binary_contiguous(T* out, const T* a, const T* b, int64_t n) {
  // One loop per op so the compiler vectorises each.
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = apply(OP, a[i], b[i]);
}

template <class T>
void binary_forward(T* out, const T* a, const T* b, BinaryOp op, const BroadcastIndex& idx,
                    int64_t n) {
  if (idx.contiguous) {
    switch (op) {
      case BinaryOp::ADD: binary_contiguous<T, BinaryOp::ADD>(out, a, b, n); return;
      case BinaryOp::SUB: binary_contiguous<T, BinaryOp::SUB>(out, a, b, n); return;
      case BinaryOp::MUL: binary_contiguous<T, BinaryOp::MUL>(out, a, b, n); return;
      case BinaryOp::DIV: binary_contiguous<T, BinaryOp::DIV>(out, a, b, n); return;
    }
  }
  const int nd = idx.ndim;
  const int64_t inner = nd > 0 ? idx.shape[nd - 1] : 1;
  if (n == 0 || inner == 0) return;
  const int64_t rows = n / inner;
  const int64_t as = nd > 0 ? idx.a_strides[nd - 1] : 0, bs = nd > 0 ? idx.b_strides[nd - 1] : 0;
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, ao = 0, bo = 0;
    for (int d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % idx.shape[d];
      rem /= idx.shape[d];
      ao += i * idx.a_strides[d];
      bo += i * idx.b_strides[d];
    }
    T* o = out + r * inner;
    for (int64_t j = 0; j < inner; ++j) o[j] = apply(op, a[ao + j * as], b[bo + j * bs]);
  }
}

template <class T>
void affine_forward(T* out, const T* x, double alpha, double beta, int64_t n) {
  const T a = T(alpha), b = T(beta);
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = a * x[i] + b;
}

template <class T>
void accumulate(T* dst, const T* src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

template <class T>
void add_bias_rows(T* y, const T* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    T* row = y + r * cols;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

#define GL_INSTANTIATE(T)                                                                  \
  template void binary_forward<T>(T*, const T*, const T*, BinaryOp, const BroadcastIndex&, \
                                  int64_t);                                                \
  template void affine_forward<T>(T*, const T*, double, double, int64_t);                  \
  template void accumulate<T>(T*, const T*, int64_t);                                      \
  template void add_bias_rows<T>(T*, const T*, int64_t, int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
