// CPU vs CUDA for autograd/ops/fake_quant.h on random f32 inputs at odd
// sizes (rows and K not multiples of the block sizes; groups of 32 leave
// the LSQ reduction's blocks partly idle).
// Tolerances: forward x_hat and dx are bit-identical (the same scalar code
// in cpu/fake_quant_math.h, IEEE division on both devices, the same Philox
// draws); the LSQ scale gradient is a double sum in a different order on
// each device, rounded once to f32: rtol 1e-5 (a few f32 ulps) plus a small
// atol for entries whose terms cancel.
#include <doctest/doctest.h>

#include <cstring>

#include "autograd/ops/fake_quant.h"
#include "autograd/ops/matmul.h"
#include "quant/qat.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Grads {
  Tensor out, dx, ds;
};

template <class U>
std::vector<U> bits_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<U> out(size_t(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(U));
  return out;
}

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

TEST_CASE("cuda parity: fake_quantize low-precision shadow (bf16 and f16) equals the CPU's") {
  // Under run.precision the fused forward writes x_hat and its 16-bit
  // rounding in one kernel (cuda::fake_quant_forward_lowp). Bit-identical:
  // x_hat to the CPU's, the shadow to the CPU's shadow (finite inputs; NaN
  // payloads may differ between the devices' casts) and to the device's own
  // x_hat.to(half). Scales put multiples on bf16 and f16 ties, past f16's
  // range (7 * 9360 = 65520 -> inf) and into f16 subnormals. Then linear on
  // the device reads the shadow (forward and dx) and gives the composed
  // path's bits.
  const bool start_up = fake_quant_shadow_enabled();
  set_fake_quant_shadow(true);
  struct Case {
    int64_t rows, K, group;
    bool shared;
    QuantRounding rounding;
    double scale;  // 0: random in [0.1, 0.2)
  };
  const Case cases[] = {{7, 96, 32, false, QuantRounding::NEAREST_EVEN, 0},
                        {33, 129, 129, false, QuantRounding::STOCHASTIC, 0},
                        {65, 300, 300, true, QuantRounding::NEAREST_EVEN, 1.0 + 0x1p-8},
                        {65, 300, 300, true, QuantRounding::NEAREST_AWAY, 1.0 + 3 * 0x1p-11},
                        {9, 1001, 7, false, QuantRounding::NEAREST_EVEN, 9360.0},
                        {5, 37, 37, true, QuantRounding::HALF_UP, 3 * 0x1p-26}};
  uint64_t seed = 300;
  for (MatmulPrecision prec : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    const DType half = prec == MatmulPrecision::BF16 ? DType::BF16 : DType::F16;
    CAPTURE(dtype_name(half));
    for (const Case& cs : cases) {
      CAPTURE(cs.rows);
      CAPTURE(cs.K);
      CAPTURE(cs.scale);
      const Shape ss = {cs.shared ? 1 : cs.rows, cs.K / cs.group};
      const Tensor s = cs.scale > 0 ? Tensor::full(ss, cs.scale, DType::F32)
                                    : affine(rand(ss, ++seed, DType::F32), 0.05, 0.15);
      const double s0 = s.to_vector()[0];
      const Tensor x = affine(rand({cs.rows, cs.K}, ++seed, DType::F32), 9.0 * s0, 0);
      FakeQuantConfig c;
      c.group_size = cs.group;
      c.rounding = cs.rounding;
      c.seed = seed;
      const MatmulPrecisionGuard guard(prec);
      Tensor out[2], shadow[2];
      int k = 0;
      for (Device dev : {Device::cpu(), Device::cuda()}) {
        out[k] = fake_quantize(Var(x.to(dev)), Var(s.to(dev)), Tensor(), c).value();
        shadow[k] = out[k].lowp_shadow(half);
        REQUIRE(shadow[k].defined());
        CHECK(shadow[k].device() == dev);
        ++k;
      }
      CHECK(bits_of<uint32_t>(out[1]) == bits_of<uint32_t>(out[0]));
      CHECK(bits_of<uint16_t>(shadow[1]) == bits_of<uint16_t>(shadow[0]));
      CHECK(bits_of<uint16_t>(shadow[1]) == bits_of<uint16_t>(out[1].to(half)));
    }
    // The device's products read it, one use in the forward and one in dx,
    // and give the composed path's bits.
    const Tensor w = rand({64, 96}, ++seed, DType::F32).to(Device::cuda());
    const Tensor sc = Tensor::full({64, 3}, 0.1, DType::F32, Device::cuda());
    const Tensor xin = rand({4, 5, 96}, ++seed, DType::F32).to(Device::cuda());
    const Tensor dyw = rand({4, 5, 64}, ++seed, DType::F32).to(Device::cuda());
    FakeQuantConfig c;
    c.group_size = 32;
    Tensor y[2], dx[2];
    uint64_t uses[2] = {0, 0};
    for (int on : {1, 0}) {
      set_fake_quant_shadow(on == 1);
      const MatmulPrecisionGuard guard(prec);
      Var xv(xin, true);
      const uint64_t before = matmul_lowp_shadow_uses();
      const Var yv = linear(xv, fake_quantize(Var(w), Var(sc), Tensor(), c));
      sum(mul(yv, Var(dyw))).backward();
      uses[on] = matmul_lowp_shadow_uses() - before;
      y[on] = yv.value();
      dx[on] = xv.grad();
    }
    set_fake_quant_shadow(true);
    CHECK(uses[1] == 2);
    CHECK(uses[0] == 0);
    CHECK(bits_of<uint32_t>(y[1]) == bits_of<uint32_t>(y[0]));
    CHECK(bits_of<uint32_t>(dx[1]) == bits_of<uint32_t>(dx[0]));
  }
  set_fake_quant_shadow(start_up);
}
