// Tiled causal attention on the tensor cores in TF32 (used for f32 when
// cuda::set_tf32(true), i.e. run.tf32: the same switch as the matrix
// products; with it off, cuda/flash_attention.cu's exact-f32 kernels run).
// Contract and schedule as in cuda/flash_attention.cu: 64 x 64 tiles,
// online softmax, dq and dk/dv in separate kernels (no atomics).
//
// Four warps per block; warp w owns the 16-row strip 16w..16w+15 of the
// block's 64 rows. The products run through WMMA (m16n16k8, TF32 inputs
// rounded with cvt.rna, f32 accumulation) from shared-memory tiles; the
// softmax and the elementwise steps run on a strip's scores in shared
// memory, two lanes per row (32 columns each). The forward's running
// output lives in shared memory (its rows are rescaled when the running
// max grows, which WMMA's opaque register layout cannot express); the
// backward's dq, dk, dv accumulate in fragments. Tile rows are padded to
// HSP + 4 floats (WMMA needs a multiple of 4 and 32-byte aligned strips).
#include <mma.h>

#include <cmath>

#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

using namespace nvcuda;

constexpr int kTile = 64, kWarps = 4, kThreads = 32 * kWarps;
constexpr int kLS = kTile + 4;  // row stride of 64 x 64 score tiles

template <int HSP>
struct TcDims {
  static constexpr int ld = HSP + 4;
  static constexpr int tile = kTile * ld;
  static constexpr int frags = HSP / 16;
};

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragBr = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

template <class F>
__device__ __forceinline__ void to_tf32(F& f) {
#pragma unroll
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
}

__device__ __forceinline__ float* smem_tc() {
  extern __shared__ __align__(128) unsigned char smem_raw_tc[];
  return reinterpret_cast<float*>(smem_raw_tc);
}

// rows [r0, r0 + 64) of src [rows, HS] into dst [64][ld], zero beyond rows/HS.
template <int HSP>
__device__ __forceinline__ void load_tile_tc(float* dst, const float* src, int64_t r0,
                                             int64_t rows, int HS) {
  for (int e = threadIdx.x; e < kTile * HSP; e += kThreads) {
    const int r = e / HSP, d = e % HSP;
    const int64_t g = r0 + r;
    dst[r * TcDims<HSP>::ld + d] = (g < rows && d < HS) ? src[g * HS + d] : 0.f;
  }
}

// C [16 x 64] (row-major, ldc) = A [16 x K] (row-major) * B^T, B [64 x K]
// row-major: one warp.
template <int K>
__device__ __forceinline__ void mm_abt(float* C, int ldc, const float* A, int lda, const float* B,
                                       int ldb) {
  FragC acc[4];
#pragma unroll
  for (int n = 0; n < 4; ++n) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
  for (int k = 0; k < K; k += 8) {
    FragA a;
    wmma::load_matrix_sync(a, A + k, lda);
    to_tf32(a);
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      FragBc b;
      wmma::load_matrix_sync(b, B + n * 16 * ldb + k, ldb);
      to_tf32(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < 4; ++n) wmma::store_matrix_sync(C + n * 16, acc[n], ldc, wmma::mem_row_major);
}

// acc[n] += P [16 x 64] (row-major, kLS) * B [64 x HSP] (row-major, ldb),
// output columns 16n..16n+15: one warp.
template <int HSP>
__device__ __forceinline__ void mm_pb(FragC (&acc)[TcDims<HSP>::frags], const float* P,
                                      const float* B) {
#pragma unroll
  for (int k = 0; k < kTile; k += 8) {
    FragA a;
    wmma::load_matrix_sync(a, P + k, kLS);
    to_tf32(a);
#pragma unroll
    for (int n = 0; n < TcDims<HSP>::frags; ++n) {
      FragBr b;
      wmma::load_matrix_sync(b, B + k * TcDims<HSP>::ld + n * 16, TcDims<HSP>::ld);
      to_tf32(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

// Shared: Q, K, V, O tiles, S [64][kLS].
template <int HSP>
__global__ void __launch_bounds__(kThreads) tc_forward_kernel(
    float* out, float* lse, const float* q, const float* k, const float* v, int64_t Tq,
    int64_t Tk, int HS, float scale) {
  constexpr int ld = TcDims<HSP>::ld, F = TcDims<HSP>::frags;
  float* Qs = smem_tc();
  float* Ks = Qs + TcDims<HSP>::tile;
  float* Vs = Ks + TcDims<HSP>::tile;
  float* Os = Vs + TcDims<HSP>::tile;
  float* Ss = Os + TcDims<HSP>::tile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;  // this lane's row and column half
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t pos = q0 + row + off;  // the last key this row sees
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile_tc<HSP>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  for (int e = threadIdx.x; e < TcDims<HSP>::tile; e += kThreads) Os[e] = 0.f;
  float m = -INFINITY, l = 0.f;
  float* S = Ss + 16 * warp * kLS;
  float* O = Os + 16 * warp * ld;
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile_tc<HSP>(Ks, kb, k0, Tk, HS);
    load_tile_tc<HSP>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    mm_abt<HSP>(S, kLS, Qs + 16 * warp * ld, ld, Ks, ld);
    __syncwarp();
    float* srow = Ss + row * kLS + 32 * half;
    float mx = -INFINITY;
    for (int j = 0; j < 32; ++j) {
      const int64_t key = k0 + 32 * half + j;
      const float s = (key <= pos && key < Tk) ? srow[j] * scale : -INFINITY;
      srow[j] = s;
      mx = fmaxf(mx, s);
    }
    // Every row sees key 0, so m_new is finite from the first tile on.
    const float m_new = fmaxf(m, fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)));
    const float alpha = expf(m - m_new);
    float sum = 0.f;
    for (int j = 0; j < 32; ++j) {
      const float p = expf(srow[j] - m_new);
      srow[j] = p;
      sum += p;
    }
    l = l * alpha + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
    m = m_new;
    float* orow = Os + row * ld + half * (HSP / 2);
    for (int d = 0; d < HSP / 2; ++d) orow[d] *= alpha;
    __syncwarp();
    FragC acc[F];
#pragma unroll
    for (int n = 0; n < F; ++n) wmma::load_matrix_sync(acc[n], O + 16 * n, ld, wmma::mem_row_major);
    mm_pb<HSP>(acc, S, Vs);
#pragma unroll
    for (int n = 0; n < F; ++n) wmma::store_matrix_sync(O + 16 * n, acc[n], ld, wmma::mem_row_major);
    __syncthreads();  // K and V are rewritten by the next tile
  }
  const int64_t t = q0 + row;
  if (t < Tq) {
    const float inv = 1.f / l;
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2); ++d)
      if (d < HS) out[(bh * Tq + t) * HS + d] = Os[row * ld + d] * inv;
    if (half == 0) lse[bh * Tq + t] = m + logf(l);
  }
}

// Shared: Q, dO, K, V tiles, S and dP [64][kLS]. Writes delta for tc_dkv.
template <int HSP>
__global__ void __launch_bounds__(kThreads) tc_dq_kernel(
    float* dq, float* delta, const float* dout, const float* q, const float* k, const float* v,
    const float* out, const float* lse, int64_t Tq, int64_t Tk, int HS, float scale) {
  constexpr int ld = TcDims<HSP>::ld, F = TcDims<HSP>::frags;
  float* Qs = smem_tc();
  float* dOs = Qs + TcDims<HSP>::tile;
  float* Ks = dOs + TcDims<HSP>::tile;
  float* Vs = Ks + TcDims<HSP>::tile;
  float* Ss = Vs + TcDims<HSP>::tile;
  float* dPs = Ss + kTile * kLS;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t t = q0 + row, pos = t + off;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile_tc<HSP>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  load_tile_tc<HSP>(dOs, dout + bh * Tq * HS, q0, Tq, HS);
  __syncthreads();
  float part = 0.f;
  if (t < Tq)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      part += dOs[row * ld + d] * out[(bh * Tq + t) * HS + d];
  const float D = part + __shfl_xor_sync(0xffffffffu, part, 1);
  const float L = t < Tq ? lse[bh * Tq + t] : 0.f;
  if (t < Tq && half == 0) delta[bh * Tq + t] = D;
  FragC acc[F];
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::fill_fragment(acc[n], 0.f);
  float* S = Ss + 16 * warp * kLS;
  float* dP = dPs + 16 * warp * kLS;
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile_tc<HSP>(Ks, kb, k0, Tk, HS);
    load_tile_tc<HSP>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    mm_abt<HSP>(S, kLS, Qs + 16 * warp * ld, ld, Ks, ld);
    mm_abt<HSP>(dP, kLS, dOs + 16 * warp * ld, ld, Vs, ld);
    __syncwarp();
    float* srow = Ss + row * kLS + 32 * half;
    const float* dprow = dPs + row * kLS + 32 * half;
    for (int j = 0; j < 32; ++j) {
      const int64_t key = k0 + 32 * half + j;
      const bool seen = key <= pos && key < Tk && t < Tq;
      const float p = seen ? expf(srow[j] * scale - L) : 0.f;
      srow[j] = p * (dprow[j] - D);  // dS
    }
    __syncwarp();
    mm_pb<HSP>(acc, S, Ks);
    __syncthreads();
  }
  // The strip's Q rows are free now: stage dq there, then write it out.
  float* stage = Qs + 16 * warp * ld;
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::store_matrix_sync(stage + 16 * n, acc[n], ld, wmma::mem_row_major);
  __syncwarp();
  if (t < Tq)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      dq[(bh * Tq + t) * HS + d] = scale * Qs[row * ld + d];
}

// Shared: K, V tiles (this block's keys), Q, dO tiles, P^T and dS^T
// [64][kLS] indexed [key][query], lse and delta of the query tile.
template <int HSP>
__global__ void __launch_bounds__(kThreads) tc_dkv_kernel(
    float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
    const float* lse, const float* delta, int64_t Tq, int64_t Tk, int HS, float scale) {
  constexpr int ld = TcDims<HSP>::ld, F = TcDims<HSP>::frags;
  float* Ks = smem_tc();
  float* Vs = Ks + TcDims<HSP>::tile;
  float* Qs = Vs + TcDims<HSP>::tile;
  float* dOs = Qs + TcDims<HSP>::tile;
  float* Ss = dOs + TcDims<HSP>::tile;
  float* dPs = Ss + kTile * kLS;
  float* Ls = dPs + kTile * kLS;
  float* Ds = Ls + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;
  const int64_t k0 = int64_t(blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t key = k0 + row;
  const float* qb = q + bh * Tq * HS;
  const float* dob = dout + bh * Tq * HS;

  load_tile_tc<HSP>(Ks, k + bh * Tk * HS, k0, Tk, HS);
  load_tile_tc<HSP>(Vs, v + bh * Tk * HS, k0, Tk, HS);
  FragC dka[F], dva[F];
#pragma unroll
  for (int n = 0; n < F; ++n) {
    wmma::fill_fragment(dka[n], 0.f);
    wmma::fill_fragment(dva[n], 0.f);
  }
  float* S = Ss + 16 * warp * kLS;
  float* dP = dPs + 16 * warp * kLS;
  const int64_t first = k0 - off > 0 ? (k0 - off) / kTile * kTile : 0;
  for (int64_t q0 = first; q0 < Tq; q0 += kTile) {
    load_tile_tc<HSP>(Qs, qb, q0, Tq, HS);
    load_tile_tc<HSP>(dOs, dob, q0, Tq, HS);
    if (threadIdx.x < kTile) {
      const int64_t tt = q0 + threadIdx.x;
      Ls[threadIdx.x] = tt < Tq ? lse[bh * Tq + tt] : 0.f;
      Ds[threadIdx.x] = tt < Tq ? delta[bh * Tq + tt] : 0.f;
    }
    __syncthreads();
    mm_abt<HSP>(S, kLS, Ks + 16 * warp * ld, ld, Qs, ld);   // S^T: rows keys, columns queries
    mm_abt<HSP>(dP, kLS, Vs + 16 * warp * ld, ld, dOs, ld);  // dP^T
    __syncwarp();
    float* srow = Ss + row * kLS + 32 * half;
    float* dprow = dPs + row * kLS + 32 * half;
    for (int j = 0; j < 32; ++j) {
      const int col = 32 * half + j;
      const int64_t tq = q0 + col;
      const bool seen = key <= tq + off && key < Tk && tq < Tq;
      const float p = seen ? expf(srow[j] * scale - Ls[col]) : 0.f;
      srow[j] = p;
      dprow[j] = p * (dprow[j] - Ds[col]);
    }
    __syncwarp();
    mm_pb<HSP>(dva, S, dOs);
    mm_pb<HSP>(dka, dP, Qs);
    __syncthreads();
  }
  // This strip's K and V rows are free now: stage dk and dv there.
  float* sk = Ks + 16 * warp * ld;
  float* sv = Vs + 16 * warp * ld;
#pragma unroll
  for (int n = 0; n < F; ++n) {
    wmma::store_matrix_sync(sk + 16 * n, dka[n], ld, wmma::mem_row_major);
    wmma::store_matrix_sync(sv + 16 * n, dva[n], ld, wmma::mem_row_major);
  }
  __syncwarp();
  if (key < Tk)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d) {
      dk[(bh * Tk + key) * HS + d] = scale * Ks[row * ld + d];
      dv[(bh * Tk + key) * HS + d] = Vs[row * ld + d];
    }
}

template <class Kernel, class... Args>
void launch_tc(Kernel kernel, const char* name, int64_t tiles, int64_t BH, size_t floats,
               Args... args) {
  const size_t bytes = floats * sizeof(float);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  GL_CHECK(BH <= 65535, "cuda attention: batch x heads = ", BH, " exceeds the grid limit 65535");
  kernel<<<dim3(unsigned(tiles), unsigned(BH)), kThreads, bytes, current_stream()>>>(args...);
  CUDA_CHECK_LAUNCH(name);
}

template <int HSP>
void tc_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  launch_tc(tc_forward_kernel<HSP>, "tc_forward_kernel", (Tq + kTile - 1) / kTile, BH,
            size_t(4 * TcDims<HSP>::tile + kTile * kLS), out, lse, q, k, v, Tq, Tk, HS, scale);
}

template <int HSP>
void tc_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                 const float* q, const float* k, const float* v, const float* out,
                 const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  if (Tq > 0)
    launch_tc(tc_dq_kernel<HSP>, "tc_dq_kernel", (Tq + kTile - 1) / kTile, BH,
              size_t(4 * TcDims<HSP>::tile + 2 * kTile * kLS), dq, delta, dout, q, k, v, out,
              lse, Tq, Tk, HS, scale);
  launch_tc(tc_dkv_kernel<HSP>, "tc_dkv_kernel", (Tk + kTile - 1) / kTile, BH,
            size_t(4 * TcDims<HSP>::tile + 2 * kTile * kLS + 2 * kTile), dk, dv, dout, q, k, v,
            lse, delta, Tq, Tk, HS, scale);
}

}  // namespace

void flash_attention_tc_forward(float* out, float* lse, const float* q, const float* k,
                                const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                double scale) {
  if (BH * Tq == 0) return;
  if (HS <= 32) return tc_forward<32>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  if (HS <= 64) return tc_forward<64>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  tc_forward<128>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
}

void flash_attention_tc_backward(float* dq, float* dk, float* dv, float* delta,
                                 const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse, int64_t BH,
                                 int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  if (BH * Tk == 0) return;
  if (HS <= 32)
    return tc_backward<32>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                           float(scale));
  if (HS <= 64)
    return tc_backward<64>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                           float(scale));
  tc_backward<128>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS), float(scale));
}

}  // namespace gl::cuda
