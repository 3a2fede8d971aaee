// GPT-NeoX (Pythia): parameter table and forward pass. See gpt_neox.h for
// the maths; the order of operations follows HF's modeling_gpt_neox.py so
// that f32 results agree to rounding.
#include "models/gpt_neox.h"

#include <cmath>

namespace gl {

namespace {

std::string layer_prefix(int64_t l) { return "gpt_neox.layers." + std::to_string(l) + "."; }

}  // namespace

std::vector<ParamSpec> gpt_neox_param_specs(const ModelConfig& cfg) {
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, I = cfg.intermediate_size;
  const double sd = cfg.initializer_range;  // HF _init_weights: normal(0, initializer_range)
  std::vector<ParamSpec> s;
  s.push_back({"gpt_neox.embed_in.weight", {V, C}, ParamInit::NORMAL, sd});
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = layer_prefix(l);
    add_norm_specs(s, p + "input_layernorm", C, cfg.norm);
    add_norm_specs(s, p + "post_attention_layernorm", C, cfg.norm);
    s.push_back({p + "attention.query_key_value.weight", {3 * C, C}, ParamInit::NORMAL, sd});
    s.push_back({p + "attention.query_key_value.bias", {3 * C}, ParamInit::ZEROS});
    s.push_back({p + "attention.dense.weight", {C, C}, ParamInit::NORMAL, sd});
    s.push_back({p + "attention.dense.bias", {C}, ParamInit::ZEROS});
    s.push_back({p + "mlp.dense_h_to_4h.weight", {I, C}, ParamInit::NORMAL, sd});
    s.push_back({p + "mlp.dense_h_to_4h.bias", {I}, ParamInit::ZEROS});
    s.push_back({p + "mlp.dense_4h_to_h.weight", {C, I}, ParamInit::NORMAL, sd});
    s.push_back({p + "mlp.dense_4h_to_h.bias", {C}, ParamInit::ZEROS});
  }
  add_norm_specs(s, "gpt_neox.final_layer_norm", C, cfg.norm);
  // A tied head is embed_in itself; transformers then stores no embed_out.
  if (!cfg.tie_embeddings) s.push_back({"embed_out.weight", {V, C}, ParamInit::NORMAL, sd});
  return s;
}

namespace {

// The layer with the activation hook on the inputs of its four linear maps,
// on the residual stream: the stream's pending add runs inside ln1's kernel,
// and the layer leaves its own output pending for the next norm (the next
// layer's ln1 or the final norm). The sums are HF's, in HF's order up to
// commutation, which is exact in floating point.
Residual layer_forward(const Residual& in, const GptNeoXLayer& p, const ModelConfig& cfg,
                       int64_t position_offset, KVCache* cache, size_t layer,
                       const ActivationHook& act) {
  GL_CHECK(in.x.dim() == 3 && in.x.size(2) == cfg.hidden_size,
           "gpt_neox layer: x must be [B, T, ", cfg.hidden_size, "], got ", in.x.describe());
  const int64_t NH = cfg.num_heads;
  const int64_t HS = cfg.head_size();
  // HF: rotary_ndims = int(head_size * rotary_pct) (truncation, as Python's int()).
  const auto rotary_dim = int64_t(double(HS) * cfg.rotary_pct);

  auto attn = [&](const Var& a) {
    // [B, T, 3C], per head q | k | v (HF's [NH, 3, HS] layout) -> q, k, v
    // [B, NH, T, HS], q and k rotated: one op (reshape, split, permute and
    // rotary, fused).
    const Var qkv = act.linear("attention.query_key_value.weight", a, p.qkv_w, p.qkv_b);
    const QkvHeads h = qkv_heads(qkv, NH, rotary_dim, cfg.rotary_base, position_offset);
    const Var y = cached_attention(h.q, h.k, h.v, 1.0 / std::sqrt(double(HS)), cache, layer);
    return act.linear("attention.dense.weight", merge_heads(y), p.dense_w, p.dense_b);
  };
  auto mlp = [&](const Var& m) {
    const Var up = act.linear_gelu("mlp.dense_h_to_4h.weight", m, p.fc_w, p.fc_b, cfg.gelu);
    return act.linear("mlp.dense_4h_to_h.weight", up, p.proj_w, p.proj_b);
  };
  const AddNormed x = add_norm_forward(p.ln1, in.x, in.pending);  // x.sum: the layer's input
  if (cfg.parallel_residual) {
    // HF: hidden_states = mlp_output + attn_output + residual (this order).
    const Var a = attn(x.out);
    const Var m = mlp(norm_forward(p.ln2, x.sum));
    return {x.sum, add(m, a)};
  }
  // HF: attn_output = attn_output + residual; hidden = mlp(ln2(attn_output)) + attn_output.
  const AddNormed h = add_norm_forward(p.ln2, attn(x.out), x.sum);
  return {h.sum, mlp(h.out)};
}

}  // namespace

Var gpt_neox_layer_forward(const Var& x, const GptNeoXLayer& p, const ModelConfig& cfg,
                           int64_t position_offset, KVCache* cache, size_t layer) {
  return layer_forward({x, Var()}, p, cfg, position_offset, cache, layer, ActivationHook{}).value();
}

GptNeoX::GptNeoX(ModelConfig c, std::vector<NamedParam> params)
    : LanguageModel(std::move(c)), params_(std::move(params)) {
  GL_CHECK(cfg_.arch == Arch::GPT_NEOX, "GptNeoX: config is not a GPT-NeoX config");
  const ParamLookup P(params_);
  embed_in = P.get("gpt_neox.embed_in.weight");
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    const std::string p = layer_prefix(l);
    GptNeoXLayer L;
    L.ln1 = get_norm(P, p + "input_layernorm", cfg_);
    L.ln2 = get_norm(P, p + "post_attention_layernorm", cfg_);
    L.qkv_w = P.get(p + "attention.query_key_value.weight");
    L.qkv_b = P.get(p + "attention.query_key_value.bias");
    L.dense_w = P.get(p + "attention.dense.weight");
    L.dense_b = P.get(p + "attention.dense.bias");
    L.fc_w = P.get(p + "mlp.dense_h_to_4h.weight");
    L.fc_b = P.get(p + "mlp.dense_h_to_4h.bias");
    L.proj_w = P.get(p + "mlp.dense_4h_to_h.weight");
    L.proj_b = P.get(p + "mlp.dense_4h_to_h.bias");
    layers_.push_back(L);
  }
  final_norm = get_norm(P, "gpt_neox.final_layer_norm", cfg_);
  embed_out = cfg_.tie_embeddings ? embed_in : P.get("embed_out.weight");
}

Var GptNeoX::final_hidden(const Tensor& ids_in, KVCache* cache) const {
  const Tensor ids = model_ids(ids_in, embed_in.device(), "gpt_neox");
  const int64_t pos = cache ? cache->length : 0;
  Residual h{embedding(transformed("gpt_neox.embed_in.weight", embed_in), ids), Var()};
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (!weight_transform_ && !activation_transform_ && !linear_override_) {
      h = layer_forward(h, layers_[l], cfg_, pos, cache, l, ActivationHook{});
      continue;
    }
    // QAT hooks (model.h): this forward's copy of the layer holds the
    // transformed weights; the parameters themselves are untouched.
    const std::string prefix = layer_prefix(int64_t(l));
    GptNeoXLayer L = layers_[l];
    if (weight_transform_) {
      L.qkv_w = weight_transform_(prefix + "attention.query_key_value.weight", L.qkv_w);
      L.dense_w = weight_transform_(prefix + "attention.dense.weight", L.dense_w);
      L.fc_w = weight_transform_(prefix + "mlp.dense_h_to_4h.weight", L.fc_w);
      L.proj_w = weight_transform_(prefix + "mlp.dense_4h_to_h.weight", L.proj_w);
    }
    h = layer_forward(h, L, cfg_, pos, cache, l,
                      ActivationHook{&activation_transform_, prefix, &linear_override_});
  }
  if (cache) cache->length = pos + ids.size(1);
  return add_norm_forward(final_norm, h.x, h.pending).out;
}

Var GptNeoX::logits(const Tensor& ids, KVCache* cache) const {
  const ActivationHook head_act{&activation_transform_, "", &linear_override_};
  const Var h = final_hidden(ids, cache);
  return head_act.linear("embed_out.weight", h, transformed("embed_out.weight", embed_out), Var());
}

bool GptNeoX::head_inputs(const Tensor& ids, Var& hidden, Var& weight) const {
  if (activation_transform_ || linear_override_) return false;
  hidden = final_hidden(ids, nullptr);
  weight = transformed("embed_out.weight", embed_out);
  return true;
}

}  // namespace gl
