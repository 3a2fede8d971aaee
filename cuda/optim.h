// Optimizer kernels (CUDA): the elementwise parameter updates of optim/*.cpp
// and the sums of squares behind grad_norm / clip_grad_norm / SAM's norm.
// The maths (and the CPU loops these mirror, operation for operation) are in
// optim/adamw.h, sgd.h, muon.h, sam.h and optimizer.h. All pointers are
// device pointers to contiguous data of n elements; every launch runs on
// current_stream() of the current device. Plain C++: included by .cpp files.
//
// Scalars are passed in double, exactly as the host computes them, and cast
// to T in the launcher -- the same T(double) conversion the CPU loop does, so
// both backends use bit-identical constants.
//
// `gate` (optional, last argument of the update launchers): a device double
// the kernel reads first; 0 leaves everything untouched. It is how a
// sync-free step (optim/step_gate.h) drops a non-finite step without the
// host reading the check first.
#pragma once
#include <cstdint>
#include <vector>

namespace gl::cuda {

// AdamW constants for one step (computed on the host from AdamWHyper, see
// optim/adamw.cpp adamw_constants): decay = 1 - lr*wd, neg_step_size =
// -lr/(1-beta1^t), bc2_sqrt = sqrt(1-beta2^t).
struct AdamWConstants {
  double decay = 1.0, beta1 = 0.0, one_minus_beta1 = 1.0, beta2 = 0.0, one_minus_beta2 = 1.0;
  double neg_step_size = 0.0, bc2_sqrt = 1.0, eps = 0.0;
  bool decays = false;
};

// One fused AdamW step: param, exp_avg, exp_avg_sq updated in place.
template <class T>
void adamw_update(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, const AdamWConstants& c,
                  int64_t n, const double* gate = nullptr);

// One tensor of a multi-tensor AdamW step (device pointers, n elements).
template <class T>
struct AdamWTensor {
  T* param;
  T* exp_avg;
  T* exp_avg_sq;
  const T* grad;
  int64_t n;
  AdamWConstants c;  // beta1, beta2 and eps must agree across the list
};
// adamw_update over every tensor of the list in few launches (cuda/
// multi_tensor.h: up to 32 tensors per launch), with the same arithmetic, so
// the same bits as one adamw_update per tensor.
template <class T>
void adamw_update_multi(const std::vector<AdamWTensor<T>>& tensors, const double* gate = nullptr);

// One SGD step: param (and momentum_buffer when momentum != 0; it may be
// null otherwise) in place. first_step: the buffer is initialised to d.
template <class T>
void sgd_update(T* param, T* momentum_buffer, const T* grad, double lr, double momentum,
                double weight_decay, bool nesterov, bool first_step, int64_t n,
                const double* gate = nullptr);

// Muon's momentum: momentum = lerp(momentum, grad, 1-beta) in place, and
// u = nesterov ? lerp(grad, momentum, beta) : momentum.
template <class T>
void muon_momentum(T* u, T* momentum, const T* grad, double beta, bool nesterov, int64_t n,
                   const double* gate = nullptr);

// Muon's weight step: w = (decays ? w*decay : w) + neg_lr*o.
template <class T>
void muon_apply(T* w, const T* o, double decay, bool decays, double neg_lr, int64_t n,
                const double* gate = nullptr);

// Newton-Schulz's divisors: out[i] = T(sqrt(double(sq[i])) + 1e-7), the
// Frobenius norm from a sum of squares, in the host's double arithmetic
// (so Muon normalises on the device without reading the norms back).
template <class T>
void muon_ns_divisor(T* out, const T* sq, int64_t k);

// SAM's perturbation: out = adaptive ? w*w*g*scale : g*scale.
template <class T>
void sam_perturbation(T* out, const T* w, const T* g, double scale, bool adaptive, int64_t n);

// x *= factor (cast to T, as torch does).
template <class T>
void scale_(T* x, double factor, int64_t n);
// x *= T(*factor) where the device double *factor is < 1 (clipping by a
// coefficient the host has not read; 1 and NaN leave x alone).
template <class T>
void scale_below_one(T* x, const double* factor, int64_t n);

// The number of partial sums sum_squares_partials writes for n elements. It
// depends on n only (not on the device), so the result is reproducible.
int sum_squares_blocks(int64_t n);
// Deterministic first pass of a sum of squares, in double: block b writes
// partials[b] = sum over its fixed grid-stride slice of x_i^2, or of
// (|w_i| * x_i)^2 when w is not null (SAM's adaptive norm). No atomics: the
// caller adds the sum_squares_blocks(n) partials on the host in order.
template <class T>
void sum_squares_partials(double* partials, const T* x, const T* w, int64_t n);

// The sync-free step's checks (optim/step_gate.h), one small kernel:
//   loss  = (sum_m double(losses[m])) / n_losses, +inf when poison_loss
//   norm  = sqrt(sum_k s_k), s_k = tensor k's partials [block_end[k-1],
//           block_end[k]) added in order, the s_k added in order (the
//           host's grad_norm order); NaN when the loss is not finite
//   applied = loss and norm finite;  factor = max_norm / (norm + 1e-6)
//           when applied, max_norm > 0 and that is < 1, else 1
// out = {loss, norm, applied (1/0), factor}. One thread per tensor sums
// its partials, then one thread the tensors: the same additions as the host.
// spike (nullable): the spike detector's window {count, oldest ..., newest}
// of at most spike_len accepted losses; a full window whose mean (added
// oldest first) times spike_factor the loss exceeds closes the gate, and
// an applied step's loss joins the window (the oldest leaving a full one).
template <class T>
void step_check(double* out, const double* partials, const int64_t* block_end, int n_tensors,
                const T* losses, int n_losses, double max_norm, bool poison_loss, double* spike = nullptr,
                int64_t spike_len = 0, double spike_factor = 0);

}  // namespace gl::cuda
