// matmul and linear.
//   matmul(a, b, trans_a, trans_b) = op(a) . op(b) over the last two dims.
//   a: [..., M, K] ([..., K, M] if trans_a); b: [K, N] ([N, K] if trans_b),
//   or batched with exactly a's leading dims. Result [..., M, N].
//   linear(x, W, bias) = x . W^T + bias with W in torch's [out, in] layout.
#pragma once
#include "autograd/var.h"

namespace gl {

// Mixed-precision products (run.precision), as torch.autocast does for
// matmul and linear: with BF16 or F16 in force, an f32 product rounds both
// operands to that type (round to nearest even) and accumulates in f32 into
// an f32 result; forward and backward products alike. Nothing else changes:
// weights, gradients, optimizer state and every other op stay f32. On CUDA
// the rounded operands go to the tensor cores through cuBLASLt; on a CPU the
// same rounding is emulated before the f32 GEMM (no faster, but the same
// numbers up to summation order, so it is the reference for the GPU path
// and lets the numerics be studied anywhere). f64 products are never
// rounded. The setting is per thread and scoped.
// An operand that carries a low-precision shadow of the wanted type (core/
// storage.h; the fused fake_quantize attaches one) is read from it instead
// of being cast: the same bits, one pass over the weight fewer per product.
enum class MatmulPrecision { F32, BF16, F16 };
MatmulPrecision matmul_precision();
MatmulPrecision matmul_precision_from_name(const std::string& name);  // "f32", "bf16", "f16"
class MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision p);
  ~MatmulPrecisionGuard();
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision previous_;
};

// Operands read from a shadow so far, in this process (tests compare two
// readings to see that a product took the shadow rather than a cast).
uint64_t matmul_lowp_shadow_uses();

Tensor matmul_tensor(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// out (+)= op(a) . op(b) into an existing contiguous 2-D out (accumulate:
// add to what it holds), with the same rounding as matmul_tensor; for
// gradients summed over chunks without a temporary per chunk.
void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                 bool accumulate);

Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
Var linear(const Var& x, const Var& weight, const Var& bias = Var());

}  // namespace gl
