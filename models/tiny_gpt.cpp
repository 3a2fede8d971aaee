#include "models/tiny_gpt.h"

#include "autograd/ops/activation.h"
#include "autograd/ops/attention.h"
#include "autograd/ops/cross_entropy.h"
#include "autograd/ops/embedding.h"
#include "autograd/ops/norm.h"
#include "autograd/ops/rotary.h"
#include "autograd/ops/shape.h"

namespace gl {

Var tiny_block_forward(const Var& x, const TinyBlock& p, const TinyGptConfig& cfg) {
  const int64_t B = x.size(0), T = x.size(1), C = cfg.C, NH = cfg.NH, HS = C / NH;
  const Var a = layer_norm(x, p.ln1_w, p.ln1_b, cfg.ln_eps);
  const Var m = layer_norm(x, p.ln2_w, p.ln2_b, cfg.ln_eps);

  // Attention. The fused projection's outputs are laid out [NH, 3, HS]
  // (Hugging Face GPT-NeoX), so per head q, k, v are consecutive HS chunks.
  const Var qkv = reshape(linear(a, p.qkv_w, p.qkv_b), {B, T, NH, 3 * HS});
  const std::vector<Var> parts = split(qkv, {HS, HS, HS}, 3);
  auto heads = [&](const Var& t) { return permute(t, {0, 2, 1, 3}); };  // [B, NH, T, HS]
  const Var q = rotary(heads(parts[0]), cfg.rotary_dim);
  const Var k = rotary(heads(parts[1]), cfg.rotary_dim);
  const Var y = attention(q, k, heads(parts[2]), 1.0 / std::sqrt(double(HS)));
  const Var attn = linear(reshape(permute(y, {0, 2, 1, 3}), {B, T, C}), p.proj_w, p.proj_b);

  const Var mlp = linear(gelu(linear(m, p.fc_w, p.fc_b)), p.fc2_w, p.fc2_b);
  return add(add(x, attn), mlp);
}

TinyGpt::TinyGpt(const TinyGptConfig& c, Generator& gen, DType dtype, Device device) : cfg(c) {
  GL_CHECK(c.C % c.NH == 0, "TinyGpt: C=", c.C, " is not divisible by NH=", c.NH);
  auto param = [&](Tensor t) { return Var(t.to(dtype).to(device), true); };
  auto normal = [&](const Shape& s) { return param(Tensor::normal(s, gen, 0.0, 0.02)); };
  auto zeros = [&](const Shape& s) { return param(Tensor::zeros(s)); };
  auto ones = [&](const Shape& s) { return param(Tensor::ones(s)); };
  const int64_t C = c.C;
  wte = normal({c.vocab, C});
  for (int64_t l = 0; l < c.layers; ++l) {
    TinyBlock b;
    b.ln1_w = ones({C}); b.ln1_b = zeros({C});
    b.ln2_w = ones({C}); b.ln2_b = zeros({C});
    b.qkv_w = normal({3 * C, C}); b.qkv_b = zeros({3 * C});
    b.proj_w = normal({C, C}); b.proj_b = zeros({C});
    b.fc_w = normal({4 * C, C}); b.fc_b = zeros({4 * C});
    b.fc2_w = normal({C, 4 * C}); b.fc2_b = zeros({C});
    blocks.push_back(b);
  }
  lnf_w = ones({C});
  lnf_b = zeros({C});
  head = normal({c.vocab, C});
}

std::vector<std::pair<std::string, Var>> TinyGpt::parameters() const {
  std::vector<std::pair<std::string, Var>> out = {{"gpt_neox.embed_in.weight", wte}};
  for (size_t l = 0; l < blocks.size(); ++l) {
    const std::string pre = "gpt_neox.layers." + std::to_string(l) + ".";
    const TinyBlock& b = blocks[l];
    out.insert(out.end(), {{pre + "input_layernorm.weight", b.ln1_w},
                           {pre + "input_layernorm.bias", b.ln1_b},
                           {pre + "post_attention_layernorm.weight", b.ln2_w},
                           {pre + "post_attention_layernorm.bias", b.ln2_b},
                           {pre + "attention.query_key_value.weight", b.qkv_w},
                           {pre + "attention.query_key_value.bias", b.qkv_b},
                           {pre + "attention.dense.weight", b.proj_w},
                           {pre + "attention.dense.bias", b.proj_b},
                           {pre + "mlp.dense_h_to_4h.weight", b.fc_w},
                           {pre + "mlp.dense_h_to_4h.bias", b.fc_b},
                           {pre + "mlp.dense_4h_to_h.weight", b.fc2_w},
                           {pre + "mlp.dense_4h_to_h.bias", b.fc2_b}});
  }
  out.insert(out.end(), {{"gpt_neox.final_layer_norm.weight", lnf_w},
                         {"gpt_neox.final_layer_norm.bias", lnf_b},
                         {"embed_out.weight", head}});
  for (auto& [name, v] : out) v.set_name(name);
  return out;
}

Var TinyGpt::logits(const Tensor& ids) const {
  GL_CHECK(ids.dim() == 2, "TinyGpt: ids must be [B, T], got ", ids.describe());
  Var x = embedding(wte, ids);
  for (const TinyBlock& b : blocks) x = tiny_block_forward(x, b, cfg);
  return linear(layer_norm(x, lnf_w, lnf_b, cfg.ln_eps), head);
}

Var TinyGpt::loss(const Tensor& ids, const Tensor& targets) const {
  return cross_entropy(logits(ids), targets);
}

}  // namespace gl
