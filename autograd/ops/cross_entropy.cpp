// cross_entropy: forward and backward side by side. The forward keeps only
// per-row log-sum-exp (and per-row losses, summed deterministically by
// sum_tensor); the backward recomputes softmax from it. On the CPU, when a
// gradient will be needed, the forward writes it instead (see below). Bad targets and
// the count of non-ignored rows come back through a 2-word status tensor
// (device memory on CUDA, read back after the launch: a stream sync).
#include "autograd/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/tape.h"
#include "cpu/cross_entropy.h"
#include "cuda/cross_entropy.h"

namespace gl {

Var cross_entropy(const Var& logits, const Tensor& targets, int64_t ignore_index) {
  GL_CHECK(logits.defined() && targets.defined(), "cross_entropy: undefined input");
  GL_CHECK(logits.dim() >= 1, "cross_entropy: logits must be [..., V], got ", logits.describe());
  GL_CHECK(targets.dtype() == DType::I32 || targets.dtype() == DType::I64,
           "cross_entropy: targets must be i32 or i64, got ", targets.describe());
  GL_CHECK(targets.device() == logits.device(), "cross_entropy: device mismatch, logits ",
           logits.describe(), " vs targets ", targets.describe());
  const Shape rows_shape(logits.shape().begin(), logits.shape().end() - 1);
  GL_CHECK(targets.shape() == rows_shape, "cross_entropy: targets must have shape ",
           shape_str(rows_shape), " (logits without the last dim), got targets ",
           targets.describe(), " for logits ", logits.describe());
  const int64_t V = logits.size(-1);
  GL_CHECK(V >= 1, "cross_entropy: no classes in ", logits.describe());
  const Tensor lc = logits.value().contiguous(), tc = targets.contiguous();
  const int64_t N = tc.numel();
  Tensor losses = Tensor::empty({N}, logits.dtype(), logits.device());
  Tensor lse = Tensor::empty({N}, logits.dtype(), logits.device());
  // status[0]: first row with a bad target (N: none); status[1]: rows not ignored.
  Tensor status = Tensor::from_data<int64_t>({N, 0}, {2}, logits.device());
  // CPU training: the forward also writes d mean / d logits (for dloss = 1)
  // while each row is in cache. The backward then only hands that buffer
  // over (scaling it when dloss != 1), instead of reading every logit again
  // and recomputing its exp: at vocab 8192 that second pass over 64 MB was
  // 7% of a tiny-model training step. The logits need not be kept either.
  const bool fused = lc.device().is_cpu() && needs_grad({&logits});
  Tensor grad = fused ? Tensor::empty_like(lc) : Tensor();
  dispatch("cross_entropy", lc,
      [&](auto t) {
        using T = decltype(t);
        with_index_type(tc, [&](auto i) {
          using I = decltype(i);
          cpu::cross_entropy_forward<T, I>(losses.data<T>(), lse.data<T>(),
                                           status.data<int64_t>(), lc.data<T>(), tc.data<I>(), N,
                                           V, ignore_index, fused ? grad.data<T>() : nullptr);
        });
      },
      [&](auto t) {
        using T = decltype(t);
        with_index_type(tc, [&](auto i) {
          using I = decltype(i);
          cuda::cross_entropy_forward<T, I>(losses.data<T>(), lse.data<T>(),
                                            status.data<int64_t>(), lc.data<T>(), tc.data<I>(),
                                            N, V, ignore_index);
        });
      });
  const std::vector<int64_t> st = status.to_vector_as<int64_t>();
  if (st[0] < N) {
    const int64_t y = tc.reshape({N}).slice(0, st[0], st[0] + 1).to_vector_as<int64_t>()[0];
    GL_CHECK(false, "cross_entropy: target ", y, " at flat position ", st[0], " of targets ",
             targets.describe(), " is outside [0, V) with V = ", V, " and is not ignore_index (",
             ignore_index, ")");
  }
  const int64_t n_valid = st[1];
  // Mean over valid rows; torch returns NaN (0/0) when all are ignored.
  const Tensor total = sum_tensor(losses, {}, false);
  Tensor loss = n_valid > 0 ? affine(total, 1.0 / double(n_valid), 0.0)
                            : Tensor::full({}, std::numeric_limits<double>::quiet_NaN(),
                                           logits.dtype(), logits.device());
  if (fused) {
    return record("cross_entropy", loss, {&logits},
                  [logits = logits, grad = std::move(grad)](const Tensor& dout) mutable {
      GL_CHECK(grad.defined(), "cross_entropy backward: this graph's gradient was already used");
      Tensor dlogits = std::move(grad);  // the closure's buffer becomes the gradient
      const double d = dout.item();
      // dloss != 1 (a scaled loss): scaled here, so rounded twice, within
      // 1 ulp of the directly computed value.
      if (d != 1.0) {
        auto scale_in_place = [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          const int64_t n = dlogits.numel();
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
          for (int64_t i = 0; i < n; ++i) p[i] = T(double(p[i]) * d);
        };
        if (dlogits.dtype() == DType::F32) scale_in_place(dlogits.data<float>());
        else scale_in_place(dlogits.data<double>());
      }
      accumulate_grad(logits, dlogits);
    });
  }
  // Otherwise (CUDA) the backward recomputes softmax from the kept logits.
  return record("cross_entropy", loss, {&logits},
                [logits, lc, tc, lse, N, V, ignore_index, n_valid](const Tensor& dout) {
    const Tensor doc = dout.contiguous();
    const double inv_n = n_valid > 0 ? 1.0 / double(n_valid) : 0.0;
    Tensor dlogits = Tensor::empty_like(lc);
    const Tensor& x = lc;
    dispatch("cross_entropy backward", x,
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tc, [&](auto i) {
            using I = decltype(i);
            cpu::cross_entropy_backward<T, I>(dlogits.data<T>(), doc.data<T>(), x.data<T>(),
                                              lse.data<T>(), tc.data<I>(), N, V, ignore_index,
                                              inv_n);
          });
        },
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tc, [&](auto i) {
            using I = decltype(i);
            cuda::cross_entropy_backward<T, I>(dlogits.data<T>(), doc.data<T>(), x.data<T>(),
                                               lse.data<T>(), tc.data<I>(), N, V, ignore_index,
                                               inv_n);
          });
        });
    accumulate_grad(logits, dlogits);
  });
}

Var linear_cross_entropy(const Var& x, const Var& weight, const Tensor& targets, int64_t ignore_index,
                         int64_t chunk_rows) {
  GL_CHECK(x.defined() && weight.defined() && targets.defined(), "linear_cross_entropy: undefined input");
  GL_CHECK(weight.dim() == 2, "linear_cross_entropy: weight must be [V, C], got ", weight.describe());
  GL_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear_cross_entropy: input ", x.describe(),
           " does not match weight ", weight.describe(), " (in_features ", weight.size(1), ")");
  check_same("linear_cross_entropy", x.value(), weight.value(), "weight");
  GL_CHECK(targets.dtype() == DType::I32 || targets.dtype() == DType::I64,
           "linear_cross_entropy: targets must be i32 or i64, got ", targets.describe());
  GL_CHECK(targets.device() == x.device() || targets.device().is_cpu(), "linear_cross_entropy: device mismatch, x ",
           x.describe(), " vs targets ", targets.describe());
  const Shape rows_shape(x.shape().begin(), x.shape().end() - 1);
  GL_CHECK(targets.shape() == rows_shape, "linear_cross_entropy: targets must have shape ", shape_str(rows_shape),
           " (x without the last dim), got targets ", targets.describe(), " for x ", x.describe());
  GL_CHECK(chunk_rows >= 0, "linear_cross_entropy: chunk_rows must be >= 0, got ", chunk_rows);
  const int64_t C = weight.size(1), V = weight.size(0);
  GL_CHECK(V >= 1, "linear_cross_entropy: no classes in ", weight.describe());
  const Tensor xc = x.value().reshape({-1, C}).contiguous(), W = weight.value().contiguous();
  const int64_t N = xc.size(0);
  const Tensor host_t = targets.contiguous().reshape({N});

  // The targets, checked and counted once on the host (N ids, small next
  // to the logits): a bad one fails before any work, and n_valid is known
  // for the backward's scale.
  int64_t n_valid = 0;
  {
    // Targets given on the host (as the trainer's batches are) cost no
    // device synchronisation here; device targets are copied back.
    const std::vector<int64_t> t = host_t.to(Device::cpu()).to_vector_as<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      if (t[size_t(i)] == ignore_index) continue;
      GL_CHECK(t[size_t(i)] >= 0 && t[size_t(i)] < V, "linear_cross_entropy: target ", t[size_t(i)],
               " at flat position ", i, " of targets ", targets.describe(), " is outside [0, V) with V = ", V,
               " and is not ignore_index (", ignore_index, ")");
      ++n_valid;
    }
  }
  const Tensor tc = host_t.to(x.device());
  const bool want_dx = needs_grad({&x}) && x.requires_grad();
  const bool want_dw = needs_grad({&weight}) && weight.requires_grad();
  const int64_t R = chunk_rows > 0 ? chunk_rows : std::max<int64_t>(1, (int64_t(1) << 26) / V);
  const DType dt = xc.dtype();
  const Device dev = xc.device();
  Tensor losses = Tensor::empty({N}, dt, dev), lse = Tensor::empty({N}, dt, dev);
  Tensor dx = want_dx ? Tensor::empty({N, C}, dt, dev) : Tensor();
  // The first chunk writes dw (zeros when there is none).
  Tensor dw = !want_dw ? Tensor() : N > 0 ? Tensor::empty({V, C}, dt, dev) : Tensor::zeros({V, C}, dt, dev);
  const Tensor one = Tensor::full({}, 1.0, dt, dev);
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t n = std::min(R, N - r0);
    const Tensor xr = xc.narrow(0, r0, n), tr = tc.narrow(0, r0, n);
    Tensor lg = matmul_tensor(xr, W, false, true);  // [n, V]
    Tensor status = Tensor::from_data<int64_t>({n, 0}, {2}, dev);
    Tensor lr = losses.narrow(0, r0, n), sr = lse.narrow(0, r0, n);
    dispatch("linear_cross_entropy", lg,
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tr, [&](auto i) {
            using I = decltype(i);
            cpu::cross_entropy_forward<T, I>(lr.data<T>(), sr.data<T>(), status.data<int64_t>(), lg.data<T>(),
                                             tr.data<I>(), n, V, ignore_index);
          });
        },
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tr, [&](auto i) {
            using I = decltype(i);
            cuda::cross_entropy_forward<T, I>(lr.data<T>(), sr.data<T>(), status.data<int64_t>(), lg.data<T>(),
                                              tr.data<I>(), n, V, ignore_index);
          });
        });
    if (!want_dx && !want_dw) continue;
    // d(sum of the chunk's losses)/d logits: in place on the CPU (the
    // kernel allows it), into a second chunk buffer on CUDA.
    Tensor dl = dev.is_cpu() ? lg : Tensor::empty_like(lg);
    dispatch("linear_cross_entropy backward", lg,
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tr, [&](auto i) {
            using I = decltype(i);
            cpu::cross_entropy_backward<T, I>(dl.data<T>(), one.data<T>(), lg.data<T>(), sr.data<T>(),
                                              tr.data<I>(), n, V, ignore_index, 1.0);
          });
        },
        [&](auto t) {
          using T = decltype(t);
          with_index_type(tr, [&](auto i) {
            using I = decltype(i);
            cuda::cross_entropy_backward<T, I>(dl.data<T>(), one.data<T>(), lg.data<T>(), sr.data<T>(),
                                               tr.data<I>(), n, V, ignore_index, 1.0);
          });
        });
    if (want_dx) dx.narrow(0, r0, n).copy_(matmul_tensor(dl, W));  // [n, C]
    if (want_dw) matmul_into(dw, dl, xr, true, false, r0 > 0);  // dw (+)= dl^T x, [V, C]
  }
  const Tensor total = sum_tensor(losses, {}, false);
  const Tensor loss = n_valid > 0 ? affine(total, 1.0 / double(n_valid), 0.0)
                                  : Tensor::full({}, std::numeric_limits<double>::quiet_NaN(), dt, dev);
  const Shape x_shape = x.shape();
  return record("linear_cross_entropy", loss, {&x, &weight},
                [x, weight, dx, dw, n_valid, x_shape](const Tensor& dout) {
                  const double f = n_valid > 0 ? dout.item() / double(n_valid) : 0.0;
                  if (dx.defined()) accumulate_grad(x, affine(dx, f, 0.0).reshape(x_shape));
                  if (dw.defined()) accumulate_grad(weight, affine(dw, f, 0.0));
                });
}

}  // namespace gl
