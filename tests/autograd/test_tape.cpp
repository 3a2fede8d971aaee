// Autograd semantics: backward from a scalar, accumulation over several
// backward() calls, fan-out, zero_grad, detach, no-grad scope, and the
// errors for misuse.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

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

// The gradient-ready hook (GradReadyGuard): once per leaf, right after its
// last contribution, so that the grad it sees is the final one.
TEST_CASE("gradient-ready hook: once per leaf, after its last contribution") {
  Var w1(Tensor::from_vector({0.5, -1.5}, {2}, DType::F64), true, "w1");  // at three depths
  Var w2(Tensor::from_vector({2.0, 3.0}, {2}, DType::F64), true, "w2");   // twice in one op
  Var w3(Tensor::from_vector({1.0, 1.0}, {2}, DType::F64), true, "w3");   // only near the loss
  Var w4(Tensor::from_vector({4.0, 4.0}, {2}, DType::F64), true, "w4");   // on an unused branch
  Var w5(Tensor::from_vector({7.0, 7.0}, {2}, DType::F64), true, "w5");   // in no op
  const Var c(Tensor::from_vector({1.0, 2.0}, {2}, DType::F64), false, "c");  // needs no grad
  const Var h1 = mul(w1, c);                 // depth 1: w1
  const Var h2 = add(mul(w2, w2), h1);       // w2 twice in one op
  const Var h3 = mul(add(h2, w1), h1);       // w1 again, deeper
  const Var unused = mul(w4, c);             // recorded, never reaches the loss
  const Var loss = sum(add(mul(h3, w3), scale(w1, 3.0)));  // w1 at the top, w3 only here

  std::vector<std::string> order;
  std::map<std::string, Tensor> at_hook;
  {
    GradReadyGuard guard([&](VarImpl& leaf) {
      order.push_back(leaf.name);
      at_hook[leaf.name] = leaf.grad.defined() ? leaf.grad.clone() : Tensor();
      CHECK(leaf.grad_final);
    });
    loss.backward();
  }
  // Each leaf once (w5 is in no entry, c needs no grad), w3 (used last in
  // the forward) before w2; w1 only after its lowest use, h1 = w1 * c.
  CHECK(order.size() == 4);
  CHECK(std::set<std::string>(order.begin(), order.end()) ==
        std::set<std::string>{"w1", "w2", "w3", "w4"});
  const auto pos = [&](const std::string& n) { return std::find(order.begin(), order.end(), n) - order.begin(); };
  CHECK(pos("w3") < pos("w2"));
  CHECK(pos("w2") < pos("w1"));
  CHECK(pos("w4") < pos("w2"));  // recorded after h2: reported as soon as walked past
  for (const Var* w : {&w1, &w2, &w3}) {
    REQUIRE(at_hook[w->name()].defined());
    CHECK(at_hook[w->name()].to_vector() == w->grad().to_vector());
  }
  CHECK_FALSE(at_hook["w4"].defined());
  CHECK_FALSE(w4.grad().defined());
  CHECK_FALSE(w5.grad().defined());
  // h1 = [0.5, -3], h2 = w2^2 + h1 = [4.5, 6], w3 = 1: dL/dw1 = 3 + h1 +
  // (h2 + w1 + h1) c, dL/dw2 = 2 w2 h1 (exact in binary).
  CHECK(w1.grad().to_vector() == std::vector<double>{3 + 0.5 + (4.5 + 0.5 + 0.5) * 1, 3 - 3 + (6 - 1.5 - 3) * 2});
  CHECK(w2.grad().to_vector() == std::vector<double>{2 * 2.0 * 0.5, 2 * 3.0 * -3.0});
  for (const Var* w : {&w1, &w2, &w3, &w4}) CHECK_FALSE(w->impl()->grad_final);
  clear_tape();

  // Without a guard nothing is called, and grads accumulate as before
  // (w3's first grad is h3 = (h2 + w1) h1).
  CHECK(w3.grad().to_vector() == std::vector<double>{2.5, -13.5});
  sum(mul(w3, w3)).backward();
  CHECK(w3.grad().to_vector() == std::vector<double>{2.5 + 2, -13.5 + 2});
}

TEST_CASE("gradient-ready hook: a contribution after the hook is an error naming the leaf") {
  Var x(Tensor::from_vector({1.0}, {1}, DType::F64), true, "x");
  Var hidden(Tensor::from_vector({2.0}, {1}, DType::F64), true, "hidden");
  const Var y = scale(hidden, 1.0);  // hidden's only listed use, early on the tape
  // An op that accumulates into `hidden` without listing it as an input.
  const Var bad = record("bad", x.value().clone(), {&x}, [hidden](const Tensor& dout) {
    accumulate_grad(hidden, dout);
  });
  const Var loss = sum(add(bad, y));
  int calls = 0;
  {
    GradReadyGuard guard([&](VarImpl&) { ++calls; });
    // Walk order: sum, add, bad (x reported), y's scale (hidden reported):
    // bad's closure runs before hidden is final, so this graph is fine.
    loss.backward();
  }
  CHECK(calls == 2);
  CHECK(hidden.grad().item() == 2.0);
  // Reversed: the unlisted contribution comes after hidden's last listed use.
  hidden.zero_grad();
  const Var bad2 = record("bad", x.value().clone(), {&x}, [hidden](const Tensor& dout) {
    accumulate_grad(hidden, dout);
  });
  const Var l2 = sum(mul(bad2, hidden));  // hidden's only listed use, above bad2
  GradReadyGuard guard([](VarImpl&) {});
  CHECK_THROWS_WITH_AS(l2.backward(), doctest::Contains("reaches the leaf hidden"), Error);
  CHECK_FALSE(hidden.impl()->grad_final);  // reset on the way out
  clear_tape();
}
