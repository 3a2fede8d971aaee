// AdamW's update kernel and wrapper; the maths is in optim/adamw.h. CUDA
// parameters run the fused kernel of cuda/optim.cu with the same
// host-computed constants; a step of the optimizer updates all of them in
// few launches (adamw_update_all: up to 32 tensors per launch).
#include "optim/adamw.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "cuda/optim.h"

namespace gl {

namespace {

// The step's scalar constants, in double, for the CUDA kernel: the same
// expressions adamw_update_cpu casts to T, so both backends use equal values.
cuda::AdamWConstants adamw_constants(const AdamWHyper& h) {
  cuda::AdamWConstants c;
  c.decay = 1.0 - h.lr * h.weight_decay;
  c.beta1 = h.beta1;
  c.one_minus_beta1 = 1.0 - h.beta1;
  c.beta2 = h.beta2;
  c.one_minus_beta2 = 1.0 - h.beta2;
  c.neg_step_size = -(h.lr / (1.0 - std::pow(h.beta1, double(h.step))));
  c.bc2_sqrt = std::sqrt(1.0 - std::pow(h.beta2, double(h.step)));
  c.eps = h.eps;
  c.decays = h.weight_decay != 0.0;
  return c;
}

// One AdamW step over n contiguous elements, in torch 1.13's
// _single_tensor_adamw order: decay, moments, then
// param += -step_size * m / (sqrt(v) / bc2_sqrt + eps).
template <class T>
void adamw_update_cpu(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n,
                      const AdamWHyper& h) {
  const T decay = T(1.0 - h.lr * h.weight_decay);
  const T b1 = T(h.beta1), one_minus_b1 = T(1.0 - h.beta1);
  const T b2 = T(h.beta2), one_minus_b2 = T(1.0 - h.beta2);
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const T neg_step_size = T(-(h.lr / bc1));
  const T bc2_sqrt = T(std::sqrt(bc2));
  const T eps = T(h.eps);
  const bool decays = h.weight_decay != 0.0;
  // Eigen array expressions, one chunk at a time: a plain loop does not
  // vectorise, because std::sqrt keeps a branch to libm for errno, while
  // Eigen's sqrt is the IEEE vector instruction (same correctly rounded
  // value; this file is compiled with EIGEN_FAST_MATH=0, see CMakeLists.txt,
  // without which AVX-512 gets an approximation). Each expression keeps the scalar loop's order of operations.
  // Chunks of 4096 keep the four streams in cache across the three passes.
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  constexpr int64_t kChunk = 4096;
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t len = std::min(kChunk, n - c0);
    Eigen::Map<Arr> p(param + c0, len), m(exp_avg + c0, len), v(exp_avg_sq + c0, len);
    const Eigen::Map<const Arr> g(grad + c0, len);
    if (decays) p = p * decay;
    m = m * b1 + g * one_minus_b1;
    v = v * b2 + one_minus_b2 * g * g;
    p = p + neg_step_size * (m / (v.sqrt() / bc2_sqrt + eps));
  }
}

}  // namespace

void adamw_update(Tensor& param, Tensor& exp_avg, Tensor& exp_avg_sq, const Tensor& grad,
                  const AdamWHyper& h) {
  GL_CHECK(h.step >= 1, "adamw: step must be >= 1, got ", h.step);
  GL_CHECK(param.is_contiguous(), "adamw: param must be contiguous, got ", param.describe());
  check_operand("adamw", param, exp_avg, "exp_avg");
  check_operand("adamw", param, exp_avg_sq, "exp_avg_sq");
  check_operand("adamw", param, grad, "grad");
  dispatch("adamw", param,
      [&](auto tag) {
        using T = decltype(tag);
        adamw_update_cpu<T>(param.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(),
                            grad.data<T>(), param.numel(), h);
      },
      [&](auto tag) {
        using T = decltype(tag);
        cuda::adamw_update<T>(param.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(),
                              grad.data<T>(), adamw_constants(h), param.numel());
      });
}

void adamw_update_all(const std::vector<AdamWItem>& items, const Tensor& gate) {
  std::vector<cuda::AdamWTensor<float>> f32;
  std::vector<cuda::AdamWTensor<double>> f64;
  const bool closed = gate_closed_on_host(gate);
  for (const AdamWItem& it : items) {
    Tensor param = it.param, m = it.exp_avg, v = it.exp_avg_sq;
    if (!param.is_cuda()) {
      GL_CHECK(!gate.defined() || !gate.is_cuda(), "adamw: CPU parameter with a CUDA step gate");
      if (!closed) adamw_update(param, m, v, it.grad, it.h);
      continue;
    }
    // adamw_update's checks, then the tensor joins its dtype's list.
    GL_CHECK(it.h.step >= 1, "adamw: step must be >= 1, got ", it.h.step);
    GL_CHECK(param.is_contiguous(), "adamw: param must be contiguous, got ", param.describe());
    check_operand("adamw", param, m, "exp_avg");
    check_operand("adamw", param, v, "exp_avg_sq");
    check_operand("adamw", param, it.grad, "grad");
    dispatch("adamw", param, [&](auto) {},
        [&](auto tag) {
          using T = decltype(tag);
          cuda::AdamWTensor<T> x{param.data<T>(), m.data<T>(), v.data<T>(), it.grad.data<T>(),
                                 param.numel(), adamw_constants(it.h)};
          if constexpr (std::is_same_v<T, float>) f32.push_back(x);
          else f64.push_back(x);
        });
  }
  // Grouped by dtype, each list in the items' order (only CUDA tensors,
  // which a build without CUDA never has: dispatch refused them above).
#if GRIDLOCK_CUDA
  if (!f32.empty()) cuda::adamw_update_multi<float>(f32, gate_pointer(gate));
  if (!f64.empty()) cuda::adamw_update_multi<double>(f64, gate_pointer(gate));
#endif
}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions opts)
    : Optimizer(std::move(groups)), opts_(opts) {
  GL_CHECK(opts_.beta1 >= 0 && opts_.beta1 < 1 && opts_.beta2 >= 0 && opts_.beta2 < 1,
           "adamw: betas must be in [0, 1), got (", opts_.beta1, ", ", opts_.beta2, ")");
  GL_CHECK(opts_.eps >= 0, "adamw: eps must be >= 0, got ", opts_.eps);
}

void AdamW::step(double lr) { update(lr, Tensor()); }

void AdamW::step_gated(double lr, const Tensor& applied) {
  GL_CHECK(applied.defined(), "adamw: step_gated needs a gate");
  update(lr, applied);
}

void AdamW::settle(bool applied) {
  if (!applied)
    for (const auto& [name, created] : gated_) {
      if (created) slots_.erase(name);
      else slots_[name].step -= 1;
    }
  gated_.clear();
}

void AdamW::update(double lr, const Tensor& gate) {
  NoGradGuard no_grad;
  gated_.clear();
  std::vector<AdamWItem> items;
  for (ParamGroup& group : groups_)
    for (NamedParam& p : group.params) {
      if (!p.var.grad().defined()) continue;
      const Tensor g = checked_grad("adamw", p);
      Slot& s = slots_[p.name];
      if (gate.defined()) gated_.emplace_back(p.name, !s.exp_avg.defined());
      if (!s.exp_avg.defined()) {
        s.exp_avg = Tensor::zeros_like(p.var.value());
        s.exp_avg_sq = Tensor::zeros_like(p.var.value());
      }
      s.step += 1;
      AdamWHyper h;
      h.lr = lr * group.lr_scale;
      h.beta1 = opts_.beta1;
      h.beta2 = opts_.beta2;
      h.eps = opts_.eps;
      h.weight_decay = group.weight_decay;
      h.step = s.step;
      items.push_back({p.var.mutable_value(), s.exp_avg, s.exp_avg_sq, g, h});
    }
  adamw_update_all(items, gate);
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      auto it = slots_.find(p.name);
      if (it == slots_.end()) continue;
      out.emplace_back("exp_avg." + p.name, it->second.exp_avg.clone());
      out.emplace_back("exp_avg_sq." + p.name, it->second.exp_avg_sq.clone());
      out.emplace_back("step." + p.name, step_tensor(it->second.step));
    }
  return out;
}

void AdamW::load_state(const NamedTensors& state) {
  std::vector<std::string> known;
  std::map<std::string, Slot> loaded;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      for (const char* k : {"exp_avg.", "exp_avg_sq.", "step."}) known.push_back(k + p.name);
      if (!find_state(state, "step." + p.name)) continue;  // never stepped
      Slot s;
      load_state_tensor("adamw", state, "exp_avg." + p.name, p.var.value(), s.exp_avg);
      load_state_tensor("adamw", state, "exp_avg_sq." + p.name, p.var.value(), s.exp_avg_sq);
      s.step = step_value("adamw", state, "step." + p.name);
      loaded[p.name] = std::move(s);
    }
  check_state_keys("adamw", state, known);
  slots_ = std::move(loaded);
}

}  // namespace gl
