// Causal attention (CUDA), flash-style memory: see cpu/attention.h for the
// maths and cpu/attention.cpp for the backward derivation. f32 with
// HS <= 128 goes to the tiled kernels of cuda/flash_attention.cu; these
// row-per-block kernels serve f64 (the reference-precision path) and
// larger heads.
//
// Layout of the work: one thread block per (b, h, row). A block walks the
// other rows in chunks of kChunk; within a chunk each warp takes whole rows
// and computes their dot products across its lanes (coalesced reads), the
// results go to shared memory, then every thread owns a few of the HS
// columns and accumulates the chunk into them. So no T x T buffer exists
// anywhere, and every sum is written by one thread in a fixed order: no
// atomics, deterministic.
//   attention_forward_kernel   query row t: online softmax over keys s <= t + off
//   attention_dq_kernel        query row t: delta_t = dout_t . out_t, dq_t
//   attention_dkv_kernel       key row s: loops over queries t >= s - off, dk_s, dv_s
// (off = Tk - Tq: query row t sits at absolute position t + off.)
// dq and dk/dv are separate kernels so that no two blocks write one row.
// f32 accumulates in f32 here (the CPU reference uses double).
#include <cmath>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/common.cuh"
#include "cuda/runtime.h"
#include "cuda/reduce_utils.cuh"

namespace gl::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kChunk = 32;  // rows per chunk held in shared memory

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float log_t(float x) { return logf(x); }
__device__ __forceinline__ double log_t(double x) { return log(x); }

// a . b over HS elements by one warp; every lane receives the sum.
template <class T>
__device__ __forceinline__ T warp_dot(const T* a, const T* b, int64_t HS, int lane) {
  T acc = T(0);
  for (int64_t d = lane; d < HS; d += 32) acc += a[d] * b[d];
  return warp_sum(acc);
}

// Dynamic shared memory as an array of T (raw bytes: one extern declaration
// serves both instantiations).
template <class T>
__device__ __forceinline__ T* shared_buffer() {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  return reinterpret_cast<T*>(smem_raw);
}

// Shared: q_t [HS], acc [HS], scores [kChunk], p [kChunk].
// Online softmax: running max m and sum l, identical in every thread; when
// the max grows, the old sum and accumulator are rescaled by exp(m - m_new).
template <class T>
__global__ void attention_forward_kernel(T* out, T* lse, const T* q, const T* k, const T* v,
                                         int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                         T scale) {
  T* q_s = shared_buffer<T>();
  T* acc = q_s + HS;
  T* sc = acc + HS;
  T* p = sc + kChunk;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t r = blockIdx.x; r < BH * Tq; r += gridDim.x) {
    const int64_t bh = r / Tq, t = r % Tq + Tk - Tq;  // t: the last key this row sees
    const T* kb = k + bh * Tk * HS;
    const T* vb = v + bh * Tk * HS;
    for (int64_t d = tid; d < HS; d += blockDim.x) {
      q_s[d] = q[r * HS + d];
      acc[d] = T(0);
    }
    __syncthreads();
    T m = T(-INFINITY), l = T(0);
    for (int64_t c0 = 0; c0 <= t; c0 += kChunk) {
      const int n = int(t + 1 - c0 < kChunk ? t + 1 - c0 : kChunk);
      for (int j = warp; j < n; j += kWarps) {
        const T s = scale * warp_dot(q_s, kb + (c0 + j) * HS, HS, lane);
        if (lane == 0) sc[j] = s;
      }
      __syncthreads();
      T m_new = m;
      for (int j = 0; j < n; ++j) m_new = max(m_new, sc[j]);
      const T alpha = exp_t(m - m_new);  // 0 on the first chunk (m = -inf)
      if (tid < n) p[tid] = exp_t(sc[tid] - m_new);
      __syncthreads();
      T psum = T(0);
      for (int j = 0; j < n; ++j) psum += p[j];
      l = l * alpha + psum;
      for (int64_t d = tid; d < HS; d += blockDim.x) {
        T a = acc[d] * alpha;
        for (int j = 0; j < n; ++j) a += p[j] * vb[(c0 + j) * HS + d];
        acc[d] = a;
      }
      m = m_new;
      __syncthreads();  // sc and p are rewritten by the next chunk
    }
    for (int64_t d = tid; d < HS; d += blockDim.x) out[r * HS + d] = acc[d] / l;
    if (tid == 0) lse[r] = m + log_t(l);
    __syncthreads();  // q_s and acc are rewritten by the next row
  }
}

// Shared: q_t [HS], dout_t [HS], acc [HS], ds [kChunk].
// dq_t = scale * sum_{s<=t+off} dS_ts k_s with dS_ts = P_ts (dout_t . v_s - delta_t).
template <class T>
__global__ void attention_dq_kernel(T* dq, T* delta, const T* dout, const T* q, const T* k,
                                    const T* v, const T* out, const T* lse, int64_t BH,
                                    int64_t Tq, int64_t Tk, int64_t HS, T scale) {
  T* q_s = shared_buffer<T>();
  T* do_s = q_s + HS;
  T* acc = do_s + HS;
  T* ds = acc + HS;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t r = blockIdx.x; r < BH * Tq; r += gridDim.x) {
    const int64_t bh = r / Tq, t = r % Tq + Tk - Tq;  // t: the last key this row sees
    const T* kb = k + bh * Tk * HS;
    const T* vb = v + bh * Tk * HS;
    T part = T(0);
    for (int64_t d = tid; d < HS; d += blockDim.x) {
      q_s[d] = q[r * HS + d];
      do_s[d] = dout[r * HS + d];
      acc[d] = T(0);
      part += do_s[d] * out[r * HS + d];
    }
    const T D = block_sum(part);  // its barriers also publish q_s and do_s
    if (tid == 0) delta[r] = D;
    const T L = lse[r];
    for (int64_t c0 = 0; c0 <= t; c0 += kChunk) {
      const int n = int(t + 1 - c0 < kChunk ? t + 1 - c0 : kChunk);
      for (int j = warp; j < n; j += kWarps) {
        const T s = scale * warp_dot(q_s, kb + (c0 + j) * HS, HS, lane);
        const T dp = warp_dot(do_s, vb + (c0 + j) * HS, HS, lane);
        if (lane == 0) ds[j] = exp_t(s - L) * (dp - D);
      }
      __syncthreads();
      for (int64_t d = tid; d < HS; d += blockDim.x) {
        T a = acc[d];
        for (int j = 0; j < n; ++j) a += ds[j] * kb[(c0 + j) * HS + d];
        acc[d] = a;
      }
      __syncthreads();
    }
    for (int64_t d = tid; d < HS; d += blockDim.x) dq[r * HS + d] = scale * acc[d];
    __syncthreads();
  }
}

// Shared: k_s [HS], v_s [HS], dk_acc [HS], dv_acc [HS], p [kChunk], ds [kChunk].
// Key row s collects from every query row t with t + off >= s:
//   dv_s = sum_t P_ts dout_t,   dk_s = scale * sum_t dS_ts q_t.
// Reads delta, written by attention_dq_kernel earlier on the same stream.
template <class T>
__global__ void attention_dkv_kernel(T* dk, T* dv, const T* dout, const T* q, const T* k,
                                     const T* v, const T* lse, const T* delta, int64_t BH,
                                     int64_t Tq, int64_t Tk, int64_t HS, T scale) {
  T* k_s = shared_buffer<T>();
  T* v_s = k_s + HS;
  T* dk_acc = v_s + HS;
  T* dv_acc = dk_acc + HS;
  T* p = dv_acc + HS;
  T* ds = p + kChunk;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t r = blockIdx.x; r < BH * Tk; r += gridDim.x) {
    const int64_t bh = r / Tk, s = r % Tk;
    const int64_t first = s - (Tk - Tq) > 0 ? s - (Tk - Tq) : 0;  // first query row seeing s
    const T* qb = q + bh * Tq * HS;
    const T* dob = dout + bh * Tq * HS;
    for (int64_t d = tid; d < HS; d += blockDim.x) {
      k_s[d] = k[r * HS + d];
      v_s[d] = v[r * HS + d];
      dk_acc[d] = T(0);
      dv_acc[d] = T(0);
    }
    __syncthreads();
    for (int64_t c0 = first; c0 < Tq; c0 += kChunk) {
      const int n = int(Tq - c0 < kChunk ? Tq - c0 : kChunk);
      for (int j = warp; j < n; j += kWarps) {
        const int64_t t = c0 + j;
        const T st = scale * warp_dot(qb + t * HS, k_s, HS, lane);
        const T dp = warp_dot(dob + t * HS, v_s, HS, lane);
        if (lane == 0) {
          const T pt = exp_t(st - lse[bh * Tq + t]);
          p[j] = pt;
          ds[j] = pt * (dp - delta[bh * Tq + t]);
        }
      }
      __syncthreads();
      for (int64_t d = tid; d < HS; d += blockDim.x) {
        T a = dk_acc[d], b = dv_acc[d];
        for (int j = 0; j < n; ++j) {
          a += ds[j] * qb[(c0 + j) * HS + d];
          b += p[j] * dob[(c0 + j) * HS + d];
        }
        dk_acc[d] = a;
        dv_acc[d] = b;
      }
      __syncthreads();
    }
    for (int64_t d = tid; d < HS; d += blockDim.x) {
      dk[r * HS + d] = scale * dk_acc[d];
      dv[r * HS + d] = dv_acc[d];
    }
    __syncthreads();
  }
}

// One block per row, capped; the kernels grid-stride over the rest.
unsigned grid_for_rows(int64_t rows) {
  const int64_t cap = int64_t(1) << 20;
  return unsigned(rows < cap ? rows : cap);
}

size_t shared_bytes(int64_t HS, int vectors, int chunks, size_t elsize) {
  const size_t bytes = (size_t(vectors) * size_t(HS) + size_t(chunks) * kChunk) * elsize;
  GL_CHECK(bytes <= 48 * 1024, "cuda attention: head size HS=", HS,
           " needs more than 48 KiB of shared memory per block");
  return bytes;
}

}  // namespace

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t Tq, int64_t Tk, int64_t HS, double scale) {
  const int64_t rows = BH * Tq;
  if (rows == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (flash_attention_supports(HS))
      return tf32_enabled() ? flash_attention_tc_forward(out, lse, q, k, v, BH, Tq, Tk, HS, scale)
                            : flash_attention_forward(out, lse, q, k, v, BH, Tq, Tk, HS, scale);
  }
  const size_t smem = shared_bytes(HS, 2, 2, sizeof(T));
  attention_forward_kernel<T><<<grid_for_rows(rows), kThreads, smem, current_stream()>>>(
      out, lse, q, k, v, BH, Tq, Tk, HS, T(scale));
  CUDA_CHECK_LAUNCH("attention_forward_kernel");
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t Tq,
                        int64_t Tk, int64_t HS, double scale) {
  if (BH * Tk == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (flash_attention_supports(HS)) {
      if (tf32_enabled())
        return flash_attention_tc_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk,
                                           HS, scale);
      return flash_attention_backward(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, HS,
                                      scale);
    }
  }
  // Tq == 0 < Tk (no new query rows) still needs dk = dv = 0: the dkv
  // kernel writes every key row, here with an empty query loop.
  if (BH * Tq > 0) {
    attention_dq_kernel<T><<<grid_for_rows(BH * Tq), kThreads, shared_bytes(HS, 3, 1, sizeof(T)),
                             current_stream()>>>(dq, delta, dout, q, k, v, out, lse, BH, Tq, Tk,
                                                 HS, T(scale));
    CUDA_CHECK_LAUNCH("attention_dq_kernel");
  }
  attention_dkv_kernel<T><<<grid_for_rows(BH * Tk), kThreads, shared_bytes(HS, 4, 2, sizeof(T)),
                            current_stream()>>>(dk, dv, dout, q, k, v, lse, delta, BH, Tq, Tk,
                                                HS, T(scale));
  CUDA_CHECK_LAUNCH("attention_dkv_kernel");
}

#define GL_INSTANTIATE(T)                                                                    \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     int64_t, int64_t, double);                              \
  template void attention_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                      const T*, const T*, int64_t, int64_t, int64_t, int64_t,   \
                                      double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
