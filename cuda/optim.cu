// Optimizer kernels (CUDA); contracts in cuda/optim.h, maths in optim/*.h.
//
// Every update kernel is one grid-stride pass that reads and writes each
// element once (AdamW: param, m, v in one kernel per parameter tensor), in
// the CPU loop's order of operations. Arithmetic goes through the explicitly
// rounded intrinsics (__fmul_rn, __fadd_rn, ...) so nvcc cannot contract
// a*b + c into an fma: each step is the IEEE operation the formula names,
// and the result is the unfused sequence torch's single-tensor code runs.
// Division and sqrt are the correctly rounded ones (no fast math).
//
// The sum of squares is deterministic without atomics: a fixed grid (a
// function of n only) where each block reduces its grid-stride slice in
// double and writes one partial; the host adds the partials in order.
#include "cuda/common.cuh"
#include "cuda/multi_tensor.h"
#include "cuda/optim.h"
#include "cuda/reduce_utils.cuh"

namespace gl::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;  // blocks of the sum-of-squares pass

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }

// torch's lerp (and optim/muon.cpp's): w < 0.5 ? a + w(b-a) : b - (b-a)(1-w).
template <class T>
__device__ __forceinline__ T lerp(T a, T b, T w) {
  return w < T(0.5) ? add(a, mul(w, sub(b, a))) : sub(b, mul(sub(b, a), sub(T(1), w)));
}

template <class T>
__device__ __forceinline__ void adamw_element(T* param, T* exp_avg, T* exp_avg_sq, const T* grad,
                                              int64_t i, T decay, T b1, T one_minus_b1, T b2,
                                              T one_minus_b2, T neg_step_size, T bc2_sqrt, T eps,
                                              bool decays) {
  const T g = grad[i];
  T p = param[i];
  if (decays) p = mul(p, decay);
  // m = m*b1 + g*(1-b1);  v = v*b2 + ((1-b2)*g)*g  (Eigen's left-to-right order)
  const T m = add(mul(exp_avg[i], b1), mul(g, one_minus_b1));
  const T v = add(mul(exp_avg_sq[i], b2), mul(mul(one_minus_b2, g), g));
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = add(p, mul(neg_step_size, div(m, add(div(sqrt_rn(v), bc2_sqrt), eps))));
}

// A closed gate (optim/step_gate.h): the whole kernel is a no-op.
__device__ __forceinline__ bool closed(const double* gate) { return gate && *gate == 0.0; }

template <class T>
__global__ void adamw_update_kernel(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, T decay,
                                    T b1, T one_minus_b1, T b2, T one_minus_b2, T neg_step_size,
                                    T bc2_sqrt, T eps, bool decays, int64_t n, const double* gate) {
  if (closed(gate)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adamw_element(param, exp_avg, exp_avg_sq, grad, i, decay, b1, one_minus_b1, b2, one_minus_b2,
                  neg_step_size, bc2_sqrt, eps, decays);
}

// A multi-tensor launch's table (cuda/multi_tensor.h), passed by value as
// the kernel's parameter.
template <class T>
struct AdamWTable {
  T* param[kMaxTensors];
  T* exp_avg[kMaxTensors];
  T* exp_avg_sq[kMaxTensors];
  const T* grad[kMaxTensors];
  int64_t n[kMaxTensors];
  T decay[kMaxTensors], neg_step_size[kMaxTensors], bc2_sqrt[kMaxTensors];
  bool decays[kMaxTensors];
  int block_start[kMaxTensors + 1];
  T b1, one_minus_b1, b2, one_minus_b2, eps;
  const double* gate;
};
static_assert(sizeof(AdamWTable<double>) <= 4096, "AdamW's multi-tensor table must fit 4 KB of kernel parameters");

// Block b updates chunk b - block_start[k] of tensor k, the tensor whose
// blocks contain b (a scan over at most 32 entries).
template <class T>
__global__ void adamw_multi_kernel(const AdamWTable<T> t) {
  if (closed(t.gate)) return;
  int k = 0;
  while (t.block_start[k + 1] <= int(blockIdx.x)) ++k;
  const int64_t begin = int64_t(int(blockIdx.x) - t.block_start[k]) * kChunk;
  const int64_t end = begin + kChunk < t.n[k] ? begin + kChunk : t.n[k];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    adamw_element(t.param[k], t.exp_avg[k], t.exp_avg_sq[k], t.grad[k], i, t.decay[k], t.b1,
                  t.one_minus_b1, t.b2, t.one_minus_b2, t.neg_step_size[k], t.bc2_sqrt[k], t.eps,
                  t.decays[k]);
}

template <class T>
__global__ void sgd_update_kernel(T* param, T* buf, const T* grad, T lr, T mu, T wd, bool decays,
                                  bool has_momentum, bool nesterov, bool first_step, int64_t n,
                                  const double* gate) {
  if (closed(gate)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    T d = grad[i];
    if (decays) d = add(d, mul(wd, param[i]));
    if (has_momentum) {
      const T b = first_step ? d : add(mul(buf[i], mu), d);
      buf[i] = b;
      d = nesterov ? add(d, mul(mu, b)) : b;
    }
    param[i] = sub(param[i], mul(lr, d));
  }
}

template <class T>
__global__ void muon_momentum_kernel(T* u, T* momentum, const T* grad, T w_m, T w_u, bool nesterov,
                                     int64_t n, const double* gate) {
  if (closed(gate)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T g = grad[i];
    const T m = lerp(momentum[i], g, w_m);
    momentum[i] = m;
    u[i] = nesterov ? lerp(g, m, w_u) : m;
  }
}

template <class T>
__global__ void muon_apply_kernel(T* w, const T* o, T decay, bool decays, T neg_lr, int64_t n,
                                  const double* gate) {
  if (closed(gate)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    w[i] = add(decays ? mul(w[i], decay) : w[i], mul(neg_lr, o[i]));
}

template <class T>
__global__ void muon_ns_divisor_kernel(T* out, const T* sq, int64_t k) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < k) out[i] = T(__dadd_rn(__dsqrt_rn(double(sq[i])), 1e-7));
}

template <class T>
__global__ void sam_perturbation_kernel(T* out, const T* w, const T* g, T s, bool adaptive,
                                        int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = adaptive ? mul(mul(mul(w[i], w[i]), g[i]), s) : mul(g[i], s);
}

template <class T>
__global__ void scale_kernel(T* x, T f, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = mul(x[i], f);
}

template <class T>
__global__ void scale_below_one_kernel(T* x, const double* factor, int64_t n) {
  const double f = *factor;
  if (!(f < 1.0)) return;
  const T t = T(f);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = mul(x[i], t);
}

// One block of kThreads: thread j sums tensors j, j + kThreads, ...; then
// thread 0 adds the per-tensor sums in tensor order (step_check in optim.h).
template <class T>
__global__ void step_check_kernel(double* out, const double* partials, const int64_t* block_end,
                                  int n_tensors, const T* losses, int n_losses, double max_norm,
                                  bool poison_loss, double* spike, int64_t spike_len,
                                  double spike_factor) {
  extern __shared__ double per_tensor[];
  for (int k = threadIdx.x; k < n_tensors; k += blockDim.x) {
    double acc = 0.0;
    for (int64_t b = k == 0 ? 0 : block_end[k - 1]; b < block_end[k]; ++b) acc = __dadd_rn(acc, partials[b]);
    per_tensor[k] = acc;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double loss = 0.0;
  for (int m = 0; m < n_losses; ++m) loss = __dadd_rn(loss, double(losses[m]));
  loss = __ddiv_rn(loss, double(n_losses));
  if (poison_loss) loss = __longlong_as_double(0x7ff0000000000000LL);  // +inf
  double norm = __longlong_as_double(0x7ff8000000000000LL), factor = 1.0;  // NaN
  bool applied = false;
  if (isfinite(loss)) {
    double total = 0.0;
    for (int k = 0; k < n_tensors; ++k) total = __dadd_rn(total, per_tensor[k]);
    norm = __dsqrt_rn(total);
    applied = isfinite(norm);
    if (applied && max_norm > 0) {
      const double coef = __ddiv_rn(max_norm, __dadd_rn(norm, 1e-6));
      if (coef < 1.0) factor = coef;
    }
  }
  if (applied && spike) {
    int64_t count = int64_t(spike[0]);
    double mean = 0.0;
    for (int64_t i = 0; i < count; ++i) mean = __dadd_rn(mean, spike[1 + i]);
    mean = __ddiv_rn(mean, double(count > 1 ? count : 1));
    if (count == spike_len && loss > __dmul_rn(spike_factor, mean)) applied = false;
    if (applied) {
      if (count == spike_len) {
        for (int64_t i = 1; i < count; ++i) spike[i] = spike[i + 1];
        --count;
      }
      spike[1 + count] = loss;
      spike[0] = double(count + 1);
    }
  }
  out[0] = loss;
  out[1] = norm;
  out[2] = applied ? 1.0 : 0.0;
  out[3] = factor;
}

// Block b sums x_i^2 (or (|w_i| x_i)^2) over i = b*blockDim + t + k*gridDim*blockDim
// in double; the slice and the tree depend on n and the fixed launch only.
template <class T>
__global__ void sum_squares_kernel(double* partials, const T* x, const T* w, int64_t n) {
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double v = w ? __dmul_rn(fabs(double(w[i])), double(x[i])) : double(x[i]);
    acc = __dadd_rn(acc, __dmul_rn(v, v));
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

}  // namespace

template <class T>
void adamw_update(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, const AdamWConstants& c,
                  int64_t n, const double* gate) {
  if (n == 0) return;
  adamw_update_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      param, exp_avg, exp_avg_sq, grad, T(c.decay), T(c.beta1), T(c.one_minus_beta1), T(c.beta2),
      T(c.one_minus_beta2), T(c.neg_step_size), T(c.bc2_sqrt), T(c.eps), c.decays, n, gate);
  CUDA_CHECK_LAUNCH("adamw_update_kernel");
}

template <class T>
void adamw_update_multi(const std::vector<AdamWTensor<T>>& tensors, const double* gate) {
  std::vector<int64_t> sizes;
  for (const AdamWTensor<T>& x : tensors) sizes.push_back(x.n);
  for (const MultiTensorLaunch& l : plan_multi_tensor(sizes)) {
    AdamWTable<T> t{};
    const AdamWConstants& c0 = tensors[l.first].c;
    t.b1 = T(c0.beta1);
    t.one_minus_b1 = T(c0.one_minus_beta1);
    t.b2 = T(c0.beta2);
    t.one_minus_b2 = T(c0.one_minus_beta2);
    t.eps = T(c0.eps);
    t.gate = gate;
    for (size_t k = 0; k < l.count; ++k) {
      const AdamWTensor<T>& x = tensors[l.first + k];
      GL_CHECK(x.c.beta1 == c0.beta1 && x.c.beta2 == c0.beta2 && x.c.eps == c0.eps,
               "adamw_update_multi: tensors of one list must share beta1, beta2 and eps");
      t.param[k] = x.param;
      t.exp_avg[k] = x.exp_avg;
      t.exp_avg_sq[k] = x.exp_avg_sq;
      t.grad[k] = x.grad;
      t.n[k] = x.n;
      t.decay[k] = T(x.c.decay);
      t.neg_step_size[k] = T(x.c.neg_step_size);
      t.bc2_sqrt[k] = T(x.c.bc2_sqrt);
      t.decays[k] = x.c.decays;
    }
    for (size_t k = 0; k <= l.count; ++k) t.block_start[k] = l.block_start[k];
    adamw_multi_kernel<T><<<unsigned(l.block_start[l.count]), kThreads, 0, current_stream()>>>(t);
    CUDA_CHECK_LAUNCH("adamw_multi_kernel");
  }
}

template <class T>
void sgd_update(T* param, T* momentum_buffer, const T* grad, double lr, double momentum,
                double weight_decay, bool nesterov, bool first_step, int64_t n, const double* gate) {
  if (n == 0) return;
  sgd_update_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      param, momentum_buffer, grad, T(lr), T(momentum), T(weight_decay), weight_decay != 0.0,
      momentum != 0.0, nesterov, first_step, n, gate);
  CUDA_CHECK_LAUNCH("sgd_update_kernel");
}

template <class T>
void muon_momentum(T* u, T* momentum, const T* grad, double beta, bool nesterov, int64_t n,
                   const double* gate) {
  if (n == 0) return;
  muon_momentum_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      u, momentum, grad, T(1.0 - beta), T(beta), nesterov, n, gate);
  CUDA_CHECK_LAUNCH("muon_momentum_kernel");
}

template <class T>
void muon_apply(T* w, const T* o, double decay, bool decays, double neg_lr, int64_t n,
                const double* gate) {
  if (n == 0) return;
  muon_apply_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      w, o, T(decay), decays, T(neg_lr), n, gate);
  CUDA_CHECK_LAUNCH("muon_apply_kernel");
}

template <class T>
void muon_ns_divisor(T* out, const T* sq, int64_t k) {
  if (k == 0) return;
  muon_ns_divisor_kernel<T><<<blocks_for(k, kThreads), kThreads, 0, current_stream()>>>(out, sq, k);
  CUDA_CHECK_LAUNCH("muon_ns_divisor_kernel");
}

template <class T>
void sam_perturbation(T* out, const T* w, const T* g, double scale, bool adaptive, int64_t n) {
  if (n == 0) return;
  sam_perturbation_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(
      out, w, g, T(scale), adaptive, n);
  CUDA_CHECK_LAUNCH("sam_perturbation_kernel");
}

template <class T>
void scale_(T* x, double factor, int64_t n) {
  if (n == 0) return;
  scale_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(x, T(factor), n);
  CUDA_CHECK_LAUNCH("scale_kernel");
}

template <class T>
void scale_below_one(T* x, const double* factor, int64_t n) {
  if (n == 0) return;
  scale_below_one_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, current_stream()>>>(x, factor, n);
  CUDA_CHECK_LAUNCH("scale_below_one_kernel");
}

template <class T>
void step_check(double* out, const double* partials, const int64_t* block_end, int n_tensors,
                const T* losses, int n_losses, double max_norm, bool poison_loss, double* spike,
                int64_t spike_len, double spike_factor) {
  GL_CHECK(n_losses >= 1, "step_check: no loss");
  // The per-tensor sums live in the kernel's dynamic shared memory.
  const size_t shared = size_t(n_tensors) * sizeof(double);
  GL_CHECK(shared <= 48 * 1024, "step_check: ", n_tensors, " gradient tensors, more than 6144");
  step_check_kernel<T><<<1, kThreads, shared, current_stream()>>>(out, partials, block_end, n_tensors,
                                                                  losses, n_losses, max_norm, poison_loss,
                                                                  spike, spike_len, spike_factor);
  CUDA_CHECK_LAUNCH("step_check_kernel");
}

int sum_squares_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 1 ? 1 : (b > kMaxPartials ? kMaxPartials : b));
}

template <class T>
void sum_squares_partials(double* partials, const T* x, const T* w, int64_t n) {
  // n == 0 still launches one block, which writes a 0 partial.
  sum_squares_kernel<T><<<sum_squares_blocks(n), kThreads, 0, current_stream()>>>(partials, x, w,
                                                                                  n);
  CUDA_CHECK_LAUNCH("sum_squares_kernel");
}

#define GL_INSTANTIATE(T)                                                                       \
  template void adamw_update<T>(T*, T*, T*, const T*, const AdamWConstants&, int64_t, const double*); \
  template void adamw_update_multi<T>(const std::vector<AdamWTensor<T>>&, const double*);             \
  template void sgd_update<T>(T*, T*, const T*, double, double, double, bool, bool, int64_t,         \
                              const double*);                                                        \
  template void muon_momentum<T>(T*, T*, const T*, double, bool, int64_t, const double*);            \
  template void muon_apply<T>(T*, const T*, double, bool, double, int64_t, const double*);           \
  template void muon_ns_divisor<T>(T*, const T*, int64_t);                                           \
  template void scale_below_one<T>(T*, const double*, int64_t);                                      \
  template void step_check<T>(double*, const double*, const int64_t*, int, const T*, int, double, bool, \
                              double*, int64_t, double);                                            \
  template void sam_perturbation<T>(T*, const T*, const T*, double, bool, int64_t);             \
  template void scale_<T>(T*, double, int64_t);                                                 \
  template void sum_squares_partials<T>(double*, const T*, const T*, int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cuda
