// SAM: sharpness-aware minimisation (Foret et al., ICLR 2021, arXiv
// 2010.01412; google-research/sam flax_training.py), spec 3.2, around any
// base Optimizer, as an explicit two-phase API (style.md item 11):
//
//   loss(w).backward()            g = ∇L(w)  (the caller)
//   sam.ascend(rho)               save w; w ← w + ε̂
//   zero grads; loss(w+ε̂).backward()   g_SAM = ∇L(w + ε̂) on the SAME batch
//   sam.descend_and_step(lr)      w ← saved w (bit-exact); base.step(lr) with g_SAM
//
//   plain:     ε̂ = ρ · g / (‖g‖₂ + 1e-12)
//   adaptive:  ε̂ = ρ · w²·g / (‖w·g‖₂ + 1e-12)     (ASAM, Kwon et al. 2021)
//
// ‖·‖₂ is the global L2 norm over every parameter of the base optimizer that
// has a grad. The official code adds no epsilon; we add 1e-12 like the
// widely used PyTorch ports (davda54/sam) so a zero gradient gives ε̂ = 0
// instead of NaN. Gradient clipping, if any, belongs to the second gradient,
// before descend_and_step (the official code clips after pmean of g_SAM).
// With gradient accumulation, ascend after the whole first accumulated grad.
#pragma once
#include <map>

#include "optim/optimizer.h"

namespace gl {

// The pure perturbation: returns ε̂ for one tensor, given the global scale
// s = ρ / (‖g‖ + 1e-12) (plain) or ρ / (‖w·g‖ + 1e-12) (adaptive).
Tensor sam_perturbation(const Tensor& param, const Tensor& grad, double scale, bool adaptive);
// The global norm SAM divides by: ‖g‖ (plain) or ‖w·g‖ (adaptive).
double sam_grad_norm(const std::vector<NamedParam>& params, bool adaptive);

class Sam {
 public:
  // `base` must outlive this object.
  explicit Sam(Optimizer& base, bool adaptive = false);
  // Phase 1: needs the grads of the clean weights; moves the weights. Params
  // without a grad are not moved. Returns the norm it divided by.
  double ascend(double rho);
  // Phase 2: restores the saved weights, then base.step(lr) with the grads
  // now present (those of the perturbed weights).
  void descend_and_step(double lr);
  bool ascended() const { return ascended_; }
  Optimizer& base() { return base_; }

 private:
  Optimizer& base_;
  bool adaptive_;
  bool ascended_ = false;
  std::map<std::string, Tensor> saved_;  // clean weights by parameter name
};

}  // namespace gl
