// quant/probe.h on tiny random models: the gap arithmetic against a model
// quantized by hand, INT8 far below INT4, weights restored bit-exactly,
// exactly 1 + n_formats evaluation passes (counted by a model wrapper),
// layer selection and its errors, GPT-2's transposed Conv1D weights, bin
// flips between two hand-made models.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "core/error.h"
#include "models/model.h"
#include "quant/probe.h"
#include "quant/quantizer.h"

using namespace gl;

namespace {

ModelConfig tiny_neox() {
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.vocab_size = 13;
  c.hidden_size = 16;  // head size 8: rotary dims 2
  c.num_heads = 2;
  c.num_layers = 2;
  c.intermediate_size = 32;
  c.max_positions = 12;
  return c;
}

// Group size 8 divides every input dimension of the tiny models (16, 32).
std::vector<QuantSpec> tiny_formats() {
  return {quant_spec_from_string("int4_probe:g8"), quant_spec_from_string("int8_probe:g8")};
}

ProbeOptions tiny_options() {
  ProbeOptions o;
  o.formats = tiny_formats();
  return o;
}

// Counts logits() calls (loss() calls logits() once) and forwards the rest:
// the number of forward passes the probe made, seen from outside it.
class CountingModel : public LanguageModel {
 public:
  explicit CountingModel(const LanguageModel& inner) : LanguageModel(inner.config()), inner_(inner) {}
  Var logits(const Tensor& ids, KVCache* cache = nullptr) const override {
    ++calls;
    return inner_.logits(ids, cache);
  }
  std::vector<NamedParam> parameters() const override { return inner_.parameters(); }
  mutable int64_t calls = 0;

 private:
  const LanguageModel& inner_;
};

// Random windows; `n` batches of [2, T-1] ids and next-token targets.
std::vector<std::pair<Tensor, Tensor>> random_batches(const ModelConfig& cfg, int n, uint64_t seed) {
  std::vector<std::pair<Tensor, Tensor>> out;
  uint64_t x = seed;
  for (int b = 0; b < n; ++b) {
    const int64_t T = cfg.max_positions - 1 - b;  // batches of different lengths
    std::vector<int32_t> ids(size_t(2 * T)), tg(size_t(2 * T));
    for (size_t i = 0; i < ids.size(); ++i) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      ids[i] = int32_t((x >> 33) % uint64_t(cfg.vocab_size));
      tg[i] = int32_t((x >> 13) % uint64_t(cfg.vocab_size));
    }
    out.push_back({Tensor::from_data(ids, {2, T}), Tensor::from_data(tg, {2, T})});
  }
  return out;
}

std::vector<std::vector<double>> snapshot(const LanguageModel& m) {
  std::vector<std::vector<double>> s;
  for (const NamedParam& p : m.parameters()) s.push_back(p.var.value().to_vector());
  return s;
}

// Scales the model's 2-D block weights so that the logits depend strongly on
// them (a fresh init at std 0.02 predicts almost uniformly whatever the
// weights, so no quantizer could change its loss measurably).
void amplify(LanguageModel& m, double factor) {
  for (const NamedParam& p : m.parameters())
    if (p.var.dim() == 2) {
      Tensor v = p.var.value();
      std::vector<double> x = v.to_vector();
      for (double& e : x) e *= factor;
      v.copy_(Tensor::from_data(x, v.shape()));
    }
}

}  // namespace

TEST_CASE("probe: gap arithmetic against the same model quantized by hand") {
  Generator gen(7);
  auto model = make_model(tiny_neox(), gen);
  amplify(*model, 20);
  const auto batches = random_batches(model->config(), 3, 11);
  const ProbeResult r = run_probe(*model, batches, tiny_options());

  // FP: the token-weighted mean of the batches' mean losses, done directly.
  double nll = 0;
  int64_t tokens = 0;
  for (const auto& [ids, tg] : batches) {
    nll += model->loss(ids, tg).value().item() * double(tg.numel());
    tokens += tg.numel();
  }
  CHECK(r.tokens == tokens);
  CHECK(r.fp_nll == doctest::Approx(nll / double(tokens)).epsilon(1e-12));
  CHECK(r.fp_ppl == doctest::Approx(std::exp(nll / double(tokens))).epsilon(1e-12));

  // Each format: overwrite the four block weights per layer by hand with the
  // reference fake quantization, evaluate, compare; then gap by the formula.
  REQUIRE(r.formats.size() == 2);
  for (size_t f = 0; f < 2; ++f) {
    Generator g2(7);
    auto q = make_model(tiny_neox(), g2);
    amplify(*q, 20);
    int64_t n_quantized = 0;
    for (const NamedParam& p : q->parameters()) {
      const bool linear = p.name.find(".attention.") != std::string::npos ||
                          p.name.find(".mlp.") != std::string::npos;
      if (p.var.dim() != 2 || !linear) continue;
      Tensor v = p.var.value();
      v.copy_(fake_quantize_reference(v, tiny_formats()[f]));
      ++n_quantized;
    }
    CHECK(n_quantized == 4 * tiny_neox().num_layers);
    const NllSum s = evaluate_nll(*q, batches);
    const double ppl = std::exp(s.nll / double(s.tokens));
    CHECK(r.formats[f].name == tiny_formats()[f].name);
    CHECK(r.formats[f].ppl == doctest::Approx(ppl).epsilon(1e-12));
    CHECK(r.formats[f].gap_pct == doctest::Approx((ppl - r.fp_ppl) / r.fp_ppl * 100).epsilon(1e-9));
  }
  CHECK(quant_gap_pct(110.0, 100.0) == doctest::Approx(10.0));
  CHECK(quant_gap_pct(100.0, 100.0) == 0.0);
}

TEST_CASE("probe: weights already on the grid give a zero gap exactly") {
  // Every selected weight replaced by its own fake quantization: quantizing
  // again reproduces it (the absmax element keeps the scale, the codes map
  // to themselves), so the quantized pass equals the FP pass bit for bit.
  Generator gen(3);
  auto model = make_model(tiny_neox(), gen);
  const QuantSpec spec = tiny_formats()[0];
  for (const std::string& name : select_probe_layers(*model, {"attention", "mlp"}))
    for (const NamedParam& p : model->parameters())
      if (p.name == name) {
        Tensor v = p.var.value();
        v.copy_(fake_quantize_reference(v, spec));
      }
  ProbeOptions o;
  o.formats = {spec};
  const ProbeResult r = run_probe(*model, random_batches(model->config(), 2, 5), o);
  CHECK(r.formats[0].ppl == r.fp_ppl);
  CHECK(r.formats[0].gap_pct == 0.0);
}

TEST_CASE("probe: INT8 gap is far below the INT4 gap") {
  // Targets = the FP model's own greedy predictions, so the FP model sits
  // at a good point for these tokens and a weight perturbation raises the
  // loss. The INT8 step is absmax/127 against absmax/7 for INT4: rounding
  // error ~18x smaller in amplitude, ~330x in variance, and for small
  // perturbations the loss increase is ~quadratic, so INT8's gap must be
  // well under a tenth of INT4's (a wide margin, not a fitted number).
  Generator gen(21);
  auto model = make_model(tiny_neox(), gen);
  amplify(*model, 15);
  auto batches = random_batches(model->config(), 3, 9);
  {
    NoGradGuard ng;
    for (auto& [ids, tg] : batches) {
      const Tensor lg = model->logits(ids).value();
      const int64_t V = lg.size(2);
      const std::vector<double> x = lg.to_vector();
      std::vector<int32_t> am(size_t(tg.numel()));
      for (size_t i = 0; i < am.size(); ++i) {
        size_t best = 0;
        for (size_t k = 1; k < size_t(V); ++k)
          if (x[i * size_t(V) + k] > x[i * size_t(V) + best]) best = k;
        am[i] = int32_t(best);
      }
      tg = Tensor::from_data(am, tg.shape());
    }
  }
  const ProbeResult r = run_probe(*model, batches, tiny_options());
  MESSAGE("fp ppl ", r.fp_ppl, " int4 gap ", r.formats[0].gap_pct, "% int8 gap ",
          r.formats[1].gap_pct, "%");
  CHECK(r.formats[0].gap_pct > 0.1);
  CHECK(std::fabs(r.formats[1].gap_pct) < 0.1 * r.formats[0].gap_pct);
}

TEST_CASE("probe: weights restored bit-exactly, 1 + n_formats passes exactly") {
  for (DType dt : {DType::F32, DType::F64}) {
    Generator gen(1);
    auto model = make_model(tiny_neox(), gen, dt);
    amplify(*model, 10);
    const auto before = snapshot(*model);
    const auto batches = random_batches(model->config(), 3, 2);
    CountingModel counting(*model);
    ProbeOptions o = tiny_options();
    const ProbeResult r = run_probe(counting, batches, o);
    CHECK(counting.calls == int64_t((1 + o.formats.size()) * batches.size()));
    CHECK(r.passes == int64_t(1 + o.formats.size()));
    CHECK(snapshot(*model) == before);  // exact equality of every value

    // Sensitivity: one more pass per layer and format, still restored.
    counting.calls = 0;
    o.sensitivity = true;
    const ProbeResult s = run_probe(counting, batches, o);
    const int64_t layers = 4 * tiny_neox().num_layers;
    CHECK(int64_t(s.layers.size()) == layers);
    CHECK(counting.calls == int64_t((1 + o.formats.size() * (1 + size_t(layers))) * batches.size()));
    CHECK(snapshot(*model) == before);
    for (const LayerDiagnostics& d : s.layers)
      for (const auto& f : d.formats) CHECK(std::isfinite(f.sensitivity_gap_pct));
    // The FP and quantized results do not depend on the sensitivity passes.
    CHECK(s.formats[0].ppl == r.formats[0].ppl);
  }
}

TEST_CASE("probe: layer selection, defaults, errors before any pass") {
  Generator gen(1);
  auto model = make_model(tiny_neox(), gen);
  const auto def = select_probe_layers(*model, {"attention", "mlp"});
  REQUIRE(def.size() == 8);
  CHECK(def[0] == "gpt_neox.layers.0.attention.query_key_value.weight");
  CHECK(select_probe_layers(*model, {"head"}) == std::vector<std::string>{"embed_out.weight"});
  CHECK(select_probe_layers(*model, {"embeddings"}) ==
        std::vector<std::string>{"gpt_neox.embed_in.weight"});
  CHECK(select_probe_layers(*model, {"layers.1.mlp"}).size() == 2);
  CHECK(select_probe_layers(*model, {"all"}).size() == 10);
  CHECK_THROWS_WITH_AS(select_probe_layers(*model, {"attention", "mpl"}),
                       doctest::Contains("layer pattern 'mpl' matches no 2-D weight"), Error);
  // A bias or a norm is not a weight the probe quantizes.
  CHECK_THROWS_WITH_AS(select_probe_layers(*model, {"attention.dense.bias"}),
                       doctest::Contains("matches no 2-D weight"), Error);

  CountingModel counting(*model);
  const auto batches = random_batches(model->config(), 1, 2);
  ProbeOptions bad = tiny_options();
  bad.layers = {"nothing_here"};
  CHECK_THROWS_WITH_AS(run_probe(counting, batches, bad), doctest::Contains("nothing_here"), Error);
  // The default presets group by 128, which the tiny model's 16 does not allow.
  CHECK_THROWS_WITH_AS(run_probe(counting, batches, ProbeOptions{}),
                       doctest::Contains("format 'int4_probe' cannot quantize"), Error);
  CHECK(counting.calls == 0);
  CHECK_THROWS_WITH_AS(run_probe(counting, {}, tiny_options()),
                       doctest::Contains("no evaluation batches"), Error);
}

TEST_CASE("probe: GPT-2 Conv1D weights are quantized along their input dimension") {
  ModelConfig c = ModelConfig::preset("gpt2");
  c.vocab_size = 13;
  c.hidden_size = 16;
  c.num_heads = 2;
  c.num_layers = 1;
  c.intermediate_size = 32;
  c.max_positions = 12;
  Generator gen(4);
  auto model = make_model(c, gen);
  const QuantSpec spec = quant_spec_from_string("int4_probe:g8");
  for (const NamedParam& p : model->parameters()) {
    if (p.name != "transformer.h.0.mlp.c_fc.weight") continue;
    const Tensor w = p.var.value();  // [in 16, out 32]
    CHECK(probe_view(*model, p.name, w).shape() == Shape{32, 16});
    const Tensor expect = fake_quantize_reference(w.transpose(0, 1).contiguous(), spec)
                              .transpose(0, 1).contiguous();
    CHECK(probe_fake_quantize(*model, p.name, w, spec).to_vector() == expect.to_vector());
  }
  CHECK(select_probe_layers(*model, {"head"}) == std::vector<std::string>{"transformer.wte.weight"});
  const ProbeResult r = run_probe(*model, random_batches(c, 2, 3), tiny_options());
  CHECK(r.layers.size() == 4);
  CHECK(r.layers[0].shape == Shape{48, 16});  // c_attn [16, 48] seen as [out, in]
}

TEST_CASE("probe: bin flips between two hand-made models") {
  Generator ga(9), gb(9);
  auto a = make_model(tiny_neox(), ga);
  auto b = make_model(tiny_neox(), gb);  // the same weights
  const std::string moved = "gpt_neox.layers.1.mlp.dense_4h_to_h.weight";
  int64_t numel = 0;
  for (const NamedParam& p : b->parameters())
    if (p.name == moved) {
      // Negate the weight: every nonzero code flips sign; the absmax (and so
      // each group's scale) is unchanged.
      Tensor v = p.var.value();
      std::vector<double> x = v.to_vector();
      for (double& e : x) e = -e;
      v.copy_(Tensor::from_data(x, v.shape()));
      numel = v.numel();
    }
  const ProbeOptions o = tiny_options();
  ProbeResult r = run_probe(*b, random_batches(tiny_neox(), 1, 1), o);
  fill_bin_flips(r, *a, *b, o);
  for (const LayerDiagnostics& d : r.layers) {
    for (size_t f = 0; f < o.formats.size(); ++f) {
      if (d.name != moved) {
        CHECK(d.formats[f].bin_flips == 0.0);
        continue;
      }
      // The flipped share is the share of nonzero codes, counted directly.
      Tensor w;
      for (const NamedParam& p : a->parameters())
        if (p.name == moved) w = p.var.value();
      int64_t nonzero = 0;
      for (int32_t q : quantize(w, o.formats[f]).codes.to_vector_as<int32_t>()) nonzero += q != 0;
      CHECK(d.formats[f].bin_flips == doctest::Approx(double(nonzero) / double(numel)));
      CHECK(d.formats[f].bin_flips > 0.5);
    }
  }
  CHECK(std::isfinite(r.mean_bin_flips(0)));
  CHECK(r.to_json().contains("bin_flips_" + o.formats[0].name));
  CHECK(r.to_json().contains("gap_pct_" + o.formats[1].name));
}
