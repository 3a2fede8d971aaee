// GELU (erf and tanh forms): f64 gradchecks, values against independently
// computed closed forms, and error cases.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/activation.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: gelu, both kinds") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    const Tensor x = affine(rand(s, 41), 3.0, 0.0);  // [-3, 3): both tails and the bend
    CAPTURE(shape_str(s));
    CHECK(gradcheck("gelu erf", [](auto& v) { return gelu(v[0], GeluKind::ERF); }, {x}));
    CHECK(gradcheck("gelu tanh", [](auto& v) { return gelu(v[0], GeluKind::TANH); }, {x}));
  }
}

TEST_CASE("gelu forward values") {
  const double inv_sqrt2 = 1.0 / std::sqrt(2.0), k = std::sqrt(2.0 / M_PI);
  const double erf1 = 0.5 * (1.0 + std::erf(inv_sqrt2));
  CHECK(erf1 == doctest::Approx(0.8413447460685429).epsilon(1e-15));
  const double tanh1 = 0.5 * (1.0 + std::tanh(k * (1.0 + 0.044715)));
  const Tensor x = Tensor::from_vector({0, 1, -1, 10, -10}, {5}, DType::F64);
  // gelu(x) - gelu(-x) = x in both forms (Phi(x) + Phi(-x) = 1; tanh is odd).
  const Tensor want_erf = Tensor::from_vector({0, erf1, erf1 - 1, 10, 0}, {5}, DType::F64);
  const Tensor want_tanh = Tensor::from_vector({0, tanh1, tanh1 - 1, 10, 0}, {5}, DType::F64);
  for (DType dt : {DType::F64, DType::F32}) {
    const double tol = dt == DType::F64 ? 1e-15 : 1e-7;
    CHECK(check_close("gelu erf", gelu(Var(x.to(dt)), GeluKind::ERF).value(), want_erf, tol, tol));
    CHECK(check_close("gelu tanh", gelu(Var(x.to(dt)), GeluKind::TANH).value(), want_tanh, tol,
                      tol));
  }
  CHECK(gelu(Var(x)).value().to_vector()[1] == doctest::Approx(0.8413447460685429).epsilon(1e-15));
}

TEST_CASE("gelu derivative at 0 is 1/2 in both forms") {
  for (GeluKind kind : {GeluKind::ERF, GeluKind::TANH}) {
    const Var x(Tensor::zeros({1}, DType::F64), true);
    sum(gelu(x, kind)).backward();
    CHECK(x.grad().item() == doctest::Approx(0.5).epsilon(1e-15));
  }
}

TEST_CASE("gelu rejects integer input") {
  const Var xi(Tensor::zeros({3}, DType::I64), false, "xi");
  CHECK_THROWS_WITH_AS(gelu(xi), doctest::Contains("gelu: dtype i64 not supported for x (xi:"),
                       Error);
}

// --- bias_gelu: the linear layer's bias fused into its activation

TEST_CASE("gradcheck: bias_gelu, both kinds, y and bias") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    const Tensor y = affine(rand(s, 43), 3.0, 0.0), b = rand({s.back()}, 44);
    CAPTURE(shape_str(s));
    for (GeluKind kind : {GeluKind::ERF, GeluKind::TANH}) {
      CHECK(gradcheck("bias_gelu", [kind](auto& v) { return bias_gelu(v[0], v[1], kind); }, {y, b}));
      // Only the bias needs a gradient: dy is still computed, as dbias's source.
      CHECK(gradcheck("bias_gelu(const y, b)", [y, kind](auto& v) { return bias_gelu(Var(y), v[0], kind); },
                      {b}));
    }
  }
}

TEST_CASE("bias_gelu equals gelu(y + bias), forward and backward (f32)") {
  // Rows of odd widths, C > 64 (several column chunks of the dbias sum) and
  // enough elements for the parallel loops; values up to +-5 reach both the
  // polynomial and the general path of the f32 GELU kernel.
  for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 17}, {37, 130}, {64, 769}}) {
    // Plain copies: clang 14 cannot capture structured bindings (CAPTURE does).
    const int64_t rows = size.first, C = size.second;
    CAPTURE(rows);
    CAPTURE(C);
    for (GeluKind kind : {GeluKind::ERF, GeluKind::TANH}) {
      const Tensor y = affine(rand({rows, C}, 45, DType::F32), 5.0, 0.0);
      const Tensor b = rand({C}, 46, DType::F32), R = randn({rows, C}, 47, DType::F32);
      const Var y1(y.clone(), true), b1(b.clone(), true), y2(y.clone(), true), b2(b.clone(), true);
      const Var fused = bias_gelu(y1, b1, kind);
      const Var plain = gelu(add(y2, b2), kind);
      sum(mul(fused, Var(R))).backward();
      sum(mul(plain, Var(R))).backward();
      // The f32 GELU kernel picks its polynomial or general path per chunk
      // of 16 elements, and bias_gelu chunks each row on its own: both paths
      // give the correctly rounded value but for ~1e-11 (relative), so at
      // most one ulp apart.
      CHECK(check_close("bias_gelu out", fused.value(), plain.value(), 1e-30, 1.2e-7));
      CHECK(check_close("bias_gelu dy", y1.grad(), y2.grad(), 1e-30, 1.2e-7));
      // dbias: column sums in double here, sum_tensor's order there.
      CHECK(check_close("bias_gelu dbias", b1.grad(), b2.grad(), 1e-6, 1e-6));
    }
  }
}

TEST_CASE("bias_gelu errors name the operand") {
  const Var y(Tensor::zeros({2, 3}), false, "y");
  CHECK_THROWS_WITH_AS(bias_gelu(y, Var(Tensor::zeros({4}), false, "b")),
                       doctest::Contains("bias_gelu: bias (b: f32[4] cpu) does not match y (y: f32[2, 3] cpu), expected [3]"), Error);
  CHECK_THROWS_WITH_AS(bias_gelu(y, Var()), doctest::Contains("bias_gelu: bias (undefined) does not match y"),
                       Error);
  CHECK_THROWS_WITH_AS(bias_gelu(y, Var(Tensor::zeros({3}, DType::F64), false, "b64")),
                       doctest::Contains("bias_gelu"), Error);
}
