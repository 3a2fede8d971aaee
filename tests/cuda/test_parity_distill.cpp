// CPU vs CUDA for autograd/ops/distill.h on random f32 logits at sizes that
// do not divide the 256-thread blocks (V = 1, 37, 257, 1000, 8193), with and
// without a mask, at several temperatures: the loss and the student
// gradient. Tolerances (f32): the CPU sums in double and rounds once, CUDA
// sums in f32 in a tree order, so the loss agrees to rtol 1e-5 and the
// gradient entries (differences of two softmaxes scaled by tau / N) to
// atol 1e-7 / N-scaled plus rtol 1e-4 (exp of an f32 lse that may differ
// by an ulp).
#include <doctest/doctest.h>

#include "autograd/ops/distill.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Out {
  Tensor loss, ds;
};

Out run(const Tensor& s, const Tensor& t, double tau, const Tensor& mask, Device dev) {
  Var sv(s.to(dev), true);
  const Var loss = distill_kl(sv, t.to(dev), tau, mask.defined() ? mask.to(dev) : Tensor());
  loss.backward();
  return {loss.value().to(Device::cpu()), sv.grad().to(Device::cpu())};
}

}  // namespace

TEST_CASE("cuda parity: distill_kl loss and student gradient at odd sizes") {
  struct Case {
    int64_t B, T, V;
    double tau;
    bool masked;
  };
  const Case cases[] = {{1, 1, 1, 1.0, false},   {2, 3, 37, 1.0, true},  {3, 5, 257, 2.0, false},
                        {1, 7, 1000, 0.5, true}, {2, 2, 8193, 4.0, false}};
  uint64_t seed = 300;
  for (const Case& c : cases) {
    const Tensor s = affine(randn({c.B, c.T, c.V}, seed++, DType::F32), 3.0, 0.0);
    const Tensor t = affine(randn({c.B, c.T, c.V}, seed++, DType::F32), 3.0, 0.0);
    Tensor mask;
    if (c.masked) {
      std::vector<double> m(size_t(c.B * c.T), 1.0);
      for (size_t i = 1; i < m.size(); i += 2) m[i] = 0.0;
      mask = Tensor::from_vector(m, {c.B, c.T});
    }
    const Out ref = run(s, t, c.tau, mask, Device::cpu());
    const Out got = run(s, t, c.tau, mask, Device::cuda());
    const std::string label = "distill_kl V=" + std::to_string(c.V);
    CHECK(check_close(label + " loss", got.loss, ref.loss, 1e-7, 1e-5));
    CHECK(check_close(label + " dstudent", got.ds, ref.ds, 1e-8, 1e-4));
  }
}
