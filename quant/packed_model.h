// The integer inference path of a whole model: a GPT-NeoX model whose
// selected linear layers run on packed 4-bit weights (quant/packed_linear.h),
// decoded inside the matmul kernel, through the model's linear override
// (models/model.h). Everything else (norms, attention, embeddings unless
// selected) runs as usual.
//
// The contract (issue 5 item 5): the packed weights are bit-identical to
// fake_quantize_reference of the same weights, so the perplexity of the
// packed model equals the fake-quant evaluation (QatPlan, or the probe) of
// the same weights up to the summation order of the matmul: float rounding.
//
// Inference only: the packed layers record no backward, so running a
// packed model with gradients enabled is an error (it would silently stop
// the gradient at every packed layer).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "quant/packed_linear.h"
#include "quant/quantizer.h"

namespace gl {

class PackedModel {
 public:
  // Packs the weights `layers` selects (patterns as quant.layers:
  // attention, mlp, head, all, or name patterns; quant/qat.h) from `model`'s
  // current values. GPT-NeoX only; 4-bit specs only (packed_linear.h).
  PackedModel(const LanguageModel& model, const QuantSpec& spec,
              const std::vector<std::string>& layers = {"attention", "mlp"});
  void attach(LanguageModel& model) const;  // installs the linear override
  static void detach(LanguageModel& model);
  std::vector<std::string> packed_names() const;
  size_t packed_bytes() const;  // weight bytes of the packed layers (codes + scales)

 private:
  std::shared_ptr<const std::map<std::string, PackedWeight>> packed_;
};

}  // namespace gl
