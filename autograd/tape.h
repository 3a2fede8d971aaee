// The tape: what ops use to record themselves. An op computes its output,
// then, if any input needs a gradient, calls record() with a closure that
// receives d(loss)/d(output) and accumulates d(loss)/d(input) into each
// input with accumulate_grad(). The closure captures exactly what backward
// needs (inputs, saved tensors, sizes).
#pragma once
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "autograd/var.h"

namespace gl {

using BackwardFn = std::function<void(const Tensor& dout)>;

// True when grad mode is on and at least one of `inputs` requires grad.
bool needs_grad(std::initializer_list<const Var*> inputs);
bool needs_grad(const std::vector<Var>& inputs);

// Wraps `out` in a Var and, when needs_grad(inputs), marks it as requiring
// grad and appends {op, backward} to the tape.
Var record(const char* op, Tensor out, std::initializer_list<const Var*> inputs,
           BackwardFn backward);
Var record(const char* op, Tensor out, const std::vector<Var>& inputs, BackwardFn backward);

// grad(v) += g (g's shape must equal v's). A no-op when v needs no grad.
void accumulate_grad(const Var& v, const Tensor& g);

// accumulate_grad of `view`, a view of the closure's own `dout` (reshape's
// backward), without the copy accumulate_grad would make of a shared
// buffer: when backward() holds the only other reference to dout's storage
// (dout is not a retained grad and was not handed to anyone else), that
// reference dies as soon as the closure returns, so v may keep the buffer.
// Call it last in the closure: dout's storage then belongs to v's grad.
void accumulate_grad_view(const Var& v, const Tensor& view, const Tensor& dout);

// Gradient-ready notification, for work that can start on a leaf's gradient
// while backward() goes on (dist/grad_reducer.h all-reduces a bucket of
// parameter grads as soon as all of them are final). While a GradReadyGuard
// lives on this thread, backward() calls hook(leaf) exactly once for every
// leaf that requires grad and is an input of an entry on the tape, as soon
// as the leaf's grad is final for this backward: record() keeps weak
// references to its leaf inputs; backward() finds, for each leaf, the
// lowest tape index among the entries that take it, and calls the hook
// right after walking that index (every later consumer ran before it). A
// leaf's grad may still be undefined then (no gradient reached it). A
// contribution to a leaf after its hook (an op whose record() omits an
// input it accumulates into) is an error, never a silent change. Leaves no
// entry takes get no call. Without a guard, backward() does no extra work.
using GradReadyHook = std::function<void(VarImpl& leaf)>;
class GradReadyGuard {
 public:
  explicit GradReadyGuard(GradReadyHook hook);
  ~GradReadyGuard();
  GradReadyGuard(const GradReadyGuard&) = delete;
  GradReadyGuard& operator=(const GradReadyGuard&) = delete;

 private:
  GradReadyHook previous_;
};

size_t tape_size();  // entries currently recorded on this thread
void clear_tape();   // drops the recorded graph without running it

// Per-op wall time on this thread, for profiling (bench/train_bench
// --profile). Forward: the time from the previous recorded op to this op's
// record() (its compute, plus any unrecorded work in between); backward:
// the op's closure. `sync` runs before every clock read so that queued
// device work is charged to the op that queued it (it serialises the GPU:
// the totals are slower than an unprofiled step, the split is what counts).
struct OpTime {
  double seconds = 0;
  int64_t calls = 0;
};
struct OpTimes {
  std::map<std::string, OpTime> forward, backward;
};
void start_op_timing(std::function<void()> sync);
OpTimes stop_op_timing();

}  // namespace gl
