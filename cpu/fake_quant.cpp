// Fake-quantization CPU kernels (contracts in cpu/fake_quant.h; the
// per-element arithmetic, its rounding modes and the LSQ derivation are in
// cpu/fake_quant_math.h). Every kernel walks rows in parallel and, inside a
// row, groups of columns that share one (scale, zero) pair.
#include "cpu/fake_quant.h"

#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "cpu/fake_quant_math.h"

namespace gl::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 14;

// Scale/zero entry of (row r, group g).
inline int64_t scale_index(const FakeQuantParams& p, int64_t r, int64_t g) {
  return (p.scale_rows == 1 ? 0 : r) * p.groups() + g;
}

// Runs f(std::integral_constant<QuantRounding, mode>) for the runtime mode,
// so that the element loops see a constant mode: the rounding switch and the
// Philox draw of the non-stochastic modes fold away and the loops vectorise
// (a runtime switch per element made QAT's fake quantization about 10x
// slower than its memory traffic).
template <class F>
void with_rounding(QuantRounding mode, F&& f) {
  using R = QuantRounding;
  switch (mode) {
    case R::NEAREST_EVEN: return f(std::integral_constant<R, R::NEAREST_EVEN>{});
    case R::NEAREST_AWAY: return f(std::integral_constant<R, R::NEAREST_AWAY>{});
    case R::HALF_UP: return f(std::integral_constant<R, R::HALF_UP>{});
    case R::STOCHASTIC: return f(std::integral_constant<R, R::STOCHASTIC>{});
  }
}

// The forward's loop; after each group, done(i, n) sees its n outputs from
// element i (the low-precision shadow is rounded there, in cache).
template <class T, class GroupDone>
void forward_groups(T* out, const T* x, const T* scale, const T* zero, const FakeQuantParams& p,
                    GroupDone done) {
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  const int64_t G = p.groups(), gs = p.group_size;
  with_rounding(p.rounding, [&](auto mode) {
    constexpr QuantRounding M = decltype(mode)::value;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > kParallelMin)
    for (int64_t r = 0; r < p.rows; ++r) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k = scale_index(p, r, g);
        const T s = scale[k], z = zero ? zero[k] : T(0);
        const int64_t base = r * p.cols + g * gs;
        for (int64_t j = 0; j < gs; ++j) {
          const int64_t i = base + j;
          const T rq = fq::round_by(M, x[i] / s, fq::stochastic_u(M, p.seed, p.offset, i));
          out[i] = (fq::clamp_level(rq + z, qmin, qmax) - z) * s;
        }
        done(base, gs);
      }
    }
  });
}

}  // namespace

template <class T>
void fake_quant_forward(T* out, const T* x, const T* scale, const T* zero,
                        const FakeQuantParams& p) {
  forward_groups(out, x, scale, zero, p, [](int64_t, int64_t) {});
}

void fake_quant_forward_lowp(float* out, uint16_t* out_half, const float* x, const float* scale,
                             const float* zero, const FakeQuantParams& p, bool f16) {
  if (f16) {
    forward_groups(out, x, scale, zero, p, [&](int64_t i, int64_t n) {
      for (int64_t j = i; j < i + n; ++j) out_half[j] = f32_to_f16(out[j]);
    });
  } else {
    forward_groups(out, x, scale, zero, p, [&](int64_t i, int64_t n) {
      for (int64_t j = i; j < i + n; ++j) out_half[j] = f32_to_bf16(out[j]);
    });
  }
}

template <class T>
void fake_quant_backward_x(T* dx, const T* dout, const T* x, const T* scale, const T* zero,
                           const FakeQuantParams& p) {
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  const int64_t G = p.groups(), gs = p.group_size;
  with_rounding(p.rounding, [&](auto mode) {
    constexpr QuantRounding M = decltype(mode)::value;
#pragma omp parallel for schedule(static) if (p.rows * p.cols > kParallelMin)
    for (int64_t r = 0; r < p.rows; ++r) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t k = scale_index(p, r, g);
        const T s = scale[k], z = zero ? zero[k] : T(0);
        const int64_t base = r * p.cols + g * gs;
        for (int64_t j = 0; j < gs; ++j) {
          const int64_t i = base + j;
          // Regenerates the forward's level (same draw for STOCHASTIC).
          const T rq = fq::round_by(M, x[i] / s, fq::stochastic_u(M, p.seed, p.offset, i));
          dx[i] = fq::level_inside(rq + z, qmin, qmax) ? dout[i] : T(0);
        }
      }
    }
  });
}

template <class T>
void fake_quant_backward_scale(T* dscale, const T* dout, const T* x, const T* scale,
                               const T* zero, const FakeQuantParams& p, double grad_scale) {
  const T qmin = T(p.qmin), qmax = T(p.qmax);
  const int64_t G = p.groups(), gs = p.group_size;
  // partial[r, g]: the row's share of entry (r, g)'s sum; rows are
  // independent, so this parallel pass is deterministic.
  std::vector<double> partial(size_t(p.rows * G));
#pragma omp parallel for schedule(static) if (p.rows * p.cols > kParallelMin)
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t k = scale_index(p, r, g);
      const T s = scale[k], z = zero ? zero[k] : T(0);
      const int64_t base = r * p.cols + g * gs;
      double acc = 0;
      for (int64_t j = 0; j < gs; ++j) {
        const int64_t i = base + j;
        const T v = x[i] / s;
        const T rq = fq::round_by(p.rounding, v, fq::stochastic_u(p.rounding, p.seed,
                                                                  p.offset, i));
        acc += double(dout[i]) * double(fq::lsq_dxhat_dscale(v, rq, z, qmin, qmax));
      }
      partial[size_t(r * G + g)] = acc;
    }
  }
  if (p.scale_rows != 1) {
    for (int64_t k = 0; k < p.rows * G; ++k) dscale[k] = T(partial[size_t(k)] * grad_scale);
    return;
  }
  // A scale shared by all rows: sum its partials over rows in row order.
#pragma omp parallel for schedule(static) if (p.rows * G > kParallelMin)
  for (int64_t g = 0; g < G; ++g) {
    double acc = 0;
    for (int64_t r = 0; r < p.rows; ++r) acc += partial[size_t(r * G + g)];
    dscale[g] = T(acc * grad_scale);
  }
}

template <class T>
void per_token_params(T* scale, T* zero, const T* x, int64_t rows, int64_t cols, bool symmetric,
                      double qmin, double qmax) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    // Start at 0: the symmetric rule only needs |x| and the asymmetric one
    // widens the range to contain 0 anyway. NaN fails both tests: skipped.
    T lo = T(0), hi = T(0);
    for (int64_t c = 0; c < cols; ++c) {
      lo = row[c] < lo ? row[c] : lo;
      hi = row[c] > hi ? row[c] : hi;
    }
    T z = T(0);
    fq::per_token_params(&scale[r], &z, lo, hi, symmetric, T(qmin), T(qmax));
    if (!symmetric) zero[r] = z;
  }
}

#define GL_INSTANTIATE(T)                                                                   \
  template void fake_quant_forward<T>(T*, const T*, const T*, const T*,                     \
                                      const FakeQuantParams&);                              \
  template void fake_quant_backward_x<T>(T*, const T*, const T*, const T*, const T*,        \
                                         const FakeQuantParams&);                           \
  template void fake_quant_backward_scale<T>(T*, const T*, const T*, const T*, const T*,    \
                                             const FakeQuantParams&, double);               \
  template void per_token_params<T>(T*, T*, const T*, int64_t, int64_t, bool, double, double);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
