// SGD with momentum, exactly as torch.optim.SGD (1.13) with dampening 0:
//
//   d ← g + λ·θ                  coupled weight decay (L2 added to the grad)
//   b ← d                        on the first step (buffer initialised to d)
//   b ← μ·b + d                  afterwards
//   d ← d + μ·b  if nesterov, else  d ← b
//   θ ← θ − γ·d
//
// With μ = 0 there is no buffer and θ ← θ − γ·(g + λθ). Nesterov needs μ > 0
// (torch's rule). Weight decay comes from the parameter group.
// State per parameter: momentum_buffer (only when μ > 0).
#pragma once
#include <map>

#include "optim/optimizer.h"

namespace gl {

struct SgdOptions {
  double momentum = 0.0;
  bool nesterov = false;
};

struct SgdHyper {
  double lr = 0.0;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  bool first_step = false;  // momentum_buffer holds garbage: initialise it to d
};

// The pure update: param and momentum_buffer in place (momentum_buffer is
// ignored, and may be undefined, when momentum is 0). f32/f64, CPU or CUDA.
// gate: Optimizer::step_gated's flag (undefined: always update).
void sgd_update(Tensor& param, Tensor& momentum_buffer, const Tensor& grad, const SgdHyper& h,
                const Tensor& gate = Tensor());

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<ParamGroup> groups, SgdOptions opts = {});
  void step(double lr) override;
  bool supports_gated_step() const override { return true; }
  void step_gated(double lr, const Tensor& applied) override;
  void settle(bool applied) override;
  NamedTensors state() const override;  // "momentum_buffer.<name>"
  void load_state(const NamedTensors& state) override;

 private:
  void update(double lr, const Tensor& gate);
  SgdOptions opts_;
  std::map<std::string, Tensor> buffers_;  // by parameter name
  std::vector<std::string> created_;        // buffers the last gated step made (settle)
};

}  // namespace gl
