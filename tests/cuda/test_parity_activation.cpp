// CPU vs CUDA parity for gelu (both kinds), softmax and dropout: forward
// outputs and input gradients for L = sum(y * R).
//
// Tolerances (f32): atol 1e-5, rtol 1e-4 for gelu and softmax. The CPU
// reference evaluates in f64 and rounds once; CUDA evaluates erf/tanh/exp
// in f32 (a few ulps each) and sums softmax rows of up to 3072 terms in f32
// block trees, so results differ by a few f32 ulps of O(1) values. f64 runs
// must agree to 1e-12. Dropout must agree exactly (atol 0): both devices
// keep element i iff the same Philox draw is >= p and multiply kept values
// by the same f32 scale, an exactly rounded product.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/activation.h"
#include "autograd/ops/dropout.h"
#include "autograd/ops/softmax.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Run {
  Tensor out;
  Tensor dx;  // on the CPU
};

// Runs fn on a copy of x on `device` and backpropagates L = sum(fn(x) * R).
Run run_on(Device device, const std::function<Var(const Var&)>& fn, const Tensor& x,
           const Tensor& R) {
  const Var xv(x.to(device).clone(), true);
  const Var out = fn(xv);
  sum(mul(out, Var(R.to(device)))).backward();
  return Run{out.value().to(Device::cpu()), xv.grad().to(Device::cpu())};
}

void check_parity(const std::string& label, const std::function<Var(const Var&)>& fn,
                  const Tensor& x, double atol, double rtol) {
  const Tensor R = randn(x.shape(), 98, x.dtype());
  const Run cpu = run_on(Device::cpu(), fn, x, R);
  const Run gpu = run_on(Device::cuda(), fn, x, R);
  CHECK(check_close(label + " out", gpu.out, cpu.out, atol, rtol));
  CHECK(check_close(label + " dx", gpu.dx, cpu.dx, atol, rtol));
}

// (rows, C): single element, odd sizes that do not divide 32 or 256, GPT-2
// widths, and more rows than the 65535-block grid of the row kernels.
const std::vector<std::pair<int64_t, int64_t>> kSizes = {
    {1, 1}, {3, 17}, {5, 1000}, {64, 768}, {7, 3072}, {70000, 5}};

}  // namespace

TEST_CASE("cuda parity: gelu erf and tanh (f32, f64)") {
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = affine(rand({rows, C}, 1, DType::F32), 4.0, 0.0);
    check_parity("gelu erf", [](const Var& v) { return gelu(v, GeluKind::ERF); }, x, 1e-5, 1e-4);
    check_parity("gelu tanh", [](const Var& v) { return gelu(v, GeluKind::TANH); }, x, 1e-5,
                 1e-4);
  }
  const Tensor x64 = affine(rand({5, 1000}, 2), 4.0, 0.0);
  check_parity("gelu erf f64", [](const Var& v) { return gelu(v, GeluKind::ERF); }, x64, 1e-12,
               1e-12);
  check_parity("gelu tanh f64", [](const Var& v) { return gelu(v, GeluKind::TANH); }, x64, 1e-12,
               1e-12);
}

TEST_CASE("cuda parity: softmax (f32, f64)") {
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = affine(rand({rows, C}, 3, DType::F32), 5.0, 0.0);
    check_parity("softmax", [](const Var& v) { return softmax(v); }, x, 1e-5, 1e-4);
  }
  check_parity("softmax f64", [](const Var& v) { return softmax(v); },
               affine(rand({5, 1000}, 4), 5.0, 0.0), 1e-12, 1e-12);
}

TEST_CASE("cuda parity: dropout keeps exactly the same elements") {
  for (const auto& [rows, C] : kSizes) {
    for (DType dt : {DType::F32, DType::F64}) {
      CAPTURE(rows);
      CAPTURE(C);
      const double p = 0.35;
      // Mask: on an all-ones input the kept positions are exactly the nonzeros.
      const Tensor ones = Tensor::ones({rows, C}, dt);
      Generator g_cpu(123, 17), g_gpu(123, 17);
      const Tensor m_cpu = dropout(Var(ones), p, g_cpu).value();
      const Tensor m_gpu = dropout(Var(ones.to(Device::cuda())), p, g_gpu).value();
      CHECK(g_cpu.offset == g_gpu.offset);
      CHECK(check_close("dropout mask", m_gpu, m_cpu, 0, 0));
      // Values and gradients on a random input, same generator state.
      const Tensor x = rand({rows, C}, 5, dt);
      check_parity("dropout",
                   [p](const Var& v) {
                     Generator gen(123, 17);
                     return dropout(v, p, gen);
                   },
                   x, 0, 0);
    }
  }
}

// bias_gelu: y and bias both require grad. dy as gelu's dx (atol 1e-5, rtol
// 1e-4; f64 1e-12); dbias is a column sum over `rows` terms of random sign
// in f32 on the GPU (deterministic partials) and in f64 on the CPU, so its
// atol grows like sqrt(rows), as the norm parity tests' parameter grads.
TEST_CASE("cuda parity: bias_gelu erf and tanh (f32, f64)") {
  auto check = [](const Tensor& y, const Tensor& b, GeluKind kind, double atol, double rtol) {
    const int64_t rows = y.numel() / y.size(-1);
    const Tensor R = randn(y.shape(), 97, y.dtype());
    Tensor out[2], dy[2], db[2];
    for (int k = 0; k < 2; ++k) {
      const Device dev = k == 0 ? Device::cpu() : Device::cuda();
      const Var yv(y.to(dev).clone(), true), bv(b.to(dev).clone(), true);
      const Var o = bias_gelu(yv, bv, kind);
      sum(mul(o, Var(R.to(dev)))).backward();
      out[k] = o.value().to(Device::cpu());
      dy[k] = yv.grad().to(Device::cpu());
      db[k] = bv.grad().to(Device::cpu());
    }
    CHECK(check_close("bias_gelu out", out[1], out[0], atol, rtol));
    CHECK(check_close("bias_gelu dy", dy[1], dy[0], atol, rtol));
    CHECK(check_close("bias_gelu dbias", db[1], db[0], atol * std::sqrt(double(rows)), rtol));
  };
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor y = affine(rand({rows, C}, 6, DType::F32), 4.0, 0.0), b = rand({C}, 7, DType::F32);
    check(y, b, GeluKind::ERF, 1e-5, 1e-4);
    check(y, b, GeluKind::TANH, 1e-5, 1e-4);
  }
  const Tensor y64 = affine(rand({5, 1000}, 8), 4.0, 0.0), b64 = rand({1000}, 9);
  check(y64, b64, GeluKind::ERF, 1e-12, 1e-12);
  check(y64, b64, GeluKind::TANH, 1e-12, 1e-12);
}
