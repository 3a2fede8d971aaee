#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: sum and mean over axes") {
  const Tensor x = rand({2, 3, 4}, 1);
  CHECK(gradcheck("sum all", [](auto& v) { return sum(v[0]); }, {x}));
  CHECK(gradcheck("sum dim 1", [](auto& v) { return sum(v[0], {1}); }, {x}));
  CHECK(gradcheck("sum dims 0,2 keepdim", [](auto& v) { return sum(v[0], {0, -1}, true); }, {x}));
  CHECK(gradcheck("mean all", [](auto& v) { return mean(v[0]); }, {x}));
  CHECK(gradcheck("mean dim -1", [](auto& v) { return mean(v[0], {-1}); }, {x}));
  CHECK(gradcheck("mean dims 0,1", [](auto& v) { return mean(v[0], {0, 1}); }, {x}));
}

TEST_CASE("sum / mean / sum_to forward values") {
  const Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(sum_tensor(x, {}, false).item() == 21);
  CHECK(sum_tensor(x, {0}, false).to_vector() == std::vector<double>{5, 7, 9});
  CHECK(sum_tensor(x, {1}, true).shape() == Shape{2, 1});
  CHECK(sum_tensor(x, {1}, true).to_vector() == std::vector<double>{6, 15});
  CHECK(mean(Var(x), {1}).value().to_vector() == std::vector<double>{2, 5});
  CHECK(sum_to(x, {3}).to_vector() == std::vector<double>{5, 7, 9});
  CHECK(sum_to(x, {2, 1}).to_vector() == std::vector<double>{6, 15});
  CHECK(sum_to(x, {1, 1}).to_vector() == std::vector<double>{21});
  // Summing over a zero-size axis gives zeros.
  CHECK(sum_tensor(Tensor::zeros({3, 0}), {1}, false).to_vector() == std::vector<double>(3, 0.0));
}

TEST_CASE("reduce errors") {
  const Var x(Tensor::zeros({2, 3}));
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("dim 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(sum(x, {1, -1}), doctest::Contains("repeated dim"), Error);
  CHECK_THROWS_WITH_AS(mean(Var(Tensor::zeros({0}))), doctest::Contains("empty"), Error);
  CHECK_THROWS_WITH_AS(sum_to(x.value(), {3, 3}), doctest::Contains("cannot reduce"), Error);
}
