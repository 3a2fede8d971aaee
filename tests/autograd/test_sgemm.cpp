// Our AVX-512 SGEMM (cpu/sgemm.h) against a plain double-precision triple
// loop: every transpose combination, sizes on and off the 12 x 32 register
// tile and the 256-deep K block, strided operands and output, accumulate,
// and the same bits whatever the thread count. Registered as skipped on a
// CPU without AVX-512 (the kernel cannot run there; matmul uses Eigen).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/sgemm.h"

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb, acc;
  int64_t pad = 0;  // extra elements per row of A, B and C (strided views)
};

struct Operands {
  std::vector<float> a, b, c;
  gl::cpu::SgemmArgs g;
};

Operands make(const Case& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  Operands o;
  const int64_t a_rows = t.ta ? t.K : t.M, a_cols = (t.ta ? t.M : t.K) + t.pad;
  const int64_t b_rows = t.tb ? t.N : t.K, b_cols = (t.tb ? t.K : t.N) + t.pad;
  o.a.resize(a_rows * a_cols);
  o.b.resize(b_rows * b_cols);
  o.c.resize(t.M * (t.N + t.pad));
  for (auto& x : o.a) x = d(rng);
  for (auto& x : o.b) x = d(rng);
  for (auto& x : o.c) x = d(rng);
  auto& g = o.g;
  g.M = t.M, g.N = t.N, g.K = t.K;
  g.a = o.a.data(), g.a_row = t.ta ? 1 : a_cols, g.a_col = t.ta ? a_cols : 1;
  g.b = o.b.data(), g.b_row = t.tb ? 1 : b_cols, g.b_col = t.tb ? b_cols : 1;
  g.c = o.c.data(), g.ldc = t.N + t.pad, g.accumulate = t.acc;
  return o;
}

// Largest |ours - exact| / sum_k |a b| over C, and whether anything outside
// the M x N window of C changed.
void check(const Case& t, uint32_t seed) {
  Operands o = make(t, seed);
  const std::vector<float> c0 = o.c;
  gl::cpu::sgemm(o.g);
  const auto& g = o.g;
  double worst = 0;
  bool outside_touched = false;
  for (int64_t i = 0; i < t.M; ++i) {
    for (int64_t j = 0; j < g.ldc; ++j) {
      const float got = o.c[i * g.ldc + j];
      if (j >= t.N) {
        outside_touched |= std::memcmp(&got, &c0[i * g.ldc + j], sizeof got) != 0;
        continue;
      }
      double s = t.acc ? c0[i * g.ldc + j] : 0.0, mag = std::fabs(s);
      for (int64_t k = 0; k < t.K; ++k) {
        const double p = double(g.a[i * g.a_row + k * g.a_col]) * g.b[k * g.b_row + j * g.b_col];
        s += p, mag += std::fabs(p);
      }
      worst = std::max(worst, std::fabs(got - s) / (mag + 1e-30));
    }
  }
  INFO("M " << t.M << " N " << t.N << " K " << t.K << " ta " << t.ta << " tb " << t.tb
            << " acc " << t.acc << " pad " << t.pad);
  // f32 summation over K <= 600 terms stays far below this; an indexing or
  // packing mistake gives errors of order 1.
  CHECK(worst < 1e-5);
  CHECK_FALSE(outside_touched);
}

const bool no_avx512 = !gl::cpu::sgemm_available();

}  // namespace

TEST_CASE("sgemm: every transpose, edge tiles, K blocks, accumulate" * doctest::skip(no_avx512)) {
  const int64_t sizes[] = {1, 11, 12, 13, 32, 33, 100};
  const int64_t depths[] = {1, 5, 16, 255, 256, 257, 600};
  uint32_t seed = 1;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : depths)
        for (int f = 0; f < 8; ++f) check({M, N, K, bool(f & 1), bool(f & 2), bool(f & 4)}, seed++);
}

TEST_CASE("sgemm: strided operands and output, model-sized products" * doctest::skip(no_avx512)) {
  for (int f = 0; f < 8; ++f) check({45, 70, 300, bool(f & 1), bool(f & 2), bool(f & 4), 7}, 100 + f);
  check({256, 768, 300, false, true, false}, 200);   // a linear: x . W^T
  check({300, 96, 520, true, false, true}, 201);     // a weight gradient, accumulated
  // Past one 516-row A block and one 512-column B block, so that both loop
  // orders (A outer for short wide products, B outer otherwise) run over
  // several blocks, with partial last panels read from strided A.
  check({530, 1100, 300, false, true, false, 3}, 202);  // a vocabulary head, padded rows
  check({1100, 530, 260, true, false, true}, 203);      // k-major A, accumulated
  check({20, 2100, 270, false, true, true}, 204);       // wide and short: A outer
  check({1033, 45, 300, false, false, false}, 205);     // tall and narrow
}

TEST_CASE("sgemm: K = 0 leaves C or zeroes it" * doctest::skip(no_avx512)) {
  for (bool acc : {false, true}) {
    Operands o = make({5, 40, 0, false, false, acc}, 7);
    const std::vector<float> c0 = o.c;
    gl::cpu::sgemm(o.g);
    for (size_t i = 0; i < o.c.size(); ++i) CHECK(o.c[i] == (acc ? c0[i] : 0.f));
  }
}

TEST_CASE("sgemm: bit-identical with 1 and 2 threads" * doctest::skip(no_avx512)) {
  const int saved = omp_get_max_threads();
  for (const Case& t : {Case{200, 300, 700, false, true, false}, Case{5, 1000, 300, true, false, true},
                        Case{500, 20, 300, false, false, false}}) {
    Operands one = make(t, 11), two = make(t, 11);
    omp_set_num_threads(1);
    gl::cpu::sgemm(one.g);
    omp_set_num_threads(2);
    gl::cpu::sgemm(two.g);
    CHECK(std::memcmp(one.c.data(), two.c.data(), sizeof(float) * one.c.size()) == 0);
  }
  omp_set_num_threads(saved);
}
