// Our SGEMM (cpu/sgemm.h), each kernel (AVX2, AVX-512) against a plain
// double-precision triple loop: every transpose combination, sizes on and
// off the register tile (6 x 16, 12 x 32) and the 256-deep K block, strided
// operands and output, accumulate; the same bits whatever the thread count,
// and the same bits from both kernels. A kernel this CPU cannot run is
// registered as skipped (tests/main.cpp), never as passed.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/sgemm.h"

namespace {

using Isa = gl::cpu::SgemmIsa;

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
void check(Isa isa, const Case& t, uint32_t seed) {
  Operands o = make(t, seed);
  const std::vector<float> c0 = o.c;
  gl::cpu::sgemm(o.g, isa);
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
  INFO(gl::cpu::sgemm_isa_name(isa) << " M " << t.M << " N " << t.N << " K " << t.K << " ta " << t.ta << " tb " << t.tb
            << " acc " << t.acc << " pad " << t.pad);
  // f32 summation over K <= 600 terms stays far below this; an indexing or
  // packing mistake gives errors of order 1.
  CHECK(worst < 1e-5);
  CHECK_FALSE(outside_touched);
}

bool lacks(Isa isa) { return !gl::cpu::sgemm_cpu_supports(isa); }

void every_transpose(Isa isa) {
  const int64_t sizes[] = {1, 5, 6, 7, 11, 12, 13, 16, 17, 32, 33, 100};
  const int64_t depths[] = {1, 5, 8, 16, 255, 256, 257, 600};
  uint32_t seed = 1;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : depths)
        for (int f = 0; f < 8; ++f)
          check(isa, {M, N, K, bool(f & 1), bool(f & 2), bool(f & 4)}, seed++);
}

void strided_and_model_sized(Isa isa) {
  for (int f = 0; f < 8; ++f)
    check(isa, {45, 70, 300, bool(f & 1), bool(f & 2), bool(f & 4), 7}, 100 + f);
  check(isa, {256, 768, 300, false, true, false}, 200);  // a linear: x . W^T
  check(isa, {300, 96, 520, true, false, true}, 201);    // a weight gradient, accumulated
  // Past one A block (516 rows in the A-outer order) and one B block (256
  // or 512 columns), so that both loop orders (A outer for short wide
  // products, B outer otherwise) run over several blocks, with partial last
  // panels read from strided A.
  check(isa, {530, 1100, 300, false, true, false, 3}, 202);  // a vocabulary head, padded rows
  check(isa, {1100, 530, 260, true, false, true}, 203);      // k-major A, accumulated
  check(isa, {20, 2100, 270, false, true, true}, 204);       // wide and short: A outer
  check(isa, {1033, 45, 300, false, false, false}, 205);     // tall and narrow
}

void k_zero(Isa isa) {
  for (bool acc : {false, true}) {
    Operands o = make({5, 40, 0, false, false, acc}, 7);
    const std::vector<float> c0 = o.c;
    gl::cpu::sgemm(o.g, isa);
    for (size_t i = 0; i < o.c.size(); ++i) CHECK(o.c[i] == (acc ? c0[i] : 0.f));
  }
}

void thread_count_independent(Isa isa) {
  const int saved = omp_get_max_threads();
  for (const Case& t : {Case{200, 300, 700, false, true, false}, Case{5, 1000, 300, true, false, true},
                        Case{500, 20, 300, false, false, false}}) {
    Operands one = make(t, 11), two = make(t, 11);
    omp_set_num_threads(1);
    gl::cpu::sgemm(one.g, isa);
    omp_set_num_threads(2);
    gl::cpu::sgemm(two.g, isa);
    CHECK(std::memcmp(one.c.data(), two.c.data(), sizeof(float) * one.c.size()) == 0);
  }
  omp_set_num_threads(saved);
}

}  // namespace

#define SGEMM_KERNEL_CASES(ISA, NAME)                                                             \
  TEST_CASE("sgemm " NAME ": every transpose, edge tiles, K blocks, accumulate" *                 \
            doctest::skip(lacks(ISA))) {                                                          \
    every_transpose(ISA);                                                                         \
  }                                                                                               \
  TEST_CASE("sgemm " NAME ": strided operands and output, model-sized products" *                 \
            doctest::skip(lacks(ISA))) {                                                          \
    strided_and_model_sized(ISA);                                                                 \
  }                                                                                               \
  TEST_CASE("sgemm " NAME ": K = 0 leaves C or zeroes it" * doctest::skip(lacks(ISA))) {          \
    k_zero(ISA);                                                                                  \
  }                                                                                               \
  TEST_CASE("sgemm " NAME ": bit-identical with 1 and 2 threads" * doctest::skip(lacks(ISA))) {   \
    thread_count_independent(ISA);                                                                \
  }

SGEMM_KERNEL_CASES(Isa::Avx2, "avx2")
SGEMM_KERNEL_CASES(Isa::Avx512, "avx512")

// Both kernels run the same chain of fused multiply-adds per C element
// (the K block is shared, cpu/sgemm_detail.h), so their bits agree.
TEST_CASE("sgemm: the AVX2 and AVX-512 kernels give the same bits" *
          doctest::skip(lacks(Isa::Avx2) || lacks(Isa::Avx512))) {
  for (const Case& t : {Case{200, 300, 700, false, true, false}, Case{37, 1000, 300, true, false, true},
                        Case{530, 77, 513, false, false, false, 5}, Case{13, 45, 9, true, true, true}}) {
    Operands a = make(t, 21), b = make(t, 21);
    gl::cpu::sgemm(a.g, Isa::Avx2);
    gl::cpu::sgemm(b.g, Isa::Avx512);
    CHECK(std::memcmp(a.c.data(), b.c.data(), sizeof(float) * a.c.size()) == 0);
  }
}

TEST_CASE("sgemm: GRIDLOCK_GEMM picks the kernel, the best the CPU has by default") {
  // sgemm_isa() reads the environment once per process: ctest runs this
  // case in a process of its own, with whatever GRIDLOCK_GEMM the caller set.
  const char* env = std::getenv("GRIDLOCK_GEMM");
  const Isa isa = gl::cpu::sgemm_isa();
  if (env == nullptr) {
    const Isa best = !lacks(Isa::Avx512) ? Isa::Avx512 : !lacks(Isa::Avx2) ? Isa::Avx2 : Isa::None;
    CHECK(isa == best);
  } else if (std::string(env) == "eigen") {
    CHECK(isa == Isa::None);
  }
  CHECK(gl::cpu::sgemm_available() == (isa != Isa::None));
  CHECK_THROWS_WITH_AS(gl::cpu::sgemm(Operands{}.g, Isa::None),
                       doctest::Contains("kernel none is not supported"), std::exception);
}
