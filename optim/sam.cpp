// SAM's perturbation and two-phase wrapper; the maths is in optim/sam.h.
// On CUDA: the perturbation is cuda/optim.cu's kernel, the norm its
// deterministic sum of squares, the save/restore plain clone()/copy_().
#include "optim/sam.h"

#include <cmath>

#include "autograd/ops/elementwise.h"
#include "cuda/optim.h"

namespace gl {

Tensor sam_perturbation(const Tensor& param, const Tensor& grad, double scale, bool adaptive) {
  check_operand("sam", param, grad, "grad");
  Tensor e = Tensor::empty_like(param);
  dispatch("sam", param,
      [&](auto tag) {
        using T = decltype(tag);
        const T* w = param.data<T>();
        const T* g = grad.data<T>();
        T* out = e.data<T>();
        const T s = T(scale);
        const int64_t n = param.numel();
        for (int64_t i = 0; i < n; ++i) out[i] = adaptive ? w[i] * w[i] * g[i] * s : g[i] * s;
      },
      [&](auto tag) {
        using T = decltype(tag);
        cuda::sam_perturbation<T>(e.data<T>(), param.data<T>(), grad.data<T>(), scale, adaptive,
                                  param.numel());
      });
  return e;
}

double sam_grad_norm(const std::vector<NamedParam>& params, bool adaptive) {
  double total = 0.0;
  for (const NamedParam& p : params) {
    if (!p.var.grad().defined()) continue;
    const Tensor g = checked_grad("sam", p);
    const Tensor w = p.var.value().contiguous();
    dispatch("sam", g,
        [&](auto tag) {
          using T = decltype(tag);
          const T* gp = g.data<T>();
          const T* wp = w.data<T>();
          const int64_t n = g.numel();
          for (int64_t i = 0; i < n; ++i) {
            const double x = adaptive ? std::fabs(double(wp[i])) * double(gp[i]) : double(gp[i]);
            total += x * x;
          }
        },
        [&](auto tag) {
          // Deterministic: fixed-grid block partials in double (no atomics),
          // added here in block order (see cuda/optim.h).
          using T = decltype(tag);
          Tensor part = Tensor::empty({int64_t(cuda::sum_squares_blocks(g.numel()))}, DType::F64,
                                      g.device());
          cuda::sum_squares_partials<T>(part.data<double>(), g.data<T>(),
                                        adaptive ? w.data<T>() : nullptr, g.numel());
          for (double s : part.to_vector_as<double>()) total += s;
        });
  }
  return std::sqrt(total);
}

Sam::Sam(Optimizer& base, bool adaptive) : base_(base), adaptive_(adaptive) {}

double Sam::ascend(double rho) {
  GL_CHECK(!ascended_, "sam.ascend: called twice without descend_and_step in between");
  GL_CHECK(rho >= 0, "sam.ascend: rho must be >= 0, got ", rho);
  NoGradGuard no_grad;
  const std::vector<NamedParam> params = base_.params();
  const double norm = sam_grad_norm(params, adaptive_);
  GL_CHECK(std::isfinite(norm), "sam.ascend: the gradient norm is not finite (", norm, ")");
  const double scale = rho / (norm + 1e-12);
  saved_.clear();
  for (const NamedParam& p : params) {
    if (!p.var.grad().defined()) continue;
    const Tensor g = checked_grad("sam", p);
    Var v = p.var;
    Tensor& w = v.mutable_value();
    saved_[p.name] = w.clone();
    add_(w, sam_perturbation(w, g, scale, adaptive_));
  }
  ascended_ = true;
  return norm;
}

void Sam::descend_and_step(double lr) {
  GL_CHECK(ascended_, "sam.descend_and_step: call ascend(rho) first (and recompute the grads)");
  {
    NoGradGuard no_grad;
    for (const NamedParam& p : base_.params()) {
      auto it = saved_.find(p.name);
      if (it == saved_.end()) continue;
      Var v = p.var;
      v.mutable_value().copy_(it->second);
    }
  }
  saved_.clear();
  ascended_ = false;
  base_.step(lr);
}

}  // namespace gl
