// The vocabulary shared by every quantization file (quant/, the fake-quant
// autograd ops, the probe, export): how values round to integers, how the
// gradient passes through the rounding, and the ggml tensor types.
//
// Rounding of a real v to an integer (before clamping to [qmin, qmax]):
//   NEAREST_EVEN  round half to even (torch.round, numpy.rint; GPTQ)
//   NEAREST_AWAY  round half away from zero (C roundf; ggml Q8_0)
//   HALF_UP       floor(v + 0.5) (ggml Q4_0/Q4_1: (int)(v + 8.5) - 8 and
//                 (int)(v + 0.5) on non-negative arguments)
//   STOCHASTIC    floor(v + u), u ~ U[0, 1) from Philox (unbiased)
// Straight-through estimators (spec.md 4.3):
//   PLAIN    d w_hat / d w = 1 everywhere
//   CLIPPED  1 where v = w / s lies inside [qmin, qmax], else 0
//   LSQ      CLIPPED for w, plus the LSQ gradient for a learned scale
#pragma once
#include <cstdint>
#include <string>

namespace gl {

enum class QuantRounding : uint8_t { NEAREST_EVEN, NEAREST_AWAY, HALF_UP, STOCHASTIC };
enum class SteKind : uint8_t { PLAIN, CLIPPED, LSQ };

// ggml_type ids (ggml.h), as stored in GGUF tensor infos.
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8, BF16 = 30 };

}  // namespace gl
