// run.precision (autograd/ops/matmul.h): under bf16/f16 an f32 product
// rounds both operands to nearest even and accumulates in f32. References
// here are independent of core/dtype.h's converters: bf16 rounding by
// choosing the nearer of the two truncation neighbours, f16 by rounding to
// a multiple of its spacing in doubles, the products by a double triple
// loop.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

float as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The two bf16 values around x are x's bits truncated to the top 16 and the
// next one up in magnitude; the nearer wins, a tie goes to the even one.
float ref_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  const double dl = std::fabs(double(x) - double(as_float(lo)));
  const double dh = std::fabs(double(as_float(hi)) - double(x));
  if (dl != dh) return dl < dh ? as_float(lo) : as_float(hi);
  return ((lo >> 16) & 1u) == 0 ? as_float(lo) : as_float(hi);
}
// f16 by scaling to its spacing: 11 significant bits in the binade of |x|
// (spacing 2^(e - 10)), a fixed 2^-24 below 2^-14 (subnormals), nearbyint
// rounding half to even; past 65504 (65520 and up round there) infinity.
float ref_f16(float x) {
  if (x == 0.0f) return x;
  int e = 0;
  std::frexp(std::fabs(double(x)), &e);  // |x| in [2^(e-1), 2^e)
  const double ulp = std::ldexp(1.0, std::max(e - 1, -14) - 10);
  const double r = std::nearbyint(double(x) / ulp) * ulp;
  return std::fabs(r) > 65504.0 ? float(std::copysign(INFINITY, r)) : float(r);
}

// Row-major [M, K] x [K, N] (after transposes) in double from rounded operands.
std::vector<double> ref_product(const Tensor& a, const Tensor& b, bool ta, bool tb, float (*round)(float)) {
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  const int64_t M = ta ? a.size(1) : a.size(0), K = ta ? a.size(0) : a.size(1);
  const int64_t N = tb ? b.size(0) : b.size(1);
  std::vector<double> out(size_t(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double x = round(float(av[size_t(ta ? k * M + i : i * K + k)]));
        const double y = round(float(bv[size_t(tb ? j * K + k : k * N + j)]));
        acc += x * y;
      }
      out[size_t(i * N + j)] = acc;
    }
  return out;
}

// Largest |x - y| relative to the largest |y|.
double rel_diff(const std::vector<double>& x, const std::vector<double>& y) {
  double worst = 0, scale = 1e-30;
  for (size_t i = 0; i < y.size(); ++i) {
    worst = std::max(worst, std::fabs(x[i] - y[i]));
    scale = std::max(scale, std::fabs(y[i]));
  }
  return worst / scale;
}

}  // namespace

TEST_CASE("matmul precision: bf16 and f16 products round both operands, accumulate in f32") {
  struct Mode {
    MatmulPrecision p;
    float (*round)(float);
    std::string name;
  };
  for (const Mode& m : {Mode{MatmulPrecision::BF16, ref_bf16, "bf16"}, Mode{MatmulPrecision::F16, ref_f16, "f16"}})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(m.name);
        CAPTURE(ta);
        CAPTURE(tb);
        const int64_t M = 37, K = 300, N = 29;
        const Tensor a = rand(ta ? Shape{K, M} : Shape{M, K}, 11, DType::F32);
        const Tensor b = rand(tb ? Shape{N, K} : Shape{K, N}, 12, DType::F32);
        const std::vector<double> want = ref_product(a, b, ta, tb, m.round);
        std::vector<double> got;
        {
          const MatmulPrecisionGuard guard(m.p);
          CHECK(matmul_precision() == m.p);
          got = matmul_tensor(a, b, ta, tb).to_vector();
        }
        CHECK(matmul_precision() == MatmulPrecision::F32);  // the guard restored it
        // f32 summation of 300 exact products: measured 1-6e-7 of the largest.
        CHECK(rel_diff(got, want) < 5e-6);
        // The plain f32 product is far from it (measured 2e-3 for bf16,
        // 2.6e-4 for f16): the rounding really happened.
        const std::vector<double> exact = matmul_tensor(a, b, ta, tb).to_vector();
        CHECK(rel_diff(exact, want) > 5e-5);
      }
}

TEST_CASE("matmul precision: linear backward products round too, f64 is never rounded") {
  const Tensor x0 = rand({2, 5, 48}, 21, DType::F32), w0 = rand({24, 48}, 22, DType::F32);
  const Tensor dy = rand({2, 5, 24}, 23, DType::F32);
  Var x(x0, true), w(w0, true);
  {
    const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    const Var y = linear(x, w);
    sum(mul(y, Var(dy))).backward();  // backward runs while bf16 is in force
  }
  // dx = dy . W and dW = dy^T . x, both from rounded operands.
  const Tensor dy2 = dy.reshape({10, 24}), x2 = x0.reshape({10, 48});
  CHECK(rel_diff(x.grad().to_vector(), ref_product(dy2, w0, false, false, ref_bf16)) < 1e-5);
  CHECK(rel_diff(w.grad().to_vector(), ref_product(dy2, x2, true, false, ref_bf16)) < 1e-5);

  const Tensor a = rand({9, 40}, 24), b = rand({40, 7}, 25);  // f64
  const std::vector<double> plain = matmul_tensor(a, b).to_vector();
  const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  CHECK(matmul_tensor(a, b).to_vector() == plain);
}

TEST_CASE("matmul precision: f16 operands overflow past 65504, bf16 ones do not") {
  const Tensor a = Tensor::from_vector({70000.0, 1.0}, {1, 2}).to(DType::F32);
  const Tensor b = Tensor::from_vector({1.0, 1.0}, {2, 1}).to(DType::F32);
  {
    const MatmulPrecisionGuard guard(MatmulPrecision::F16);
    CHECK(std::isinf(matmul_tensor(a, b).to_vector()[0]));
  }
  const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  CHECK(matmul_tensor(a, b).to_vector()[0] == ref_bf16(70000.0f) + 1.0);
}

TEST_CASE("matmul precision: names") {
  CHECK(matmul_precision_from_name("bf16") == MatmulPrecision::BF16);
  CHECK(matmul_precision_from_name("f16") == MatmulPrecision::F16);
  CHECK(matmul_precision_from_name("f32") == MatmulPrecision::F32);
  CHECK_THROWS_WITH_AS(matmul_precision_from_name("fp8"), doctest::Contains("'fp8' unknown"), Error);
}

TEST_CASE("matmul precision: the f16 reference rounds as IEEE binary16 (known values)") {
  // Spot values of the reference itself, from the binary16 format: 1 + 2^-11
  // is a tie (to even, 1), 1 + 3 * 2^-11 rounds up, 65519 is the largest
  // that stays finite, 2^-25 is the tie below the smallest subnormal.
  CHECK(ref_f16(1.0f + 0x1p-11f) == 1.0f);
  CHECK(ref_f16(1.0f + 3 * 0x1p-11f) == 1.0f + 0x1p-9f);
  CHECK(ref_f16(65519.0f) == 65504.0f);
  CHECK(std::isinf(ref_f16(65520.0f)));
  CHECK(ref_f16(0x1p-25f) == 0.0f);
  CHECK(ref_f16(3 * 0x1p-25f) == 0x1p-23f);
  CHECK(ref_f16(-0.1f) == -0.0999755859375f);
}

namespace {
// x with every element rounded by `round` (the independent references above).
Tensor rounded(const Tensor& x, float (*round)(float)) {
  std::vector<double> v = x.to_vector();
  for (double& e : v) e = round(float(e));
  return Tensor::from_vector(v, x.shape(), DType::F32);
}
}  // namespace

TEST_CASE("matmul precision: attention rounds q, k, v and dout on the CPU, f64 is never rounded") {
  // The CPU reference of attention under bf16/f16 (autograd/ops/attention.cpp):
  // f32 attention on the rounded inputs, the gradient from the rounded dout,
  // bit for bit. Tk > Tq (a KV-cache shape) and an odd head size.
  const Tensor q = randn({2, 3, 5, 7}, 31, DType::F32), k = randn({2, 3, 9, 7}, 32, DType::F32);
  const Tensor v = randn({2, 3, 9, 7}, 33, DType::F32), R = randn({2, 3, 5, 7}, 34, DType::F32);
  for (MatmulPrecision p : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    auto round = p == MatmulPrecision::BF16 ? ref_bf16 : ref_f16;
    CAPTURE(int(p));
    const Var q1(q.clone(), true), k1(k.clone(), true), v1(v.clone(), true);
    Var out;
    {
      const MatmulPrecisionGuard guard(p);
      out = attention(q1, k1, v1, 0.4);
      sum(mul(out, Var(R))).backward();
    }
    const Var q2(rounded(q, round), true), k2(rounded(k, round), true), v2(rounded(v, round), true);
    const Var ref = attention(q2, k2, v2, 0.4);
    sum(mul(ref, Var(rounded(R, round)))).backward();
    CHECK(check_close("attention out", out.value(), ref.value(), 0, 0));
    CHECK(check_close("dq", q1.grad(), q2.grad(), 0, 0));
    CHECK(check_close("dk", k1.grad(), k2.grad(), 0, 0));
    CHECK(check_close("dv", v1.grad(), v2.grad(), 0, 0));
    // The rounding is real: the unrounded f32 attention differs.
    CHECK(!check_close("differs from f32", out.value(), attention(Var(q), Var(k), Var(v), 0.4).value(), 1e-6, 0));
  }
  const Tensor q64 = q.to(DType::F64);
  const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  const Tensor a = attention(Var(q64), Var(k.to(DType::F64)), Var(v.to(DType::F64)), 0.4).value();
  NoGradGuard ng;
  const MatmulPrecisionGuard f32(MatmulPrecision::F32);
  CHECK(check_close("f64 unrounded", a, attention(Var(q64), Var(k.to(DType::F64)), Var(v.to(DType::F64)), 0.4).value(),
                    0, 0));
}
