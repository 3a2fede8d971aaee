// The optimizer interface, parameter groups and global-norm gradient clipping.
//
// Layout (style.md item 11): every optimizer is a pure update function on
// Tensors (optim/<name>.h: adamw_update, sgd_update, muon_update, ...) plus a
// thin stateful wrapper deriving from Optimizer that owns the per-parameter
// state and calls the pure function once per parameter.
//
//   step(lr)      for every group g and every param p of g that has a grad:
//                 update p in place with lr_eff = lr * g.lr_scale and
//                 weight decay g.weight_decay. Params without a grad are
//                 skipped (their state does not advance, as in torch).
//   state()       named state tensors ("exp_avg.<param name>", "step.<name>")
//                 so a trainer can checkpoint them (safetensors); load_state
//                 takes exactly such a list back (every key must be known,
//                 every state tensor of the optimizer must be present).
//
// Parameter groups follow GPT-NeoX (spec 2.2, megatron/model/utils.py
// get_params_for_weight_decay_optimization): "Layernorms and biases will have
// no weight decay but the rest will"; embeddings and embed_out are decayed.
// In our parameter tables the biases, LayerNorm/RMSNorm weights and the
// single-scale norm's ".scale" are exactly the tensors of dim <= 1, and we
// also match them by name so a 2-D bias-like tensor is never decayed.
//
// clip_grad_norm is torch.nn.utils.clip_grad_norm_ (norm_type 2):
//   total = || (||g_1||, ..., ||g_n||) ||_2,  coef = max_norm / (total + 1e-6),
//   if coef < 1: g_i *= coef.  Returns total (possibly inf/nan: the caller
//   decides what a non-finite gradient means; grads are then left untouched).
// Sums of squares accumulate in double for f32 and f64.
//
// Updates run on the parameter's device over contiguous data: CPU loops, or
// the kernels of cuda/optim.cu (fused, the CPU loop's order of operations;
// AdamW's step covers all its tensors in multi-tensor launches of up to 32
// tensors, cuda/multi_tensor.h; Muon orthogonalises its matrices batched
// by shape; SGD and Muon's elementwise steps launch once per tensor). On CUDA the sums of squares are
// deterministic too: fixed-grid block partials in double, added on the host
// in order (no atomics).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/dispatch.h"
#include "models/model.h"

namespace gl {

struct ParamGroup {
  std::vector<NamedParam> params;
  double lr_scale = 1.0;      // effective lr = step(lr) * lr_scale
  double weight_decay = 0.0;  // decoupled (AdamW, Muon) or coupled (SGD), per optimizer
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// True for biases, norm gains/biases and the ssnorm scale: tensors of dim <= 1,
// or names ending in ".bias", ".scale", or holding "norm"/"ln_" and ending in ".weight".
bool is_no_decay_param(const NamedParam& p);
// Two groups: {decayed params, weight_decay}, {no-decay params, 0}. Empty
// groups are dropped; the order of params inside a group is the input order.
std::vector<ParamGroup> default_param_groups(const std::vector<NamedParam>& params,
                                             double weight_decay);

// Global L2 norm of all defined grads (params without grad are skipped).
double grad_norm(const std::vector<NamedParam>& params);
// torch.nn.utils.clip_grad_norm_; see the file comment. Returns the total norm.
double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm);
// g *= factor for every defined grad (e.g. 1/micro_batches for accumulation).
void scale_grads(const std::vector<NamedParam>& params, double factor);

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step(double lr) = 0;
  // Sync-free steps (optim/step_gate.h): step(lr) queued behind a device
  // flag `applied` (a one-element F64 tensor on the params' device; 0:
  // nothing changes), so the host need not read the flag first. Host-side
  // state (step counts, state tensors created by this step) moves as if
  // the step happened; settle(flag), called before the next step, takes it
  // back when it did not. Optimizers without gating refuse.
  virtual bool supports_gated_step() const { return false; }
  virtual void step_gated(double lr, const Tensor& applied);
  virtual void settle(bool applied) { (void)applied; }
  virtual NamedTensors state() const = 0;
  virtual void load_state(const NamedTensors& state) = 0;
  void zero_grad();  // drops every param's grad

  const std::vector<ParamGroup>& groups() const { return groups_; }
  std::vector<NamedParam> params() const;  // all groups, in order

 protected:
  std::vector<ParamGroup> groups_;
};

// --- helpers for the optimizer implementations (optim/*.cpp) -------------

// Runs cpu_fn(T{}) for like's dtype (f32/f64); CUDA tensors are refused with
// "<op> on CUDA: not yet implemented (issue CUDA performance)". For CPU-only
// helpers: the optimizers themselves call dispatch() with a CUDA path.
template <class CpuFn>
void optim_dispatch(const char* op, const Tensor& like, CpuFn&& cpu_fn) {
  GL_CHECK(!like.is_cuda(), op, " on CUDA: not yet implemented (issue CUDA performance); got ",
           like.describe());
  dispatch(op, like, cpu_fn, [&](auto) {});
}
// A gated step's flag (Optimizer::step_gated): on the CPU read here, true
// when the update must be dropped; gate_pointer is the device address the
// CUDA kernels read (nullptr for an undefined gate: always update).
bool gate_closed_on_host(const Tensor& gate);
const double* gate_pointer(const Tensor& gate);
// Checks that `t` can be updated in place together with `param`: defined,
// same shape, dtype and device, contiguous.
void check_operand(const char* op, const Tensor& param, const Tensor& t, const char* name);
// A param's grad, contiguous, checked against its value.
Tensor checked_grad(const char* op, const NamedParam& p);
// Looks up key in state, checks its shape against `like` and copies it into
// `dst` (allocated like `like` when undefined). Throws naming the key.
void load_state_tensor(const char* op, const NamedTensors& state, const std::string& key,
                       const Tensor& like, Tensor& dst);
// The state entry `key`, or nullptr.
const Tensor* find_state(const NamedTensors& state, const std::string& key);
// Throws if any key of `state` is not in `known`.
void check_state_keys(const char* op, const NamedTensors& state,
                      const std::vector<std::string>& known);
// The first pass of the sums of squares of CUDA tensors `ts`, all on
// `device`: cuda::sum_squares_partials of tensor k fill partials
// [block_end[k-1], block_end[k]) of one F64 buffer. grad_norm adds them
// on the host, check_step (optim/step_gate.h) on the device; `alive` keeps
// contiguous copies allocated until the kernels have run.
struct SquarePartials {
  Tensor partials;
  std::vector<int64_t> block_end;
  std::vector<Tensor> alive;
};
SquarePartials square_partials(const std::vector<Tensor>& ts, Device device);

// A one-element I64 tensor holding a step count, and back.
Tensor step_tensor(int64_t step);
int64_t step_value(const char* op, const NamedTensors& state, const std::string& key);

}  // namespace gl
