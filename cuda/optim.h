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
                  int64_t n);

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
void adamw_update_multi(const std::vector<AdamWTensor<T>>& tensors);

// One SGD step: param (and momentum_buffer when momentum != 0; it may be
// null otherwise) in place. first_step: the buffer is initialised to d.
template <class T>
void sgd_update(T* param, T* momentum_buffer, const T* grad, double lr, double momentum,
                double weight_decay, bool nesterov, bool first_step, int64_t n);

// Muon's momentum: momentum = lerp(momentum, grad, 1-beta) in place, and
// u = nesterov ? lerp(grad, momentum, beta) : momentum.
template <class T>
void muon_momentum(T* u, T* momentum, const T* grad, double beta, bool nesterov, int64_t n);

// Muon's weight step: w = (decays ? w*decay : w) + neg_lr*o.
template <class T>
void muon_apply(T* w, const T* o, double decay, bool decays, double neg_lr, int64_t n);

// SAM's perturbation: out = adaptive ? w*w*g*scale : g*scale.
template <class T>
void sam_perturbation(T* out, const T* w, const T* g, double scale, bool adaptive, int64_t n);

// x *= factor (cast to T, as torch does).
template <class T>
void scale_(T* x, double factor, int64_t n);

// The number of partial sums sum_squares_partials writes for n elements. It
// depends on n only (not on the device), so the result is reproducible.
int sum_squares_blocks(int64_t n);
// Deterministic first pass of a sum of squares, in double: block b writes
// partials[b] = sum over its fixed grid-stride slice of x_i^2, or of
// (|w_i| * x_i)^2 when w is not null (SAM's adaptive norm). No atomics: the
// caller adds the sum_squares_blocks(n) partials on the host in order.
template <class T>
void sum_squares_partials(double* partials, const T* x, const T* w, int64_t n);

}  // namespace gl::cuda
