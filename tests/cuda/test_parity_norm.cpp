// CPU vs CUDA parity for layer_norm and rms_norm: forward outputs and the
// gradients of every input (x, weight, bias) for L = sum(y * R).
//
// Tolerances (f32): atol 1e-5, rtol 1e-4 for outputs and dx. The CPU
// reference accumulates in f64 and rounds once; CUDA accumulates in f32
// block trees, so the two differ by a few f32 ulps of O(1) values plus the
// rounding of row sums over C <= 3072 terms (relative error ~ sqrt(C) *
// 6e-8 < 1e-5 after the 1/C). dweight/dbias are column sums over `rows`
// terms of random sign, whose f32 rounding error grows like sqrt(rows): for
// them atol is 1e-5 * sqrt(rows). f64 runs must agree to 1e-12.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/norm.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Run {
  Tensor out;
  std::vector<Tensor> grads;  // one per input, on the CPU
};

// Runs fn on copies of `inputs` on `device` (all requiring grad) and
// backpropagates L = sum(fn(inputs) * R).
Run run_on(Device device, const VarFn& fn, const std::vector<Tensor>& inputs, const Tensor& R) {
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.emplace_back(t.to(device).clone(), true);
  const Var out = fn(vars);
  sum(mul(out, Var(R.to(device)))).backward();
  Run run{out.value().to(Device::cpu()), {}};
  for (const Var& v : vars) run.grads.push_back(v.grad().to(Device::cpu()));
  return run;
}

// Compares fn on CPU and CUDA; inputs[0] is x [rows, C], the rest parameters.
void check_parity(const std::string& label, const VarFn& fn, const std::vector<Tensor>& inputs,
                  int64_t rows) {
  const bool f64 = inputs[0].dtype() == DType::F64;
  const double atol = f64 ? 1e-12 : 1e-5, rtol = f64 ? 1e-12 : 1e-4;
  const double param_atol = atol * std::sqrt(double(rows));
  const Tensor R = randn(inputs[0].shape(), 99, inputs[0].dtype());
  const Run cpu = run_on(Device::cpu(), fn, inputs, R);
  const Run gpu = run_on(Device::cuda(), fn, inputs, R);
  CHECK(check_close(label + " out", gpu.out, cpu.out, atol, rtol));
  CHECK(check_close(label + " dx", gpu.grads[0], cpu.grads[0], atol, rtol));
  for (size_t k = 1; k < inputs.size(); ++k)
    CHECK(check_close(label + " d(param " + std::to_string(k) + ")", gpu.grads[k], cpu.grads[k],
                      param_atol, rtol));
}

// (rows, C): single element, odd sizes that do not divide 32 or 256, GPT-2
// widths, and more rows than the 65535-block grid (grid-stride row loops,
// several parameter-gradient row chunks).
const std::vector<std::pair<int64_t, int64_t>> kSizes = {
    {1, 1}, {3, 17}, {5, 1000}, {64, 768}, {7, 3072}, {70000, 5}};

}  // namespace

TEST_CASE("cuda parity: layer_norm (f32)") {
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = rand({rows, C}, 1, DType::F32);
    const Tensor w = affine(rand({C}, 2, DType::F32), 0.5, 1.0), b = rand({C}, 3, DType::F32);
    check_parity("layer_norm(x, w, b)", [](auto& v) { return layer_norm(v[0], v[1], v[2]); },
                 {x, w, b}, rows);
    check_parity("layer_norm(x)", [](auto& v) { return layer_norm(v[0], Var(), Var()); }, {x},
                 rows);
  }
}

TEST_CASE("cuda parity: rms_norm (f32)") {
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = rand({rows, C}, 4, DType::F32);
    const Tensor w = affine(rand({C}, 5, DType::F32), 0.5, 1.0);
    check_parity("rms_norm(x, w)", [](auto& v) { return rms_norm(v[0], v[1]); }, {x, w}, rows);
    check_parity("rms_norm(x)", [](auto& v) { return rms_norm(v[0], Var()); }, {x}, rows);
  }
}

TEST_CASE("cuda parity: layer_norm and rms_norm (f64)") {
  const int64_t rows = 5, C = 1000;
  const Tensor x = rand({rows, C}, 6), w = rand({C}, 7), b = rand({C}, 8);
  check_parity("layer_norm f64", [](auto& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b},
               rows);
  check_parity("rms_norm f64", [](auto& v) { return rms_norm(v[0], v[1]); }, {x, w}, rows);
}

// The fused residual add: both outputs enter L (sum and the normalised
// sum), so the residual's gradient has two sources. Same tolerances: the
// sum itself is one f32 addition on both devices (exact agreement expected,
// within atol anyway).
TEST_CASE("cuda parity: add_layer_norm and add_rms_norm (f32, f64)") {
  for (const auto& [rows, C] : kSizes) {
    CAPTURE(rows);
    CAPTURE(C);
    const Tensor x = rand({rows, C}, 9, DType::F32), r = rand({rows, C}, 10, DType::F32);
    const Tensor w = affine(rand({C}, 11, DType::F32), 0.5, 1.0), b = rand({C}, 12, DType::F32);
    check_parity("add_layer_norm(x, r, w, b)",
                 [](auto& v) {
                   const AddNormed o = add_layer_norm(v[0], v[1], v[2], v[3]);
                   return add(o.out, scale(o.sum, 0.5));
                 },
                 {x, r, w, b}, rows);
    check_parity("add_rms_norm(x, r, w)",
                 [](auto& v) {
                   const AddNormed o = add_rms_norm(v[0], v[1], v[2]);
                   return add(o.out, scale(o.sum, 0.5));
                 },
                 {x, r, w}, rows);
  }
  const Tensor x = rand({5, 1000}, 13), r = rand({5, 1000}, 14), w = rand({1000}, 15), b = rand({1000}, 16);
  check_parity("add_layer_norm f64",
               [](auto& v) {
                 const AddNormed o = add_layer_norm(v[0], v[1], v[2], v[3]);
                 return add(o.out, scale(o.sum, 0.5));
               },
               {x, r, w, b}, 5);
}
