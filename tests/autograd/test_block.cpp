// The composite check: finite differences through whole transformer layers
// of the real models (models/gpt_neox.h, models/gpt2.h) and through whole
// tiny LM losses, in f64. GPT-NeoX layer: LayerNorm x2, fused QKV in the
// [NH, 3, HS] layout, split/permute, partial rotary, causal attention, GELU
// MLP, parallel and sequential residual. LM losses: embedding (+ learned
// positions for GPT-2), two layers, final norm, head (tied for GPT-2),
// cross-entropy with an ignored target.
#include <doctest/doctest.h>

#include "models/gpt_neox.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

GptNeoXLayer layer_from(const std::vector<Var>& v, size_t first, double eps) {
  GptNeoXLayer p;
  p.ln1.weight = v[first + 0];
  p.ln1.bias = v[first + 1];
  p.ln2.weight = v[first + 2];
  p.ln2.bias = v[first + 3];
  p.ln1.eps = p.ln2.eps = eps;
  Var* rest[] = {&p.qkv_w, &p.qkv_b, &p.dense_w, &p.dense_b, &p.fc_w, &p.fc_b, &p.proj_w, &p.proj_b};
  for (size_t i = 0; i < 8; ++i) *rest[i] = v[first + 4 + i];
  return p;
}

std::vector<Tensor> random_layer(int64_t C, int64_t I, uint64_t seed) {
  const Shape shapes[] = {{C}, {C}, {C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C},
                          {I, C}, {I}, {C, I}, {C}};
  std::vector<Tensor> out;
  // O(1) weights keep every nonlinearity away from its linear regime.
  for (const Shape& s : shapes) out.push_back(affine(randn(s, seed++), 0.5, 0));
  return out;
}

ModelConfig tiny_config(const char* preset) {
  ModelConfig c = ModelConfig::preset(preset);
  c.vocab_size = 7;
  c.hidden_size = 8;
  c.num_heads = 2;  // HS 4
  c.num_layers = 2;
  c.intermediate_size = 12;
  c.max_positions = 6;
  c.rotary_pct = c.arch == Arch::GPT_NEOX ? 1.0 : 0.0;  // NeoX: all 4 dims rotate
  return c;
}

// Gradient check of the whole LM loss with every parameter as an input.
bool lm_gradcheck(const char* label, const ModelConfig& cfg) {
  std::vector<Tensor> inputs;
  uint64_t seed = 300;
  for (const ParamSpec& s : param_specs(cfg)) inputs.push_back(affine(randn(s.shape, seed++), 0.5, 0));
  const Tensor ids = Tensor::from_data<int64_t>({1, 3, 5, 0, 6, 2, 2, 4}, {2, 4});
  const Tensor targets = Tensor::from_data<int64_t>({3, 5, 0, 6, 2, 2, 4, -100}, {2, 4});
  return gradcheck(label,
                   [&](const std::vector<Var>& v) { return build_model(cfg, v)->loss(ids, targets); },
                   inputs, {1e-6, 1e-6, 1e-5});
}

}  // namespace

TEST_CASE("gradcheck: GPT-NeoX layer, every input and parameter, parallel and sequential") {
  for (bool parallel : {true, false}) {
    INFO("parallel residual ", parallel);
    ModelConfig cfg = tiny_config("pythia-14m");
    cfg.rotary_pct = 0.5;  // partial rotary: 2 of 4 dims
    cfg.parallel_residual = parallel;
    std::vector<Tensor> inputs = {randn({2, 5, 8}, 100)};
    for (const Tensor& t : random_layer(cfg.hidden_size, cfg.intermediate_size, 200))
      inputs.push_back(t);
    CHECK(gradcheck("neox layer",
                    [&](const std::vector<Var>& v) {
                      return gpt_neox_layer_forward(v[0], layer_from(v, 1, cfg.norm_eps), cfg);
                    },
                    inputs, {1e-6, 1e-6, 1e-5}));
  }
}

TEST_CASE("gradcheck: GPT-NeoX tiny LM loss through embedding, two layers, head, cross-entropy") {
  CHECK(lm_gradcheck("neox lm loss", tiny_config("pythia-14m")));
}

TEST_CASE("gradcheck: GPT-2 tiny LM loss (learned positions, Conv1D, tied head, tanh GELU)") {
  CHECK(lm_gradcheck("gpt2 lm loss", tiny_config("gpt2")));
}
