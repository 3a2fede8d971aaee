// Causal attention: f64 gradchecks of q, k and v at tiny shapes (T = 5 and
// T = 1, and fewer queries than keys as with a KV cache: Tq = 2 or 1 with
// Tk = 5), the forward against a plain masked-softmax computation written
// out with loops here, a query suffix against the last rows of the full
// attention, strided (permuted) inputs, and error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/attention.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// out[b,h,t] = sum_s P[t,s] v[s], P = softmax over s of scale*q_t.k_s with
// s > t + Tk - Tq masked to -inf: the textbook composition, in double, no
// tricks.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    double scale) {
  const int64_t B = q.size(0), NH = q.size(1), Tq = q.size(2), Tk = k.size(2), HS = q.size(3);
  const std::vector<double> Q = q.to_vector(), K = k.to_vector(), Vv = v.to_vector();
  std::vector<double> out(Q.size(), 0.0);
  for (int64_t bh = 0; bh < B * NH; ++bh) {
    const int64_t qbase = bh * Tq * HS, kbase = bh * Tk * HS;
    for (int64_t t = 0; t < Tq; ++t) {
      std::vector<double> score(static_cast<size_t>(Tk));
      for (int64_t s = 0; s < Tk; ++s) {
        double d = 0;
        for (int64_t i = 0; i < HS; ++i)
          d += Q[size_t(qbase + t * HS + i)] * K[size_t(kbase + s * HS + i)];
        score[size_t(s)] = s <= t + Tk - Tq ? scale * d : -INFINITY;
      }
      double mx = -INFINITY, z = 0;
      for (double x : score) mx = std::max(mx, x);
      for (double x : score) z += std::exp(x - mx);
      for (int64_t s = 0; s < Tk; ++s) {
        const double p = std::exp(score[size_t(s)] - mx) / z;
        for (int64_t i = 0; i < HS; ++i)
          out[size_t(qbase + t * HS + i)] += p * Vv[size_t(kbase + s * HS + i)];
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("gradcheck: attention q, k, v") {
  for (const Shape& s : {Shape{2, 2, 5, 4}, Shape{2, 2, 1, 4}, Shape{1, 3, 7, 3}}) {
    CAPTURE(shape_str(s));
    const Tensor q = rand(s, 1), k = rand(s, 2), v = rand(s, 3);
    const double scale = 1.0 / std::sqrt(double(s[3]));
    CHECK(gradcheck("attention",
                    [scale](auto& x) { return attention(x[0], x[1], x[2], scale); }, {q, k, v}));
  }
  // A large scale makes the softmax peaked: the backward's recomputed P must
  // still match.
  const Tensor q = rand({1, 2, 6, 4}, 4), k = rand({1, 2, 6, 4}, 5), v = rand({1, 2, 6, 4}, 6);
  CHECK(gradcheck("attention scale 3",
                  [](auto& x) { return attention(x[0], x[1], x[2], 3.0); }, {q, k, v}));
}

TEST_CASE("gradcheck: attention with fewer queries than keys (KV cache)") {
  // {B, NH, HS}, Tq, Tk: the last Tq of Tk positions; Tq = 1 is one decode
  // step, Tq = 2 a short continuation, Tq = 3 of 7 with an odd head size.
  struct Case {
    int64_t B, NH, HS, Tq, Tk;
  };
  for (const Case& c : {Case{2, 2, 4, 2, 5}, Case{2, 2, 4, 1, 5}, Case{1, 3, 3, 3, 7},
                        Case{1, 1, 5, 1, 1}}) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    const Tensor q = rand({c.B, c.NH, c.Tq, c.HS}, 41), k = rand({c.B, c.NH, c.Tk, c.HS}, 42),
                 v = rand({c.B, c.NH, c.Tk, c.HS}, 43);
    CHECK(gradcheck("attention Tq < Tk",
                    [](auto& x) { return attention(x[0], x[1], x[2], 0.6); }, {q, k, v}));
  }
}

TEST_CASE("gradcheck: attention with q = k = v (fan-out into one input)") {
  const Tensor x = rand({1, 2, 4, 3}, 7);
  CHECK(gradcheck("attention(x, x, x)",
                  [](auto& v) { return attention(v[0], v[0], v[0], 0.7); }, {x}));
}

TEST_CASE("attention forward matches the naive masked softmax") {
  for (const Shape& s : {Shape{2, 2, 5, 4}, Shape{1, 1, 1, 8}, Shape{2, 3, 17, 6}}) {
    CAPTURE(shape_str(s));
    const Tensor q = randn(s, 11), k = randn(s, 12), v = randn(s, 13);
    const double scale = 1.0 / std::sqrt(double(s[3]));
    const Tensor ref = Tensor::from_vector(naive_attention(q, k, v, scale), s, DType::F64);
    const Tensor got = attention(Var(q), Var(k), Var(v), scale).value();
    CHECK(check_close("attention f64", got, ref, 1e-12, 1e-12));
    // f32 in, f32 out; the CPU kernel sums in double, so only the input and
    // output roundings remain.
    const Tensor got32 =
        attention(Var(q.to(DType::F32)), Var(k.to(DType::F32)), Var(v.to(DType::F32)), scale)
            .value();
    CHECK(got32.dtype() == DType::F32);
    CHECK(check_close("attention f32", got32, ref, 1e-5, 1e-5));
  }
}

TEST_CASE("attention with Tq < Tk matches the naive masked softmax") {
  for (const Shape& ks : {Shape{2, 2, 5, 4}, Shape{1, 3, 17, 6}}) {
    for (int64_t Tq : {int64_t(1), int64_t(2), int64_t(4)}) {
      CAPTURE(shape_str(ks));
      CAPTURE(Tq);
      const Tensor q = randn({ks[0], ks[1], Tq, ks[3]}, 51), k = randn(ks, 52),
                   v = randn(ks, 53);
      const Tensor ref = Tensor::from_vector(naive_attention(q, k, v, 0.4), q.shape(), DType::F64);
      CHECK(check_close("attention Tq < Tk", attention(Var(q), Var(k), Var(v), 0.4).value(), ref,
                        1e-12, 1e-12));
    }
  }
}

TEST_CASE("attention(q[:, :, -m:], k, v) is the last m rows of the full attention") {
  // The KV-cache identity: a decode step reproduces the full recomputation.
  const Shape s{2, 3, 9, 5};
  const Tensor q = randn(s, 61), k = randn(s, 62), v = randn(s, 63);
  const Tensor full = attention(Var(q), Var(k), Var(v), 0.45).value();
  for (int64_t m : {int64_t(1), int64_t(2), int64_t(5), int64_t(9)}) {
    CAPTURE(m);
    const Tensor tail = attention(Var(q.narrow(2, 9 - m, m)), Var(k), Var(v), 0.45).value();
    CHECK(check_close("suffix rows", tail, full.narrow(2, 9 - m, m).contiguous(), 1e-14, 1e-13));
    // f32 too: the same kernel path, only the dtype differs.
    const Tensor q32 = q.to(DType::F32), k32 = k.to(DType::F32), v32 = v.to(DType::F32);
    const Tensor full32 = attention(Var(q32), Var(k32), Var(v32), 0.45).value();
    const Tensor tail32 = attention(Var(q32.narrow(2, 9 - m, m)), Var(k32), Var(v32), 0.45).value();
    CHECK(check_close("suffix rows f32", tail32, full32.narrow(2, 9 - m, m).contiguous(), 1e-6,
                      1e-6));
  }
}

TEST_CASE("attention with no query rows: empty output, zero key gradients") {
  Var q(Tensor::zeros({1, 2, 0, 3}, DType::F64), true), k(rand({1, 2, 4, 3}, 71), true),
      v(rand({1, 2, 4, 3}, 72), true);
  const Var out = attention(q, k, v, 1.0);
  CHECK(out.shape() == Shape{1, 2, 0, 3});
  sum(out).backward();
  CHECK(check_close("dk", k.grad(), Tensor::zeros({1, 2, 4, 3}, DType::F64), 0, 0));
  CHECK(check_close("dv", v.grad(), Tensor::zeros({1, 2, 4, 3}, DType::F64), 0, 0));
}

TEST_CASE("attention closed forms: T = 1 returns v and the first row returns v_0") {
  const Shape s{2, 2, 1, 4};
  const Tensor q = rand(s, 21), k = rand(s, 22), v = rand(s, 23);
  CHECK(check_close("T=1", attention(Var(q), Var(k), Var(v), 0.5).value(), v, 1e-15, 0));
  const Tensor q3 = rand({1, 1, 3, 2}, 24), k3 = rand({1, 1, 3, 2}, 25),
               v3 = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {1, 1, 3, 2}, DType::F64);
  const std::vector<double> out = attention(Var(q3), Var(k3), Var(v3), 1.0).value().to_vector();
  CHECK(out[0] == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(out[1] == doctest::Approx(2.0).epsilon(1e-15));
  // Equal scores (q = 0): row t is the plain average of v_0..v_t.
  const Tensor zero = Tensor::zeros({1, 1, 3, 2}, DType::F64);
  const std::vector<double> avg = attention(Var(zero), Var(k3), Var(v3), 1.0).value().to_vector();
  CHECK(avg[2] == doctest::Approx(2.0));
  CHECK(avg[4] == doctest::Approx(3.0));
  CHECK(avg[5] == doctest::Approx(4.0));
}

TEST_CASE("attention accepts strided views (heads split from B x T x NH x HS)") {
  Var q(rand({2, 5, 3, 4}, 31).permute({0, 2, 1, 3}), true);
  Var k(rand({2, 5, 3, 4}, 32).permute({0, 2, 1, 3}), true);
  Var v(rand({2, 5, 3, 4}, 33).permute({0, 2, 1, 3}), true);
  CHECK_FALSE(q.value().is_contiguous());
  Var qc(q.value().contiguous(), true), kc(k.value().contiguous(), true),
      vc(v.value().contiguous(), true);
  const Tensor R = randn({2, 3, 5, 4}, 34);
  // backward() consumes the whole tape: one graph at a time.
  const Var out = attention(q, k, v, 0.5);
  sum(mul(out, Var(R))).backward();
  const Var ref = attention(qc, kc, vc, 0.5);
  sum(mul(ref, Var(R))).backward();
  CHECK(check_close("strided out", out.value(), ref.value(), 0, 0));
  CHECK(check_close("strided dq", q.grad(), qc.grad(), 0, 0));
  CHECK(check_close("strided dk", k.grad(), kc.grad(), 0, 0));
  CHECK(check_close("strided dv", v.grad(), vc.grad(), 0, 0));
}

TEST_CASE("attention errors name the op and tensors") {
  const Var q(Tensor::zeros({1, 2, 3, 4})), k(Tensor::zeros({1, 2, 3, 4})),
      v(Tensor::zeros({1, 2, 3, 4}));
  CHECK_THROWS_WITH_AS(attention(Var(Tensor::zeros({2, 3, 4})), k, v, 1.0),
                       doctest::Contains("attention: q must be [B, NH, Tq, HS]"), Error);
  // k longer than v, k with another head size, v with another batch.
  CHECK_THROWS_WITH_AS(attention(q, Var(Tensor::zeros({1, 2, 4, 4})), v, 1.0),
                       doctest::Contains("attention: k and v must be [B, NH, Tk, HS]"), Error);
  CHECK_THROWS_WITH_AS(attention(q, Var(Tensor::zeros({1, 2, 3, 5})), v, 1.0),
                       doctest::Contains("attention: k and v must be [B, NH, Tk, HS]"), Error);
  CHECK_THROWS_WITH_AS(attention(q, k, Var(Tensor::zeros({2, 2, 3, 4})), 1.0),
                       doctest::Contains("attention: k and v must be [B, NH, Tk, HS]"), Error);
  CHECK_THROWS_WITH_AS(attention(q, Var(Tensor::zeros({1, 2, 3})), v, 1.0),
                       doctest::Contains("attention: k and v must be [B, NH, Tk, HS]"), Error);
  // Fewer keys than queries: no alignment makes sense.
  const Var k2(Tensor::zeros({1, 2, 2, 4})), v2(Tensor::zeros({1, 2, 2, 4}));
  CHECK_THROWS_WITH_AS(attention(q, k2, v2, 1.0), doctest::Contains("(Tk >= Tq"), Error);
  CHECK_THROWS_WITH_AS(attention(q, k, Var(Tensor::zeros({1, 2, 3, 4}, DType::F64)), 1.0),
                       doctest::Contains("dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(attention(q, k, v, NAN), doctest::Contains("attention: scale"), Error);
  const Var qi(Tensor::zeros({1, 2, 3, 4}, DType::I32));
  CHECK_THROWS_WITH_AS(attention(qi, qi, qi, 1.0), doctest::Contains("not supported"), Error);
}
