// Softmax CPU kernels (contracts in cpu/softmax.h): rows are independent and
// run in parallel; each row is three simple passes (max, sum, write).
#include "cpu/softmax.h"

#include <cmath>

namespace gl::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

template <class T>
void softmax_forward(T* out, const T* x, int64_t rows, int64_t C) {
  if (C == 0) return;
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T mx = xr[0];
    for (int64_t c = 1; c < C; ++c) mx = xr[c] > mx ? xr[c] : mx;
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(double(xr[c]) - double(mx));
    const double inv = 1.0 / sum;
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = T(std::exp(double(xr[c]) - double(mx)) * inv);
  }
}

// dy_i/dx_j = y_i (delta_ij - y_j), so
//   dx_j = sum_i dout_i y_i (delta_ij - y_j) = y_j (dout_j - sum_i dout_i y_i).
template <class T>
void softmax_backward(T* dx, const T* dout, const T* out, int64_t rows, int64_t C) {
#pragma omp parallel for schedule(static) if (rows * C > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = dout + r * C;
    const T* yr = out + r * C;
    double dot = 0.0;
    for (int64_t c = 0; c < C; ++c) dot += double(gr[c]) * double(yr[c]);
    T* d = dx + r * C;
    for (int64_t c = 0; c < C; ++c) d[c] = T(double(yr[c]) * (double(gr[c]) - dot));
  }
}

template void softmax_forward<float>(float*, const float*, int64_t, int64_t);
template void softmax_forward<double>(double*, const double*, int64_t, int64_t);
template void softmax_backward<float>(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward<double>(double*, const double*, const double*, int64_t, int64_t);

}  // namespace gl::cpu
