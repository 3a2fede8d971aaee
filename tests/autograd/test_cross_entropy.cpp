// Cross-entropy: f64 gradchecks on 2-D and 3-D logits with ignored targets,
// the forward against -log softmax computed by hand, torch's edge cases
// (all ignored -> NaN, ignore_index inside [0, V)), large logits, and
// error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/cross_entropy.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// mean over rows with target != ignore of log sum exp(x_row) - x_row[target].
double cross_entropy_ref(const Tensor& logits, const std::vector<int64_t>& targets,
                         int64_t ignore) {
  const int64_t V = logits.size(-1);
  const std::vector<double> x = logits.to_vector();
  double total = 0;
  int64_t n = 0;
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] == ignore) continue;
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(x[r * size_t(V) + size_t(v)]);
    total += std::log(z) - x[r * size_t(V) + size_t(targets[r])];
    ++n;
  }
  return total / double(n);
}

}  // namespace

TEST_CASE("gradcheck: cross_entropy 2-D and 3-D with ignored targets") {
  const Tensor x2 = rand({4, 5}, 1);
  const Tensor t2 = Tensor::from_data<int64_t>({3, -100, 0, 4}, {4});
  CHECK(gradcheck("cross_entropy [4, 5]",
                  [](auto& v) { return cross_entropy(v[0], v[1].value()); }, {x2, t2}));
  const Tensor x3 = rand({2, 3, 4}, 2);
  const Tensor t3 = Tensor::from_data<int32_t>({1, 2, 3, 0, 1, 2}, {2, 3});
  CHECK(gradcheck("cross_entropy [2, 3, 4], ignore_index 2",
                  [](auto& v) { return cross_entropy(v[0], v[1].value(), 2); }, {x3, t3}));
  CHECK(gradcheck("cross_entropy [1, 1]",
                  [](auto& v) { return cross_entropy(v[0], v[1].value()); },
                  {rand({1, 1}, 3), Tensor::from_data<int64_t>({0}, {1})}));
}

TEST_CASE("cross_entropy forward by hand") {
  // logits [1, 2, 3], target 2: log(e^1 + e^2 + e^3) - 3.
  const double expected = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
  for (DType dt : {DType::F64, DType::F32}) {
    const Var x(Tensor::from_vector({1, 2, 3}, {1, 3}, dt));
    const Tensor loss = cross_entropy(x, Tensor::from_data<int64_t>({2}, {1})).value();
    CHECK(loss.shape() == Shape{});
    CHECK(loss.dtype() == dt);
    CHECK(loss.item() == doctest::Approx(expected).epsilon(dt == DType::F64 ? 1e-15 : 1e-6));
  }
  // A 1-D logits vector with a 0-D target is one token.
  const Tensor one = cross_entropy(Var(Tensor::from_vector({1, 2, 3}, {3}, DType::F64)),
                                   Tensor::from_data<int64_t>({2}, {}))
                         .value();
  CHECK(one.item() == doctest::Approx(expected).epsilon(1e-15));
  // Large logits: the max is subtracted first.
  const Tensor big = cross_entropy(Var(Tensor::from_vector({1000, 1001, 1002}, {1, 3})),
                                   Tensor::from_data<int64_t>({0}, {1}))
                         .value();
  CHECK(big.item() == doctest::Approx(std::log(1 + std::exp(1.0) + std::exp(2.0))));
  // Random 3-D logits against the reference, with ignored rows.
  const Tensor x = randn({3, 4, 7}, 5);
  const std::vector<int64_t> t{0, 6, -100, 3, 5, -100, 1, 2, 2, 4, -100, 6};
  const Tensor got = cross_entropy(Var(x), Tensor::from_data<int64_t>(t, {3, 4})).value();
  CHECK(got.item() == doctest::Approx(cross_entropy_ref(x, t, -100)).epsilon(1e-14));
}

TEST_CASE("cross_entropy gradient is (softmax - onehot) / n_valid") {
  Var x(Tensor::from_vector({0, 0, 0, 5, 5, 5}, {2, 3}, DType::F64), true);
  cross_entropy(x, Tensor::from_data<int64_t>({1, -100}, {2})).backward();
  // One valid row with uniform softmax 1/3; the ignored row gets 0.
  const std::vector<double> g = x.grad().to_vector();
  CHECK(g[0] == doctest::Approx(1.0 / 3));
  CHECK(g[1] == doctest::Approx(1.0 / 3 - 1));
  CHECK(g[2] == doctest::Approx(1.0 / 3));
  CHECK(g[3] == 0);
  CHECK(g[4] == 0);
  CHECK(g[5] == 0);
}

TEST_CASE("cross_entropy: every target ignored gives NaN (as torch) and zero gradients") {
  Var x(rand({2, 3}, 6), true);
  const Var loss = cross_entropy(x, Tensor::from_data<int64_t>({-100, -100}, {2}));
  CHECK(std::isnan(loss.value().item()));
  loss.backward();
  CHECK(x.grad().to_vector() == std::vector<double>(6, 0.0));
}

TEST_CASE("cross_entropy errors: bad targets, shapes, dtypes") {
  const Var x(Tensor::zeros({2, 3, 5}));
  CHECK_THROWS_WITH_AS(
      cross_entropy(x, Tensor::from_data<int64_t>({0, 1, 5, 2, 3, 4}, {2, 3})),
      doctest::Contains("cross_entropy: target 5 at flat position 2"), Error);
  CHECK_THROWS_WITH_AS(
      cross_entropy(x, Tensor::from_data<int32_t>({0, 1, 2, 3, 4, -1}, {2, 3})),
      doctest::Contains("target -1 at flat position 5"), Error);
  // -100 is only special when it is the ignore_index.
  CHECK_THROWS_WITH_AS(
      cross_entropy(x, Tensor::from_data<int64_t>({0, 1, 2, 3, 4, -100}, {2, 3}), 0),
      doctest::Contains("target -100"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, Tensor::zeros({3, 2}, DType::I64)),
                       doctest::Contains("cross_entropy: targets must have shape [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(x, Tensor::zeros({2, 3}, DType::F32)),
                       doctest::Contains("cross_entropy: targets must be i32 or i64"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(Var(Tensor::zeros({2, 0})), Tensor::zeros({2}, DType::I64)),
                       doctest::Contains("cross_entropy: no classes"), Error);
}

TEST_CASE("gradcheck: linear_cross_entropy, chunked, with ignored targets") {
  // x [2, 3, 4], weight [5, 4]: 6 rows in chunks of 1, 4 (a short last
  // chunk) and all at once.
  const Tensor x = rand({2, 3, 4}, 11), w = rand({5, 4}, 12);
  const Tensor t = Tensor::from_data<int64_t>({1, -100, 4, 0, 2, -100}, {2, 3});
  for (int64_t chunk : {1, 4, 0}) {
    CAPTURE(chunk);
    CHECK(gradcheck("linear_cross_entropy",
                    [chunk](auto& v) { return linear_cross_entropy(v[0], v[1], v[2].value(), -100, chunk); },
                    {x, w, t}));
  }
  const Tensor t32 = Tensor::from_data<int32_t>({1, 2, 4, 0, 2, 3}, {2, 3});
  CHECK(gradcheck("linear_cross_entropy i32, ignore_index 2",
                  [](auto& v) { return linear_cross_entropy(v[0], v[1], v[2].value(), 2, 4); }, {x, w, t32}));
}

TEST_CASE("linear_cross_entropy equals cross_entropy(linear(x, W)) in f32, in any chunking") {
  const int64_t B = 3, T = 37, C = 48, V = 301;  // rows 111: no chunk size divides it
  const Tensor x0 = rand({B, T, C}, 21, DType::F32), w0 = rand({V, C}, 22, DType::F32);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < B * T; ++i) ids.push_back(i % 13 == 5 ? -100 : (i * 37 + 11) % V);
  const Tensor t = Tensor::from_data(ids, {B, T});
  Var xr(x0, true), wr(w0, true);
  const Var ref = cross_entropy(linear(xr, wr), t);
  ref.backward();
  for (int64_t chunk : {1, 16, 111, 1000, 0}) {
    CAPTURE(chunk);
    Var x(x0, true), w(w0, true);
    const Var l = linear_cross_entropy(x, w, t, -100, chunk);
    CHECK(l.value().item() == doctest::Approx(ref.value().item()).epsilon(1e-6));
    scale(l, 2.5).backward();  // dloss != 1 reaches both gradients
    CHECK(check_close("dx", x.grad(), affine(xr.grad(), 2.5, 0.0), 1e-6, 1e-5));
    CHECK(check_close("dw", w.grad(), affine(wr.grad(), 2.5, 0.0), 1e-6, 1e-5));
  }
  // Without a gradient: the same loss, no work for the backward.
  {
    NoGradGuard off;
    CHECK(linear_cross_entropy(Var(x0), Var(w0), t).value().item() ==
          doctest::Approx(ref.value().item()).epsilon(1e-6));
  }
  // Every target ignored: NaN, as cross_entropy; zero gradients.
  Var x(x0, true), w(w0, true);
  const Var l = linear_cross_entropy(x, w, Tensor::full({B, T}, -100.0, DType::I64));
  CHECK(std::isnan(l.value().item()));
  l.backward();
  CHECK(sum_tensor(x.grad().to(DType::F64).contiguous(), {}, false).item() == 0.0);
}

TEST_CASE("linear_cross_entropy errors name the target and the shapes") {
  const Var x(rand({2, 4}, 1, DType::F32)), w(rand({5, 4}, 2, DType::F32));
  CHECK_THROWS_WITH_AS(linear_cross_entropy(x, w, Tensor::from_data<int64_t>({1, 5}, {2})),
                       doctest::Contains("target 5 at flat position 1"), Error);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(x, Var(rand({5, 3}, 3, DType::F32)), Tensor::from_data<int64_t>({1, 2}, {2})),
                       doctest::Contains("in_features 3"), Error);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(x, w, Tensor::from_data<int64_t>({1, 2, 3}, {3})),
                       doctest::Contains("targets must have shape [2]"), Error);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(x, w, Tensor::from_data<int64_t>({1, 2}, {2}), -100, -1),
                       doctest::Contains("chunk_rows must be >= 0"), Error);
}
