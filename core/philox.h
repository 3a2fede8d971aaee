// Philox4x32-10 counter-based RNG (Salmon et al., "Parallel random numbers:
// as easy as 1, 2, 3", SC'11), the generator behind torch/cuRAND's Philox.
// It is a pure function of (key, counter), so the CPU and every CUDA thread
// compute the same numbers for the same (seed, offset) without shared state.
//
// gridlock's streams address Philox counter blocks. A generator holds
// (seed, offset) with offset counted in blocks. A uniform draw of k values
// starting at block o gives value i = lane i % 4 of philox(o + i / 4) and
// advances the offset by ceil(k / 4); a normal draw gives value i from block
// o + i and advances it by k. Successive draws never reuse a block.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define GL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GL_HOST_DEVICE inline
#endif

namespace gl {

struct Philox4 {
  uint32_t v[4];
};

GL_HOST_DEVICE uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// The full generator: 128-bit counter, 64-bit key (Random123's
// philox4x32_10, checked against its published known-answer vectors).
GL_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  // Constants from Random123 (philox.h): multipliers and Weyl key increments.
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t c0 = ctr.v[0], c1 = ctr.v[1], c2 = ctr.v[2], c3 = ctr.v[3];
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(M0, c0, &hi0);
    const uint32_t lo1 = philox_mulhilo(M1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += W0; k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// gridlock's use: a 64-bit block counter (the upper counter words stay 0)
// and the 64-bit seed as the key.
GL_HOST_DEVICE Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
  return philox4x32_10(Philox4{{uint32_t(counter), uint32_t(counter >> 32), 0u, 0u}},
                       uint32_t(seed), uint32_t(seed >> 32));
}

// A generator is plain data: which stream, and how far into it.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // in counter blocks
  explicit Generator(uint64_t s = 0, uint64_t o = 0) : seed(s), offset(o) {}
  // Reserves `blocks` counter blocks and returns the first.
  uint64_t advance(uint64_t blocks) {
    const uint64_t start = offset;
    offset += blocks;
    return start;
  }
};

// Value i of a u32 draw starting at block `offset`.
GL_HOST_DEVICE uint32_t philox_u32(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox4x32_10(offset + (i >> 2), seed).v[i & 3];
}

// Uniform in [0, 1) with 24 random bits: exact in f32 on every device.
GL_HOST_DEVICE float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return float(philox_u32(seed, offset, i) >> 8) * (1.0f / 16777216.0f);
}

// Standard normal, value i of a draw at block `offset`: Box-Muller on lanes
// 0 and 1 of block offset + i, computed in f64 so the f32 result agrees
// across devices up to the last-ulp behaviour of log/cos.
GL_HOST_DEVICE double philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  const Philox4 r = philox4x32_10(offset + i, seed);
  const double u1 = (double(r.v[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  const double u2 = double(r.v[1]) * (1.0 / 4294967296.0);          // [0, 1)
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

}  // namespace gl
