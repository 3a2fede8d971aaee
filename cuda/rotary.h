// Rotary embedding kernels (CUDA): same contracts as cpu/rotary.h.
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void rotary_forward(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                    int64_t rotary_dim, double base, int64_t position_offset);
template <class T>
void rotary_backward(T* dx, const T* dout, int64_t BH, int64_t seq_len, int64_t HS,
                     int64_t rotary_dim, double base, int64_t position_offset);

}  // namespace gl::cuda
