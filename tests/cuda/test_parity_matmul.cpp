// CPU vs CUDA: matmul (cuBLAS, TF32 off) and row sums. f32 tolerance:
// cuBLAS and Eigen sum K products in different orders, so differences grow
// like sqrt(K) * eps(f32) * |a||b|; with inputs in [-1, 1) and K <= 1000,
// atol 1e-4 + rtol 1e-4 covers that with margin while still catching any
// indexing error (which gives O(1) differences).
#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

bool parity_matmul(const Shape& sa, const Shape& sb, bool ta, bool tb, uint64_t seed) {
  Var a(rand(sa, seed, DType::F32), true), b(rand(sb, seed + 1, DType::F32), true);
  Var ag(a.value().to(Device::cuda()), true), bg(b.value().to(Device::cuda()), true);
  const Var c = matmul(a, b, ta, tb), cg = matmul(ag, bg, ta, tb);
  const Tensor R = rand(c.shape(), seed + 2, DType::F32);
  sum(mul(c, Var(R))).backward();
  sum(mul(cg, Var(R.to(Device::cuda())))).backward();
  bool ok = check_close("matmul out", cg.value(), c.value(), 1e-4, 1e-4);
  ok = check_close("matmul da", ag.grad(), a.grad(), 1e-4, 1e-4) && ok;
  ok = check_close("matmul db", bg.grad(), b.grad(), 1e-4, 1e-4) && ok;
  return ok;
}

}  // namespace

TEST_CASE("cuda parity: matmul forward and gradients") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CHECK(parity_matmul(ta ? Shape{33, 17} : Shape{17, 33}, tb ? Shape{65, 33} : Shape{33, 65},
                          ta, tb, 10));
      CHECK(parity_matmul(ta ? Shape{3, 5, 64} : Shape{3, 64, 5},
                          tb ? Shape{3, 7, 5} : Shape{3, 5, 7}, ta, tb, 20));
      CHECK(parity_matmul(ta ? Shape{2, 129, 31} : Shape{2, 31, 129},
                          tb ? Shape{257, 129} : Shape{129, 257}, ta, tb, 30));
    }
}

// run.precision bf16/f16: cuBLASLt on bf16/f16 operands against the CPU's
// emulation (the same rounded operands, f32 sums in another order), so the
// f32 tolerance above holds; an operand rounded on one side only would miss
// it by ~1e-3. Odd sizes that fit no tile, batched products, and a 2-D
// operand shared by a batch with trans_a (one cuBLASLt call per entry).
TEST_CASE("cuda parity: bf16 and f16 products through cuBLASLt") {
  for (MatmulPrecision p : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    const MatmulPrecisionGuard guard(p);
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CHECK(parity_matmul(ta ? Shape{33, 17} : Shape{17, 33}, tb ? Shape{65, 33} : Shape{33, 65},
                            ta, tb, 50));
        CHECK(parity_matmul(ta ? Shape{3, 5, 64} : Shape{3, 64, 5},
                            tb ? Shape{3, 7, 5} : Shape{3, 5, 7}, ta, tb, 60));
        CHECK(parity_matmul(ta ? Shape{2, 129, 31} : Shape{2, 31, 129},
                            tb ? Shape{257, 129} : Shape{129, 257}, ta, tb, 70));
        CHECK(parity_matmul(ta ? Shape{768, 512} : Shape{512, 768},
                            tb ? Shape{2304, 768} : Shape{768, 2304}, ta, tb, 80));
      }
  }
}

TEST_CASE("cuda parity: f64 matmul and row sums") {
  const Tensor a = rand({67, 300}, 1), b = rand({300, 45}, 2);
  CHECK(check_close("f64 matmul", matmul_tensor(a.to(Device::cuda()), b.to(Device::cuda())),
                    matmul_tensor(a, b), 1e-12, 1e-12));
  for (const Shape& s : {Shape{1, 1}, Shape{7, 1000}, Shape{300, 3}, Shape{2, 70000}}) {
    const Tensor x = rand(s, 3, DType::F32);
    CHECK(check_close("sum rows", sum_tensor(x.to(Device::cuda()), {1}, false),
                      sum_tensor(x, {1}, false), 1e-5, 1e-5));
    CHECK(check_close("sum cols", sum_tensor(x.to(Device::cuda()), {0}, false),
                      sum_tensor(x, {0}, false), 1e-4, 1e-5));
  }
}

TEST_CASE("cuda parity: linear with bias (fused in-place bias add) and its gradients") {
  for (const Shape& xs : {Shape{3, 17}, Shape{2, 5, 33}, Shape{1, 1, 64}}) {
    const int64_t in = xs.back(), out = 65;
    Var x(rand(xs, 40, DType::F32), true), w(rand({out, in}, 41, DType::F32), true);
    Var b(rand({out}, 42, DType::F32), true);
    Var xg(x.value().to(Device::cuda()), true), wg(w.value().to(Device::cuda()), true);
    Var bg(b.value().to(Device::cuda()), true);
    const Var y = linear(x, w, b), yg = linear(xg, wg, bg);
    const Tensor R = rand(y.shape(), 43, DType::F32);
    sum(mul(y, Var(R))).backward();
    sum(mul(yg, Var(R.to(Device::cuda())))).backward();
    CHECK(check_close("linear out", yg.value(), y.value(), 1e-4, 1e-4));
    CHECK(check_close("linear dx", xg.grad(), x.grad(), 1e-4, 1e-4));
    CHECK(check_close("linear dw", wg.grad(), w.grad(), 1e-4, 1e-4));
    CHECK(check_close("linear db", bg.grad(), b.grad(), 1e-4, 1e-4));
  }
}
