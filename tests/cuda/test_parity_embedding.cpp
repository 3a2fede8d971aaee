// CPU vs CUDA: embedding and cross-entropy, outputs and gradients, plus the
// device-side out-of-range checks.
//
// Tolerances (f32):
//   embedding: forward copies rows and the backward adds gradient rows in
//     token order on both devices, in f32: identical bits, atol = rtol = 0.
//   cross_entropy: the GPU sums exp over V (up to 5003) in f32 where the CPU
//     uses double, so each row's lse differs by ~1e-6 relative: loss atol
//     1e-6 + rtol 1e-5; dlogits = (softmax - onehot) / n, atol 1e-7 +
//     rtol 1e-4 (entries near p = 1 lose digits to the cancellation).
//     f64: atol 1e-13 + rtol 1e-11.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/cross_entropy.h"
#include "autograd/ops/embedding.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

// n ids in [0, V) from a fixed LCG, with every fourth id repeated from a
// small set so that the backward sums several tokens into one row; with
// `ignore` > 0, about one in `ignore` is -100.
Tensor make_ids(const Shape& shape, int64_t V, uint64_t seed, DType dt, int ignore = 0) {
  std::vector<int64_t> ids(size_t(shape_numel(shape)));
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (size_t i = 0; i < ids.size(); ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    const uint64_t r = s >> 33;
    ids[i] = (i % 4 == 3) ? int64_t(r % uint64_t(V < 3 ? V : 3)) : int64_t(r % uint64_t(V));
    if (ignore > 0 && (r >> 7) % uint64_t(ignore) == 0) ids[i] = -100;
  }
  const Tensor t = Tensor::from_data<int64_t>(ids, shape);
  return dt == DType::I64 ? t : t.to(dt);
}

bool parity_embedding(int64_t V, int64_t C, const Shape& ids_shape, DType id_dtype,
                      uint64_t seed) {
  const Tensor w = randn({V, C}, seed, DType::F32);
  const Tensor ids = make_ids(ids_shape, V, seed + 1, id_dtype);
  Var wc(w, true), wg(w.to(Device::cuda()), true);
  const Var oc = embedding(wc, ids), og = embedding(wg, ids.to(Device::cuda()));
  const Tensor R = randn(oc.shape(), seed + 2, DType::F32);
  sum(mul(oc, Var(R))).backward();
  sum(mul(og, Var(R.to(Device::cuda())))).backward();
  bool ok = check_close("embedding out", og.value(), oc.value(), 0, 0);
  return check_close("embedding dweight", wg.grad(), wc.grad(), 0, 0) && ok;
}

bool parity_cross_entropy(const Shape& shape, DType dt, DType target_dtype, uint64_t seed,
                          double atol_loss, double rtol_loss, double atol_grad,
                          double rtol_grad) {
  const Tensor x = affine(randn(shape, seed, dt), 3.0, 0.0);
  const Shape rows(shape.begin(), shape.end() - 1);
  const Tensor t = make_ids(rows, shape.back(), seed + 1, target_dtype, 8);
  Var xc(x, true), xg(x.to(Device::cuda()), true);
  const Var lc = cross_entropy(xc, t), lg = cross_entropy(xg, t.to(Device::cuda()));
  // A seed other than 1 checks that dloss scales the gradient.
  const Tensor R = Tensor::full({}, -1.7, dt);
  mul(lc, Var(R)).backward();
  mul(lg, Var(R.to(Device::cuda()))).backward();
  bool ok = check_close("cross_entropy loss", lg.value(), lc.value(), atol_loss, rtol_loss);
  return check_close("cross_entropy dlogits", xg.grad(), xc.grad(), atol_grad, rtol_grad) && ok;
}

}  // namespace

TEST_CASE("cuda parity: embedding forward and dweight") {
  CHECK(parity_embedding(1000, 64, {7}, DType::I64, 1));
  CHECK(parity_embedding(1000, 64, {2, 65}, DType::I32, 2));
  CHECK(parity_embedding(5003, 24, {33}, DType::I32, 3));
  CHECK(parity_embedding(1000, 128, {1}, DType::I64, 4));
  CHECK(parity_embedding(3, 300, {4, 129}, DType::I64, 5));  // many tokens per row, C > 256
}

TEST_CASE("cuda parity: embedding out-of-range id is reported from the device") {
  const Var w(Tensor::zeros({5, 4}, DType::F32, Device::cuda()));
  const Tensor ids = Tensor::from_data<int64_t>({0, 1, 4, 7, 9, -2}, {2, 3}, Device::cuda());
  CHECK_THROWS_WITH_AS(embedding(w, ids), doctest::Contains("embedding: id 7 at flat position 3"),
                       Error);
  // The device is still usable afterwards.
  const Tensor ok = embedding(w, Tensor::from_data<int32_t>({4}, {1}, Device::cuda())).value();
  CHECK(ok.to_vector() == std::vector<double>(4, 0.0));
}

TEST_CASE("cuda parity: cross_entropy loss and dlogits") {
  CHECK(parity_cross_entropy({1, 1000}, DType::F32, DType::I64, 1, 1e-6, 1e-5, 1e-7, 1e-4));
  CHECK(parity_cross_entropy({7, 1000}, DType::F32, DType::I32, 2, 1e-6, 1e-5, 1e-7, 1e-4));
  CHECK(parity_cross_entropy({33, 5003}, DType::F32, DType::I64, 3, 1e-6, 1e-5, 1e-7, 1e-4));
  CHECK(parity_cross_entropy({2, 65, 5003}, DType::F32, DType::I32, 4, 1e-6, 1e-5, 1e-7, 1e-4));
  CHECK(parity_cross_entropy({4, 17}, DType::F32, DType::I64, 5, 1e-6, 1e-5, 1e-7, 1e-4));
  CHECK(parity_cross_entropy({3, 130, 257}, DType::F64, DType::I64, 6, 1e-13, 1e-11, 1e-13,
                             1e-11));
}

TEST_CASE("cuda parity: cross_entropy bad target and all-ignored rows on the device") {
  const Var x(Tensor::zeros({2, 3, 5}, DType::F32, Device::cuda()));
  CHECK_THROWS_WITH_AS(
      cross_entropy(x, Tensor::from_data<int64_t>({0, 1, 2, 3, 5, 9}, {2, 3}, Device::cuda())),
      doctest::Contains("cross_entropy: target 5 at flat position 4"), Error);
  Var y(Tensor::ones({2, 3}, DType::F32, Device::cuda()), true);
  const Var loss = cross_entropy(y, Tensor::from_data<int64_t>({-100, -100}, {2}, Device::cuda()));
  CHECK(std::isnan(loss.value().item()));
  loss.backward();
  CHECK(y.grad().to_vector() == std::vector<double>(6, 0.0));
}

// linear_cross_entropy (the training head, autograd/ops/cross_entropy.h):
// CUDA against the CPU on the same inputs, rows that no chunk size divides
// and a vocabulary that fits no tile; f32, and under run.precision bf16
// (both sides round the same operands, so the f32 bounds hold, as in
// test_parity_matmul). Tolerances: the products sum C = 96 terms per logit
// and N rows per weight gradient in different orders, and lse differs as
// above, so loss atol 1e-6 + rtol 1e-5 and gradients atol 1e-6 + rtol 1e-4.
TEST_CASE("cuda parity: linear_cross_entropy (head fused with the loss), f32 and bf16") {
  for (MatmulPrecision p : {MatmulPrecision::F32, MatmulPrecision::BF16}) {
    const MatmulPrecisionGuard guard(p);
    for (int64_t chunk : {7, 0}) {
      CAPTURE(chunk);
      const int64_t B = 3, T = 29, C = 96, V = 5003;
      const Tensor x0 = rand({B, T, C}, 31, DType::F32), w0 = rand({V, C}, 32, DType::F32);
      std::vector<int64_t> ids;
      for (int64_t i = 0; i < B * T; ++i) ids.push_back(i % 11 == 3 ? -100 : (i * 131 + 7) % V);
      const Tensor t = Tensor::from_data(ids, {B, T});
      Var x(x0, true), w(w0, true), xg(x0.to(Device::cuda()), true), wg(w0.to(Device::cuda()), true);
      const Var l = linear_cross_entropy(x, w, t, -100, chunk);
      const Var lg = linear_cross_entropy(xg, wg, t.to(Device::cuda()), -100, chunk);
      CHECK(check_close("loss", lg.value(), l.value(), 1e-6, 1e-5));
      // Host targets (as training passes them): the same result.
      CHECK(linear_cross_entropy(Var(xg.value()), Var(wg.value()), t, -100, chunk).value().item() ==
            lg.value().item());
      l.backward();
      lg.backward();
      CHECK(check_close("dx", xg.grad(), x.grad(), 1e-6, 1e-4));
      CHECK(check_close("dw", wg.grad(), w.grad(), 1e-6, 1e-4));
    }
  }
}
