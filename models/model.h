// The language-model interface shared by GPT-NeoX (Pythia) and GPT-2, and
// their configuration. Programs (eval, sample, train, probe) only see this.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/ops.h"
#include "core/json.h"

namespace gl {

enum class Arch : uint8_t { GPT_NEOX, GPT2 };
enum class NormKind : uint8_t { LAYERNORM, RMSNORM, SSNORM };  // SSNORM: single-scale RMSNorm

struct ModelConfig {
  Arch arch = Arch::GPT_NEOX;
  int64_t vocab_size = 50304;
  int64_t hidden_size = 768;        // C
  int64_t num_layers = 12;          // L
  int64_t num_heads = 12;           // NH; head size HS = C / NH
  int64_t intermediate_size = 3072;
  int64_t max_positions = 2048;     // context length
  double rotary_pct = 0.25;         // GPT-NeoX: rotary dims = int(HS * rotary_pct)
  double rotary_base = 10000.0;
  double norm_eps = 1e-5;
  bool parallel_residual = true;    // GPT-NeoX use_parallel_residual
  bool tie_embeddings = false;      // GPT-2: true
  GeluKind gelu = GeluKind::ERF;    // GPT-2: TANH
  NormKind norm = NormKind::LAYERNORM;
  double initializer_range = 0.02;

  // From a Hugging Face config.json (model_type gpt_neox or gpt2); `source`
  // names the file in errors. Unknown architectures are an error.
  static ModelConfig from_hf_json(const Json& j, const std::string& source);
  static ModelConfig preset(const std::string& name);  // "pythia-14m" ... "pythia-1b", "gpt2"
  Json to_hf_json() const;  // what transformers reads back
  int64_t head_size() const { return hidden_size / num_heads; }
  void validate(const std::string& source) const;  // consistent sizes, else throws
};

// Per-layer key/value cache for generation: k, v [B, NH, Tmax, HS].
struct KVCache {
  std::vector<Tensor> k, v;
  int64_t length = 0;  // positions filled
};

struct NamedParam {
  std::string name;  // Hugging Face state-dict name
  Var var;
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  const ModelConfig& config() const { return cfg_; }
  // ids [B, T] (i32/i64) -> logits [B, T, V]. With a cache, ids continue the
  // cached sequence (positions cache->length ...) and the cache is extended.
  virtual Var logits(const Tensor& ids, KVCache* cache = nullptr) const = 0;
  // The parameter table, in Hugging Face state-dict order. Tied weights
  // appear once (under the name HF stores).
  virtual std::vector<NamedParam> parameters() const = 0;
  KVCache make_cache(int64_t batch, int64_t max_len) const;
  // Mean cross-entropy of next-token prediction (targets: ignore_index -100).
  // On CUDA, when head_inputs() gives the head's operands, the head and the
  // loss run as one op (linear_cross_entropy: no [B, T, V] logits tensor);
  // elsewhere as logits() then cross_entropy, the same numbers up to
  // rounding.
  Var loss(const Tensor& ids, const Tensor& targets) const;
  // The head's operands for the forward of ids: the final hidden state
  // [B, T, C] and the head weight [V, C] as this forward uses it (after the
  // weight transform), with logits = hidden . weight^T. False, and nothing
  // computed, when an activation hook or linear override would see the
  // head's input (the head is then not a plain product).
  virtual bool head_inputs(const Tensor& ids, Var& hidden, Var& weight) const {
    (void)ids, (void)hidden, (void)weight;
    return false;
  }

  // Hooks for quantization-aware training (quant/qat.h installs them).
  // The weight transform sees every weight matrix the forward uses, under
  // its use name (weight_uses in models/layers.h: the Hugging Face name; a
  // tied head is "embed_out.weight" / "lm_head.weight"), and the forward
  // uses what it returns instead. The activation transform sees the input
  // of every linear layer (attention qkv and dense, MLP up and down, the
  // head), named by that layer's weight. Empty (the default): weights and
  // inputs are used as they are, bit-identically, and nothing is called.
  using WeightTransform = std::function<Var(const std::string& name, const Var& w)>;
  using ActivationTransform = std::function<Var(const std::string& name, const Var& x)>;
  void set_weight_transform(WeightTransform t) { weight_transform_ = std::move(t); }
  void set_activation_transform(ActivationTransform t) { activation_transform_ = std::move(t); }
  const WeightTransform& weight_transform() const { return weight_transform_; }
  const ActivationTransform& activation_transform() const { return activation_transform_; }
  // The linear override computes a whole GPT-NeoX linear layer (attention
  // qkv and dense, MLP up and down, the head) itself, from the layer's input
  // (after the activation transform) and bias, by its weight's name; an
  // undefined Var means "not this one" and the layer runs as usual. The
  // integer inference path (quant/packed_model.h) uses it to run packed
  // 4-bit weights through their own matmul kernel. GPT-2 does not call it.
  using LinearOverride = std::function<Var(const std::string& name, const Var& x, const Var& bias)>;
  void set_linear_override(LinearOverride f) { linear_override_ = std::move(f); }
  const LinearOverride& linear_override() const { return linear_override_; }

 protected:
  explicit LanguageModel(ModelConfig cfg) : cfg_(std::move(cfg)) {}
  // w itself without a weight transform; the name is only built with one.
  Var transformed(const char* name, const Var& w) const {
    return weight_transform_ ? weight_transform_(name, w) : w;
  }
  ModelConfig cfg_;
  WeightTransform weight_transform_;
  ActivationTransform activation_transform_;
  LinearOverride linear_override_;
};

// Random initialisation (GPT-NeoX/GPT-2 style, from `gen` on the CPU, then
// moved: the same seed gives the same model on every device).
std::unique_ptr<LanguageModel> make_model(const ModelConfig& cfg, Generator& gen,
                                          DType dtype = DType::F32, Device device = Device::cpu());

// A Hugging Face model directory (config.json + model.safetensors or a
// sharded index). Every tensor name and shape is checked against the config.
std::unique_ptr<LanguageModel> load_hf_model(const std::string& dir, DType dtype = DType::F32,
                                             Device device = Device::cpu());
void save_hf_model(const LanguageModel& model, const std::string& dir);

}  // namespace gl
