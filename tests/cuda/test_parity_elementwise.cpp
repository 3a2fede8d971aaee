#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("cuda parity: binary ops with broadcasting") {
  const Tensor a = rand({4, 33, 65}, 1, DType::F32), b = rand({33, 1}, 2, DType::F32);
  for (BinaryOp op : {BinaryOp::ADD, BinaryOp::SUB, BinaryOp::MUL}) {
    const Tensor ref = binary(a, b, op);
    const Tensor got = binary(a.to(Device::cuda()), b.to(Device::cuda()), op);
    CHECK(check_close("binary", got, ref, 0, 0));
  }
}

// qkv_heads (the GPT-NeoX attention input, autograd/ops/rotary.h): CUDA
// against the CPU, odd sizes, partial rotary, a position offset. The same
// formulas on both devices (cuda/rotary.cu): f32 cos/sin round the same
// way, so atol 1e-6 + rtol 1e-6.
TEST_CASE("cuda parity: qkv_heads (split, permute and rotary fused)") {
  for (int64_t off : {0, 37}) {
    const int64_t B = 3, T = 29, NH = 5, HS = 24, rd = 8;
    const Tensor x0 = rand({B, T, NH * 3 * HS}, 61, DType::F32);
    const Tensor g = rand({B, NH, T, HS}, 62, DType::F32);
    Var a(x0, true), b(x0.to(Device::cuda()), true);
    const QkvHeads h = qkv_heads(a, NH, rd, 10000.0, off), hg = qkv_heads(b, NH, rd, 10000.0, off);
    CHECK(check_close("q", hg.q.value(), h.q.value(), 1e-6, 1e-6));
    CHECK(check_close("k", hg.k.value(), h.k.value(), 1e-6, 1e-6));
    CHECK(check_close("v", hg.v.value(), h.v.value(), 0, 0));
    const Var gc(g), gg(g.to(Device::cuda()));
    add(add(sum(mul(h.q, gc)), sum(mul(h.k, h.k))), sum(mul(h.v, gc))).backward();
    add(add(sum(mul(hg.q, gg)), sum(mul(hg.k, hg.k))), sum(mul(hg.v, gg))).backward();
    CHECK(check_close("dqkv", b.grad(), a.grad(), 1e-5, 1e-5));
  }
}
