// A minimal GPT-NeoX-style language model assembled from the engine's ops:
// token embedding, L blocks with parallel residual
//   x = x + attn(ln1(x)) + mlp(ln2(x))
// (fused QKV in the per-head [NH, 3, HS] layout, partial rotary on the first
// rotary_dim dims of each head, causal attention, GELU MLP), final LayerNorm
// and an untied head. It exists for the engine's smoke run (./train) and
// the composite finite-difference test of a transformer block; the full
// GPT-NeoX/GPT-2 models with Hugging Face checkpoints are issue "Models".
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"

namespace gl {

struct TinyGptConfig {
  int64_t vocab = 64;   // V
  int64_t C = 32;       // channels
  int64_t NH = 2;       // heads; HS = C / NH
  int64_t layers = 2;   // L
  int64_t rotary_dim = 4;
  double ln_eps = 1e-5;
};

struct TinyBlock {
  Var ln1_w, ln1_b, ln2_w, ln2_b;  // [C]
  Var qkv_w, qkv_b;                // [3C, C], [3C]
  Var proj_w, proj_b;              // [C, C], [C]
  Var fc_w, fc_b;                  // [4C, C], [4C]
  Var fc2_w, fc2_b;                // [C, 4C], [C]
};

// x: [B, T, C] -> [B, T, C].
Var tiny_block_forward(const Var& x, const TinyBlock& p, const TinyGptConfig& cfg);

struct TinyGpt {
  TinyGptConfig cfg;
  Var wte;  // [V, C]
  std::vector<TinyBlock> blocks;
  Var lnf_w, lnf_b;  // [C]
  Var head;          // [V, C]

  // Initialised like GPT-NeoX (normal(0, 0.02) weights, zero biases, unit
  // norms) from `gen` on the CPU, then moved to `device`, so a seed gives
  // the same model on every device.
  TinyGpt(const TinyGptConfig& cfg, Generator& gen, DType dtype = DType::F32,
          Device device = Device::cpu());
  // The parameter table: HF-style names and their Vars, in a fixed order.
  std::vector<std::pair<std::string, Var>> parameters() const;
  Var logits(const Tensor& ids) const;  // ids [B, T] -> [B, T, V]
  Var loss(const Tensor& ids, const Tensor& targets) const;  // mean cross-entropy
};

}  // namespace gl
