// Quantization-aware training inside the models (issue 5 item 2; spec.md
// 4.3, 4.4): a QatPlan decides which weight matrices of a LanguageModel are
// fake-quantized, with which QuantSpec and straight-through estimator, and
// installs the model's weight (and optionally activation) transform hooks
// (LanguageModel::set_weight_transform, models/model.h).
//
// What the forward of a quantized weight w computes (w_hat = the value used):
//   absmax / MSE scale rules, F32 scales, the fused op can express the spec
//     (symmetric or integer zero point, division step, rounding not the
//     ggml unsigned-domain HALF_UP):
//       s, z = compute_scales(w) every forward, detached (a constant for the
//       gradient, spec 4.3); w_hat = fake_quantize(w, s, z, ste)
//   exact formats the fused op cannot express bit-exactly (f16 scales,
//     signed_max, reciprocal step, ggml's ASYM_MIN, symmetric HALF_UP: the
//     q4_0 / q4_1 / q8_0 presets):
//       w_hat = straight_through(w, fake_quantize_reference(w, spec)[, mask])
//       (CLIPPED: the mask passes elements whose error is within half a
//       step, i.e. those the clamp did not move)
//   ste LSQ (learned scales, symmetric specs only): the scale is a trainable
//     tensor "<name>.lsq_scale" of quant_scales_shape, initialised at
//     construction per spec 4.3 (s = 2 mean|w| / sqrt(Q_P) per group, the
//     spec's LEARNED rule) and w_hat = fake_quantize(w, s, ste LSQ) with
//     the gradient scale 1 / sqrt(N * Q_P), N = weights per scale.
// In every case w_hat equals dequantize(quantize(w, spec[, learned s])) of
// quant/quantizer.h: bit-exactly for f32 CPU models (tests/quant/test_qat.cpp),
// to f32 rounding for f64 models (the reference computes in f32).
// GPT-2's Conv1D weights are stored [in, out]; they are quantized as their
// transpose so groups run along the input dimension, as for every other
// weight (spec 4.4; GGUF export does the same).
//
// Layer patterns (QatOptions::layers) select weight uses (models/layers.h
// weight_uses): "attention", "mlp", "embeddings" (token and position
// embeddings), "head", "all" (every 2-D weight), else a regex searched in
// the use names (e.g. "layers\.0\.", "dense_h_to_4h"). Every pattern must
// match at least one weight. A tied head is its own use ("embed_out.weight"
// / "lm_head.weight"): "head" quantizes the head's read of the tied
// embedding, "embeddings" the lookup.
//
// act_bits 8 or 4: every quantized linear layer's input is fake-quantized
// per token (symmetric, dynamic, fake_quantize_per_token; the ste as given,
// LSQ acting as CLIPPED there since a per-token scale is not learned);
// embeddings are lookups and have no input to quantize.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "quant/quantizer.h"

namespace gl {

struct QatOptions {
  QuantSpec spec = quant_preset("int4_probe");
  std::vector<std::string> layers = {"attention", "mlp"};  // patterns, see the file comment
  SteKind ste = SteKind::PLAIN;
  int act_bits = 0;        // 0: weights only; 8 or 4: per-token activation fake quant
  int64_t start_step = 0;  // the trainer calls set_enabled(step >= start_step)
};

class QatPlan {
 public:
  // Resolves the patterns and checks every selected weight against the
  // spec (group size divides the input dimension, LSQ only symmetric) before
  // any work; LSQ scales are initialised from `model`'s current weights.
  QatPlan(const LanguageModel& model, QatOptions options);

  // Installs the hooks on `model` (the one the plan was made for, or one
  // with the same config: only names are matched). The hooks share the
  // plan's state, so they stay valid if the plan object is destroyed.
  void attach(LanguageModel& model) const;
  static void detach(LanguageModel& model);  // plain forward again

  // Disabled: the hooks return weights and inputs unchanged. A new plan is
  // enabled iff options.start_step <= 0.
  void set_enabled(bool enabled);
  bool enabled() const;
  // set_enabled(step >= options.start_step), for the trainer's loop.
  void update_for_step(int64_t step) { set_enabled(step >= options().start_step); }

  // LSQ scales ("<use name>.lsq_scale", requires_grad), for the optimizer
  // (no weight decay: they are scales) and the checkpoint. Empty unless ste
  // is LSQ.
  std::vector<NamedParam> extra_parameters() const;
  std::vector<std::string> quantized_names() const;  // use names, model order
  const QatOptions& options() const;

  // The value the forward uses for use `name` given weight w (w itself if
  // the name is not quantized or the plan is disabled). What the hook calls.
  Var transform_weight(const std::string& name, const Var& w) const;
  Var transform_activation(const std::string& name, const Var& x) const;

  struct State;  // shared with the installed hooks (qat.cpp)

 private:
  std::shared_ptr<State> state_;
};

// The use names a set of patterns selects from a model config (the plan's
// own resolution, exposed for recipes and the probe); throws naming the
// first pattern that matches nothing, with the valid names.
std::vector<std::string> resolve_layer_patterns(const ModelConfig& cfg,
                                                const std::vector<std::string>& patterns);

// The scales the FUSED path fake-quantizes a weight with: compute_scales
// (spec 4.1) with all-zero groups mapped to s = 1, z = 0; on w's device and
// dtype, shaped quant_scales_shape. f32 CUDA weights with the ABSMAX rule
// are computed on the GPU (bit-identical to the CPU's).
QuantScales qat_fused_scales(const Tensor& w, const QuantSpec& spec);

}  // namespace gl
