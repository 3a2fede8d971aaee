// 4-bit packed matrix product (CUDA): the contract, packed layout and decode
// rules of cpu/q4_matmul.h. The decoded weights are bit-identical to the CPU
// ones (explicitly rounded f32 operations); the dot products accumulate in
// T in a different order (a warp-wide tree), so outputs agree with the CPU
// to float rounding.
#pragma once
#include "cpu/q4_matmul.h"

namespace gl::cuda {

// out [M, N] = x [M, K] . decode(codes)^T (+ bias [N] when non-null); all
// pointers are device memory.
template <class T>
void q4_matmul_forward(T* out, const T* x, const int32_t* codes, const float* scales,
                       const float* zeros, const T* bias, int64_t M, const Q4Layout& l);

// w [N, K] f32 = decode(codes).
void q4_dequantize(float* w, const int32_t* codes, const float* scales, const float* zeros,
                   const Q4Layout& l);

}  // namespace gl::cuda
