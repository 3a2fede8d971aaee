// Our own single-precision GEMM for x86-64 CPUs (BLIS-style: packed panels,
// a register-blocked micro-kernel), in two instruction sets: AVX-512 (a
// 12 x 32 tile, cpu/sgemm_avx512.h) and AVX2 + FMA (6 x 16,
// cpu/sgemm_avx2.h), so that machines without AVX-512 (AMD Zen 2/3, older
// Intel) get it too. Eigen's GEMM reaches 130-165 GFLOP/s on the model's
// shapes on the 2-core AVX-512 machines we measure on, the OpenBLAS inside
// PyTorch 155-180; the matrix products are two thirds or more of a training
// step, so they set our speed against PyTorch. cpu/matmul.cpp uses this for
// f32 when the CPU has either instruction set, and Eigen otherwise (and
// always for f64).
//
//   C[i, j] = (accumulate ? C[i, j] : 0) + sum_k A(i, k) * B(k, j)
//   A(i, k) = a[i * a_row + k * a_col],  B(k, j) = b[k * b_row + j * b_col]
//   C is row-major with leading dimension ldc.
//
// Each C element is the same chain of IEEE operations whatever the thread
// count, the element's position in a tile or the instruction set: per
// KC-deep block of k, one fused multiply-add per k in order starting from
// zero, then added to C. So results do not depend on OMP_NUM_THREADS, and
// the AVX2 and AVX-512 kernels agree bit for bit (both tested).
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

enum class SgemmIsa { None, Avx2, Avx512 };

const char* sgemm_isa_name(SgemmIsa isa);

// Whether this CPU can run the kernel for `isa` (None: always false).
bool sgemm_cpu_supports(SgemmIsa isa);

// The kernel sgemm() uses: the widest this CPU supports, unless the
// environment says otherwise (a switch for benchmarks and diagnosis):
// GRIDLOCK_GEMM=eigen gives None (matmul then uses Eigen), GRIDLOCK_GEMM=avx2
// the AVX2 kernel on an AVX-512 machine. Any other value is an error.
SgemmIsa sgemm_isa();

// True when sgemm_isa() is not None.
bool sgemm_available();

// Splits the work over the OpenMP threads when called outside a parallel
// region, runs single-threaded inside one. Requires sgemm_available().
void sgemm(const SgemmArgs& g);

// The same with a given kernel (tests and benchmarks compare both);
// requires sgemm_cpu_supports(isa).
void sgemm(const SgemmArgs& g, SgemmIsa isa);

}  // namespace gl::cpu
