// distill_kl: f64 gradchecks (with and without a mask, several
// temperatures, odd shapes), the forward against the KL formula computed
// directly, tau = 1 equal to soft-target cross-entropy minus the teacher's
// entropy, the closed-form gradient, -inf teacher logits, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autograd/ops/distill.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

std::vector<double> log_softmax_row(const double* z, int64_t V, double tau) {
  double m = -INFINITY;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, z[v] / tau);
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(z[v] / tau - m);
  std::vector<double> out(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) out[size_t(v)] = z[v] / tau - m - std::log(s);
  return out;
}

// tau^2 * mean over counted rows of sum_v p_T (log p_T - log p_S), directly.
double distill_ref(const Tensor& s, const Tensor& t, double tau, const std::vector<double>& mask) {
  const int64_t V = s.size(-1), N = s.numel() / V;
  const std::vector<double> sv = s.to_vector(), tv = t.to_vector();
  double total = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < N; ++r) {
    if (!mask.empty() && mask[size_t(r)] == 0) continue;
    const auto ls = log_softmax_row(sv.data() + r * V, V, tau);
    const auto lt = log_softmax_row(tv.data() + r * V, V, tau);
    for (int64_t v = 0; v < V; ++v)
      if (std::exp(lt[size_t(v)]) > 0)
        total += std::exp(lt[size_t(v)]) * (lt[size_t(v)] - ls[size_t(v)]);
    ++n;
  }
  return tau * tau * total / double(n);
}

}  // namespace

TEST_CASE("gradcheck: distill_kl over temperatures, masks and odd shapes") {
  const Tensor teacher3 = randn({2, 3, 5}, 11);
  for (double tau : {1.0, 0.5, 2.0, 4.0}) {
    CHECK(gradcheck("distill_kl [2, 3, 5] tau " + std::to_string(tau),
                    [&](auto& v) { return distill_kl(v[0], teacher3, tau); },
                    {randn({2, 3, 5}, 12)}));
  }
  const Tensor mask = Tensor::from_vector({1, 0, 1, 1, 0, 1}, {2, 3});
  CHECK(gradcheck("distill_kl masked",
                  [&](auto& v) { return distill_kl(v[0], teacher3, 1.5, mask); },
                  {randn({2, 3, 5}, 13)}));
  const Tensor t1 = randn({1, 1}, 14), t7 = randn({7}, 15), t2 = randn({3, 1, 9}, 16);
  CHECK(gradcheck("distill_kl [1, 1]", [&](auto& v) { return distill_kl(v[0], t1, 1.0); },
                  {randn({1, 1}, 17)}));
  CHECK(gradcheck("distill_kl 1-D [7]", [&](auto& v) { return distill_kl(v[0], t7, 3.0); },
                  {randn({7}, 18)}));
  CHECK(gradcheck("distill_kl [3, 1, 9]", [&](auto& v) { return distill_kl(v[0], t2, 0.7); },
                  {randn({3, 1, 9}, 19)}));
}

TEST_CASE("distill_kl forward equals the direct KL formula, f64 and f32") {
  const Tensor s = randn({3, 4, 11}, 21), t = randn({3, 4, 11}, 22);
  const std::vector<double> mask = {1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1};
  for (double tau : {1.0, 0.3, 2.5}) {
    const double ref = distill_ref(s, t, tau, {});
    const double ref_m = distill_ref(s, t, tau, mask);
    CHECK(distill_kl(Var(s), t, tau).value().item() == doctest::Approx(ref).epsilon(1e-13));
    CHECK(distill_kl(Var(s), t, tau, Tensor::from_vector(mask, {3, 4})).value().item() ==
          doctest::Approx(ref_m).epsilon(1e-13));
    const Tensor l32 = distill_kl(Var(s.to(DType::F32)), t.to(DType::F32), tau).value();
    CHECK(l32.dtype() == DType::F32);
    CHECK(l32.shape() == Shape{});
    CHECK(l32.item() == doctest::Approx(ref).epsilon(1e-5));
  }
  // Identical logits: KL = 0 exactly up to rounding; the gradient vanishes.
  Var same(s, true);
  const Var l0 = distill_kl(same, s, 1.7);
  CHECK(std::fabs(l0.value().item()) < 1e-14);
  l0.backward();
  CHECK(check_close("grad at teacher == student", same.grad(), Tensor::zeros_like(s), 1e-15, 0));
}

TEST_CASE("distill_kl at tau = 1 is soft-target cross-entropy minus teacher entropy") {
  const Tensor s = randn({2, 5, 6}, 31), t = randn({2, 5, 6}, 32);
  const int64_t V = 6, N = 10;
  const std::vector<double> sv = s.to_vector(), tv = t.to_vector();
  double ce = 0, ent = 0;
  for (int64_t r = 0; r < N; ++r) {
    const auto ls = log_softmax_row(sv.data() + r * V, V, 1.0);
    const auto lt = log_softmax_row(tv.data() + r * V, V, 1.0);
    for (int64_t v = 0; v < V; ++v) {
      ce -= std::exp(lt[size_t(v)]) * ls[size_t(v)];
      ent -= std::exp(lt[size_t(v)]) * lt[size_t(v)];
    }
  }
  CHECK(distill_kl(Var(s), t, 1.0).value().item() ==
        doctest::Approx((ce - ent) / double(N)).epsilon(1e-13));
}

TEST_CASE("distill_kl gradient is tau (softmax(S/tau) - softmax(T/tau)) / N") {
  const Tensor s = randn({4, 7}, 41), t = randn({4, 7}, 42);
  const Tensor mask = Tensor::from_data<int32_t>({1, 0, 1, 1}, {4});
  const double tau = 2.0;
  Var sv(s, true);
  distill_kl(sv, t, tau, mask).backward();
  const std::vector<double> a = s.to_vector(), b = t.to_vector(), m = mask.to_vector();
  std::vector<double> expect(28);
  for (int64_t r = 0; r < 4; ++r) {
    const auto ls = log_softmax_row(a.data() + r * 7, 7, tau);
    const auto lt = log_softmax_row(b.data() + r * 7, 7, tau);
    for (int64_t v = 0; v < 7; ++v)
      expect[size_t(r * 7 + v)] =
          m[size_t(r)] * tau * (std::exp(ls[size_t(v)]) - std::exp(lt[size_t(v)])) / 3.0;
  }
  CHECK(check_close("distill_kl grad", sv.grad(), Tensor::from_vector(expect, {4, 7}, DType::F64),
                    1e-15, 1e-12));
}

TEST_CASE("distill_kl: -inf teacher logits add nothing, all masked gives NaN") {
  const double inf = std::numeric_limits<double>::infinity();
  const Tensor t = Tensor::from_vector({0.5, -inf, 1.0, -inf}, {1, 4}, DType::F64);
  const Tensor s = Tensor::from_vector({0.1, 0.2, 0.3, 0.4}, {1, 4}, DType::F64);
  const double got = distill_kl(Var(s), t, 1.0).value().item();
  CHECK(std::isfinite(got));
  CHECK(got == doctest::Approx(distill_ref(s, t, 1.0, {})).epsilon(1e-13));
  const Tensor none = Tensor::zeros({1}, DType::I64);
  CHECK(std::isnan(distill_kl(Var(s), t, 1.0, none).value().item()));
}

TEST_CASE("distill_kl errors") {
  const Var s(randn({2, 3, 4}, 51));
  const Tensor t = randn({2, 3, 4}, 52);
  CHECK_THROWS_WITH_AS(distill_kl(s, randn({2, 3, 5}, 1), 1.0),
                       doctest::Contains("must have the student logits' shape"), Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, t.to(DType::F32), 1.0), doctest::Contains("distill_kl"),
                       Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, t, 0.0), doctest::Contains("temperature must be"), Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, t, std::nan("")), doctest::Contains("temperature must be"),
                       Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, t, 1.0, Tensor::ones({2, 4})),
                       doctest::Contains("mask must have shape [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, t, 1.0, Tensor::full({2, 3}, 0.5)),
                       doctest::Contains("mask values must be 0 or 1"), Error);
  CHECK_THROWS_WITH_AS(distill_kl(s, Tensor(), 1.0), doctest::Contains("undefined"), Error);
}
