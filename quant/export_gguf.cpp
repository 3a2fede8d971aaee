// GPT-NeoX -> GGUF (llama.cpp "gptneox") export and read-back; the mapping,
// metadata and type policy are described in export_gguf.h.
// Reference: llama.cpp convert_hf_to_gguf.py (GPTNeoXModel, _set_vocab_gpt2),
// gguf-py constants.py / tensor_mapping.py, src/llama-quant.cpp.
#include "quant/export_gguf.h"

#include <map>

#include "core/error.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "models/model.h"
#include "quant/ggml_blocks.h"

namespace gl {

namespace {

// llama.cpp's llama_ftype values (include/llama.h) for general.file_type.
uint32_t llama_ftype(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16: return 1;   // MOSTLY_F16
    case GgmlType::Q4_0: return 2;  // MOSTLY_Q4_0
    case GgmlType::Q4_1: return 3;  // MOSTLY_Q4_1
    case GgmlType::Q8_0: return 7;  // MOSTLY_Q8_0
    case GgmlType::BF16: return 32; // MOSTLY_BF16
  }
  return 0;
}

bool is_quantized(GgmlType t) {
  return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q8_0;
}

constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

// gguf-py TokenType.
enum TokenType : int32_t { NORMAL = 1, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5 };

// HF parameter name <-> GGUF tensor name (spec.md 4.2). Layer sub-module
// names are the same for the weight and the bias.
const std::vector<std::pair<std::string, std::string>>& layer_map() {
  static const std::vector<std::pair<std::string, std::string>> m = {
      {"input_layernorm", "attn_norm"},
      {"attention.query_key_value", "attn_qkv"},
      {"attention.dense", "attn_output"},
      {"post_attention_layernorm", "ffn_norm"},
      {"mlp.dense_h_to_4h", "ffn_up"},
      {"mlp.dense_4h_to_h", "ffn_down"},
  };
  return m;
}

// Splits "<prefix><module>.<weight|bias>".
bool split_suffix(const std::string& s, std::string& module, std::string& suffix) {
  const size_t dot = s.rfind('.');
  if (dot == std::string::npos) return false;
  module = s.substr(0, dot);
  suffix = s.substr(dot + 1);
  return suffix == "weight" || suffix == "bias";
}

std::string gguf_name_for(const std::string& hf) {
  if (hf == "gpt_neox.embed_in.weight") return "token_embd.weight";
  if (hf == "embed_out.weight") return "output.weight";
  std::string module, suffix;
  if (!split_suffix(hf, module, suffix)) return "";
  if (module == "gpt_neox.final_layer_norm") return "output_norm." + suffix;
  const std::string lp = "gpt_neox.layers.";
  if (module.rfind(lp, 0) != 0) return "";
  const size_t dot = module.find('.', lp.size());
  if (dot == std::string::npos) return "";
  const std::string layer = module.substr(lp.size(), dot - lp.size());
  const std::string sub = module.substr(dot + 1);
  for (const auto& [h, g] : layer_map())
    if (sub == h) return "blk." + layer + "." + g + "." + suffix;
  return "";
}

std::string hf_name_for(const std::string& g) {
  if (g == "token_embd.weight") return "gpt_neox.embed_in.weight";
  if (g == "output.weight") return "embed_out.weight";
  std::string module, suffix;
  if (!split_suffix(g, module, suffix)) return "";
  if (module == "output_norm") return "gpt_neox.final_layer_norm." + suffix;
  if (module.rfind("blk.", 0) != 0) return "";
  const size_t dot = module.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string layer = module.substr(4, dot - 4);
  const std::string sub = module.substr(dot + 1);
  for (const auto& [h, gg] : layer_map())
    if (sub == gg) return "gpt_neox.layers." + layer + "." + h + "." + suffix;
  return "";
}

bool is_qkv(const std::string& gguf_name) {
  return gguf_name.find(".attn_qkv.") != std::string::npos;
}

std::vector<float> to_f32_vector(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).to(DType::F32).contiguous();
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

bool looks_special(const std::string& s) {  // convert_hf_to_gguf does_token_look_special
  return s.size() >= 4 && s.compare(0, 2, "<|") == 0 && s.compare(s.size() - 2, 2, "|>") == 0;
}

// tokenizer.ggml.* keys for a byte-level BPE tokenizer.json, padded to the
// model's `n_vocab` rows.
void add_tokenizer(std::vector<GgufKV>& kv, const std::string& path, int64_t n_vocab,
                   const std::string& pre) {
  // Loading validates the file the way ./eval and ./train will read it:
  // anything this project would tokenize differently is refused here too.
  const Tokenizer tok = Tokenizer::from_json_file(path);
  const Json j = Json::parse_file(path);
  GL_CHECK(tok.vocab_size() <= n_vocab, path, ": the tokenizer has ", tok.vocab_size(),
           " ids but the model only ", n_vocab, " embedding rows");
  const Json& pt = j.at("pre_tokenizer", path);
  const Json* use_regex = pt.find("use_regex");
  GL_CHECK(use_regex == nullptr || use_regex->as_bool(), path,
           ": pre_tokenizer.use_regex is false, but llama.cpp's gpt2 tokenizer always splits "
           "with the GPT-2 regex");

  std::vector<std::string> tokens(static_cast<size_t>(n_vocab));
  std::vector<int64_t> types(size_t(n_vocab), UNUSED);
  for (int64_t i = 0; i < n_vocab; ++i) tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [text, id] : j.at("model", path).at("vocab", path).items("model.vocab")) {
    const int64_t k = id.as_int("model.vocab id");
    tokens[size_t(k)] = text;
    types[size_t(k)] = NORMAL;
  }
  if (const Json* added = j.find("added_tokens")) {
    for (const Json& a : added->as_array("added_tokens")) {
      const int64_t k = a.at("id", path).as_int("added_tokens id");
      const std::string& content = a.at("content", path).as_string("added_tokens content");
      tokens[size_t(k)] = content;
      const bool special = a.at("special", path).as_bool("added_tokens special");
      types[size_t(k)] = special || looks_special(content) ? CONTROL : USER_DEFINED;
    }
  }
  std::vector<std::string> merges;
  for (const Json& m : j.at("model", path).at("merges", path).as_array("model.merges")) {
    if (m.is_string()) {
      merges.push_back(m.as_string());
    } else {
      const auto& pair = m.as_array("model.merges entry");
      GL_CHECK(pair.size() == 2, path, ": model.merges entry is not a pair");
      merges.push_back(pair[0].as_string() + " " + pair[1].as_string());
    }
  }

  kv.push_back({"tokenizer.ggml.model", GgufValue::str("gpt2")});
  kv.push_back({"tokenizer.ggml.pre", GgufValue::str(pre)});
  kv.push_back({"tokenizer.ggml.tokens", GgufValue::str_array(std::move(tokens))});
  kv.push_back({"tokenizer.ggml.token_type", GgufValue::int_array(GgufType::INT32, types)});
  kv.push_back({"tokenizer.ggml.merges", GgufValue::str_array(std::move(merges))});
  if (const auto eos = tok.eos_id()) {
    // Pythia's config has bos = eos = <|endoftext|> (id 0).
    kv.push_back({"tokenizer.ggml.bos_token_id", GgufValue::u32(uint32_t(*eos))});
    kv.push_back({"tokenizer.ggml.eos_token_id", GgufValue::u32(uint32_t(*eos))});
  }
  // GPT-NeoX's tokenizer adds no BOS/EOS, and ./eval prepends nothing: say so
  // explicitly so llama-perplexity scores the same token stream.
  kv.push_back({"tokenizer.ggml.add_bos_token", GgufValue::boolean(false)});
  kv.push_back({"tokenizer.ggml.add_eos_token", GgufValue::boolean(false)});
}

}  // namespace

GgmlType parse_export_type(const std::string& text) {
  if (text == "f32") return GgmlType::F32;
  if (text == "f16") return GgmlType::F16;
  if (text == "q4_0") return GgmlType::Q4_0;
  if (text == "q4_1") return GgmlType::Q4_1;
  if (text == "q8_0") return GgmlType::Q8_0;
  GL_CHECK(false, "unknown export type '", text, "' (expected f32, f16, q4_0, q4_1, q8_0)");
  return GgmlType::F32;
}

const char* export_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "f32";
    case GgmlType::F16: return "f16";
    case GgmlType::Q4_0: return "q4_0";
    case GgmlType::Q4_1: return "q4_1";
    case GgmlType::Q8_0: return "q8_0";
    case GgmlType::BF16: return "bf16";
  }
  return "?";
}

std::optional<GgmlType> ggml_type_for_preset(const std::string& preset) {
  static const std::map<std::string, GgmlType> table = {
      {"q4_0", GgmlType::Q4_0}, {"q4_1", GgmlType::Q4_1}, {"q8_0", GgmlType::Q8_0}};
  const auto it = table.find(preset);
  if (it == table.end()) return std::nullopt;
  return it->second;
}

void check_qat_scheme(const std::string& qat_scheme, GgmlType type, bool force) {
  if (qat_scheme.empty() || force) return;
  const auto trained = ggml_type_for_preset(qat_scheme);
  if (trained && *trained == type) return;
  GL_CHECK(false, "export: the model was trained with QAT scheme '", qat_scheme, "' but --type ",
           export_type_name(type), " was asked for",
           trained ? "" : " (that scheme has no GGUF equivalent)",
           ": QAT only pays off when deployment uses the same scheme; export with --type ",
           trained ? export_type_name(*trained) : "<the trained scheme>",
           " or pass --force to export anyway");
}

std::vector<float> neox_qkv_to_gguf(const std::vector<float>& w, int64_t heads, int64_t head_size,
                                    int64_t cols) {
  GL_CHECK(int64_t(w.size()) == 3 * heads * head_size * cols, "neox_qkv_to_gguf: ", w.size(),
           " values, expected 3 * ", heads, " heads * ", head_size, " * ", cols);
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < 3; ++j)      // 0 q, 1 k, 2 v
      for (int64_t d = 0; d < head_size; ++d) {
        const int64_t src = (h * 3 + j) * head_size + d;     // HF [heads, 3, hs]
        const int64_t dst = (j * heads + h) * head_size + d; // GGUF [3, heads, hs]
        std::copy(w.begin() + src * cols, w.begin() + (src + 1) * cols, out.begin() + dst * cols);
      }
  return out;
}

std::vector<float> neox_qkv_from_gguf(const std::vector<float>& w, int64_t heads,
                                      int64_t head_size, int64_t cols) {
  GL_CHECK(int64_t(w.size()) == 3 * heads * head_size * cols, "neox_qkv_from_gguf: ", w.size(),
           " values, expected 3 * ", heads, " heads * ", head_size, " * ", cols);
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t d = 0; d < head_size; ++d) {
        const int64_t hf = (h * 3 + j) * head_size + d;
        const int64_t gg = (j * heads + h) * head_size + d;
        std::copy(w.begin() + gg * cols, w.begin() + (gg + 1) * cols, out.begin() + hf * cols);
      }
  return out;
}

GgufContent gguf_from_model(const LanguageModel& model, const std::string& tokenizer_json,
                            const GgufExportOptions& opt) {
  const ModelConfig& cfg = model.config();
  GL_CHECK(cfg.arch == Arch::GPT_NEOX, "export: only GPT-NeoX models can be exported to GGUF ",
           "(llama.cpp architecture gptneox)");
  GL_CHECK(cfg.norm == NormKind::LAYERNORM, "export: llama.cpp's gptneox uses LayerNorm; this ",
           "model's norm was swapped (RMSNorm / single-scale RMSNorm) and cannot be exported");
  GL_CHECK(opt.type != GgmlType::BF16, "export: bf16 is not an export type here");
  check_qat_scheme(opt.qat_scheme, opt.type, opt.force);

  GgufContent c;
  auto& kv = c.metadata;
  const int64_t hs = cfg.head_size();
  kv.push_back({"general.architecture", GgufValue::str("gptneox")});
  kv.push_back({"general.type", GgufValue::str("model")});
  kv.push_back({"general.name", GgufValue::str(opt.name.empty() ? "gridlock" : opt.name)});
  kv.push_back({"general.alignment", GgufValue::u32(opt.alignment)});
  kv.push_back({"gptneox.context_length", GgufValue::u32(uint32_t(cfg.max_positions))});
  kv.push_back({"gptneox.embedding_length", GgufValue::u32(uint32_t(cfg.hidden_size))});
  kv.push_back({"gptneox.block_count", GgufValue::u32(uint32_t(cfg.num_layers))});
  kv.push_back({"gptneox.feed_forward_length", GgufValue::u32(uint32_t(cfg.intermediate_size))});
  // HF: rotary_ndims = int(head_size * rotary_pct), Python int() truncation.
  kv.push_back({"gptneox.rope.dimension_count",
                GgufValue::u32(uint32_t(int64_t(double(hs) * cfg.rotary_pct)))});
  kv.push_back({"gptneox.rope.freq_base", GgufValue::f32(float(cfg.rotary_base))});
  kv.push_back({"gptneox.attention.head_count", GgufValue::u32(uint32_t(cfg.num_heads))});
  kv.push_back({"gptneox.use_parallel_residual", GgufValue::boolean(cfg.parallel_residual)});
  kv.push_back({"gptneox.attention.layer_norm_epsilon", GgufValue::f32(float(cfg.norm_eps))});
  kv.push_back({"general.file_type", GgufValue::u32(llama_ftype(opt.type))});
  kv.push_back({"general.quantization_version", GgufValue::u32(kQuantizationVersion)});
  add_tokenizer(kv, tokenizer_json, cfg.vocab_size, opt.tokenizer_pre);

  std::vector<NamedParam> params = model.parameters();
  // A tied head: transformers stores no embed_out, llama.cpp needs output.weight.
  if (cfg.tie_embeddings)
    for (const auto& p : model.parameters())
      if (p.name == "gpt_neox.embed_in.weight") params.push_back({"embed_out.weight", p.var});
  for (const auto& p : params) {
    const std::string name = gguf_name_for(p.name);
    GL_CHECK(!name.empty(), "export: parameter '", p.name, "' has no llama.cpp gptneox tensor");
    const Tensor& t = p.var.value();
    GL_CHECK(t.dim() == 1 || t.dim() == 2, "export: parameter '", p.name, "' is ", t.describe(),
             ", expected 1-D or 2-D");
    std::vector<float> v = to_f32_vector(t);
    GgufTensor g;
    g.name = name;
    const int64_t rows = t.dim() == 2 ? t.size(0) : 1, cols = t.size(t.dim() - 1);
    if (is_qkv(name)) {
      // 1-D bias: one value per row; 2-D weight: rows of cols values.
      v = t.dim() == 2 ? neox_qkv_to_gguf(v, cfg.num_heads, hs, cols)
                       : neox_qkv_to_gguf(v, cfg.num_heads, hs, 1);
    }
    g.ne = t.dim() == 2 ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{cols};
    if (t.dim() == 1) g.type = GgmlType::F32;
    else if (name == "output.weight" && is_quantized(opt.type) && !opt.pure)
      g.type = GgmlType::Q8_0;
    else
      g.type = opt.type;
    GL_CHECK(!is_quantized(g.type) || cols % GGML_QK == 0, "export: tensor '", name, "' (",
             p.name, ") has ne0 = ", cols, ", not a multiple of 32 as ", ggml_type_name(g.type),
             " needs; export it as f16/f32");
    g.data = ggml_quantize(g.type, v.data(), int64_t(v.size()));
    c.tensors.push_back(std::move(g));
  }
  return c;
}

void export_gguf(const LanguageModel& model, const std::string& tokenizer_json,
                 const std::string& out_path, const GgufExportOptions& opt) {
  const GgufContent c = gguf_from_model(model, tokenizer_json, opt);
  write_gguf(out_path, c.metadata, c.tensors);
}

std::vector<std::pair<std::string, Tensor>> read_gguf_state_dict(const std::string& path) {
  const GgufReader r = GgufReader::open(path);
  const std::string& arch = r.at("general.architecture").as_string("general.architecture");
  GL_CHECK(arch == "gptneox", path, ": general.architecture is '", arch, "', expected 'gptneox'");
  const int64_t heads = r.at("gptneox.attention.head_count").as_int("gptneox.attention.head_count");
  const int64_t C = r.at("gptneox.embedding_length").as_int("gptneox.embedding_length");
  GL_CHECK(heads > 0 && C % heads == 0, path, ": embedding_length ", C,
           " is not a multiple of head_count ", heads);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& t : r.tensors()) {
    const std::string hf = hf_name_for(t.name);
    GL_CHECK(!hf.empty(), path, ": tensor '", t.name, "' is not a gptneox tensor");
    GL_CHECK(t.ne.size() <= 2, path, ": tensor '", t.name, "' has ", t.ne.size(), " dims");
    std::vector<float> v = r.dequantize(t);
    if (is_qkv(t.name)) {
      GL_CHECK(t.ne.back() == 3 * C, path, ": tensor '", t.name, "' has ", t.ne.back(),
               " rows, expected 3 * embedding_length = ", 3 * C);
      v = neox_qkv_from_gguf(v, heads, C / heads, t.ne.size() == 2 ? t.ne[0] : 1);
    }
    const Shape shape = t.ne.size() == 2 ? Shape{t.ne[1], t.ne[0]} : Shape{t.ne[0]};
    out.emplace_back(hf, Tensor::from_data(v, shape));
  }
  return out;
}

}  // namespace gl
