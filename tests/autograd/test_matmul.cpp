#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: matmul, every transpose combination, 2-D and batched") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::string tag = std::string("matmul ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0");
      const Shape sa = ta ? Shape{4, 3} : Shape{3, 4}, sb = tb ? Shape{5, 4} : Shape{4, 5};
      auto fn = [ta, tb](const std::vector<Var>& v) { return matmul(v[0], v[1], ta, tb); };
      CHECK(gradcheck(tag + " 2-D", fn, {rand(sa, 1), rand(sb, 2)}));
      Shape ba = sa, bb = sb;
      ba.insert(ba.begin(), {2, 3});
      bb.insert(bb.begin(), {2, 3});
      CHECK(gradcheck(tag + " batched", fn, {rand(ba, 3), rand(bb, 4)}));
      // A shared 2-D right operand against a batched left one (as in linear).
      CHECK(gradcheck(tag + " batched x 2-D", fn, {rand(ba, 5), rand(sb, 6)}));
    }
}

TEST_CASE("gradcheck: linear with and without bias") {
  const Tensor x = rand({2, 3, 4}, 1), w = rand({5, 4}, 2), b = rand({5}, 3);
  CHECK(gradcheck("linear", [](auto& v) { return linear(v[0], v[1], v[2]); }, {x, w, b}));
  CHECK(gradcheck("linear no bias", [](auto& v) { return linear(v[0], v[1]); }, {x, w}));
}

TEST_CASE("matmul forward values") {
  const Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = Tensor::from_vector({7, 8, 9, 10, 11, 12}, {3, 2});
  CHECK(matmul_tensor(a, b).to_vector() == std::vector<double>{58, 64, 139, 154});
  CHECK(matmul_tensor(a, a, false, true).to_vector() == std::vector<double>{14, 32, 32, 77});
  CHECK(matmul_tensor(a, a, true, false).to_vector() ==
        std::vector<double>{17, 22, 27, 22, 29, 36, 27, 36, 45});
  // A transposed view as input is made contiguous, not misread.
  CHECK(matmul_tensor(b.transpose(0, 1), a.transpose(0, 1)).to_vector() ==
        std::vector<double>{58, 139, 64, 154});
  // K = 0 gives zeros.
  CHECK(matmul_tensor(Tensor::zeros({2, 0}), Tensor::zeros({0, 3})).to_vector() ==
        std::vector<double>(6, 0.0));
}

TEST_CASE("matmul errors name the shapes") {
  const Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  CHECK_THROWS_WITH_AS(matmul_tensor(a, b), doctest::Contains("inner dimensions differ (3 vs 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul_tensor(Tensor::zeros({3}), b), doctest::Contains("2-D"), Error);
  CHECK_THROWS_WITH_AS(matmul_tensor(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4})),
                       doctest::Contains("batch dims"), Error);
  CHECK_THROWS_WITH_AS(
      linear(Var(Tensor::zeros({2, 3})), Var(Tensor::zeros({4, 5})), Var()),
      doctest::Contains("in_features"), Error);
}

TEST_CASE("matmul_into writes or adds the product into out, checked") {
  const Tensor a = rand({4, 6}, 1, DType::F32), b = rand({5, 6}, 2, DType::F32);
  Tensor out = Tensor::full({4, 5}, 7.0, DType::F32);
  matmul_into(out, a, b, false, true, false);
  CHECK(out.to_vector() == matmul_tensor(a, b, false, true).to_vector());
  matmul_into(out, a, b, false, true, true);
  CHECK(out.to_vector() == affine(matmul_tensor(a, b, false, true), 2.0, 0.0).to_vector());
  Tensor bad = Tensor::zeros({4, 4}, DType::F32);
  CHECK_THROWS_WITH_AS(matmul_into(bad, a, b, false, true, false), doctest::Contains("does not fit out"), Error);
}
