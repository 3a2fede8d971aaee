// Philox4x32-10 (core/philox.h) and the Tensor random factories.
//
// Known answers: Random123's tests/kat_vectors (D. E. Shaw Research,
// https://github.com/DEShawResearch/random123, file tests/kat_vectors), the
// three "philox4x32 10" lines, columns CTR[4] KEY[2] -> EXPECTED[4]:
//   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
//   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
//   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
// All three are checked against the full-counter gl::philox4x32_10, and
// the (counter, seed) form gridlock uses must equal it with c2 = c3 = 0.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/testing.h"

using namespace gl;

namespace {

struct Kat {
  uint32_t ctr[4], key[2], expected[4];
};
const Kat kKats[3] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

bool same(const Philox4& a, const uint32_t b[4]) {
  return a.v[0] == b[0] && a.v[1] == b[1] && a.v[2] == b[2] && a.v[3] == b[3];
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / double(v.size());
}
double var_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / double(v.size() - 1);
}

}  // namespace

static Philox4 full(const uint32_t ctr[4], const uint32_t key[2]) {
  return philox4x32_10(Philox4{{ctr[0], ctr[1], ctr[2], ctr[3]}}, key[0], key[1]);
}

TEST_CASE("philox4x32_10: the three Random123 known-answer vectors") {
  for (const Kat& k : kKats) CHECK(same(full(k.ctr, k.key), k.expected));
  // kat_vectors line 1 through gridlock's (counter, seed) form.
  CHECK(same(philox4x32_10(0, 0), kKats[0].expected));
}

TEST_CASE("philox4x32_10: (counter, seed) form = full form with c2 = c3 = 0") {
  uint64_t s = 12345;
  int mismatches = 0;
  for (int i = 0; i < 2000; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t counter = s;
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t seed = i % 3 == 0 ? uint64_t(i) : s;
    const uint32_t ctr[4] = {uint32_t(counter), uint32_t(counter >> 32), 0, 0};
    const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    if (!same(philox4x32_10(counter, seed), full(ctr, key).v)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("philox stream layout: uniform lanes and normal blocks") {
  const uint64_t seed = 7, offset = 5;
  // Value i of a uniform draw is lane i % 4 of block offset + i / 4, top 24 bits.
  for (uint64_t i = 0; i < 9; ++i) {
    const uint32_t u = philox4x32_10(offset + i / 4, seed).v[i % 4];
    CHECK(philox_u32(seed, offset, i) == u);
    CHECK(philox_uniform(seed, offset, i) == float(u >> 8) / 16777216.0f);
  }
  // The largest possible uniform is still below 1 in f32.
  CHECK(float(0xffffffffu >> 8) * (1.0f / 16777216.0f) < 1.0f);

  Generator g(seed, offset);
  const Tensor u = Tensor::uniform({9}, g);
  CHECK(g.offset == offset + 3);  // ceil(9 / 4) blocks
  for (int64_t i = 0; i < 9; ++i)
    CHECK(u.to_vector()[size_t(i)] == double(philox_uniform(seed, offset, uint64_t(i))));
  const Tensor n = Tensor::normal({5}, g, 0.0, 1.0, DType::F64);
  CHECK(g.offset == offset + 3 + 5);  // one block per normal value
  for (int64_t i = 0; i < 5; ++i)
    CHECK(n.to_vector()[size_t(i)] == philox_normal(seed, offset + 3, uint64_t(i)));
}

TEST_CASE("uniform draws lie in the half-open range with the right moments") {
  Generator g(2024);
  const std::vector<double> u = Tensor::uniform({100000}, g).to_vector();
  double lo = 1, hi = 0;
  for (double x : u) {
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(lo >= 0.0);
  CHECK(hi < 1.0);
  // Mean 1/2, var 1/12; 6-sigma bounds for n = 1e5 (sd of mean 9.1e-4,
  // sd of the variance estimate sqrt(1/180 / n) = 2.4e-4).
  CHECK(std::fabs(mean_of(u) - 0.5) < 6 * 9.2e-4);
  CHECK(std::fabs(var_of(u) - 1.0 / 12) < 6 * 2.4e-4);

  const std::vector<double> s = Tensor::uniform({10000}, g, -3.0, 5.0, DType::F64).to_vector();
  size_t outside = 0;
  for (double x : s) outside += !(x >= -3.0 && x < 5.0);
  CHECK(outside == 0);
  CHECK(std::fabs(mean_of(s) - 1.0) < 6 * 8.0 / std::sqrt(12.0 * 10000));
}

TEST_CASE("normal draws have mean and variance within statistical bounds") {
  Generator g(99);
  const std::vector<double> n = Tensor::normal({100000}, g).to_vector();
  // sd of the mean 1/sqrt(n) = 3.2e-3; sd of the variance sqrt(2/n) = 4.5e-3.
  CHECK(std::fabs(mean_of(n)) < 6 * 3.2e-3);
  CHECK(std::fabs(var_of(n) - 1.0) < 6 * 4.5e-3);
  size_t within1 = 0;
  for (double x : n) within1 += std::fabs(x) < 1.0;
  CHECK(std::fabs(double(within1) / 1e5 - 0.682689) < 0.01);
  size_t non_finite = 0;
  for (double x : n) non_finite += !std::isfinite(x);
  CHECK(non_finite == 0);

  const std::vector<double> m = Tensor::normal({100000}, g, 3.0, 0.5, DType::F64).to_vector();
  CHECK(std::fabs(mean_of(m) - 3.0) < 6 * 0.5 * 3.2e-3);
  CHECK(std::fabs(var_of(m) - 0.25) < 6 * 0.25 * 4.5e-3);
}

TEST_CASE("generator: offsets advance, and (seed, offset) reproduces a draw exactly") {
  Generator g(42);
  const uint64_t start = g.offset;
  const Tensor a = Tensor::uniform({3, 5}, g);
  CHECK(g.offset == start + 4);  // 15 values, 4 per block
  const Tensor b = Tensor::uniform({3, 5}, g);
  CHECK(a.to_vector() != b.to_vector());  // consecutive draws use fresh blocks

  Generator again(42, start);
  CHECK(Tensor::uniform({3, 5}, again).to_vector() == a.to_vector());
  CHECK(Tensor::uniform({3, 5}, again).to_vector() == b.to_vector());
  CHECK(again.offset == g.offset);

  Generator other_seed(43, start);
  CHECK(Tensor::uniform({3, 5}, other_seed).to_vector() != a.to_vector());

  Generator gn(5), gn2(5);
  const Tensor n1 = Tensor::normal({7}, gn), n2 = Tensor::normal({7}, gn);
  CHECK(n1.to_vector() != n2.to_vector());
  CHECK(Tensor::normal({7}, gn2).to_vector() == n1.to_vector());
  // A draw's values depend only on (seed, offset), not on its shape or dtype.
  Generator f64a(8), f64b(8);
  const std::vector<double> d = Tensor::uniform({12}, f64a, 0, 1, DType::F64).to_vector();
  const std::vector<double> f = Tensor::uniform({3, 4}, f64b).to_vector();
  CHECK(d == f);  // 24-bit uniforms are exact in f32 and f64
  CHECK(Generator(1).advance(10) == 0);
}
