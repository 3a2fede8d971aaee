// 4-bit packed matrix product on CUDA (contract and layout in
// cpu/q4_matmul.h). One warp per output row n and a tile of up to 8 input
// rows per blockIdx.y: each lane loads one 32-bit word of the row (8 codes:
// bytes 4*sub..4*sub+3 of a 16-byte block, i.e. codes j..j+3 in the low
// nibbles and j+16..j+19 in the high ones), so a warp reads 128 contiguous
// bytes (8 blocks) per step, decodes them to f32 with explicitly rounded
// operations (__fmul_rn / __fadd_rn: no contraction, bit-identical to the
// CPU decode) and accumulates w * x in T. A shuffle tree sums the lanes
// (fixed order: deterministic, no atomics), lane 0 adds the bias. At batch 1
// this is bound by the weight bytes, half a byte per value.
#include "cuda/common.cuh"
#include "cuda/q4_matmul.h"

namespace gl::cuda {

namespace {

constexpr int kWarps = 4;         // output rows per block
constexpr int kRowsPerTile = 8;   // x rows per blockIdx.y
constexpr int kThreads = 256;     // dequantize kernel

// Sizes the kernels need, computed on the host (Q4Layout's helpers are
// host code).
struct Q4Args {
  int64_t N, K, G, words, groups;
  int code_offset;
};

Q4Args args_of(const Q4Layout& l) {
  return {l.N, l.K, l.group, l.words_per_row(), l.groups_per_row(), l.code_offset};
}

template <Q4Decode D>
__device__ __forceinline__ float decode_value(int u, float s, float z, int code_offset) {
  if constexpr (D == Q4Decode::SYMMETRIC) return __fmul_rn(float(u + code_offset), s);
  else if constexpr (D == Q4Decode::ASYM_ZERO) return __fmul_rn(s, __fsub_rn(float(u), z));
  else return __fadd_rn(__fmul_rn(float(u), s), z);
}

// kUniform: the group is a multiple of 32, so a block (and a lane's 8
// codes) has one scale and K has no partial block.
template <class T, Q4Decode D, bool kUniform>
__global__ void q4_matmul_forward_kernel(T* out, const T* x, const int32_t* codes,
                                         const float* scales, const float* zeros, const T* bias,
                                         int64_t M, Q4Args a) {
  const int lane = threadIdx.x & 31;
  const int64_t n = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  if (n >= a.N) return;  // the whole warp leaves together
  const int64_t m0 = blockIdx.y * int64_t(kRowsPerTile);
  const int64_t mc = M - m0 < kRowsPerTile ? M - m0 : kRowsPerTile;
  const int32_t* row = codes + n * a.words;
  const float* s_row = scales + n * a.groups;
  const float* z_row = zeros ? zeros + n * a.groups : nullptr;
  const int sub = lane & 3;
  const int64_t blocks = a.words / 4;
  T acc[kRowsPerTile];
#pragma unroll
  for (int m = 0; m < kRowsPerTile; ++m) acc[m] = T(0);
  for (int64_t b = lane >> 2; b < blocks; b += 8) {
    const uint32_t word = uint32_t(__ldg(row + b * 4 + sub));
    const int64_t k_lo = b * Q4_BLOCK + sub * 4;  // codes k_lo..+3 and k_lo+16..+19
    float w[8];
    bool valid[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int u_lo = (word >> (8 * i)) & 15, u_hi = (word >> (8 * i + 4)) & 15;
      const int64_t k0 = k_lo + i, k1 = k_lo + 16 + i;
      if (kUniform) {
        const int64_t g = (b * Q4_BLOCK) / a.G;
        const float s = s_row[g], z = z_row ? z_row[g] : 0.0f;
        w[i] = decode_value<D>(u_lo, s, z, a.code_offset);
        w[4 + i] = decode_value<D>(u_hi, s, z, a.code_offset);
        valid[i] = valid[4 + i] = true;
      } else {
        valid[i] = k0 < a.K;
        valid[4 + i] = k1 < a.K;
        const int64_t g0 = valid[i] ? k0 / a.G : 0, g1 = valid[4 + i] ? k1 / a.G : 0;
        w[i] = decode_value<D>(u_lo, s_row[g0], z_row ? z_row[g0] : 0.0f, a.code_offset);
        w[4 + i] = decode_value<D>(u_hi, s_row[g1], z_row ? z_row[g1] : 0.0f, a.code_offset);
      }
    }
#pragma unroll
    for (int m = 0; m < kRowsPerTile; ++m) {
      if (m >= mc) break;
      const T* xr = x + (m0 + m) * a.K;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (valid[i]) acc[m] = fma(T(w[i]), xr[k_lo + i], acc[m]);
        if (valid[4 + i]) acc[m] = fma(T(w[4 + i]), xr[k_lo + 16 + i], acc[m]);
      }
    }
  }
#pragma unroll
  for (int m = 0; m < kRowsPerTile; ++m) {
    if (m >= mc) break;
    T v = acc[m];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) out[(m0 + m) * a.N + n] = bias ? v + bias[n] : v;
  }
}

template <Q4Decode D>
__global__ void q4_dequantize_kernel(float* w, const int32_t* codes, const float* scales,
                                     const float* zeros, Q4Args a) {
  const int64_t total = a.N * a.K;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = i / a.K, k = i % a.K, j = k % Q4_BLOCK;
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(codes + n * a.words);
    const uint8_t byte = bytes[(k - j) / 2 + j % 16];
    const int u = j < 16 ? byte & 15 : byte >> 4;
    const int64_t g = n * a.groups + k / a.G;
    w[i] = decode_value<D>(u, scales[g], zeros ? zeros[g] : 0.0f, a.code_offset);
  }
}

template <class T, Q4Decode D>
void launch_forward(T* out, const T* x, const int32_t* codes, const float* scales,
                    const float* zeros, const T* bias, int64_t M, const Q4Layout& l) {
  const Q4Args a = args_of(l);
  const bool uniform = l.group % Q4_BLOCK == 0;
  // blockIdx.y is at most 65535: larger M is run in slices of x rows.
  const int64_t max_rows = int64_t(65535) * kRowsPerTile;
  for (int64_t m0 = 0; m0 < M; m0 += max_rows) {
    const int64_t rows = M - m0 < max_rows ? M - m0 : max_rows;
    const dim3 grid(unsigned((l.N + kWarps - 1) / kWarps),
                    unsigned((rows + kRowsPerTile - 1) / kRowsPerTile));
    if (uniform)
      q4_matmul_forward_kernel<T, D, true><<<grid, kWarps * 32, 0, current_stream()>>>(
          out + m0 * l.N, x + m0 * l.K, codes, scales, zeros, bias, rows, a);
    else
      q4_matmul_forward_kernel<T, D, false><<<grid, kWarps * 32, 0, current_stream()>>>(
          out + m0 * l.N, x + m0 * l.K, codes, scales, zeros, bias, rows, a);
    CUDA_CHECK_LAUNCH("q4_matmul_forward_kernel");
  }
}

}  // namespace

template <class T>
void q4_matmul_forward(T* out, const T* x, const int32_t* codes, const float* scales,
                       const float* zeros, const T* bias, int64_t M, const Q4Layout& l) {
  if (M == 0 || l.N == 0) return;
  switch (l.decode) {
    case Q4Decode::SYMMETRIC:
      launch_forward<T, Q4Decode::SYMMETRIC>(out, x, codes, scales, nullptr, bias, M, l);
      break;
    case Q4Decode::ASYM_ZERO:
      launch_forward<T, Q4Decode::ASYM_ZERO>(out, x, codes, scales, zeros, bias, M, l);
      break;
    case Q4Decode::ASYM_MIN:
      launch_forward<T, Q4Decode::ASYM_MIN>(out, x, codes, scales, zeros, bias, M, l);
      break;
  }
}

void q4_dequantize(float* w, const int32_t* codes, const float* scales, const float* zeros,
                   const Q4Layout& l) {
  const int64_t total = l.N * l.K;
  if (total == 0) return;
  const Q4Args a = args_of(l);
  const unsigned grid = blocks_for(total, kThreads);
  switch (l.decode) {
    case Q4Decode::SYMMETRIC:
      q4_dequantize_kernel<Q4Decode::SYMMETRIC><<<grid, kThreads, 0, current_stream()>>>(
          w, codes, scales, nullptr, a);
      break;
    case Q4Decode::ASYM_ZERO:
      q4_dequantize_kernel<Q4Decode::ASYM_ZERO><<<grid, kThreads, 0, current_stream()>>>(
          w, codes, scales, zeros, a);
      break;
    case Q4Decode::ASYM_MIN:
      q4_dequantize_kernel<Q4Decode::ASYM_MIN><<<grid, kThreads, 0, current_stream()>>>(
          w, codes, scales, zeros, a);
      break;
  }
  CUDA_CHECK_LAUNCH("q4_dequantize_kernel");
}

template void q4_matmul_forward<float>(float*, const float*, const int32_t*, const float*,
                                       const float*, const float*, int64_t, const Q4Layout&);
template void q4_matmul_forward<double>(double*, const double*, const int32_t*, const float*,
                                        const float*, const double*, int64_t, const Q4Layout&);

}  // namespace gl::cuda
