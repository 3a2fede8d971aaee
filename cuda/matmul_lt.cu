// Mixed-precision products (run.precision = bf16 or f16) through cuBLASLt:
// bf16/f16 operands, f32 accumulation (CUBLAS_COMPUTE_32F), f32 result, so
// the tensor cores do the work while the output keeps the f32 contract of
// cpu/matmul.h. The same row-major to column-major swap as cuda/matmul.cu:
// C^T = op(B)^T op(A)^T, so cuBLASLt's first operand is our b.
//
// A plan (operation and layout descriptors plus the heuristic's algorithm)
// is made once per shape and kept: a training step repeats the same few
// dozen shapes, and the heuristic query costs more than a small product.
#include <cublasLt.h>

#include <map>
#include <mutex>
#include <tuple>

#include "cuda/common.cuh"
#include "cuda/matmul.h"

namespace gl::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's own default on Hopper

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

LtDevice& lt_device() {
  static std::mutex mu;
  // Leaked on purpose, like the device state in runtime.cu.
  static auto* devices = new std::map<int, LtDevice>();
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  std::lock_guard<std::mutex> lock(mu);
  LtDevice& dev = (*devices)[d];
  if (!dev.handle) {
    CUBLAS_CHECK(cublasLtCreate(&dev.handle));
    CUDA_CHECK(cudaMalloc(&dev.workspace, kWorkspaceBytes));
  }
  return dev;
}

// Largest power of two (up to 256) dividing every byte address the product
// touches: cuBLASLt's heuristic must not pick a kernel assuming more.
uint32_t alignment(const void* p, int64_t batch_stride_bytes) {
  uint64_t a = reinterpret_cast<uint64_t>(p) | uint64_t(batch_stride_bytes) | 256;
  return uint32_t(a & (~a + 1));
}

using PlanKey = std::tuple<int, int64_t, int64_t, int64_t, bool, bool, int64_t, int64_t, int64_t,
                           bool, bool, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool lt = true;  // false: the heuristic had no algorithm; cublasGemmStridedBatchedEx serves
};

void set_batch(cublasLtMatrixLayout_t l, int32_t batch, int64_t stride) {
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                sizeof(batch)));
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof(stride)));
}

// One product of `batch` entries with non-zero batch strides (or batch 1).
const Plan& plan_for(cublasLtHandle_t handle, const MatmulShape& s, int64_t batch,
                     bool f16, uint32_t align_a, uint32_t align_b, uint32_t align_c) {
  static std::mutex mu;
  static auto* plans = new std::map<PlanKey, Plan>();
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  const PlanKey key{d, s.M, s.N, s.K, s.trans_a, s.trans_b, batch, s.a_batch_stride,
                    s.b_batch_stride, f16, s.accumulate, align_a, align_b, align_c};
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans->find(key);
  if (it != plans->end()) return it->second;

  Plan p;
  const cudaDataType_t in = f16 ? CUDA_R_16F : CUDA_R_16BF;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t op_first = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // our b
  const int32_t op_second = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // our a
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                              sizeof(op_first)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                              sizeof(op_second)));
  // Column-major views of the row-major operands, as stored (before op).
  const uint64_t b_rows = uint64_t(s.trans_b ? s.K : s.N), b_cols = uint64_t(s.trans_b ? s.N : s.K);
  const uint64_t a_rows = uint64_t(s.trans_a ? s.M : s.K), a_cols = uint64_t(s.trans_a ? s.K : s.M);
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, b_rows, b_cols, int64_t(b_rows)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, a_rows, a_cols, int64_t(a_rows)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, uint64_t(s.N), uint64_t(s.M), s.N));
  if (batch > 1) {
    set_batch(p.a, int32_t(batch), s.b_batch_stride);
    set_batch(p.b, int32_t(batch), s.a_batch_stride);
    set_batch(p.c, int32_t(batch), s.M * s.N);
  }

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ws, sizeof(ws)));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b},  // cuBLASLt's A is our b
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
  for (const auto& [attr, v] : aligns)
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof(v)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &heur,
                                              &found));
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  // No algorithm (an alignment or leading dimension no kernel takes): the
  // same product through cuBLAS's general entry point, which takes any.
  p.lt = found > 0;
  if (p.lt) p.algo = heur.algo;
  return plans->emplace(key, p).first->second;
}

}  // namespace

void matmul_forward_lowp(float* out, const void* a, const void* b, bool f16,
                         const MatmulShape& s) {
  if (s.M == 0 || s.N == 0 || s.batch == 0) return;
  GL_CHECK(s.M < (1LL << 31) && s.N < (1LL << 31) && s.K < (1LL << 31) && s.batch < (1LL << 31),
           "cuda matmul: dimension over 2^31 (M=", s.M, " N=", s.N, " K=", s.K, ")");
  LtDevice& dev = lt_device();
  const float alpha = 1.0f, beta = s.accumulate ? 1.0f : 0.0f;
  const size_t esz = 2;
  // A broadcast operand (batch stride 0) runs as one product per entry:
  // cuBLASLt's strided batches are not documented to allow a zero stride.
  const bool split = s.batch > 1 && (s.a_batch_stride == 0 || s.b_batch_stride == 0);
  const int64_t calls = split ? s.batch : 1, batch = split ? 1 : s.batch;
  const uint32_t align_a = alignment(a, s.a_batch_stride * int64_t(esz));
  const uint32_t align_b = alignment(b, s.b_batch_stride * int64_t(esz));
  const uint32_t align_c = alignment(out, s.M * s.N * int64_t(sizeof(float)));
  const Plan& p = plan_for(dev.handle, s, batch, f16, align_a, align_b, align_c);
  if (!p.lt) {
    const cudaDataType_t in = f16 ? CUDA_R_16F : CUDA_R_16BF;
    const int m = int(s.N), n = int(s.M), k = int(s.K);
    const int ldb = int(s.trans_b ? s.K : s.N), lda = int(s.trans_a ? s.M : s.K);
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas_handle(), s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
        &alpha, b, in, ldb, s.b_batch_stride, a, in, lda, s.a_batch_stride, &beta, out, CUDA_R_32F, m,
        s.M * s.N, int(s.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  for (int64_t i = 0; i < calls; ++i) {
    const char* ai = static_cast<const char*>(a) + i * s.a_batch_stride * int64_t(esz);
    const char* bi = static_cast<const char*>(b) + i * s.b_batch_stride * int64_t(esz);
    float* ci = out + i * s.M * s.N;
    CUBLAS_CHECK(cublasLtMatmul(dev.handle, p.op, &alpha, bi, p.a, ai, p.b, &beta, ci, p.c, ci,
                                p.c, &p.algo, dev.workspace, kWorkspaceBytes, current_stream()));
  }
}

}  // namespace gl::cuda
