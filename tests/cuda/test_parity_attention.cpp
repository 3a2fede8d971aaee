// CPU vs CUDA: causal attention (Tq == Tk and Tq < Tk) and rotary
// embedding, outputs and every input gradient (the backward is seeded with
// a random dL/dout).
//
// Tolerances (f32 inputs; |values| = O(1) with randn inputs):
//   attention: the CPU sums in double, the GPU in f32 over up to T = 130
//     keys and HS = 128 dims, so differences are a few f32 ulps times
//     sqrt(T * HS): out atol 2e-5 + rtol 1e-4; gradients, which also pass
//     through dP - D (a cancellation of O(sqrt(HS)) terms), atol 1e-4 +
//     rtol 1e-3. Any indexing or masking error gives O(0.1-1) differences.
//     f64: atol 1e-12 + rtol 1e-10.
//   bf16 / f16 operands: see their test case.
//   rotary: both devices round the same double cos/sin to f32; only the
//     contraction of x*c - y*s into an fma may differ: atol 1e-6 + rtol 1e-6.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/attention.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/rotary.h"
#include "cuda/attention.h"
#include "cuda/runtime.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Run {
  Tensor out;
  std::vector<Tensor> grads;  // one per input
};

// fn on the inputs moved to `device` (all require grad), backward seeded
// with R; results copied to the CPU.
Run run_on(Device device, const VarFn& fn, const std::vector<Tensor>& inputs, const Tensor& R) {
  std::vector<Var> vars;
  for (const Tensor& t : inputs) vars.emplace_back(t.to(device), true);
  const Var out = fn(vars);
  sum(mul(out, Var(R.to(device)))).backward();
  Run r{out.value().to(Device::cpu()), {}};
  for (const Var& v : vars) r.grads.push_back(v.grad().to(Device::cpu()));
  return r;
}

bool parity(const std::string& label, const VarFn& fn, const std::vector<Tensor>& inputs,
            double atol_out, double rtol_out, double atol_grad, double rtol_grad, uint64_t seed) {
  Tensor out_shape_probe;
  {
    NoGradGuard no_grad;
    std::vector<Var> vars;
    for (const Tensor& t : inputs) vars.emplace_back(t);
    out_shape_probe = fn(vars).value();
  }
  const Tensor R = randn(out_shape_probe.shape(), seed, inputs[0].dtype());
  const Run cpu = run_on(Device::cpu(), fn, inputs, R);
  const Run gpu = run_on(Device::cuda(), fn, inputs, R);
  bool ok = check_close(label + " out", gpu.out, cpu.out, atol_out, rtol_out);
  for (size_t i = 0; i < inputs.size(); ++i)
    ok = check_close(label + " d(input " + std::to_string(i) + ")", gpu.grads[i], cpu.grads[i],
                     atol_grad, rtol_grad) &&
         ok;
  return ok;
}

}  // namespace

TEST_CASE("cuda parity: attention f32 at odd and even sizes") {
  // {B, NH, T, HS}: T = 1, 7, 33, 130, 300 (not multiples of the 64-row
  // tiles of the f32 kernels; 300 spans five of them), HS = 64, 128 and the
  // odd 24, 7, 1, 80 and 33 (zero-padded to the kernels' 32, 64 or 128).
  const std::vector<Shape> shapes{{1, 1, 1, 64},   {2, 3, 7, 64},    {1, 2, 33, 128},
                                  {2, 2, 130, 24}, {1, 2, 130, 128}, {2, 1, 33, 7},
                                  {1, 1, 40, 1},   {1, 2, 300, 64},  {1, 1, 200, 80},
                                  {2, 1, 129, 33}, {1, 1, 257, 128}};
  uint64_t seed = 100;
  for (const Shape& s : shapes) {
    CAPTURE(shape_str(s));
    const double scale = 1.0 / std::sqrt(double(s[3]));
    const std::vector<Tensor> in{randn(s, seed, DType::F32), randn(s, seed + 1, DType::F32),
                                 randn(s, seed + 2, DType::F32)};
    CHECK(parity("attention", [scale](auto& v) { return attention(v[0], v[1], v[2], scale); },
                 in, 2e-5, 1e-4, 1e-4, 1e-3, seed + 3));
    seed += 10;
  }
}

TEST_CASE("cuda parity: attention with fewer queries than keys (KV cache)") {
  // {B, NH, HS}, Tq, Tk: decode steps (Tq = 1) at chunk-boundary lengths,
  // short continuations, and Tq = Tk - 1. In the dk/dv kernel, key rows
  // s < Tk - Tq see every query and later keys fewer: both regimes appear.
  struct Case {
    int64_t B, NH, HS, Tq, Tk;
  };
  const std::vector<Case> cases{{1, 2, 64, 1, 1},      {2, 3, 64, 1, 33},  {1, 2, 128, 1, 130},
                                {2, 2, 24, 5, 37},     {1, 2, 7, 32, 65},  {2, 1, 128, 129, 130},
                                {1, 1, 1, 3, 40},      {1, 2, 64, 100, 300}, {1, 1, 64, 1, 300},
                                {2, 1, 32, 130, 200}};
  uint64_t seed = 300;
  for (const Case& c : cases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    CAPTURE(c.HS);
    const double scale = 1.0 / std::sqrt(double(c.HS));
    const std::vector<Tensor> in{randn({c.B, c.NH, c.Tq, c.HS}, seed, DType::F32),
                                 randn({c.B, c.NH, c.Tk, c.HS}, seed + 1, DType::F32),
                                 randn({c.B, c.NH, c.Tk, c.HS}, seed + 2, DType::F32)};
    CHECK(parity("attention Tq<Tk",
                 [scale](auto& v) { return attention(v[0], v[1], v[2], scale); }, in, 2e-5,
                 1e-4, 1e-4, 1e-3, seed + 3));
    seed += 10;
  }
  const std::vector<Tensor> in64{randn({2, 2, 3, 24}, 1), randn({2, 2, 37, 24}, 2),
                                 randn({2, 2, 37, 24}, 3)};
  CHECK(parity("attention Tq<Tk f64", [](auto& v) { return attention(v[0], v[1], v[2], 0.2); },
               in64, 1e-12, 1e-10, 1e-12, 1e-10, 4));
}

TEST_CASE("cuda parity: attention f64 and a peaked softmax") {
  const Shape s{2, 2, 37, 24};
  const std::vector<Tensor> in{randn(s, 1), randn(s, 2), randn(s, 3)};
  CHECK(parity("attention f64", [](auto& v) { return attention(v[0], v[1], v[2], 0.2); }, in,
               1e-12, 1e-10, 1e-12, 1e-10, 4));
  // scale 2 on randn inputs: row maxima far above the rest, exercising the
  // online-softmax rescaling (the running max changes between chunks).
  const std::vector<Tensor> in32{randn(s, 5, DType::F32), randn(s, 6, DType::F32),
                                 randn(s, 7, DType::F32)};
  CHECK(parity("attention peaked", [](auto& v) { return attention(v[0], v[1], v[2], 2.0); },
               in32, 2e-5, 1e-4, 1e-3, 1e-3, 8));
}

TEST_CASE("cuda parity: attention on the tensor cores (TF32)") {
  // With TF32 on (run.tf32), f32 attention runs cuda/flash_attention_tc.cu:
  // q, k, v, P and dS are rounded to TF32 (10-bit mantissa, relative error
  // 2^-11) before each product, f32 accumulation. Scores (O(1) with
  // scale = 1/sqrt(HS) on randn inputs) then carry ~1e-3 absolute error,
  // and so do P and out: atol = rtol = 4e-3 for out. Gradients go through
  // dP - D and sums over up to 300 rows: atol 3e-2 + rtol 2e-2. An indexing
  // or masking error gives O(0.1-1) differences, far above these.
  struct Tf32On {
    Tf32On() { cuda::set_tf32(true); }
    ~Tf32On() { cuda::set_tf32(false); }
  } tf32_on;
  struct Case {
    int64_t B, NH, HS, Tq, Tk;
  };
  const std::vector<Case> cases{{1, 1, 64, 1, 1},     {2, 3, 64, 7, 7},     {1, 2, 128, 130, 130},
                                {2, 2, 24, 33, 33},   {1, 2, 64, 300, 300}, {1, 1, 80, 200, 200},
                                {2, 1, 7, 65, 65},    {1, 2, 64, 100, 300}, {1, 1, 64, 1, 300},
                                {2, 1, 32, 130, 200}, {1, 1, 128, 1, 130}};
  uint64_t seed = 700;
  for (const Case& c : cases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    CAPTURE(c.HS);
    const double scale = 1.0 / std::sqrt(double(c.HS));
    const std::vector<Tensor> in{randn({c.B, c.NH, c.Tq, c.HS}, seed, DType::F32),
                                 randn({c.B, c.NH, c.Tk, c.HS}, seed + 1, DType::F32),
                                 randn({c.B, c.NH, c.Tk, c.HS}, seed + 2, DType::F32)};
    CHECK(parity("attention tf32", [scale](auto& v) { return attention(v[0], v[1], v[2], scale); },
                 in, 4e-3, 4e-3, 3e-2, 2e-2, seed + 3));
    seed += 10;
  }
}

TEST_CASE("cuda parity: attention with bf16 and f16 operands (run.precision)") {
  // Under run.precision bf16 / f16 both devices round q, k, v and dout to
  // the 16-bit type (autograd/ops/attention.cpp); the GPU's tensor-core
  // kernels also round P and dS before their products, which the CPU
  // reference does not: relative 2^-9 (bf16) or 2^-12 (f16) per
  // probability, the size of TF32's whole error budget above for bf16. So
  // bf16: out atol = rtol = 1e-2, gradients 6e-2; f16: the TF32 bounds. An
  // indexing, layout or masking error gives O(0.1-1) differences.
  struct Case {
    int64_t B, NH, HS, Tq, Tk;
  };
  const std::vector<Case> cases{{1, 1, 64, 1, 1},     {2, 3, 64, 7, 7},     {1, 2, 128, 130, 130},
                                {2, 2, 24, 33, 33},   {1, 2, 64, 300, 300}, {1, 1, 80, 200, 200},
                                {2, 1, 7, 65, 65},    {1, 2, 64, 100, 300}, {1, 1, 64, 1, 300},
                                {2, 1, 32, 130, 200}, {1, 1, 128, 1, 130}};
  // Both 16-bit kernel families: mma.sync with register-resident scores
  // (the default) and WMMA (GRIDLOCK_ATTENTION_MMA=0).
  struct MmaSetting {
    explicit MmaSetting(bool on) { cuda::set_attention_mma(on); }
    ~MmaSetting() { cuda::set_attention_mma(true); }
  };
  for (bool mma : {true, false})
  for (MatmulPrecision p : {MatmulPrecision::BF16, MatmulPrecision::F16}) {
    const MmaSetting setting(mma);
    const bool bf16 = p == MatmulPrecision::BF16;
    uint64_t seed = bf16 ? 900 : 1100;
    for (const Case& c : cases) {
      CAPTURE(mma);
      CAPTURE(bf16);
      CAPTURE(c.Tq);
      CAPTURE(c.Tk);
      CAPTURE(c.HS);
      const double scale = 1.0 / std::sqrt(double(c.HS));
      const std::vector<Tensor> in{randn({c.B, c.NH, c.Tq, c.HS}, seed, DType::F32),
                                   randn({c.B, c.NH, c.Tk, c.HS}, seed + 1, DType::F32),
                                   randn({c.B, c.NH, c.Tk, c.HS}, seed + 2, DType::F32)};
      // The guard is read when the op runs forward; its backward keeps that choice.
      auto fn = [scale, p](auto& v) {
        const MatmulPrecisionGuard guard(p);
        return attention(v[0], v[1], v[2], scale);
      };
      CHECK(parity(bf16 ? "attention bf16" : "attention f16", fn, in, bf16 ? 1e-2 : 4e-3,
                   bf16 ? 1e-2 : 4e-3, bf16 ? 6e-2 : 3e-2, bf16 ? 6e-2 : 2e-2, seed + 3));
      seed += 10;
    }
  }
}

TEST_CASE("cuda parity: rotary f32 partial and full, with offsets") {
  struct Case {
    Shape shape;
    int64_t rotary_dim, offset;
  };
  const std::vector<Case> cases{{{1, 2, 1, 64}, 16, 0},   {{2, 3, 7, 64}, 64, 0},
                                {{1, 2, 33, 128}, 32, 37}, {{2, 1, 130, 24}, 8, 5},
                                {{1, 1, 130, 128}, 128, 2000}, {{2, 2, 7, 24}, 24, 1}};
  uint64_t seed = 200;
  for (const Case& c : cases) {
    CAPTURE(shape_str(c.shape));
    CAPTURE(c.rotary_dim);
    const int64_t rd = c.rotary_dim, off = c.offset;
    CHECK(parity("rotary", [rd, off](auto& v) { return rotary(v[0], rd, 10000.0, off); },
                 {randn(c.shape, seed, DType::F32)}, 1e-6, 1e-6, 1e-6, 1e-6, seed + 1));
    seed += 10;
  }
  CHECK(parity("rotary f64", [](auto& v) { return rotary(v[0], 16, 10000.0, 3); },
               {randn({2, 2, 9, 24}, 7)}, 1e-14, 1e-13, 1e-14, 1e-13, 8));
}
