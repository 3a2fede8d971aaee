// FlashAttention-2's forward with bf16 / f16 operands on the warp-level
// tensor-core instruction mma.sync.m16n8k16 (f32 accumulation), the scores
// kept in registers: what run.precision bf16 / f16 runs for the forward of
// attention (the backward stays on cuda/flash_attention_tc.cu's WMMA
// kernels). Same contract and numerics as those kernels' 16-bit forward:
// q, k, v rounded to nearest even as their tiles load, the probabilities P
// rounded before O += P V, the softmax, its running statistics and the
// output in f32 (Dao, FlashAttention-2, arXiv 2307.08691, Algorithm 1).
//
// Four warps per block, 64 query rows, warp w the 16-row strip 16w..16w+15.
// A warp holds its Q fragments for the whole key loop; per 64-key tile it
// computes S = Q K^T as eight 16 x 8 accumulator tiles, the scaled and
// masked row maxima over the four lanes that share a row (shuffles), the
// probabilities in place, and O += P V with P's A fragments made from the
// accumulators directly (cuda/mma_layout.h: tile_of_a, c_of_a). No score
// ever reaches shared memory. Fragment indices all come from
// cuda/mma_layout.h, whose layout the CPU tests check against the PTX ISA.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/common.cuh"
#include "cuda/mma_layout.h"

namespace gl::cuda {

namespace {

constexpr int kTile = 64, kWarps = 4, kThreads = 32 * kWarps;

template <class E>
constexpr bool kBf16 = std::is_same_v<E, __nv_bfloat16>;

template <class E>
__device__ __forceinline__ E round_to(float x) {
  if constexpr (kBf16<E>) return __float2bfloat16_rn(x);
  else return __float2half_rn(x);
}

// Two values in one register, lo in the low half (the fragment's lower
// element index).
template <class E>
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  uint32_t r;
  if constexpr (kBf16<E>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &v, 4);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&r, &v, 4);
  }
  return r;
}

template <class E>
__device__ __forceinline__ uint32_t pack_bits(E lo, E hi) {
  uint16_t a, b;
  memcpy(&a, &lo, 2);
  memcpy(&b, &hi, 2);
  return uint32_t(a) | (uint32_t(b) << 16);
}

// Two adjacent 16-bit values of a row (the column index is even).
template <class E>
__device__ __forceinline__ uint32_t load_pair(const E* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <class E>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kBf16<E>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Rows [r0, r0 + 64) of src [rows, HS] into dst [64][ld], rounded, zero
// beyond rows / HS.
template <int HSP, class E>
__device__ __forceinline__ void load_tile(E* dst, const float* src, int64_t r0, int64_t rows, int HS) {
  constexpr int ld = HSP + 8;
  for (int e = threadIdx.x; e < kTile * HSP; e += kThreads) {
    const int r = e / HSP, d = e % HSP;
    const int64_t g = r0 + r;
    dst[r * ld + d] = round_to<E>((g < rows && d < HS) ? src[g * HS + d] : 0.f);
  }
}

// Tiles are [64][HSP + 8]: a row is HSP / 2 + 4 words, so the eight rows a
// fragment load touches start four banks apart and its 32 lanes hit 32
// different banks.
template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) mma_forward_kernel(float* out, float* lse, const float* q,
                                                               const float* k, const float* v, int64_t Tq,
                                                               int64_t Tk, int HS, float scale) {
  constexpr int ld = HSP + 8, KS = HSP / 16, ND = HSP / 8;
  extern __shared__ __align__(16) unsigned char smem_mma[];
  E* Qs = reinterpret_cast<E*>(smem_mma);
  E* Ks = Qs + kTile * ld;
  E* Vs = Ks + kTile * ld;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile, bh = blockIdx.y, off = Tk - Tq;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile<HSP, E>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  __syncthreads();
  uint32_t qf[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const mma::RowCol e = mma::a_elem(lane, 2 * r);
      qf[kk][r] = load_pair(Qs + (16 * warp + e.row) * ld + 16 * kk + e.col);
    }
  // This lane's two rows (h = 0, 1: accumulator elements 2h, 2h + 1): the
  // last key each sees, its running max and its partial row sum (this
  // lane's columns only; the four lanes of a row add theirs at the end).
  int64_t last_key[2];
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
  for (int h = 0; h < 2; ++h) last_key[h] = q0 + 16 * warp + mma::c_elem(lane, 2 * h).row + off;
  float o[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) o[nd][i] = 0.f;

  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile<HSP, E>(Ks, kb, k0, Tk, HS);
    load_tile<HSP, E>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    // S = Q K^T: B[d][key] = K[key][d], two adjacent d of one key row per register.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[j][i] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        uint32_t b[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const mma::RowCol e = mma::b_elem(lane, 2 * r);  // row: d, col: key
          b[r] = load_pair(Ks + (8 * j + e.col) * ld + 16 * kk + e.row);
        }
        mma16816<E>(s[j], qf[kk], b);
      }
    }
    // Scale, mask, and the new row maxima (over the four lanes of each row).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t key = k0 + 8 * j + mma::c_elem(lane, i).col;
        const int h = i >> 1;
        const float x = (key <= last_key[h] && key < Tk) ? s[j][i] * scale : -INFINITY;
        s[j][i] = x;
        mx[h] = fmaxf(mx[h], x);
      }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      // Every row sees key 0, so the max is finite from the first tile on.
      const float m_new = fmaxf(m[h], mx[h]);
      alpha[h] = expf(m[h] - m_new);
      m[h] = m_new;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int nd = 0; nd < ND; ++nd)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[nd][i] *= alpha[i >> 1];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float p = expf(s[j][i] - m[i >> 1]);
        s[j][i] = p;
        l[i >> 1] += p;  // the f32 probabilities, as the WMMA kernel sums them
      }
    // O += P V over the tile's four 16-key steps; B[key][d] = V[key][d], the
    // two keys of a register in different rows.
#pragma unroll
    for (int ms = 0; ms < 4; ++ms) {
      uint32_t pa[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int tile = 2 * ms + mma::tile_of_a(2 * r), c = mma::c_of_a(2 * r);
        pa[r] = pack<E>(s[tile][c], s[tile][c + 1]);
      }
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t b[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const mma::RowCol lo = mma::b_elem(lane, 2 * r), hi = mma::b_elem(lane, 2 * r + 1);
          b[r] = pack_bits<E>(Vs[(16 * ms + lo.row) * ld + 8 * nd + lo.col],
                              Vs[(16 * ms + hi.row) * ld + 8 * nd + hi.col]);
        }
        mma16816<E>(o[nd], pa, b);
      }
    }
    __syncthreads();  // K and V are rewritten by the next tile
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const mma::RowCol e = mma::c_elem(lane, i);
      const int64_t t = q0 + 16 * warp + e.row;
      const int d = 8 * nd + e.col;
      if (t < Tq && d < HS) out[(bh * Tq + t) * HS + d] = o[nd][i] / l[i >> 1];
    }
  if ((lane & 3) == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t t = q0 + 16 * warp + mma::c_elem(lane, 2 * h).row;
      if (t < Tq) lse[bh * Tq + t] = m[h] + logf(l[h]);
    }
}

template <int HSP, class E>
void mma_forward(float* out, float* lse, const float* q, const float* k, const float* v, int64_t BH,
                 int64_t Tq, int64_t Tk, int HS, float scale) {
  const size_t bytes = size_t(3) * kTile * (HSP + 8) * sizeof(E);
  auto kernel = mma_forward_kernel<HSP, E>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  GL_CHECK(BH <= 65535, "cuda attention: batch x heads = ", BH, " exceeds the grid limit 65535");
  kernel<<<dim3(unsigned((Tq + kTile - 1) / kTile), unsigned(BH)), kThreads, bytes, current_stream()>>>(
      out, lse, q, k, v, Tq, Tk, HS, scale);
  CUDA_CHECK_LAUNCH("mma_forward_kernel");
}

template <class E>
void by_head_size(float* out, float* lse, const float* q, const float* k, const float* v, int64_t BH,
                  int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  if (HS <= 32) return mma_forward<32, E>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  if (HS <= 64) return mma_forward<64, E>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  mma_forward<128, E>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
}

// GRIDLOCK_ATTENTION_FORWARD=wmma selects the WMMA forward at start-up (a
// way around a fault in this kernel without a rebuild).
bool mma_default() {
  const char* e = std::getenv("GRIDLOCK_ATTENTION_FORWARD");
  return !(e && std::strcmp(e, "wmma") == 0);
}
bool g_mma = mma_default();

}  // namespace

void set_attention_mma(bool on) { g_mma = on; }
bool attention_mma_enabled() { return g_mma; }

void flash_attention_mma_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                 int64_t BH, int64_t Tq, int64_t Tk, int64_t HS, double scale, bool f16) {
  if (BH * Tq == 0) return;
  if (f16) return by_head_size<__half>(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
  by_head_size<__nv_bfloat16>(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
}

}  // namespace gl::cuda
