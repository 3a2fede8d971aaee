// Fake quantization autograd ops (contracts in autograd/ops/fake_quant.h):
// validation, then the fused kernels of cpu/fake_quant.h / cuda/fake_quant.h.
// Backward closures keep only x, the scale/zero tensors and the parameters:
// the level (and the stochastic draw) is recomputed, never stored.
#include "autograd/ops/fake_quant.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/tape.h"
#include "cpu/fake_quant.h"
#include "cuda/fake_quant.h"

namespace gl {

namespace {

// Levels must be exact in f32 (integers up to 2^24) for the clamp to be exact.
constexpr int64_t kMaxLevel = int64_t(1) << 24;

void check_floating(const char* op, const Tensor& t, const char* name) {
  GL_CHECK(t.defined(), op, ": undefined ", name);
  GL_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": dtype ",
           dtype_name(t.dtype()), " not supported for ", name, " (", t.describe(),
           "); ops compute in f32 or f64, convert with .to(DType::F32)");
}

// Every scale must be finite and > 0 (a zero scale divides by zero, a
// negative one flips the grid). Reading it back syncs a CUDA stream; the
// scale holds one value per group, so this is cheap next to the kernel.
void check_scale_values(const char* op, const Tensor& scale) {
  const std::vector<double> s = scale.to_vector();
  for (size_t k = 0; k < s.size(); ++k)
    GL_CHECK(std::isfinite(s[k]) && s[k] > 0, op, ": scale must be finite and > 0, scale[", k,
             "] = ", s[k], " (", scale.describe(), ")");
}

// check_values: read the scales back and check them (skipped for scales this
// file computed itself, which would only fail on an inf input).
FakeQuantParams make_params(const char* op, const Tensor& x, const Tensor& scale,
                            const Tensor& zero, const FakeQuantConfig& cfg, bool check_values) {
  check_floating(op, x, "x");
  check_same(op, x, scale, "scale");
  GL_CHECK(x.dim() >= 1, op, ": x must be [..., K], got ", x.describe());
  GL_CHECK(cfg.qmin < cfg.qmax, op, ": qmin must be < qmax, got [", cfg.qmin, ", ", cfg.qmax,
           "]");
  GL_CHECK(cfg.qmin > -kMaxLevel && cfg.qmax < kMaxLevel, op, ": integer range [", cfg.qmin,
           ", ", cfg.qmax, "] exceeds +-2^24 (levels must be exact in f32)");
  GL_CHECK(std::isfinite(cfg.lsq_grad_scale), op, ": lsq_grad_scale must be finite, got ",
           cfg.lsq_grad_scale);
  FakeQuantParams p;
  p.cols = x.size(-1);
  p.rows = p.cols > 0 ? x.numel() / p.cols : 0;
  GL_CHECK(cfg.group_size >= 1 && p.cols % cfg.group_size == 0, op, ": group_size ",
           cfg.group_size, " does not divide K = ", p.cols, " of x (", x.describe(), ")");
  p.group_size = cfg.group_size;
  const int64_t G = p.groups();
  GL_CHECK(scale.dim() == 2 && (scale.size(0) == p.rows || scale.size(0) == 1) &&
               scale.size(1) == G,
           op, ": scale must be [", p.rows, " or 1, ", G, "] (rows of x, K / group_size) for x (",
           x.describe(), ") with group_size ", cfg.group_size, ", got ", scale.describe());
  if (zero.defined()) {
    check_same(op, x, zero, "zero");
    GL_CHECK(zero.shape() == scale.shape(), op, ": zero (", zero.describe(),
             ") must have the scale's shape (", scale.describe(), ")");
  }
  if (check_values) check_scale_values(op, scale);
  p.scale_rows = scale.size(0);
  p.qmin = double(cfg.qmin);
  p.qmax = double(cfg.qmax);
  p.rounding = cfg.rounding;
  p.seed = cfg.seed;
  p.offset = cfg.offset;
  return p;
}

template <class T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

std::atomic<bool>& shadow_switch() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("GRIDLOCK_FUSED_OPS");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return on;
}

// f32 x_hat and its `half` rounding, attached as its low-precision shadow,
// from one kernel.
Tensor fake_quant_forward_lowp(const Tensor& x, const Tensor& scale, const Tensor& zero,
                               const FakeQuantParams& p, DType half) {
  Tensor out = Tensor::empty(x.shape(), DType::F32, x.device());
  Tensor out_half = Tensor::empty(x.shape(), half, x.device());
  uint16_t* h = static_cast<uint16_t*>(out_half.data_ptr());
  const bool f16 = half == DType::F16;
  if (x.is_cuda()) {
#if GRIDLOCK_CUDA
    cuda::DeviceGuard guard(x.device().index);
    cuda::fake_quant_forward_lowp(out.data<float>(), h, x.data<float>(), scale.data<float>(),
                                  data_or_null<float>(zero), p, f16);
#else
    GL_CHECK(false, "fake_quantize: CUDA tensor in a build without CUDA");
#endif
  } else {
    cpu::fake_quant_forward_lowp(out.data<float>(), h, x.data<float>(), scale.data<float>(),
                                 data_or_null<float>(zero), p, f16);
  }
  out.attach_lowp_shadow(out_half);
  return out;
}

// Tensor level: x_hat for contiguous x, scale, zero.
Tensor fake_quant_forward(const Tensor& x, const Tensor& scale, const Tensor& zero,
                          const FakeQuantParams& p) {
  const MatmulPrecision mp = matmul_precision();
  if (mp != MatmulPrecision::F32 && x.dtype() == DType::F32 && fake_quant_shadow_enabled())
    return fake_quant_forward_lowp(x, scale, zero, p,
                                   mp == MatmulPrecision::BF16 ? DType::BF16 : DType::F16);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch("fake_quantize", x,
      [&](auto t) {
        using T = decltype(t);
        cpu::fake_quant_forward<T>(out.data<T>(), x.data<T>(), scale.data<T>(),
                                   data_or_null<T>(zero), p);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::fake_quant_forward<T>(out.data<T>(), x.data<T>(), scale.data<T>(),
                                    data_or_null<T>(zero), p);
      });
  return out;
}

// dx for a straight-through estimator: dout itself (PLAIN) or masked to the
// elements the clamp left alone (CLIPPED, LSQ).
Tensor fake_quant_backward_x(const Tensor& dout, const Tensor& x, const Tensor& scale,
                             const Tensor& zero, const FakeQuantParams& p, SteKind ste) {
  if (ste == SteKind::PLAIN) return dout;
  const Tensor g = dout.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  dispatch("fake_quantize backward", x,
      [&](auto t) {
        using T = decltype(t);
        cpu::fake_quant_backward_x<T>(dx.data<T>(), g.data<T>(), x.data<T>(), scale.data<T>(),
                                      data_or_null<T>(zero), p);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::fake_quant_backward_x<T>(dx.data<T>(), g.data<T>(), x.data<T>(), scale.data<T>(),
                                       data_or_null<T>(zero), p);
      });
  return dx;
}

// The op behind fake_quantize and fake_quantize_per_token.
Var fake_quantize_op(const Var& x, const Var& scale, const Tensor& zero, const FakeQuantConfig& cfg,
                     bool check_values) {
  GL_CHECK(x.defined() && scale.defined(), "fake_quantize: undefined x or scale");
  const FakeQuantParams p =
      make_params("fake_quantize", x.value(), scale.value(), zero, cfg, check_values);
  const Tensor xc = x.value().contiguous(), sc = scale.value().contiguous();
  const Tensor zc = zero.defined() ? zero.contiguous() : Tensor();
  Tensor out = fake_quant_forward(xc, sc, zc, p);
  const SteKind ste = cfg.ste;
  const double grad_scale = cfg.lsq_grad_scale;
  auto backward = [x, scale, xc, sc, zc, p, ste, grad_scale](const Tensor& dout) {
    if (x.requires_grad())
      accumulate_grad(x, fake_quant_backward_x(dout, xc, sc, zc, p, ste));
    if (ste != SteKind::LSQ || !scale.requires_grad()) return;
    const Tensor g = dout.contiguous();
    Tensor ds = Tensor::empty(sc.shape(), sc.dtype(), sc.device());
    dispatch("fake_quantize backward (scale)", xc,
        [&](auto t) {
          using T = decltype(t);
          cpu::fake_quant_backward_scale<T>(ds.data<T>(), g.data<T>(), xc.data<T>(),
                                            sc.data<T>(), data_or_null<T>(zc), p, grad_scale);
        },
        [&](auto t) {
          using T = decltype(t);
          cuda::fake_quant_backward_scale<T>(ds.data<T>(), g.data<T>(), xc.data<T>(),
                                             sc.data<T>(), data_or_null<T>(zc), p, grad_scale);
        });
    accumulate_grad(scale, ds);
  };
  // PLAIN and CLIPPED treat the scale as a constant: it is not an input of
  // the recorded op, so no gradient reaches it through here.
  if (ste == SteKind::LSQ) return record("fake_quantize", out, {&x, &scale}, backward);
  return record("fake_quantize", out, {&x}, backward);
}

}  // namespace

Var fake_quantize(const Var& x, const Var& scale, const Tensor& zero, const FakeQuantConfig& cfg) {
  return fake_quantize_op(x, scale, zero, cfg, /*check_values=*/true);
}

bool fake_quant_shadow_enabled() { return shadow_switch().load(std::memory_order_relaxed); }
void set_fake_quant_shadow(bool on) { shadow_switch().store(on, std::memory_order_relaxed); }

Var straight_through(const Var& x, const Tensor& x_hat, const Tensor& pass_mask) {
  GL_CHECK(x.defined(), "straight_through: undefined x");
  check_floating("straight_through", x.value(), "x");
  check_same("straight_through", x.value(), x_hat, "x_hat");
  GL_CHECK(x_hat.shape() == x.shape(), "straight_through: x_hat (", x_hat.describe(),
           ") must have x's shape (", x.value().describe(), ")");
  if (pass_mask.defined()) {
    check_same("straight_through", x.value(), pass_mask, "pass_mask");
    GL_CHECK(pass_mask.shape() == x.shape(), "straight_through: pass_mask (",
             pass_mask.describe(), ") must have x's shape (", x.value().describe(), ")");
  }
  return record("straight_through", x_hat, {&x}, [x, pass_mask](const Tensor& dout) {
    accumulate_grad(x, pass_mask.defined() ? binary(dout, pass_mask, BinaryOp::MUL) : dout);
  });
}

Var fake_quantize_per_token(const Var& x, int bits, bool symmetric, QuantRounding rounding,
                            SteKind ste, uint64_t seed, uint64_t offset) {
  const char* op = "fake_quantize_per_token";
  GL_CHECK(x.defined(), op, ": undefined x");
  check_floating(op, x.value(), "x");
  GL_CHECK(bits >= 2 && bits <= 8, op, ": bits must be in 2..8, got ", bits, " for x (",
           x.describe(), ")");
  GL_CHECK(ste != SteKind::LSQ, op, ": LSQ needs a learned scale, but the per-token scale is ",
           "computed from x; use PLAIN or CLIPPED here, or fake_quantize with a scale Var");
  GL_CHECK(x.dim() >= 1 && x.size(-1) > 0, op, ": x must be [..., K] with K > 0, got ",
           x.describe());
  const Tensor xc = x.value().contiguous();
  const int64_t K = xc.size(-1), R = K > 0 ? xc.numel() / K : 0;
  FakeQuantConfig cfg;
  cfg.qmax = symmetric ? (int64_t(1) << (bits - 1)) - 1 : (int64_t(1) << bits) - 1;
  cfg.qmin = symmetric ? -cfg.qmax : 0;
  cfg.group_size = K > 0 ? K : 1;
  cfg.rounding = rounding;
  cfg.ste = ste;
  cfg.seed = seed;
  cfg.offset = offset;
  // The row statistics and parameters come from one kernel on x's device;
  // they are constants for the backward (no record of their computation).
  Tensor scale = Tensor::empty({R, 1}, xc.dtype(), xc.device());
  Tensor zero = symmetric ? Tensor() : Tensor::empty({R, 1}, xc.dtype(), xc.device());
  dispatch(op, xc,
      [&](auto t) {
        using T = decltype(t);
        cpu::per_token_params<T>(scale.data<T>(), zero.defined() ? zero.data<T>() : nullptr,
                                 xc.data<T>(), R, K, symmetric, double(cfg.qmin),
                                 double(cfg.qmax));
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::per_token_params<T>(scale.data<T>(), zero.defined() ? zero.data<T>() : nullptr,
                                  xc.data<T>(), R, K, symmetric, double(cfg.qmin),
                                  double(cfg.qmax));
      });
  return fake_quantize_op(x, Var(scale), zero, cfg, /*check_values=*/false);
}

}  // namespace gl
