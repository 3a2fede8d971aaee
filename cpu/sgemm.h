// Our own single-precision GEMM for x86-64 CPUs with AVX-512 (BLIS-style:
// packed panels, a 12 x 32 register-blocked micro-kernel). Eigen's GEMM
// reaches 130-165 GFLOP/s on the model's shapes on the 2-core AVX-512
// machines we measure on, the OpenBLAS inside PyTorch 155-180; the matrix
// products are two thirds or more of a training step, so they set our speed
// against PyTorch. cpu/matmul.cpp uses this for f32 when the CPU has
// AVX-512F and Eigen otherwise (and always for f64).
//
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_k A(i, k) * B(k, j)
//   A(i, k) = a[i * a_row + k * a_col],  B(k, j) = b[k * b_row + j * b_col]
//   C is row-major with leading dimension ldc.
//
// Each C element's sum runs over k in the same order whatever the thread
// count or the element's position in a tile, so results do not depend on
// OMP_NUM_THREADS.
#pragma once
#include <cstdint>

namespace gl::cpu {

struct SgemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const float* a = nullptr;
  int64_t a_row = 0, a_col = 1;
  const float* b = nullptr;
  int64_t b_row = 0, b_col = 1;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
};

// True when this CPU can run sgemm() (AVX-512F), and GRIDLOCK_GEMM=eigen is
// not set in the environment (a switch for benchmarks and diagnosis).
bool sgemm_available();

// Splits the work over the OpenMP threads when called outside a parallel
// region, runs single-threaded inside one. Requires sgemm_available().
void sgemm(const SgemmArgs& g);

}  // namespace gl::cpu
