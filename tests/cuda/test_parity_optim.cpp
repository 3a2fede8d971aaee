// CPU vs CUDA parity for the optimizers (cuda/optim.cu): several steps of
// AdamW, SGD (plain, momentum, Nesterov, coupled decay), Muon (+ its AdamW)
// and SAM around SGD/AdamW on the same random params and grads, comparing
// the params and every state tensor after the last step; grad_norm,
// clip_grad_norm and scale_grads. Sizes are odd (not multiples of 32/256),
// one tensor has more than 65536 elements (the CPU's OpenMP threshold) and
// the norm test has one with more than 1024 * 256 elements (the sum of
// squares' grid-stride loop runs more than once per thread). One param has
// no grad on one step (its state must not advance on either device).
//
// Tolerances. f32 AdamW/SGD/SAM: atol 1e-6, rtol 1e-5. The kernels use the
// CPU loop's order of operations without fma contraction, but the CPU side
// may differ by an ulp or two: with -march=native on an AVX-512 host
// Eigen's vectorised sqrt (EIGEN_FAST_MATH) is rsqrt14 + Newton, not the
// correctly rounded sqrt, and gcc may contract a*b + c into an fma. The
// updates are lr * O(1), so these ulps stay far below 1e-6 after 4 steps.
// f32 Muon: atol 2e-5, rtol 1e-4, because the Newton-Schulz iteration runs
// through matmul (cuBLAS, TF32 off, different summation order) and a
// full-tensor sum, and the quintic's coefficients (3.4, -4.8, 2.0) amplify
// those f32 roundings over 5 iterations. f64: 1e-12 (Muon 1e-10).
// Norms are sums of squares in double on both sides (f32 squares are exact
// in double), so only the summation order differs: relative 1e-12.
#include <doctest/doctest.h>

#include <memory>

#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sam.h"
#include "optim/sgd.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

struct Spec {
  std::string name;
  Shape shape;
};

// Two Muon matrices (".layers." and ".h.", rows > cols and rows < cols), a
// bias, a 67123-element embedding (AdamW/SGD only under Muon) and a [1] gain.
const std::vector<Spec> kSpecs = {
    {"gpt_neox.layers.0.attention.dense.weight", {37, 29}},
    {"gpt_neox.layers.0.attention.dense.bias", {37}},
    {"transformer.h.1.mlp.c_fc.weight", {13, 71}},
    {"gpt_neox.embed_in.weight", {301, 223}},
    {"gpt_neox.final_layer_norm.weight", {1}},
};

std::vector<NamedParam> make_params(const std::vector<Spec>& specs, DType dt, Device dev) {
  std::vector<NamedParam> out;
  for (size_t k = 0; k < specs.size(); ++k)
    out.push_back({specs[k].name,
                   Var(rand(specs[k].shape, 100 + k, dt).to(dev), true, specs[k].name)});
  return out;
}

// Fresh grads for step `step` (same values on both devices); param 1 gets
// none on step 1. scale multiplies them (clip tests).
void set_grads(std::vector<NamedParam>& ps, int step, double scale = 1.0) {
  for (size_t k = 0; k < ps.size(); ++k) {
    Var& v = ps[k].var;
    if (step == 1 && k == 1) {
      v.impl()->grad = Tensor();
      continue;
    }
    const Tensor g = affine(randn(v.shape(), 1000 * uint64_t(step) + k, v.dtype()), scale, 0.0);
    v.impl()->grad = g.to(v.device());
  }
}

void compare_params(const std::string& label, const std::vector<NamedParam>& gpu,
                    const std::vector<NamedParam>& cpu, double atol, double rtol) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t k = 0; k < cpu.size(); ++k) {
    CHECK(gpu[k].var.value().is_cuda());
    CHECK(check_close(label + " " + cpu[k].name, gpu[k].var.value().to(Device::cpu()),
                      cpu[k].var.value(), atol, rtol));
  }
}

void compare_state(const std::string& label, const NamedTensors& gpu, const NamedTensors& cpu,
                   double atol, double rtol) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    CHECK(gpu[i].first == cpu[i].first);
    const Tensor g = gpu[i].second.to(Device::cpu());
    if (cpu[i].second.dtype() == DType::I64)
      CHECK(g.to_vector() == cpu[i].second.to_vector());
    else
      CHECK(check_close(label + " " + cpu[i].first, g, cpu[i].second, atol, rtol));
  }
}

using MakeOpt = std::function<std::unique_ptr<Optimizer>(const std::vector<NamedParam>&)>;

// `steps` steps of the optimizer on both devices, then params and state.
void check_optimizer(const std::string& label, DType dt, const MakeOpt& make, double atol,
                     double rtol, int steps = 4) {
  CAPTURE(label);
  std::vector<NamedParam> cpu = make_params(kSpecs, dt, Device::cpu());
  std::vector<NamedParam> gpu = make_params(kSpecs, dt, Device::cuda());
  const std::unique_ptr<Optimizer> oc = make(cpu), og = make(gpu);
  const double lrs[] = {0.01, 0.02, 0.005, 0.01, 0.015};
  for (int s = 0; s < steps; ++s) {
    set_grads(cpu, s);
    set_grads(gpu, s);
    oc->step(lrs[s % 5]);
    og->step(lrs[s % 5]);
  }
  compare_params(label + " param", gpu, cpu, atol, rtol);
  compare_state(label + " state", og->state(), oc->state(), atol, rtol);
}

std::vector<ParamGroup> groups_with_scale(const std::vector<NamedParam>& ps, double wd) {
  std::vector<ParamGroup> g = default_param_groups(ps, wd);
  g.back().lr_scale = 2.0;  // the no-decay group: a second effective lr
  return g;
}

}  // namespace

TEST_CASE("cuda parity: adamw, 4 steps, decay and no-decay groups (f32, f64)") {
  for (DType dt : {DType::F32, DType::F64}) {
    const bool f64 = dt == DType::F64;
    check_optimizer("adamw", dt,
                    [](const std::vector<NamedParam>& ps) {
                      return std::make_unique<AdamW>(groups_with_scale(ps, 0.1));
                    },
                    f64 ? 1e-12 : 1e-6, f64 ? 1e-12 : 1e-5);
  }
}

TEST_CASE("cuda parity: sgd plain, momentum, nesterov, coupled decay (f32, f64)") {
  for (DType dt : {DType::F32, DType::F64}) {
    const bool f64 = dt == DType::F64;
    for (const SgdOptions& o : {SgdOptions{0.0, false}, SgdOptions{0.9, false},
                                SgdOptions{0.9, true}}) {
      CAPTURE(o.momentum);
      CAPTURE(o.nesterov);
      check_optimizer("sgd", dt,
                      [o](const std::vector<NamedParam>& ps) {
                        return std::make_unique<Sgd>(groups_with_scale(ps, 0.05), o);
                      },
                      f64 ? 1e-12 : 1e-6, f64 ? 1e-12 : 1e-5);
    }
  }
}

TEST_CASE("cuda parity: muon (+ aux adamw), nesterov and plain, decay (f32, f64)") {
  for (DType dt : {DType::F32, DType::F64}) {
    const bool f64 = dt == DType::F64;
    for (bool nesterov : {true, false}) {
      CAPTURE(nesterov);
      MuonOptions o;
      o.nesterov = nesterov;
      o.weight_decay = 0.01;
      o.adam_weight_decay = 0.1;
      check_optimizer("muon", dt,
                      [o](const std::vector<NamedParam>& ps) {
                        return std::make_unique<Muon>(ps, o);
                      },
                      f64 ? 1e-10 : 2e-5, f64 ? 1e-10 : 1e-4);
    }
  }
}

TEST_CASE("cuda parity: zeropower_via_newtonschulz5 (f32)") {
  for (const Shape& s : {Shape{37, 29}, Shape{13, 71}, Shape{1, 5}}) {
    const Tensor G = randn(s, 7, DType::F32);
    CHECK(check_close("ns5", zeropower_via_newtonschulz5(G.to(Device::cuda())).to(Device::cpu()),
                      zeropower_via_newtonschulz5(G), 2e-5, 1e-4));
  }
}

TEST_CASE("cuda parity: sam ascend / descend_and_step, plain and adaptive (f32)") {
  for (bool adaptive : {false, true}) {
    CAPTURE(adaptive);
    std::vector<NamedParam> cpu = make_params(kSpecs, DType::F32, Device::cpu());
    std::vector<NamedParam> gpu = make_params(kSpecs, DType::F32, Device::cuda());
    // Plain SAM around SGD with momentum, adaptive around AdamW.
    std::unique_ptr<Optimizer> bc, bg;
    if (adaptive) {
      bc = std::make_unique<AdamW>(groups_with_scale(cpu, 0.1));
      bg = std::make_unique<AdamW>(groups_with_scale(gpu, 0.1));
    } else {
      bc = std::make_unique<Sgd>(groups_with_scale(cpu, 0.05), SgdOptions{0.9, false});
      bg = std::make_unique<Sgd>(groups_with_scale(gpu, 0.05), SgdOptions{0.9, false});
    }
    Sam sc(*bc, adaptive), sg(*bg, adaptive);
    for (int s = 0; s < 4; s += 2) {
      set_grads(cpu, s);
      set_grads(gpu, s);
      // Both devices sum in double, so identical inputs give norms equal to
      // ~1e-12. The adaptive norm also reads the weights, which after the
      // first step agree only to the f32 tolerance of compare_params.
      const double norm_eps = adaptive && s > 0 ? 1e-5 : 1e-12;
      CHECK(sam_grad_norm(gpu, adaptive) ==
            doctest::Approx(sam_grad_norm(cpu, adaptive)).epsilon(norm_eps));
      const double nc = sc.ascend(0.05), ng = sg.ascend(0.05);
      CHECK(ng == doctest::Approx(nc).epsilon(norm_eps));
      compare_params("sam ascended", gpu, cpu, 1e-6, 1e-5);
      set_grads(cpu, s + 1);  // step 1 leaves param 1 without a grad
      set_grads(gpu, s + 1);
      sc.descend_and_step(0.01);
      sg.descend_and_step(0.01);
      compare_params("sam stepped", gpu, cpu, 1e-6, 1e-5);
    }
    compare_state("sam base state", bg->state(), bc->state(), 1e-6, 1e-5);
  }
}

TEST_CASE("cuda parity: grad_norm, clip_grad_norm, scale_grads (f32, f64)") {
  std::vector<Spec> specs = kSpecs;
  specs.push_back({"big", {513, 1031}});  // 528903 > 1024 * 256: several passes per thread
  for (DType dt : {DType::F32, DType::F64}) {
    const bool f64 = dt == DType::F64;
    // Elementwise products: the same IEEE multiply; the clip coefficient may
    // differ in its last bit (the totals' summation order differs).
    const double tol = f64 ? 1e-13 : 1e-6;
    std::vector<NamedParam> cpu = make_params(specs, dt, Device::cpu());
    std::vector<NamedParam> gpu = make_params(specs, dt, Device::cuda());
    set_grads(cpu, 1, 10.0);  // param 1 has no grad: skipped by both
    set_grads(gpu, 1, 10.0);
    const double nc = grad_norm(cpu), ng = grad_norm(gpu);
    CHECK(ng == doctest::Approx(nc).epsilon(1e-12));
    CHECK(grad_norm(gpu) == ng);  // deterministic: no atomics, fixed grid

    scale_grads(cpu, 0.25);
    scale_grads(gpu, 0.25);
    for (size_t k = 0; k < cpu.size(); ++k)
      if (cpu[k].var.grad().defined())
        CHECK(check_close("scale_grads " + cpu[k].name, gpu[k].var.grad().to(Device::cpu()),
                          cpu[k].var.grad(), 0.0, tol));

    const double tc = clip_grad_norm(cpu, 1.0), tg = clip_grad_norm(gpu, 1.0);
    CHECK(tg == doctest::Approx(tc).epsilon(1e-12));
    CHECK(tc > 1.0);  // the clip did scale
    for (size_t k = 0; k < cpu.size(); ++k)
      if (cpu[k].var.grad().defined())
        CHECK(check_close("clipped " + cpu[k].name, gpu[k].var.grad().to(Device::cpu()),
                          cpu[k].var.grad(), f64 ? 1e-15 : 1e-7, tol));
    CHECK(grad_norm(gpu) == doctest::Approx(1.0).epsilon(1e-5));
  }
}

// The multi-tensor AdamW (cuda::adamw_update_multi via adamw_update_all)
// against the per-tensor kernel on the GPU: the same operations on the same
// constants, so the same bits (atol 0). 75 tensors: three launches of up
// to 32, sizes from 0 to several chunks, f32 and f64 mixed, per-tensor
// steps, learning rates and weight decays.
TEST_CASE("cuda: multi-tensor AdamW gives the per-tensor kernel's bits") {
  std::vector<AdamWItem> multi, single;
  for (int i = 0; i < 75; ++i) {
    const DType dt = i % 5 == 4 ? DType::F64 : DType::F32;
    const int64_t n = i == 3 ? 0 : (int64_t(i) * 104729) % 40000 + (i % 7 == 0 ? 70000 : 1);
    AdamWHyper h;
    h.lr = 1e-3 * (1 + i % 3);
    h.weight_decay = i % 2 ? 0.1 : 0.0;
    h.step = 1 + i % 4;
    const Device dev = Device::cuda();
    const Tensor p = rand({n}, 1000 + i, dt).to(dev), m = affine(rand({n}, 2000 + i, dt), 0.1, 0).to(dev);
    const Tensor v = affine(rand({n}, 3000 + i, dt), 0.01, 0.02).to(dev), g = rand({n}, 4000 + i, dt).to(dev);
    multi.push_back({p.clone(), m.clone(), v.clone(), g, h});
    single.push_back({p.clone(), m.clone(), v.clone(), g, h});
  }
  adamw_update_all(multi);
  for (AdamWItem& it : single) adamw_update(it.param, it.exp_avg, it.exp_avg_sq, it.grad, it.h);
  for (size_t i = 0; i < multi.size(); ++i) {
    CAPTURE(i);
    CHECK(check_close("param", multi[i].param.to(Device::cpu()), single[i].param.to(Device::cpu()), 0, 0));
    CHECK(check_close("exp_avg", multi[i].exp_avg.to(Device::cpu()), single[i].exp_avg.to(Device::cpu()), 0, 0));
    CHECK(check_close("exp_avg_sq", multi[i].exp_avg_sq.to(Device::cpu()), single[i].exp_avg_sq.to(Device::cpu()),
                      0, 0));
  }
}
