// Embedding lookup (CUDA): see cpu/embedding.h.
//   embedding_forward_kernel   one thread per output element; a bad id
//                              writes 0 and lowers *bad_pos (integer
//                              atomicMin: the result is the first bad
//                              position whatever the schedule).
//   embedding_backward_kernel  one block per vocabulary row v: the block
//                              scans the tokens in tiles, marks those with
//                              id v, and adds their dout rows in token order,
//                              each column by one thread. Deterministic and
//                              bit-identical to the CPU order; rows whose id
//                              never occurs cost only the scan.
#include "cuda/common.cuh"
#include "cuda/embedding.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

template <class T, class I>
__global__ void embedding_forward_kernel(T* out, int64_t* bad_pos, const I* ids, const T* weight,
                                         int64_t N, int64_t V, int64_t C) {
  // Cw >= 1 so that ids are still checked when C == 0.
  const int64_t Cw = C > 0 ? C : 1;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < N * Cw;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = e / Cw, c = e % Cw;
    const int64_t id = int64_t(ids[n]);
    const bool bad = id < 0 || id >= V;
    if (bad && c == 0)
      atomicMin(reinterpret_cast<unsigned long long*>(bad_pos), (unsigned long long)(n));
    if (c < C) out[n * C + c] = bad ? T(0) : weight[id * C + c];
  }
}

template <class T, class I>
__global__ void embedding_backward_kernel(T* dweight, const T* dout, const I* ids, int64_t N,
                                          int64_t V, int64_t C) {
  __shared__ int hit[kThreads];
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    T* dst = dweight + v * C;
    for (int64_t n0 = 0; n0 < N; n0 += blockDim.x) {
      const int64_t n = n0 + threadIdx.x;
      const int match = n < N && int64_t(ids[n]) == v;
      hit[threadIdx.x] = match;
      // A barrier as well: hit[] is complete once any is known.
      if (__syncthreads_or(match)) {
        const int tile = int(N - n0 < int64_t(blockDim.x) ? N - n0 : int64_t(blockDim.x));
        for (int j = 0; j < tile; ++j) {
          if (!hit[j]) continue;
          const T* src = dout + (n0 + j) * C;
          for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] += src[c];
        }
      }
      __syncthreads();  // hit[] is rewritten by the next tile
    }
  }
}

}  // namespace

template <class T, class I>
void embedding_forward(T* out, int64_t* bad_pos, const I* ids, const T* weight, int64_t N,
                       int64_t V, int64_t C) {
  if (N == 0) return;
  const int64_t work = N * (C > 0 ? C : 1);
  embedding_forward_kernel<T, I><<<blocks_for(work, kThreads), kThreads, 0, current_stream()>>>(
      out, bad_pos, ids, weight, N, V, C);
  CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

template <class T, class I>
void embedding_backward(T* dweight, const T* dout, const I* ids, int64_t N, int64_t V,
                        int64_t C) {
  if (N == 0 || V == 0 || C == 0) return;
  const unsigned grid = unsigned(V < 65535 * 16 ? V : 65535 * 16);
  embedding_backward_kernel<T, I><<<grid, kThreads, 0, current_stream()>>>(dweight, dout, ids, N,
                                                                           V, C);
  CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

#define GL_INSTANTIATE(T, I)                                                                   \
  template void embedding_forward<T, I>(T*, int64_t*, const I*, const T*, int64_t, int64_t,    \
                                        int64_t);                                              \
  template void embedding_backward<T, I>(T*, const T*, const I*, int64_t, int64_t, int64_t);
GL_INSTANTIATE(float, int32_t)
GL_INSTANTIATE(float, int64_t)
GL_INSTANTIATE(double, int32_t)
GL_INSTANTIATE(double, int64_t)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
