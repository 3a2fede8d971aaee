// Row-major products on column-major cuBLAS: a row-major [M, N] matrix is
// the column-major [N, M] matrix of its transpose, so C = op(A) op(B) is
// computed as C^T = op(B)^T op(A)^T, i.e. cuBLAS gets B first. TF32 stays
// off here (the f32 path is the numerical reference); the fast
// mixed-precision path is cuBLASLt's (cuda/ performance work).
#include "cuda/common.cuh"
#include "cuda/matmul.h"

namespace gl::cuda {

namespace {

cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const float* alpha, const float* A, int lda, long long sa,
                    const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                    long long sc, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C,
                                   ldc, sc, batch);
}
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const double* alpha, const double* A, int lda, long long sa,
                    const double* B, int ldb, long long sb, const double* beta, double* C,
                    int ldc, long long sc, int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C,
                                   ldc, sc, batch);
}

}  // namespace

template <class T>
void matmul_forward(T* out, const T* a, const T* b, const MatmulShape& s) {
  if (s.M == 0 || s.N == 0 || s.batch == 0) return;
  GL_CHECK(s.M < (1LL << 31) && s.N < (1LL << 31) && s.K < (1LL << 31) && s.batch < (1LL << 31),
           "cuda matmul: dimension over 2^31 (M=", s.M, " N=", s.N, " K=", s.K, ")");
  const T alpha = T(1), beta = s.accumulate ? T(1) : T(0);
  const int m = int(s.N), n = int(s.M), k = int(s.K);
  // Column-major leading dims of the row-major operands.
  const int ldb = int(s.trans_b ? s.K : s.N);
  const int lda = int(s.trans_a ? s.M : s.K);
  CUBLAS_CHECK(gemm(cublas_handle(), s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                    s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, b, ldb,
                    s.b_batch_stride, a, lda, s.a_batch_stride, &beta, out, m, s.M * s.N,
                    int(s.batch)));
}

template void matmul_forward<float>(float*, const float*, const float*, const MatmulShape&);
template void matmul_forward<double>(double*, const double*, const double*, const MatmulShape&);

}  // namespace gl::cuda
