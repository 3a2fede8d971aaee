// The low-precision shadow of fake_quantize's output (autograd/ops/
// fake_quant.h, core/storage.h): under run.precision bf16/f16 the fused
// forward writes x_hat's 16-bit rounding in the same kernel, and it must be
// x_hat.to(bf16/f16) bit for bit: ties, f16 overflow to inf, f16
// subnormals, NaN and inf inputs, at odd sizes and every scale granularity.
// Then the plumbing: products read it instead of casting (poisoning it
// changes the forward and dx products; a counter sees each use), only whole
// contiguous f32 views find it, writes drop it, the switch turns it off.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "autograd/ops/fake_quant.h"
#include "autograd/ops/matmul.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// The raw bit patterns of a tensor of 2- or 4-byte elements.
template <class U>
std::vector<U> bits_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  REQUIRE(c.element_size() == sizeof(U));
  std::vector<U> out(size_t(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size() * sizeof(U));
  return out;
}

// Scales whose multiples land on the cases a 16-bit rounding must get right:
// 1 + 2^-8 and 1 + 3 * 2^-8 put odd multiples on bf16 ties (down and up to
// even), 1 + 2^-11 and 1 + 3 * 2^-11 on f16 ties, 3 * 2^-26 on f16
// subnormal ties, 9360 makes 7 s = 65520 (the first f32 value f16 rounds to
// inf) and 9359 7 s = 65513 (rounds to 65504), 1e5 overflows f16 outright,
// and 0.0371 is an ordinary scale.
const double kScales[] = {1.0 + 0x1p-8, 1.0 + 3 * 0x1p-8, 1.0 + 0x1p-11, 1.0 + 3 * 0x1p-11,
                          3 * 0x1p-26,  9360.0,           9359.0,        1e5,
                          0.0371};

// x [rows, K] with each element u * (its scale), u uniform in [-9, 9] (so
// some clamp) or an integer (x / s near a level); a few NaN and inf.
Tensor shadow_input(int64_t rows, int64_t K, const Tensor& scale, int64_t group, uint64_t seed) {
  const std::vector<double> u = rand({rows, K}, seed).to_vector();
  const std::vector<double> s = scale.to_vector();
  const int64_t G = K / group;
  std::vector<double> x(u.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < K; ++c) {
      const size_t i = size_t(r * K + c);
      const double sc = s[size_t((scale.size(0) == 1 ? 0 : r) * G + c / group)];
      x[i] = (i % 3 == 0 ? std::round(9.0 * u[i]) : 9.0 * u[i]) * sc;
    }
  if (x.size() > 20) {
    x[5] = std::numeric_limits<double>::quiet_NaN();
    x[11] = std::numeric_limits<double>::infinity();
    x[17] = -std::numeric_limits<double>::infinity();
  }
  return Tensor::from_vector(x, {rows, K}, DType::F32);
}

// Scale [scale_rows, G] cycling through kScales from `first`.
Tensor shadow_scales(int64_t scale_rows, int64_t G, size_t first) {
  std::vector<double> s(size_t(scale_rows * G));
  for (size_t i = 0; i < s.size(); ++i) s[i] = kScales[(first + i) % std::size(kScales)];
  return Tensor::from_vector(s, {scale_rows, G}, DType::F32);
}

FakeQuantConfig shadow_config(int64_t group, QuantRounding r, bool asym) {
  FakeQuantConfig c;
  c.qmin = asym ? 0 : -8;
  c.qmax = asym ? 15 : 7;
  c.group_size = group;
  c.rounding = r;
  c.seed = 99;
  return c;
}

// Restores the start-up switch when a test case leaves.
struct ShadowSwitch {
  bool before = fake_quant_shadow_enabled();
  explicit ShadowSwitch(bool on) { set_fake_quant_shadow(on); }
  ~ShadowSwitch() { set_fake_quant_shadow(before); }
};

}  // namespace

TEST_CASE("fake_quantize shadow: bit-identical to x_hat.to(bf16) and .to(f16)") {
  const ShadowSwitch on(true);
  struct Case {
    int64_t rows, K, group;
    bool shared, asym;
    QuantRounding rounding;
  };
  const Case cases[] = {
      {7, 33, 11, false, false, QuantRounding::NEAREST_EVEN},  // per group
      {5, 97, 97, false, false, QuantRounding::NEAREST_AWAY},  // per row
      {3, 45, 9, true, true, QuantRounding::HALF_UP},          // groups shared by rows, zero point
      {11, 19, 19, false, true, QuantRounding::STOCHASTIC},    // per row, stochastic
  };
  for (MatmulPrecision prec : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    const DType half = prec == MatmulPrecision::BF16 ? DType::BF16 : DType::F16;
    const DType other = half == DType::BF16 ? DType::F16 : DType::BF16;
    uint64_t seed = 40;
    auto check_case = [&](const Tensor& scale, const Tensor& zero, int64_t rows, int64_t K,
                          const FakeQuantConfig& c) {
      const Tensor x = shadow_input(rows, K, scale, c.group_size, ++seed);
      const Tensor composed =
          fake_quantize(Var(x), Var(scale), zero, c).value();  // f32 precision: no shadow
      CHECK(!composed.lowp_shadow(half).defined());
      const MatmulPrecisionGuard guard(prec);
      const Tensor x_hat = fake_quantize(Var(x), Var(scale), zero, c).value();
      const Tensor shadow = x_hat.lowp_shadow(half);
      REQUIRE(shadow.defined());
      CHECK(shadow.dtype() == half);
      CHECK(shadow.shape() == x_hat.shape());
      CHECK(!x_hat.lowp_shadow(other).defined());
      CHECK(bits_of<uint32_t>(x_hat) == bits_of<uint32_t>(composed));  // x_hat unchanged
      CHECK(bits_of<uint16_t>(shadow) == bits_of<uint16_t>(x_hat.to(half)));
    };
    for (const Case& cs : cases) {
      CAPTURE(cs.rows);
      CAPTURE(cs.K);
      CAPTURE(cs.group);
      CAPTURE(dtype_name(half));
      const Tensor scale = shadow_scales(cs.shared ? 1 : cs.rows, cs.K / cs.group, size_t(seed));
      const Tensor zero = cs.asym ? Tensor::full(scale.shape(), 8.0, DType::F32) : Tensor();
      check_case(scale, zero, cs.rows, cs.K, shadow_config(cs.group, cs.rounding, cs.asym));
    }
    // Per tensor, once per special scale.
    for (size_t k = 0; k < std::size(kScales); ++k) {
      CAPTURE(kScales[k]);
      CAPTURE(dtype_name(half));
      check_case(shadow_scales(1, 1, k), Tensor(), 9, 13,
                 shadow_config(13, QuantRounding::NEAREST_EVEN, false));
    }
    // The rounding cases do occur: f16 inf from finite x_hat, and ties.
    if (half == DType::F16) {
      const MatmulPrecisionGuard guard(prec);
      const Tensor x =
          Tensor::from_vector({7 * 9360.0, 6 * 9360.0, 1 + 0x1p-11}, {1, 3}, DType::F32);
      const Tensor s = Tensor::from_vector({9360.0, 9360.0, 1 + 0x1p-11}, {1, 3}, DType::F32);
      const FakeQuantConfig c = shadow_config(1, QuantRounding::NEAREST_EVEN, false);
      const Tensor sh = fake_quantize(Var(x), Var(s), Tensor(), c).value().lowp_shadow(half);
      REQUIRE(sh.defined());
      const std::vector<double> v = sh.to_vector();
      CHECK(std::isinf(v[0]));
      CHECK(v[1] == 56160.0);
      CHECK(v[2] == 1.0);  // 1 + 2^-11 ties to even
    }
  }
}

TEST_CASE(
    "fake_quantize shadow: per-token activations, 3-D x, and where there "
    "is none") {
  const ShadowSwitch on(true);
  const Tensor x = affine(rand({2, 3, 17}, 5, DType::F32), 3.0, 0.0);
  {
    const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
    const Tensor a =
        fake_quantize_per_token(Var(x), 8, true, QuantRounding::NEAREST_EVEN, SteKind::PLAIN)
            .value();
    REQUIRE(a.lowp_shadow(DType::BF16).defined());
    CHECK(bits_of<uint16_t>(a.lowp_shadow(DType::BF16)) == bits_of<uint16_t>(a.to(DType::BF16)));
    // A reshape of the whole storage still finds it, a part of it does not.
    CHECK(a.reshape({6, 17}).lowp_shadow(DType::BF16).defined());
    CHECK(!a.narrow(2, 1, 5).lowp_shadow(DType::BF16).defined());
    CHECK(!a.select(0, 1).lowp_shadow(DType::BF16).defined());
    CHECK(!a.transpose(0, 1).lowp_shadow(DType::BF16).defined());
    // A write through the Tensor API drops it (it would be stale).
    Tensor w = a;
    w.copy_(x);
    CHECK(!a.lowp_shadow(DType::BF16).defined());
    // f64 is never rounded by the products: no shadow.
    CHECK(!fake_quantize_per_token(Var(x.to(DType::F64)), 8, true, QuantRounding::NEAREST_EVEN,
                                   SteKind::PLAIN)
               .value()
               .lowp_shadow(DType::BF16)
               .defined());
  }
  // Switched off (GRIDLOCK_FUSED_OPS=0): the composed path, no shadow.
  const ShadowSwitch off(false);
  const MatmulPrecisionGuard guard(MatmulPrecision::BF16);
  CHECK(!fake_quantize_per_token(Var(x), 8, true, QuantRounding::NEAREST_EVEN, SteKind::PLAIN)
             .value()
             .lowp_shadow(DType::BF16)
             .defined());
}

TEST_CASE(
    "fake_quantize shadow: linear's forward and dx products read it "
    "(poisoned shadow)") {
  const ShadowSwitch on(true);
  for (MatmulPrecision prec : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    const DType half = prec == MatmulPrecision::BF16 ? DType::BF16 : DType::F16;
    CAPTURE(dtype_name(half));
    const Tensor w = rand({6, 10}, 1, DType::F32);
    const Tensor s = Tensor::full({6, 2}, 0.1, DType::F32);
    FakeQuantConfig c;
    c.group_size = 5;
    const Tensor bias = rand({6}, 2, DType::F32);
    auto run = [&](bool poison) {
      const MatmulPrecisionGuard guard(prec);
      Var x(rand({2, 3, 10}, 3, DType::F32), true), wv(w, true);
      const Var w_hat = fake_quantize(wv, Var(s), Tensor(), c);
      Tensor sh = w_hat.value().lowp_shadow(half);
      REQUIRE(sh.defined());
      if (poison) sh.fill_(0.0);  // tests only: a shadow is never written
      const uint64_t before = matmul_lowp_shadow_uses();
      const Var y = linear(x, w_hat, Var(bias));
      sum(mul(y, Var(rand({2, 3, 6}, 4, DType::F32)))).backward();
      // Forward x . W^T and backward dx = dy . W: one use each (dW = dy^T x
      // has no quantized operand).
      CHECK(matmul_lowp_shadow_uses() - before == 2);
      return std::make_tuple(y.value(), x.grad(), wv.grad());
    };
    const auto [y, dx, dw] = run(false);
    const auto [yp, dxp, dwp] = run(true);
    // A zero weight: y is the bias alone, dx is zero; dW does not read W.
    CHECK(yp.to_vector() ==
          bias.unsqueeze(0).unsqueeze(0).expand({2, 3, 6}).contiguous().to_vector());
    CHECK(dxp.to_vector() == std::vector<double>(60, 0.0));
    CHECK(bits_of<uint32_t>(dwp) == bits_of<uint32_t>(dw));
    CHECK(bits_of<uint32_t>(y) != bits_of<uint32_t>(yp));
  }
  // f32 products ignore shadows (and none is made).
  const uint64_t before = matmul_lowp_shadow_uses();
  FakeQuantConfig c;
  c.group_size = 10;
  linear(Var(rand({3, 10}, 3, DType::F32)),
         fake_quantize(Var(rand({6, 10}, 1, DType::F32)), Var(Tensor::full({6, 1}, 0.1)), Tensor(),
                       c));
  CHECK(matmul_lowp_shadow_uses() == before);
}
