// Muon's Newton-Schulz iteration, update and optimizer; the maths is in
// optim/muon.h. On CUDA the Newton-Schulz iteration runs through the tensor
// ops (matmul_tensor, binary, affine, sum_tensor), batched over the
// matrices of one shape, and the two elementwise loops (momentum, weight
// step) through cuda/optim.cu's kernels.
#include "optim/muon.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "cuda/optim.h"

namespace gl {

namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

std::vector<ParamGroup> muon_groups(const std::vector<NamedParam>& params, const MuonOptions& o) {
  ParamGroup muon;
  muon.weight_decay = o.weight_decay;
  std::vector<NamedParam> rest;
  for (const NamedParam& p : params) (is_muon_param(p) ? muon.params : rest).push_back(p);
  std::vector<ParamGroup> groups;
  if (!muon.params.empty()) groups.push_back(std::move(muon));
  for (ParamGroup& g : default_param_groups(rest, o.adam_weight_decay)) {
    g.lr_scale = o.adam_lr_scale;
    groups.push_back(std::move(g));
  }
  return groups;
}

// momentum ← lerp(momentum, grad, 1−β); returns U (see the header). torch's
// lerp: w < 0.5 ? a + w·(b − a) : b − (b − a)·(1 − w).
template <class T>
T lerp(T a, T b, T w) {
  return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

}  // namespace

bool is_muon_param(const NamedParam& p) {
  return p.var.dim() == 2 && (contains(p.name, ".layers.") || contains(p.name, ".h."));
}

namespace {

// T(sqrt(double(s)) + 1e-7) of each sum of squares s: the norms are
// formed where the sums are, so a CUDA step never waits to read them.
Tensor ns_divisor(const Tensor& sq) {
  Tensor out = Tensor::empty_like(sq);
  dispatch("muon", sq,
      [&](auto tag) {
        using T = decltype(tag);
        const T* s = sq.data<T>();
        T* o = out.data<T>();
        for (int64_t i = 0; i < sq.numel(); ++i) o[i] = T(std::sqrt(double(s[i])) + 1e-7);
      },
      [&](auto tag) {
        using T = decltype(tag);
        cuda::muon_ns_divisor<T>(out.data<T>(), sq.data<T>(), sq.numel());
      });
  return out;
}

// The iteration on X [rows, cols] or a batch [k, rows, cols], rows <= cols,
// each matrix scaled by its own Frobenius norm first.
Tensor newton_schulz(Tensor X, int steps) {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  const Tensor sq = sum_tensor(binary(X, X, BinaryOp::MUL), X.dim() == 2 ? std::vector<int64_t>{}
                                                                          : std::vector<int64_t>{1, 2}, false)
                        .contiguous();
  X = binary(X, ns_divisor(sq).reshape(X.dim() == 2 ? Shape{1} : Shape{X.size(0), 1, 1}), BinaryOp::DIV);
  for (int i = 0; i < steps; ++i) {
    const Tensor A = matmul_tensor(X, X, false, true);
    const Tensor B = binary(affine(A, b, 0.0), matmul_tensor(affine(A, c, 0.0), A), BinaryOp::ADD);
    X = binary(affine(X, a, 0.0), matmul_tensor(B, X), BinaryOp::ADD);
  }
  return X;
}

// update = O * sqrt(max(1, rows / cols)), torch's adjustment for tall matrices.
Tensor scale_update(const Tensor& o, const Tensor& g) {
  const double s = std::sqrt(std::max(1.0, double(g.size(0)) / double(g.size(1))));
  return s == 1.0 ? o : affine(o, s, 0.0);
}

// momentum <- lerp(momentum, grad, 1 - beta); returns U (the header's maths).
Tensor muon_momentum(const Tensor& grad, Tensor& momentum, double beta, bool nesterov, const Tensor& gate) {
  GL_CHECK(grad.dim() == 2, "muon_update: grad must be 2-D, got ", grad.describe());
  GL_CHECK(beta >= 0 && beta < 1, "muon_update: beta must be in [0, 1), got ", beta);
  const Tensor g = grad.contiguous();
  check_operand("muon_update", g, momentum, "momentum");
  Tensor u = Tensor::empty_like(g);
  dispatch("muon_update", g,
      [&](auto tag) {
        using T = decltype(tag);
        const T* gp = g.data<T>();
        T* mp = momentum.data<T>();
        T* up = u.data<T>();
        const T w_m = T(1.0 - beta), w_u = T(beta);
        const int64_t n = gate_closed_on_host(gate) ? 0 : g.numel();
        for (int64_t i = 0; i < n; ++i) {
          mp[i] = lerp(mp[i], gp[i], w_m);
          up[i] = nesterov ? lerp(gp[i], mp[i], w_u) : mp[i];
        }
      },
      [&](auto tag) {
        using T = decltype(tag);
        cuda::muon_momentum<T>(u.data<T>(), momentum.data<T>(), g.data<T>(), beta, nesterov,
                               g.numel(), gate_pointer(gate));
      });
  return u;
}

}  // namespace

Tensor zeropower_via_newtonschulz5(const Tensor& G, int steps) {
  GL_CHECK(G.dim() == 2, "zeropower_via_newtonschulz5: G must be 2-D, got ", G.describe());
  GL_CHECK(steps >= 0, "zeropower_via_newtonschulz5: steps must be >= 0, got ", steps);
  const bool transposed = G.size(0) > G.size(1);
  const Tensor X = newton_schulz(transposed ? G.transpose(0, 1).contiguous() : G.contiguous(), steps);
  return transposed ? X.transpose(0, 1).contiguous() : X;
}

std::vector<Tensor> zeropower_via_newtonschulz5(const std::vector<Tensor>& Gs, int steps) {
  GL_CHECK(steps >= 0, "zeropower_via_newtonschulz5: steps must be >= 0, got ", steps);
  // Batches by (oriented shape, dtype, device), in order of first appearance.
  struct Batch {
    Shape shape;
    DType dtype;
    Device device;
    std::vector<size_t> members;
  };
  std::vector<Batch> batches;
  for (size_t i = 0; i < Gs.size(); ++i) {
    const Tensor& G = Gs[i];
    GL_CHECK(G.dim() == 2, "zeropower_via_newtonschulz5: matrix ", i, " must be 2-D, got ", G.describe());
    const Shape oriented = {std::min(G.size(0), G.size(1)), std::max(G.size(0), G.size(1))};
    auto it = std::find_if(batches.begin(), batches.end(), [&](const Batch& b) {
      return b.shape == oriented && b.dtype == G.dtype() && b.device == G.device();
    });
    if (it == batches.end()) it = batches.insert(batches.end(), Batch{oriented, G.dtype(), G.device(), {}});
    it->members.push_back(i);
  }
  std::vector<Tensor> out(Gs.size());
  for (const Batch& b : batches) {
    if (b.members.size() == 1) {
      out[b.members[0]] = zeropower_via_newtonschulz5(Gs[b.members[0]], steps);
      continue;
    }
    std::vector<Tensor> oriented;
    for (size_t i : b.members) {
      const Tensor& G = Gs[i];
      oriented.push_back((G.size(0) > G.size(1) ? G.transpose(0, 1) : G).reshape({1, b.shape[0], b.shape[1]}));
    }
    const Tensor X = newton_schulz(concat_tensor(oriented, 0), steps);
    for (size_t k = 0; k < b.members.size(); ++k) {
      const Tensor& G = Gs[b.members[k]];
      const Tensor Xk = X.narrow(0, int64_t(k), 1).reshape({b.shape[0], b.shape[1]});
      out[b.members[k]] = G.size(0) > G.size(1) ? Xk.transpose(0, 1).contiguous() : Xk.contiguous();
    }
  }
  return out;
}

Tensor muon_update(const Tensor& grad, Tensor& momentum, double beta, int ns_steps, bool nesterov) {
  const Tensor u = muon_momentum(grad, momentum, beta, nesterov, Tensor());
  return scale_update(zeropower_via_newtonschulz5(u, ns_steps), grad);
}

std::vector<Tensor> muon_updates(const std::vector<Tensor>& grads, std::vector<Tensor*>& momenta,
                                 double beta, int ns_steps, bool nesterov, const Tensor& gate) {
  GL_CHECK(grads.size() == momenta.size(), "muon_updates: ", grads.size(), " grads but ", momenta.size(),
           " momentum buffers");
  std::vector<Tensor> us;
  for (size_t i = 0; i < grads.size(); ++i)
    us.push_back(muon_momentum(grads[i], *momenta[i], beta, nesterov, gate));
  if (gate_closed_on_host(gate)) return us;  // nothing will be applied
  std::vector<Tensor> os = zeropower_via_newtonschulz5(us, ns_steps);
  for (size_t i = 0; i < os.size(); ++i) os[i] = scale_update(os[i], grads[i]);
  return os;
}

Muon::Muon(const std::vector<NamedParam>& params, MuonOptions opts)
    : Optimizer(muon_groups(params, opts)), opts_(opts) {
  GL_CHECK(opts_.momentum >= 0 && opts_.momentum < 1, "muon: momentum must be in [0, 1), got ",
           opts_.momentum);
  std::vector<ParamGroup> adam_groups;
  for (const ParamGroup& g : groups_)
    if (g.params.empty() || !is_muon_param(g.params[0])) adam_groups.push_back(g);
  adam_ = std::make_unique<AdamW>(std::move(adam_groups), opts_.adam);
}

void Muon::step(double lr) { update(lr, Tensor()); }

void Muon::step_gated(double lr, const Tensor& applied) {
  GL_CHECK(applied.defined(), "muon: step_gated needs a gate");
  update(lr, applied);
}

void Muon::settle(bool applied) {
  if (!applied)
    for (const std::string& name : created_) momentum_.erase(name);
  created_.clear();
  adam_->settle(applied);
}

void Muon::update(double lr, const Tensor& gate) {
  NoGradGuard no_grad;
  created_.clear();
  const bool closed = gate_closed_on_host(gate);
  for (ParamGroup& group : groups_) {
    if (group.params.empty() || !is_muon_param(group.params[0])) continue;  // AdamW's
    const double glr = lr * group.lr_scale;
    // The group's matrices orthogonalised together (batched by shape).
    std::vector<NamedParam*> ps;
    std::vector<Tensor> grads;
    std::vector<Tensor*> momenta;
    for (NamedParam& p : group.params) {
      if (!p.var.grad().defined()) continue;
      grads.push_back(checked_grad("muon", p));
      Tensor& m = momentum_[p.name];
      if (!m.defined() && gate.defined()) created_.push_back(p.name);
      if (!m.defined()) m = Tensor::zeros_like(grads.back());
      ps.push_back(&p);
    }
    for (NamedParam* p : ps) momenta.push_back(&momentum_[p->name]);
    const std::vector<Tensor> os =
        muon_updates(grads, momenta, opts_.momentum, opts_.ns_steps, opts_.nesterov, gate);
    for (size_t k = 0; k < ps.size() && !closed; ++k) {
      const Tensor& o = os[k];
      Tensor& w = ps[k]->var.mutable_value();
      const bool decays = group.weight_decay != 0.0;
      dispatch("muon", w,
          [&](auto tag) {
            using T = decltype(tag);
            T* wp = w.data<T>();
            const T* op = o.data<T>();
            const T decay = T(1.0 - glr * group.weight_decay), neg_lr = T(-glr);
            const int64_t n = w.numel();
            for (int64_t i = 0; i < n; ++i)
              wp[i] = (decays ? wp[i] * decay : wp[i]) + neg_lr * op[i];
          },
          [&](auto tag) {
            using T = decltype(tag);
            cuda::muon_apply<T>(w.data<T>(), o.data<T>(), 1.0 - glr * group.weight_decay, decays,
                                -glr, w.numel(), gate_pointer(gate));
          });
    }
  }
  if (gate.defined()) adam_->step_gated(lr, gate);
  else adam_->step(lr);
}

NamedTensors Muon::state() const {
  NamedTensors out;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      auto it = momentum_.find(p.name);
      if (it != momentum_.end()) out.emplace_back("muon_momentum." + p.name, it->second.clone());
    }
  for (auto& kv : adam_->state()) out.push_back(std::move(kv));
  return out;
}

void Muon::load_state(const NamedTensors& state) {
  const std::string prefix = "muon_momentum.";
  NamedTensors adam_state;
  std::vector<std::string> known;
  for (const auto& kv : state)
    if (kv.first.compare(0, prefix.size(), prefix) != 0) adam_state.push_back(kv);
  std::map<std::string, Tensor> loaded;
  for (const ParamGroup& group : groups_)
    for (const NamedParam& p : group.params) {
      if (!is_muon_param(p)) continue;
      known.push_back(prefix + p.name);
      if (find_state(state, prefix + p.name))
        load_state_tensor("muon", state, prefix + p.name, p.var.value(), loaded[p.name]);
    }
  NamedTensors muon_state;
  for (const auto& kv : state)
    if (kv.first.compare(0, prefix.size(), prefix) == 0) muon_state.push_back(kv);
  check_state_keys("muon", muon_state, known);
  adam_->load_state(adam_state);
  momentum_ = std::move(loaded);
}

}  // namespace gl
