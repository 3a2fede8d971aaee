// Tiled causal attention on the tensor cores: in TF32 (used for f32 when
// cuda::set_tf32(true), i.e. run.tf32: the same switch as the matrix
// products; with it off, cuda/flash_attention.cu's exact-f32 kernels run),
// or with bf16 / f16 operands (run.precision bf16 / f16, as the matrix
// products: every product's operands rounded to nearest even, f32
// accumulation; the softmax, the running statistics and the outputs stay
// f32). Contract and schedule as in cuda/flash_attention.cu: 64 x 64
// tiles, online softmax, dq and dk/dv in separate kernels (no atomics).
//
// Four warps per block; warp w owns the 16-row strip 16w..16w+15 of the
// block's 64 rows. The products run through WMMA (TF32 m16n16k8 from f32
// tiles rounded with cvt.rna, or bf16/f16 m16n16k16 from tiles rounded
// when they are loaded; f32 accumulation) from shared-memory tiles; the
// softmax and the elementwise steps run on a strip's scores in shared
// memory, two lanes per row (32 columns each), and with 16-bit operands
// they also write the rounded probabilities (dS in the backward) into a
// 16-bit copy for the next product. The forward's running output lives in
// shared memory (its rows are rescaled when the running max grows, which
// WMMA's opaque register layout cannot express); the backward's dq, dk, dv
// accumulate in fragments. Operand tile rows are padded to HSP + 4 floats
// or HSP + 8 16-bit values (WMMA needs a multiple of 16 bytes and 32-byte
// aligned strips).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cmath>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

using namespace nvcuda;

constexpr int kTile = 64, kWarps = 4, kThreads = 32 * kWarps;
constexpr int kLS = kTile + 4;  // row stride of 64 x 64 f32 score tiles

// The operand precision: the element type of the operand tiles in shared
// memory, WMMA's fragments over it, and the rounding into it.
struct Tf32Ops {
  using Elem = float;
  static constexpr int kK = 8, kPad = 4;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
  using FragBr = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
  static __device__ __forceinline__ Elem round(float x) { return x; }  // cvt.rna at fragment load
  static __device__ __forceinline__ float widen(Elem x) { return x; }
  template <class F>
  static __device__ __forceinline__ void convert(F& f) {
#pragma unroll
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
  }
};

template <class E>
struct HalfOps {  // bf16 or f16 operands
  using Elem = E;
  static constexpr int kK = 16, kPad = 8;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major>;
  using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major>;
  using FragBr = wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major>;
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  static __device__ __forceinline__ Elem round(float x) {
    if constexpr (std::is_same_v<E, __nv_bfloat16>) return __float2bfloat16_rn(x);
    else return __float2half_rn(x);
  }
  static __device__ __forceinline__ float widen(Elem x) {
    if constexpr (std::is_same_v<E, __nv_bfloat16>) return __bfloat162float(x);
    else return __half2float(x);
  }
  template <class F>
  static __device__ __forceinline__ void convert(F&) {}
};
using Bf16Ops = HalfOps<__nv_bfloat16>;
using F16Ops = HalfOps<__half>;

template <class Ops>
constexpr bool kLowp = !std::is_same_v<typename Ops::Elem, float>;

template <int HSP, class Ops>
struct TcDims {
  static constexpr int ld = HSP + Ops::kPad;  // operand tile row stride (elements)
  static constexpr int ldo = HSP + 4;         // f32 output / staging tile row stride
  static constexpr int lp = kTile + Ops::kPad;  // 16-bit P / dS copy row stride
  static constexpr int frags = HSP / 16;
  // Bytes of an operand tile, an f32 score tile and a 16-bit P copy; each a
  // multiple of 128, so every region below starts 32-byte aligned.
  static constexpr size_t tile_bytes = size_t(kTile) * ld * sizeof(typename Ops::Elem);
  static constexpr size_t score_bytes = size_t(kTile) * kLS * sizeof(float);
  static constexpr size_t p_bytes = kLowp<Ops> ? size_t(kTile) * lp * sizeof(typename Ops::Elem) : 0;
  static constexpr size_t out_bytes = size_t(kTile) * ldo * sizeof(float);
};

__device__ __forceinline__ unsigned char* smem_tc() {
  extern __shared__ __align__(128) unsigned char smem_raw_tc[];
  return smem_raw_tc;
}

// rows [r0, r0 + 64) of src [rows, HS] into dst [64][ld], rounded to the
// operand type, zero beyond rows/HS.
template <int HSP, class Ops>
__device__ __forceinline__ void load_tile_tc(typename Ops::Elem* dst, const float* src, int64_t r0,
                                             int64_t rows, int HS) {
  for (int e = threadIdx.x; e < kTile * HSP; e += kThreads) {
    const int r = e / HSP, d = e % HSP;
    const int64_t g = r0 + r;
    dst[r * TcDims<HSP, Ops>::ld + d] = Ops::round((g < rows && d < HS) ? src[g * HS + d] : 0.f);
  }
}

// C [16 x 64] (f32, row-major, ldc) = A [16 x K] (row-major) * B^T, B [64 x K]
// row-major: one warp.
template <int K, class Ops>
__device__ __forceinline__ void mm_abt(float* C, int ldc, const typename Ops::Elem* A, int lda,
                                       const typename Ops::Elem* B, int ldb) {
  typename Ops::FragC acc[4];
#pragma unroll
  for (int n = 0; n < 4; ++n) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
  for (int k = 0; k < K; k += Ops::kK) {
    typename Ops::FragA a;
    wmma::load_matrix_sync(a, A + k, lda);
    Ops::convert(a);
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      typename Ops::FragBc b;
      wmma::load_matrix_sync(b, B + n * 16 * ldb + k, ldb);
      Ops::convert(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < 4; ++n) wmma::store_matrix_sync(C + n * 16, acc[n], ldc, wmma::mem_row_major);
}

// acc[n] += P [16 x 64] (row-major, ldp) * B [64 x HSP] (row-major, the
// operand tile stride), output columns 16n..16n+15: one warp.
template <int HSP, class Ops>
__device__ __forceinline__ void mm_pb(typename Ops::FragC (&acc)[HSP / 16],
                                      const typename Ops::Elem* P, int ldp,
                                      const typename Ops::Elem* B) {
  constexpr int ld = TcDims<HSP, Ops>::ld;
#pragma unroll
  for (int k = 0; k < kTile; k += Ops::kK) {
    typename Ops::FragA a;
    wmma::load_matrix_sync(a, P + k, ldp);
    Ops::convert(a);
#pragma unroll
    for (int n = 0; n < HSP / 16; ++n) {
      typename Ops::FragBr b;
      wmma::load_matrix_sync(b, B + k * ld + n * 16, ld);
      Ops::convert(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

// The operand of the product after a softmax step: the f32 scores
// themselves in TF32 (rounded at fragment load), else their 16-bit copy.
template <class Ops>
struct Operand {
  using Elem = typename Ops::Elem;
  Elem* base;  // [64][ld] strip-major
  int ld;
};
template <class Ops>
__device__ __forceinline__ Operand<Ops> score_operand(float* S, unsigned char* copy, int lp) {
  if constexpr (kLowp<Ops>) return {reinterpret_cast<typename Ops::Elem*>(copy), lp};
  else return {S, kLS};
}

// Shared: Q, K, V operand tiles, O [64][ldo] f32, S [64][kLS] f32, and the
// 16-bit copy of P.
template <int HSP, class Ops>
__global__ void __launch_bounds__(kThreads) tc_forward_kernel(
    float* out, float* lse, const float* q, const float* k, const float* v, int64_t Tq,
    int64_t Tk, int HS, float scale) {
  using D = TcDims<HSP, Ops>;
  using Elem = typename Ops::Elem;
  constexpr int ld = D::ld, ldo = D::ldo, F = D::frags;
  unsigned char* sm = smem_tc();
  Elem* Qs = reinterpret_cast<Elem*>(sm);
  Elem* Ks = reinterpret_cast<Elem*>(sm + D::tile_bytes);
  Elem* Vs = reinterpret_cast<Elem*>(sm + 2 * D::tile_bytes);
  float* Os = reinterpret_cast<float*>(sm + 3 * D::tile_bytes);
  float* Ss = reinterpret_cast<float*>(sm + 3 * D::tile_bytes + D::out_bytes);
  const Operand<Ops> P = score_operand<Ops>(Ss, sm + 3 * D::tile_bytes + D::out_bytes + D::score_bytes, D::lp);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;  // this lane's row and column half
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t pos = q0 + row + off;  // the last key this row sees
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile_tc<HSP, Ops>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  for (int e = threadIdx.x; e < kTile * ldo; e += kThreads) Os[e] = 0.f;
  float m = -INFINITY, l = 0.f;
  float* S = Ss + 16 * warp * kLS;
  float* O = Os + 16 * warp * ldo;
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile_tc<HSP, Ops>(Ks, kb, k0, Tk, HS);
    load_tile_tc<HSP, Ops>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    mm_abt<HSP, Ops>(S, kLS, Qs + 16 * warp * ld, ld, Ks, ld);
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
    Elem* prow = P.base + row * P.ld + 32 * half;
    for (int j = 0; j < 32; ++j) {
      const float p = expf(srow[j] - m_new);
      srow[j] = p;
      if constexpr (kLowp<Ops>) prow[j] = Ops::round(p);
      sum += p;  // l sums the f32 probabilities (as FlashAttention-2 does)
    }
    l = l * alpha + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
    m = m_new;
    float* orow = Os + row * ldo + half * (HSP / 2);
    for (int d = 0; d < HSP / 2; ++d) orow[d] *= alpha;
    __syncwarp();
    typename Ops::FragC acc[F];
#pragma unroll
    for (int n = 0; n < F; ++n) wmma::load_matrix_sync(acc[n], O + 16 * n, ldo, wmma::mem_row_major);
    mm_pb<HSP, Ops>(acc, P.base + 16 * warp * P.ld, P.ld, Vs);
#pragma unroll
    for (int n = 0; n < F; ++n) wmma::store_matrix_sync(O + 16 * n, acc[n], ldo, wmma::mem_row_major);
    __syncthreads();  // K and V are rewritten by the next tile
  }
  const int64_t t = q0 + row;
  if (t < Tq) {
    const float inv = 1.f / l;
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2); ++d)
      if (d < HS) out[(bh * Tq + t) * HS + d] = Os[row * ldo + d] * inv;
    if (half == 0) lse[bh * Tq + t] = m + logf(l);
  }
}

// Shared: Q, dO, K, V operand tiles, S and dP [64][kLS] f32, the 16-bit
// copy of dS. Writes delta for tc_dkv (from the operand-rounded dO).
template <int HSP, class Ops>
__global__ void __launch_bounds__(kThreads) tc_dq_kernel(
    float* dq, float* delta, const float* dout, const float* q, const float* k, const float* v,
    const float* out, const float* lse, int64_t Tq, int64_t Tk, int HS, float scale) {
  using D = TcDims<HSP, Ops>;
  using Elem = typename Ops::Elem;
  constexpr int ld = D::ld, ldo = D::ldo, F = D::frags;
  unsigned char* sm = smem_tc();
  Elem* Qs = reinterpret_cast<Elem*>(sm);
  Elem* dOs = reinterpret_cast<Elem*>(sm + D::tile_bytes);
  Elem* Ks = reinterpret_cast<Elem*>(sm + 2 * D::tile_bytes);
  Elem* Vs = reinterpret_cast<Elem*>(sm + 3 * D::tile_bytes);
  float* Ss = reinterpret_cast<float*>(sm + 4 * D::tile_bytes);
  float* dPs = reinterpret_cast<float*>(sm + 4 * D::tile_bytes + D::score_bytes);
  const Operand<Ops> dS = score_operand<Ops>(Ss, sm + 4 * D::tile_bytes + 2 * D::score_bytes, D::lp);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t t = q0 + row, pos = t + off;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile_tc<HSP, Ops>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  load_tile_tc<HSP, Ops>(dOs, dout + bh * Tq * HS, q0, Tq, HS);
  __syncthreads();
  float part = 0.f;
  if (t < Tq)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      part += Ops::widen(dOs[row * ld + d]) * out[(bh * Tq + t) * HS + d];
  const float Dt = part + __shfl_xor_sync(0xffffffffu, part, 1);
  const float L = t < Tq ? lse[bh * Tq + t] : 0.f;
  if (t < Tq && half == 0) delta[bh * Tq + t] = Dt;
  typename Ops::FragC acc[F];
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::fill_fragment(acc[n], 0.f);
  float* S = Ss + 16 * warp * kLS;
  float* dP = dPs + 16 * warp * kLS;
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile_tc<HSP, Ops>(Ks, kb, k0, Tk, HS);
    load_tile_tc<HSP, Ops>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    mm_abt<HSP, Ops>(S, kLS, Qs + 16 * warp * ld, ld, Ks, ld);
    mm_abt<HSP, Ops>(dP, kLS, dOs + 16 * warp * ld, ld, Vs, ld);
    __syncwarp();
    float* srow = Ss + row * kLS + 32 * half;
    const float* dprow = dPs + row * kLS + 32 * half;
    Elem* dsrow = dS.base + row * dS.ld + 32 * half;
    for (int j = 0; j < 32; ++j) {
      const int64_t key = k0 + 32 * half + j;
      const bool seen = key <= pos && key < Tk && t < Tq;
      const float p = seen ? expf(srow[j] * scale - L) : 0.f;
      const float ds = p * (dprow[j] - Dt);
      srow[j] = ds;
      if constexpr (kLowp<Ops>) dsrow[j] = Ops::round(ds);
    }
    __syncwarp();
    mm_pb<HSP, Ops>(acc, dS.base + 16 * warp * dS.ld, dS.ld, Ks);
    __syncthreads();
  }
  // Stage dq through f32 shared memory (the Q tile in TF32; the score
  // tiles, free after the loop's last barrier, with 16-bit operands).
  float* stage = kLowp<Ops> ? Ss : reinterpret_cast<float*>(Qs);
  float* strip = stage + 16 * warp * ldo;
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::store_matrix_sync(strip + 16 * n, acc[n], ldo, wmma::mem_row_major);
  __syncwarp();
  if (t < Tq)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      dq[(bh * Tq + t) * HS + d] = scale * stage[row * ldo + d];
}

// Shared: K, V operand tiles (this block's keys), Q, dO operand tiles, P^T
// and dS^T [64][kLS] f32 indexed [key][query], their 16-bit copies, lse
// and delta of the query tile.
template <int HSP, class Ops>
__global__ void __launch_bounds__(kThreads) tc_dkv_kernel(
    float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
    const float* lse, const float* delta, int64_t Tq, int64_t Tk, int HS, float scale) {
  using D = TcDims<HSP, Ops>;
  using Elem = typename Ops::Elem;
  constexpr int ld = D::ld, ldo = D::ldo, F = D::frags;
  unsigned char* sm = smem_tc();
  Elem* Ks = reinterpret_cast<Elem*>(sm);
  Elem* Vs = reinterpret_cast<Elem*>(sm + D::tile_bytes);
  Elem* Qs = reinterpret_cast<Elem*>(sm + 2 * D::tile_bytes);
  Elem* dOs = reinterpret_cast<Elem*>(sm + 3 * D::tile_bytes);
  float* Ss = reinterpret_cast<float*>(sm + 4 * D::tile_bytes);
  float* dPs = reinterpret_cast<float*>(sm + 4 * D::tile_bytes + D::score_bytes);
  unsigned char* copies = sm + 4 * D::tile_bytes + 2 * D::score_bytes;
  const Operand<Ops> Pt = score_operand<Ops>(Ss, copies, D::lp);
  const Operand<Ops> dSt = score_operand<Ops>(dPs, copies + D::p_bytes, D::lp);
  float* Ls = reinterpret_cast<float*>(copies + 2 * D::p_bytes);
  float* Ds = Ls + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = 16 * warp + lane / 2, half = lane % 2;
  const int64_t k0 = int64_t(blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const int64_t key = k0 + row;
  const float* qb = q + bh * Tq * HS;
  const float* dob = dout + bh * Tq * HS;

  load_tile_tc<HSP, Ops>(Ks, k + bh * Tk * HS, k0, Tk, HS);
  load_tile_tc<HSP, Ops>(Vs, v + bh * Tk * HS, k0, Tk, HS);
  typename Ops::FragC dka[F], dva[F];
#pragma unroll
  for (int n = 0; n < F; ++n) {
    wmma::fill_fragment(dka[n], 0.f);
    wmma::fill_fragment(dva[n], 0.f);
  }
  float* S = Ss + 16 * warp * kLS;
  float* dP = dPs + 16 * warp * kLS;
  const int64_t first = k0 - off > 0 ? (k0 - off) / kTile * kTile : 0;
  for (int64_t q0 = first; q0 < Tq; q0 += kTile) {
    load_tile_tc<HSP, Ops>(Qs, qb, q0, Tq, HS);
    load_tile_tc<HSP, Ops>(dOs, dob, q0, Tq, HS);
    if (threadIdx.x < kTile) {
      const int64_t tt = q0 + threadIdx.x;
      Ls[threadIdx.x] = tt < Tq ? lse[bh * Tq + tt] : 0.f;
      Ds[threadIdx.x] = tt < Tq ? delta[bh * Tq + tt] : 0.f;
    }
    __syncthreads();
    mm_abt<HSP, Ops>(S, kLS, Ks + 16 * warp * ld, ld, Qs, ld);   // S^T: rows keys, columns queries
    mm_abt<HSP, Ops>(dP, kLS, Vs + 16 * warp * ld, ld, dOs, ld);  // dP^T
    __syncwarp();
    float* srow = Ss + row * kLS + 32 * half;
    float* dprow = dPs + row * kLS + 32 * half;
    Elem* prow = Pt.base + row * Pt.ld + 32 * half;
    Elem* dsrow = dSt.base + row * dSt.ld + 32 * half;
    for (int j = 0; j < 32; ++j) {
      const int col = 32 * half + j;
      const int64_t tq = q0 + col;
      const bool seen = key <= tq + off && key < Tk && tq < Tq;
      const float p = seen ? expf(srow[j] * scale - Ls[col]) : 0.f;
      const float ds = p * (dprow[j] - Ds[col]);
      srow[j] = p;
      dprow[j] = ds;
      if constexpr (kLowp<Ops>) {
        prow[j] = Ops::round(p);
        dsrow[j] = Ops::round(ds);
      }
    }
    __syncwarp();
    mm_pb<HSP, Ops>(dva, Pt.base + 16 * warp * Pt.ld, Pt.ld, dOs);
    mm_pb<HSP, Ops>(dka, dSt.base + 16 * warp * dSt.ld, dSt.ld, Qs);
    __syncthreads();
  }
  // Stage dk, then dv, through this warp's strip of f32 shared memory (the
  // K tile in TF32; the score tiles with 16-bit operands). The barrier
  // matters when no query tile ran (Tq == 0): the K tile's loads may still
  // be landing in another warp's strip.
  __syncthreads();
  float* stage = kLowp<Ops> ? Ss : reinterpret_cast<float*>(Ks);
  float* strip = stage + 16 * warp * ldo;
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::store_matrix_sync(strip + 16 * n, dka[n], ldo, wmma::mem_row_major);
  __syncwarp();
  if (key < Tk)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      dk[(bh * Tk + key) * HS + d] = scale * stage[row * ldo + d];
  __syncwarp();
#pragma unroll
  for (int n = 0; n < F; ++n) wmma::store_matrix_sync(strip + 16 * n, dva[n], ldo, wmma::mem_row_major);
  __syncwarp();
  if (key < Tk)
    for (int d = half * (HSP / 2); d < (half + 1) * (HSP / 2) && d < HS; ++d)
      dv[(bh * Tk + key) * HS + d] = stage[row * ldo + d];
}

template <class Kernel, class... Args>
void launch_tc(Kernel kernel, const char* name, int64_t tiles, int64_t BH, size_t bytes,
               Args... args) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  GL_CHECK(BH <= 65535, "cuda attention: batch x heads = ", BH, " exceeds the grid limit 65535");
  kernel<<<dim3(unsigned(tiles), unsigned(BH)), kThreads, bytes, current_stream()>>>(args...);
  CUDA_CHECK_LAUNCH(name);
}

template <int HSP, class Ops>
void tc_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  using D = TcDims<HSP, Ops>;
  launch_tc(tc_forward_kernel<HSP, Ops>, "tc_forward_kernel", (Tq + kTile - 1) / kTile, BH,
            3 * D::tile_bytes + D::out_bytes + D::score_bytes + D::p_bytes, out, lse, q, k, v, Tq,
            Tk, HS, scale);
}

template <int HSP, class Ops>
void tc_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                 const float* q, const float* k, const float* v, const float* out,
                 const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  using D = TcDims<HSP, Ops>;
  // The staging of dq/dk/dv in the score tiles (16-bit operands) needs them
  // to hold 64 rows of HSP + 4 floats.
  static_assert(!kLowp<Ops> || D::out_bytes <= 2 * D::score_bytes, "staging does not fit");
  if (Tq > 0)
    launch_tc(tc_dq_kernel<HSP, Ops>, "tc_dq_kernel", (Tq + kTile - 1) / kTile, BH,
              4 * D::tile_bytes + 2 * D::score_bytes + D::p_bytes, dq, delta, dout, q, k, v, out,
              lse, Tq, Tk, HS, scale);
  launch_tc(tc_dkv_kernel<HSP, Ops>, "tc_dkv_kernel", (Tk + kTile - 1) / kTile, BH,
            4 * D::tile_bytes + 2 * D::score_bytes + 2 * D::p_bytes + 2 * kTile * sizeof(float), dk,
            dv, dout, q, k, v, lse, delta, Tq, Tk, HS, scale);
}

template <class Ops>
void forward_by_head_size(float* out, float* lse, const float* q, const float* k, const float* v,
                          int64_t BH, int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  if (BH * Tq == 0) return;
  if (HS <= 32) return tc_forward<32, Ops>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  if (HS <= 64) return tc_forward<64, Ops>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  tc_forward<128, Ops>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
}

template <class Ops>
void backward_by_head_size(float* dq, float* dk, float* dv, float* delta, const float* dout,
                           const float* q, const float* k, const float* v, const float* out,
                           const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                           double scale) {
  if (BH * Tk == 0) return;
  if (HS <= 32)
    return tc_backward<32, Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                                float(scale));
  if (HS <= 64)
    return tc_backward<64, Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                                float(scale));
  tc_backward<128, Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                        float(scale));
}

}  // namespace

void flash_attention_tc_forward(float* out, float* lse, const float* q, const float* k,
                                const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                double scale) {
  forward_by_head_size<Tf32Ops>(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
}

void flash_attention_tc_backward(float* dq, float* dk, float* dv, float* delta,
                                 const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse, int64_t BH,
                                 int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  backward_by_head_size<Tf32Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, HS, scale);
}

void flash_attention_lowp_forward(float* out, float* lse, const float* q, const float* k,
                                  const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                  double scale, bool f16) {
  if (attention_mma_enabled()) return flash_attention_mma_forward(out, lse, q, k, v, BH, Tq, Tk, HS, scale, f16);
  if (f16) return forward_by_head_size<F16Ops>(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
  forward_by_head_size<Bf16Ops>(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
}

void flash_attention_lowp_backward(float* dq, float* dk, float* dv, float* delta,
                                   const float* dout, const float* q, const float* k,
                                   const float* v, const float* out, const float* lse, int64_t BH,
                                   int64_t Tq, int64_t Tk, int64_t HS, double scale, bool f16) {
  if (attention_mma_enabled())
    return flash_attention_mma_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, HS, scale, f16);
  if (f16)
    return backward_by_head_size<F16Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, HS,
                                         scale);
  backward_by_head_size<Bf16Ops>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, HS, scale);
}

}  // namespace gl::cuda
