// Reverse-mode autograd over a per-thread tape (in the spirit of micrograd,
// without the recursive topological sort): entries are appended in
// execution order, which is already a topological order, so backward walks
// them in reverse. An entry runs when its output has received a gradient;
// by then every consumer of that output (all recorded later) has added
// its contribution, so fan-out sums correctly.
//
// Gradient-ready hook (GradReadyGuard, tape.h): entry i's closure is the
// last code that can touch the grad of a leaf whose lowest consuming index
// is i, since entries below i do not take the leaf; so the hook runs after
// walking index i (whether the entry ran or was skipped).
//
// backward() drops only the entries it ran (and those whose output died):
// another graph recorded alongside (a CPU and a CUDA copy of one model, say)
// keeps its entries for its own backward(), as in PyTorch.
#include "autograd/tape.h"

#include <chrono>
#include <memory>
#include <unordered_set>

#include "autograd/ops/elementwise.h"

namespace gl {

namespace {

struct TapeEntry {
  const char* op;
  std::weak_ptr<VarImpl> out;  // weak: a dead output can receive no gradient
  BackwardFn backward;
  // Inputs that are leaves requiring grad (empty for most entries), for the
  // gradient-ready hook; weak: the tape must not keep parameters alive.
  std::vector<std::weak_ptr<VarImpl>> leaves;
};

thread_local std::vector<TapeEntry> tape;
thread_local bool grad_mode = true;
thread_local GradReadyHook grad_ready_hook;

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
GradReadyGuard::GradReadyGuard(GradReadyHook hook) : previous_(std::move(grad_ready_hook)) {
  grad_ready_hook = std::move(hook);
}
GradReadyGuard::~GradReadyGuard() { grad_ready_hook = std::move(previous_); }

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

static Var record_if(bool needed, const char* op, Tensor out, BackwardFn backward,
                     std::vector<std::weak_ptr<VarImpl>> leaves) {
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
    tape.push_back(TapeEntry{op, v.impl(), std::move(backward), std::move(leaves)});
  }
  return v;
}

static void add_leaf(std::vector<std::weak_ptr<VarImpl>>& leaves, const Var& v) {
  if (v.requires_grad() && v.is_leaf()) leaves.emplace_back(v.impl());
}

Var record(const char* op, Tensor out, std::initializer_list<const Var*> inputs,
           BackwardFn backward) {
  const bool needed = needs_grad(inputs);
  std::vector<std::weak_ptr<VarImpl>> leaves;
  if (needed)
    for (const Var* v : inputs)
      if (v) add_leaf(leaves, *v);
  return record_if(needed, op, std::move(out), std::move(backward), std::move(leaves));
}

Var record(const char* op, Tensor out, const std::vector<Var>& inputs, BackwardFn backward) {
  const bool needed = needs_grad(inputs);
  std::vector<std::weak_ptr<VarImpl>> leaves;
  if (needed)
    for (const Var& v : inputs) add_leaf(leaves, v);
  return record_if(needed, op, std::move(out), std::move(backward), std::move(leaves));
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
  GL_CHECK(!impl.grad_final, "internal: a gradient reaches the leaf ", v.describe(),
           " after backward() reported its grad final; the op that sends it does not list it "
           "among its record() inputs");
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
  if (!impl.grad.defined() && !impl.graph_freed && !impl.grad_final && view.is_contiguous() &&
      view.storage() == dout.storage() && view.storage().use_count() == 2 &&
      view.shape() == impl.value.shape() && view.dtype() == impl.value.dtype() &&
      view.device() == impl.value.device()) {
    impl.grad = view;
    return;
  }
  accumulate_grad(v, view);
}

namespace {

// The leaves of the tape's entries, each with the lowest index of an entry
// that takes it, in ascending index order (for the gradient-ready hook).
std::vector<std::pair<size_t, std::shared_ptr<VarImpl>>> leaves_by_first_use() {
  std::vector<std::pair<size_t, std::shared_ptr<VarImpl>>> out;
  std::unordered_set<const VarImpl*> seen;
  for (size_t i = 0; i < tape.size(); ++i)
    for (const auto& w : tape[i].leaves)
      if (std::shared_ptr<VarImpl> leaf = w.lock(); leaf && seen.insert(leaf.get()).second)
        out.emplace_back(i, std::move(leaf));
  return out;
}

// Clears grad_final on the way out of backward(), exceptions included.
struct FinalFlags {
  std::vector<std::pair<size_t, std::shared_ptr<VarImpl>>>& leaves;
  ~FinalFlags() {
    for (auto& [i, leaf] : leaves) leaf->grad_final = false;
  }
};

}  // namespace

void Var::backward() const {
  GL_CHECK(defined() && value().numel() == 1, "backward() needs a one-element Var, got ",
           describe());
  GL_CHECK(requires_grad(), "backward() on ", describe(),
           ", which does not require grad (no input of its graph requires grad)");
  accumulate_grad(*this, Tensor::ones(value().shape(), value().dtype(), value().device()));
  NoGradGuard no_grad;  // backward closures compute with tensors, never record
  // The hook is taken for the whole walk: a hook that installs another
  // guard does not change this backward.
  const GradReadyHook hook = grad_ready_hook;
  std::vector<std::pair<size_t, std::shared_ptr<VarImpl>>> leaves;
  if (hook) leaves = leaves_by_first_use();
  const FinalFlags reset{leaves};
  size_t next_leaf = leaves.size();  // leaves[next_leaf - 1] is the next one to report
  std::vector<char> ran(tape.size(), 0);
  for (size_t i = tape.size(); i-- > 0;) {
    std::shared_ptr<VarImpl> out = tape[i].out.lock();
    if (out && out->grad.defined()) {
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
    for (; next_leaf > 0 && leaves[next_leaf - 1].first == i; --next_leaf) {
      VarImpl& leaf = *leaves[next_leaf - 1].second;
      leaf.grad_final = true;
      hook(leaf);
    }
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
