// Warp and block reductions shared by the normalisation, softmax, loss and
// reduction kernels. Block size must be a multiple of 32 and at most 1024.
#pragma once

namespace gl::cuda {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread of the block must call it and receives
// the result. The trailing barrier lets calls follow each other directly.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  const T total = lane < nwarps ? partial[lane] : T(0);
  __syncthreads();
  return warp_sum(total);
}

template <class T>
__device__ T block_max(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int nwarps = (blockDim.x + 31) >> 5;
  const T total = lane < nwarps ? partial[lane] : T(-INFINITY);
  __syncthreads();
  return warp_max(total);
}

}  // namespace gl::cuda
