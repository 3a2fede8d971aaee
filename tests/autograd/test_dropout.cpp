// Inverted dropout: the mask is exactly the documented Philox expression,
// reproducible from the generator state, with the right keep rate; the
// backward uses the same mask; identity cases; error cases.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/dropout.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {
// Kept positions of a dropout output computed on an all-nonzero input.
std::vector<bool> kept(const Tensor& y) {
  std::vector<bool> k;
  for (double v : y.to_vector()) k.push_back(v != 0.0);
  return k;
}
}  // namespace

TEST_CASE("gradcheck: dropout with a fixed generator") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    CAPTURE(shape_str(s));
    // A fresh generator per call: every forward pass uses the same mask.
    CHECK(gradcheck("dropout",
                    [](auto& v) {
                      Generator gen(42, 7);
                      return dropout(v[0], 0.3, gen);
                    },
                    {rand(s, 61)}));
  }
}

TEST_CASE("dropout mask is philox_uniform(seed, offset, i) >= p") {
  const int64_t n = 1001;  // not a multiple of 4
  const double p = 0.25;
  Generator gen(7, 3);
  const Tensor y = dropout(Var(Tensor::ones({n}, DType::F64)), p, gen).value();
  CHECK(gen.offset == 3 + (n + 3) / 4);  // one advance of ceil(n / 4) blocks
  const std::vector<double> v = y.to_vector();
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double want = philox_uniform(7, 3, uint64_t(i)) >= p ? 1.0 / (1.0 - p) : 0.0;
    wrong += v[size_t(i)] != want;
  }
  CHECK(wrong == 0);
}

TEST_CASE("dropout keep rate, reproducibility, generator advance") {
  const int64_t n = 1 << 20;
  const double p = 0.3;
  const Var x(Tensor::ones({n}));
  Generator g1(5), g2(5);
  const Tensor y1 = dropout(x, p, g1).value();
  const Tensor y2 = dropout(x, p, g2).value();
  const std::vector<bool> k1 = kept(y1);
  int64_t n_kept = 0;
  for (bool k : k1) n_kept += k;
  // Binomial std of the rate is sqrt(p (1 - p) / n) = 4.5e-4: 0.003 is ~7 sigma.
  CHECK(std::fabs(double(n_kept) / double(n) - (1 - p)) < 0.003);
  CHECK(k1 == kept(y2));  // same generator state, same mask
  const std::vector<bool> k3 = kept(dropout(x, p, g1).value());  // g1 has advanced
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += k1[size_t(i)] != k3[size_t(i)];
  // Independent masks differ in a fraction 2 p (1 - p) = 0.42 of the positions.
  CHECK(std::fabs(double(differ) / double(n) - 2 * p * (1 - p)) < 0.005);
}

TEST_CASE("dropout backward uses the forward mask") {
  const Var x(affine(rand({6, 9}, 62), 1.0, 2.0), true);  // in [1, 3): never 0
  Generator gen(11);
  const Var y = dropout(x, 0.5, gen);
  sum(y).backward();
  // dL/dx = mask * 2 and y = mask * 2 * x, so the grad is y / x exactly.
  const std::vector<double> g = x.grad().to_vector(), yv = y.value().to_vector(),
                            xv = x.value().to_vector();
  int64_t wrong = 0;
  for (size_t i = 0; i < g.size(); ++i) wrong += g[i] != yv[i] / xv[i];
  CHECK(wrong == 0);
}

TEST_CASE("dropout index i is the row-major index of the contiguous input") {
  const Tensor base = affine(rand({5, 7}, 63), 1.0, 2.0);
  Generator g1(9), g2(9);
  const Tensor from_view = dropout(Var(base.transpose(0, 1)), 0.4, g1).value();
  const Tensor from_copy = dropout(Var(base.transpose(0, 1).contiguous()), 0.4, g2).value();
  CHECK(check_close("transposed input", from_view, from_copy, 0, 0));
}

TEST_CASE("dropout identity cases: p == 0 or eval mode") {
  Var x(rand({3, 4}, 64), true);
  Generator gen(1, 10);
  for (const bool training : {true, false}) {
    const Var y = dropout(x, training ? 0.0 : 0.5, gen, training);
    CHECK(check_close("identity", y.value(), x.value(), 0, 0));
    CHECK(gen.offset == 10);  // no random numbers drawn
    x.zero_grad();
    sum(y).backward();
    CHECK(check_close("identity grad", x.grad(), Tensor::ones({3, 4}, DType::F64), 0, 0));
  }
}

TEST_CASE("dropout errors") {
  Generator gen(1);
  const Var x(Tensor::ones({4}), false, "x");
  CHECK_THROWS_WITH_AS(dropout(x, 1.0, gen),
                       doctest::Contains("dropout: p must be in [0, 1), got 1"), Error);
  CHECK_THROWS_WITH_AS(dropout(x, -0.1, gen), doctest::Contains("p must be in [0, 1)"), Error);
  CHECK_THROWS_WITH_AS(dropout(x, std::nan(""), gen), doctest::Contains("p must be in [0, 1)"),
                       Error);
  const Var xi(Tensor::zeros({4}, DType::I32), false, "xi");
  CHECK_THROWS_WITH_AS(dropout(xi, 0.5, gen), doctest::Contains("dropout: dtype i32 not supported"),
                       Error);
  CHECK(gen.offset == 0);  // failed calls draw nothing
}
