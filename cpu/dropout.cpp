// Inverted dropout CPU kernels (contracts in cpu/dropout.h). The forward
// and backward are the same masked scaling, y = mask * scale * x, applied
// to x and to dout respectively.
#include "cpu/dropout.h"

#include "core/philox.h"

namespace gl::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;  // Philox costs ~10 rounds per element

template <class T>
void dropout_apply(T* out, const T* in, int64_t n, double p, uint64_t seed, uint64_t offset) {
  // The scale is rounded to T once, as on the GPU, so kept values agree bitwise.
  const T scale = T(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = double(philox_uniform(seed, offset, uint64_t(i))) >= p;
    out[i] = keep ? in[i] * scale : T(0);
  }
}

}  // namespace

template <class T>
void dropout_forward(T* out, const T* x, int64_t n, double p, uint64_t seed, uint64_t offset) {
  dropout_apply(out, x, n, p, seed, offset);
}

template <class T>
void dropout_backward(T* dx, const T* dout, int64_t n, double p, uint64_t seed,
                      uint64_t offset) {
  dropout_apply(dx, dout, n, p, seed, offset);
}

template void dropout_forward<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_forward<double>(double*, const double*, int64_t, double, uint64_t,
                                      uint64_t);
template void dropout_backward<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_backward<double>(double*, const double*, int64_t, double, uint64_t,
                                       uint64_t);

}  // namespace gl::cpu
