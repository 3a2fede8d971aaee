// Optimizers against hand-computed steps (plain doubles, the formulas of the
// optim/*.h header comments), SAM's ascend/restore exactness, global-norm
// clipping, parameter groups on a tiny GPT-NeoX, state save/load, and the
// f16 loss-scale rule.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "optim/adamw.h"
#include "optim/loss_scaler.h"
#include "optim/muon.h"
#include "optim/sam.h"
#include "optim/sgd.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

NamedParam param(const std::string& name, const std::vector<double>& v, const Shape& shape,
                 DType dt = DType::F64) {
  return {name, Var(Tensor::from_vector(v, shape, dt), true, name)};
}
void set_grad(NamedParam& p, const std::vector<double>& g) {
  p.var.impl()->grad = Tensor::from_vector(g, p.var.shape(), p.var.dtype());
}
std::vector<double> values(const NamedParam& p) { return p.var.value().to_vector(); }
void check_values(const std::string& label, const NamedParam& p, const std::vector<double>& ref,
                  double rtol) {
  CHECK(check_close(label, p.var.value(), Tensor::from_vector(ref, p.var.shape(), DType::F64)
                                              .to(p.var.dtype()), 1e-12, rtol, true));
}

ModelConfig tiny_neox() {
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.vocab_size = 11;
  c.hidden_size = 16;  // head size 8: rotary dims 2 (must be even)
  c.num_heads = 2;
  c.num_layers = 2;
  c.intermediate_size = 24;
  c.max_positions = 8;
  return c;
}

}  // namespace

TEST_CASE("adamw: two hand-computed steps, decay and no-decay groups, f64 and f32") {
  for (DType dt : {DType::F64, DType::F32}) {
    const std::vector<double> w0 = {0.5, -1.0, 2.0}, b0 = {0.25, -0.75};
    const std::vector<std::vector<double>> gw = {{0.1, -0.2, 0.3}, {-0.4, 0.05, 0.3}};
    const std::vector<std::vector<double>> gb = {{1.0, -2.0}, {0.5, 0.5}};
    const double lrs[2] = {0.1, 0.05}, wd = 0.1, b1 = 0.9, b2 = 0.95, eps = 1e-8;
    NamedParam w = param("w", w0, {3}, dt), b = param("b", b0, {2}, dt);
    AdamW opt({{{w}, 1.0, wd}, {{b}, 2.0, 0.0}});  // b's group: lr_scale 2
    std::vector<double> rw = w0, rb = b0, mw(3, 0), vw(3, 0), mb(2, 0), vb(2, 0);
    auto ref_step = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                        const std::vector<double>& g, double lr, double decay, int t) {
      for (size_t i = 0; i < p.size(); ++i) {
        p[i] *= 1 - lr * decay;
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
        p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
      }
    };
    for (int t = 1; t <= 2; ++t) {
      set_grad(w, gw[t - 1]);
      set_grad(b, gb[t - 1]);
      opt.step(lrs[t - 1]);
      ref_step(rw, mw, vw, gw[t - 1], lrs[t - 1], wd, t);
      ref_step(rb, mb, vb, gb[t - 1], 2 * lrs[t - 1], 0.0, t);
    }
    const double rtol = dt == DType::F64 ? 1e-14 : 1e-6;
    check_values("adamw w", w, rw, rtol);
    check_values("adamw b", b, rb, rtol);
  }
}

TEST_CASE("adamw: a param without grad is skipped and its step does not advance") {
  NamedParam w = param("w", {1.0, 2.0}, {2}), u = param("u", {3.0}, {1});
  AdamW opt({{{w, u}, 1.0, 0.0}});
  set_grad(w, {1.0, -1.0});
  opt.step(0.1);
  CHECK(values(u) == std::vector<double>{3.0});
  const NamedTensors s = opt.state();
  CHECK(s.size() == 3);  // exp_avg.w, exp_avg_sq.w, step.w
  // first Adam step moves every coordinate by lr·sign(g) (up to eps)
  check_values("first step", w, {1.0 - 0.1, 2.0 + 0.1}, 1e-7);
}

TEST_CASE("sgd: momentum with and without nesterov, coupled weight decay, hand-computed") {
  for (bool nesterov : {false, true}) {
    const std::vector<double> w0 = {1.0, -2.0};
    const std::vector<std::vector<double>> g = {{0.5, 0.25}, {-1.0, 0.75}, {0.1, 0.2}};
    const double mu = 0.9, wd = 0.01, lr = 0.1;
    NamedParam w = param("w", w0, {2});
    Sgd opt({{{w}, 1.0, wd}}, SgdOptions{mu, nesterov});
    std::vector<double> p = w0, buf(2, 0);
    for (size_t t = 0; t < g.size(); ++t) {
      set_grad(w, g[t]);
      opt.step(lr);
      for (size_t i = 0; i < 2; ++i) {
        const double d = g[t][i] + wd * p[i];
        buf[i] = t == 0 ? d : mu * buf[i] + d;
        p[i] -= lr * (nesterov ? d + mu * buf[i] : buf[i]);
      }
    }
    check_values(nesterov ? "sgd nesterov" : "sgd momentum", w, p, 1e-14);
  }
  NamedParam v = param("v", {1.0}, {1});
  Sgd plain({{{v}, 1.0, 0.0}});
  set_grad(v, {2.0});
  plain.step(0.25);
  CHECK(values(v)[0] == 0.5);
  CHECK(plain.state().empty());
  CHECK_THROWS_WITH_AS(Sgd({{{v}, 1.0, 0.0}}, SgdOptions{0.0, true}),
                       doctest::Contains("nesterov needs momentum"), Error);
}

TEST_CASE("clip_grad_norm: torch's coefficient max/(total+1e-6), no change below the limit") {
  NamedParam a = param("a", {0, 0}, {2}), b = param("b", {0}, {1}), c = param("c", {0}, {1});
  set_grad(a, {3.0, 4.0});
  set_grad(b, {12.0});  // total = sqrt(9 + 16 + 144) = 13; c has no grad
  const double total = clip_grad_norm({a, b, c}, 1.0);
  CHECK(total == doctest::Approx(13.0).epsilon(1e-15));
  const double coef = 1.0 / (13.0 + 1e-6);
  CHECK(check_close("clipped a", a.var.grad(), Tensor::from_vector({3 * coef, 4 * coef}, {2}, DType::F64), 0, 1e-15, true));
  CHECK(b.var.grad().item() == doctest::Approx(12 * coef).epsilon(1e-15));
  CHECK(grad_norm({a, b}) == doctest::Approx(13.0 * coef).epsilon(1e-14));
  // below the limit: untouched
  set_grad(a, {0.3, 0.4});
  CHECK(clip_grad_norm({a}, 1.0) == doctest::Approx(0.5));
  CHECK(a.var.grad().to_vector() == std::vector<double>{0.3, 0.4});
  // non-finite: returned, grads left alone for the caller to handle
  set_grad(a, {INFINITY, 1.0});
  CHECK(std::isinf(clip_grad_norm({a}, 1.0)));
  CHECK(a.var.grad().to_vector()[1] == 1.0);
  // f32 grads
  NamedParam f = param("f", {0, 0}, {2}, DType::F32);
  set_grad(f, {6.0, 8.0});
  CHECK(clip_grad_norm({f}, 5.0) == doctest::Approx(10.0));
  CHECK(f.var.grad().to_vector()[0] == doctest::Approx(3.0).epsilon(1e-6));
}

TEST_CASE("sam: ascend moves to w + rho g/||g||, descend restores bit-exactly, then steps") {
  for (bool adaptive : {false, true}) {
    const std::vector<double> w0 = {0.3, -1.7, 2.5}, u0 = {0.1};
    NamedParam w = param("w", w0, {3}), u = param("u", u0, {1});
    Sgd base({{{w, u}, 1.0, 0.0}});
    Sam sam(base, adaptive);
    const std::vector<double> g = {1.0, 2.0, -2.0}, gu = {0.5};
    set_grad(w, g);
    set_grad(u, gu);
    const double rho = 0.05;
    double norm2 = 0;
    for (size_t i = 0; i < 3; ++i) norm2 += std::pow((adaptive ? std::fabs(w0[i]) : 1.0) * g[i], 2);
    norm2 += std::pow((adaptive ? std::fabs(u0[0]) : 1.0) * gu[0], 2);
    const double norm = std::sqrt(norm2);
    CHECK(sam.ascend(rho) == doctest::Approx(norm).epsilon(1e-14));
    std::vector<double> expect(3);
    for (size_t i = 0; i < 3; ++i)
      expect[i] = w0[i] + rho * (adaptive ? w0[i] * w0[i] : 1.0) * g[i] / (norm + 1e-12);
    check_values(adaptive ? "asam ascended" : "sam ascended", w, expect, 1e-14);
    CHECK_THROWS_WITH_AS(sam.ascend(rho), doctest::Contains("called twice"), Error);
    // the caller recomputes the grads at w + e
    const std::vector<double> g2 = {-0.5, 0.25, 1.0};
    set_grad(w, g2);
    set_grad(u, {0.0});
    sam.descend_and_step(0.1);
    std::vector<double> after(3);
    for (size_t i = 0; i < 3; ++i) after[i] = w0[i] - 0.1 * g2[i];
    CHECK(values(w) == after);  // restore exact, then SGD exact in f64 for these values
    CHECK(values(u) == u0);
    CHECK_THROWS_WITH_AS(sam.descend_and_step(0.1), doctest::Contains("call ascend"), Error);
  }
  // descend restores bit-exactly even when the perturbation is not representable
  NamedParam p = param("p", {0.1, 0.2, 0.7}, {3}, DType::F32);
  const std::vector<double> before = values(p);
  Sgd base({{{p}, 1.0, 0.0}});
  Sam sam(base);
  set_grad(p, {0.3, 0.1, 0.9});
  sam.ascend(0.37);
  CHECK(values(p) != before);
  set_grad(p, {0, 0, 0});
  sam.descend_and_step(1.0);
  CHECK(values(p) == before);
}

TEST_CASE("param groups: tiny GPT-NeoX, norms and biases in the no-decay group") {
  Generator gen(3);
  auto model = make_model(tiny_neox(), gen);
  const auto params = model->parameters();
  const auto groups = default_param_groups(params, 0.1);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.1);
  CHECK(groups[1].weight_decay == 0.0);
  CHECK(groups[0].params.size() + groups[1].params.size() == params.size());
  for (const NamedParam& p : groups[0].params) {
    INFO(p.name);
    CHECK(p.var.dim() == 2);
  }
  bool saw_embed_in = false, saw_embed_out = false;
  for (const NamedParam& p : groups[0].params) {
    saw_embed_in |= p.name == "gpt_neox.embed_in.weight";
    saw_embed_out |= p.name == "embed_out.weight";
  }
  CHECK(saw_embed_in);  // Pythia decays the embeddings
  CHECK(saw_embed_out);
  int norms = 0, biases = 0;
  for (const NamedParam& p : groups[1].params) {
    INFO(p.name);
    CHECK(p.var.dim() == 1);
    norms += p.name.find("layernorm") != std::string::npos || p.name.find("layer_norm") != std::string::npos;
    biases += p.name.size() > 5 && p.name.substr(p.name.size() - 5) == ".bias";
  }
  CHECK(norms == 2 * 2 * 2 + 2);  // 2 layers x 2 norms x (weight, bias) + final norm
  CHECK(biases == 2 * 4 + 2 * 2 + 1);
  // ssnorm's scale [1] is no-decay too
  ModelConfig ss = tiny_neox();
  ss.norm = NormKind::SSNORM;
  for (const NamedParam& p : make_model(ss, gen)->parameters())
    if (p.name.find(".scale") != std::string::npos) CHECK(is_no_decay_param(p));
  // Muon's split
  int muon = 0;
  for (const NamedParam& p : params) muon += is_muon_param(p);
  CHECK(muon == 2 * 4);  // qkv, attention.dense, dense_h_to_4h, dense_4h_to_h per layer
  CHECK_THROWS_WITH_AS(AdamW({{{params[0], params[0]}, 1.0, 0.0}}), doctest::Contains("appears twice"), Error);
}

TEST_CASE("muon: Newton-Schulz shape/transposition, update scale, hand-computed 1x3 and 3x1 cases") {
  // A 1x3 matrix: X X^T = s (a scalar), and every NS step maps the singular
  // value s -> a s + b s^3 + c s^5 with the same direction.
  const std::vector<double> g = {3.0, 0.0, -4.0};  // norm 5
  const Tensor G = Tensor::from_vector(g, {1, 3}, DType::F64);
  double s = 5.0 / (5.0 + 1e-7);
  for (int i = 0; i < 5; ++i) s = 3.4445 * s - 4.7750 * s * s * s + 2.0315 * std::pow(s, 5);
  const Tensor O = zeropower_via_newtonschulz5(G, 5);
  CHECK(check_close("ns 1x3", O, Tensor::from_vector({3 * s / 5, 0, -4 * s / 5}, {1, 3}, DType::F64), 1e-14, 1e-13, true));
  // 3x1: transposed internally, same values, output shape kept
  const Tensor Ot = zeropower_via_newtonschulz5(G.transpose(0, 1), 5);
  CHECK(Ot.shape() == Shape{3, 1});
  CHECK(check_close("ns 3x1", Ot, O.transpose(0, 1).contiguous(), 1e-15, 0, false));
  // muon_update on [3, 1]: scale sqrt(3); nesterov U = (1-b) g + b M with M = (1-b) g
  Tensor M = Tensor::zeros({3, 1}, DType::F64);
  const Tensor U = muon_update(G.transpose(0, 1).contiguous(), M, 0.95, 5, true);
  CHECK(check_close("momentum", M, affine(G.transpose(0, 1).contiguous(), 0.05, 0), 1e-15, 1e-14));
  // U = (0.05 + 0.95*0.05) g: a positive multiple of g -> same direction, so
  // NS gives the same s' only if the norm matches; check the direction and scale.
  const double u_norm = (0.05 + 0.95 * 0.05) * 5.0;
  double su = u_norm / (u_norm + 1e-7);
  for (int i = 0; i < 5; ++i) su = 3.4445 * su - 4.7750 * su * su * su + 2.0315 * std::pow(su, 5);
  CHECK(check_close("muon update", U, Tensor::from_vector({std::sqrt(3.0) * 3 * su / 5, 0, -std::sqrt(3.0) * 4 * su / 5}, {3, 1}, DType::F64), 1e-14, 1e-12, true));
  // orthogonality on a random 6x4: singular values of O within NS5's band
  const Tensor R = randn({6, 4}, 5);
  const Tensor O2 = zeropower_via_newtonschulz5(R, 5);
  const Tensor gram = matmul_tensor(O2, O2, true, false);  // O^T O [4, 4]
  const auto gv = gram.to_vector();
  for (int i = 0; i < 4; ++i) {
    CHECK(gv[size_t(i * 4 + i)] > 0.25);  // s'^2 in (0.5^2, 1.5^2)
    CHECK(gv[size_t(i * 4 + i)] < 2.25);
  }
  CHECK_THROWS_WITH_AS(zeropower_via_newtonschulz5(Tensor::zeros({2, 2, 2}), 5), doctest::Contains("2-D"), Error);
}

TEST_CASE("muon optimizer: hidden matrices by Muon, the rest by AdamW with lr * adam_lr_scale") {
  Generator gen(4);
  auto model = make_model(tiny_neox(), gen, DType::F64);
  const auto params = model->parameters();
  MuonOptions mo;
  mo.weight_decay = 0.01;
  Muon opt(params, mo);
  std::vector<Tensor> before;
  for (const NamedParam& p : params) {
    before.push_back(p.var.value().clone());
    p.var.impl()->grad = randn(p.var.shape(), 17 + before.size());
  }
  const double lr = 0.02;
  opt.step(lr);
  for (size_t i = 0; i < params.size(); ++i) {
    const NamedParam& p = params[i];
    INFO(p.name);
    if (is_muon_param(p)) {
      Tensor m = Tensor::zeros_like(p.var.value());
      const Tensor o = muon_update(p.var.grad(), m, 0.95, 5, true);
      const Tensor expect = binary(affine(before[i], 1 - lr * 0.01, 0), affine(o, -lr, 0), BinaryOp::ADD);
      CHECK(check_close("muon param", p.var.value(), expect, 1e-15, 1e-13));
    } else {
      // AdamW's first step: -lr_adam * sign(g) (up to eps 1e-10), no decay by default
      const auto w0 = before[i].to_vector(), w1 = p.var.value().to_vector(), gg = p.var.grad().to_vector();
      const double lr_adam = lr * 3e-4 / 0.02;
      for (size_t k = 0; k < w0.size(); ++k)
        CHECK(w1[k] == doctest::Approx(w0[k] - lr_adam * (gg[k] > 0 ? 1 : -1)).epsilon(1e-9));
    }
  }
}

TEST_CASE("state save/load: an optimizer rebuilt from state() continues the same trajectory") {
  auto run = [](const std::string& kind) {
    Generator gen(5);
    auto model = make_model(tiny_neox(), gen, DType::F32);
    auto make_opt = [&](const std::vector<NamedParam>& ps) -> std::unique_ptr<Optimizer> {
      if (kind == "adamw") return std::make_unique<AdamW>(default_param_groups(ps, 0.1));
      if (kind == "sgd") return std::make_unique<Sgd>(default_param_groups(ps, 0.1), SgdOptions{0.9, true});
      return std::make_unique<Muon>(ps);
    };
    const auto params = model->parameters();
    // twin: the same weights in separate Vars
    std::vector<NamedParam> twin;
    for (const NamedParam& p : params) twin.push_back({p.name, Var(p.var.value().clone(), true, p.name)});
    auto a = make_opt(params);
    auto set_grads = [](const std::vector<NamedParam>& ps, uint64_t seed) {
      for (size_t i = 0; i < ps.size(); ++i)
        ps[i].var.impl()->grad = randn(ps[i].var.shape(), seed * 1000 + i, DType::F32);
    };
    for (uint64_t s = 0; s < 3; ++s) {
      set_grads(params, s);
      a->step(1e-2);
    }
    for (size_t i = 0; i < params.size(); ++i) twin[i].var.mutable_value().copy_(params[i].var.value());
    auto b = make_opt(twin);
    b->load_state(a->state());
    for (uint64_t s = 3; s < 6; ++s) {
      set_grads(params, s);
      set_grads(twin, s);
      a->step(5e-3);
      b->step(5e-3);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      INFO(kind << " " << params[i].name);
      CHECK(params[i].var.value().to_vector() == twin[i].var.value().to_vector());
    }
    // unknown and missing keys are errors
    NamedTensors st = a->state();
    st.emplace_back("bogus.key", Tensor::zeros({1}));
    CHECK_THROWS_WITH_AS(b->load_state(st), doctest::Contains("bogus.key"), Error);
  };
  run("adamw");
  run("sgd");
  run("muon");
}

TEST_CASE("errors: CUDA-free refusal message, mismatched state, zero_grad") {
  NamedParam w = param("w", {1, 2}, {2});
  AdamW opt({{{w}, 1.0, 0.0}});
  set_grad(w, {1, 1});
  opt.step(0.1);
  NamedTensors st = opt.state();
  st[0].second = Tensor::zeros({3}, DType::F64);
  CHECK_THROWS_WITH_AS(opt.load_state(st), doctest::Contains("exp_avg.w"), Error);
  Tensor p = Tensor::zeros({2}, DType::F64), m = Tensor::zeros({3}, DType::F64), v = Tensor::zeros({2}, DType::F64);
  CHECK_THROWS_WITH_AS(adamw_update(p, m, v, Tensor::zeros({2}, DType::F64), AdamWHyper{}),
                       doctest::Contains("exp_avg"), Error);
  Tensor pi = Tensor::zeros({2}, DType::I32);
  CHECK_THROWS_AS(adamw_update(pi, pi, pi, pi, AdamWHyper{}), Error);
  opt.zero_grad();
  CHECK(!w.var.grad().defined());
}

TEST_CASE("loss scale: halves on overflow, doubles after growth_interval finite steps, floor 1") {
  LossScale s{1024.0, 0};
  // Three finite steps with interval 3: doubles on the third, count restarts.
  CHECK_FALSE(loss_scale_overflowed(s, 3, true));
  CHECK_FALSE(loss_scale_overflowed(s, 3, true));
  CHECK(s.scale == 1024.0);
  CHECK(s.good_steps == 2);
  CHECK_FALSE(loss_scale_overflowed(s, 3, true));
  CHECK(s.scale == 2048.0);
  CHECK(s.good_steps == 0);
  // An overflow halves and resets the count of finite steps.
  CHECK_FALSE(loss_scale_overflowed(s, 3, true));
  CHECK(loss_scale_overflowed(s, 3, false));
  CHECK(s.scale == 1024.0);
  CHECK(s.good_steps == 0);
  // Down to 1; a non-finite gradient at 1 is not an overflow to retry.
  LossScale low{2.0, 0};
  CHECK(loss_scale_overflowed(low, 3, false));
  CHECK(low.scale == 1.0);
  CHECK_FALSE(loss_scale_overflowed(low, 3, false));
  CHECK(low.scale == 1.0);
  // Growth stops short of overflowing the double.
  LossScale top{std::ldexp(1.0, 1023), 0};
  CHECK_FALSE(loss_scale_overflowed(top, 1, true));
  CHECK(top.scale == std::ldexp(1.0, 1023));
  CHECK_THROWS_WITH_AS(check_loss_scale(LossScale{0.5, 0}, "state.json"),
                       doctest::Contains("state.json: loss scale state out of range"), Error);
  CHECK_THROWS_WITH_AS(check_loss_scale(LossScale{4.0, -1}, "state.json"), doctest::Contains("good steps -1"),
                       Error);
}

TEST_CASE("muon: the batched Newton-Schulz equals the one-by-one iteration") {
  // Mixed shapes (two of them transposes of one another, so they share a
  // batch), a lone shape, f32 and f64: the batch computes each matrix's norm
  // and products on its own slice.
  const std::vector<Shape> shapes = {{6, 4}, {4, 6}, {6, 4}, {5, 9}, {3, 3}, {4, 6}};
  for (DType dt : {DType::F64, DType::F32}) {
    std::vector<Tensor> gs;
    for (size_t i = 0; i < shapes.size(); ++i) gs.push_back(randn(shapes[i], 60 + i, dt));
    const std::vector<Tensor> batched = zeropower_via_newtonschulz5(gs, 5);
    REQUIRE(batched.size() == gs.size());
    const double tol = dt == DType::F64 ? 1e-13 : 2e-6;
    for (size_t i = 0; i < gs.size(); ++i) {
      CAPTURE(i);
      CHECK(batched[i].shape() == gs[i].shape());
      CHECK(batched[i].dtype() == dt);
      CHECK(check_close("batched ns", batched[i], zeropower_via_newtonschulz5(gs[i], 5), tol, tol));
    }
    // muon_updates: the momenta move as muon_update moves them.
    std::vector<Tensor> m1, m2;
    std::vector<Tensor*> pm;
    for (const Tensor& g : gs) {
      m1.push_back(affine(g, 0.5, 0.1));
      m2.push_back(affine(g, 0.5, 0.1));
    }
    for (Tensor& m : m1) pm.push_back(&m);
    const std::vector<Tensor> us = muon_updates(gs, pm, 0.9, 5, true);
    for (size_t i = 0; i < gs.size(); ++i) {
      const Tensor u = muon_update(gs[i], m2[i], 0.9, 5, true);
      CHECK(check_close("muon_updates", us[i], u, tol, tol));
      CHECK(check_close("momentum", m1[i], m2[i], 0, 0));
    }
  }
  CHECK_THROWS_WITH_AS(zeropower_via_newtonschulz5(std::vector<Tensor>{Tensor::zeros({2, 2, 2})}, 5),
                       doctest::Contains("matrix 0 must be 2-D"), Error);
}
