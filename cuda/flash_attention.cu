// Tiled causal attention for f32 (FlashAttention-2's schedule on CUDA
// cores): see cuda/attention.h for the contract and cpu/attention.cpp for
// the maths. attention.cu sends f32 calls with HS <= 128 here.
//
// Tiles of 64 query rows x 64 key rows; 256 threads as a 16 x 16 grid
// (ty = tid / 16, tx = tid % 16). A thread owns tile rows ty + 16 i and
// tile columns tx + 16 j (i, j < 4) of every 64 x 64 score tile, and output
// columns tx + 16 c (c < HSP / 16) of every 64 x HSP accumulator. Rows of
// shared tiles are padded to HSP + 1 (or 65) floats: a warp reading one
// column of 16 different rows then hits 16 different banks. The 16 lanes
// that share a row are 16 consecutive lanes of one warp, so row maxima and
// sums are shuffles within half a warp.
//
//   flash_forward      query tile: online softmax over key tiles, out, lse
//   flash_dq           query tile: delta = rowsum(dout * out), dq
//   flash_dkv          key tile: loops over the query tiles that see it
// No T x T buffer, no atomics (dq and dk/dv come from separate kernels, so
// every output element is summed by one thread in a fixed order:
// deterministic). HS is padded with zeros to HSP (32, 64 or 128).
#include <cmath>

#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

constexpr int kTile = 64;
constexpr int kThreads = 256;
constexpr int kPadS = kTile + 1;  // row stride of 64 x 64 score tiles in shared memory

template <int HSP>
struct Dims {
  static constexpr int ld = HSP + 1;       // row stride of 64 x HSP tiles
  static constexpr int cols = HSP / 16;    // output columns per thread
  static constexpr int tile = kTile * ld;  // floats per 64 x HSP tile
};

__device__ __forceinline__ float half_warp_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float* smem() {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  return reinterpret_cast<float*>(smem_raw);
}

// rows [r0, r0 + 64) of src [rows, HS] into dst [64][HSP + 1], zero beyond
// `rows` and HS.
template <int HSP>
__device__ __forceinline__ void load_tile(float* dst, const float* src, int64_t r0, int64_t rows,
                                          int HS) {
  for (int e = threadIdx.x; e < kTile * HSP; e += kThreads) {
    const int r = e / HSP, d = e % HSP;
    const int64_t g = r0 + r;
    dst[r * Dims<HSP>::ld + d] = (g < rows && d < HS) ? src[g * HS + d] : 0.f;
  }
}

// acc[i][j] += sum_d a[ty + 16 i][d] * b[tx + 16 j][d] over 64 x HSP tiles.
template <int HSP>
__device__ __forceinline__ void dot_tile(float (&acc)[4][4], const float* a, const float* b,
                                         int ty, int tx) {
  constexpr int ld = Dims<HSP>::ld;
#pragma unroll 8
  for (int d = 0; d < HSP; ++d) {
    float av[4], bv[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) av[i] = a[(ty + 16 * i) * ld + d];
#pragma unroll
    for (int j = 0; j < 4; ++j) bv[j] = b[(tx + 16 * j) * ld + d];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// acc[i][c] += sum_s p[ty + 16 i][s] * b[s][tx + 16 c]: a 64 x 64 score tile
// times a 64 x HSP tile.
template <int HSP>
__device__ __forceinline__ void pv_tile(float (&acc)[4][Dims<HSP>::cols], const float* p,
                                        const float* b, int ty, int tx) {
  constexpr int ld = Dims<HSP>::ld;
#pragma unroll 4
  for (int s = 0; s < kTile; ++s) {
    float pv[4], bv[Dims<HSP>::cols];
#pragma unroll
    for (int i = 0; i < 4; ++i) pv[i] = p[(ty + 16 * i) * kPadS + s];
#pragma unroll
    for (int c = 0; c < Dims<HSP>::cols; ++c) bv[c] = b[s * ld + tx + 16 * c];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int c = 0; c < Dims<HSP>::cols; ++c) acc[i][c] = fmaf(pv[i], bv[c], acc[i][c]);
  }
}

// Shared: Q, K, V tiles, P [64][65].
template <int HSP>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(
    float* out, float* lse, const float* q, const float* k, const float* v, int64_t Tq,
    int64_t Tk, int HS, float scale) {
  constexpr int C = Dims<HSP>::cols;
  float* Qs = smem();
  float* Ks = Qs + Dims<HSP>::tile;
  float* Vs = Ks + Dims<HSP>::tile;
  float* Ps = Vs + Dims<HSP>::tile;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile;  // the longest rows start first
  const int64_t bh = blockIdx.y, off = Tk - Tq;
  const float* qb = q + bh * Tq * HS;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile<HSP>(Qs, qb, q0, Tq, HS);
  float o[4][C], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int c = 0; c < C; ++c) o[i][c] = 0.f;
  }
  // Keys up to the last row's position: s <= q0 + 63 + off.
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile<HSP>(Ks, kb, k0, Tk, HS);
    load_tile<HSP>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    float s[4][4] = {};
    dot_tile<HSP>(s, Qs, Ks, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t pos = q0 + ty + 16 * i + off;  // the last key this row sees
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t key = k0 + tx + 16 * j;
        s[i][j] = (key <= pos && key < Tk) ? s[i][j] * scale : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      // Every row sees key 0, so m_new is finite from the first tile on.
      const float m_new = fmaxf(m[i], half_warp_max(mx));
      const float alpha = expf(m[i] - m_new);  // 0 on the first tile (m = -inf)
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float p = expf(s[i][j] - m_new);
        Ps[(ty + 16 * i) * kPadS + tx + 16 * j] = p;
        sum += p;
      }
      l[i] = l[i] * alpha + half_warp_sum(sum);
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < C; ++c) o[i][c] *= alpha;
    }
    __syncthreads();
    pv_tile<HSP>(o, Ps, Vs, ty, tx);
    __syncthreads();  // K, V and P are rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t t = q0 + ty + 16 * i;
    if (t >= Tq) continue;
    const float inv = 1.f / l[i];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = tx + 16 * c;
      if (d < HS) out[(bh * Tq + t) * HS + d] = o[i][c] * inv;
    }
    if (tx == 0) lse[bh * Tq + t] = m[i] + logf(l[i]);
  }
}

// Shared: Q, dO, K, V tiles, dS [64][65]. Also writes delta for flash_dkv.
template <int HSP>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(
    float* dq, float* delta, const float* dout, const float* q, const float* k, const float* v,
    const float* out, const float* lse, int64_t Tq, int64_t Tk, int HS, float scale) {
  constexpr int ld = Dims<HSP>::ld, C = Dims<HSP>::cols;
  float* Qs = smem();
  float* dOs = Qs + Dims<HSP>::tile;
  float* Ks = dOs + Dims<HSP>::tile;
  float* Vs = Ks + Dims<HSP>::tile;
  float* dSs = Vs + Dims<HSP>::tile;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t n_tiles = (Tq + kTile - 1) / kTile;
  const int64_t q0 = (n_tiles - 1 - blockIdx.x) * kTile;
  const int64_t bh = blockIdx.y, off = Tk - Tq;
  const float* kb = k + bh * Tk * HS;
  const float* vb = v + bh * Tk * HS;

  load_tile<HSP>(Qs, q + bh * Tq * HS, q0, Tq, HS);
  load_tile<HSP>(dOs, dout + bh * Tq * HS, q0, Tq, HS);
  __syncthreads();
  float D[4], L[4], acc[4][C];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t t = q0 + ty + 16 * i;
    float part = 0.f;
    if (t < Tq)
      for (int d = tx; d < HS; d += 16) part += dOs[(ty + 16 * i) * ld + d] * out[(bh * Tq + t) * HS + d];
    D[i] = half_warp_sum(part);
    L[i] = t < Tq ? lse[bh * Tq + t] : 0.f;
    if (t < Tq && tx == 0) delta[bh * Tq + t] = D[i];
#pragma unroll
    for (int c = 0; c < C; ++c) acc[i][c] = 0.f;
  }
  const int64_t k_end = min(Tk, q0 + kTile + off);
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
    load_tile<HSP>(Ks, kb, k0, Tk, HS);
    load_tile<HSP>(Vs, vb, k0, Tk, HS);
    __syncthreads();
    float s[4][4] = {}, dp[4][4] = {};
    dot_tile<HSP>(s, Qs, Ks, ty, tx);
    dot_tile<HSP>(dp, dOs, Vs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t t = q0 + ty + 16 * i, pos = t + off;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t key = k0 + tx + 16 * j;
        const bool seen = key <= pos && key < Tk && t < Tq;
        const float p = seen ? expf(s[i][j] * scale - L[i]) : 0.f;
        dSs[(ty + 16 * i) * kPadS + tx + 16 * j] = p * (dp[i][j] - D[i]);
      }
    }
    __syncthreads();
    pv_tile<HSP>(acc, dSs, Ks, ty, tx);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t t = q0 + ty + 16 * i;
    if (t >= Tq) continue;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = tx + 16 * c;
      if (d < HS) dq[(bh * Tq + t) * HS + d] = scale * acc[i][c];
    }
  }
}

// Shared: K, V tiles (this block's keys), Q, dO tiles, P and dS [64][65]
// indexed [key][query], lse and delta of the query tile.
// Key s collects from every query t with t + off >= s:
//   dv_s = sum_t P_ts dout_t,   dk_s = scale * sum_t dS_ts q_t.
template <int HSP>
__global__ void __launch_bounds__(kThreads) flash_dkv_kernel(
    float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
    const float* lse, const float* delta, int64_t Tq, int64_t Tk, int HS, float scale) {
  constexpr int C = Dims<HSP>::cols;
  float* Ks = smem();
  float* Vs = Ks + Dims<HSP>::tile;
  float* Qs = Vs + Dims<HSP>::tile;
  float* dOs = Qs + Dims<HSP>::tile;
  float* Ps = dOs + Dims<HSP>::tile;
  float* dSs = Ps + kTile * kPadS;
  float* Ls = dSs + kTile * kPadS;
  float* Ds = Ls + kTile;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  const int64_t k0 = int64_t(blockIdx.x) * kTile;
  const int64_t bh = blockIdx.y, off = Tk - Tq;
  const float* qb = q + bh * Tq * HS;
  const float* dob = dout + bh * Tq * HS;

  load_tile<HSP>(Ks, k + bh * Tk * HS, k0, Tk, HS);
  load_tile<HSP>(Vs, v + bh * Tk * HS, k0, Tk, HS);
  float dka[4][C], dva[4][C];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int c = 0; c < C; ++c) dka[i][c] = dva[i][c] = 0.f;
  // The first query seeing key k0 is t = k0 - off.
  const int64_t first = k0 - off > 0 ? (k0 - off) / kTile * kTile : 0;
  for (int64_t q0 = first; q0 < Tq; q0 += kTile) {
    load_tile<HSP>(Qs, qb, q0, Tq, HS);
    load_tile<HSP>(dOs, dob, q0, Tq, HS);
    if (tid < kTile) {
      const int64_t t = q0 + tid;
      Ls[tid] = t < Tq ? lse[bh * Tq + t] : 0.f;
      Ds[tid] = t < Tq ? delta[bh * Tq + t] : 0.f;
    }
    __syncthreads();
    float s[4][4] = {}, dp[4][4] = {};
    dot_tile<HSP>(s, Ks, Qs, ty, tx);   // rows: keys, columns: queries
    dot_tile<HSP>(dp, Vs, dOs, ty, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t key = k0 + ty + 16 * i;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = tx + 16 * j;
        const int64_t t = q0 + col;
        const bool seen = key <= t + off && key < Tk && t < Tq;
        const float p = seen ? expf(s[i][j] * scale - Ls[col]) : 0.f;
        Ps[(ty + 16 * i) * kPadS + col] = p;
        dSs[(ty + 16 * i) * kPadS + col] = p * (dp[i][j] - Ds[col]);
      }
    }
    __syncthreads();
    pv_tile<HSP>(dva, Ps, dOs, ty, tx);
    pv_tile<HSP>(dka, dSs, Qs, ty, tx);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t key = k0 + ty + 16 * i;
    if (key >= Tk) continue;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int d = tx + 16 * c;
      if (d >= HS) continue;
      dk[(bh * Tk + key) * HS + d] = scale * dka[i][c];
      dv[(bh * Tk + key) * HS + d] = dva[i][c];
    }
  }
}

// Launches kernel with `tiles` x BH blocks and `floats` of dynamic shared
// memory, raising the kernel's shared-memory limit first (above 48 KiB).
template <class Kernel, class... Args>
void launch(Kernel kernel, const char* name, int64_t tiles, int64_t BH, size_t floats,
            Args... args) {
  const size_t bytes = floats * sizeof(float);
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  GL_CHECK(BH <= 65535, "cuda attention: batch x heads = ", BH, " exceeds the grid limit 65535");
  kernel<<<dim3(unsigned(tiles), unsigned(BH)), kThreads, bytes, current_stream()>>>(args...);
  CUDA_CHECK_LAUNCH(name);
}

int padded_head(int64_t HS) { return HS <= 32 ? 32 : HS <= 64 ? 64 : 128; }

template <int HSP>
void forward_hsp(float* out, float* lse, const float* q, const float* k, const float* v,
                 int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  const size_t floats = 3 * Dims<HSP>::tile + kTile * kPadS;
  launch(flash_forward_kernel<HSP>, "flash_forward_kernel", (Tq + kTile - 1) / kTile, BH, floats,
         out, lse, q, k, v, Tq, Tk, HS, scale);
}

template <int HSP>
void backward_hsp(float* dq, float* dk, float* dv, float* delta, const float* dout,
                  const float* q, const float* k, const float* v, const float* out,
                  const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int HS, float scale) {
  if (Tq > 0)
    launch(flash_dq_kernel<HSP>, "flash_dq_kernel", (Tq + kTile - 1) / kTile, BH,
           size_t(4 * Dims<HSP>::tile + kTile * kPadS), dq, delta, dout, q, k, v, out, lse, Tq,
           Tk, HS, scale);
  launch(flash_dkv_kernel<HSP>, "flash_dkv_kernel", (Tk + kTile - 1) / kTile, BH,
         size_t(4 * Dims<HSP>::tile + 2 * kTile * kPadS + 2 * kTile), dk, dv, dout, q, k, v, lse,
         delta, Tq, Tk, HS, scale);
}

}  // namespace

bool flash_attention_supports(int64_t HS) { return HS >= 1 && HS <= 128; }

void flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                             const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                             double scale) {
  if (BH * Tq == 0) return;
  switch (padded_head(HS)) {
    case 32: return forward_hsp<32>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
    case 64: return forward_hsp<64>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
    default: return forward_hsp<128>(out, lse, q, k, v, BH, Tq, Tk, int(HS), float(scale));
  }
}

void flash_attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* q, const float* k, const float* v, const float* out,
                              const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                              double scale) {
  if (BH * Tk == 0) return;
  switch (padded_head(HS)) {
    case 32:
      return backward_hsp<32>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                              float(scale));
    case 64:
      return backward_hsp<64>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                              float(scale));
    default:
      return backward_hsp<128>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS),
                               float(scale));
  }
}

}  // namespace gl::cuda
