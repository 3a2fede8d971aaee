// SGD's update kernel and wrapper; the maths is in optim/sgd.h. CUDA
// parameters run cuda/optim.cu's sgd_update (same order of operations).
#include "optim/sgd.h"

#include "cuda/optim.h"

namespace gl {

namespace {

template <class T>
void sgd_update_cpu(T* param, T* buf, const T* grad, int64_t n, const SgdHyper& h) {
  const T lr = T(h.lr), wd = T(h.weight_decay), mu = T(h.momentum);
  const bool decays = h.weight_decay != 0.0, has_momentum = h.momentum != 0.0;
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i];
    if (decays) d = d + wd * param[i];
    if (has_momentum) {
      const T b = h.first_step ? d : buf[i] * mu + d;
      buf[i] = b;
      d = h.nesterov ? d + mu * b : b;
    }
    param[i] = param[i] - lr * d;
  }
}

}  // namespace

void sgd_update(Tensor& param, Tensor& momentum_buffer, const Tensor& grad, const SgdHyper& h,
                const Tensor& gate) {
  GL_CHECK(!h.nesterov || h.momentum > 0, "sgd: nesterov needs momentum > 0");
  GL_CHECK(param.is_contiguous(), "sgd: param must be contiguous, got ", param.describe());
  check_operand("sgd", param, grad, "grad");
  if (h.momentum != 0.0) check_operand("sgd", param, momentum_buffer, "momentum_buffer");
  dispatch("sgd", param,
      [&](auto tag) {
        using T = decltype(tag);
        T* buf = h.momentum != 0.0 ? momentum_buffer.data<T>() : nullptr;
        if (!gate_closed_on_host(gate)) sgd_update_cpu<T>(param.data<T>(), buf, grad.data<T>(), param.numel(), h);
      },
      [&](auto tag) {
        using T = decltype(tag);
        T* buf = h.momentum != 0.0 ? momentum_buffer.data<T>() : nullptr;
        cuda::sgd_update<T>(param.data<T>(), buf, grad.data<T>(), h.lr, h.momentum,
                            h.weight_decay, h.nesterov, h.first_step, param.numel(), gate_pointer(gate));
      });
}

Sgd::Sgd(std::vector<ParamGroup> groups, SgdOptions opts) : Optimizer(std::move(groups)), opts_(opts) {
  GL_CHECK(opts_.momentum >= 0, "sgd: momentum must be >= 0, got ", opts_.momentum);
  GL_CHECK(!opts_.nesterov || opts_.momentum > 0, "sgd: nesterov needs momentum > 0");
}

void Sgd::step(double lr) { update(lr, Tensor()); }

void Sgd::step_gated(double lr, const Tensor& applied) {
  GL_CHECK(applied.defined(), "sgd: step_gated needs a gate");
  update(lr, applied);
}

void Sgd::settle(bool applied) {
  // A dropped first step leaves no buffer, as if it had not been taken.
  if (!applied)
    for (const std::string& name : created_) buffers_.erase(name);
  created_.clear();
}

void Sgd::update(double lr, const Tensor& gate) {
  NoGradGuard no_grad;
  created_.clear();
  for (ParamGroup& group : groups_)
    for (NamedParam& p : group.params) {
      if (!p.var.grad().defined()) continue;
      const Tensor g = checked_grad("sgd", p);
      SgdHyper h;
      h.lr = lr * group.lr_scale;
      h.momentum = opts_.momentum;
      h.nesterov = opts_.nesterov;
      h.weight_decay = group.weight_decay;
      Tensor none;
      Tensor* buf = &none;
      if (opts_.momentum != 0.0) {
        Tensor& b = buffers_[p.name];
        h.first_step = !b.defined();
        if (h.first_step) b = Tensor::empty_like(p.var.value());
        if (h.first_step && gate.defined()) created_.push_back(p.name);
        buf = &b;
      }
      sgd_update(p.var.mutable_value(), *buf, g, h, gate);
    }
}

NamedTensors Sgd::state() const {
  NamedTensors out;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      auto it = buffers_.find(p.name);
      if (it != buffers_.end()) out.emplace_back("momentum_buffer." + p.name, it->second.clone());
    }
  return out;
}

void Sgd::load_state(const NamedTensors& state) {
  std::vector<std::string> known;
  std::map<std::string, Tensor> loaded;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      const std::string key = "momentum_buffer." + p.name;
      known.push_back(key);
      if (!find_state(state, key)) continue;
      load_state_tensor("sgd", state, key, p.var.value(), loaded[p.name]);
    }
  check_state_keys("sgd", state, known);
  buffers_ = std::move(loaded);
}

}  // namespace gl
