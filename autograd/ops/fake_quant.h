// Fake quantization as autograd ops (issue 5 item 2; spec.md 4.3): the
// forward is dequantize(quantize(x)), the backward a straight-through
// estimator. This is the kernel layer under quant/'s quantizer description:
// it takes the integer range, the grouping and the scales directly.
//
// fake_quantize: x [..., K] (viewed as [R, K]); scale [R or 1, K / group_size]
// (group_size divides K; group_size == K is per-row = per-output-channel,
// and with scale [1, 1] per-tensor); zero undefined (symmetric) or shaped
// like scale (asymmetric):
//   q = clamp(round(x / s) + z, qmin, qmax),   x_hat = (q - z) * s
// in x's dtype, round = cfg.rounding (cpu/fake_quant_math.h spells out each
// mode; STOCHASTIC draws element i's uniform at Philox (seed, offset, i),
// so reserve offset = gen.advance((x.numel() + 3) / 4)).
// Backward (cfg.ste):
//   PLAIN    dx = dy;                         the scale is a constant
//   CLIPPED  dx = dy * [qmin <= round(x/s) + z <= qmax]; scale constant
//   LSQ      dx as CLIPPED; if scale requires grad,
//            dscale = lsq_grad_scale * sum over the scale's group of
//                     dy * (round(x/s) - x/s inside, qmin - z below, qmax - z above)
//            (Esser et al. 2020, arXiv 1902.08153; pass 1/sqrt(N * Q_P)).
// The region is the ROUNDED level's, as PyTorch's fake_quantize backwards
// decide it (reason in cpu/fake_quant_math.h): it differs from a test on
// the unrounded x/s only within half a step outside the range.
// The zero point is never differentiated.
#pragma once
#include "autograd/var.h"
#include "quant/types.h"

namespace gl {

struct FakeQuantConfig {
  int64_t qmin = -8, qmax = 7;  // integer range, qmin < qmax
  int64_t group_size = 0;       // divides K
  QuantRounding rounding = QuantRounding::NEAREST_EVEN;
  SteKind ste = SteKind::PLAIN;
  double lsq_grad_scale = 1.0;
  uint64_t seed = 0, offset = 0;  // STOCHASTIC only
};

Var fake_quantize(const Var& x, const Var& scale, const Tensor& zero, const FakeQuantConfig& cfg);

// Under run.precision bf16 or f16 (matmul_precision()), fake_quantize and
// fake_quantize_per_token of an f32 x also write x_hat rounded to that type,
// in the same kernel, and attach it to x_hat as its low-precision shadow
// (core/storage.h): the products taking x_hat as an operand (the weight in
// y = x W^T and in dx = dy W) read it instead of casting x_hat twice. The
// shadow is x_hat.to(bf16/f16) bit for bit, so results do not change. Off
// when GRIDLOCK_FUSED_OPS=0 was set at start-up (the composed path, as for
// models/layers.h's fused ops); set_fake_quant_shadow overrides that, for
// tests comparing both paths in one process. straight_through (below) gets
// no shadow: its x_hat comes from elsewhere and is cast as before.
bool fake_quant_shadow_enabled();
void set_fake_quant_shadow(bool on);

// Forward returns x_hat (any quantizer's exact output, e.g. ggml Q4_0 with
// its f16 scales) without copying it; backward dx = dy, or dy * pass_mask
// when the mask (0/1, shaped and typed like x) is defined. The generic STE
// for formats the fused op cannot express.
Var straight_through(const Var& x, const Tensor& x_hat, const Tensor& pass_mask = Tensor());

// Dynamic per-token activation fake quantization (W8A8, W4A4): each row of
// x [..., K] gets its own scale from its own values in the forward, a
// constant in the backward. Symmetric: s = absmax / (2^(b-1) - 1), levels
// [-(2^(b-1) - 1), 2^(b-1) - 1]. Asymmetric: levels [0, 2^b - 1], the row's
// [min, max] widened to contain 0, s = (max - min) / (2^b - 1),
// z = -round_half_even(min / s). bits in 2..8; ste PLAIN or CLIPPED (LSQ
// needs a learned scale: use fake_quantize).
Var fake_quantize_per_token(const Var& x, int bits, bool symmetric, QuantRounding rounding,
                            SteKind ste, uint64_t seed = 0, uint64_t offset = 0);

}  // namespace gl
