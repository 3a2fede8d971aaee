// GPT-NeoX as Pythia uses it, exactly as Hugging Face's GPTNeoXForCausalLM
// (transformers models/gpt_neox/modeling_gpt_neox.py; spec.md section 2.1):
//
//   h = embed_in[ids]                                  no positional embedding
//   per layer, parallel residual (use_parallel_residual true):
//     h = h + attn(ln1(h)) + mlp(ln2(h))
//   or sequential: h = h + attn(ln1(h)); h = h + mlp(ln2(h))
//   logits = final_layer_norm(h) . embed_out^T          untied, no bias
//
// attn: fused query_key_value [3C, C] whose 3C outputs are laid out per head
// as [NH, 3, HS] (q, k, v consecutive HS chunks of each head); rotary on the
// first int(HS * rotary_pct) dims of q and k (rotate-half, base from the
// config); causal softmax(q k^T / sqrt(HS)) v; heads merged; attention.dense.
// mlp: dense_h_to_4h -> GELU (exact erf for hidden_act "gelu") -> dense_4h_to_h.
#pragma once
#include <vector>

#include "models/layers.h"

namespace gl {

std::vector<ParamSpec> gpt_neox_param_specs(const ModelConfig& cfg);

struct GptNeoXLayer {
  Norm ln1, ln2;                    // input_layernorm, post_attention_layernorm
  Var qkv_w, qkv_b;                 // [3C, C], [3C]  rows in [NH, 3, HS] order
  Var dense_w, dense_b;             // [C, C], [C]
  Var fc_w, fc_b;                   // dense_h_to_4h [I, C], [I]
  Var proj_w, proj_b;               // dense_4h_to_h [C, I], [C]
};

// One layer: x [B, T, C] -> [B, T, C]. Rows of x sit at positions
// position_offset ...; with a cache, layer `layer`'s keys/values are stored.
Var gpt_neox_layer_forward(const Var& x, const GptNeoXLayer& p, const ModelConfig& cfg,
                           int64_t position_offset = 0, KVCache* cache = nullptr,
                           size_t layer = 0);

class GptNeoX : public LanguageModel {
 public:
  GptNeoX(ModelConfig cfg, std::vector<NamedParam> params);  // params in param_specs order
  Var logits(const Tensor& ids, KVCache* cache = nullptr) const override;
  bool head_inputs(const Tensor& ids, Var& hidden, Var& weight) const override;
  std::vector<NamedParam> parameters() const override { return params_; }
  const std::vector<GptNeoXLayer>& layers() const { return layers_; }

 private:
  Var final_hidden(const Tensor& ids, KVCache* cache) const;  // after the final norm

  std::vector<NamedParam> params_;
  Var embed_in;  // [V, C]
  std::vector<GptNeoXLayer> layers_;
  Norm final_norm;
  Var embed_out;  // [V, C]; embed_in when tied
};

}  // namespace gl
