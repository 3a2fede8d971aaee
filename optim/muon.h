// Muon: MomentUm Orthogonalized by Newton-Schulz (Keller Jordan,
// KellerJordan/Muon muon.py, https://kellerjordan.github.io/posts/muon/),
// spec 3.3. Three layers, as in the reference:
//
// zeropower_via_newtonschulz5(G, steps) -- approximate orthogonalisation:
//   a, b, c = 3.4445, -4.7750, 2.0315   (quintic coefficients chosen by the
//                                        author to maximise the slope at 0)
//   X = G; if rows > cols: X = Xᵀ       (so X Xᵀ is the smaller Gram matrix)
//   X = X / (‖X‖_F + 1e-7)
//   repeat steps times:  A = X Xᵀ;  B = b·A + c·A·A;  X = a·X + B·X
//   if transposed: X = Xᵀ
//   The result is about U S' Vᵀ with S' ~ U(0.5, 1.5), not exactly U Vᵀ.
//   DIFFERENCE FROM THE REFERENCE: muon.py runs this in bfloat16; we run it
//   in the gradient's dtype (f32, or f64 in tests). Our result is the same
//   iteration without bf16 rounding (8-bit mantissa, relative error ~4e-3 per
//   operation), so it is closer to the exact quintic map than the reference;
//   the fixtures compare with the reference function run in float32/float64.
//
// muon_update(g, M, β, steps, nesterov):
//   M ← β·M + (1−β)·g                    (momentum.lerp_(grad, 1−β))
//   U ← (1−β)·g + β·M if nesterov else M (grad.lerp_(momentum, β); we do not
//                                         overwrite the grad as muon.py does)
//   O ← NS5(U) · sqrt(max(1, rows/cols)) (rows = size(-2) = out_features)
//
// Muon optimizer step for a hidden 2-D weight W:
//   W ← W·(1 − lr·wd);  W ← W − lr·O
//
// Which parameters: only 2-D weights inside the transformer blocks (names
// containing ".layers." (GPT-NeoX: query_key_value, attention.dense,
// dense_h_to_4h, dense_4h_to_h) or ".h." (GPT-2)). Everything else --
// embed_in, embed_out, wte/wpe, biases, norm gains -- is optimised by an
// AdamW (MuonWithAuxAdam), with default_param_groups' no-decay split.
// GPT-2's Conv1D weights are stored [in, out]; the orthogonalisation does
// not care, but the rows/cols scale then uses the stored shape.
// The fused QKV is orthogonalised as one [3C, C] matrix (what muon.py does).
#pragma once
#include <map>
#include <memory>

#include "optim/adamw.h"

namespace gl {

struct MuonOptions {
  double momentum = 0.95;
  bool nesterov = true;
  int ns_steps = 5;
  double weight_decay = 0.0;  // Muon's decoupled decay on the hidden matrices
  // The auxiliary AdamW: its lr is step(lr) * adam_lr_scale. The defaults of
  // MuonWithAuxAdam are Muon lr 0.02 and AdamW lr 3e-4, hence 0.015.
  double adam_lr_scale = 3e-4 / 0.02;
  double adam_weight_decay = 0.0;
  AdamWOptions adam{0.9, 0.95, 1e-10};  // MuonWithAuxAdam: eps 1e-10
};

// Newton-Schulz orthogonalisation of a 2-D tensor (CPU or any device
// matmul_tensor supports); returns a new tensor of G's shape and dtype.
Tensor zeropower_via_newtonschulz5(const Tensor& G, int steps = 5);
// The same for many matrices at once: those of one shape after the
// transposition (rows <= cols), dtype and device are stacked and
// orthogonalised as one batch ([k, rows, cols] products, one norm per
// matrix), so a step over all of a model's hidden matrices runs the
// iteration's products and elementwise ops a few times (Pythia: 3 shapes)
// instead of once per matrix. Equal to the one-by-one results up to the
// summation order of the norm and the batched products' rounding.
std::vector<Tensor> zeropower_via_newtonschulz5(const std::vector<Tensor>& Gs, int steps = 5);
// Updates `momentum` in place (contiguous, like grad) and returns the
// orthogonalised, scaled update O. `grad` is not modified.
Tensor muon_update(const Tensor& grad, Tensor& momentum, double beta = 0.95, int ns_steps = 5,
                   bool nesterov = true);
// muon_update over many matrices, the orthogonalisation batched as above.
// gate: Optimizer::step_gated's flag; a closed one leaves the momenta
// untouched (the returned updates are then meaningless).
std::vector<Tensor> muon_updates(const std::vector<Tensor>& grads, std::vector<Tensor*>& momenta,
                                 double beta = 0.95, int ns_steps = 5, bool nesterov = true,
                                 const Tensor& gate = Tensor());
// True for the parameters Muon itself updates (see the file comment).
bool is_muon_param(const NamedParam& p);

class Muon : public Optimizer {
 public:
  // Splits `params` into the Muon group and the AdamW groups.
  explicit Muon(const std::vector<NamedParam>& params, MuonOptions opts = {});
  void step(double lr) override;
  bool supports_gated_step() const override { return true; }
  void step_gated(double lr, const Tensor& applied) override;
  void settle(bool applied) override;
  // "muon_momentum.<name>" for Muon's params plus the AdamW's state.
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  const AdamW& adam() const { return *adam_; }

 private:
  void update(double lr, const Tensor& gate);
  MuonOptions opts_;
  std::unique_ptr<AdamW> adam_;
  std::vector<std::string> created_;  // momenta the last gated step made (settle)
  std::map<std::string, Tensor> momentum_;  // by parameter name
};

}  // namespace gl
