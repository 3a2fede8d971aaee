#include "autograd/ops/matmul.h"

#include <atomic>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/reduce.h"
#include "autograd/tape.h"
#include "cpu/elementwise.h"
#include "cpu/matmul.h"
#include "cuda/elementwise.h"
#include "cuda/matmul.h"

namespace gl {

namespace {
thread_local MatmulPrecision t_precision = MatmulPrecision::F32;
std::atomic<uint64_t> g_shadow_uses{0};

// Operand `t` rounded to `half`: the shadow its producer attached (the same
// bits as the cast, already written), else the cast.
Tensor lowp_operand(const Tensor& t, DType half) {
  Tensor s = t.lowp_shadow(half);
  if (!s.defined()) return t.to(half);
  g_shadow_uses.fetch_add(1, std::memory_order_relaxed);
  return s;
}
}  // namespace

uint64_t matmul_lowp_shadow_uses() { return g_shadow_uses.load(std::memory_order_relaxed); }

MatmulPrecision matmul_precision() { return t_precision; }
MatmulPrecision matmul_precision_from_name(const std::string& name) {
  if (name == "f32") return MatmulPrecision::F32;
  if (name == "bf16") return MatmulPrecision::BF16;
  if (name == "f16") return MatmulPrecision::F16;
  GL_CHECK(false, "matmul precision '", name, "' unknown; use f32, bf16 or f16");
  return MatmulPrecision::F32;
}
MatmulPrecisionGuard::MatmulPrecisionGuard(MatmulPrecision p) : previous_(t_precision) {
  t_precision = p;
}
MatmulPrecisionGuard::~MatmulPrecisionGuard() { t_precision = previous_; }

// out (+)= the product of `s` (run.precision's rounding for f32).
static void run_product(Tensor& out, const Tensor& a, const Tensor& b, const MatmulShape& s) {
  if (t_precision != MatmulPrecision::F32 && a.dtype() == DType::F32) {
    const DType half = t_precision == MatmulPrecision::BF16 ? DType::BF16 : DType::F16;
    const Tensor a16 = lowp_operand(a, half), b16 = lowp_operand(b, half);
    if (a.device().is_cuda()) {
#if GRIDLOCK_CUDA
      cuda::DeviceGuard guard(a.device().index);
      cuda::matmul_forward_lowp(out.data<float>(), a16.data_ptr(), b16.data_ptr(),
                                half == DType::F16, s);
#else
      GL_CHECK(false, "matmul: CUDA tensor in a build without CUDA");
#endif
    } else {
      const Tensor ar = a16.to(DType::F32), br = b16.to(DType::F32);
      cpu::matmul_forward<float>(out.data<float>(), ar.data<float>(), br.data<float>(), s);
    }
    return;
  }
  dispatch("matmul", a,
      [&](auto t) {
        using T = decltype(t);
        cpu::matmul_forward<T>(out.data<T>(), a.data<T>(), b.data<T>(), s);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::matmul_forward<T>(out.data<T>(), a.data<T>(), b.data<T>(), s);
      });
}

Tensor matmul_tensor(const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b) {
  check_same("matmul", a_in, b_in, "b");
  GL_CHECK(a_in.dim() >= 2 && b_in.dim() >= 2, "matmul: needs at least 2-D inputs, got ",
           a_in.describe(), " and ", b_in.describe());
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const Shape batch_shape(a.shape().begin(), a.shape().end() - 2);
  const bool b_batched = b.dim() > 2;
  GL_CHECK(!b_batched || Shape(b.shape().begin(), b.shape().end() - 2) == batch_shape,
           "matmul: batch dims of ", a.describe(), " and ", b.describe(), " differ");
  MatmulShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.M = trans_a ? a.size(-1) : a.size(-2);
  const int64_t ka = trans_a ? a.size(-2) : a.size(-1);
  s.K = trans_b ? b.size(-1) : b.size(-2);
  s.N = trans_b ? b.size(-2) : b.size(-1);
  GL_CHECK(ka == s.K, "matmul: inner dimensions differ (", ka, " vs ", s.K, ") for ",
           a.describe(), (trans_a ? "^T" : ""), " x ", b.describe(), (trans_b ? "^T" : ""));
  s.batch = shape_numel(batch_shape);
  if (!b_batched && !trans_a) {
    // [batch, M, K] x [K, N] is one [batch * M, K] x [K, N] product: one big GEMM.
    s.M *= s.batch;
    s.batch = 1;
  }
  s.a_batch_stride = s.M * s.K;
  s.b_batch_stride = b_batched ? s.K * s.N : 0;
  Shape out_shape = batch_shape;
  out_shape.push_back(trans_a ? a.size(-1) : a.size(-2));
  out_shape.push_back(s.N);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  run_product(out, a, b, s);
  return out;
}

void matmul_into(Tensor& out, const Tensor& a_in, const Tensor& b_in, bool trans_a, bool trans_b,
                 bool accumulate) {
  check_same("matmul_into", a_in, b_in, "b");
  check_same("matmul_into", a_in, out, "out");
  GL_CHECK(a_in.dim() == 2 && b_in.dim() == 2 && out.dim() == 2 && out.is_contiguous(),
           "matmul_into: needs 2-D operands and a contiguous 2-D out, got ", a_in.describe(), ", ",
           b_in.describe(), " and out ", out.describe());
  const Tensor a = a_in.contiguous(), b = b_in.contiguous();
  MatmulShape s;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.M = trans_a ? a.size(1) : a.size(0);
  s.K = trans_a ? a.size(0) : a.size(1);
  s.N = trans_b ? b.size(0) : b.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0);
  GL_CHECK(kb == s.K && out.size(0) == s.M && out.size(1) == s.N, "matmul_into: ", a.describe(),
           (trans_a ? "^T" : ""), " x ", b.describe(), (trans_b ? "^T" : ""), " does not fit out ",
           out.describe());
  s.a_batch_stride = s.M * s.K;
  s.accumulate = accumulate;
  run_product(out, a, b, s);
}

// A 2-D operand used against batched ones, materialised per batch entry.
static Tensor expand_batch(const Tensor& m, const Tensor& batched) {
  if (m.dim() > 2 || batched.dim() == 2) return m;
  Shape shape(batched.shape().begin(), batched.shape().end() - 2);
  shape.push_back(m.size(0));
  shape.push_back(m.size(1));
  return m.expand(shape).contiguous();
}

// C = op(A) op(B). With dC the output gradient:
//   A    B   | dA                  | dB
//   N    N   | dC . B^T            | A^T . dC
//   T    N   | B . dC^T            | A . dC
//   N    T   | dC . B              | dC^T . A
//   T    T   | B^T . dC^T          | dC^T . A^T
// A 2-D B shared by a batched A gets the batch-summed gradient.
Var matmul(const Var& a, const Var& b, bool trans_a, bool trans_b) {
  return record("matmul", matmul_tensor(a.value(), b.value(), trans_a, trans_b), {&a, &b},
                [a, b, trans_a, trans_b](const Tensor& dC) {
                  const Tensor& A = a.value();
                  const Tensor& B = b.value();
                  if (a.requires_grad()) {
                    accumulate_grad(a, !trans_a
                                           ? matmul_tensor(dC, B, false, !trans_b)
                                           : matmul_tensor(expand_batch(B, dC), dC, trans_b, true));
                  }
                  if (!b.requires_grad()) return;
                  if (B.dim() == 2 && A.dim() > 2 && !trans_a) {
                    // Shared weight: fold the batch into the rows, one GEMM.
                    const Tensor A2 = A.reshape({-1, A.size(-1)});
                    const Tensor dC2 = dC.reshape({-1, dC.size(-1)});
                    accumulate_grad(b, !trans_b ? matmul_tensor(A2, dC2, true, false)
                                                : matmul_tensor(dC2, A2, true, false));
                  } else if (B.dim() == 2 && A.dim() > 2) {
                    const Tensor dBb = !trans_b ? matmul_tensor(A, dC, false, false)
                                                : matmul_tensor(dC, A, true, true);
                    accumulate_grad(b, sum_tensor(dBb.reshape({-1, B.size(0), B.size(1)}), {0},
                                                  false));
                  } else {
                    accumulate_grad(b, !trans_b ? matmul_tensor(A, dC, !trans_a, false)
                                                : matmul_tensor(dC, A, true, trans_a));
                  }
                });
}

// y = x . W^T + b as one op: the bias is added in place into the fresh
// matmul output (no second output-sized buffer), and backward writes
//   dx = dy . W,  dW = dy^T . x (rows of all batch dims folded),  db = sum_rows dy.
Var linear(const Var& x, const Var& weight, const Var& bias) {
  GL_CHECK(weight.dim() == 2, "linear: weight must be [out, in], got ", weight.describe());
  GL_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", x.describe(),
           " does not match weight ", weight.describe(), " (in_features ", weight.size(1), ")");
  if (!bias.defined()) return matmul(x, weight, false, true);
  GL_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", bias.describe(),
           " does not match weight ", weight.describe());
  check_same("linear", x.value(), bias.value(), "bias");
  Tensor y = matmul_tensor(x.value(), weight.value(), false, true);
  const Tensor b = bias.value().contiguous();
  const int64_t cols = weight.size(0), rows = cols ? y.numel() / cols : 0;
  dispatch("linear", y,
      [&](auto t) {
        using T = decltype(t);
        cpu::add_bias_rows<T>(y.data<T>(), b.data<T>(), rows, cols);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::add_bias_rows<T>(y.data<T>(), b.data<T>(), rows, cols);
      });
  return record("linear", y, {&x, &weight, &bias}, [x, weight, bias](const Tensor& dy) {
    const Tensor dy2 = dy.reshape({-1, dy.size(-1)});
    if (x.requires_grad()) accumulate_grad(x, matmul_tensor(dy, weight.value()));
    if (weight.requires_grad())
      accumulate_grad(weight, matmul_tensor(dy2, x.value().reshape({-1, x.size(-1)}), true));
    if (bias.requires_grad()) accumulate_grad(bias, sum_tensor(dy2, {0}, false));
  });
}

}  // namespace gl
