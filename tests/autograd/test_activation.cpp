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
