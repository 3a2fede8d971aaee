// Sync-free training steps (train.sync_free): the step's checks decided on
// the device, so the host queues step s + 1 before it knows how step s
// went.
//
// A host-synchronised step reads the loss and the gradient norm, then
// decides: clip, apply, or drop a non-finite step. Each read drains the
// GPU's queue. Here the same decisions are made by a kernel into a gate,
// four doubles on the parameters' device:
//
//   loss     mean of the micro-batches' losses (in order, in double)
//   norm     global gradient L2 norm, grad_norm's additions in its order;
//            NaN when the loss is not finite (the host path does not
//            compute it then either)
//   applied  1 when loss and norm are finite, else 0
//   factor   clip_grad_norm's coefficient max_norm / (norm + 1e-6) when
//            clipping and it is < 1, else 1
//
// clip_by_gate scales the grads by `factor`, and the optimizers' gated
// step (Optimizer::step_gated) reads `applied` in their kernels. The host
// reads the gate one step late (GateReader) for its logs, counters and
// the stop / rollback actions, which therefore act one step late too:
// the queued forward and backward of the next step is discarded. The
// numbers are those of the host path, bit for bit (tests/trainer/
// test_sync_free.cpp runs both).
//
// On the CPU the "device" is the host: the gate is computed by grad_norm
// itself and read at once. Only a CUDA step saves anything.
#pragma once
#include <memory>
#include <vector>

#include "optim/optimizer.h"

namespace gl {

// The loss-spike detector (train.spike_factor) on the device: the last
// `window` accepted losses, oldest first, behind their count: F64
// [1 + window] on the gate's device. check_step judges the step's loss
// against their mean exactly as the trainer's host path does (a full
// window, loss > factor x mean, the mean added oldest first) and appends
// an applied step's loss.
struct SpikeWindow {
  Tensor values;
  int64_t window = 0;
  double factor = 0;
};
// The host's window (the newest `window` entries of `recent`) on `device`.
SpikeWindow make_spike_window(const std::vector<double>& recent, int64_t window, double factor, Device device);
std::vector<double> spike_window_losses(const SpikeWindow& w);  // back on the host, oldest first

struct StepGate {
  Tensor values;  // F64 [4]: loss, norm, applied, factor (see above)
  Tensor applied() const { return values.narrow(0, 2, 1); }
};

// losses: the micro-batches' scalar losses (one dtype, on the grads'
// device). max_norm 0: no clipping. poison_loss: the loss is taken as +inf
// (GRIDLOCK_FAULT=inf_loss). spike: the detector's window, or null; a
// spike closes the gate too.
StepGate check_step(const std::vector<NamedParam>& params, const std::vector<Tensor>& losses,
                    double max_norm, bool poison_loss = false, SpikeWindow* spike = nullptr);

// g *= factor for every grad, where factor < 1 (read on the device).
void clip_by_gate(const std::vector<NamedParam>& params, const StepGate& gate);

// The loss to call backward() on in a sync-free step on several ranks:
// loss x (loss - loss + 1), the factor a constant that is exactly 1 for a
// finite loss (the bits of loss.backward()) and NaN otherwise, so a
// non-finite loss on one rank makes every rank's all-reduced gradient
// non-finite and closes every rank's gate alike (the host path decides
// from the loss averaged over the ranks instead).
Var nan_grads_unless_finite(const Var& loss);

struct StepOutcome {
  double loss = 0, grad_norm = 0;
  bool applied = false;
};

// The gate's values brought to the host without waiting at start().
class GateReader {
 public:
  GateReader();
  ~GateReader();
  void start(const StepGate& gate);
  StepOutcome wait();  // the last start()'s gate

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gl
