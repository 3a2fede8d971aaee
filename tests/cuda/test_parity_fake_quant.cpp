// CPU vs CUDA for autograd/ops/fake_quant.h on random f32 inputs at odd
// sizes (rows and K not multiples of the block sizes; groups of 32 leave
// the LSQ reduction's blocks partly idle).
// Tolerances: forward x_hat and dx are bit-identical (the same scalar code
// in cpu/fake_quant_math.h, IEEE division on both devices, the same Philox
// draws); the LSQ scale gradient is a double sum in a different order on
// each device, rounded once to f32: rtol 1e-5 (a few f32 ulps) plus a small
// atol for entries whose terms cancel.
#include <doctest/doctest.h>

#include "autograd/ops/fake_quant.h"
#include "quant/qat.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Grads {
  Tensor out, dx, ds;
};

Grads run(const Tensor& x, const Tensor& s, const Tensor& z, const FakeQuantConfig& c,
          const Tensor& w, Device dev) {
  Var xv(x.to(dev), true), sv(s.to(dev), true);
  const Var out = fake_quantize(xv, sv, z.defined() ? z.to(dev) : Tensor(), c);
  sum(mul(out, Var(w.to(dev)))).backward();
  return {out.value().to(Device::cpu()), xv.grad().to(Device::cpu()),
          sv.grad().defined() ? sv.grad().to(Device::cpu()) : Tensor()};
}

}  // namespace

TEST_CASE("cuda parity: fake_quantize forward, dx and LSQ dscale at odd sizes") {
  struct Case {
    int64_t rows, K, group;
    bool shared, asym;
    QuantRounding rounding;
    SteKind ste;
  };
  const Case cases[] = {
      {7, 96, 32, false, false, QuantRounding::NEAREST_EVEN, SteKind::LSQ},
      {33, 129, 129, false, false, QuantRounding::NEAREST_AWAY, SteKind::LSQ},
      {65, 300, 300, true, false, QuantRounding::HALF_UP, SteKind::LSQ},  // per tensor
      {17, 384, 128, true, true, QuantRounding::NEAREST_EVEN, SteKind::LSQ},
      {9, 1001, 7, false, true, QuantRounding::STOCHASTIC, SteKind::LSQ},
      {513, 31, 31, false, false, QuantRounding::STOCHASTIC, SteKind::CLIPPED},
      {5, 64, 64, false, false, QuantRounding::NEAREST_EVEN, SteKind::PLAIN}};
  uint64_t seed = 100;
  for (const Case& cs : cases) {
    CAPTURE(cs.rows);
    CAPTURE(cs.K);
    CAPTURE(cs.group);
    const Tensor x = affine(rand({cs.rows, cs.K}, ++seed, DType::F32), 2.0, 0);
    const Shape ss = {cs.shared ? 1 : cs.rows, cs.K / cs.group};
    const Tensor s = affine(rand(ss, ++seed, DType::F32), 0.05, 0.15);  // [0.1, 0.2)
    const Tensor z = cs.asym ? Tensor::full(ss, 8.0, DType::F32) : Tensor();
    const Tensor w = rand({cs.rows, cs.K}, ++seed, DType::F32);
    FakeQuantConfig c;
    c.qmin = cs.asym ? 0 : -8;
    c.qmax = cs.asym ? 15 : 7;
    c.group_size = cs.group;
    c.rounding = cs.rounding;
    c.ste = cs.ste;
    c.lsq_grad_scale = 0.25;
    c.seed = seed;
    c.offset = 5;
    const Grads ref = run(x, s, z, c, w, Device::cpu());
    const Grads got = run(x, s, z, c, w, Device::cuda());
    CHECK(check_close("fake_quantize out", got.out, ref.out, 0, 0));
    CHECK(check_close("fake_quantize dx", got.dx, ref.dx, 0, 0));
    if (cs.ste == SteKind::LSQ) CHECK(check_close("fake_quantize dscale", got.ds, ref.ds, 1e-5, 1e-5));
  }
}

TEST_CASE("cuda parity: fake_quantize_per_token forward and dx") {
  for (int64_t K : {1, 37, 257, 1030}) {
    CAPTURE(K);
    const Tensor x = affine(rand({3, 11, K}, uint64_t(K), DType::F32), 3.0, 0.5);
    const Tensor w = rand({3, 11, K}, uint64_t(K) + 1, DType::F32);
    for (bool sym : {true, false}) {
      for (int bits : {4, 8}) {
        Tensor out[2], dx[2];
        int k = 0;
        for (Device dev : {Device::cpu(), Device::cuda()}) {
          Var xv(x.to(dev), true);
          const Var y = fake_quantize_per_token(xv, bits, sym, QuantRounding::NEAREST_EVEN,
                                                SteKind::CLIPPED);
          sum(mul(y, Var(w.to(dev)))).backward();
          out[k] = y.value().to(Device::cpu());
          dx[k++] = xv.grad().to(Device::cpu());
        }
        CHECK(check_close("per_token out", out[1], out[0], 0, 0));
        CHECK(check_close("per_token dx", dx[1], dx[0], 0, 0));
      }
    }
  }
}

TEST_CASE("cuda parity: QAT's fused scales are computed on the device, bit-identical") {
  // quant/qat.h qat_fused_scales: the CPU path is compute_scales (spec 4.1);
  // f32 CUDA weights take cuda::group_absmax_scales. Same f32 arithmetic,
  // so atol = rtol = 0. One row is all zeros (s = 1, z = 0 on both), rows
  // are odd in number, groups of 32 and 128, symmetric and ASYM_ZERO.
  for (const char* spec_text : {"int4_probe", "int4_probe:g32", "w4a16_g128", "int4:g32:asym",
                                "int8_probe", "int4:channel:sym:restricted"}) {
    CAPTURE(spec_text);
    const QuantSpec spec = quant_spec_from_string(spec_text);
    Tensor w = randn({37, 256}, 11, DType::F32);
    w.narrow(0, 5, 1).fill_(0.0);
    const QuantScales c = qat_fused_scales(w, spec);
    const QuantScales g = qat_fused_scales(w.to(Device::cuda()), spec);
    CHECK(g.scale.is_cuda());
    CHECK(check_close("scale", g.scale, c.scale, 0, 0));
    REQUIRE(g.zero.defined() == c.zero.defined());
    if (c.zero.defined()) CHECK(check_close("zero", g.zero, c.zero, 0, 0));
  }
}
