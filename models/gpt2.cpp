// GPT-2: parameter table and forward pass. See gpt2.h for the maths; the
// order of operations follows HF's modeling_gpt2.py (eager attention).
#include "models/gpt2.h"

#include <cmath>

namespace gl {

namespace {

std::string layer_prefix(int64_t l) { return "transformer.h." + std::to_string(l) + "."; }

// HF Conv1D: x . W + b with W [in, out].
Var conv1d(const Var& x, const Var& w, const Var& b) { return add(matmul(x, w), b); }

}  // namespace

std::vector<ParamSpec> gpt2_param_specs(const ModelConfig& cfg) {
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, I = cfg.intermediate_size;
  const double sd = cfg.initializer_range;
  // HF GPT2PreTrainedModel._init_weights: the residual projections (c_proj)
  // get std / sqrt(2 L), "the OpenAI GPT-2 paper scheme".
  const double sd_proj = sd / std::sqrt(2.0 * double(cfg.num_layers));
  std::vector<ParamSpec> s;
  s.push_back({"transformer.wte.weight", {V, C}, ParamInit::NORMAL, sd});
  s.push_back({"transformer.wpe.weight", {cfg.max_positions, C}, ParamInit::NORMAL, sd});
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = layer_prefix(l);
    add_norm_specs(s, p + "ln_1", C, cfg.norm);
    s.push_back({p + "attn.c_attn.weight", {C, 3 * C}, ParamInit::NORMAL, sd});
    s.push_back({p + "attn.c_attn.bias", {3 * C}, ParamInit::ZEROS});
    s.push_back({p + "attn.c_proj.weight", {C, C}, ParamInit::NORMAL, sd_proj});
    s.push_back({p + "attn.c_proj.bias", {C}, ParamInit::ZEROS});
    add_norm_specs(s, p + "ln_2", C, cfg.norm);
    s.push_back({p + "mlp.c_fc.weight", {C, I}, ParamInit::NORMAL, sd});
    s.push_back({p + "mlp.c_fc.bias", {I}, ParamInit::ZEROS});
    s.push_back({p + "mlp.c_proj.weight", {I, C}, ParamInit::NORMAL, sd_proj});
    s.push_back({p + "mlp.c_proj.bias", {C}, ParamInit::ZEROS});
  }
  add_norm_specs(s, "transformer.ln_f", C, cfg.norm);
  if (!cfg.tie_embeddings) s.push_back({"lm_head.weight", {V, C}, ParamInit::NORMAL, sd});
  return s;
}

namespace {

// The layer with the activation hook on the inputs of its four Conv1D maps,
// on the residual stream (layers.h): both residual adds run inside the
// following norm's kernel (ln_2 here, the next ln_1 or ln_f for the second).
Residual layer_forward(const Residual& in, const Gpt2Layer& p, const ModelConfig& cfg, KVCache* cache,
                       size_t layer, const ActivationHook& act) {
  GL_CHECK(in.x.dim() == 3 && in.x.size(2) == cfg.hidden_size,
           "gpt2 layer: x must be [B, T, ", cfg.hidden_size, "], got ", in.x.describe());
  const int64_t B = in.x.size(0), T = in.x.size(1), C = cfg.hidden_size, NH = cfg.num_heads;
  const int64_t HS = cfg.head_size();
  const AddNormed x = add_norm_forward(p.ln_1, in.x, in.pending);
  // c_attn's 3C outputs are q | k | v, each C = NH * HS wide.
  const std::vector<Var> qkv =
      split(conv1d(act("attn.c_attn.weight", x.out), p.attn_w, p.attn_b), {C, C, C}, 2);
  auto heads = [&](const Var& t) { return permute(reshape(t, {B, T, NH, HS}), {0, 2, 1, 3}); };
  const Var y = cached_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]),
                                 1.0 / std::sqrt(double(HS)), cache, layer);
  // HF: hidden_states = attn_output + residual, then feed_forward + residual.
  const Var a = conv1d(act("attn.c_proj.weight", merge_heads(y)), p.aproj_w, p.aproj_b);
  const AddNormed h = add_norm_forward(p.ln_2, a, x.sum);
  const Var up = add_bias_gelu(matmul(act("mlp.c_fc.weight", h.out), p.fc_w), p.fc_b, cfg.gelu);
  return {h.sum, conv1d(act("mlp.c_proj.weight", up), p.mproj_w, p.mproj_b)};
}

}  // namespace

Var gpt2_layer_forward(const Var& x, const Gpt2Layer& p, const ModelConfig& cfg, KVCache* cache,
                       size_t layer) {
  return layer_forward({x, Var()}, p, cfg, cache, layer, ActivationHook{}).value();
}

Gpt2::Gpt2(ModelConfig c, std::vector<NamedParam> params)
    : LanguageModel(std::move(c)), params_(std::move(params)) {
  GL_CHECK(cfg_.arch == Arch::GPT2, "Gpt2: config is not a GPT-2 config");
  const ParamLookup P(params_);
  wte = P.get("transformer.wte.weight");
  wpe = P.get("transformer.wpe.weight");
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    const std::string p = layer_prefix(l);
    Gpt2Layer L;
    L.ln_1 = get_norm(P, p + "ln_1", cfg_);
    L.attn_w = P.get(p + "attn.c_attn.weight");
    L.attn_b = P.get(p + "attn.c_attn.bias");
    L.aproj_w = P.get(p + "attn.c_proj.weight");
    L.aproj_b = P.get(p + "attn.c_proj.bias");
    L.ln_2 = get_norm(P, p + "ln_2", cfg_);
    L.fc_w = P.get(p + "mlp.c_fc.weight");
    L.fc_b = P.get(p + "mlp.c_fc.bias");
    L.mproj_w = P.get(p + "mlp.c_proj.weight");
    L.mproj_b = P.get(p + "mlp.c_proj.bias");
    layers_.push_back(L);
  }
  ln_f = get_norm(P, "transformer.ln_f", cfg_);
  lm_head = cfg_.tie_embeddings ? wte : P.get("lm_head.weight");
}

Var Gpt2::final_hidden(const Tensor& ids_in, KVCache* cache) const {
  const Tensor ids = model_ids(ids_in, wte.device(), "gpt2");
  const int64_t pos = cache ? cache->length : 0, T = ids.size(1);
  GL_CHECK(pos + T <= cfg_.max_positions, "gpt2: positions ", pos, "..", pos + T - 1,
           " exceed the model's n_positions ", cfg_.max_positions);
  std::vector<int64_t> positions(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) positions[size_t(t)] = pos + t;
  const Tensor pos_ids = Tensor::from_data(positions, {T}, wte.device());
  // [B, T, C] + [T, C]: HF adds position_embeds [1, T, C] the same way.
  Residual h{add(embedding(transformed("transformer.wte.weight", wte), ids),
                 embedding(transformed("transformer.wpe.weight", wpe), pos_ids)),
             Var()};
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (!weight_transform_ && !activation_transform_) {
      h = layer_forward(h, layers_[l], cfg_, cache, l, ActivationHook{});
      continue;
    }
    // QAT hooks (model.h): this forward's copy of the layer holds the
    // transformed weights; the parameters themselves are untouched.
    const std::string prefix = layer_prefix(int64_t(l));
    Gpt2Layer L = layers_[l];
    if (weight_transform_) {
      L.attn_w = weight_transform_(prefix + "attn.c_attn.weight", L.attn_w);
      L.aproj_w = weight_transform_(prefix + "attn.c_proj.weight", L.aproj_w);
      L.fc_w = weight_transform_(prefix + "mlp.c_fc.weight", L.fc_w);
      L.mproj_w = weight_transform_(prefix + "mlp.c_proj.weight", L.mproj_w);
    }
    h = layer_forward(h, L, cfg_, cache, l, ActivationHook{&activation_transform_, prefix});
  }
  if (cache) cache->length = pos + T;
  return add_norm_forward(ln_f, h.x, h.pending).out;
}

// A tied head is wte read a second time, under the head's own name, so a
// QAT plan can quantize the embedding lookup and the head separately.
Var Gpt2::logits(const Tensor& ids, KVCache* cache) const {
  const ActivationHook head_act{&activation_transform_, ""};
  const Var h = head_act("lm_head.weight", final_hidden(ids, cache));
  return linear(h, transformed("lm_head.weight", lm_head));
}

bool Gpt2::head_inputs(const Tensor& ids, Var& hidden, Var& weight) const {
  if (activation_transform_) return false;
  hidden = final_hidden(ids, nullptr);
  weight = transformed("lm_head.weight", lm_head);
  return true;
}

}  // namespace gl
