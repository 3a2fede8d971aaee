// Softmax over the last dim: f64 gradchecks, closed-form values, stability
// for large inputs, error cases.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/softmax.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: softmax") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}, Shape{3, 1}}) {
    CAPTURE(shape_str(s));
    CHECK(gradcheck("softmax", [](auto& v) { return softmax(v[0]); },
                    {affine(rand(s, 51), 2.0, 0.0)}));
  }
}

TEST_CASE("softmax forward values") {
  // [0, ln 2] -> [1, 2] / 3.
  const Var x(Tensor::from_vector({0, std::log(2.0)}, {2}, DType::F64));
  CHECK(check_close("softmax [0, ln 2]", softmax(x).value(),
                    Tensor::from_vector({1.0 / 3, 2.0 / 3}, {2}, DType::F64), 1e-16, 1e-15));
  // Rows sum to 1, for both dtypes.
  for (DType dt : {DType::F64, DType::F32}) {
    const Tensor y = softmax(Var(affine(rand({5, 9}, 52, dt), 5.0, 0.0))).value();
    CHECK(check_close("row sums", sum_tensor(y, {-1}, false), Tensor::ones({5}, dt),
                      dt == DType::F64 ? 1e-15 : 1e-6, 0));
  }
  // Stable: no overflow for huge logits; -inf logits get probability 0.
  const Var big(Tensor::from_vector({1000, 1000, 1000, 0, -INFINITY, 1000}, {2, 3}, DType::F32));
  CHECK(check_close("softmax large", softmax(big).value(),
                    Tensor::from_vector({1.0 / 3, 1.0 / 3, 1.0 / 3, 0, 0, 1}, {2, 3}), 1e-7, 0));
}

TEST_CASE("softmax backward by hand") {
  // dx = y * (dy - sum(dy * y)); with dy = one-hot(k), dx_j = y_j (delta_jk - y_k).
  const Var x(Tensor::from_vector({0, std::log(2.0)}, {2}, DType::F64), true);
  const Var y = softmax(x);
  sum(mul(y, Var(Tensor::from_vector({0, 1}, {2}, DType::F64)))).backward();
  const double y0 = 1.0 / 3, y1 = 2.0 / 3;
  CHECK(check_close("dx", x.grad(), Tensor::from_vector({-y0 * y1, y1 * (1 - y1)}, {2}, DType::F64),
                    1e-16, 1e-14));
}

TEST_CASE("softmax errors") {
  const Var xi(Tensor::zeros({2, 3}, DType::I32), false, "xi");
  CHECK_THROWS_WITH_AS(softmax(xi), doctest::Contains("softmax: dtype i32 not supported"), Error);
}
