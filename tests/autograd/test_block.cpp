// The composite check: finite differences through a whole GPT-NeoX-style
// block (LayerNorm x2, fused QKV, split/permute, rotary, causal attention,
// GELU MLP, parallel residual) and through a whole tiny LM loss, in f64.
#include <doctest/doctest.h>

#include "models/tiny_gpt.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

TinyBlock block_from(const std::vector<Var>& v, size_t first) {
  TinyBlock b;
  Var* fields[] = {&b.ln1_w, &b.ln1_b, &b.ln2_w,  &b.ln2_b, &b.qkv_w, &b.qkv_b,
                   &b.proj_w, &b.proj_b, &b.fc_w, &b.fc_b, &b.fc2_w, &b.fc2_b};
  for (size_t i = 0; i < 12; ++i) *fields[i] = v[first + i];
  return b;
}

std::vector<Tensor> random_block(int64_t C, uint64_t seed) {
  const Shape shapes[] = {{C}, {C}, {C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C},
                          {4 * C, C}, {4 * C}, {C, 4 * C}, {C}};
  std::vector<Tensor> out;
  // O(1) weights keep every nonlinearity away from its linear regime.
  for (const Shape& s : shapes) out.push_back(affine(randn(s, seed++), 0.5, 0));
  return out;
}

}  // namespace

TEST_CASE("gradcheck: GPT-NeoX block, every input and parameter") {
  TinyGptConfig cfg;
  cfg.C = 8;
  cfg.NH = 2;
  cfg.rotary_dim = 2;
  std::vector<Tensor> inputs = {randn({2, 5, 8}, 100)};
  for (const Tensor& t : random_block(cfg.C, 200)) inputs.push_back(t);
  CHECK(gradcheck("neox block",
                  [&](const std::vector<Var>& v) {
                    return tiny_block_forward(v[0], block_from(v, 1), cfg);
                  },
                  inputs, {1e-6, 1e-6, 1e-5}));
}

TEST_CASE("gradcheck: tiny LM loss through embedding, two blocks, head, cross-entropy") {
  TinyGptConfig cfg;
  cfg.vocab = 7;
  cfg.C = 8;
  cfg.NH = 2;
  cfg.layers = 2;
  cfg.rotary_dim = 4;
  Generator gen(3);
  TinyGpt model(cfg, gen, DType::F64);
  const auto params = model.parameters();
  std::vector<Tensor> inputs;
  uint64_t seed = 300;
  for (const auto& [name, p] : params) inputs.push_back(affine(randn(p.shape(), seed++), 0.5, 0));
  const Tensor ids = Tensor::from_data<int64_t>({1, 3, 5, 0, 6, 2, 2, 4}, {2, 4});
  const Tensor targets = Tensor::from_data<int64_t>({3, 5, 0, 6, 2, 2, 4, -100}, {2, 4});
  CHECK(gradcheck("tiny lm loss",
                  [&](const std::vector<Var>& v) {
                    TinyGpt m = model;
                    size_t i = 0;
                    m.wte = v[i++];
                    for (TinyBlock& b : m.blocks) {
                      b = block_from(v, i);
                      i += 12;
                    }
                    m.lnf_w = v[i++];
                    m.lnf_b = v[i++];
                    m.head = v[i++];
                    return m.loss(ids, targets);
                  },
                  inputs, {1e-6, 1e-6, 1e-5}));
}
