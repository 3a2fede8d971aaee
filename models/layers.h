// Pieces shared by the GPT-NeoX and GPT-2 models: the parameter table
// (ParamSpec: Hugging Face name, shape, initialisation), the switchable norm
// and causal self-attention over an optional KV cache.
//
// The parameter table is the single source of truth for a model's weights:
// make_model initialises from it, load_hf_model checks a checkpoint against
// it, save_hf_model writes in its order, and the tests count parameters from
// it without allocating anything.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"

namespace gl {

enum class ParamInit : uint8_t { NORMAL, ZEROS, ONES };

struct ParamSpec {
  std::string name;  // Hugging Face state-dict name
  Shape shape;
  ParamInit init = ParamInit::NORMAL;
  double std = 0.0;  // NORMAL only
};

// The table of `cfg`, in Hugging Face state-dict order (tied weights once).
std::vector<ParamSpec> param_specs(const ModelConfig& cfg);
int64_t param_count(const ModelConfig& cfg);  // sum of the table's numels

// The model of `cfg` around `params`, given in param_specs order with the
// table's shapes (checked). The Vars are used as they are (not copied), so
// a gradient check can pass its own inputs.
std::unique_ptr<LanguageModel> build_model(const ModelConfig& cfg, const std::vector<Var>& params);

// The weight matrices a forward uses, as the model's weight transform sees
// them (LanguageModel::set_weight_transform): every 2-D parameter in table
// order under its own name, then a tied head under the name HF gives the
// head ("embed_out.weight" / "lm_head.weight") reading the embedding.
// `transposed`: stored [in, out] (GPT-2's Conv1D), so the input dimension,
// along which quantization groups run, is dim 0 rather than the last.
enum class WeightRole : uint8_t { ATTENTION, MLP, EMBEDDING, HEAD };
struct WeightUse {
  std::string name;   // passed to the transform
  std::string param;  // the parameter read (differs from name for a tied head)
  WeightRole role;
  bool transposed = false;
};
std::vector<WeightUse> weight_uses(const ModelConfig& cfg);

// A layer's view of the model's activation transform: hook("suffix", x)
// is transform(prefix + "suffix", x), or x itself (no string built) when
// the model has none.
struct ActivationHook {
  const LanguageModel::ActivationTransform* transform = nullptr;
  std::string prefix;
  const LanguageModel::LinearOverride* linear_override = nullptr;
  Var operator()(const char* suffix, const Var& x) const {
    return transform && *transform ? (*transform)(prefix + suffix, x) : x;
  }
  // linear(hook(suffix, x), w, b), unless the model's linear override takes
  // this layer (see LanguageModel::LinearOverride).
  Var linear(const char* suffix, const Var& x, const Var& w, const Var& b) const;
  // gelu(linear(...)) with the bias add fused into the activation
  // (bias_gelu); an overridden layer gets gelu of the override's output.
  Var linear_gelu(const char* suffix, const Var& x, const Var& w, const Var& b, GeluKind kind) const;

 private:
  // The override's y for this layer's input `in`, or an undefined Var.
  Var overridden(const char* suffix, const Var& in, const Var& b) const;
};

// Looks parameters up by name while a model wires itself up.
class ParamLookup {
 public:
  explicit ParamLookup(const std::vector<NamedParam>& params) : params_(params) {}
  const Var& get(const std::string& name) const;  // throws if absent

 private:
  const std::vector<NamedParam>& params_;
};

// The norm option (spec.md section 3.7):
//   LAYERNORM  (x - mean) / sqrt(var + eps) * weight + bias     "<norm>.weight", "<norm>.bias"
//   RMSNORM    x / sqrt(mean(x^2) + eps) * weight               "<norm>.weight"
//   SSNORM     x / sqrt(mean(x^2) + eps) * scale, one scalar    "<norm>.scale" [1]
// (Single-Scale RMSNorm of Outlier-Safe Pre-Training, arXiv 2506.19697:
// a single learnable gain, init 1, no bias.) All use the config's norm_eps.
struct Norm {
  NormKind kind = NormKind::LAYERNORM;
  Var weight, bias, scale;
  double eps = 1e-5;
};
void add_norm_specs(std::vector<ParamSpec>& specs, const std::string& prefix, int64_t C,
                    NormKind kind);
Norm get_norm(const ParamLookup& params, const std::string& prefix, const ModelConfig& cfg);
Var norm_forward(const Norm& norm, const Var& x);

// The residual stream between blocks, carried as x plus the last block's
// output `pending`, whose add is left to the next norm: add_norm_forward
// runs it in the norm's kernel (add_layer_norm / add_rms_norm), one pass
// over the stream less per block. value() materialises x + pending.
struct Residual {
  Var x, pending;
  Var value() const { return pending.defined() ? add(x, pending) : x; }
};
// {x + r, norm(x + r)} from one kernel; r undefined: {x, norm(x)}. SSNORM
// multiplies its scale after the fused RMSNorm, as norm_forward does.
AddNormed add_norm_forward(const Norm& norm, const Var& x, const Var& r);
// gelu(y + b): bias_gelu, one kernel.
Var add_bias_gelu(const Var& y, const Var& b, GeluKind kind);
// False when GRIDLOCK_FUSED_OPS=0 was set at start-up: the two functions
// above (and ActivationHook::linear_gelu) then run the composed ops, the
// same values from older kernels; a way around a fault in the fused
// kernels without a rebuild (bench/gpu/session.sh uses it). The same
// variable turns off fake_quantize's low-precision shadow
// (autograd/ops/fake_quant.h fake_quant_shadow_enabled).
bool fused_ops_enabled();

// Causal self-attention of q, k, v [B, NH, T, HS] (k already rotated).
// Without a cache: attention(q, k, v, scale). With one: k and v are written
// into layer `layer`'s cache at positions cache->length ... and q attends
// over every cached position (the caller advances cache->length once all
// layers ran). Gradients still reach this call's q, k and v.
Var cached_attention(const Var& q, const Var& k, const Var& v, double scale, KVCache* cache,
                     size_t layer);

// [B, NH, T, HS] -> [B, T, NH * HS].
Var merge_heads(const Var& y);

// ids [B, T] on the model's device; checks rank and dtype.
Tensor model_ids(const Tensor& ids, Device device, const char* who);

}  // namespace gl
