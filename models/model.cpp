// ModelConfig (Hugging Face config.json in and out, presets, validation),
// the LanguageModel helpers, and Hugging Face model directories in and out:
// load_hf_model checks every tensor of the checkpoint against the config's
// parameter table (models/layers.h) before anything is built.
//
// config.json keys read (transformers' GPTNeoXConfig / GPT2Config; keys
// absent from a file take transformers' defaults, except the sizes, which
// are required):
//   gpt_neox: hidden_size, num_hidden_layers, num_attention_heads,
//     intermediate_size, vocab_size (required); max_position_embeddings,
//     rotary_pct (or partial_rotary_factor), rotary_emb_base (or rope_theta),
//     layer_norm_eps, use_parallel_residual, tie_word_embeddings, hidden_act,
//     initializer_range; attention_bias must be true, rope_scaling null.
//   gpt2: n_embd, n_layer, n_head, vocab_size, n_positions (or n_ctx)
//     (required); n_inner (null: 4 n_embd), layer_norm_epsilon,
//     activation_function, tie_word_embeddings, initializer_range;
//     scale_attn_weights must be true, scale_attn_by_inverse_layer_idx and
//     reorder_and_upcast_attn false.
//   gridlock's own key "gridlock_norm": "layernorm" (default) | "rmsnorm" |
//     "ssnorm" (spec.md section 3.7; transformers ignores unknown keys, but
//     only layernorm models mean what transformers computes).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "core/safetensors.h"
#include "models/layers.h"

namespace gl {

namespace {

// --- config.json field access with errors naming the file and key --------

struct ConfigReader {
  const Json& j;
  const std::string& source;

  std::string what(const std::string& key) const { return source + ": key '" + key + "'"; }
  const Json* find(const std::string& key) const {
    const Json* v = j.find(key);
    return (v && !v->is_null()) ? v : nullptr;
  }
  const Json& required(const std::string& key) const {
    const Json* v = find(key);
    GL_CHECK(v != nullptr, source, ": missing required key '", key, "'");
    return *v;
  }
  int64_t int_req(const std::string& key) const { return required(key).as_int(what(key)); }
  double num(const std::string& key, double def) const {
    const Json* v = find(key);
    return v ? v->as_double(what(key)) : def;
  }
  bool flag(const std::string& key, bool def) const {
    const Json* v = find(key);
    return v ? v->as_bool(what(key)) : def;
  }
  std::string string(const std::string& key, const std::string& def) const {
    const Json* v = find(key);
    return v ? v->as_string(what(key)) : def;
  }
};

GeluKind gelu_from_hf(const std::string& act, const std::string& where) {
  // transformers activations.py: "gelu" is GELUActivation (exact erf);
  // "gelu_new", "gelu_fast" and "gelu_pytorch_tanh" are the tanh form.
  if (act == "gelu") return GeluKind::ERF;
  if (act == "gelu_new" || act == "gelu_fast" || act == "gelu_pytorch_tanh") return GeluKind::TANH;
  GL_CHECK(false, where, ": activation '", act,
           "' is not supported (gelu, gelu_new, gelu_fast, gelu_pytorch_tanh)");
}

NormKind norm_from_name(const std::string& name, const std::string& where) {
  if (name == "layernorm") return NormKind::LAYERNORM;
  if (name == "rmsnorm") return NormKind::RMSNORM;
  if (name == "ssnorm") return NormKind::SSNORM;
  GL_CHECK(false, where, ": gridlock_norm '", name, "' is not one of layernorm, rmsnorm, ssnorm");
}

const char* norm_name(NormKind k) {
  switch (k) {
    case NormKind::LAYERNORM: return "layernorm";
    case NormKind::RMSNORM: return "rmsnorm";
    case NormKind::SSNORM: return "ssnorm";
  }
  return "?";
}

// 10000.0 is written as 10000, as transformers writes it.
Json number(double v) {
  if (std::floor(v) == v && std::fabs(v) < 9.0e15) return Json(int64_t(v));
  return Json(v);
}

const char* torch_dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

void check_compute_dtype(DType dtype, const char* who) {
  GL_CHECK(dtype == DType::F32 || dtype == DType::F64, who, ": models compute in f32 or f64, got ",
           dtype_name(dtype), " (checkpoints in f16/bf16 are converted on load)");
}

ModelConfig gpt_neox_from_hf(const ConfigReader& r) {
  ModelConfig c;
  c.arch = Arch::GPT_NEOX;
  c.hidden_size = r.int_req("hidden_size");
  c.num_layers = r.int_req("num_hidden_layers");
  c.num_heads = r.int_req("num_attention_heads");
  c.intermediate_size = r.int_req("intermediate_size");
  c.vocab_size = r.int_req("vocab_size");
  c.max_positions = r.find("max_position_embeddings") ? r.int_req("max_position_embeddings") : 2048;
  c.rotary_pct = r.num("rotary_pct", r.num("partial_rotary_factor", 0.25));
  c.rotary_base = r.num("rotary_emb_base", r.num("rope_theta", 10000.0));
  c.norm_eps = r.num("layer_norm_eps", 1e-5);
  c.parallel_residual = r.flag("use_parallel_residual", true);
  c.tie_embeddings = r.flag("tie_word_embeddings", false);
  c.gelu = gelu_from_hf(r.string("hidden_act", "gelu"), r.what("hidden_act"));
  c.initializer_range = r.num("initializer_range", 0.02);
  GL_CHECK(r.flag("attention_bias", true), r.source,
           ": attention_bias false is not supported (Pythia's attention has biases)");
  GL_CHECK(r.find("rope_scaling") == nullptr, r.source,
           ": rope_scaling is not supported (only plain rotary, as Pythia)");
  return c;
}

ModelConfig gpt2_from_hf(const ConfigReader& r) {
  ModelConfig c;
  c.arch = Arch::GPT2;
  c.hidden_size = r.int_req("n_embd");
  c.num_layers = r.int_req("n_layer");
  c.num_heads = r.int_req("n_head");
  c.vocab_size = r.int_req("vocab_size");
  c.max_positions = r.find("n_positions") || !r.find("n_ctx") ? r.int_req("n_positions")
                                                               : r.int_req("n_ctx");
  c.intermediate_size = r.find("n_inner") ? r.int_req("n_inner") : 4 * c.hidden_size;
  c.norm_eps = r.num("layer_norm_epsilon", 1e-5);
  c.gelu = gelu_from_hf(r.string("activation_function", "gelu_new"), r.what("activation_function"));
  c.tie_embeddings = r.flag("tie_word_embeddings", true);
  c.initializer_range = r.num("initializer_range", 0.02);
  c.parallel_residual = false;
  c.rotary_pct = 0.0;  // learned positions, no rotary
  GL_CHECK(r.flag("scale_attn_weights", true), r.source,
           ": scale_attn_weights false is not supported");
  GL_CHECK(!r.flag("scale_attn_by_inverse_layer_idx", false), r.source,
           ": scale_attn_by_inverse_layer_idx true is not supported");
  GL_CHECK(!r.flag("reorder_and_upcast_attn", false), r.source,
           ": reorder_and_upcast_attn true is not supported");
  return c;
}

ModelConfig pythia(int64_t C, int64_t L, int64_t NH, int64_t I) {
  ModelConfig c;  // the defaults are Pythia's (model.h)
  c.arch = Arch::GPT_NEOX;
  c.vocab_size = 50304;
  c.hidden_size = C;
  c.num_layers = L;
  c.num_heads = NH;
  c.intermediate_size = I;
  c.max_positions = 2048;
  c.rotary_pct = 0.25;
  c.rotary_base = 10000.0;
  c.norm_eps = 1e-5;
  c.parallel_residual = true;
  c.tie_embeddings = false;
  c.gelu = GeluKind::ERF;
  c.initializer_range = 0.02;
  return c;
}

}  // namespace

// --- ModelConfig ------------------------------------------------------------

ModelConfig ModelConfig::from_hf_json(const Json& j, const std::string& source) {
  GL_CHECK(j.is_object(), source, ": a model config must be a JSON object, got ", j.type_name());
  const ConfigReader r{j, source};
  const std::string type = r.required("model_type").as_string(r.what("model_type"));
  ModelConfig c;
  if (type == "gpt_neox") {
    c = gpt_neox_from_hf(r);
  } else if (type == "gpt2") {
    c = gpt2_from_hf(r);
  } else {
    GL_CHECK(false, source, ": unknown model_type '", type,
             "' (gridlock implements gpt_neox and gpt2)");
  }
  c.norm = norm_from_name(r.string("gridlock_norm", "layernorm"), source);
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::preset(const std::string& name) {
  // Hugging Face EleutherAI/pythia-* and openai-community/gpt2 config.json.
  if (name == "pythia-14m") return pythia(128, 6, 4, 512);
  if (name == "pythia-31m") return pythia(256, 6, 8, 1024);
  if (name == "pythia-70m") return pythia(512, 6, 8, 2048);
  if (name == "pythia-160m") return pythia(768, 12, 12, 3072);
  if (name == "pythia-410m") return pythia(1024, 24, 16, 4096);
  if (name == "pythia-1b") return pythia(2048, 16, 8, 8192);
  if (name == "gpt2") {
    ModelConfig c;
    c.arch = Arch::GPT2;
    c.vocab_size = 50257;
    c.hidden_size = 768;
    c.num_layers = 12;
    c.num_heads = 12;
    c.intermediate_size = 3072;
    c.max_positions = 1024;
    c.rotary_pct = 0.0;
    c.norm_eps = 1e-5;
    c.parallel_residual = false;
    c.tie_embeddings = true;
    c.gelu = GeluKind::TANH;
    c.initializer_range = 0.02;
    return c;
  }
  GL_CHECK(false, "unknown model preset '", name,
           "' (pythia-14m, pythia-31m, pythia-70m, pythia-160m, pythia-410m, pythia-1b, gpt2)");
}

Json ModelConfig::to_hf_json() const {
  Json j = Json::object();
  const char* act = gelu == GeluKind::ERF ? "gelu" : "gelu_new";
  if (arch == Arch::GPT_NEOX) {
    j.set("architectures", Json::array()).push_back("GPTNeoXForCausalLM");
    j.set("model_type", "gpt_neox");
    j.set("vocab_size", vocab_size);
    j.set("hidden_size", hidden_size);
    j.set("num_hidden_layers", num_layers);
    j.set("num_attention_heads", num_heads);
    j.set("intermediate_size", intermediate_size);
    j.set("max_position_embeddings", max_positions);
    j.set("rotary_pct", rotary_pct);
    j.set("rotary_emb_base", number(rotary_base));
    j.set("layer_norm_eps", norm_eps);
    j.set("use_parallel_residual", parallel_residual);
    j.set("tie_word_embeddings", tie_embeddings);
    j.set("hidden_act", act);
    j.set("attention_bias", true);
    j.set("attention_dropout", 0.0);
    j.set("hidden_dropout", 0.0);
    j.set("initializer_range", initializer_range);
    j.set("bos_token_id", 0);
    j.set("eos_token_id", 0);
  } else {
    j.set("architectures", Json::array()).push_back("GPT2LMHeadModel");
    j.set("model_type", "gpt2");
    j.set("vocab_size", vocab_size);
    j.set("n_embd", hidden_size);
    j.set("n_layer", num_layers);
    j.set("n_head", num_heads);
    j.set("n_inner", intermediate_size == 4 * hidden_size ? Json() : Json(intermediate_size));
    j.set("n_positions", max_positions);
    j.set("layer_norm_epsilon", norm_eps);
    j.set("activation_function", act);
    j.set("tie_word_embeddings", tie_embeddings);
    // Our models have no dropout; transformers' 0.1 default would only
    // matter in its train mode, but say what the model is.
    j.set("resid_pdrop", 0.0);
    j.set("embd_pdrop", 0.0);
    j.set("attn_pdrop", 0.0);
    j.set("scale_attn_weights", true);
    j.set("scale_attn_by_inverse_layer_idx", false);
    j.set("reorder_and_upcast_attn", false);
    j.set("initializer_range", initializer_range);
    j.set("bos_token_id", 50256);
    j.set("eos_token_id", 50256);
  }
  if (norm != NormKind::LAYERNORM) j.set("gridlock_norm", norm_name(norm));
  j.set("torch_dtype", "float32");
  j.set("use_cache", true);
  return j;
}

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* key) {
    GL_CHECK(v > 0, source, ": ", key, " must be positive, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_layers");
  positive(num_heads, "num_heads");
  positive(intermediate_size, "intermediate_size");
  positive(max_positions, "max_positions");
  GL_CHECK(hidden_size % num_heads == 0, source, ": hidden size ", hidden_size,
           " is not divisible by the number of heads ", num_heads);
  GL_CHECK(norm_eps > 0 && std::isfinite(norm_eps), source, ": norm eps must be positive, got ",
           norm_eps);
  GL_CHECK(initializer_range >= 0, source, ": initializer_range must be >= 0, got ",
           initializer_range);
  if (arch == Arch::GPT_NEOX) {
    GL_CHECK(rotary_pct >= 0 && rotary_pct <= 1, source, ": rotary_pct must be in [0, 1], got ",
             rotary_pct);
    GL_CHECK(rotary_base > 0 && std::isfinite(rotary_base), source,
             ": rotary_emb_base must be positive, got ", rotary_base);
    // rotate_half splits the rotary dims in two halves.
    const auto rotary_dim = int64_t(double(head_size()) * rotary_pct);
    GL_CHECK(rotary_dim % 2 == 0, source, ": rotary dims int(", head_size(), " * ", rotary_pct,
             ") = ", rotary_dim, " must be even");
  }
}

// --- LanguageModel ----------------------------------------------------------

KVCache LanguageModel::make_cache(int64_t batch, int64_t max_len) const {
  GL_CHECK(batch > 0 && max_len > 0, "make_cache: batch and max_len must be positive, got ", batch,
           ", ", max_len);
  const std::vector<NamedParam> params = parameters();
  const DType dt = params.front().var.dtype();
  const Device dev = params.front().var.device();
  KVCache cache;
  const Shape shape = {batch, cfg_.num_heads, max_len, cfg_.head_size()};
  for (int64_t l = 0; l < cfg_.num_layers; ++l) {
    cache.k.push_back(Tensor::zeros(shape, dt, dev));
    cache.v.push_back(Tensor::zeros(shape, dt, dev));
  }
  return cache;
}

// targets are already the next tokens (targets[b, t] = ids[b, t + 1], -100
// where there is none): transformers' model(ids, labels=ids).loss shifts
// inside the model and is the same number (tests/reference/make_model_fixtures.py).
Var LanguageModel::loss(const Tensor& ids, const Tensor& targets) const {
  GL_CHECK(targets.defined(), "loss: targets undefined");
  Var h, w;
  if (!head_inputs(ids, h, w)) {
    const Var lg = logits(ids);
    return cross_entropy(lg, targets.device() == lg.device() ? targets : targets.to(lg.device()));
  }
  // The CPU keeps the separate ops: its cross-entropy already writes the
  // gradient in the forward, and its GEMMs prefer the whole [N, V] product.
  // On CUDA, host targets go in as they are (no synchronisation to count them).
  if (h.device().is_cuda()) return linear_cross_entropy(h, w, targets);
  return cross_entropy(linear(h, w), targets.device() == h.device() ? targets : targets.to(h.device()));
}

// --- construction -----------------------------------------------------------

std::unique_ptr<LanguageModel> make_model(const ModelConfig& cfg, Generator& gen, DType dtype,
                                          Device device) {
  cfg.validate("make_model");
  check_compute_dtype(dtype, "make_model");
  std::vector<Var> params;
  for (const ParamSpec& s : param_specs(cfg)) {
    // Drawn in f32 on the CPU whatever the target, so a seed gives one model
    // on every device and dtype.
    Tensor t = s.init == ParamInit::NORMAL ? Tensor::normal(s.shape, gen, 0.0, s.std)
               : s.init == ParamInit::ONES ? Tensor::ones(s.shape)
                                           : Tensor::zeros(s.shape);
    params.emplace_back(t.to(dtype).to(device), true, s.name);
  }
  return build_model(cfg, params);
}

namespace {

// Checkpoint tensors that are buffers, not parameters: transformers 4.24
// (Pythia's checkpoints) stored GPT-NeoX's causal mask, masked_bias and
// rotary inv_freq; GPT-2 checkpoints store attn.bias / attn.masked_bias.
bool is_known_buffer(Arch arch, const std::string& name) {
  static const std::regex neox(
      R"(^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$)");
  static const std::regex gpt2(R"(^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$)");
  return std::regex_match(name, arch == Arch::GPT_NEOX ? neox : gpt2);
}

}  // namespace

std::unique_ptr<LanguageModel> load_hf_model(const std::string& dir, DType dtype, Device device) {
  check_compute_dtype(dtype, "load_hf_model");
  const std::string config_path = (std::filesystem::path(dir) / "config.json").string();
  GL_CHECK(std::filesystem::exists(config_path), dir, ": no config.json (not a Hugging Face model directory)");
  const ModelConfig cfg = ModelConfig::from_hf_json(Json::parse_file(config_path), config_path);
  const SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open_dir(dir);
  const std::vector<std::string> names = ckpt.names();
  const std::set<std::string> present(names.begin(), names.end());

  // GPT-2 checkpoints converted from OpenAI's (openai-community/gpt2) were
  // saved from GPT2Model: the same names without "transformer.".
  bool strip_prefix = false;
  if (cfg.arch == Arch::GPT2 && !present.count("transformer.wte.weight") &&
      present.count("wte.weight"))
    strip_prefix = true;
  auto stored_name = [&](const std::string& name) {
    const std::string pre = "transformer.";
    return strip_prefix && name.compare(0, pre.size(), pre) == 0 ? name.substr(pre.size()) : name;
  };

  const std::vector<ParamSpec> specs = param_specs(cfg);
  std::set<std::string> expected;
  for (const ParamSpec& s : specs) {
    const std::string stored = stored_name(s.name);
    expected.insert(stored);
    GL_CHECK(present.count(stored), dir, ": tensor '", stored, "' is missing (the config ",
             config_path, " needs it with shape ", shape_str(s.shape), ")");
    const SafetensorsEntry& e = ckpt.entry(stored);
    GL_CHECK(e.shape == s.shape, dir, ": tensor '", stored, "' has shape ", shape_str(e.shape),
             " but the config needs ", shape_str(s.shape));
    GL_CHECK(is_floating(e.dtype), dir, ": tensor '", stored, "' is ", dtype_name(e.dtype),
             ", expected a floating dtype (f32, f16, bf16)");
  }
  // A tied head may be stored too (it is the embedding); transformers ignores it.
  const std::string tied_head = cfg.arch == Arch::GPT_NEOX ? "embed_out.weight" : "lm_head.weight";
  std::vector<std::string> extra;
  for (const std::string& n : names)
    if (!expected.count(n) && !is_known_buffer(cfg.arch, n) && !(cfg.tie_embeddings && n == tied_head))
      extra.push_back(n);
  if (!extra.empty()) {
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", '" : "'") + extra[i] + "'";
    if (extra.size() > 5) list += ", ... (" + std::to_string(extra.size()) + " in all)";
    GL_CHECK(false, dir, ": unexpected tensor ", list, " (not a parameter of the model in ",
             config_path, ")");
  }

  std::vector<Var> params;
  params.reserve(specs.size());
  for (const ParamSpec& s : specs)
    params.emplace_back(ckpt.load(stored_name(s.name), dtype, device), true, s.name);
  return build_model(cfg, params);
}

void save_hf_model(const LanguageModel& model, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::vector<NamedParam> params = model.parameters();
  Json cfg = model.config().to_hf_json();
  cfg.set("torch_dtype", torch_dtype_name(params.front().var.dtype()));
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.reserve(params.size());
  for (const NamedParam& p : params) tensors.emplace_back(p.name, p.var.value());
  save_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), tensors,
                   {{"format", "pt"}});
  // config.json last: a directory with a config always has its weights.
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    GL_CHECK(f.good(), "save_hf_model: cannot write ", tmp);
    f << cfg.dump(2) << "\n";
    f.close();
    GL_CHECK(f.good(), "save_hf_model: error writing ", tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  GL_CHECK(!ec, "save_hf_model: cannot rename ", tmp, " to ", path, ": ", ec.message());
}

}  // namespace gl
