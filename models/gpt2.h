// GPT-2 exactly as Hugging Face's GPT2LMHeadModel
// (transformers models/gpt2/modeling_gpt2.py; Radford et al. 2019):
//
//   h = wte[ids] + wpe[positions]                      learned positions
//   per layer, sequential residual:
//     h = h + attn(ln_1(h));  h = h + mlp(ln_2(h))
//   logits = ln_f(h) . wte^T                           lm_head tied to wte
//
// Every projection is HF's Conv1D: y = x . W + b with W stored [in, out]
// (the transpose of nn.Linear). attn.c_attn [C, 3C] outputs q | k | v, each
// C wide, then split into NH heads of HS; causal softmax(q k^T / sqrt(HS)) v
// (scale_attn_weights); attn.c_proj [C, C]. mlp: c_fc [C, 4C] -> GELU tanh
// ("gelu_new") -> c_proj [4C, C].
//
// Checkpoint names: transformer.wte.weight, transformer.wpe.weight,
// transformer.h.N.{ln_1,attn.c_attn,attn.c_proj,ln_2,mlp.c_fc,mlp.c_proj}.
// {weight,bias}, transformer.ln_f.{weight,bias}. transformers does not
// store the tied lm_head.weight (it is transformer.wte.weight).
#pragma once
#include <vector>

#include "models/layers.h"

namespace gl {

std::vector<ParamSpec> gpt2_param_specs(const ModelConfig& cfg);

struct Gpt2Layer {
  Norm ln_1, ln_2;
  Var attn_w, attn_b;   // c_attn [C, 3C], [3C]
  Var aproj_w, aproj_b; // attn.c_proj [C, C], [C]
  Var fc_w, fc_b;       // mlp.c_fc [C, I], [I]
  Var mproj_w, mproj_b; // mlp.c_proj [I, C], [C]
};

// One layer: x [B, T, C] -> [B, T, C] (positions are in x already).
Var gpt2_layer_forward(const Var& x, const Gpt2Layer& p, const ModelConfig& cfg,
                       KVCache* cache = nullptr, size_t layer = 0);

class Gpt2 : public LanguageModel {
 public:
  Gpt2(ModelConfig cfg, std::vector<NamedParam> params);  // params in param_specs order
  Var logits(const Tensor& ids, KVCache* cache = nullptr) const override;
  bool head_inputs(const Tensor& ids, Var& hidden, Var& weight) const override;
  std::vector<NamedParam> parameters() const override { return params_; }

 private:
  std::vector<NamedParam> params_;
  Var wte;  // [V, C]
  Var wpe;  // [max_positions, C]
  std::vector<Gpt2Layer> layers_;
  Norm ln_f;
  Var lm_head;  // [V, C]; wte when tied (always, for real GPT-2)

  Var final_hidden(const Tensor& ids, KVCache* cache) const;  // after ln_f
};

}  // namespace gl
