// Causal attention kernels (CUDA): same contracts as cpu/attention.h
// (q [BH, Tq, HS], k and v [BH, Tk, HS], Tk >= Tq, queries aligned to the
// end of the keys).
// f32 with HS <= 128 runs the tiled kernels of cuda/flash_attention.cu
// (cuda/flash_attention_tc.cu's TF32 tensor-core ones when TF32 is on);
// f64 and larger heads the row-per-block kernels of cuda/attention.cu.
// Neither keeps a T x T buffer in global memory or uses atomics.
#pragma once
#include <cstdint>

namespace gl::cuda {

template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t BH,
                       int64_t Tq, int64_t Tk, int64_t HS, double scale);

template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* delta, const T* dout, const T* q, const T* k,
                        const T* v, const T* out, const T* lse, int64_t BH, int64_t Tq,
                        int64_t Tk, int64_t HS, double scale);

// The tiled f32 kernels (cuda/flash_attention.cu), same contract.
bool flash_attention_supports(int64_t HS);
void flash_attention_forward(float* out, float* lse, const float* q, const float* k,
                             const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                             double scale);
void flash_attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                              const float* q, const float* k, const float* v, const float* out,
                              const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                              double scale);

// The same on the tensor cores in TF32 (cuda/flash_attention_tc.cu); what
// attention_forward/backward run for f32 when cuda::tf32_enabled().
void flash_attention_tc_forward(float* out, float* lse, const float* q, const float* k,
                                const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                double scale);
void flash_attention_tc_backward(float* dq, float* dk, float* dv, float* delta,
                                 const float* dout, const float* q, const float* k,
                                 const float* v, const float* out, const float* lse, int64_t BH,
                                 int64_t Tq, int64_t Tk, int64_t HS, double scale);

// The same with bf16 (f16 when `f16`) operands in every product (q, k, v,
// dout rounded when their tiles load, the probabilities P and dS rounded
// before the products that take them; f32 accumulation, f32 softmax and
// outputs): run.precision bf16 / f16. HS <= 128 (flash_attention_supports).
void flash_attention_lowp_forward(float* out, float* lse, const float* q, const float* k,
                                  const float* v, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS,
                                  double scale, bool f16);
void flash_attention_lowp_backward(float* dq, float* dk, float* dv, float* delta,
                                   const float* dout, const float* q, const float* k,
                                   const float* v, const float* out, const float* lse, int64_t BH,
                                   int64_t Tq, int64_t Tk, int64_t HS, double scale, bool f16);

// The 16-bit kernels on mma.sync with register-resident scores
// (cuda/flash_attention_mma.cu); flash_attention_lowp_forward/backward run
// them while attention_mma_enabled() (default; GRIDLOCK_ATTENTION_MMA=0 at
// start-up or set_attention_mma(false) select the WMMA kernels instead).
void flash_attention_mma_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                 int64_t BH, int64_t Tq, int64_t Tk, int64_t HS, double scale, bool f16);
void flash_attention_mma_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                                  const float* q, const float* k, const float* v, const float* out,
                                  const float* lse, int64_t BH, int64_t Tq, int64_t Tk, int64_t HS, double scale,
                                  bool f16);
void set_attention_mma(bool on);
bool attention_mma_enabled();

}  // namespace gl::cuda
