// Embedding lookup, CPU reference: see cpu/embedding.h.
#include "cpu/embedding.h"

#include <algorithm>
#include <cstring>

namespace gl::cpu {

template <class T, class I>
void embedding_forward(T* out, int64_t* bad_pos, const I* ids, const T* weight, int64_t N,
                       int64_t V, int64_t C) {
  // Validate first (a cheap serial scan) so no row reads out of bounds.
  for (int64_t n = 0; n < N; ++n) {
    if (int64_t(ids[n]) < 0 || int64_t(ids[n]) >= V) {
      *bad_pos = std::min(*bad_pos, n);
      return;
    }
  }
#pragma omp parallel for schedule(static) if (N * C > (1 << 16))
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(out + n * C, weight + int64_t(ids[n]) * C, size_t(C) * sizeof(T));
}

// Columns are split across threads; each thread walks all tokens in order
// for its columns, so every dweight element sums in token order whatever
// the thread count.
template <class T, class I>
void embedding_backward(T* dweight, const T* dout, const I* ids, int64_t N, int64_t V,
                        int64_t C) {
  (void)V;  // ids were checked in forward
  constexpr int64_t kBlock = 64;
  const int64_t nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (N * C > (1 << 16))
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t c0 = b * kBlock, c1 = std::min(C, c0 + kBlock);
    for (int64_t n = 0; n < N; ++n) {
      T* dst = dweight + int64_t(ids[n]) * C;
      const T* src = dout + n * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

#define GL_INSTANTIATE(T, I)                                                                   \
  template void embedding_forward<T, I>(T*, int64_t*, const I*, const T*, int64_t, int64_t,    \
                                        int64_t);                                              \
  template void embedding_backward<T, I>(T*, const T*, const I*, int64_t, int64_t, int64_t);
GL_INSTANTIATE(float, int32_t)
GL_INSTANTIATE(float, int64_t)
GL_INSTANTIATE(double, int32_t)
GL_INSTANTIATE(double, int64_t)
#undef GL_INSTANTIATE

}  // namespace gl::cpu
