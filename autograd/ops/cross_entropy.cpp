// cross_entropy: forward and backward side by side. The forward keeps only
// per-row log-sum-exp (and per-row losses, summed deterministically by
// sum_tensor); the backward recomputes softmax from it. Bad targets and
// the count of non-ignored rows come back through a 2-word status tensor
// (device memory on CUDA, read back after the launch: a stream sync).
#include "autograd/ops/cross_entropy.h"

#include <cmath>
#include <limits>

#include "autograd/dispatch.h"
#include "autograd/ops/elementwise.h"
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
  dispatch("cross_entropy", lc,
      [&](auto t) {
        using T = decltype(t);
        with_index_type(tc, [&](auto i) {
          using I = decltype(i);
          cpu::cross_entropy_forward<T, I>(losses.data<T>(), lse.data<T>(),
                                           status.data<int64_t>(), lc.data<T>(), tc.data<I>(), N,
                                           V, ignore_index);
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
  // mutable, with non-const copies of logits and lc (init-captures drop the
  // const): the backward may take over lc's buffer (see below).
  return record("cross_entropy", loss, {&logits},
                [logits = logits, lc = lc, tc, lse, N, V, ignore_index,
                 n_valid](const Tensor& dout) mutable {
    const Tensor doc = dout.contiguous();
    const double inv_n = n_valid > 0 ? 1.0 / double(n_valid) : 0.0;
    // dlogits overwrites the logits in place when nothing else can read them
    // again: lc is a private contiguous copy, or it is the logits Var's own
    // buffer and this closure holds the only reference to that Var (the
    // caller dropped it, as LanguageModel::loss does). The Var then keeps a
    // zero-stride placeholder of the same shape, so accumulate_grad's checks
    // hold. At vocab 8192 to 50304 this saves a logits-sized allocation
    // (64 to 200 MB: fresh pages for the kernel to fault in) every step.
    // CPU only: the CPU kernel is written to allow dlogits == logits.
    Tensor dlogits;
    const bool private_copy = lc.storage().use_count() == 1;
    const bool sole_owner = logits.impl().use_count() == 1 && lc.shares_storage(logits.value()) &&
                            lc.storage().use_count() == 2;
    if (lc.device().is_cpu() && (private_copy || sole_owner)) {
      if (sole_owner)
        logits.mutable_value() = Tensor::empty({}, lc.dtype(), lc.device()).expand(lc.shape());
      dlogits = std::move(lc);  // lc is left undefined: dlogits holds the only reference
    } else {
      dlogits = Tensor::empty_like(lc);
    }
    const Tensor& x = lc.defined() ? lc : dlogits;  // the logits, read by the kernel
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

}  // namespace gl
