// Reverse-mode autograd over a per-thread tape (in the spirit of micrograd,
// without the recursive topological sort): entries are appended in
// execution order, which is already a topological order, so backward walks
// them in reverse. An entry runs when its output has received a gradient;
// by then every consumer of that output (all recorded later) has added
// its contribution, so fan-out sums correctly.
//
// backward() drops only the entries it ran (and those whose output died):
// another graph recorded alongside (a CPU and a CUDA copy of one model, say)
// keeps its entries for its own backward(), as in PyTorch.
#include "autograd/tape.h"

#include <chrono>
#include <memory>

#include "autograd/ops/elementwise.h"

namespace gl {

namespace {

struct TapeEntry {
  const char* op;
  std::weak_ptr<VarImpl> out;  // weak: a dead output can receive no gradient
  BackwardFn backward;
};

thread_local std::vector<TapeEntry> tape;
thread_local bool grad_mode = true;

struct OpTimer {
  std::function<void()> sync;
  OpTimes times;
  double mark = 0;
  double now() {
    if (sync) sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};
thread_local std::unique_ptr<OpTimer> op_timer;

}  // namespace

bool grad_enabled() { return grad_mode; }
NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }

Var::Var(Tensor value, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  GL_CHECK(value.defined(), "Var ", name, ": undefined tensor");
  impl_->value = std::move(value);
  impl_->name = std::move(name);
  set_requires_grad(requires_grad);
}

void Var::set_requires_grad(bool r) {
  GL_CHECK(impl_->is_leaf || r, "set_requires_grad(false) on the non-leaf ", describe(),
           "; use detach()");
  GL_CHECK(!r || is_floating(value().dtype()), "requires_grad on ", describe(),
           ": only floating tensors have gradients");
  impl_->requires_grad = r;
}

std::string Var::describe() const {
  if (!impl_) return "undefined Var";
  return (impl_->name.empty() ? std::string("Var") : impl_->name) + ": " + impl_->value.describe();
}

void Var::zero_grad() { impl_->grad = Tensor(); }

Var Var::detach() const { return Var(impl_->value, false, impl_->name); }

bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!grad_mode) return false;
  for (const Var* v : inputs)
    if (v && v->requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Var>& inputs) {
  if (!grad_mode) return false;
  for (const Var& v : inputs)
    if (v.requires_grad()) return true;
  return false;
}

static Var record_if(bool needed, const char* op, Tensor out, BackwardFn backward) {
  if (op_timer) {
    const double t = op_timer->now();
    OpTime& ot = op_timer->times.forward[op];
    ot.seconds += t - op_timer->mark;
    ot.calls += 1;
    op_timer->mark = t;
  }
  Var v(std::move(out));
  if (needed) {
    v.impl()->requires_grad = true;
    v.impl()->is_leaf = false;
    tape.push_back(TapeEntry{op, v.impl(), std::move(backward)});
  }
  return v;
}

Var record(const char* op, Tensor out, std::initializer_list<const Var*> inputs,
           BackwardFn backward) {
  return record_if(needs_grad(inputs), op, std::move(out), std::move(backward));
}

Var record(const char* op, Tensor out, const std::vector<Var>& inputs, BackwardFn backward) {
  return record_if(needs_grad(inputs), op, std::move(out), std::move(backward));
}

void accumulate_grad(const Var& v, const Tensor& g) {
  if (!v.requires_grad()) return;
  VarImpl& impl = *v.impl();
  GL_CHECK(g.shape() == impl.value.shape() && g.dtype() == impl.value.dtype() &&
               g.device() == impl.value.device(),
           "internal: gradient ", g.describe(), " does not match ", v.describe());
  // Its producer ran in an earlier backward() and is gone: the gradient
  // would stop here silently instead of reaching the leaves.
  GL_CHECK(!impl.graph_freed, "backward() reaches ", v.describe(),
           " through a graph an earlier backward() already ran and freed; build the graph again");
  if (!impl.grad.defined()) {
    // Own the buffer: a view or a tensor shared with another grad would be
    // corrupted by the in-place += of a later contribution.
    impl.grad = g.is_contiguous() && g.storage().use_count() == 1 ? g : g.clone();
  } else {
    add_(impl.grad, g);
  }
}

void accumulate_grad_view(const Var& v, const Tensor& view, const Tensor& dout) {
  if (!v.requires_grad()) return;
  VarImpl& impl = *v.impl();
  // Two owners: backward()'s local dout and the view itself.
  if (!impl.grad.defined() && !impl.graph_freed && view.is_contiguous() &&
      view.storage() == dout.storage() && view.storage().use_count() == 2 &&
      view.shape() == impl.value.shape() && view.dtype() == impl.value.dtype() &&
      view.device() == impl.value.device()) {
    impl.grad = view;
    return;
  }
  accumulate_grad(v, view);
}

void Var::backward() const {
  GL_CHECK(defined() && value().numel() == 1, "backward() needs a one-element Var, got ",
           describe());
  GL_CHECK(requires_grad(), "backward() on ", describe(),
           ", which does not require grad (no input of its graph requires grad)");
  accumulate_grad(*this, Tensor::ones(value().shape(), value().dtype(), value().device()));
  NoGradGuard no_grad;  // backward closures compute with tensors, never record
  std::vector<char> ran(tape.size(), 0);
  for (size_t i = tape.size(); i-- > 0;) {
    std::shared_ptr<VarImpl> out = tape[i].out.lock();
    if (!out || !out->grad.defined()) continue;
    const Tensor dout = out->grad;
    if (!out->retain_grad) out->grad = Tensor();
    out->graph_freed = true;
    if (op_timer) {
      const double t0 = op_timer->now();
      tape[i].backward(dout);
      OpTime& ot = op_timer->times.backward[tape[i].op];
      ot.seconds += op_timer->now() - t0;
      ot.calls += 1;
    } else {
      tape[i].backward(dout);
    }
    ran[i] = 1;
  }
  size_t kept = 0;
  for (size_t i = 0; i < tape.size(); ++i)
    if (!ran[i] && !tape[i].out.expired()) tape[kept++] = std::move(tape[i]);
  tape.erase(tape.begin() + ptrdiff_t(kept), tape.end());
}

size_t tape_size() { return tape.size(); }
void clear_tape() { tape.clear(); }

void start_op_timing(std::function<void()> sync) {
  op_timer = std::make_unique<OpTimer>();
  op_timer->sync = std::move(sync);
  op_timer->mark = op_timer->now();
}

OpTimes stop_op_timing() {
  GL_CHECK(op_timer != nullptr, "stop_op_timing() without start_op_timing()");
  OpTimes t = std::move(op_timer->times);
  op_timer.reset();
  return t;
}

}  // namespace gl
