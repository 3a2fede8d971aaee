// Var: a tensor that autograd tracks. Reverse mode over a tape: every op
// that runs with grad enabled and has an input requiring grad appends one
// entry (its backward closure) to the thread's tape; backward() walks the
// tape in reverse. See autograd/tape.cpp for the whole algorithm.
//
// Gradient rules (PyTorch's): grads of leaves (Vars you create with
// requires_grad) accumulate across backward() calls until zero_grad();
// grads of intermediate Vars are freed once consumed, unless retain_grad().
// backward() consumes the tape: the graph cannot be walked twice.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace gl {

struct VarImpl {
  Tensor value;
  Tensor grad;  // undefined until a gradient arrives
  bool requires_grad = false;
  bool is_leaf = true;  // not produced by a recorded op
  bool retain_grad = false;
  bool graph_freed = false;  // its backward already ran and was dropped from the tape
  bool grad_final = false;   // a leaf whose GradReadyGuard hook ran in the current backward()
  std::string name;  // for messages and debugging dumps ("grad of <name>")
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false, std::string name = "");

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const { return impl_->value; }
  Tensor& mutable_value() { return impl_->value; }  // for optimizers: in-place updates
  const Tensor& grad() const { return impl_->grad; }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  bool is_leaf() const { return impl_->is_leaf; }
  const std::string& name() const { return impl_->name; }
  void set_name(std::string n) { impl_->name = std::move(n); }
  void set_requires_grad(bool r);
  void retain_grad() { impl_->retain_grad = true; }

  const Shape& shape() const { return impl_->value.shape(); }
  int64_t dim() const { return impl_->value.dim(); }
  int64_t size(int64_t d) const { return impl_->value.size(d); }
  int64_t numel() const { return impl_->value.numel(); }
  DType dtype() const { return impl_->value.dtype(); }
  Device device() const { return impl_->value.device(); }
  std::string describe() const;  // "name: f32[2, 3] cpu"

  // Backpropagates from this one-element Var (seed 1) through the tape.
  void backward() const;
  void zero_grad();  // drops the gradient (next backward starts from zero)
  Var detach() const;  // same value, no history, no grad

  const std::shared_ptr<VarImpl>& impl() const { return impl_; }

 private:
  std::shared_ptr<VarImpl> impl_;
};

// Disables recording for its scope (evaluation, optimizer updates).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
bool grad_enabled();

}  // namespace gl
