// Sync-free steps (optim/step_gate.h) on the CPU:
//   - check_step's gate holds the host path's numbers: the mean loss,
//     grad_norm, clip_grad_norm's coefficient, and "not applied" for a
//     non-finite loss or gradient;
//   - clip_by_gate scales exactly as clip_grad_norm does;
//   - a gated optimizer step with the gate open is step(); with it closed
//     plus settle(false) it is as if the step had never been taken (params,
//     every state tensor, and the step counts of the steps after it), for
//     AdamW, SGD with momentum and Muon, including a dropped first step;
//   - nan_grads_unless_finite: the grads of loss.backward() bit for bit
//     under a finite loss, all NaN under an infinite or NaN one.
// The CUDA kernels are compared with these on a GPU
// (tests/cuda/test_parity_step_gate.cpp); the trainer's two paths with each
// other in tests/trainer/test_sync_free.cpp.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>

#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/ops/softmax.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sgd.h"
#include "optim/step_gate.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

std::vector<NamedParam> make_params() {
  const std::vector<std::pair<std::string, Shape>> specs = {
      {"gpt_neox.layers.0.attention.dense.weight", {9, 7}},
      {"gpt_neox.layers.0.attention.dense.bias", {9}},
      {"gpt_neox.layers.1.mlp.dense_4h_to_h.weight", {5, 11}},
      {"gpt_neox.embed_in.weight", {13, 6}},
  };
  std::vector<NamedParam> out;
  for (size_t k = 0; k < specs.size(); ++k)
    out.push_back({specs[k].first, Var(rand(specs[k].second, 40 + k, DType::F32), true, specs[k].first)});
  return out;
}

void set_grads(std::vector<NamedParam>& ps, uint64_t seed, double scale = 1.0) {
  for (size_t k = 0; k < ps.size(); ++k)
    ps[k].var.impl()->grad = affine(randn(ps[k].var.shape(), seed * 100 + k, DType::F32), scale, 0.0);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

void check_same_state(const std::vector<NamedParam>& pa, const Optimizer& a, const std::vector<NamedParam>& pb,
                      const Optimizer& b) {
  for (size_t k = 0; k < pa.size(); ++k) {
    CAPTURE(pa[k].name);
    CHECK(same_bits(pa[k].var.value(), pb[k].var.value()));
  }
  const NamedTensors sa = a.state(), sb = b.state();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    CAPTURE(sa[i].first);
    CHECK(sa[i].first == sb[i].first);
    CHECK(same_bits(sa[i].second, sb[i].second));
  }
}

Tensor gate_of(double v) { return Tensor::from_vector({v}, {1}, DType::F64); }

using Make = std::function<std::unique_ptr<Optimizer>(const std::vector<NamedParam>&)>;

}  // namespace

TEST_CASE("step gate: check_step holds the host path's loss, norm, clip factor and verdict") {
  std::vector<NamedParam> ps = make_params();
  set_grads(ps, 1);
  const std::vector<Tensor> losses = {Tensor::from_vector({2.5}, {}, DType::F32),
                                      Tensor::from_vector({3.25}, {}, DType::F32)};
  const double norm = grad_norm(ps);
  {
    const std::vector<double> v = check_step(ps, losses, 0.0).values.to_vector_as<double>();
    CHECK(v[0] == (2.5 + 3.25) / 2);
    CHECK(v[1] == norm);
    CHECK(v[2] == 1.0);
    CHECK(v[3] == 1.0);  // no clipping asked
  }
  {
    const std::vector<double> v = check_step(ps, losses, norm * 2).values.to_vector_as<double>();
    CHECK(v[3] == 1.0);  // under the threshold
  }
  {
    const double max_norm = norm / 3;
    const StepGate g = check_step(ps, losses, max_norm);
    CHECK(g.values.to_vector_as<double>()[3] == max_norm / (norm + 1e-6));
    // clip_by_gate gives clip_grad_norm's grads, bit for bit.
    std::vector<NamedParam> ref = make_params();
    set_grads(ref, 1);
    CHECK(clip_grad_norm(ref, max_norm) == norm);
    clip_by_gate(ps, g);
    for (size_t k = 0; k < ps.size(); ++k) CHECK(same_bits(ps[k].var.grad(), ref[k].var.grad()));
  }
  {
    // A NaN gradient: the norm is NaN and the step is not applied.
    set_grads(ps, 2);
    Tensor g = ps[2].var.grad();
    g.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<double> v = check_step(ps, losses, 1.0).values.to_vector_as<double>();
    CHECK(std::isnan(v[1]));
    CHECK(v[2] == 0.0);
    CHECK(v[3] == 1.0);
  }
  {
    // A non-finite loss (or the inf_loss fault): no norm, not applied.
    set_grads(ps, 3);
    const std::vector<Tensor> bad = {Tensor::from_vector({1.0}, {}, DType::F32),
                                     Tensor::from_vector({INFINITY}, {}, DType::F32)};
    for (const auto& [ls, poison] : {std::pair{bad, false}, std::pair{losses, true}}) {
      const std::vector<double> v = check_step(ps, ls, 1.0, poison).values.to_vector_as<double>();
      CHECK(std::isinf(v[0]));
      CHECK(std::isnan(v[1]));
      CHECK(v[2] == 0.0);
    }
  }
  // The host reads the gate back through a GateReader.
  GateReader reader;
  reader.start(check_step(ps, losses, 0.0));
  const StepOutcome out = reader.wait();
  CHECK(out.loss == (2.5 + 3.25) / 2);
  CHECK(out.applied);
}

TEST_CASE("step gate: a closed gate plus settle(false) is a step never taken (adamw, sgd, muon)") {
  const std::vector<std::pair<const char*, Make>> makers = {
      {"adamw", [](const std::vector<NamedParam>& p) {
         return std::make_unique<AdamW>(default_param_groups(p, 0.1));
       }},
      {"sgd momentum", [](const std::vector<NamedParam>& p) {
         SgdOptions o;
         o.momentum = 0.9;
         return std::make_unique<Sgd>(default_param_groups(p, 0.01), o);
       }},
      {"muon", [](const std::vector<NamedParam>& p) { return std::make_unique<Muon>(p); }},
  };
  for (const auto& [name, make] : makers) {
    const std::string label = name;  // a copy: clang 14 cannot capture a structured binding
    CAPTURE(label);
    REQUIRE(make(make_params())->supports_gated_step());
    // The reference takes steps with grads 1, 3, 4; the gated optimizer
    // is also offered grads 2 (dropped) between them.
    std::vector<NamedParam> pa = make_params(), pb = make_params();
    const std::unique_ptr<Optimizer> a = make(pa), b = make(pb);
    for (uint64_t seed : {1, 3, 4}) {
      set_grads(pa, seed);
      a->step(0.01);
    }
    for (uint64_t seed : {1, 2, 3, 4}) {
      const bool open = seed != 2;
      set_grads(pb, seed);
      b->step_gated(0.01, gate_of(open ? 1.0 : 0.0));
      b->settle(open);
    }
    check_same_state(pa, *a, pb, *b);

    // A dropped first step leaves no state behind.
    std::vector<NamedParam> pc = make_params(), pd = make_params();
    const std::unique_ptr<Optimizer> c = make(pc), d = make(pd);
    set_grads(pc, 6);
    c->step(0.02);
    set_grads(pd, 5);
    d->step_gated(0.02, gate_of(0.0));
    d->settle(false);
    CHECK(d->state().empty());
    set_grads(pd, 6);
    d->step_gated(0.02, gate_of(1.0));
    d->settle(true);
    check_same_state(pc, *c, pd, *d);
  }
}

TEST_CASE("step gate: optimizers without a gated step refuse it by name") {
  std::vector<NamedParam> ps = make_params();
  struct Plain : Optimizer {
    using Optimizer::Optimizer;
    void step(double) override {}
    NamedTensors state() const override { return {}; }
    void load_state(const NamedTensors&) override {}
  } plain(default_param_groups(ps, 0.0));
  CHECK(!plain.supports_gated_step());
  CHECK_THROWS_WITH_AS(plain.step_gated(0.1, gate_of(1.0)), doctest::Contains("no sync-free (gated) step"),
                       Error);
}

TEST_CASE("step gate: nan_grads_unless_finite keeps a finite loss's grads and poisons a non-finite one's") {
  const Tensor w0 = rand({7, 5}, 11, DType::F32), x = randn({3, 7}, 12, DType::F32);
  // loss = 0.75 sum(softmax(x w)^2) + offset: an infinite or NaN offset, a
  // constant, makes the loss non-finite while its gradient stays finite.
  auto grads_of = [&](double offset, bool guarded) {
    Var w(w0.clone(), true, "w");
    const Var y = softmax(matmul(Var(x), w));
    const Var base = scale(sum(mul(y, y)), 0.75);
    const Var loss = add(base, Var(Tensor::full(base.value().shape(), offset, DType::F32)));
    if (guarded) nan_grads_unless_finite(loss).backward();
    else loss.backward();
    return w.grad();
  };
  CHECK(same_bits(grads_of(0.0, true), grads_of(0.0, false)));
  for (double bad : {double(INFINITY), double(NAN)}) {
    for (double v : grads_of(bad, false).to_vector()) CHECK(std::isfinite(v));  // what the guard is for
    for (double v : grads_of(bad, true).to_vector()) CHECK(std::isnan(v));
  }
}

TEST_CASE("step gate: the spike window closes the gate on a spike and keeps the applied losses") {
  std::vector<NamedParam> ps = make_params();
  set_grads(ps, 4);
  SpikeWindow w = make_spike_window({1.0, 2.0, 3.0, 4.0}, 3, 1.5, Device::cpu());
  CHECK(spike_window_losses(w) == std::vector<double>{2.0, 3.0, 4.0});  // the newest 3
  // 4.5 is not above 1.5 x mean{2, 3, 4} = 4.5: applied, it joins the
  // window; 6 is above 1.5 x mean{3, 4, 4.5} = 5.75: closed, window kept.
  const std::pair<double, double> steps[] = {{4.5, 1.0}, {6.0, 0.0}, {1.0, 1.0}};
  for (const auto& [loss, applied] : steps) {
    const double l = loss;
    CAPTURE(l);
    const std::vector<Tensor> losses = {Tensor::from_vector({loss}, {}, DType::F32)};
    CHECK(check_step(ps, losses, 0.0, false, &w).values.to_vector_as<double>()[2] == applied);
  }
  CHECK(spike_window_losses(w) == std::vector<double>{4.0, 4.5, 1.0});
  // A window that is not full judges nothing.
  SpikeWindow young = make_spike_window({1.0}, 3, 1.5, Device::cpu());
  const std::vector<Tensor> big = {Tensor::from_vector({100.0}, {}, DType::F32)};
  CHECK(check_step(ps, big, 0.0, false, &young).values.to_vector_as<double>()[2] == 1.0);
  CHECK(spike_window_losses(young) == std::vector<double>{1.0, 100.0});
}
