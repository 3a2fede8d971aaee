// Matrix products (CPU), row-major throughout: f32 through our GEMM
// (cpu/sgemm.h, AVX-512 or AVX2) where the CPU has either, otherwise and for
// f64 through Eigen.
//   out[b] (+)= op(a[b]) . op(b[b]),  out[b]: [M, N]
// a[b] is [M, K] ([K, M] when trans_a), b[b] is [K, N] ([N, K] when trans_b);
// batch strides are in elements, and a stride of 0 broadcasts that operand.
#pragma once
#include <cstdint>

namespace gl {
struct MatmulShape {
  int64_t batch = 1, M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  int64_t a_batch_stride = 0, b_batch_stride = 0;  // out's is M * N
  bool accumulate = false;  // out += instead of out =
};
}  // namespace gl

namespace gl::cpu {
template <class T>
void matmul_forward(T* out, const T* a, const T* b, const MatmulShape& s);
}  // namespace gl::cpu
