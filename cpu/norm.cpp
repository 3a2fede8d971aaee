// LayerNorm / RMSNorm CPU kernels: the numerical reference for cuda/norm.cu.
// Contracts and conventions: cpu/norm.h. Rows are independent, so forward
// and dx are parallel over rows; the parameter gradients are column sums
// over rows, computed parallel over column chunks with each chunk summing
// its rows in order, so the result does not depend on the thread count.
// The per-row sums are `omp simd` reductions (double lanes, then combined):
// without the pragma GCC keeps them scalar, since without -ffast-math it
// may not reorder floating-point additions on its own.
#include "cpu/norm.h"

#include <algorithm>
#include <cmath>

namespace gl::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which threads cost more than they save
constexpr int64_t kColumnChunk = 64;       // columns per task in the parameter-gradient sums

// dweight[c] += sum_r dout[r, c] * xhat[r, c] and dbias[c] += sum_r dout[r, c],
// with xhat = (x - mean) * rstd (mean == nullptr: RMSNorm, no centring).
// Shared by both norms: their weight (and bias) gradients have this form.
template <class T>
void norm_param_grads(T* dweight, T* dbias, const T* dout, const T* x, const T* mean,
                      const T* rstd, int64_t rows, int64_t C) {
  if (!dweight && !dbias) return;
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t c0 = 0; c0 < C; c0 += kColumnChunk) {
    const int64_t width = std::min(kColumnChunk, C - c0);
    double dw[kColumnChunk] = {}, db[kColumnChunk] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const double m = mean ? double(mean[r]) : 0.0, rs = double(rstd[r]);
      const T* xr = x + r * C + c0;
      const T* gr = dout + r * C + c0;
      for (int64_t j = 0; j < width; ++j) {
        dw[j] += double(gr[j]) * ((double(xr[j]) - m) * rs);
        db[j] += double(gr[j]);
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      if (dweight) dweight[c0 + j] += T(dw[j]);
      if (dbias) dbias[c0 + j] += T(db[j]);
    }
  }
}

// Row r of the norm's input: x's row, or x + res written into sum's row
// first (the fused residual add).
template <class T>
const T* input_row(T* sum, const T* x, const T* res, int64_t r, int64_t C) {
  const T* xr = x + r * C;
  if (!res) return xr;
  T* s = sum + r * C;
  const T* rr = res + r * C;
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) s[c] = xr[c] + rr[c];
  return s;
}

template <class T>
void layer_norm_rows(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res, const T* weight,
                     const T* bias, int64_t rows, int64_t C, double eps) {
  if (C == 0) return;
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = input_row(sum, x, res, r, C);
    // Two passes (mean, then squared deviations): no catastrophic
    // cancellation as in E[x^2] - E[x]^2.
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int64_t c = 0; c < C; ++c) total += double(xr[c]);
    const double m = total / double(C);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; ++c) {
      const double d = double(xr[c]) - m;
      sq += d * d;
    }
    const double rs = 1.0 / std::sqrt(sq / double(C) + eps);
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) {
      double v = (double(xr[c]) - m) * rs;
      if (weight) v *= double(weight[c]);
      if (bias) v += double(bias[c]);
      o[c] = T(v);
    }
    if (mean) mean[r] = T(m);
    if (rstd) rstd[r] = T(rs);
  }
}

template <class T>
void rms_norm_rows(T* sum, T* out, T* rstd, const T* x, const T* res, const T* weight, int64_t rows,
                   int64_t C, double eps) {
  if (C == 0) return;
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = input_row(sum, x, res, r, C);
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t c = 0; c < C; ++c) sq += double(xr[c]) * double(xr[c]);
    const double rs = 1.0 / std::sqrt(sq / double(C) + eps);
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c)
      o[c] = T(double(xr[c]) * rs * (weight ? double(weight[c]) : 1.0));
    if (rstd) rstd[r] = T(rs);
  }
}

}  // namespace

template <class T>
void layer_norm_forward(T* out, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t C, double eps) {
  layer_norm_rows<T>(nullptr, out, mean, rstd, x, nullptr, weight, bias, rows, C, eps);
}

template <class T>
void add_layer_norm_forward(T* sum, T* out, T* mean, T* rstd, const T* x, const T* res,
                            const T* weight, const T* bias, int64_t rows, int64_t C, double eps) {
  layer_norm_rows<T>(sum, out, mean, rstd, x, res, weight, bias, rows, C, eps);
}

// With xhat = (x - mean) * rstd, y = xhat * w + b and g = dout * w (the
// gradient reaching xhat), the row's dx_j = sum_i g_i dxhat_i/dx_j, where
//   dxhat_i/dx_j = rstd * (delta_ij - 1/C) - xhat_i * xhat_j * rstd / C
// (the last part from drstd/dx_j = -rstd^3 (x_j - mean) / C). Hence
//   dx_j = rstd * (g_j - mean(g) - xhat_j * mean(g * xhat)).
template <class T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                         const T* mean, const T* rstd, int64_t rows, int64_t C) {
  if (C == 0) return;
  if (dx) {
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      const T* gr = dout + r * C;
      const double m = double(mean[r]), rs = double(rstd[r]);
      double g_sum = 0.0, g_xhat_sum = 0.0;
#pragma omp simd reduction(+ : g_sum, g_xhat_sum)
      for (int64_t c = 0; c < C; ++c) {
        const double g = double(gr[c]) * (weight ? double(weight[c]) : 1.0);
        g_sum += g;
        g_xhat_sum += g * ((double(xr[c]) - m) * rs);
      }
      const double g_mean = g_sum / double(C), g_xhat_mean = g_xhat_sum / double(C);
      T* d = dx + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const double g = double(gr[c]) * (weight ? double(weight[c]) : 1.0);
        const double xhat = (double(xr[c]) - m) * rs;
        double v = g;            // term 1: direct path through xhat_j = (x_j - mean) * rstd
        v -= g_mean;             // term 2: through the mean (every xhat_i depends on it)
        v -= xhat * g_xhat_mean; // term 3: through rstd (the variance depends on x_j)
        d[c] = T(v * rs);
      }
    }
  }
  norm_param_grads(dweight, dbias, dout, x, mean, rstd, rows, C);
}

template <class T>
void rms_norm_forward(T* out, T* rstd, const T* x, const T* weight, int64_t rows, int64_t C,
                      double eps) {
  rms_norm_rows<T>(nullptr, out, rstd, x, nullptr, weight, rows, C, eps);
}

template <class T>
void add_rms_norm_forward(T* sum, T* out, T* rstd, const T* x, const T* res, const T* weight,
                          int64_t rows, int64_t C, double eps) {
  rms_norm_rows<T>(sum, out, rstd, x, res, weight, rows, C, eps);
}

// As layer_norm without the mean: xhat = x * rstd, rstd = (mean(x^2) + eps)^-1/2,
// drstd/dx_j = -rstd^3 x_j / C, so with g = dout * w
//   dx_j = rstd * (g_j - xhat_j * mean(g * xhat)).
template <class T>
void rms_norm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight,
                       const T* rstd, int64_t rows, int64_t C) {
  if (C == 0) return;
  if (dx) {
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = x + r * C;
      const T* gr = dout + r * C;
      const double rs = double(rstd[r]);
      double g_xhat_sum = 0.0;
#pragma omp simd reduction(+ : g_xhat_sum)
      for (int64_t c = 0; c < C; ++c)
        g_xhat_sum += double(gr[c]) * (weight ? double(weight[c]) : 1.0) * (double(xr[c]) * rs);
      const double g_xhat_mean = g_xhat_sum / double(C);
      T* d = dx + r * C;
      for (int64_t c = 0; c < C; ++c) {
        const double g = double(gr[c]) * (weight ? double(weight[c]) : 1.0);
        d[c] = T(rs * (g - double(xr[c]) * rs * g_xhat_mean));
      }
    }
  }
  norm_param_grads<T>(dweight, nullptr, dout, x, nullptr, rstd, rows, C);
}

#define GL_INSTANTIATE(T)                                                                    \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,     \
                                      int64_t, double);                                      \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                       const T*, int64_t, int64_t);                          \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);   \
  template void add_layer_norm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*,       \
                                          const T*, int64_t, int64_t, double);                \
  template void add_rms_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t,    \
                                        int64_t, double);                                     \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                     int64_t);
GL_INSTANTIATE(float)
GL_INSTANTIATE(double)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
