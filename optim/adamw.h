// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, arXiv
// 1711.05101), exactly as torch.optim.AdamW (1.13, amsgrad off), spec 3.1.
// For t = 1, 2, ... and each parameter θ with gradient g:
//
//   θ ← θ · (1 − γ·λ)                        decoupled decay (λ = 0: no-decay group)
//   m ← β1·m + (1−β1)·g
//   v ← β2·v + (1−β2)·g²
//   θ ← θ − (γ / (1−β1^t)) · m / (sqrt(v) / sqrt(1−β2^t) + ε)
//
// i.e. ε is added to sqrt(v̂), not inside the square root (torch's placement;
// the fixtures in tests/reference/fixtures/optim check it). The scalar
// factors (1−γλ, γ/(1−β1^t), sqrt(1−β2^t)) are computed in double and the
// elementwise work in the parameter's dtype, in torch's order of operations.
//
// Defaults are Pythia's (spec 2.2): betas (0.9, 0.95), ε 1e-8; weight decay
// 0.1 on the decay group of default_param_groups (norms and biases get 0).
// torch's own defaults differ: betas (0.9, 0.999), λ 1e-2.
// State per parameter: exp_avg (m), exp_avg_sq (v), step (t; advances only
// when the parameter has a grad, as torch's per-parameter step does).
#pragma once
#include <map>

#include "optim/optimizer.h"

namespace gl {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
};

struct AdamWHyper {
  double lr = 0.0;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // t, already incremented for this update (>= 1)
};

// The pure update: param, exp_avg, exp_avg_sq in place (contiguous, same
// shape/dtype/device as grad). f32/f64, CPU or CUDA (one fused kernel).
void adamw_update(Tensor& param, Tensor& exp_avg, Tensor& exp_avg_sq, const Tensor& grad,
                  const AdamWHyper& h);

// adamw_update over many tensors (handles: the updates write through them).
// CUDA tensors go in few launches per dtype (cuda::adamw_update_multi, up to
// 32 tensors each) instead of one per tensor; CPU tensors take
// adamw_update. The same bits as adamw_update one by one.
struct AdamWItem {
  Tensor param, exp_avg, exp_avg_sq, grad;
  AdamWHyper h;
};
// gate: Optimizer::step_gated's flag (undefined: always update).
void adamw_update_all(const std::vector<AdamWItem>& items, const Tensor& gate = Tensor());

class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions opts = {});
  void step(double lr) override;
  bool supports_gated_step() const override { return true; }
  void step_gated(double lr, const Tensor& applied) override;
  void settle(bool applied) override;
  // "exp_avg.<name>", "exp_avg_sq.<name>", "step.<name>" (i64 [1]) for every
  // param that has taken a step.
  NamedTensors state() const override;
  void load_state(const NamedTensors& state) override;
  const AdamWOptions& options() const { return opts_; }

 private:
  struct Slot {
    Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  void update(double lr, const Tensor& gate);
  AdamWOptions opts_;
  std::map<std::string, Slot> slots_;  // by parameter name
  // The last gated step's slots, and whether it created them (settle).
  std::vector<std::pair<std::string, bool>> gated_;
};

}  // namespace gl
