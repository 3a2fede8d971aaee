// Rotary embedding: f64 gradchecks (partial and full rotary_dim, a position
// offset), the forward against the formula evaluated here element by
// element, the pass-through dims, position 0 as the identity, the relative-
// position property of q.k, and error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/rotary.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// y for x [B, NH, T, HS] straight from the definition (GPT-NeoX rotate_half).
// With hf_f32_angles the angle is formed as Hugging Face does for f32
// models: inv_freq = 1 / base^(2i/d) in float, theta = float(pos * inv_freq).
std::vector<double> rotary_ref(const Tensor& x, int64_t rotary_dim, double base, int64_t offset,
                               bool hf_f32_angles = false) {
  const int64_t T = x.size(2), HS = x.size(3), rows = x.numel() / HS, half = rotary_dim / 2;
  const std::vector<double> X = x.to_vector();
  std::vector<double> Y = X;
  for (int64_t r = 0; r < rows; ++r) {
    const double pos = double(offset + r % T);
    for (int64_t i = 0; i < half; ++i) {
      double theta = pos / std::pow(base, 2.0 * double(i) / double(rotary_dim));
      if (hf_f32_angles) {
        const float inv = 1.0f / std::pow(float(base), float(2 * i) / float(rotary_dim));
        theta = double(float(pos) * inv);
      }
      const double a = X[size_t(r * HS + i)], b = X[size_t(r * HS + i + half)];
      Y[size_t(r * HS + i)] = a * std::cos(theta) - b * std::sin(theta);
      Y[size_t(r * HS + i + half)] = b * std::cos(theta) + a * std::sin(theta);
    }
  }
  return Y;
}

}  // namespace

TEST_CASE("gradcheck: rotary partial and full, with a position offset") {
  const Tensor x = rand({2, 2, 5, 6}, 1);
  CHECK(gradcheck("rotary 4 of 6, offset 3",
                  [](auto& v) { return rotary(v[0], 4, 10000.0, 3); }, {x}));
  CHECK(gradcheck("rotary 6 of 6, offset 3",
                  [](auto& v) { return rotary(v[0], 6, 10000.0, 3); }, {x}));
  CHECK(gradcheck("rotary 2 of 6, base 10", [](auto& v) { return rotary(v[0], 2, 10.0, 0); },
                  {rand({1, 3, 4, 6}, 2)}));
}

TEST_CASE("rotary forward matches the formula, rest dims and position 0 untouched") {
  const Tensor x = randn({2, 3, 7, 10}, 5);
  for (int64_t rd : {4, 8, 10}) {
    for (int64_t offset : {0, 3, 1000}) {
      CAPTURE(rd);
      CAPTURE(offset);
      const Tensor got = rotary(Var(x), rd, 10000.0, offset).value();
      const Tensor ref = Tensor::from_vector(rotary_ref(x, rd, 10000.0, offset), x.shape(),
                                             DType::F64);
      CHECK(check_close("rotary f64", got, ref, 1e-13, 1e-13));
      // f32 rotates by the f32-rounded angle, as the reference implementation.
      const Tensor got32 = rotary(Var(x.to(DType::F32)), rd, 10000.0, offset).value();
      const Tensor ref32 = Tensor::from_vector(rotary_ref(x, rd, 10000.0, offset, true),
                                               x.shape(), DType::F64);
      CHECK(check_close("rotary f32", got32, ref32, 1e-5, 1e-5));
      // Dims >= rotary_dim are copied bit for bit.
      if (rd < 10)
        CHECK(check_close("pass-through", got.narrow(3, rd, 10 - rd), x.narrow(3, rd, 10 - rd),
                          0, 0));
    }
  }
  // Position 0 (t = 0, no offset): cos 0 = 1, sin 0 = 0, so the identity.
  const Tensor y0 = rotary(Var(x), 10).value().narrow(2, 0, 1);
  CHECK(check_close("position 0", y0, x.narrow(2, 0, 1), 0, 0));
  // rotary_dim = 0 is the identity everywhere.
  CHECK(check_close("rotary_dim 0", rotary(Var(x), 0).value(), x, 0, 0));
}

TEST_CASE("rotary: q.k depends only on the position difference") {
  // <R(a) q, R(b) k> = <q, R(b - a) k>: shifting both by the same offset
  // keeps every dot product.
  const Tensor q = randn({1, 1, 1, 8}, 7), k = randn({1, 1, 1, 8}, 8);
  auto dot_at = [&](int64_t pq, int64_t pk) {
    const std::vector<double> a = rotary(Var(q), 8, 10000.0, pq).value().to_vector();
    const std::vector<double> b = rotary(Var(k), 8, 10000.0, pk).value().to_vector();
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d += a[i] * b[i];
    return d;
  };
  CHECK(dot_at(5, 2) == doctest::Approx(dot_at(105, 102)).epsilon(1e-10));
  CHECK(dot_at(0, 7) == doctest::Approx(dot_at(3, 10)).epsilon(1e-10));
}

TEST_CASE("rotary backward is the inverse rotation") {
  // For an orthogonal map y = R x, dL/dx = R^T dL/dy = R^-1 dL/dy: so
  // feeding the output back as the gradient must return the input.
  Var x(randn({1, 2, 5, 6}, 9), true);
  const Var y = rotary(x, 6, 10000.0, 4);
  sum(mul(y, Var(y.value()))).backward();
  CHECK(check_close("R^T R x = x", x.grad(), x.value(), 1e-14, 1e-14));
}

TEST_CASE("rotary errors name the op") {
  const Var x(Tensor::zeros({1, 2, 3, 6}));
  CHECK_THROWS_WITH_AS(rotary(x, 3), doctest::Contains("rotary: rotary_dim must be even"), Error);
  CHECK_THROWS_WITH_AS(rotary(x, 8), doctest::Contains("rotary_dim = 8"), Error);
  CHECK_THROWS_WITH_AS(rotary(x, -2), doctest::Contains("rotary: rotary_dim"), Error);
  CHECK_THROWS_WITH_AS(rotary(Var(Tensor::zeros({2, 3, 6})), 4),
                       doctest::Contains("rotary: x must be [B, NH, T, HS]"), Error);
  CHECK_THROWS_WITH_AS(rotary(x, 4, 10000.0, -1), doctest::Contains("position_offset"), Error);
  CHECK_THROWS_WITH_AS(rotary(x, 4, 0.0), doctest::Contains("rotary: base"), Error);
}

namespace {

// The unfused path qkv_heads replaces (the GPT-NeoX layer's, before).
QkvHeads qkv_heads_composed(const Var& qkv, int64_t NH, int64_t rd, double base, int64_t off) {
  const int64_t B = qkv.size(0), T = qkv.size(1), HS = qkv.size(2) / (3 * NH);
  const std::vector<Var> parts = split(reshape(qkv, {B, T, NH, 3 * HS}), {HS, HS, HS}, 3);
  auto heads = [](const Var& t) { return permute(t, {0, 2, 1, 3}); };
  return {rotary(heads(parts[0]), rd, base, off), rotary(heads(parts[1]), rd, base, off), heads(parts[2])};
}

}  // namespace

TEST_CASE("qkv_heads: the same bits as reshape, split, permute and rotary, both ways") {
  struct Case {
    int64_t B, T, NH, HS, rd, off;
  };
  for (const Case& c : {Case{2, 5, 3, 8, 8, 0}, Case{1, 7, 2, 16, 4, 3}, Case{3, 1, 1, 6, 0, 9}}) {
    for (DType dt : {DType::F32, DType::F64}) {
      CAPTURE(c.HS);
      CAPTURE(c.rd);
      const Tensor x0 = rand({c.B, c.T, c.NH * 3 * c.HS}, 40 + uint64_t(c.HS), dt);
      const Tensor gq = rand({c.B, c.NH, c.T, c.HS}, 1, dt), gk = rand({c.B, c.NH, c.T, c.HS}, 2, dt),
                   gv = rand({c.B, c.NH, c.T, c.HS}, 3, dt);
      Var a(x0, true), b(x0, true);
      const QkvHeads f = qkv_heads(a, c.NH, c.rd, 10000.0, c.off);
      const QkvHeads r = qkv_heads_composed(b, c.NH, c.rd, 10000.0, c.off);
      CHECK(f.q.value().to_vector() == r.q.value().contiguous().to_vector());
      CHECK(f.k.value().to_vector() == r.k.value().contiguous().to_vector());
      CHECK(f.v.value().to_vector() == r.v.value().contiguous().to_vector());
      CHECK(f.q.value().is_contiguous());
      auto loss = [&](const QkvHeads& h) {
        return add(add(sum(mul(h.q, Var(gq))), sum(mul(h.k, Var(gk)))), sum(mul(h.v, Var(gv))));
      };
      loss(f).backward();
      loss(r).backward();
      CHECK(a.grad().to_vector() == b.grad().to_vector());
    }
  }
  // Only some parts used: the others contribute nothing.
  Var a(rand({1, 3, 12}, 5, DType::F32), true);
  const QkvHeads h = qkv_heads(a, 2, 2);
  sum(h.k).backward();
  const std::vector<double> g = a.grad().to_vector();
  for (size_t i = 0; i < g.size(); ++i) {
    const size_t part = (i % 6) / 2;  // per head [q q | k k | v v] with HS 2
    if (part != 1) CHECK(g[i] == 0.0);
  }
}

TEST_CASE("gradcheck: qkv_heads") {
  CHECK(gradcheck("qkv_heads", [](auto& v) {
    const QkvHeads h = qkv_heads(v[0], 2, 4, 10000.0, 2);
    return add(add(sum(mul(h.q, h.q)), sum(mul(h.k, h.v))), sum(h.v));
  }, {rand({2, 3, 2 * 3 * 6}, 7)}));
}

TEST_CASE("qkv_heads errors name the shape") {
  const Var x(rand({2, 3, 20}, 1, DType::F32));
  CHECK_THROWS_WITH_AS(qkv_heads(x, 3, 2), doctest::Contains("num_heads * 3 * head_size] with num_heads = 3"),
                       Error);
  CHECK_THROWS_WITH_AS(qkv_heads(Var(rand({2, 3, 24}, 1, DType::F32)), 2, 6),
                       doctest::Contains("rotary_dim must be even and in [0, HS]"), Error);
}
