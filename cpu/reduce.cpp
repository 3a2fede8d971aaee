#include "cpu/reduce.h"

namespace gl::cpu {

template <class T>
void sum_rows(T* out, const T* in, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0.0;
    const T* p = in + r * cols;
    for (int64_t c = 0; c < cols; ++c) acc += double(p[c]);
    out[r] = T(acc);
  }
}

template void sum_rows<float>(float*, const float*, int64_t, int64_t);
template void sum_rows<double>(double*, const double*, int64_t, int64_t);

}  // namespace gl::cpu
