// quant/ggml_blocks: hand-computed blocks for ggml's reference rules
// (spec.md 4.1): the spec's test vector byte for byte, half-way ties, all-zero
// blocks, a single huge outlier, which sign wins the extreme, tiny
// (subnormal-range) blocks, the f16 conversions, sizes and errors. The
// byte-identity with llama.cpp's gguf-py on thousands of random and
// adversarial blocks is tests/reference/quant_blocks_ref.py (label reference).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/ggml_blocks.h"

using namespace gl;

namespace {

std::vector<float> roundtrip(GgmlType t, const std::vector<float>& x) {
  const std::vector<uint8_t> bytes = ggml_quantize(t, x.data(), int64_t(x.size()));
  std::vector<float> y(x.size());
  ggml_dequantize(t, bytes.data(), int64_t(x.size()), y.data());
  return y;
}

uint16_t f16_bits_at(const std::vector<uint8_t>& b, size_t at) {
  return uint16_t(b[at] | (b[at + 1] << 8));  // little-endian
}

// Q4_0 code (0..15) of element j of a block, following the nibble order.
int q4_code(const uint8_t* qs, int j) {
  return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

}  // namespace

TEST_CASE("ggml blocks: sizes and row bytes") {
  CHECK(ggml_type_size(GgmlType::Q4_0) == 18);
  CHECK(ggml_type_size(GgmlType::Q4_1) == 20);
  CHECK(ggml_type_size(GgmlType::Q8_0) == 34);
  CHECK(ggml_row_bytes(GgmlType::Q4_0, 768) == 24 * 18);
  CHECK(ggml_row_bytes(GgmlType::Q8_0, 64) == 68);
  CHECK(ggml_row_bytes(GgmlType::F16, 3) == 6);
  CHECK(ggml_row_bytes(GgmlType::BF16, 5) == 10);
  CHECK(ggml_row_bytes(GgmlType::F32, 7) == 28);
  CHECK_THROWS_WITH_AS(ggml_row_bytes(GgmlType::Q4_0, 33),
                       doctest::Contains("Q4_0: 33 values is not a multiple of the block size 32"),
                       Error);
  std::vector<float> x(40, 1.0f);
  CHECK_THROWS_WITH_AS(ggml_quantize(GgmlType::Q8_0, x.data(), 40),
                       doctest::Contains("Q8_0: 40 values"), Error);
}

TEST_CASE("ggml blocks: Q4_0 reproduces the spec.md 4.1 test vector") {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = float(j - 16) * 0.125f;
  const std::vector<uint8_t> b = ggml_quantize(GgmlType::Q4_0, x.data(), 32);
  REQUIRE(b.size() == 18);
  CHECK(b[0] == 0x00);
  CHECK(b[1] == 0x34);  // d = 0.25
  const uint8_t qs[16] = {0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3, 0xc4,
                          0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
  for (int j = 0; j < 16; ++j) CHECK(int(b[size_t(2 + j)]) == int(qs[j]));
  const int codes[32] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8,
                         8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15};
  for (int j = 0; j < 32; ++j) CHECK(q4_code(b.data() + 2, j) == codes[j]);
  const std::vector<float> y = roundtrip(GgmlType::Q4_0, x);
  CHECK(y[0] == -2.0f);    // the extreme maps to itself
  CHECK(y[1] == -1.75f);   // -7.5 rounds half up to -7
  CHECK(y[31] == 1.75f);   // +7.5 -> 8 -> clamped to 7
}

TEST_CASE("ggml blocks: Q4_0 ties round half up, extremes and signs") {
  // max = -8 -> d = 1, id = 1: x*id + 8.5 is exact for these values.
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;
  x[1] = -7.5f;  // 1.0 -> code 1 -> -7
  x[2] = -0.5f;  // 8.0 -> code 8 -> 0
  x[3] = 0.5f;   // 9.0 -> code 9 -> 1
  x[4] = 6.5f;   // 15.0 -> 7
  x[5] = 8.0f;   // opposite extreme: 16.5 -> MIN(15) -> 7
  x[20] = -2.5f;  // high nibble: 6.0 -> -2
  const std::vector<float> y = roundtrip(GgmlType::Q4_0, x);
  CHECK(y[0] == -8.0f);
  CHECK(y[1] == -7.0f);
  CHECK(y[2] == 0.0f);
  CHECK(y[3] == 1.0f);
  CHECK(y[4] == 7.0f);
  CHECK(y[5] == 7.0f);
  CHECK(y[20] == -2.0f);

  // The first of two equal magnitudes decides the sign of d.
  std::vector<float> a(32, 0.0f), b(32, 0.0f);
  a[3] = 2.0f;
  a[9] = -2.0f;
  b[3] = -2.0f;
  b[9] = 2.0f;
  const std::vector<float> ya = roundtrip(GgmlType::Q4_0, a);
  const std::vector<float> yb = roundtrip(GgmlType::Q4_0, b);
  CHECK(ya[3] == 2.0f);
  CHECK(ya[9] == -1.75f);
  CHECK(yb[3] == -2.0f);
  CHECK(yb[9] == 1.75f);
}

TEST_CASE("ggml blocks: all-zero blocks") {
  const std::vector<float> x(64, 0.0f);
  const std::vector<uint8_t> b40 = ggml_quantize(GgmlType::Q4_0, x.data(), 64);
  for (size_t blk = 0; blk < 2; ++blk) {
    CHECK(f16_bits_at(b40, blk * 18) == 0x8000);  // d = 0 / -8 = -0 (as in ggml)
    for (size_t j = 2; j < 18; ++j) CHECK(int(b40[blk * 18 + j]) == 0x88);  // code 8 = level 0
  }
  const std::vector<uint8_t> b41 = ggml_quantize(GgmlType::Q4_1, x.data(), 64);
  for (uint8_t v : b41) CHECK(int(v) == 0);
  const std::vector<uint8_t> b80 = ggml_quantize(GgmlType::Q8_0, x.data(), 64);
  for (uint8_t v : b80) CHECK(int(v) == 0);
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0})
    for (float v : roundtrip(t, x)) CHECK(v == 0.0f);
}

TEST_CASE("ggml blocks: a single huge outlier") {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = 0.01f * float(j % 7 - 3);
  x[17] = 1000.0f;
  // Q4_0: d = -125 (f16-exact); everything but the outlier lands on level 0.
  const std::vector<float> y = roundtrip(GgmlType::Q4_0, x);
  CHECK(y[17] == 1000.0f);
  for (int j = 0; j < 32; ++j)
    if (j != 17) CHECK(y[size_t(j)] == 0.0f);
  // Q8_0: d = 1000/127 -> the small values round to 0 as well.
  const std::vector<float> y8 = roundtrip(GgmlType::Q8_0, x);
  CHECK(y8[17] == doctest::Approx(1000.0).epsilon(1e-3));
  for (int j = 0; j < 32; ++j)
    if (j != 17) CHECK(y8[size_t(j)] == 0.0f);
  // Q4_1: min = x[0] = -0.03, d = 1000.03/15; the small values sit at
  // code 0, i.e. at the f16-rounded minimum.
  const std::vector<float> y1 = roundtrip(GgmlType::Q4_1, x);
  CHECK(y1[0] == f16_to_f32(f32_to_f16(x[0])));
  CHECK(y1[5] == y1[0]);
}

TEST_CASE("ggml blocks: Q4_1 and Q8_0 hand-computed blocks") {
  // Q4_1: x_j = j % 16 -> min 0, max 15, d = 1, codes = x, qs[j] = j | j << 4.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = float(j % 16);
  const std::vector<uint8_t> b = ggml_quantize(GgmlType::Q4_1, x.data(), 32);
  CHECK(f16_bits_at(b, 0) == 0x3c00);  // d = 1
  CHECK(f16_bits_at(b, 2) == 0x0000);  // m = 0
  for (int j = 0; j < 16; ++j) CHECK(int(b[size_t(4 + j)]) == (j | (j << 4)));
  CHECK(roundtrip(GgmlType::Q4_1, x) == x);

  // Q4_1 ties: min -1, max 14 -> d = 1; (x - min) + 0.5 rounds half up.
  std::vector<float> t(32, 0.0f);
  t[0] = -1.0f;
  t[1] = 14.0f;
  t[2] = 0.5f;   // 1.5 + 0.5 = 2 -> code 2 -> 1.0
  t[3] = -0.5f;  // 0.5 + 0.5 = 1 -> code 1 -> 0.0
  const std::vector<float> yt = roundtrip(GgmlType::Q4_1, t);
  CHECK(yt[2] == 1.0f);
  CHECK(yt[3] == 0.0f);

  // Q8_0: amax = 127 -> d = 1; roundf rounds half away from zero.
  std::vector<float> q(32, 0.0f);
  q[0] = 127.0f;
  q[1] = 2.5f;
  q[2] = -2.5f;
  q[3] = 0.5f;
  q[4] = -126.5f;
  const std::vector<uint8_t> b8 = ggml_quantize(GgmlType::Q8_0, q.data(), 32);
  CHECK(f16_bits_at(b8, 0) == 0x3c00);
  CHECK(int8_t(b8[2]) == 127);
  CHECK(int8_t(b8[3]) == 3);
  CHECK(int8_t(b8[4]) == -3);
  CHECK(int8_t(b8[5]) == 1);
  CHECK(int8_t(b8[6]) == -127);
}

TEST_CASE("ggml blocks: tiny blocks in the subnormal range stay defined") {
  // |max| = 1e-39: d is an f32 subnormal, 1/d overflows to inf and f16(d) = 0,
  // so every value decodes to 0 (ggml on x86 writes code 0 there too).
  std::vector<float> x(32, 0.0f);
  x[0] = -1e-39f;
  x[1] = 5e-40f;
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q8_0})
    for (float v : roundtrip(t, x)) CHECK(v == 0.0f);
  // |max| = 1e-6: d is an f16 subnormal but finite; the extreme survives
  // up to the f16 rounding of d.
  x[0] = -1e-6f;
  const std::vector<float> y = roundtrip(GgmlType::Q4_0, x);
  CHECK(y[0] == -8.0f * f16_to_f32(f32_to_f16(1e-6f / 8.0f)));
}

TEST_CASE("ggml blocks: f16 conversion rounds to nearest even with subnormals and overflow") {
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);                 // largest finite
  CHECK(f32_to_f16(65519.99f) == 0x7bff);                // below the half-way point
  CHECK(f32_to_f16(65520.0f) == 0x7c00);                 // ties to even -> inf
  CHECK(f32_to_f16(-1e9f) == 0xfc00);
  CHECK(f32_to_f16(1.0f + 1.0f / 2048.0f) == 0x3c00);    // tie, even mantissa kept
  CHECK(f32_to_f16(1.0f + 3.0f / 2048.0f) == 0x3c02);    // tie, rounds up to even
  CHECK(f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001);    // smallest subnormal
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);    // tie with 0 -> even (0)
  CHECK(f32_to_f16(std::ldexp(3.0f, -26)) == 0x0001);    // 0.75 ulp -> 1
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);    // 1.5 ulp tie -> 2 (even)
  CHECK(f32_to_f16(std::ldexp(1023.0f, -24)) == 0x03ff); // largest subnormal
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_f32(0x03ff) == std::ldexp(1023.0f, -24));
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
  // F16 / BF16 / F32 "types" round-trip through ggml_quantize/dequantize.
  const std::vector<float> x = {1.0f, -2.5f, 65504.0f, 1e-7f, 3.14159f, 0.0f};
  const std::vector<float> y16 = roundtrip(GgmlType::F16, x);
  const std::vector<float> ybf = roundtrip(GgmlType::BF16, x);
  for (size_t i = 0; i < x.size(); ++i) {
    CHECK(y16[i] == f16_to_f32(f32_to_f16(x[i])));
    CHECK(ybf[i] == bf16_to_f32(f32_to_bf16(x[i])));
  }
  CHECK(roundtrip(GgmlType::F32, x) == x);
}

TEST_CASE("ggml blocks: round-trip error bounds on random rows") {
  // |x - x'| <= |d|/2 inside the grid, plus the f16 rounding of d times the
  // largest code (2^-11 relative); Q4_0's clipped +8 costs up to |d|.
  uint32_t state = 12345u;
  auto next = [&]() {  // LCG: deterministic, no dependence on library RNGs
    state = state * 1664525u + 1013904223u;
    return float(int32_t(state >> 8) - (1 << 23)) / float(1 << 23);
  };
  std::vector<float> x(32 * 64);
  for (float& v : x) v = next() * 3.0f;
  const std::vector<float> y40 = roundtrip(GgmlType::Q4_0, x);
  const std::vector<float> y80 = roundtrip(GgmlType::Q8_0, x);
  const std::vector<float> y41 = roundtrip(GgmlType::Q4_1, x);
  for (size_t b = 0; b < 64; ++b) {
    float amax = 0.0f, mn = x[b * 32], mx = x[b * 32];
    for (size_t j = 0; j < 32; ++j) {
      amax = std::max(amax, std::fabs(x[b * 32 + j]));
      mn = std::min(mn, x[b * 32 + j]);
      mx = std::max(mx, x[b * 32 + j]);
    }
    for (size_t j = 0; j < 32; ++j) {
      const size_t i = b * 32 + j;
      CHECK(std::fabs(y40[i] - x[i]) <= amax / 8.0f * 1.01f);
      CHECK(std::fabs(y80[i] - x[i]) <= amax / 127.0f * (0.5f + 0.07f));
      CHECK(std::fabs(y41[i] - x[i]) <= (mx - mn) / 15.0f * 0.51f + 2e-3f * (std::fabs(mn) + 1.0f));
    }
  }
}
