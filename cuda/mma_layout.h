// Which matrix element each lane holds in the fragments of the warp-level
// tensor-core instruction mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}
// (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"):
// with g = lane / 4 and t = lane % 4,
//   A (16 x 16, 8 values a0..a7 in four 32-bit registers, two per register):
//     row g for a0, a1, a4, a5 and g + 8 otherwise;
//     column 2t + (i & 1), plus 8 for a4..a7.
//   B (16 x 8, four values b0..b3 in two registers):
//     row (k) 2t + (i & 1), plus 8 for b2, b3; column (n) g.
//   C, D (16 x 8 f32, four values c0..c3):
//     row g for c0, c1 and g + 8 for c2, c3; column 2t + (i & 1).
// cuda/flash_attention_mma.cu computes every fragment index through these
// functions; tests/cuda_layout checks them on the CPU (each matrix element
// held exactly once, the spec's examples, and the identity the attention
// kernel relies on: the accumulators of two adjacent 16 x 8 products are,
// register for register, an A fragment of the next product).
#pragma once

#ifdef __CUDACC__
#define GL_HD __host__ __device__
#else
#define GL_HD
#endif

namespace gl::cuda::mma {

struct RowCol {
  int row, col;
};

GL_HD constexpr RowCol a_elem(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {(i & 2) ? g + 8 : g, 2 * t + (i & 1) + ((i & 4) ? 8 : 0)};
}

GL_HD constexpr RowCol b_elem(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {2 * t + (i & 1) + ((i & 2) ? 8 : 0), g};
}

GL_HD constexpr RowCol c_elem(int lane, int i) {
  const int g = lane >> 2, t = lane & 3;
  return {(i & 2) ? g + 8 : g, 2 * t + (i & 1)};
}

}  // namespace gl::cuda::mma

namespace gl::cuda::mma {

// The A fragment of a 16 x 16 product whose columns are those of two
// adjacent 16 x 8 accumulator tiles (2m, 2m + 1), as FlashAttention-2 reuses
// the scores S = Q K^T as the probabilities of O += P V without leaving the
// registers: element i of A is element c_of_a(i) of tile 2m + tile_of_a(i).
GL_HD constexpr int tile_of_a(int i) { return (i & 4) ? 1 : 0; }
GL_HD constexpr int c_of_a(int i) { return i & 3; }

}  // namespace gl::cuda::mma
