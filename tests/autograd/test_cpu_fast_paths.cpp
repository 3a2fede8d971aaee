// The vectorisable math of cpu/vmath.h against glibc over dense grids, and
// the CPU fast paths built on it or added for training speed: the f32 GELU
// (double evaluation, rounded once) against the f64 libm reference, the
// leading-axes sum (sum_cols) against the transpose-then-sum path, and the
// in-place accumulation of split/slice gradients.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "autograd/ops/activation.h"
#include "autograd/ops/cross_entropy.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/shape.h"
#include "cpu/vmath.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("vmath: exp_d agrees with std::exp to 1 ulp over the double range") {
  double worst = 0.0;
  for (double x = -745.0; x <= 709.0; x += 0.0137) {
    const double want = std::exp(x);
    if (want < std::numeric_limits<double>::min()) continue;  // subnormal results: flushed
    worst = std::max(worst, std::fabs(cpu::exp_d(x) - want) / want);
  }
  CHECK(worst <= 2.3e-16);
  CHECK(std::isnan(cpu::exp_d(std::numeric_limits<double>::quiet_NaN())));
  CHECK(cpu::exp_d(std::numeric_limits<double>::infinity()) ==
        std::numeric_limits<double>::infinity());
  CHECK(cpu::exp_d(-std::numeric_limits<double>::infinity()) == 0.0);
  CHECK(cpu::exp_d(-800.0) == 0.0);
  CHECK(cpu::exp_d(0.0) == 1.0);
}

TEST_CASE("vmath: erfc_d against std::erfc, full and f32-truncated series") {
  double worst_full = 0.0, worst_f32 = 0.0;
  for (double z = -6.0; z <= 26.0; z += 0.00173) {
    const double want = std::erfc(z);
    worst_full = std::max(worst_full, std::fabs(cpu::erfc_d(z) - want) / want);
    worst_f32 =
        std::max(worst_f32, std::fabs(cpu::erfc_d<cpu::kErfcTermsF32>(z) - want) / want);
  }
  // Measured 1.1e-13 (the deep tail, where exp(-z^2) amplifies the rounding
  // of z^2) and 1.1e-11 (the truncation bound).
  CHECK(worst_full < 5e-13);
  CHECK(worst_f32 < 2e-11);
  CHECK(cpu::erfc_d(std::numeric_limits<double>::infinity()) == 0.0);
  CHECK(cpu::erfc_d(-std::numeric_limits<double>::infinity()) == 2.0);
  CHECK(std::isnan(cpu::erfc_d(std::numeric_limits<double>::quiet_NaN())));
}

TEST_CASE("gelu f32 (vectorised) is the exact value rounded to f32, both tails") {
  // Reference in long double, in forms without cancellation (the libm f64
  // path computes 1 + erf and 1 + tanh, which lose all relative accuracy in
  // the negative tail): Phi = erfc(-x / sqrt 2) / 2, and for TANH
  // s = 1 / (1 + e), e = exp(-2u), 1 - s = e s.
  // Standard deviation 4 sends most 16-element chunks down the erfc path,
  // 1 nearly all through the |x| <= 3 polynomial; the dense ramp over
  // [-3.2, 3.2] (41 x 64 values, 16-aligned) puts whole chunks on both
  // sides of the polynomial's range edge and mixes them across it.
  std::vector<double> ramp;
  for (int i = 0; i < 41 * 64; ++i) ramp.push_back(-3.2 + 6.4 * i / (41 * 64 - 1));
  ramp.push_back(3.0), ramp.push_back(-3.0);
  for (const Tensor& x32 : {affine(randn({1037}, 11), 4.0, 0.0).to(DType::F32),
                            randn({1037}, 12).to(DType::F32),
                            Tensor::from_vector(ramp, {int64_t(ramp.size())}, DType::F32)})
  for (GeluKind kind : {GeluKind::ERF, GeluKind::TANH}) {
    const std::vector<double> xs = x32.to_vector();
    const int64_t n = x32.numel();
    INFO("kind ", std::string(kind == GeluKind::ERF ? "erf" : "tanh"), ", ", n, " values");
    std::vector<double> want_y, want_g;
    for (double xd : xs) {
      const long double x = xd, pi = 3.141592653589793238462643383279503L;
      if (kind == GeluKind::ERF) {
        const long double phi = 0.5L * std::erfc(-x / std::sqrt(2.0L));
        want_y.push_back(double(x * phi));
        want_g.push_back(double(phi + x * std::exp(-0.5L * x * x) / std::sqrt(2.0L * pi)));
      } else {
        const long double k = std::sqrt(2.0L / pi), u = k * (x + 0.044715L * x * x * x);
        const long double e = std::exp(-2.0L * u), sg = 1.0L / (1.0L + e);
        const long double du = k * (1.0L + 3.0L * 0.044715L * x * x);
        want_y.push_back(double(x * sg));
        want_g.push_back(double(sg + 2.0L * x * sg * (e * sg) * du));
      }
    }
    Var b(x32, true);
    const Var y = gelu(b, kind);
    sum(y).backward();
    // Within 1 f32 ulp of the exact value (atol: f32's smallest normal).
    const Tensor ry = Tensor::from_vector(want_y, {n}, DType::F64).to(DType::F32);
    const Tensor rg = Tensor::from_vector(want_g, {n}, DType::F64).to(DType::F32);
    CHECK(check_close("gelu f32 forward", y.value(), ry, 1.2e-38, 1.2e-7));
    CHECK(check_close("gelu f32 grad", b.grad(), rg, 1.2e-38, 1.2e-7));
    // Beyond 1 ulp: the double evaluation is meant to round to the same
    // f32 as the exact value except within ~1e-11 of a rounding boundary,
    // so virtually every element matches bit for bit (the reference itself
    // is rounded twice, long double -> double -> float).
    const std::vector<double> gy = y.value().to_vector(), gg = b.grad().to_vector();
    const std::vector<double> wy = ry.to_vector(), wg = rg.to_vector();
    int64_t exact = 0;
    for (int64_t i = 0; i < n; ++i) exact += (gy[size_t(i)] == wy[size_t(i)]) + (gg[size_t(i)] == wg[size_t(i)]);
    CHECK(double(exact) >= 0.999 * double(2 * n));
  }
  // Non-finite inputs propagate as in the reference.
  const Tensor special = Tensor::from_vector(
      {std::numeric_limits<double>::quiet_NaN(), 0.0, -50.0, 50.0}, {4}, DType::F32);
  const std::vector<double> y = gelu(Var(special)).value().to_vector();
  CHECK(std::isnan(y[0]));
  CHECK(y[1] == 0.0);
  CHECK(std::fabs(y[2]) < 1e-30);
  CHECK(y[3] == 50.0);
}

TEST_CASE("sum over leading axes (column sums) equals the transposed row sums") {
  for (const Shape& shape : {Shape{7, 5}, Shape{3, 4, 65}, Shape{129, 3}, Shape{0, 4}}) {
    const Tensor x = randn(shape, 3);
    // Leading axes {0} or {0, 1}: the direct column-sum path.
    std::vector<int64_t> lead;
    for (int64_t d = 0; d + 1 < int64_t(shape.size()); ++d) lead.push_back(d);
    const Tensor got = sum_tensor(x, lead, false);
    // Reference: each column summed over the rows in order, in double.
    const int64_t cols = shape.back(), rows = cols ? x.numel() / cols : 0;
    auto column_sums = [&](const Tensor& t) {
      const std::vector<double> v = t.to_vector();
      std::vector<double> out(size_t(cols), 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) out[size_t(c)] += v[size_t(r * cols + c)];
      return Tensor::from_vector(out, {cols}, DType::F64);
    };
    CHECK(got.shape() == Shape{cols});
    CHECK(check_close("sum_cols", got, column_sums(x), 0.0, 0.0));
    // keepdim and f32 (accumulated in double, rounded once).
    const Tensor x32 = x.to(DType::F32);
    const Tensor got32 = sum_tensor(x32, lead, true);
    CHECK(got32.numel() == cols);
    CHECK(check_close("sum_cols f32", got32.reshape({cols}), column_sums(x32).to(DType::F32), 0.0,
                      0.0));
  }
}

TEST_CASE("split backward accumulates every piece into one gradient") {
  // Pieces used once, twice and not at all; f64 gradcheck and exact values.
  Var x(randn({2, 3, 9}, 4, DType::F64), true);
  const std::vector<Var> p = split(x, {2, 3, 4}, 2);
  const Var y = add(mul(p[0], p[0]), scale(sum(p[1], {2}, true), 3.0));
  sum(y).backward();
  const std::vector<double> g = x.grad().to_vector(), xv = x.value().to_vector();
  for (size_t i = 0; i < g.size(); ++i) {
    const size_t c = i % 9;
    const double want = c < 2 ? 2.0 * xv[i] : c < 5 ? 3.0 * 2.0 : 0.0;  // p[1] summed, broadcast over 2
    CHECK(g[i] == doctest::Approx(want).epsilon(1e-15));
  }
  CHECK(gradcheck(
      "split pieces reused",
      [](const std::vector<Var>& in) {
        const std::vector<Var> q = split(in[0], {1, 2, 2}, 1);
        return sum(add(mul(q[2], q[1]), mul(q[1], q[1])));
      },
      {randn({3, 5}, 9)}));
}

TEST_CASE("cross_entropy: the gradient written by the CPU forward, logits dropped or kept") {
  // x . w -> logits -> loss. On the CPU the forward writes dlogits (for
  // dloss = 1) into its own buffer; with the logits Var dropped (as
  // LanguageModel::loss does) or kept, the gradients are the same and kept
  // logits are untouched.
  const Tensor xv = randn({5, 3, 4}, 21, DType::F32), wv = randn({4, 11}, 22, DType::F32);
  const Tensor t = Tensor::from_data<int64_t>({0, 3, -100, 10, 7, 1, 2, 2, 9, 4, 5, 6, 8, 0, 1},
                                              {5, 3});
  Var w1(wv, true), w2(wv, true);
  const Var loss1 = cross_entropy(matmul(Var(xv), w1), t);
  loss1.backward();
  const Var logits = matmul(Var(xv), w2);
  const Tensor before = logits.value().clone();
  const Var loss2 = cross_entropy(logits, t);
  loss2.backward();
  CHECK(loss1.value().item() == loss2.value().item());
  CHECK(check_close("dw in place vs kept", w1.grad(), w2.grad(), 0.0, 0.0));
  CHECK(check_close("kept logits unchanged", logits.value(), before, 0.0, 0.0));
  // Non-contiguous logits: the op's private contiguous copy is reused.
  Var w3(wv, true);
  const Var loss3 = cross_entropy(
      permute(contiguous(permute(matmul(Var(xv), w3), {1, 0, 2})), {1, 0, 2}), t);
  loss3.backward();
  CHECK(check_close("dw through a permuted view", w3.grad(), w2.grad(), 0.0, 0.0));
  // f64 gradchecks with temporaries only: dloss = 1 uses the forward's
  // gradient as it is, a scaled loss (dloss = -0.37) scales it.
  CHECK(gradcheck(
      "cross_entropy of a dropped product",
      [t](const std::vector<Var>& in) { return cross_entropy(matmul(in[0], in[1]), t); },
      {randn({5, 3, 4}, 23), randn({4, 11}, 24)}));
  CHECK(gradcheck(
      "scaled cross_entropy",
      [t](const std::vector<Var>& in) { return scale(cross_entropy(matmul(in[0], in[1]), t), -0.37); },
      {randn({5, 3, 4}, 25), randn({4, 11}, 26)}));
  // dloss = 1 gives exactly the gradient the mean's backward defines:
  // (softmax - onehot) / n_valid, here against a long-double reference.
  const Tensor lg = randn({3, 7}, 27, DType::F32);
  const Tensor ty = Tensor::from_data<int64_t>({2, -100, 6}, {3});
  Var lv(lg, true);
  cross_entropy(lv, ty).backward();
  const std::vector<double> l = lg.to_vector(), gr = lv.grad().to_vector();
  const int yv[3] = {2, -1, 6};
  for (int n = 0; n < 3; ++n) {
    long double s = 0;
    for (int v = 0; v < 7; ++v) s += std::exp((long double)l[size_t(n * 7 + v)]);
    for (int v = 0; v < 7; ++v) {
      const long double p = std::exp((long double)l[size_t(n * 7 + v)]) / s;
      const double want = yv[n] < 0 ? 0.0 : double((p - (v == yv[n] ? 1.0L : 0.0L)) / 2.0L);
      CHECK(std::fabs(gr[size_t(n * 7 + v)] - want) <= 1.2e-7 * std::fabs(want) + 1e-9);
    }
  }
}
