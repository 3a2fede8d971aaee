// Export of a gridlock GPT-NeoX model (Pythia) to GGUF for llama.cpp's
// "gptneox" architecture, and the reverse read-back used by tests.
//
// What llama.cpp's convert_hf_to_gguf.py (GPTNeoXModel) writes, reproduced:
//   tensors  gpt_neox.embed_in.weight -> token_embd.weight;
//            layers.N.{input_layernorm, attention.query_key_value,
//            attention.dense, post_attention_layernorm, mlp.dense_h_to_4h,
//            mlp.dense_4h_to_h} -> blk.N.{attn_norm, attn_qkv, attn_output,
//            ffn_norm, ffn_up, ffn_down}.{weight,bias};
//            final_layer_norm -> output_norm; embed_out -> output.weight
//            (a tied head is written out as output.weight: llama.cpp's
//            gptneox loader requires it).
//   QKV      HF rows are [heads, 3, head_size] (per head q | k | v); GGUF
//            rows are [3, heads, head_size] (all Q; all K; all V), for the
//            weight rows and the bias alike (spec.md 4.2).
//   dims     a torch [out, in] weight is stored with ne = {in, out}, so the
//            32-value blocks of Q4_0/Q4_1/Q8_0 run along the input dim.
//   metadata general.architecture "gptneox", general.name, general.file_type
//            (llama_ftype), general.quantization_version (2), general.alignment,
//            gptneox.{context_length, embedding_length, block_count,
//            feed_forward_length, rope.dimension_count (= int(head_size *
//            rotary_pct), the ROTARY dims, not the head size),
//            rope.freq_base, attention.head_count,
//            attention.layer_norm_epsilon, use_parallel_residual}.
//   tokenizer tokenizer.ggml.model "gpt2" (byte-level BPE), .pre, .tokens
//            (one per model vocab row: ids the tokenizer lacks become
//            "[PAD<id>]" of type UNUSED, as the converter pads Pythia's 50277
//            tokens to 50304 rows), .token_type (1 NORMAL, 3 CONTROL for
//            special added tokens, 4 USER_DEFINED for other added tokens such
//            as NeoX's runs of spaces, 5 UNUSED), .merges ("a b"),
//            .bos/.eos_token_id (<|endoftext|>), .add_bos/.add_eos_token false.
//
// Type policy (ExportOptions::type): 1-D tensors (norms, biases) stay F32;
// every 2-D weight gets `type`, except output.weight, which is Q8_0 when
// `type` is a 4-bit type and `pure` is false. Why: llama-quantize keeps the
// head at higher precision (Q6_K when ne0 % 256 == 0), and Q6_K is not
// implemented here; Q8_0 is the type llama-quantize itself falls back to.
// Quantized types need ne0 % 32 == 0 (error naming the tensor otherwise).
//
// QAT guard: a model trained with fake quantization (scheme = quant preset
// name, e.g. from the run's recipe) is only worth deploying with the same
// format; export refuses a different `type` unless `force`.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "quant/gguf.h"
#include "quant/types.h"

namespace gl {

class LanguageModel;

struct GgufExportOptions {
  GgmlType type = GgmlType::F32;  // 2-D weights
  bool pure = false;              // output.weight gets `type` too
  std::string qat_scheme;         // the preset the model was trained with ("" none)
  bool force = false;             // export even when qat_scheme differs from `type`
  std::string name;               // general.name ("" = "gridlock")
  uint32_t alignment = 32;        // general.alignment (power of two)
  // tokenizer.ggml.pre: llama.cpp names pre-tokenizers by a hash of an
  // encoding; GPT-NeoX-20B's tokenizer (Pythia's) hashes to the entry the
  // converter labels "olmo" (OLMo-1.7 reuses it). llama.cpp's olmo, mpt and
  // gpt-2 pre-tokenizers all apply the GPT-2 regex, which every ByteLevel
  // tokenizer.json accepted here uses.
  std::string tokenizer_pre = "olmo";
};

// "f32" | "f16" | "q4_0" | "q4_1" | "q8_0" -> type; error naming the text.
GgmlType parse_export_type(const std::string& text);
const char* export_type_name(GgmlType t);  // the inverse ("q4_0", ...)

// The quant presets that ARE a GGUF format (q4_0 -> Q4_0, q4_1 -> Q4_1,
// q8_0 -> Q8_0); nullopt for every other preset (e.g. a per-group INT4 probe
// scheme, which llama.cpp cannot run).
std::optional<GgmlType> ggml_type_for_preset(const std::string& preset);

// Throws (saying why) when `qat_scheme` is set and does not map to `type`,
// unless `force`.
void check_qat_scheme(const std::string& qat_scheme, GgmlType type, bool force);

// HF [heads, 3, head_size] rows -> GGUF [3, heads, head_size] rows (and
// back). `w` holds 3 * heads * head_size rows of `cols` values (cols = 1 for
// the bias).
std::vector<float> neox_qkv_to_gguf(const std::vector<float>& w, int64_t heads, int64_t head_size,
                                    int64_t cols);
std::vector<float> neox_qkv_from_gguf(const std::vector<float>& w, int64_t heads,
                                      int64_t head_size, int64_t cols);

// The metadata and tensors that export_gguf writes (no I/O besides reading
// the tokenizer). Errors name the tensor, key or file.
struct GgufContent {
  std::vector<GgufKV> metadata;
  std::vector<GgufTensor> tensors;
};
GgufContent gguf_from_model(const LanguageModel& model, const std::string& tokenizer_json,
                            const GgufExportOptions& opt);

void export_gguf(const LanguageModel& model, const std::string& tokenizer_json,
                 const std::string& out_path, const GgufExportOptions& opt);

// Reads a gptneox GGUF back into the Hugging Face state dict: HF names and
// shapes, f32 on the CPU, every tensor dequantized and the QKV order undone
// (embed_out.weight from output.weight).
std::vector<std::pair<std::string, Tensor>> read_gguf_state_dict(const std::string& path);

}  // namespace gl
