// FlashAttention-2 with bf16 / f16 operands on the warp-level tensor-core
// instruction mma.sync.m16n8k16 (f32 accumulation), scores and
// probabilities kept in registers: what run.precision bf16 / f16 runs for
// attention. Same contract and numerics as cuda/flash_attention_tc.cu's
// 16-bit WMMA kernels (the fallback): q, k, v, dout rounded to nearest even
// as their tiles load, P and dS rounded before the products that take
// them, the softmax, its statistics, D and the outputs in f32 (Dao,
// FlashAttention-2, arXiv 2307.08691, Algorithms 1 and 2; dq and dk/dv in
// separate kernels, as the WMMA ones, so no atomics).
//
// Four warps per block, 64 query rows, warp w the 16-row strip 16w..16w+15.
// A warp holds its Q fragments for the whole key loop; per 64-key tile it
// computes S = Q K^T as eight 16 x 8 accumulator tiles, the scaled and
// masked row maxima over the four lanes that share a row (shuffles), the
// probabilities in place, and O += P V with P's A fragments made from the
// accumulators directly (cuda/mma_layout.h: tile_of_a, c_of_a). No score
// ever reaches shared memory. The backward kernels follow the same pattern:
// dq per query tile over the key tiles (S and dP in registers, dS reused as
// the A fragment of dS K), dk/dv per key tile over the query tiles (S^T
// and dP^T, then P^T dO and dS^T Q). Operand fragments are read from the
// shared-memory tiles when used (holding them would cost 64 registers more
// at head size 128). Fragment indices all come from cuda/mma_layout.h,
// whose layout the CPU tests check against the PTX ISA.
#include "cuda/flash_attention_mma_body.h"

#include <cstdlib>
#include <cstring>

#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

using namespace mma_attention;

// The execution policy of the kernel bodies on the GPU.
struct DeviceArch {
  static __device__ __forceinline__ int tid() { return threadIdx.x; }
  static __device__ __forceinline__ int bx() { return blockIdx.x; }
  static __device__ __forceinline__ int by() { return blockIdx.y; }
  static __device__ __forceinline__ void sync() { __syncthreads(); }
  static __device__ __forceinline__ float shfl_xor(float v, int mask) {
    return __shfl_xor_sync(0xffffffffu, v, mask);
  }
  static __device__ __forceinline__ unsigned char* smem() {
    extern __shared__ __align__(16) unsigned char smem_mma[];
    return smem_mma;
  }
  template <class E>
  static __device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
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
};

template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) mma_forward_kernel(float* out, float* lse, const float* q,
                                                               const float* k, const float* v, int64_t Tq,
                                                               int64_t Tk, int HS, float scale) {
  forward_body<HSP, E, DeviceArch>(out, lse, q, k, v, Tq, Tk, HS, scale);
}

template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) mma_dq_kernel(float* dq, float* delta, const float* dout,
                                                          const float* q, const float* k, const float* v,
                                                          const float* out, const float* lse, int64_t Tq,
                                                          int64_t Tk, int HS, float scale) {
  dq_body<HSP, E, DeviceArch>(dq, delta, dout, q, k, v, out, lse, Tq, Tk, HS, scale);
}

template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) mma_dkv_kernel(float* dk, float* dv, const float* dout,
                                                           const float* q, const float* k, const float* v,
                                                           const float* lse, const float* delta, int64_t Tq,
                                                           int64_t Tk, int HS, float scale) {
  dkv_body<HSP, E, DeviceArch>(dk, dv, dout, q, k, v, lse, delta, Tq, Tk, HS, scale);
}

template <int HSP, class E>
void mma_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* q,
                  const float* k, const float* v, const float* out, const float* lse, int64_t BH, int64_t Tq,
                  int64_t Tk, int HS, float scale) {
  GL_CHECK(BH <= 65535, "cuda attention: batch x heads = ", BH, " exceeds the grid limit 65535");
  const size_t tiles = size_t(4) * kTile * (HSP + 8) * sizeof(E);
  if (Tq > 0) {
    auto kernel = mma_dq_kernel<HSP, E>;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(tiles)));
    kernel<<<dim3(unsigned((Tq + kTile - 1) / kTile), unsigned(BH)), kThreads, tiles, current_stream()>>>(
        dq, delta, dout, q, k, v, out, lse, Tq, Tk, HS, scale);
    CUDA_CHECK_LAUNCH("mma_dq_kernel");
  }
  const size_t bytes = tiles + 2 * kTile * sizeof(float);
  auto kernel = mma_dkv_kernel<HSP, E>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  kernel<<<dim3(unsigned((Tk + kTile - 1) / kTile), unsigned(BH)), kThreads, bytes, current_stream()>>>(
      dk, dv, dout, q, k, v, lse, delta, Tq, Tk, HS, scale);
  CUDA_CHECK_LAUNCH("mma_dkv_kernel");
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

// GRIDLOCK_ATTENTION_MMA=0 selects the WMMA kernels at start-up (a way
// around a fault in these without a rebuild).
bool mma_default() {
  const char* e = std::getenv("GRIDLOCK_ATTENTION_MMA");
  return !(e && std::strcmp(e, "0") == 0);
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

void flash_attention_mma_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                                  const float* q, const float* k, const float* v, const float* out,
                                  const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS, double scale,
                                  bool f16) {
  if (BH * Tk == 0) return;
  auto run = [&](auto tag) {
    using E = decltype(tag);
    const float sc = float(scale);
    if (HS <= 32) return mma_backward<32, E>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS), sc);
    if (HS <= 64) return mma_backward<64, E>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS), sc);
    mma_backward<128, E>(dq, dk, dv, delta, dout, q, k, v, out, lse, BH, Tq, Tk, int(HS), sc);
  };
  if (f16) run(__half{});
  else run(__nv_bfloat16{});
}

}  // namespace gl::cuda
