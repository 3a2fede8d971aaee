// The bodies of cuda/flash_attention_mma.cu's kernels (the maths and the
// schedule are described there), written against an execution policy A:
//   A::tid(), A::bx(), A::by()   thread and block indices
//   A::sync()                    the block barrier
//   A::shfl_xor(v, mask)         a warp shuffle
//   A::mma<E>(d, a, b)           mma.sync.m16n8k16, f32 accumulation
//   A::smem()                    the block's dynamic shared memory
// On the GPU A is the CUDA intrinsics; tests/cuda_emu runs the same bodies
// on the CPU under an emulated block of 128 threads (the mma emulated from
// cuda/mma_layout.h's fragment layout), so the kernels' indexing, masking,
// online softmax and barriers are tested against the CPU attention without
// a GPU. Compiled by nvcc (device functions) and by the host compiler.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/mma_layout.h"

#ifdef __CUDACC__
#define GL_MMA_FN __device__ __forceinline__
#else
#define GL_MMA_FN inline
#endif

namespace gl::cuda::mma_attention {

constexpr int kTile = 64, kWarps = 4, kThreads = 32 * kWarps;

GL_MMA_FN int64_t lesser(int64_t a, int64_t b) { return a < b ? a : b; }

template <class E>
constexpr bool kBf16 = std::is_same_v<E, __nv_bfloat16>;

template <class E>
GL_MMA_FN E round_to(float x) {
  if constexpr (kBf16<E>) return __float2bfloat16_rn(x);
  else return __float2half_rn(x);
}

GL_MMA_FN float widen(__nv_bfloat16 x) { return __bfloat162float(x); }
GL_MMA_FN float widen(__half x) { return __half2float(x); }

// Two values in one register, lo in the low half (the fragment's lower
// element index).
template <class E>
GL_MMA_FN uint32_t pack(float lo, float hi) {
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
GL_MMA_FN uint32_t pack_bits(E lo, E hi) {
  uint16_t a, b;
  memcpy(&a, &lo, 2);
  memcpy(&b, &hi, 2);
  return uint32_t(a) | (uint32_t(b) << 16);
}

// Two adjacent 16-bit values of a row (the column index is even).
template <class E>
GL_MMA_FN uint32_t load_pair(const E* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Fragment loads from a [64][ld] 16-bit tile T.
// A over rows r0..r0+15 and columns 16 kk..16 kk+15 (pairs along a row).
template <int ld, class E>
GL_MMA_FN void load_a(uint32_t (&a)[4], const E* T, int r0, int kk, int lane) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const mma::RowCol e = mma::a_elem(lane, 2 * r);
    a[r] = load_pair(T + (r0 + e.row) * ld + 16 * kk + e.col);
  }
}
// B[k][n] = T[n0 + n][16 kk + k]: a product with T^T (pairs along T's rows).
template <int ld, class E>
GL_MMA_FN void load_b_t(uint32_t (&b)[2], const E* T, int n0, int kk, int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const mma::RowCol e = mma::b_elem(lane, 2 * r);
    b[r] = load_pair(T + (n0 + e.col) * ld + 16 * kk + e.row);
  }
}
// B[k][n] = T[16 ks + k][n0 + n]: a product with T (a pair spans two rows).
template <int ld, class E>
GL_MMA_FN void load_b(uint32_t (&b)[2], const E* T, int ks, int n0, int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const mma::RowCol lo = mma::b_elem(lane, 2 * r), hi = mma::b_elem(lane, 2 * r + 1);
    b[r] = pack_bits<E>(T[(16 * ks + lo.row) * ld + n0 + lo.col], T[(16 * ks + hi.row) * ld + n0 + hi.col]);
  }
}
// The A fragment over columns 16 m..16 m+15 of eight 16 x 8 accumulator
// tiles x, rounded to E (cuda/mma_layout.h: tile_of_a, c_of_a).
template <class E>
GL_MMA_FN void acc_to_a(uint32_t (&a)[4], const float (&x)[8][4], int m) {
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int tile = 2 * m + mma::tile_of_a(2 * r), c = mma::c_of_a(2 * r);
    a[r] = pack<E>(x[tile][c], x[tile][c + 1]);
  }
}

// Rows [r0, r0 + 64) of src [rows, HS] into dst [64][ld], rounded, zero
// beyond rows / HS.
template <int HSP, class E>
GL_MMA_FN void load_tile(E* dst, const float* src, int64_t r0, int64_t rows, int HS, int tid) {
  constexpr int ld = HSP + 8;
  for (int e = tid; e < kTile * HSP; e += kThreads) {
    const int r = e / HSP, d = e % HSP;
    const int64_t g = r0 + r;
    dst[r * ld + d] = round_to<E>((g < rows && d < HS) ? src[g * HS + d] : 0.f);
  }
}

// Tiles are [64][HSP + 8]: a row is HSP / 2 + 4 words, so the eight rows a
// fragment load touches start four banks apart and its 32 lanes hit 32
// different banks.
template <int HSP, class E, class A>
GL_MMA_FN void forward_body(float* out, float* lse, const float* q, const float* k, const float* v,
                            int64_t Tq, int64_t Tk, int HS, float scale) {
  constexpr int ld = HSP + 8, KS = HSP / 16, ND = HSP / 8;
  unsigned char* smem_mma = A::smem();
  E* Qs = reinterpret_cast<E*>(smem_mma);
  E* Ks = Qs + kTile * ld;
  E* Vs = Ks + kTile * ld;
  const int tid = A::tid(), warp = tid / 32, lane = tid % 32;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - A::bx()) * kTile, bh = A::by(), off = Tk - Tq;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile<HSP, E>(Qs, q + bh * Tq * HS, q0, Tq, HS, tid);
  A::sync();
  uint32_t qf[KS][4];
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) load_a<ld>(qf[kk], Qs, 16 * warp, kk, lane);
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

  const int64_t k_end = lesser(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile<HSP, E>(Ks, kb, k0, Tk, HS, tid);
    load_tile<HSP, E>(Vs, vb, k0, Tk, HS, tid);
    A::sync();
    // S = Q K^T: B[d][key] = K[key][d], two adjacent d of one key row per register.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[j][i] = 0.f;
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        uint32_t b[2];
        load_b_t<ld>(b, Ks, 8 * j, kk, lane);
        A::template mma<E>(s[j], qf[kk], b);
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
      mx[h] = fmaxf(mx[h], A::shfl_xor(mx[h], 1));
      mx[h] = fmaxf(mx[h], A::shfl_xor(mx[h], 2));
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
      acc_to_a<E>(pa, s, ms);
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t b[2];
        load_b<ld>(b, Vs, ms, 8 * nd, lane);
        A::template mma<E>(o[nd], pa, b);
      }
    }
    A::sync();  // K and V are rewritten by the next tile
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += A::shfl_xor(l[h], 1);
    l[h] += A::shfl_xor(l[h], 2);
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

// dq for a tile of 64 queries over the key tiles; writes delta (D) for the
// dk/dv kernel, from the rounded dO, as the WMMA kernel does.
template <int HSP, class E, class A>
GL_MMA_FN void dq_body(float* dq, float* delta, const float* dout, const float* q, const float* k,
                       const float* v, const float* out, const float* lse, int64_t Tq, int64_t Tk, int HS,
                       float scale) {
  constexpr int ld = HSP + 8, KS = HSP / 16, ND = HSP / 8;
  unsigned char* smem_mma = A::smem();
  E* Qs = reinterpret_cast<E*>(smem_mma);
  E* dOs = Qs + kTile * ld;
  E* Ks = dOs + kTile * ld;
  E* Vs = Ks + kTile * ld;
  const int tid = A::tid(), warp = tid / 32, lane = tid % 32;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - A::bx()) * kTile, bh = A::by(), off = Tk - Tq;
  load_tile<HSP, E>(Qs, q + bh * Tq * HS, q0, Tq, HS, tid);
  load_tile<HSP, E>(dOs, dout + bh * Tq * HS, q0, Tq, HS, tid);
  A::sync();
  // This lane's two rows: D_t = dO_t . out_t (columns d = lane % 4 + 4 i,
  // then over the four lanes of the row) and the log-sum-exp.
  int64_t t[2];
  float D[2], L[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = 16 * warp + mma::c_elem(lane, 2 * h).row;
    t[h] = q0 + row;
    float part = 0.f;
    if (t[h] < Tq)
      for (int d = lane & 3; d < HS; d += 4)
        part += widen(dOs[row * ld + d]) * out[(bh * Tq + t[h]) * HS + d];
    part += A::shfl_xor(part, 1);
    part += A::shfl_xor(part, 2);
    D[h] = part;
    L[h] = t[h] < Tq ? lse[bh * Tq + t[h]] : 0.f;
    if ((lane & 3) == 0 && t[h] < Tq) delta[bh * Tq + t[h]] = part;
  }
  float acc[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[nd][i] = 0.f;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;
  const int64_t k_end = lesser(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile<HSP, E>(Ks, kb, k0, Tk, HS, tid);
    load_tile<HSP, E>(Vs, vb, k0, Tk, HS, tid);
    A::sync();
    // S = Q K^T and dP = dO V^T, eight 16 x 8 tiles each.
    float s[8][4], dp[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) s[j][i] = dp[j][i] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t aq[4], ado[4];
      load_a<ld>(aq, Qs, 16 * warp, kk, lane);
      load_a<ld>(ado, dOs, 16 * warp, kk, lane);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        uint32_t b[2];
        load_b_t<ld>(b, Ks, 8 * j, kk, lane);
        A::template mma<E>(s[j], aq, b);
        load_b_t<ld>(b, Vs, 8 * j, kk, lane);
        A::template mma<E>(dp[j], ado, b);
      }
    }
    // dS = P (dP - D), P = exp(scale S - L), masked; in place of S.
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int h = i >> 1;
        const int64_t key = k0 + 8 * j + mma::c_elem(lane, i).col;
        const bool seen = key <= t[h] + off && key < Tk && t[h] < Tq;
        const float p = seen ? expf(s[j][i] * scale - L[h]) : 0.f;
        s[j][i] = p * (dp[j][i] - D[h]);
      }
    // dQ += dS K.
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      uint32_t a[4];
      acc_to_a<E>(a, s, m);
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t b[2];
        load_b<ld>(b, Ks, m, 8 * nd, lane);
        A::template mma<E>(acc[nd], a, b);
      }
    }
    A::sync();
  }
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const mma::RowCol e = mma::c_elem(lane, i);
      const int64_t tt = q0 + 16 * warp + e.row;
      const int d = 8 * nd + e.col;
      if (tt < Tq && d < HS) dq[(bh * Tq + tt) * HS + d] = scale * acc[nd][i];
    }
}

// dk, dv for a tile of 64 keys over the query tiles that see them.
template <int HSP, class E, class A>
GL_MMA_FN void dkv_body(float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* lse, const float* delta, int64_t Tq, int64_t Tk, int HS,
                        float scale) {
  constexpr int ld = HSP + 8, KS = HSP / 16, ND = HSP / 8;
  unsigned char* smem_mma = A::smem();
  E* Ks = reinterpret_cast<E*>(smem_mma);
  E* Vs = Ks + kTile * ld;
  E* Qs = Vs + kTile * ld;
  E* dOs = Qs + kTile * ld;
  float* Ls = reinterpret_cast<float*>(dOs + kTile * ld);
  float* Ds = Ls + kTile;
  const int tid = A::tid(), warp = tid / 32, lane = tid % 32;
  const int64_t k0 = int64_t(A::bx()) * kTile, bh = A::by(), off = Tk - Tq;
  load_tile<HSP, E>(Ks, k + bh * Tk * HS, k0, Tk, HS, tid);
  load_tile<HSP, E>(Vs, v + bh * Tk * HS, k0, Tk, HS, tid);
  int64_t key[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) key[h] = k0 + 16 * warp + mma::c_elem(lane, 2 * h).row;
  float dka[ND][4], dva[ND][4];
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) dka[nd][i] = dva[nd][i] = 0.f;
  const float* qb = q + bh * Tq * HS;
  const float* dob = dout + bh * Tq * HS;
  const int64_t first = k0 - off > 0 ? (k0 - off) / kTile * kTile : 0;
  for (int64_t q0 = first; q0 < Tq; q0 += kTile) {
    load_tile<HSP, E>(Qs, qb, q0, Tq, HS, tid);
    load_tile<HSP, E>(dOs, dob, q0, Tq, HS, tid);
    if (tid < kTile) {
      const int64_t tt = q0 + tid;
      Ls[tid] = tt < Tq ? lse[bh * Tq + tt] : 0.f;
      Ds[tid] = tt < Tq ? delta[bh * Tq + tt] : 0.f;
    }
    A::sync();
    // S^T = K Q^T and dP^T = V dO^T: rows this warp's keys, columns queries.
    float st[8][4], dpt[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) st[j][i] = dpt[j][i] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      uint32_t ak[4], av[4];
      load_a<ld>(ak, Ks, 16 * warp, kk, lane);
      load_a<ld>(av, Vs, 16 * warp, kk, lane);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        uint32_t b[2];
        load_b_t<ld>(b, Qs, 8 * j, kk, lane);
        A::template mma<E>(st[j], ak, b);
        load_b_t<ld>(b, dOs, 8 * j, kk, lane);
        A::template mma<E>(dpt[j], av, b);
      }
    }
    // P^T and dS^T = P^T (dP^T - D), masked.
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int h = i >> 1, col = 8 * j + mma::c_elem(lane, i).col;
        const int64_t tq = q0 + col;
        const bool seen = key[h] <= tq + off && key[h] < Tk && tq < Tq;
        const float p = seen ? expf(st[j][i] * scale - Ls[col]) : 0.f;
        st[j][i] = p;
        dpt[j][i] = p * (dpt[j][i] - Ds[col]);
      }
    // dV += P^T dO, dK += dS^T Q.
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      uint32_t ap[4], ads[4];
      acc_to_a<E>(ap, st, m);
      acc_to_a<E>(ads, dpt, m);
#pragma unroll
      for (int nd = 0; nd < ND; ++nd) {
        uint32_t b[2];
        load_b<ld>(b, dOs, m, 8 * nd, lane);
        A::template mma<E>(dva[nd], ap, b);
        load_b<ld>(b, Qs, m, 8 * nd, lane);
        A::template mma<E>(dka[nd], ads, b);
      }
    }
    A::sync();
  }
#pragma unroll
  for (int nd = 0; nd < ND; ++nd)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const mma::RowCol e = mma::c_elem(lane, i);
      const int64_t kr = k0 + 16 * warp + e.row;
      const int d = 8 * nd + e.col;
      if (kr < Tk && d < HS) {
        dk[(bh * Tk + kr) * HS + d] = scale * dka[nd][i];
        dv[(bh * Tk + kr) * HS + d] = dva[nd][i];
      }
    }
}


}  // namespace gl::cuda::mma_attention
