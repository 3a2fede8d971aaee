// Embedding: f64 gradcheck with repeated ids, forward rows, ids of several
// ranks and both integer dtypes, the backward's per-row counts, and error
// messages (out-of-range ids with value, position and V; dtypes; shapes).
#include <doctest/doctest.h>

#include "autograd/ops/embedding.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("gradcheck: embedding with repeated ids") {
  const Tensor w = rand({5, 3}, 1);
  const Tensor ids = Tensor::from_data<int64_t>({1, 3, 1, 0, 1, 4}, {2, 3});
  CHECK(gradcheck("embedding i64 [2, 3]", [](auto& v) { return embedding(v[0], v[1].value()); },
                  {w, ids}));
  const Tensor ids32 = Tensor::from_data<int32_t>({2, 2, 2, 0}, {4});
  CHECK(gradcheck("embedding i32 [4]", [](auto& v) { return embedding(v[0], v[1].value()); },
                  {w, ids32}));
}

TEST_CASE("embedding forward copies rows") {
  // weight[v, c] = 10 v + c.
  std::vector<double> wv;
  for (int v = 0; v < 4; ++v)
    for (int c = 0; c < 3; ++c) wv.push_back(10 * v + c);
  for (DType dt : {DType::F32, DType::F64}) {
    const Var w(Tensor::from_vector(wv, {4, 3}, dt));
    const Tensor out = embedding(w, Tensor::from_data<int32_t>({2, 0, 3, 2}, {2, 2})).value();
    CHECK(out.shape() == Shape{2, 2, 3});
    CHECK(out.dtype() == dt);
    CHECK(out.to_vector() == std::vector<double>{20, 21, 22, 0, 1, 2, 30, 31, 32, 20, 21, 22});
    // A scalar id gives one row of shape [C].
    const Tensor one = embedding(w, Tensor::from_data<int64_t>({1}, {})).value();
    CHECK(one.shape() == Shape{3});
    CHECK(one.to_vector() == std::vector<double>{10, 11, 12});
    // No ids: [0, C].
    CHECK(embedding(w, Tensor::zeros({0}, DType::I64)).value().shape() == Shape{0, 3});
  }
}

TEST_CASE("embedding backward sums the gradient rows per id") {
  Var w(Tensor::zeros({4, 2}, DType::F64), true);
  const Tensor ids = Tensor::from_data<int64_t>({3, 1, 3, 3}, {4});
  sum(embedding(w, ids)).backward();
  CHECK(w.grad().to_vector() == std::vector<double>{0, 0, 1, 1, 0, 0, 3, 3});
  // A strided (transposed) ids view is read in its logical order.
  Var w2(Tensor::from_vector({0, 1, 2, 3}, {4, 1}, DType::F64), true);
  const Tensor ids2 = Tensor::from_data<int64_t>({0, 1, 2, 3, 0, 0}, {2, 3}).transpose(0, 1);
  const Var out = embedding(w2, ids2);
  CHECK(out.value().to_vector() == std::vector<double>{0, 3, 1, 0, 2, 0});
  const Tensor R = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2, 1}, DType::F64);
  sum(mul(out, Var(R))).backward();
  // ids2 = [[0, 3], [1, 0], [2, 0]]: id 0 gets 1 + 4 + 6, id 1 gets 3, ...
  CHECK(w2.grad().to_vector() == std::vector<double>{11, 3, 5, 2});
}

TEST_CASE("embedding errors: out-of-range ids, dtypes, shapes") {
  const Var w(Tensor::zeros({5, 4}));
  CHECK_THROWS_WITH_AS(embedding(w, Tensor::from_data<int64_t>({0, 1, 4, 7, 9}, {5})),
                       doctest::Contains("embedding: id 7 at flat position 3"), Error);
  CHECK_THROWS_WITH_AS(embedding(w, Tensor::from_data<int32_t>({0, 1, 2, 5}, {2, 2})),
                       doctest::Contains("V = 5"), Error);
  CHECK_THROWS_WITH_AS(embedding(w, Tensor::from_data<int32_t>({0, -1}, {2})),
                       doctest::Contains("id -1 at flat position 1"), Error);
  CHECK_THROWS_WITH_AS(embedding(w, Tensor::zeros({3}, DType::F32)),
                       doctest::Contains("embedding: ids must be i32 or i64"), Error);
  CHECK_THROWS_WITH_AS(embedding(Var(Tensor::zeros({5})), Tensor::zeros({3}, DType::I64)),
                       doctest::Contains("embedding: weight must be [V, C]"), Error);
  CHECK_THROWS_WITH_AS(embedding(Var(Tensor::zeros({5, 4}, DType::I32)),
                                 Tensor::zeros({3}, DType::I64)),
                       doctest::Contains("embedding: dtype i32 not supported"), Error);
}
