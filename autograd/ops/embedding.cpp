// embedding: forward and backward side by side. Bad ids are found by the
// kernel (on CUDA through a device-side status word read back after the
// launch, which synchronises the stream) and reported here.
#include "autograd/ops/embedding.h"

#include "autograd/dispatch.h"
#include "autograd/tape.h"
#include "cpu/embedding.h"
#include "cuda/embedding.h"

namespace gl {

Var embedding(const Var& weight, const Tensor& ids) {
  GL_CHECK(weight.defined() && ids.defined(), "embedding: undefined input");
  GL_CHECK(weight.dim() == 2, "embedding: weight must be [V, C], got ", weight.describe());
  GL_CHECK(ids.dtype() == DType::I32 || ids.dtype() == DType::I64,
           "embedding: ids must be i32 or i64, got ", ids.describe());
  GL_CHECK(ids.device() == weight.device(), "embedding: device mismatch, weight ",
           weight.describe(), " vs ids ", ids.describe());
  const Tensor wc = weight.value().contiguous(), ic = ids.contiguous();
  const int64_t V = weight.size(0), C = weight.size(1), N = ic.numel();
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
  // First flat position with a bad id; N means none.
  Tensor bad_pos = Tensor::from_data<int64_t>({N}, {1}, weight.device());
  dispatch("embedding", wc,
      [&](auto t) {
        using T = decltype(t);
        with_index_type(ic, [&](auto i) {
          using I = decltype(i);
          cpu::embedding_forward<T, I>(out.data<T>(), bad_pos.data<int64_t>(), ic.data<I>(),
                                       wc.data<T>(), N, V, C);
        });
      },
      [&](auto t) {
        using T = decltype(t);
        with_index_type(ic, [&](auto i) {
          using I = decltype(i);
          cuda::embedding_forward<T, I>(out.data<T>(), bad_pos.data<int64_t>(), ic.data<I>(),
                                        wc.data<T>(), N, V, C);
        });
      });
  const int64_t pos = bad_pos.to_vector_as<int64_t>()[0];
  if (pos < N) {
    const int64_t id = ic.reshape({N}).slice(0, pos, pos + 1).to_vector_as<int64_t>()[0];
    GL_CHECK(false, "embedding: id ", id, " at flat position ", pos, " of ids ", ids.describe(),
             " is outside [0, V) with V = ", V, " (weight ", weight.describe(), ")");
  }
  return record("embedding", out, {&weight}, [weight, ic, N, V, C](const Tensor& dout) {
    const Tensor doc = dout.contiguous();
    Tensor dweight = Tensor::zeros(weight.shape(), weight.dtype(), weight.device());
    dispatch("embedding backward", dweight,
        [&](auto t) {
          using T = decltype(t);
          with_index_type(ic, [&](auto i) {
            using I = decltype(i);
            cpu::embedding_backward<T, I>(dweight.data<T>(), doc.data<T>(), ic.data<I>(), N, V,
                                          C);
          });
        },
        [&](auto t) {
          using T = decltype(t);
          with_index_type(ic, [&](auto i) {
            using I = decltype(i);
            cuda::embedding_backward<T, I>(dweight.data<T>(), doc.data<T>(), ic.data<I>(), N,
                                           V, C);
          });
        });
    accumulate_grad(weight, dweight);
  });
}

}  // namespace gl
