// Autograd semantics: backward from a scalar, accumulation over several
// backward() calls, fan-out, zero_grad, detach, no-grad scope, and the
// errors for misuse.
#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("backward of a scalar: closed-form gradients") {
  // L = sum(x * x + 3 x) => dL/dx = 2x + 3.
  Var x(Tensor::from_vector({1, -2, 0.5}, {3}, DType::F64), true, "x");
  const Var loss = sum(add(mul(x, x), scale(x, 3.0)));
  CHECK(loss.value().item() == doctest::Approx(1 + 4 + 0.25 + 3 * (1 - 2 + 0.5)));
  loss.backward();
  CHECK(x.grad().to_vector() == std::vector<double>{5, -1, 4});
  CHECK(tape_size() == 0);  // backward consumed the tape
}

TEST_CASE("gradients accumulate across backward() calls until zero_grad") {
  Var w(Tensor::from_vector({2.0}, {1}, DType::F64), true, "w");
  for (int i = 0; i < 3; ++i) sum(scale(w, 4.0)).backward();
  CHECK(w.grad().item() == 12.0);
  w.zero_grad();
  CHECK_FALSE(w.grad().defined());
  sum(mul(w, w)).backward();
  CHECK(w.grad().item() == 4.0);
}

TEST_CASE("fan-out sums contributions and intermediate grads are freed unless retained") {
  Var x(Tensor::from_vector({3.0}, {1}, DType::F64), true);
  const Var y = scale(x, 2.0);  // used twice below
  Var z = add(mul(y, y), y);    // z = 4x^2 + 2x, dz/dx = 8x + 2 = 26
  z.retain_grad();
  sum(z).backward();
  CHECK(x.grad().item() == 26.0);
  CHECK_FALSE(y.grad().defined());
  CHECK(z.grad().item() == 1.0);
}

TEST_CASE("detach and no-grad scope record nothing") {
  Var x(Tensor::ones({2}, DType::F64), true);
  {
    NoGradGuard guard;
    CHECK_FALSE(grad_enabled());
    const Var y = mul(x, x);
    CHECK_FALSE(y.requires_grad());
    CHECK(tape_size() == 0);
  }
  CHECK(grad_enabled());
  const Var d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.value().shares_storage(x.value()));
  const Var y = mul(d, d);
  CHECK_FALSE(y.requires_grad());
  CHECK(tape_size() == 0);
  // Mixed: only the tracked input gets a gradient.
  sum(mul(x, d)).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{1, 1});
}

TEST_CASE("misuse gives clear errors") {
  Var x(Tensor::ones({2}, DType::F64), true, "x");
  CHECK_THROWS_WITH_AS(mul(x, x).backward(), doctest::Contains("one-element"), Error);
  clear_tape();
  const Var c(Tensor::ones({1}));
  CHECK_THROWS_WITH_AS(c.backward(), doctest::Contains("does not require grad"), Error);
  CHECK_THROWS_WITH_AS(Var(Tensor::zeros({2}, DType::I64), true, "ids"),
                       doctest::Contains("only floating tensors"), Error);
  const Var y = scale(x, 2.0);
  CHECK_THROWS_WITH_AS(Var(y).set_requires_grad(false), doctest::Contains("non-leaf"), Error);
  clear_tape();
}

TEST_CASE("backward() of one graph leaves another live graph on the tape") {
  // Two independent graphs recorded before either backward (a CPU and a CUDA
  // copy of one computation, say): each must still get its own gradients.
  Var a(Tensor::from_vector({2.0}, {1}, DType::F64), true, "a");
  Var b(Tensor::from_vector({5.0}, {1}, DType::F64), true, "b");
  const Var la = sum(mul(a, a)), lb = sum(scale(b, 3.0));
  la.backward();
  CHECK(a.grad().item() == 4.0);
  CHECK_FALSE(b.grad().defined());
  CHECK(tape_size() > 0);
  lb.backward();
  CHECK(b.grad().item() == 3.0);
  CHECK(tape_size() == 0);
}

TEST_CASE("a second backward() through a freed graph is an error, not a silent zero") {
  Var x(Tensor::from_vector({3.0}, {1}, DType::F64), true, "x");
  const Var y = scale(x, 2.0);
  const Var l1 = sum(y), l2 = sum(mul(y, y));
  l1.backward();  // runs sum(y) and y = 2x; l2's entries stay recorded
  CHECK(x.grad().item() == 2.0);
  CHECK_THROWS_WITH_AS(l2.backward(), doctest::Contains("already ran and freed"), Error);
  CHECK_THROWS_WITH_AS(l1.backward(), doctest::Contains("already ran and freed"), Error);
  clear_tape();
}

// reshape's backward hands its input a view of dout instead of a copy when
// nothing else holds dout; the gradient buffers must still never alias.
TEST_CASE("reshape backward: the input keeps dout's buffer only when nobody else holds it") {
  Var x(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::F64), true, "x");
  Var h = scale(x, 2.0);
  h.retain_grad();
  Var r = reshape(h, {3, 2});
  sum(mul(r, r)).backward();  // d/dh = 2 r (reshaped), d/dx = 4 h = 8 x
  CHECK(x.grad().to_vector() == std::vector<double>{8, 16, 24, 32, 40, 48});
  // h's grad came through reshape from a buffer held by nobody else: no copy.
  CHECK(h.grad().to_vector() == std::vector<double>{4, 8, 12, 16, 20, 24});

  // A retained dout must not be shared: h's grad is updated in place by the
  // second contribution, which would otherwise change r's retained grad.
  Var y(Tensor::from_vector({1, 2, 3, 4}, {4}, DType::F64), true, "y");
  Var g = scale(y, 1.0);
  g.retain_grad();
  Var r2 = reshape(g, {2, 2});
  r2.retain_grad();
  const Var loss = add(sum(scale(r2, 3.0)), sum(scale(g, 5.0)));
  loss.backward();
  CHECK(g.grad().to_vector() == std::vector<double>{8, 8, 8, 8});
  CHECK(r2.grad().to_vector() == std::vector<double>{3, 3, 3, 3});
  CHECK_FALSE(g.grad().shares_storage(r2.grad()));
  CHECK(y.grad().to_vector() == std::vector<double>{8, 8, 8, 8});

  // Fan-out through two reshapes of one dout-producing op: each input gets
  // its own buffer and the sum is right.
  Var z(Tensor::from_vector({1, 2}, {2}, DType::F64), true, "z");
  Var zz = scale(z, 1.0);
  const Var a = reshape(zz, {1, 2}), b = reshape(zz, {2, 1});
  sum(add(scale(a, 2.0), reshape(scale(b, 7.0), {1, 2}))).backward();
  CHECK(z.grad().to_vector() == std::vector<double>{9, 9});
}
