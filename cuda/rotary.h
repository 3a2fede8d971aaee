// Rotary embedding kernels (CUDA): same contracts as cpu/rotary.h.
#pragma once
#include <cstdint>

#include "cpu/rotary.h"  // RotaryRows

namespace gl::cuda {

template <class T>
void rotary_forward(T* out, const T* x, int64_t BH, int64_t seq_len, int64_t HS,
                    int64_t rotary_dim, double base, int64_t position_offset);
template <class T>
void rotary_backward(T* dx, const T* dout, int64_t BH, int64_t seq_len, int64_t HS,
                     int64_t rotary_dim, double base, int64_t position_offset);
template <class T>
void rotary_strided(T* out, cpu::RotaryRows out_rows, const T* x, cpu::RotaryRows x_rows, int64_t B,
                    int64_t NH, int64_t seq_len, int64_t HS, int64_t rotary_dim, double base,
                    int64_t position_offset, bool inverse, bool accumulate);

}  // namespace gl::cuda
