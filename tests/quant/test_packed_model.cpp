// The integer inference path of a whole model (quant/packed_model.h): a
// GPT-NeoX with packed 4-bit linear layers scores the same tokens as the
// fake-quant evaluation of the same weights (QatPlan: reference-rounded
// weights through the ordinary f32 linear), to float rounding.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops/cross_entropy.h"
#include "core/error.h"
#include "models/model.h"
#include "quant/packed_model.h"
#include "quant/qat.h"

using namespace gl;

namespace {

std::unique_ptr<LanguageModel> tiny_neox(uint64_t seed) {
  ModelConfig cfg = ModelConfig::preset("pythia-14m");
  cfg.vocab_size = 96;
  cfg.hidden_size = 64;
  cfg.num_heads = 4;
  cfg.num_layers = 2;
  cfg.intermediate_size = 128;
  cfg.max_positions = 32;
  Generator g(seed);
  return make_model(cfg, g);
}

Tensor ids_for(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::vector<int64_t> v(size_t(B * T));
  uint64_t x = seed;
  for (auto& t : v) x = x * 6364136223846793005ull + 1442695040888963407ull, t = int64_t((x >> 33) % uint64_t(V));
  return Tensor::from_data(v, {B, T});
}

}  // namespace

TEST_CASE("packed model: perplexity equals the fake-quant evaluation of the same weights") {
  for (const char* spec_text : {"int4_probe:g32", "w4a16_g128:g64", "q4_0"}) {
    CAPTURE(spec_text);
    const QuantSpec spec = quant_spec_from_string(spec_text);
    auto m = tiny_neox(3);
    const Tensor ids = ids_for(2, 24, 96, 9), targets = ids_for(2, 24, 96, 10);
    NoGradGuard no_grad;
    const double fp = m->loss(ids, targets).value().item();
    const std::vector<double> fp_logits = m->logits(ids).value().to_vector();

    QatOptions q;
    q.spec = spec;
    q.layers = {"attention", "mlp", "head"};
    QatPlan plan(*m, q);
    plan.attach(*m);
    const Tensor fake_logits = m->logits(ids).value();
    const double fake = m->loss(ids, targets).value().item();
    QatPlan::detach(*m);

    PackedModel packed(*m, spec, {"attention", "mlp", "head"});
    CHECK(packed.packed_names().size() == 2 * 4 + 1);
    packed.attach(*m);
    const Tensor int_logits = m->logits(ids).value();
    const double integer = m->loss(ids, targets).value().item();
    PackedModel::detach(*m);

    // Same weights bit for bit; only the matmul's summation order differs:
    // logits to ~1e-5 of their scale, the loss to ~1e-6 relative.
    const std::vector<double> a = fake_logits.to_vector(), b = int_logits.to_vector();
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i])), scale = std::max(scale, std::fabs(a[i]));
    CHECK(worst <= 1e-5 * scale);
    CHECK(std::exp(integer) == doctest::Approx(std::exp(fake)).epsilon(1e-5));
    // ... and quantization moved the logits far more than that (the check
    // is not vacuous).
    double moved = 0;
    for (size_t i = 0; i < a.size(); ++i) moved = std::max(moved, std::fabs(a[i] - fp_logits[i]));
    CHECK(moved > 100 * worst);
    // Detached: the plain model again, bit-identically.
    CHECK(m->loss(ids, targets).value().item() == fp);
  }
}

TEST_CASE("packed model: inference only, GPT-NeoX only, 4-bit only") {
  auto m = tiny_neox(4);
  PackedModel packed(*m, quant_spec_from_string("int4_probe:g32"));
  packed.attach(*m);
  const Tensor ids = ids_for(1, 8, 96, 1);
  CHECK_THROWS_WITH_AS(m->logits(ids), doctest::Contains("have no backward; evaluate under NoGradGuard"), Error);
  PackedModel::detach(*m);
  CHECK_THROWS_WITH_AS(PackedModel(*m, quant_spec_from_string("int8_probe:g32")), doctest::Contains("8 bits"), Error);
  CHECK_THROWS_WITH_AS(PackedModel(*m, quant_spec_from_string("int4_probe:g32"), {"nothing_matches"}),
                       doctest::Contains("nothing_matches"), Error);
}
