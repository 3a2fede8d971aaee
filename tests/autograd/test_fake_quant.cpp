// autograd/ops/fake_quant.h: forward values against hand-computed cases for
// every rounding mode (ties included) and granularity, the STE masks, the
// LSQ scale gradient against its definition (the derivative of the
// straight-through surrogate), stochastic rounding's statistics, errors,
// and a tiny QAT problem where plain-STE training beats FP-then-round.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/fake_quant.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

FakeQuantConfig config(int64_t qmin, int64_t qmax, int64_t group, QuantRounding r,
                       SteKind ste = SteKind::PLAIN) {
  FakeQuantConfig c;
  c.qmin = qmin;
  c.qmax = qmax;
  c.group_size = group;
  c.rounding = r;
  c.ste = ste;
  return c;
}

std::vector<double> fq_values(const std::vector<double>& x, const Shape& xs,
                              const std::vector<double>& s, const Shape& ss,
                              const FakeQuantConfig& c, const std::vector<double>& z = {}) {
  const Tensor zero = z.empty() ? Tensor() : Tensor::from_vector(z, ss, DType::F64);
  return fake_quantize(Var(Tensor::from_vector(x, xs, DType::F64)),
                       Var(Tensor::from_vector(s, ss, DType::F64)), zero, c)
      .value()
      .to_vector();
}

// d(sum(out * w))/dx and /dscale for a given weighting w.
std::pair<std::vector<double>, std::vector<double>> fq_grads(const Tensor& x, const Tensor& s,
                                                             const Tensor& z,
                                                             const FakeQuantConfig& c,
                                                             const Tensor& w) {
  Var xv(x, true), sv(s, true);
  sum(mul(fake_quantize(xv, sv, z, c), Var(w))).backward();
  return {xv.grad().to_vector(),
          sv.grad().defined() ? sv.grad().to_vector() : std::vector<double>()};
}

}  // namespace

TEST_CASE("fake_quantize: every rounding mode on ties, per tensor, clamped") {
  const std::vector<double> x = {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, 3.7,
                                 -3.7, 9.2, -9.0};
  const Shape xs = {1, 11};
  auto run = [&](QuantRounding r) { return fq_values(x, xs, {1.0}, {1, 1}, config(-8, 7, 11, r)); };
  CHECK(run(QuantRounding::NEAREST_EVEN) ==
        std::vector<double>{-2, -2, -0.0, 0, 2, 2, 0, 4, -4, 7, -8});
  CHECK(run(QuantRounding::NEAREST_AWAY) ==
        std::vector<double>{-3, -2, -1, 1, 2, 3, 0, 4, -4, 7, -8});
  // floor(v + 0.5): ties go up; 0.49999999999999994 + 0.5 rounds to 1 in
  // f64, so HALF_UP maps it to 1 (the sum's rounding is part of ggml's rule).
  CHECK(run(QuantRounding::HALF_UP) == std::vector<double>{-2, -1, 0, 1, 2, 3, 1, 4, -4, 7, -8});
  // Scaled ties: x / s = -2.5 etc. exactly (s a power of two).
  CHECK(fq_values({-1.25, 0.75, 1.25}, {1, 3}, {0.5}, {1, 1},
                  config(-8, 7, 3, QuantRounding::NEAREST_EVEN)) ==
        std::vector<double>{-1.0, 1.0, 1.0});
  // f32 runs the same arithmetic: 2.5f ties to 2, 3.5f to 4.
  const Var xf(Tensor::from_vector({2.5, 3.5, -0.5}, {1, 3}, DType::F32));
  CHECK(fake_quantize(xf, Var(Tensor::ones({1, 1})), Tensor(),
                      config(-8, 7, 3, QuantRounding::NEAREST_EVEN))
            .value()
            .to_vector() == std::vector<double>{2, 4, -0.0});
}

TEST_CASE("fake_quantize: per channel, per group, shared groups, asymmetric") {
  const std::vector<double> x = {0.3, -0.7, 1.1, 0.2,  //
                                 2.0, 0.1, -0.6, 5.0};
  const auto ne = QuantRounding::NEAREST_EVEN;
  // Per row: s = 0.5 for row 0 ([-4, 3] clamps 1.1 / 0.5 = 2.2 -> 2), 0.25 for row 1.
  CHECK(fq_values(x, {2, 4}, {0.5, 0.25}, {2, 1}, config(-4, 3, 4, ne)) ==
        std::vector<double>{0.5, -0.5, 1.0, 0.0, 0.75, 0.0, -0.5, 0.75});
  // Groups of 2, one scale per (row, group).
  CHECK(fq_values(x, {2, 4}, {0.5, 1.0, 0.25, 2.0}, {2, 2}, config(-4, 3, 2, ne)) ==
        std::vector<double>{0.5, -0.5, 1.0, 0.0, 0.75, 0.0, -0.0, 4.0});
  // Groups shared by every row (scale [1, G]).
  CHECK(fq_values(x, {2, 4}, {0.5, 1.0}, {1, 2}, config(-4, 3, 2, ne)) ==
        std::vector<double>{0.5, -0.5, 1.0, 0.0, 1.5, 0.0, -1.0, 3.0});
  // Asymmetric, [0, 15], z = 3, s = 0.5: 1.3 -> level 3 + 3 = 6 -> 1.5;
  // -2 -> -4 + 3 clamps to 0 -> -1.5; 7 -> 14 + 3 clamps to 15 -> 6; 0.1 -> 0.
  CHECK(fq_values({1.3, -2.0, 7.0, 0.1}, {1, 4}, {0.5}, {1, 1}, config(0, 15, 4, ne), {3.0}) ==
        std::vector<double>{1.5, -1.5, 6.0, 0.0});
  // Leading dims flatten into rows: x [2, 1, 4] with a per-row scale [2, 1].
  CHECK(fq_values(x, {2, 1, 4}, {0.5, 0.25}, {2, 1}, config(-4, 3, 4, ne)) ==
        std::vector<double>{0.5, -0.5, 1.0, 0.0, 0.75, 0.0, -0.5, 0.75});
}

TEST_CASE("fake_quantize: STE gradients for x (PLAIN identity, CLIPPED mask)") {
  // s = 0.5, [-4, 3]: levels 1, -1 (inside), 2.2 -> 2 (inside), 3.6 -> 4 (clamped),
  // -4.4 -> -4 (inside: the rounded level decides), -9 (clamped), 3.4 -> 3 (inside).
  const Tensor x = Tensor::from_vector({0.5, -0.4, 1.1, 1.8, -2.2, -4.5, 1.7}, {1, 7}, DType::F64);
  const Tensor s = Tensor::full({1, 1}, 0.5, DType::F64);
  const Tensor w = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7}, {1, 7}, DType::F64);
  const auto ne = QuantRounding::NEAREST_EVEN;
  auto plain = fq_grads(x, s, Tensor(), config(-4, 3, 7, ne, SteKind::PLAIN), w);
  CHECK(plain.first == std::vector<double>{1, 2, 3, 4, 5, 6, 7});
  CHECK(plain.second.empty());  // the scale is a constant under PLAIN
  auto clipped = fq_grads(x, s, Tensor(), config(-4, 3, 7, ne, SteKind::CLIPPED), w);
  CHECK(clipped.first == std::vector<double>{1, 2, 3, 0, 5, 0, 7});
  CHECK(clipped.second.empty());
  // An absmax scale clips nothing, so CLIPPED passes every gradient even
  // where a / (a / 7) rounds above 7 in f32.
  const Tensor xa = rand({64, 33}, 5, DType::F32);
  std::vector<double> amax(64, 0.0), xv = xa.to_vector();
  for (int64_t i = 0; i < xa.numel(); ++i)
    amax[size_t(i / 33)] = std::max(amax[size_t(i / 33)], std::fabs(xv[size_t(i)]));
  Tensor sa = Tensor::empty({64, 1}, DType::F32);
  for (int64_t r = 0; r < 64; ++r) sa.data<float>()[r] = float(amax[size_t(r)]) / 7.0f;
  Var xav(xa, true);
  sum(fake_quantize(xav, Var(sa), Tensor(), config(-7, 7, 33, ne, SteKind::CLIPPED))).backward();
  CHECK(xav.grad().to_vector() == std::vector<double>(size_t(64 * 33), 1.0));
}

TEST_CASE("fake_quantize: LSQ scale gradient, hand case") {
  // s = 0.5, [-4, 3]: v = 0.6 -> 1 (inside: 1 - 0.6 = 0.4), v = 2.4 -> 2
  // (inside: -0.4), v = -10 (below: qmin = -4), v = 7.2 (above: qmax = 3).
  const Tensor x = Tensor::from_vector({0.3, 1.2, -5.0, 3.6}, {1, 4}, DType::F64);
  const Tensor s = Tensor::full({1, 1}, 0.5, DType::F64);
  const Tensor w = Tensor::from_vector({1, 10, 100, 1000}, {1, 4}, DType::F64);
  FakeQuantConfig c = config(-4, 3, 4, QuantRounding::NEAREST_EVEN, SteKind::LSQ);
  c.lsq_grad_scale = 0.5;
  auto g = fq_grads(x, s, Tensor(), c, w);
  CHECK(g.first == std::vector<double>{1, 10, 0, 0});
  REQUIRE(g.second.size() == 1);
  CHECK(g.second[0] == doctest::Approx(0.5 * (0.4 - 4.0 - 400.0 + 3000.0)).epsilon(1e-12));
  // Asymmetric, [0, 15], z = 3: v = 0.6 -> level 4 inside (0.4); v = -10 ->
  // below (qmin - z = -3); v = 14 -> level 17 above (qmax - z = 12).
  const Tensor xz = Tensor::from_vector({0.3, -5.0, 7.0}, {1, 3}, DType::F64);
  c = config(0, 15, 3, QuantRounding::NEAREST_EVEN, SteKind::LSQ);
  auto gz = fq_grads(xz, s, Tensor::full({1, 1}, 3.0, DType::F64), c,
                     Tensor::from_vector({1, 10, 100}, {1, 3}, DType::F64));
  CHECK(gz.first == std::vector<double>{1, 0, 0});
  CHECK(gz.second[0] == doctest::Approx(0.4 - 30.0 + 1200.0).epsilon(1e-12));
}

// The LSQ gradient is defined as the derivative of the straight-through
// surrogate x_hat(x, s) = x_hat0 + m0 (x - x0) + g D0 (s - s0), with the
// mask m0 and D0 = d x_hat / d s (round(v) - v inside, qmin - z / qmax - z
// outside) written out here from their definitions at the base point. The
// function checked below has the surrogate's values but the op's analytic
// gradient, so finite differences compare the op's backward with the
// definition (finite differences of the piecewise-constant x_hat itself
// would be 0 or jumps).
TEST_CASE("gradcheck: LSQ scale and x gradients against the surrogate's derivative") {
  struct Case {
    const char* name;
    Shape xs, ss;
    int64_t group, qmin, qmax;
    bool asym;
  };
  const Case cases[] = {{"per tensor", {3, 5}, {1, 1}, 5, -4, 3, false},
                        {"per row", {3, 5}, {3, 1}, 5, -4, 3, false},
                        {"per group", {3, 6}, {3, 2}, 3, -8, 7, false},
                        {"shared groups", {3, 6}, {1, 3}, 2, -2, 1, false},
                        {"asymmetric per group, 3-d x", {2, 2, 6}, {4, 2}, 3, 0, 7, true}};
  for (const Case& cs : cases) {
    CAPTURE(cs.name);
    const Tensor x0 = affine(rand(cs.xs, 11), 1.5, 0);  // some values clip
    const Tensor s0 = affine(rand(cs.ss, 12), 0.1, 0.3);  // in [0.2, 0.4)
    const Tensor z = cs.asym ? Tensor::full(cs.ss, 3.0, DType::F64) : Tensor();
    FakeQuantConfig c = config(cs.qmin, cs.qmax, cs.group, QuantRounding::NEAREST_EVEN,
                               SteKind::LSQ);
    c.lsq_grad_scale = 0.7;
    const int64_t K = cs.xs.back(), G = K / cs.group;
    const std::vector<double> xv = x0.to_vector(), sv = s0.to_vector();
    const std::vector<double> xhat0 = fake_quantize(Var(x0), Var(s0), z, c).value().to_vector();
    std::vector<double> m0(xv.size()), d0(xv.size());
    std::vector<int64_t> sidx(xv.size());
    for (int64_t i = 0; i < x0.numel(); ++i) {
      const int64_t r = i / K, g = (i % K) / cs.group;
      const int64_t k = (cs.ss[0] == 1 ? 0 : r) * G + g;
      const double s = sv[size_t(k)], zz = cs.asym ? 3.0 : 0.0, v = xv[size_t(i)] / s;
      const double level = std::nearbyint(v) + zz;
      const bool inside = level >= double(cs.qmin) && level <= double(cs.qmax);
      m0[size_t(i)] = inside ? 1.0 : 0.0;
      d0[size_t(i)] = inside ? std::nearbyint(v) - v
                             : (level < double(cs.qmin) ? double(cs.qmin) : double(cs.qmax)) - zz;
      sidx[size_t(i)] = k;
    }
    const double gs = c.lsq_grad_scale;
    auto fn = [&](const std::vector<Var>& v) {
      const Var out = fake_quantize(v[0], v[1], z, c);
      const std::vector<double> xp = v[0].value().to_vector(), sp = v[1].value().to_vector();
      std::vector<double> corr(xp.size());
      for (size_t i = 0; i < xp.size(); ++i) {
        const size_t k = size_t(sidx[i]);
        const double sur = xhat0[i] + m0[i] * (xp[i] - xv[i]) + gs * d0[i] * (sp[k] - sv[k]);
        corr[i] = sur - out.value().to_vector()[i];
      }
      return add(out, Var(Tensor::from_vector(corr, out.shape(), DType::F64)));
    };
    CHECK(gradcheck(std::string("lsq ") + cs.name, fn, {x0, s0}));
  }
}

TEST_CASE("fake_quantize: stochastic rounding is unbiased, reproducible, floor or ceil") {
  const std::vector<double> xs = {0.3, -1.7, 2.5, 0.0, 1.0, -0.05, 2.95};
  const Tensor x = Tensor::from_vector(xs, {1, 7}, DType::F64);
  const Var s(Tensor::ones({1, 1}, DType::F64));
  FakeQuantConfig c = config(-8, 7, 7, QuantRounding::STOCHASTIC);
  const int n = 4000;
  std::vector<double> mean(xs.size(), 0.0);
  for (int seed = 0; seed < n; ++seed) {
    c.seed = uint64_t(seed);
    const std::vector<double> q = fake_quantize(Var(x), s, Tensor(), c).value().to_vector();
    for (size_t i = 0; i < xs.size(); ++i) {
      REQUIRE((q[i] == std::floor(xs[i]) || q[i] == std::ceil(xs[i])));
      mean[i] += q[i] / n;
    }
  }
  // Bernoulli(frac) over n draws: standard error <= 0.5 / sqrt(n) = 0.0079; allow 4.
  for (size_t i = 0; i < xs.size(); ++i) CHECK(std::fabs(mean[i] - xs[i]) < 0.032);
  c.seed = 7;
  c.offset = 3;
  const Tensor a = fake_quantize(Var(x), s, Tensor(), c).value();
  CHECK(fake_quantize(Var(x), s, Tensor(), c).value().to_vector() == a.to_vector());
  // The backward regenerates the same draws: the CLIPPED mask of a value
  // near qmax follows the forward's rounding of that value.
  FakeQuantConfig cc = config(-2, 2, 1, QuantRounding::STOCHASTIC, SteKind::CLIPPED);
  std::vector<double> near(64, 2.5);
  for (uint64_t seed = 0; seed < 8; ++seed) {
    cc.seed = seed;
    Var xv(Tensor::from_vector(near, {1, 64}, DType::F64), true);
    const Var out = fake_quantize(xv, Var(Tensor::ones({1, 64}, DType::F64)), Tensor(), cc);
    // Re-run without the clamp to see each element's level: 2 or 3.
    FakeQuantConfig wide = cc;
    wide.qmax = 7;
    const std::vector<double> lv =
        fake_quantize(Var(xv.value()), Var(Tensor::ones({1, 64}, DType::F64)), Tensor(), wide)
            .value()
            .to_vector();
    sum(out).backward();
    const std::vector<double> g = xv.grad().to_vector();
    for (size_t i = 0; i < lv.size(); ++i) CHECK(g[i] == (lv[i] <= 2 ? 1.0 : 0.0));
  }
}

TEST_CASE("straight_through: returns x_hat, passes dy or dy * mask") {
  const Tensor x = Tensor::from_vector({0.1, 0.2, 0.3}, {3}, DType::F64);
  const Tensor xh = Tensor::from_vector({0.0, 0.25, 0.5}, {3}, DType::F64);
  const Tensor w = Tensor::from_vector({1, 2, 3}, {3}, DType::F64);
  Var a(x, true);
  const Var y = straight_through(a, xh);
  CHECK(y.value().to_vector() == xh.to_vector());
  sum(mul(y, Var(w))).backward();
  CHECK(a.grad().to_vector() == std::vector<double>{1, 2, 3});
  Var b(x, true);
  sum(mul(straight_through(b, xh, Tensor::from_vector({1, 0, 1}, {3}, DType::F64)), Var(w)))
      .backward();
  CHECK(b.grad().to_vector() == std::vector<double>{1, 0, 3});
  CHECK_THROWS_WITH_AS(straight_through(a, Tensor::zeros({4}, DType::F64)),
                       doctest::Contains("must have x's shape"), Error);
  CHECK_THROWS_WITH_AS(straight_through(a, xh, Tensor::ones({3}, DType::F32)),
                       doctest::Contains("dtype mismatch"), Error);
}

TEST_CASE("fake_quantize_per_token: dynamic per-row scales, constant in backward") {
  const std::vector<double> x = {1.0, -2.0, 0.5, 0.3,  //
                                 -1.0, 3.0, 0.0, 1.2,  //
                                 0.0, 0.0, 0.0, 0.0};
  const Tensor xt = Tensor::from_vector(x, {3, 4}, DType::F64);
  const auto ne = QuantRounding::NEAREST_EVEN;
  // Symmetric 4 bits: s = absmax / 7, levels [-7, 7]; the zero row stays 0.
  Var xs(xt, true);
  const Var ys = fake_quantize_per_token(xs, 4, true, ne, SteKind::CLIPPED);
  const std::vector<double> got = ys.value().to_vector();
  const double amax[3] = {2.0, 3.0, 0.0};
  for (size_t i = 0; i < x.size(); ++i) {
    const double s = amax[i / 4] > 0 ? amax[i / 4] / 7 : 1.0;
    CHECK(got[i] == std::nearbyint(x[i] / s) * s);
  }
  sum(ys).backward();
  CHECK(xs.grad().to_vector() == std::vector<double>(12, 1.0));  // nothing clipped
  // Asymmetric 8 bits: [min, max] widened to contain 0, s = (max - min) / 255,
  // z = -round(min / s), x_hat = (clamp(round(x / s) + z, 0, 255) - z) s.
  const std::vector<double> ga =
      fake_quantize_per_token(Var(xt), 8, false, ne, SteKind::PLAIN).value().to_vector();
  const double lo[3] = {-2.0, -1.0, 0.0}, hi[3] = {1.0, 3.0, 0.0};
  for (size_t i = 0; i < x.size(); ++i) {
    const double s = hi[i / 4] > lo[i / 4] ? (hi[i / 4] - lo[i / 4]) / 255 : 1.0;
    const double z = -std::nearbyint(lo[i / 4] / s);
    const double q = std::min(255.0, std::max(0.0, std::nearbyint(x[i] / s) + z));
    CHECK(ga[i] == (q - z) * s);
  }
  // Leading dims are rows; f32 works too.
  CHECK(fake_quantize_per_token(Var(xt.to(DType::F32).view({3, 1, 4})), 8, true, ne,
                                SteKind::PLAIN)
            .shape() == Shape{3, 1, 4});
  CHECK_THROWS_WITH_AS(fake_quantize_per_token(Var(xt), 9, true, ne, SteKind::PLAIN),
                       doctest::Contains("bits must be in 2..8"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize_per_token(Var(xt), 8, true, ne, SteKind::LSQ),
                       doctest::Contains("LSQ needs a learned scale"), Error);
}

TEST_CASE("fake_quantize errors name the op and the tensors") {
  const Var x(Tensor::zeros({2, 6}, DType::F64));
  const Var s(Tensor::ones({2, 2}, DType::F64));
  const auto ne = QuantRounding::NEAREST_EVEN;
  CHECK_THROWS_WITH_AS(fake_quantize(x, s, Tensor(), config(-8, 7, 4, ne)),
                       doctest::Contains("group_size 4 does not divide K = 6"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize(x, s, Tensor(), config(-8, 7, 2, ne)),
                       doctest::Contains("scale must be [2 or 1, 3]"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize(x, s, Tensor(), config(7, 7, 3, ne)),
                       doctest::Contains("qmin must be < qmax"), Error);
  const Var bad(Tensor::from_vector({1.0, 0.0, 1.0, 1.0}, {2, 2}, DType::F64));
  CHECK_THROWS_WITH_AS(fake_quantize(x, bad, Tensor(), config(-8, 7, 3, ne)),
                       doctest::Contains("scale must be finite and > 0, scale[1] = 0"), Error);
  const Var neg(Tensor::full({1, 1}, -0.5, DType::F64));
  CHECK_THROWS_WITH_AS(fake_quantize(x, neg, Tensor(), config(-8, 7, 6, ne)),
                       doctest::Contains("finite and > 0"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize(x, s, Tensor::zeros({1, 2}, DType::F64), config(-8, 7, 3, ne)),
                       doctest::Contains("must have the scale's shape"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize(x, Var(Tensor::ones({2, 2})), Tensor(), config(-8, 7, 3, ne)),
                       doctest::Contains("dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize(Var(Tensor::zeros({2, 6}, DType::I32)), s, Tensor(),
                                     config(-8, 7, 3, ne)),
                       doctest::Contains("not supported for x"), Error);
}

// Issue 5 item 2: on a tiny model, QAT with plain STE reaches a lower
// QUANTIZED loss than FP training followed by rounding, at the same number
// of steps from the same start. The model is a least-squares linear layer
// y = X W^T (a 2-layer-free stand-in: models/ has no hook to fake-quantize
// its linear weights yet), 3-bit symmetric per-row absmax weights.
TEST_CASE("QAT with plain STE beats FP training then rounding (tiny least squares)") {
  const int64_t N = 96, D = 12, O = 4;
  // Correlated features (a shared component u in every column): the
  // rounding errors of one weight can be compensated by its neighbours,
  // which training through the quantizer finds and rounding afterwards cannot.
  const Tensor Z = randn({N, D}, 21), u = randn({N, 1}, 22);
  const Tensor X = binary(Z, affine(u, 0.9, 0), BinaryOp::ADD);
  const Tensor Wstar = randn({O, D}, 23);
  const Tensor Y = matmul_tensor(X, Wstar, false, true);
  const Tensor W0 = affine(randn({O, D}, 24), 0.1, 0);
  const FakeQuantConfig c = config(-3, 3, D, QuantRounding::NEAREST_EVEN, SteKind::PLAIN);
  auto absmax_scale = [&](const Tensor& w) {
    std::vector<double> v = w.to_vector(), s(size_t(O), 0.0);
    for (int64_t i = 0; i < w.numel(); ++i)
      s[size_t(i / D)] = std::max(s[size_t(i / D)], std::fabs(v[size_t(i)]) / 3.0);
    return Tensor::from_vector(s, {O, 1}, DType::F64);
  };
  auto loss_of = [&](const Var& w) {
    const Var e = sub(matmul(Var(X), w, false, true), Var(Y));
    return mean(mul(e, e));
  };
  auto quantized_loss = [&](const Tensor& w) {
    NoGradGuard ng;
    return loss_of(fake_quantize(Var(w), Var(absmax_scale(w)), Tensor(), c)).value().item();
  };
  auto train = [&](bool qat) {
    Var w(W0.clone(), true);
    for (int step = 0; step < 400; ++step) {
      const double lr = 0.1 * (1.0 - step / 400.0);
      const Var wq = qat ? fake_quantize(w, Var(absmax_scale(w.value())), Tensor(), c) : w;
      loss_of(wq).backward();
      add_(w.mutable_value(), affine(w.grad(), -lr, 0));
      w.zero_grad();
    }
    return w.value();
  };
  const Tensor w_fp = train(false), w_qat = train(true);
  const double fp_loss = [&] { NoGradGuard ng; return loss_of(Var(w_fp)).value().item(); }();
  const double fp_rounded = quantized_loss(w_fp), qat_q = quantized_loss(w_qat);
  MESSAGE("FP loss ", fp_loss, "; quantized loss: FP then round ", fp_rounded, ", QAT ", qat_q);
  CHECK(qat_q < 0.9 * fp_rounded);
}
