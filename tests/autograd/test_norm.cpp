// LayerNorm / RMSNorm: finite-difference gradchecks in f64 (every input,
// with and without the optional weight/bias), closed-form forward values,
// and error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/norm.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// Per-row mean and population variance of a [rows, C] tensor (host, f64).
void row_moments(const Tensor& y, std::vector<double>& mean, std::vector<double>& var) {
  const int64_t C = y.size(-1), rows = y.numel() / C;
  const std::vector<double> v = y.to_vector();
  mean.assign(size_t(rows), 0.0);
  var.assign(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < C; ++c) mean[size_t(r)] += v[size_t(r * C + c)] / double(C);
    for (int64_t c = 0; c < C; ++c) {
      const double d = v[size_t(r * C + c)] - mean[size_t(r)];
      var[size_t(r)] += d * d / double(C);
    }
  }
}

}  // namespace

TEST_CASE("gradcheck: layer_norm with and without weight/bias") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    const int64_t C = s.back();
    const Tensor x = rand(s, 1), w = rand({C}, 2), b = rand({C}, 3);
    CAPTURE(shape_str(s));
    CHECK(gradcheck("layer_norm(x, w, b)",
                    [](auto& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b}));
    CHECK(gradcheck("layer_norm(x, w)", [](auto& v) { return layer_norm(v[0], v[1], Var()); },
                    {x, w}));
    CHECK(gradcheck("layer_norm(x, -, b)",
                    [](auto& v) { return layer_norm(v[0], Var(), v[1]); }, {x, b}));
    CHECK(gradcheck("layer_norm(x)", [](auto& v) { return layer_norm(v[0], Var(), Var()); },
                    {x}));
  }
}

TEST_CASE("gradcheck: layer_norm parameters only, across CPU column chunks") {
  // x is a constant (its dx is skipped); C = 130 spans three 64-column chunks
  // of the CPU parameter-gradient sum.
  const Tensor x = rand({3, 130}, 4), w = rand({130}, 5), b = rand({130}, 6);
  CHECK(gradcheck("layer_norm(const x, w, b)",
                  [x](auto& v) { return layer_norm(Var(x), v[0], v[1]); }, {w, b}));
  CHECK(gradcheck("rms_norm(const x, w)", [x](auto& v) { return rms_norm(Var(x), v[0]); }, {w}));
}

TEST_CASE("gradcheck: rms_norm with and without weight") {
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    const Tensor x = rand(s, 11), w = rand({s.back()}, 12);
    CAPTURE(shape_str(s));
    CHECK(gradcheck("rms_norm(x, w)", [](auto& v) { return rms_norm(v[0], v[1]); }, {x, w}));
    CHECK(gradcheck("rms_norm(x)", [](auto& v) { return rms_norm(v[0], Var()); }, {x}));
  }
}

TEST_CASE("layer_norm forward: zero mean and unit variance per row, affine by hand") {
  for (DType dt : {DType::F64, DType::F32}) {
    const double tol = dt == DType::F64 ? 1e-12 : 1e-6;
    const Var x(rand({4, 7}, 21, dt));
    std::vector<double> mean, var;
    row_moments(layer_norm(x, Var(), Var(), 0.0).value(), mean, var);
    for (size_t r = 0; r < mean.size(); ++r) {
      CHECK(std::fabs(mean[r]) < tol);
      CHECK(std::fabs(var[r] - 1.0) < 10 * tol);
    }
  }
  // x = [1, 3]: mean 2, population variance 1, xhat = [-1, 1] / s, s = sqrt(1 + eps).
  const double eps = 1e-5, s = std::sqrt(1.0 + eps);
  const Var x(Tensor::from_vector({1, 3}, {1, 2}, DType::F64));
  const Var w(Tensor::from_vector({2, 0.5}, {2}, DType::F64));
  const Var b(Tensor::from_vector({1, -1}, {2}, DType::F64));
  const Tensor want = Tensor::from_vector({2 * -1 / s + 1, 0.5 * 1 / s - 1}, {1, 2}, DType::F64);
  CHECK(check_close("layer_norm [1, 3]", layer_norm(x, w, b, eps).value(), want, 1e-15, 1e-14));
  // 1-D input: a single row.
  const Var x1(Tensor::from_vector({1, 3}, {2}, DType::F64));
  CHECK(check_close("layer_norm 1-D", layer_norm(x1, Var(), Var(), eps).value(),
                    Tensor::from_vector({-1 / s, 1 / s}, {2}, DType::F64), 1e-15, 1e-14));
}

TEST_CASE("rms_norm forward: hand-computed row and unit mean square") {
  // x = [3, 4]: mean(x^2) = 12.5.
  const double eps = 1e-6, r = 1.0 / std::sqrt(12.5 + eps);
  const Var x(Tensor::from_vector({3, 4}, {1, 2}, DType::F64));
  const Var w(Tensor::from_vector({2, -1}, {2}, DType::F64));
  CHECK(check_close("rms_norm [3, 4]", rms_norm(x, Var(), eps).value(),
                    Tensor::from_vector({3 * r, 4 * r}, {1, 2}, DType::F64), 1e-15, 1e-14));
  CHECK(check_close("rms_norm [3, 4] * w", rms_norm(x, w, eps).value(),
                    Tensor::from_vector({6 * r, -4 * r}, {1, 2}, DType::F64), 1e-15, 1e-14));
  const std::vector<double> y = rms_norm(Var(rand({3, 9}, 31)), Var(), 0.0).value().to_vector();
  for (int row = 0; row < 3; ++row) {
    double ms = 0;
    for (int c = 0; c < 9; ++c) ms += y[size_t(row * 9 + c)] * y[size_t(row * 9 + c)] / 9.0;
    CHECK(std::fabs(ms - 1.0) < 1e-12);
  }
}

TEST_CASE("layer_norm gradients by hand") {
  // Rows [1, 3] and [5, 9] both normalise to xhat = [-1, 1] (eps 0). With
  // L = sum(y): dbias = column sums of 1 = [2, 2], dweight = column sums of
  // xhat = [-2, 2], and dx = rstd * (w - mean(w) - xhat * mean(w * xhat)) = 0
  // for w = [1, 1] (a constant shift of a row does not change y).
  const Var x(Tensor::from_vector({1, 3, 5, 9}, {2, 2}, DType::F64), true);
  const Var w(Tensor::ones({2}, DType::F64), true), b(Tensor::zeros({2}, DType::F64), true);
  sum(layer_norm(x, w, b, 0.0)).backward();
  CHECK(b.grad().to_vector() == std::vector<double>{2, 2});
  CHECK(w.grad().to_vector() == std::vector<double>{-2, 2});
  CHECK(check_close("dx", x.grad(), Tensor::zeros({2, 2}, DType::F64), 1e-15, 0));
}

TEST_CASE("norm errors name the tensors") {
  const Var x(Tensor::zeros({2, 3}), false, "x");
  const Var w4(Tensor::zeros({4}), false, "w");
  CHECK_THROWS_WITH_AS(layer_norm(x, w4, Var()),
                       doctest::Contains("layer_norm: weight (w: f32[4] cpu) does not match x "
                                         "(x: f32[2, 3] cpu), expected [3]"),
                       Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, Var(), w4), doctest::Contains("layer_norm: bias (w:"), Error);
  CHECK_THROWS_WITH_AS(rms_norm(x, w4), doctest::Contains("rms_norm: weight (w: f32[4] cpu)"),
                       Error);
  const Var w64(Tensor::zeros({3}, DType::F64), false, "w64");
  CHECK_THROWS_WITH_AS(layer_norm(x, w64, Var()), doctest::Contains("dtype mismatch"), Error);
  const Var xi(Tensor::zeros({2, 3}, DType::I32), false, "xi");
  CHECK_THROWS_WITH_AS(layer_norm(xi, Var(), Var()), doctest::Contains("dtype i32 not supported"),
                       Error);
  CHECK_THROWS_WITH_AS(rms_norm(xi, Var()), doctest::Contains("dtype i32 not supported"), Error);
  CHECK_THROWS_WITH_AS(layer_norm(x, Var(), Var(), -1.0), doctest::Contains("eps must be >= 0"),
                       Error);
}

// --- the residual add fused into the norm

TEST_CASE("gradcheck: add_layer_norm and add_rms_norm, both outputs used") {
  // L reads the normalised output and the sum itself (the residual stream
  // continues past the norm), so sum's gradient has two sources.
  for (const Shape& s : {Shape{2, 3, 5}, Shape{4, 7}}) {
    const int64_t C = s.back();
    const Tensor x = rand(s, 21), r = rand(s, 22), w = rand({C}, 23), b = rand({C}, 24);
    CAPTURE(shape_str(s));
    CHECK(gradcheck("add_layer_norm(x, r, w, b)",
                    [](auto& v) {
                      const AddNormed o = add_layer_norm(v[0], v[1], v[2], v[3]);
                      return add(o.out, scale(mul(o.sum, o.sum), 0.3));
                    },
                    {x, r, w, b}));
    CHECK(gradcheck("add_layer_norm(x, r)",
                    [](auto& v) { return add_layer_norm(v[0], v[1], Var(), Var()).out; }, {x, r}));
    CHECK(gradcheck("add_rms_norm(x, r, w)",
                    [](auto& v) {
                      const AddNormed o = add_rms_norm(v[0], v[1], v[2]);
                      return add(o.out, scale(o.sum, -0.6));
                    },
                    {x, r, w}));
  }
}

TEST_CASE("add_layer_norm / add_rms_norm give the bits of add then the norm (f32)") {
  // The fused kernel adds in T and runs the same row code: bit-identical
  // sums, outputs and gradients.
  for (const auto& size : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 17}, {37, 130}, {64, 769}}) {
    // Plain copies: clang 14 cannot capture structured bindings (CAPTURE does).
    const int64_t rows = size.first, C = size.second;
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = randn({rows, C}, 25, DType::F32), r = randn({rows, C}, 26, DType::F32);
    const Tensor w = rand({C}, 27, DType::F32), b = rand({C}, 28, DType::F32);
    const Tensor R = randn({rows, C}, 29, DType::F32), S = randn({rows, C}, 30, DType::F32);
    for (bool rms : {false, true}) {
      CAPTURE(rms);
      std::vector<Var> f, p;
      for (const Tensor& t : {x, r, w, b}) {
        f.emplace_back(t.clone(), true);
        p.emplace_back(t.clone(), true);
      }
      const AddNormed fused = rms ? add_rms_norm(f[0], f[1], f[2]) : add_layer_norm(f[0], f[1], f[2], f[3]);
      const Var psum = add(p[0], p[1]);
      const Var pout = rms ? rms_norm(psum, p[2]) : layer_norm(psum, p[2], p[3]);
      add(sum(mul(fused.out, Var(R))), sum(mul(fused.sum, Var(S)))).backward();
      add(sum(mul(pout, Var(R))), sum(mul(psum, Var(S)))).backward();
      CHECK(check_close("sum", fused.sum.value(), psum.value(), 0, 0));
      CHECK(check_close("out", fused.out.value(), pout.value(), 0, 0));
      for (size_t k = 0; k < (rms ? 3u : 4u); ++k) {
        CAPTURE(k);
        CHECK(check_close("grad", f[k].grad(), p[k].grad(), 0, 0));
      }
    }
  }
}

TEST_CASE("add_layer_norm errors name the residual") {
  const Var x(Tensor::zeros({2, 3}), false, "x");
  CHECK_THROWS_WITH_AS(add_layer_norm(x, Var(Tensor::zeros({2, 4}), false, "r"), Var(), Var()),
                       doctest::Contains("add_layer_norm: residual r (r: f32[2, 4] cpu) does not match x (x: f32[2, 3] cpu)"), Error);
  CHECK_THROWS_WITH_AS(add_rms_norm(x, Var(), Var()), doctest::Contains("add_rms_norm: undefined residual r"),
                       Error);
}
