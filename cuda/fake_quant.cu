// Fake-quantization CUDA kernels (contracts in cpu/fake_quant.h). The
// elementwise kernels are grid-stride loops over the contiguous x that call
// the same fq:: helpers as the CPU; the LSQ scale gradient gives each scale
// entry one block that sums its elements in double (block_sum): no atomics,
// the same result on every run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/common.cuh"
#include "cuda/fake_quant.h"
#include "cuda/reduce_utils.cuh"
#include "cpu/fake_quant_math.h"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t scale_index(const FakeQuantParams& p, int64_t i) {
  const int64_t r = i / p.cols, g = (i % p.cols) / p.group_size;
  return (p.scale_rows == 1 ? 0 : r) * p.groups() + g;
}

template <class T>
__global__ void fake_quant_forward_kernel(T* out, const T* x, const T* scale, const T* zero,
                                          FakeQuantParams p) {
  const int64_t n = p.rows * p.cols;
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = scale_index(p, i);
    const T s = scale[k], z = zero ? zero[k] : T(0);
    const T rq = fq::round_by(p.rounding, x[i] / s,
                              fq::stochastic_u(p.rounding, p.seed, p.offset, i));
    out[i] = (fq::clamp_level(rq + z, qmin, qmax) - z) * s;
  }
}

// fake_quant_forward_kernel for f32 that also stores the element's 16-bit
// rounding (H: __nv_bfloat16 or __half) in the same pass: the shadow costs
// a 2-byte write per element, where each product casting x_hat would read
// 4 bytes and write 2 (the rounding is Tensor::to's on the device).
__device__ __forceinline__ void store_half(__nv_bfloat16* p, float v) {
  *p = __float2bfloat16_rn(v);
}
__device__ __forceinline__ void store_half(__half* p, float v) { *p = __float2half_rn(v); }

template <class H>
__global__ void fake_quant_forward_lowp_kernel(float* out, H* out_half, const float* x,
                                               const float* scale, const float* zero,
                                               FakeQuantParams p) {
  const int64_t n = p.rows * p.cols;
  const float qmin = float(p.qmin), qmax = float(p.qmax);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = scale_index(p, i);
    const float s = scale[k], z = zero ? zero[k] : 0.f;
    const float rq = fq::round_by(p.rounding, x[i] / s,
                                  fq::stochastic_u(p.rounding, p.seed, p.offset, i));
    const float v = (fq::clamp_level(rq + z, qmin, qmax) - z) * s;
    out[i] = v;
    store_half(&out_half[i], v);
  }
}

template <class T>
__global__ void fake_quant_backward_x_kernel(T* dx, const T* dout, const T* x, const T* scale,
                                             const T* zero, FakeQuantParams p) {
  const int64_t n = p.rows * p.cols;
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = scale_index(p, i);
    const T s = scale[k], z = zero ? zero[k] : T(0);
    const T rq = fq::round_by(p.rounding, x[i] / s,
                              fq::stochastic_u(p.rounding, p.seed, p.offset, i));
    dx[i] = fq::level_inside(rq + z, qmin, qmax) ? dout[i] : T(0);
  }
}

// Block b (grid-stride over entries) sums entry k's elements: group g of
// row r for a per-row scale, or group g of every row for a shared one.
template <class T>
__global__ void fake_quant_backward_scale_kernel(T* dscale, const T* dout, const T* x,
                                                 const T* scale, const T* zero,
                                                 FakeQuantParams p, double grad_scale) {
  const int64_t G = p.groups(), entries = p.scale_rows * G;
  const int64_t per_entry = (p.scale_rows == 1 ? p.rows : 1) * p.group_size;
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  for (int64_t k = blockIdx.x; k < entries; k += gridDim.x) {
    const T s = scale[k], z = zero ? zero[k] : T(0);
    const int64_t row0 = p.scale_rows == 1 ? 0 : k / G, g = k % G;
    double acc = 0;
    for (int64_t e = threadIdx.x; e < per_entry; e += blockDim.x) {
      const int64_t i = (row0 + e / p.group_size) * p.cols + g * p.group_size + e % p.group_size;
      const T v = x[i] / s;
      const T rq = fq::round_by(p.rounding, v, fq::stochastic_u(p.rounding, p.seed, p.offset, i));
      acc += double(dout[i]) * double(fq::lsq_dxhat_dscale(v, rq, z, qmin, qmax));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dscale[k] = T(acc * grad_scale);
  }
}

// One block per row (grid-stride): the row's min and max, both starting at
// 0 as on the CPU (fmin/fmax skip NaN as the CPU's comparisons do).
template <class T>
__global__ void per_token_params_kernel(T* scale, T* zero, const T* x, int64_t rows, int64_t cols,
                                        bool symmetric, T qmin, T qmax) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * cols;
    T lo = T(0), hi = T(0);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      lo = min(lo, row[c]);
      hi = max(hi, row[c]);
    }
    hi = block_max(hi);
    lo = -block_max(-lo);
    if (threadIdx.x == 0) {
      T z = T(0);
      fq::per_token_params(&scale[r], &z, lo, hi, symmetric, qmin, qmax);
      if (!symmetric) zero[r] = z;
    }
  }
}

// One warp per group of G consecutive elements: the quantizer's ABSMAX
// rule (quant/quantizer.cpp scale_for_ratio, p = 1) in the same f32
// arithmetic, so the scales equal the CPU's bit for bit. An all-zero group
// gets s = 1, z = 0 (QAT's convention: the fused op needs s > 0, and s = 1
// maps those zeros to 0 just the same).
__global__ void group_absmax_scales_kernel(float* scale, float* zero, const float* w,
                                           int64_t n_groups, int64_t G, float div,
                                           bool asym_zero) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t k = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; k < n_groups;
       k += warps) {
    const float* g = w + k * G;
    // Symmetric: max |w|. Asymmetric (GPTQ's ASYM_ZERO): min and max with 0
    // in the range, so starting both at 0 is the CPU's min(mn, 0), max(mx, 0).
    float a = 0.f, lo = 0.f, hi = 0.f;
    for (int64_t j = lane; j < G; j += 32) {
      const float x = g[j];
      a = fmaxf(a, fabsf(x));
      lo = fminf(lo, x);
      hi = fmaxf(hi, x);
    }
    for (int o = 16; o > 0; o >>= 1) {
      a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
      lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (lane != 0) continue;
    if (!asym_zero) {
      const float sc = a / div;
      scale[k] = sc != 0.f ? sc : 1.f;
    } else {
      const float sc = (hi - lo) / div;
      scale[k] = sc != 0.f ? sc : 1.f;
      zero[k] = sc != 0.f ? rintf(-lo / sc) : 0.f;
    }
  }
}

unsigned grid_for_entries(int64_t n) {
  return unsigned(n < 1 ? 1 : (n > 65535LL * 32 ? 65535LL * 32 : n));
}

}  // namespace

template <class T>
void fake_quant_forward(T* out, const T* x, const T* scale, const T* zero,
                        const FakeQuantParams& p) {
  const int64_t n = p.rows * p.cols;
  if (n == 0) return;
  fake_quant_forward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, x, scale, zero, p);
  CUDA_CHECK_LAUNCH("fake_quant_forward_kernel");
}

void fake_quant_forward_lowp(float* out, uint16_t* out_half, const float* x, const float* scale,
                             const float* zero, const FakeQuantParams& p, bool f16) {
  const int64_t n = p.rows * p.cols;
  if (n == 0) return;
  const unsigned blocks = blocks_for(n, kThreads);
  if (f16)
    fake_quant_forward_lowp_kernel<<<blocks, kThreads, 0, current_stream()>>>(
        out, reinterpret_cast<__half*>(out_half), x, scale, zero, p);
  else
    fake_quant_forward_lowp_kernel<<<blocks, kThreads, 0, current_stream()>>>(
        out, reinterpret_cast<__nv_bfloat16*>(out_half), x, scale, zero, p);
  CUDA_CHECK_LAUNCH("fake_quant_forward_lowp_kernel");
}

template <class T>
void fake_quant_backward_x(T* dx, const T* dout, const T* x, const T* scale, const T* zero,
                           const FakeQuantParams& p) {
  const int64_t n = p.rows * p.cols;
  if (n == 0) return;
  fake_quant_backward_x_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      dx, dout, x, scale, zero, p);
  CUDA_CHECK_LAUNCH("fake_quant_backward_x_kernel");
}

template <class T>
void fake_quant_backward_scale(T* dscale, const T* dout, const T* x, const T* scale,
                               const T* zero, const FakeQuantParams& p, double grad_scale) {
  const int64_t entries = p.scale_rows * p.groups();
  if (entries == 0) return;
  const int64_t per_entry = (p.scale_rows == 1 ? p.rows : 1) * p.group_size;
  // Small groups (ggml's 32) would leave most of a 256-thread block idle:
  // size the block to the entry, in whole warps (block_sum needs them).
  const int threads = per_entry >= kThreads ? kThreads : int((per_entry + 31) / 32 * 32);
  fake_quant_backward_scale_kernel<T><<<grid_for_entries(entries), threads, 0,
                                        current_stream()>>>(dscale, dout, x, scale, zero, p,
                                                            grad_scale);
  CUDA_CHECK_LAUNCH("fake_quant_backward_scale_kernel");
}

template <class T>
void per_token_params(T* scale, T* zero, const T* x, int64_t rows, int64_t cols, bool symmetric,
                      double qmin, double qmax) {
  if (rows == 0) return;
  per_token_params_kernel<T><<<grid_for_entries(rows), kThreads, 0, current_stream()>>>(
      scale, zero, x, rows, cols, symmetric, T(qmin), T(qmax));
  CUDA_CHECK_LAUNCH("per_token_params_kernel");
}

void group_absmax_scales(float* scale, float* zero, const float* w, int64_t n_groups, int64_t G,
                         double divisor, bool asym_zero) {
  if (n_groups == 0) return;
  const int64_t blocks = (n_groups + kThreads / 32 - 1) / (kThreads / 32);
  group_absmax_scales_kernel<<<unsigned(blocks < 65535 * 32 ? blocks : 65535 * 32), kThreads, 0,
                               current_stream()>>>(scale, zero, w, n_groups, G, float(divisor),
                                                   asym_zero);
  CUDA_CHECK_LAUNCH("group_absmax_scales_kernel");
}

#define GL_INSTANTIATE(T)                                                                   \
  template void fake_quant_forward<T>(T*, const T*, const T*, const T*,                     \
                                      const FakeQuantParams&);                              \
  template void fake_quant_backward_x<T>(T*, const T*, const T*, const T*, const T*,        \
                                         const FakeQuantParams&);                           \
  template void fake_quant_backward_scale<T>(T*, const T*, const T*, const T*, const T*,    \
                                             const FakeQuantParams&, double);               \
  template void per_token_params<T>(T*, T*, const T*, int64_t, int64_t, bool, double, double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
