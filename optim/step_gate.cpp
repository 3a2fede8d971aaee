// The sync-free step's gate; what it holds and why is in optim/step_gate.h.
#include "optim/step_gate.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>

#include "autograd/ops/elementwise.h"
#include "cuda/optim.h"
#include "cuda/runtime.h"

namespace gl {

namespace {

std::vector<Tensor> defined_grads(const std::vector<NamedParam>& params) {
  std::vector<Tensor> grads;
  for (const NamedParam& p : params)
    if (p.var.defined() && p.var.grad().defined()) grads.push_back(p.var.grad());
  return grads;
}

// The host path's arithmetic (trainer: forward_backward's mean loss, then
// clip_grad_norm or grad_norm), for CPU tensors.
StepGate check_on_host(const std::vector<NamedParam>& params, const std::vector<Tensor>& losses,
                       double max_norm, bool poison_loss, SpikeWindow* spike) {
  double loss = 0;
  for (const Tensor& l : losses) loss += l.item();
  loss /= double(losses.size());
  if (poison_loss) loss = std::numeric_limits<double>::infinity();
  double norm = std::numeric_limits<double>::quiet_NaN(), factor = 1.0;
  bool applied = false;
  if (std::isfinite(loss)) {
    norm = grad_norm(params);
    applied = std::isfinite(norm);
    if (applied && max_norm > 0) factor = std::min(1.0, max_norm / (norm + 1e-6));
  }
  if (applied && spike) {
    // The trainer's host path: the mean of the window, oldest first.
    std::vector<double> recent = spike_window_losses(*spike);
    double mean = 0;
    for (double x : recent) mean += x;
    mean /= double(std::max<size_t>(recent.size(), 1));
    if (int64_t(recent.size()) == spike->window && loss > spike->factor * mean) applied = false;
    if (applied) {
      recent.push_back(loss);
      if (int64_t(recent.size()) > spike->window) recent.erase(recent.begin());
      *spike = make_spike_window(recent, spike->window, spike->factor, Device::cpu());
    }
  }
  return {Tensor::from_vector({loss, norm, applied ? 1.0 : 0.0, factor}, {4}, DType::F64)};
}

}  // namespace

SpikeWindow make_spike_window(const std::vector<double>& recent, int64_t window, double factor, Device device) {
  GL_CHECK(window >= 1 && factor > 0, "spike window: needs window >= 1 and factor > 0, got ", window, " and ",
           factor);
  std::vector<double> v(size_t(window) + 1, 0.0);
  const size_t keep = std::min(recent.size(), size_t(window));
  v[0] = double(keep);
  std::copy(recent.end() - std::ptrdiff_t(keep), recent.end(), v.begin() + 1);
  return {Tensor::from_vector(v, {window + 1}, DType::F64).to(device), window, factor};
}

std::vector<double> spike_window_losses(const SpikeWindow& w) {
  const std::vector<double> v = w.values.to_vector_as<double>();
  return std::vector<double>(v.begin() + 1, v.begin() + 1 + std::ptrdiff_t(v[0]));
}

StepGate check_step(const std::vector<NamedParam>& params, const std::vector<Tensor>& losses,
                    double max_norm, bool poison_loss, SpikeWindow* spike) {
  GL_CHECK(!losses.empty(), "check_step: no loss");
  GL_CHECK(max_norm >= 0, "check_step: max_norm must be >= 0, got ", max_norm);
  const Device device = losses[0].device();
  for (const Tensor& l : losses)
    GL_CHECK(l.numel() == 1 && l.device() == device && l.dtype() == losses[0].dtype(),
             "check_step: the losses must be one-element tensors of one dtype and device, got ", l.describe());
  const std::vector<Tensor> grads = defined_grads(params);
  for (const Tensor& g : grads)
    GL_CHECK(g.device() == device, "check_step: gradient ", g.describe(), " is not on the losses' device ",
             device.name());
  GL_CHECK(!spike || (spike->values.device() == device && spike->values.numel() == spike->window + 1),
           "check_step: the spike window ", spike ? spike->values.describe() : "", " does not fit the losses' device ",
           device.name());
  if (!device.is_cuda()) return check_on_host(params, losses, max_norm, poison_loss, spike);
  StepGate gate{Tensor::empty({4}, DType::F64, device)};
#if GRIDLOCK_CUDA
  cuda::DeviceGuard guard(device.index);
  const SquarePartials sq = square_partials(grads, device);
  // The block ends travel through the pinned staging ring: no wait.
  const Tensor ends = Tensor::from_data<int64_t>(sq.block_end, {int64_t(sq.block_end.size())}).to(device);
  Tensor stacked = Tensor::empty({int64_t(losses.size())}, losses[0].dtype(), device);
  for (size_t m = 0; m < losses.size(); ++m) stacked.narrow(0, int64_t(m), 1).copy_(losses[m].reshape({1}));
  dispatch("check_step", stacked, [&](auto) {},
      [&](auto tag) {
        using T = decltype(tag);
        cuda::step_check<T>(gate.values.data<double>(), sq.partials.data<double>(), ends.data<int64_t>(),
                            int(grads.size()), stacked.data<T>(), int(losses.size()), max_norm, poison_loss,
                            spike ? spike->values.data<double>() : nullptr, spike ? spike->window : 0,
                            spike ? spike->factor : 0.0);
      });
#endif
  return gate;
}

void clip_by_gate(const std::vector<NamedParam>& params, const StepGate& gate) {
  if (!gate.values.is_cuda()) {
    const double factor = gate.values.to_vector_as<double>()[3];
    if (factor < 1.0) scale_grads(params, factor);
    return;
  }
  const double* factor = gate.values.data<double>() + 3;
  for (const NamedParam& p : params) {
    if (!p.var.defined() || !p.var.grad().defined()) continue;
    Tensor g = checked_grad("clip_by_gate", p);
    dispatch("clip_by_gate", g, [&](auto) {},
        [&](auto tag) {
          using T = decltype(tag);
          cuda::scale_below_one<T>(g.data<T>(), factor, g.numel());
        });
    if (!g.shares_storage(p.var.grad())) p.var.impl()->grad.copy_(g);
  }
}

Var nan_grads_unless_finite(const Var& loss) {
  const Tensor one_or_nan = affine(binary(loss.value(), loss.value(), BinaryOp::SUB), 1.0, 1.0);
  return mul(loss, Var(one_or_nan));
}

struct GateReader::Impl {
  cuda::Readback readback{4 * sizeof(double)};
  Tensor host;  // a CPU gate's values (read at once)
  bool on_device = false;
};

GateReader::GateReader() : impl_(std::make_unique<Impl>()) {}
GateReader::~GateReader() = default;

void GateReader::start(const StepGate& gate) {
  GL_CHECK(gate.values.numel() == 4 && gate.values.dtype() == DType::F64, "GateReader: not a gate: ",
           gate.values.describe());
  impl_->on_device = gate.values.is_cuda();
  if (impl_->on_device) impl_->readback.start(gate.values.data_ptr(), gate.values.device().index);
  else impl_->host = gate.values.clone();
}

StepOutcome GateReader::wait() {
  double v[4];
  if (impl_->on_device) std::memcpy(v, impl_->readback.wait(), sizeof v);
  else std::memcpy(v, impl_->host.data<double>(), sizeof v);
  return {v[0], v[1], v[2] != 0.0};
}

}  // namespace gl
