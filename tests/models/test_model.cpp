// make_model (initialisation, determinism), the norm option (rmsnorm and
// single-scale rmsnorm build and train), the KV cache.
#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "models/layers.h"
#include "tests/models/model_testing.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

ModelConfig tiny(Arch arch, NormKind norm = NormKind::LAYERNORM) {
  ModelConfig c = ModelConfig::preset(arch == Arch::GPT2 ? "gpt2" : "pythia-14m");
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.num_heads = 2;
  c.num_layers = 2;
  c.intermediate_size = 40;
  c.max_positions = 32;
  c.norm = norm;
  c.initializer_range = 0.2;  // O(1) activations: the nonlinearities matter
  return c;
}

Tensor ids_of(std::vector<int64_t> v, int64_t B) {
  const auto T = int64_t(v.size()) / B;
  return Tensor::from_data(v, {B, T});
}

// Plain SGD on every parameter.
void sgd_step(const LanguageModel& m, double lr) {
  NoGradGuard no_grad;
  for (const NamedParam& p : m.parameters()) {
    if (!p.var.grad().defined()) continue;
    Var v = p.var;
    v.mutable_value().copy_(binary(v.value(), affine(p.var.grad(), lr, 0.0), BinaryOp::SUB));
    v.zero_grad();
  }
}

}  // namespace

TEST_CASE("make_model: HF-style initialisation, the same model for a seed") {
  const ModelConfig c = ModelConfig::preset("pythia-14m");
  Generator g1(42), g2(42), g3(43);
  const auto a = make_model(c, g1), b = make_model(c, g2), d = make_model(c, g3);
  const auto pa = a->parameters(), pb = b->parameters(), pd = d->parameters();
  REQUIRE(pa.size() == param_specs(c).size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].name);
    CHECK(pa[i].var.requires_grad());
    CHECK(pa[i].var.name() == pa[i].name);
    CHECK(check_close(pa[i].name, pa[i].var.value(), pb[i].var.value(), 0, 0));
    const std::vector<double> v = pa[i].var.value().to_vector();
    const std::string& n = pa[i].name;
    if (n.find("norm") != std::string::npos && n.find(".weight") != std::string::npos) {
      for (double x : v) REQUIRE(x == 1.0);
    } else if (n.find(".bias") != std::string::npos) {
      for (double x : v) REQUIRE(x == 0.0);
    } else {
      double s2 = 0;
      for (double x : v) s2 += x * x;
      const double sd = std::sqrt(s2 / double(v.size()));
      CHECK(sd == doctest::Approx(0.02).epsilon(0.05));  // normal(0, initializer_range)
      CHECK(pd[i].var.value().to_vector()[0] != v[0]);   // another seed, another draw
    }
  }
  // f64 models are the f32 draws widened: one model per seed on every dtype.
  Generator g4(42);
  const auto e = make_model(tiny(Arch::GPT_NEOX), g4, DType::F64);
  Generator g5(42);
  const auto f = make_model(tiny(Arch::GPT_NEOX), g5, DType::F32);
  CHECK(check_close("f64 vs f32 init", e->parameters()[0].var.value(),
                    f->parameters()[0].var.value().to(DType::F64), 0, 0));
  CHECK_THROWS_WITH_AS(make_model(c, g1, DType::BF16), doctest::Contains("f32 or f64"), Error);
}

TEST_CASE("norm option: rmsnorm and ssnorm parameter tables") {
  for (Arch arch : {Arch::GPT_NEOX, Arch::GPT2}) {
    const auto ln = param_specs(tiny(arch, NormKind::LAYERNORM));
    const auto rms = param_specs(tiny(arch, NormKind::RMSNORM));
    const auto ss = param_specs(tiny(arch, NormKind::SSNORM));
    // Per layer two norms plus the final one: 5 norms.
    CHECK(ln.size() == rms.size() + 5);
    CHECK(ln.size() == ss.size() + 5);
    int scales = 0;
    for (const ParamSpec& s : ss) {
      if (s.name.size() > 6 && s.name.compare(s.name.size() - 6, 6, ".scale") == 0) {
        CHECK(s.shape == Shape{1});
        CHECK(s.init == ParamInit::ONES);
        ++scales;
      }
    }
    CHECK(scales == 5);
    // rmsnorm keeps each norm's weight and drops its bias.
    for (const ParamSpec& s : rms) {
      const bool is_norm = s.name.find("norm") != std::string::npos ||
                           s.name.find(".ln_") != std::string::npos;
      if (is_norm) CHECK(s.name.compare(s.name.size() - 7, 7, ".weight") == 0);
    }
  }
}

TEST_CASE("norm option: ssnorm is rms_norm without weight times one learned scalar") {
  const Var x(randn({2, 3, 16}, 5, DType::F64));
  Norm n;
  n.kind = NormKind::SSNORM;
  n.eps = 1e-5;
  n.scale = Var(Tensor::full({1}, 2.5, DType::F64), true);
  const Tensor got = norm_forward(n, x).value();
  // By hand: x / sqrt(mean(x^2) + eps) * 2.5 per row.
  const std::vector<double> xv = x.value().to_vector();
  std::vector<double> ref(xv.size());
  for (size_t r = 0; r < 6; ++r) {
    double ms = 0;
    for (size_t i = 0; i < 16; ++i) ms += xv[r * 16 + i] * xv[r * 16 + i];
    const double inv = 1.0 / std::sqrt(ms / 16 + 1e-5);
    for (size_t i = 0; i < 16; ++i) ref[r * 16 + i] = xv[r * 16 + i] * inv * 2.5;
  }
  CHECK(check_close("ssnorm", got, Tensor::from_vector(ref, got.shape(), DType::F64), 1e-13, 1e-13));
  CHECK(gradcheck("ssnorm", [&](const std::vector<Var>& v) {
    Norm m = n;
    m.scale = v[1];
    return norm_forward(m, v[0]);
  }, {x.value(), n.scale.value()}));
}

TEST_CASE("norm option: every variant trains and its norm parameters get gradients") {
  const Tensor ids = ids_of({1, 5, 9, 2, 0, 7, 3, 3, 12, 30, 4, 8, 6, 1, 22, 17}, 2);
  const Tensor targets = ids_of({5, 9, 2, 0, 7, 3, 3, -100, 30, 4, 8, 6, 1, 22, 17, -100}, 2);
  for (Arch arch : {Arch::GPT_NEOX, Arch::GPT2}) {
    for (NormKind norm : {NormKind::LAYERNORM, NormKind::RMSNORM, NormKind::SSNORM}) {
      INFO("arch ", int(arch), " norm ", int(norm));
      ModelConfig c = tiny(arch, norm);
      c.initializer_range = 0.02;
      Generator gen(11);
      const auto m = make_model(c, gen);
      double first = 0, last = 0;
      for (int step = 0; step < 20; ++step) {
        const Var loss = m->loss(ids, targets);
        loss.backward();
        if (step == 0) {
          first = loss.value().item();
          // Every parameter, norms included, receives a non-zero gradient.
          for (const NamedParam& p : m->parameters()) {
            INFO(p.name);
            REQUIRE(p.var.grad().defined());
            double g2 = 0;
            for (double g : p.var.grad().to_vector()) g2 += g * g;
            CHECK(g2 > 0);
          }
        }
        last = loss.value().item();
        sgd_step(*m, 0.5);
      }
      CHECK(last < first - 0.3);
    }
  }
}

TEST_CASE("kv cache: an empty cache with the whole prompt equals no cache") {
  for (const char* name : kModelFixtures) {
    INFO(name);
    const auto m = load_hf_model(model_fixture_dir(name));
    const Tensor ids = ids_of({1, 5, 9, 2, 0, 7, 3, 3, 12, 30}, 2);
    KVCache cache = m->make_cache(2, 16);
    REQUIRE(cache.k.size() == size_t(m->config().num_layers));
    CHECK(cache.k[0].shape() == Shape{2, m->config().num_heads, 16, m->config().head_size()});
    NoGradGuard no_grad;
    const Tensor full = m->logits(ids).value();
    CHECK(check_close("cached", m->logits(ids, &cache).value(), full, 0, 0));
    CHECK(cache.length == 5);
  }
}

TEST_CASE("kv cache: token-by-token continuation equals the full forward pass") {
  for (const char* name : kModelFixtures) {
    INFO(name);
    const auto m = load_hf_model(model_fixture_dir(name));
    const std::vector<int64_t> seq = {1, 5, 9, 2, 0, 7, 3, 3, 12, 30, 4, 8, 6, 1, 22, 17};
    const Tensor ids = ids_of(seq, 2);  // [2, 8]
    NoGradGuard no_grad;
    const Tensor full = m->logits(ids).value();  // [2, 8, V]
    KVCache cache = m->make_cache(2, 8);
    // A 3-token prompt, then two single tokens, then the last three at once.
    std::vector<Tensor> pieces;
    for (auto [start, len] : {std::pair<int64_t, int64_t>{0, 3}, {3, 1}, {4, 1}, {5, 3}}) {
      pieces.push_back(m->logits(ids.narrow(1, start, len).contiguous(), &cache).value());
      CHECK(cache.length == start + len);
    }
    const Tensor stitched = concat_tensor(pieces, 1);
    // Same maths in another association order (attention over a longer key
    // block, rotary at an offset): f32 rounding only.
    CHECK(check_close("incremental", stitched, full, 1e-5, 1e-5));
    CHECK_THROWS_WITH_AS(m->logits(ids.narrow(1, 0, 1).contiguous(), &cache),
                         doctest::Contains("exceed its capacity 8"), Error);
  }
}

TEST_CASE("kv cache: gradients still reach this call's keys and values") {
  Generator gen(3);
  const auto m = make_model(tiny(Arch::GPT_NEOX), gen);
  const Tensor ids = ids_of({1, 5, 9, 2}, 1);
  const Tensor targets = ids_of({5, 9, 2, 7}, 1);
  const Var l1 = cross_entropy(m->logits(ids), targets);
  l1.backward();
  std::map<std::string, Tensor> g1;
  for (const NamedParam& p : m->parameters()) {
    g1[p.name] = p.var.grad().clone();
    Var(p.var).zero_grad();
  }
  KVCache cache = m->make_cache(1, 4);
  const Var l2 = cross_entropy(m->logits(ids, &cache), targets);
  l2.backward();
  for (const NamedParam& p : m->parameters())
    CHECK(check_close(p.name, p.var.grad(), g1[p.name], 0, 0));
}

TEST_CASE("head_inputs: the head's operands give the model's loss through linear_cross_entropy") {
  for (Arch arch : {Arch::GPT_NEOX, Arch::GPT2}) {
    CAPTURE(int(arch));
    Generator gen(3);
    const auto m = make_model(tiny(arch), gen, DType::F32);
    const Tensor ids = ids_of({1, 5, 9, 2, 7, 3, 3, 8, 0, 36, 4, 11}, 2);
    const Tensor targets = ids_of({5, 9, 2, 7, 3, -100, 8, 0, 36, 4, 11, 6}, 2);
    const Var ref = m->loss(ids, targets);  // the CPU: logits, then cross_entropy
    ref.backward();
    std::map<std::string, Tensor> want;
    for (const NamedParam& p : m->parameters()) {
      want[p.name] = p.var.grad().clone();
      Var(p.var).zero_grad();
    }
    Var h, w;
    REQUIRE(m->head_inputs(ids, h, w));
    CHECK(check_close("logits", matmul_tensor(h.value(), w.value(), false, true), m->logits(ids).value(), 0, 0));
    const Var fused = linear_cross_entropy(h, w, targets, -100, 5);  // chunks of 5 of the 12 rows
    CHECK(fused.value().item() == doctest::Approx(ref.value().item()).epsilon(1e-6));
    fused.backward();
    for (const NamedParam& p : m->parameters())
      CHECK(check_close("grad " + p.name, p.var.grad(), want[p.name], 1e-6, 1e-5));

    // A hook on the head's input: no operands, loss() takes the logits path.
    m->set_activation_transform([](const std::string&, const Var& x) { return x; });
    CHECK_FALSE(m->head_inputs(ids, h, w));
    CHECK(m->loss(ids, targets).value().item() == ref.value().item());
  }
}
