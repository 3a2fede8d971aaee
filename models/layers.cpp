// Shared model pieces: norms, cached attention, the parameter-table
// dispatch over architectures. See models/layers.h.
#include "models/layers.h"

#include <cstdlib>
#include <cstring>

#include "models/gpt2.h"
#include "models/gpt_neox.h"

namespace gl {

std::vector<ParamSpec> param_specs(const ModelConfig& cfg) {
  switch (cfg.arch) {
    case Arch::GPT_NEOX: return gpt_neox_param_specs(cfg);
    case Arch::GPT2: return gpt2_param_specs(cfg);
  }
  GL_CHECK(false, "param_specs: unknown architecture");
}

int64_t param_count(const ModelConfig& cfg) {
  int64_t n = 0;
  for (const ParamSpec& s : param_specs(cfg)) n += shape_numel(s.shape);
  return n;
}

std::unique_ptr<LanguageModel> build_model(const ModelConfig& cfg, const std::vector<Var>& params) {
  cfg.validate("build_model");
  const std::vector<ParamSpec> specs = param_specs(cfg);
  GL_CHECK(params.size() == specs.size(), "build_model: the config needs ", specs.size(),
           " parameters, got ", params.size());
  std::vector<NamedParam> named;
  named.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const Var& p = params[i];
    GL_CHECK(p.defined(), "build_model: parameter ", specs[i].name, " is undefined");
    GL_CHECK(p.shape() == specs[i].shape, "build_model: parameter ", specs[i].name, " must be ",
             shape_str(specs[i].shape), ", got ", p.describe());
    GL_CHECK(p.dtype() == params[0].dtype() && p.device() == params[0].device(),
             "build_model: parameter ", specs[i].name, " is ", p.describe(), " but ",
             specs[0].name, " is ", params[0].describe(), " (one dtype and device per model)");
    named.push_back({specs[i].name, p});
  }
  switch (cfg.arch) {
    case Arch::GPT_NEOX: return std::make_unique<GptNeoX>(cfg, std::move(named));
    case Arch::GPT2: return std::make_unique<Gpt2>(cfg, std::move(named));
  }
  GL_CHECK(false, "build_model: unknown architecture");
}

std::vector<WeightUse> weight_uses(const ModelConfig& cfg) {
  const bool gpt2 = cfg.arch == Arch::GPT2;
  auto has = [](const std::string& n, const char* part) { return n.find(part) != std::string::npos; };
  std::vector<WeightUse> uses;
  for (const ParamSpec& s : param_specs(cfg)) {
    if (s.shape.size() != 2) continue;
    WeightUse u{s.name, s.name, WeightRole::EMBEDDING, false};
    if (has(s.name, ".attention.") || has(s.name, ".attn.")) u.role = WeightRole::ATTENTION;
    else if (has(s.name, ".mlp.")) u.role = WeightRole::MLP;
    else if (s.name == "embed_out.weight" || s.name == "lm_head.weight") u.role = WeightRole::HEAD;
    // Conv1D stores [in, out]; the embeddings and the head are [rows, C].
    u.transposed = gpt2 && (u.role == WeightRole::ATTENTION || u.role == WeightRole::MLP);
    uses.push_back(u);
  }
  if (cfg.tie_embeddings)
    uses.push_back({gpt2 ? "lm_head.weight" : "embed_out.weight",
                    gpt2 ? "transformer.wte.weight" : "gpt_neox.embed_in.weight", WeightRole::HEAD,
                    false});
  return uses;
}

const Var& ParamLookup::get(const std::string& name) const {
  for (const NamedParam& p : params_)
    if (p.name == name) return p.var;
  GL_CHECK(false, "model: no parameter named ", name);
}

void add_norm_specs(std::vector<ParamSpec>& specs, const std::string& prefix, int64_t C,
                    NormKind kind) {
  switch (kind) {
    case NormKind::LAYERNORM:
      specs.push_back({prefix + ".weight", {C}, ParamInit::ONES});
      specs.push_back({prefix + ".bias", {C}, ParamInit::ZEROS});
      break;
    case NormKind::RMSNORM: specs.push_back({prefix + ".weight", {C}, ParamInit::ONES}); break;
    case NormKind::SSNORM: specs.push_back({prefix + ".scale", {1}, ParamInit::ONES}); break;
  }
}

Norm get_norm(const ParamLookup& params, const std::string& prefix, const ModelConfig& cfg) {
  Norm n;
  n.kind = cfg.norm;
  n.eps = cfg.norm_eps;
  switch (cfg.norm) {
    case NormKind::LAYERNORM:
      n.weight = params.get(prefix + ".weight");
      n.bias = params.get(prefix + ".bias");
      break;
    case NormKind::RMSNORM: n.weight = params.get(prefix + ".weight"); break;
    case NormKind::SSNORM: n.scale = params.get(prefix + ".scale"); break;
  }
  return n;
}

Var norm_forward(const Norm& n, const Var& x) {
  switch (n.kind) {
    case NormKind::LAYERNORM: return layer_norm(x, n.weight, n.bias, n.eps);
    case NormKind::RMSNORM: return rms_norm(x, n.weight, n.eps);
    case NormKind::SSNORM: return mul(rms_norm(x, Var(), n.eps), n.scale);  // [1] broadcasts
  }
  GL_CHECK(false, "norm_forward: unknown norm kind");
}

bool fused_ops_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("GRIDLOCK_FUSED_OPS");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

Var add_bias_gelu(const Var& y, const Var& b, GeluKind kind) {
  return fused_ops_enabled() ? bias_gelu(y, b, kind) : gelu(add(y, b), kind);
}

AddNormed add_norm_forward(const Norm& n, const Var& x, const Var& r) {
  if (!r.defined()) return {x, norm_forward(n, x)};
  if (!fused_ops_enabled()) {
    const Var sum = add(x, r);
    return {sum, norm_forward(n, sum)};
  }
  switch (n.kind) {
    case NormKind::LAYERNORM: return add_layer_norm(x, r, n.weight, n.bias, n.eps);
    case NormKind::RMSNORM: return add_rms_norm(x, r, n.weight, n.eps);
    case NormKind::SSNORM: {
      AddNormed o = add_rms_norm(x, r, Var(), n.eps);
      o.out = mul(o.out, n.scale);
      return o;
    }
  }
  GL_CHECK(false, "add_norm_forward: unknown norm kind");
}

Var cached_attention(const Var& q, const Var& k, const Var& v, double scale, KVCache* cache,
                     size_t layer) {
  if (!cache) return attention(q, k, v, scale);
  GL_CHECK(layer < cache->k.size() && layer < cache->v.size(), "KV cache: has ",
           cache->k.size(), " layers, layer ", layer, " asked (make it with make_cache)");
  Tensor& K = cache->k[layer];
  Tensor& V = cache->v[layer];
  const int64_t pos = cache->length, T = k.size(2);
  GL_CHECK(K.dim() == 4 && K.size(0) == k.size(0) && K.size(1) == k.size(1) &&
               K.size(3) == k.size(3) && V.shape() == K.shape(),
           "KV cache: layer ", layer, " holds ", K.describe(), " / ", V.describe(),
           ", which does not fit keys ", k.describe());
  GL_CHECK(pos >= 0 && pos + T <= K.size(2), "KV cache: ", pos, " cached + ", T,
           " new positions exceed its capacity ", K.size(2));
  K.narrow(2, pos, T).copy_(k.value());
  V.narrow(2, pos, T).copy_(v.value());
  if (pos == 0) return attention(q, k, v, scale);
  Var k_all, v_all;
  if (needs_grad({&k, &v})) {
    // Earlier positions are constants; this call's k, v keep their history.
    k_all = concat({Var(K.narrow(2, 0, pos)), k}, 2);
    v_all = concat({Var(V.narrow(2, 0, pos)), v}, 2);
  } else {
    k_all = Var(K.narrow(2, 0, pos + T));
    v_all = Var(V.narrow(2, 0, pos + T));
  }
  return attention(q, k_all, v_all, scale);
}

Var merge_heads(const Var& y) {
  const int64_t B = y.size(0), NH = y.size(1), T = y.size(2), HS = y.size(3);
  return reshape(permute(y, {0, 2, 1, 3}), {B, T, NH * HS});
}

Tensor model_ids(const Tensor& ids, Device device, const char* who) {
  GL_CHECK(ids.defined() && ids.dim() == 2, who, ": ids must be [B, T], got ",
           ids.defined() ? ids.describe() : std::string("an undefined tensor"));
  GL_CHECK(ids.dtype() == DType::I32 || ids.dtype() == DType::I64, who,
           ": ids must be i32 or i64, got ", ids.describe());
  GL_CHECK(ids.size(1) >= 1, who, ": ids must hold at least one position, got ", ids.describe());
  return ids.device() == device ? ids : ids.to(device);
}

Var ActivationHook::overridden(const char* suffix, const Var& in, const Var& b) const {
  if (!linear_override || !*linear_override) return Var();
  return (*linear_override)(prefix + suffix, in, b);
}

Var ActivationHook::linear(const char* suffix, const Var& x, const Var& w, const Var& b) const {
  const Var in = (*this)(suffix, x);
  const Var y = overridden(suffix, in, b);
  return y.defined() ? y : gl::linear(in, w, b);
}

Var ActivationHook::linear_gelu(const char* suffix, const Var& x, const Var& w, const Var& b,
                                GeluKind kind) const {
  const Var in = (*this)(suffix, x);
  const Var y = overridden(suffix, in, b);
  if (y.defined()) return gelu(y, kind);
  if (!b.defined()) return gelu(gl::linear(in, w, Var()), kind);
  return add_bias_gelu(gl::linear(in, w, Var()), b, kind);
}

}  // namespace gl
