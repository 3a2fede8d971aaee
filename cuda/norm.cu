// LayerNorm / RMSNorm CUDA kernels; contracts in cpu/norm.h (the CPU
// reference), derivations of the backward terms in cpu/norm.cpp.
//
// Row kernels (forward, dx): one block per row, grid-stride over rows,
// threads stride over the C columns, block_sum for the row reductions.
// kCenter = true is LayerNorm, false is RMSNorm (no mean, no mean term).
// With `res`, the forward first writes sum = x + res for its row and
// normalises sum (the fused residual add): each thread reads back only the
// columns it wrote itself, so no barrier is needed between the two.
//
// Parameter gradients (dweight, dbias: column sums over rows) in two
// deterministic passes, no atomics:
//   1. a grid of (column tiles of 32) x (row chunks); each block sums its
//      chunk of rows for 32 columns and writes one partial per column;
//   2. one thread per column adds the partials in chunk order into
//      dweight/dbias (+=).
#include <algorithm>

#include "core/tensor.h"
#include "cuda/common.cuh"
#include "cuda/norm.h"
#include "cuda/reduce_utils.cuh"

namespace gl::cuda {

namespace {

constexpr int kMaxThreads = 256;
constexpr int kTileCols = 32;          // one warp across 32 consecutive columns: coalesced
constexpr int kTileRows = 8;           // 32 x 8 = 256 threads per partial-sum block
constexpr int64_t kRowsPerChunk = 64;  // each thread of pass 1 sums >= 8 rows when rows allow
constexpr int64_t kMaxRowChunks = 256;

// Threads per row block: a multiple of 32 covering C, at most kMaxThreads.
inline int threads_for(int64_t C) {
  return C >= kMaxThreads ? kMaxThreads : int((C + 31) / 32 * 32);
}
inline unsigned grid_for_rows(int64_t rows) { return unsigned(std::min<int64_t>(rows, 65535)); }

// ----------------------------------------------------------------------------
// CUDA kernels

template <class T, bool kCenter>
__global__ void norm_forward_kernel(T* sum_out, T* out, T* mean, T* rstd, const T* x,
                                    const T* res, const T* weight, const T* bias, int64_t rows,
                                    int64_t C, T eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    if (res) {
      T* s = sum_out + r * C;
      const T* rr = res + r * C;
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s[c] = xr[c] + rr[c];
      xr = s;
    }
    T m = T(0);
    if (kCenter) {
      T sum = T(0);
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) sum += xr[c];
      m = block_sum(sum) / T(C);
    }
    // Second pass over x for the (centred) squares: no E[x^2] - E[x]^2 cancellation.
    T sq = T(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const T d = xr[c] - m;
      sq += d * d;
    }
    const T rs = T(1) / sqrt(block_sum(sq) / T(C) + eps);
    T* o = out + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      T v = (xr[c] - m) * rs;
      if (weight) v *= weight[c];
      if (bias) v += bias[c];
      o[c] = v;
    }
    if (threadIdx.x == 0) {
      if (mean) mean[r] = m;
      if (rstd) rstd[r] = rs;
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight;
// RMSNorm (kCenter false) has no mean, hence no mean(g) term.
template <class T, bool kCenter>
__global__ void norm_backward_dx_kernel(T* dx, const T* dout, const T* x, const T* weight,
                                        const T* mean, const T* rstd, int64_t rows, int64_t C) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * C;
    const T* gr = dout + r * C;
    const T m = kCenter ? mean[r] : T(0), rs = rstd[r];
    T g_sum = T(0), g_xhat_sum = T(0);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const T g = weight ? gr[c] * weight[c] : gr[c];
      g_sum += g;
      g_xhat_sum += g * ((xr[c] - m) * rs);
    }
    const T g_mean = kCenter ? block_sum(g_sum) / T(C) : T(0);
    const T g_xhat_mean = block_sum(g_xhat_sum) / T(C);
    T* d = dx + r * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const T g = weight ? gr[c] * weight[c] : gr[c];
      const T xhat = (xr[c] - m) * rs;
      // term 1 (direct) - term 2 (through the mean) - term 3 (through rstd)
      d[c] = rs * (g - g_mean - xhat * g_xhat_mean);
    }
  }
}

// Pass 1: block (blockIdx.x, blockIdx.y) sums rows blockIdx.y * 8 + threadIdx.y
// (stride gridDim.y * 8) of columns blockIdx.x * 32 + threadIdx.x, then adds
// its 8 row lanes in order. block_sum does not fit: it reduces the whole
// block to one value, and here each of the 32 columns needs its own sum.
// partial_dw, partial_db: [gridDim.y, C]; partial_db may be nullptr.
template <class T>
__global__ void norm_param_grads_partial_kernel(T* partial_dw, T* partial_db, const T* dout,
                                                const T* x, const T* mean, const T* rstd,
                                                int64_t rows, int64_t C) {
  __shared__ T lane_dw[kTileRows][kTileCols];
  __shared__ T lane_db[kTileRows][kTileCols];
  const int64_t c = int64_t(blockIdx.x) * kTileCols + threadIdx.x;
  T dw = T(0), db = T(0);
  if (c < C) {
    for (int64_t r = int64_t(blockIdx.y) * kTileRows + threadIdx.y; r < rows;
         r += int64_t(gridDim.y) * kTileRows) {
      const T g = dout[r * C + c];
      const T m = mean ? mean[r] : T(0);
      dw += g * ((x[r * C + c] - m) * rstd[r]);
      db += g;
    }
  }
  lane_dw[threadIdx.y][threadIdx.x] = dw;
  lane_db[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    T sum_dw = T(0), sum_db = T(0);
    for (int k = 0; k < kTileRows; ++k) {
      sum_dw += lane_dw[k][threadIdx.x];
      sum_db += lane_db[k][threadIdx.x];
    }
    partial_dw[int64_t(blockIdx.y) * C + c] = sum_dw;
    if (partial_db) partial_db[int64_t(blockIdx.y) * C + c] = sum_db;
  }
}

// Pass 2: dweight[c] += sum_k partial_dw[k, c] (and dbias), k in order.
template <class T>
__global__ void norm_param_grads_finish_kernel(T* dweight, T* dbias, const T* partial_dw,
                                               const T* partial_db, int64_t chunks, int64_t C) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C;
       c += int64_t(gridDim.x) * blockDim.x) {
    T sum_dw = T(0), sum_db = T(0);
    for (int64_t k = 0; k < chunks; ++k) {
      sum_dw += partial_dw[k * C + c];
      if (partial_db) sum_db += partial_db[k * C + c];
    }
    if (dweight) dweight[c] += sum_dw;
    if (dbias) dbias[c] += sum_db;
  }
}

// ----------------------------------------------------------------------------
// launch helpers

template <class T, bool kCenter>
void norm_forward(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res, const T* weight,
                  const T* bias, int64_t rows, int64_t C, double eps) {
  if (rows == 0 || C == 0) return;
  norm_forward_kernel<T, kCenter><<<grid_for_rows(rows), threads_for(C), 0, current_stream()>>>(
      sum, out, mean, rstd, x, res, weight, bias, rows, C, T(eps));
  CUDA_CHECK_LAUNCH("norm_forward_kernel");
}

template <class T, bool kCenter>
void norm_backward_dx(T* dx, const T* dout, const T* x, const T* weight, const T* mean,
                      const T* rstd, int64_t rows, int64_t C) {
  if (!dx || rows == 0 || C == 0) return;
  norm_backward_dx_kernel<T, kCenter>
      <<<grid_for_rows(rows), threads_for(C), 0, current_stream()>>>(dx, dout, x, weight, mean,
                                                                       rstd, rows, C);
  CUDA_CHECK_LAUNCH("norm_backward_dx_kernel");
}

// mean == nullptr: RMSNorm (xhat = x * rstd).
template <class T>
void norm_param_grads(T* dweight, T* dbias, const T* dout, const T* x, const T* mean,
                      const T* rstd, int64_t rows, int64_t C) {
  if ((!dweight && !dbias) || rows == 0 || C == 0) return;
  const int64_t chunks = std::min(kMaxRowChunks, (rows + kRowsPerChunk - 1) / kRowsPerChunk);
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  // Freed on return: the caching allocator hands the block out again only to
  // work queued later on the same stream, after these kernels.
  const Tensor scratch =
      Tensor::empty({2, chunks, C}, dtype_of<T>::value, Device::cuda(device));
  T* partial_dw = scratch.data<T>();
  T* partial_db = dbias ? partial_dw + chunks * C : nullptr;
  const dim3 grid(unsigned((C + kTileCols - 1) / kTileCols), unsigned(chunks));
  norm_param_grads_partial_kernel<T><<<grid, dim3(kTileCols, kTileRows), 0, current_stream()>>>(
      partial_dw, partial_db, dout, x, mean, rstd, rows, C);
  CUDA_CHECK_LAUNCH("norm_param_grads_partial_kernel");
  norm_param_grads_finish_kernel<T><<<blocks_for(C, kMaxThreads), kMaxThreads, 0,
                                      current_stream()>>>(dweight, dbias, partial_dw, partial_db,
                                                          chunks, C);
  CUDA_CHECK_LAUNCH("norm_param_grads_finish_kernel");
}

}  // namespace

// ----------------------------------------------------------------------------
// kernel launchers

template <class T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t C, double eps) {
  norm_forward<T, true>(nullptr, out, mean, rstd, x, nullptr, weight, bias, rows, C, eps);
}

template <class T>
void add_layer_norm_forward(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res,
                            const T* weight, const T* bias, int64_t rows, int64_t C, double eps) {
  norm_forward<T, true>(sum, out, mean, rstd, x, res, weight, bias, rows, C, eps);
}

template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                         const T* mean, const T* rstd, int64_t rows, int64_t C) {
  norm_backward_dx<T, true>(dx, dout, x, weight, mean, rstd, rows, C);
  norm_param_grads<T>(dweight, dbias, dout, x, mean, rstd, rows, C);
}

template <class T>
void rms_norm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t rows, int64_t C,
                      double eps) {
  norm_forward<T, false>(nullptr, out, nullptr, rstd, x, nullptr, weight, nullptr, rows, C, eps);
}

template <class T>
void add_rms_norm_forward(T* sum, T* out, T* rstd, const T* x, const T* res, const T* weight,
                          int64_t rows, int64_t C, double eps) {
  norm_forward<T, false>(sum, out, nullptr, rstd, x, res, weight, nullptr, rows, C, eps);
}

template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight,
                       const T* rstd, int64_t rows, int64_t C) {
  norm_backward_dx<T, false>(dx, dout, x, weight, nullptr, rstd, rows, C);
  norm_param_grads<T>(dweight, nullptr, dout, x, nullptr, rstd, rows, C);
}

#define GL_INSTANTIATE(T)                                                                    \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,     \
                                      int64_t, double);                                      \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                       const T*, int64_t, int64_t);                          \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);   \
  template void add_layer_norm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*,       \
                                          const T*, int64_t, int64_t, double);                \
  template void add_rms_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,    \
                                        int64_t, double);                                     \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                     int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
