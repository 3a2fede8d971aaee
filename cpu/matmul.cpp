#include "cpu/matmul.h"

#include "cpu/sgemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <type_traits>

namespace gl::cpu {

template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
static void matmul_one(T* out, const T* a, const T* b, const MatmulShape& s) {
  using Map = Eigen::Map<const RowMajor<T>>;
  Eigen::Map<RowMajor<T>> C(out, s.M, s.N);
  const Map A(a, s.trans_a ? s.K : s.M, s.trans_a ? s.M : s.K);
  const Map B(b, s.trans_b ? s.N : s.K, s.trans_b ? s.K : s.N);
  // Eigen picks its blocked GEMM for each transpose combination; noalias()
  // avoids a temporary for the result. Eigen implements `C = A B` as
  // C.setZero() then C += A B, and that memset runs on one thread: for a
  // fresh output it is also where every page is first touched, so the
  // other threads wait through a serial fault-in (the 64 MB logits of a
  // vocab-8192 head took ~20 ms). Zeroing here, in parallel when called
  // outside a parallel region, then accumulating, is the same arithmetic.
  if (!s.accumulate) {
    const int64_t n = s.M * s.N;
#pragma omp parallel for simd schedule(static) if (n > (1 << 16) && !omp_in_parallel())
    for (int64_t i = 0; i < n; ++i) out[i] = T(0);
  }
  if (!s.trans_a && !s.trans_b) C.noalias() += A * B;
  else if (s.trans_a && !s.trans_b) C.noalias() += A.transpose() * B;
  else if (!s.trans_a && s.trans_b) C.noalias() += A * B.transpose();
  else C.noalias() += A.transpose() * B.transpose();
}

// f32 goes to our own GEMM where the CPU has AVX-512 or AVX2 (cpu/sgemm.h).
template <class T>
static void matmul_dispatch(T* out, const T* a, const T* b, const MatmulShape& s) {
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_available()) {
      SgemmArgs g;
      g.M = s.M, g.N = s.N, g.K = s.K;
      g.a = a, g.a_row = s.trans_a ? 1 : s.K, g.a_col = s.trans_a ? s.M : 1;
      g.b = b, g.b_row = s.trans_b ? 1 : s.N, g.b_col = s.trans_b ? s.K : 1;
      g.c = out, g.ldc = s.N, g.accumulate = s.accumulate;
      sgemm(g);
      return;
    }
  }
  matmul_one(out, a, b, s);
}

template <class T>
void matmul_forward(T* out, const T* a, const T* b, const MatmulShape& s) {
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0) {
    if (!s.accumulate)
      for (int64_t i = 0; i < s.batch * s.M * s.N; ++i) out[i] = T(0);
    return;
  }
  if (s.batch == 1) {  // the GEMM's own OpenMP parallelism
    matmul_dispatch(out, a, b, s);
    return;
  }
  // Many small products (attention heads): one thread per product. The
  // GEMM sees it is inside a parallel region and stays single-threaded.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < s.batch; ++i)
    matmul_dispatch(out + i * s.M * s.N, a + i * s.a_batch_stride, b + i * s.b_batch_stride, s);
}

template void matmul_forward<float>(float*, const float*, const float*, const MatmulShape&);
template void matmul_forward<double>(double*, const double*, const double*, const MatmulShape&);

}  // namespace gl::cpu
