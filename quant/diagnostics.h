// Per-layer (per weight tensor) statistics that explain a quantization gap:
// how heavy-tailed the weights are, where they sit on the quantization grid,
// how many codes change between two checkpoints. The probe (quant/probe.h)
// fills them for every weight it quantizes.
//
// Definitions (all accumulated in double over the f32/f64 values):
//   excess kurtosis   m4 / m2^2 - 3 with population central moments
//                     m_k = (1/n) sum (x - mean)^k (spec.md 3.8, Fisher,
//                     scipy.stats.kurtosis(fisher=True, bias=True)); a
//                     constant tensor (m2 = 0) gives 0.
//   absmax / std      max |x| over the population std sqrt(m2) (0 if m2 = 0).
// Grid alignment under a QuantSpec, on the real value v that gets rounded
// (quant/quantizer.h: symmetric and ASYM_ZERO v = w / s, ASYM_MIN
// v = (w - m) / s, with the scales compute_scales() stores; a zero scale
// gives v = 0), BEFORE clamping, so clipped values count where they fall:
//   grid_dist         mean |v - round(v)|, in [0, 0.5]; uniform noise gives
//                     0.25, weights that sit on grid points give 0
//   near_boundary     share of elements with |frac(v) - 0.5| < 0.05, i.e.
//                     within 0.05 of a rounding boundary (uniform: 0.1);
//                     these are the codes a tiny update can flip
// Bin flips: the share of elements whose integer code (quantize()) differs
// between two tensors of the same name and shape under the same spec,
// each quantized with its own scales (as the probe quantizes each
// checkpoint).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"
#include "quant/quantizer.h"

namespace gl {

struct WeightMoments {
  double mean = 0, std = 0, absmax = 0, excess_kurtosis = 0;
  int64_t n = 0;
};
// Any float dtype and device; errors on an empty tensor.
WeightMoments weight_moments(const Tensor& w);

struct GridAlignment {
  double grid_dist = 0;      // mean |v - round(v)|
  double near_boundary = 0;  // share with |frac(v) - 0.5| < kNearBoundary
};
constexpr double kNearBoundary = 0.05;
// validate_for_shape(spec, w.shape()) first (one-line error naming both).
GridAlignment grid_alignment(const Tensor& w, const QuantSpec& spec);

// Share of differing codes of a and b under spec (same shape required; the
// error names both tensors). Stochastic rounding is refused: its codes
// would differ by chance.
double bin_flip_share(const Tensor& a, const Tensor& b, const QuantSpec& spec);

struct LayerDiagnostics {
  std::string name;  // Hugging Face parameter name
  Shape shape;       // as quantized (GPT-2 Conv1D weights: transposed to [out, in])
  int64_t numel = 0;
  double excess_kurtosis = 0, absmax_over_std = 0, absmax = 0, std = 0;
  struct Fmt {
    std::string format;  // QuantSpec name
    double grid_dist = 0, near_boundary = 0;
    // NaN until filled: bin flips need a previous checkpoint, sensitivity
    // needs ProbeOptions::sensitivity.
    double bin_flips = std::numeric_limits<double>::quiet_NaN();
    double sensitivity_gap_pct = std::numeric_limits<double>::quiet_NaN();
  };
  std::vector<Fmt> formats;  // in ProbeOptions::formats order
  Json to_json() const;      // NaN fields are left out
};

// Moments plus the grid alignment under each spec (sensitivity and bin
// flips left NaN).
LayerDiagnostics layer_diagnostics(const std::string& name, const Tensor& w,
                                   const std::vector<QuantSpec>& specs);

}  // namespace gl
