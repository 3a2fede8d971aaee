#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: add/sub/mul/div with broadcasting") {
  const Tensor a = rand({2, 3, 4}, 1), b = rand({3, 1}, 2);
  const Tensor pos = affine(rand({1, 4}, 3), 0.5, 1.5);  // away from 0 for div
  CHECK(gradcheck("add", [](auto& v) { return add(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck("sub", [](auto& v) { return sub(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck("mul", [](auto& v) { return mul(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck("div", [](auto& v) { return div(v[0], v[1]); }, {a, pos}));
  CHECK(gradcheck("div (broadcast numerator)", [](auto& v) { return div(v[1], v[0]); },
                  {affine(rand({2, 3, 4}, 4), 0.5, 1.5), b}));
}

TEST_CASE("gradcheck: scale, add_scalar, neg") {
  const Tensor a = rand({3, 5}, 7);
  CHECK(gradcheck("scale", [](auto& v) { return scale(v[0], -2.5); }, {a}));
  CHECK(gradcheck("add_scalar", [](auto& v) { return add_scalar(v[0], 3.0); }, {a}));
  CHECK(gradcheck("neg", [](auto& v) { return neg(v[0]); }, {a}));
}

TEST_CASE("elementwise forward values") {
  const Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = Tensor::from_vector({10, 20, 30}, {3});
  CHECK(binary(a, b, BinaryOp::ADD).to_vector() == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(binary(a, b, BinaryOp::MUL).to_vector() ==
        std::vector<double>{10, 40, 90, 40, 100, 180});
  // Broadcast against a column, through a transposed (strided) view.
  const Tensor col = Tensor::from_vector({1, 2}, {2, 1});
  CHECK(binary(a.transpose(0, 1).contiguous().transpose(0, 1), col, BinaryOp::SUB).to_vector() ==
        std::vector<double>{0, 1, 2, 2, 3, 4});
}

TEST_CASE("elementwise errors name the shapes") {
  const Var a(Tensor::zeros({2, 3})), b(Tensor::zeros({4}));
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("[2, 3] and [4] cannot be broadcast"), Error);
  const Var c(Tensor::zeros({2, 3}, DType::F64));
  CHECK_THROWS_WITH_AS(mul(a, c), doctest::Contains("dtype mismatch"), Error);
}
