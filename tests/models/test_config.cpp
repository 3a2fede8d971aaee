// ModelConfig: presets (parameter counts from the parameter table, without
// allocating), config.json parsing and its errors, to_hf_json round trips.
#include <doctest/doctest.h>

#include "models/layers.h"
#include "tests/testing.h"

using namespace gl;

namespace {

Json parse(const std::string& text) { return Json::parse(text, "test config"); }

const char* kNeox = R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
  "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000})";

}  // namespace

TEST_CASE("config presets: Pythia sizes and parameter counts") {
  struct Case {
    const char* name;
    int64_t C, L, NH, I, params;
  };
  // Counts: spec.md section 2.1 for 160m; the others are the published
  // totals of the Hugging Face checkpoints (2 V C + L (12 C^2 + 13 C) + 2 C
  // with I = 4 C), e.g. 70,426,624 for pythia-70m.
  for (const Case c : {Case{"pythia-14m", 128, 6, 4, 512, 14'067'712},
                       Case{"pythia-31m", 256, 6, 8, 1024, 30'494'720},
                       Case{"pythia-70m", 512, 6, 8, 2048, 70'426'624},
                       Case{"pythia-160m", 768, 12, 12, 3072, 162'322'944},
                       Case{"pythia-410m", 1024, 24, 16, 4096, 405'334'016},
                       Case{"pythia-1b", 2048, 16, 8, 8192, 1'011'781'632}}) {
    INFO(c.name);
    const ModelConfig m = ModelConfig::preset(c.name);
    CHECK(m.arch == Arch::GPT_NEOX);
    CHECK(m.hidden_size == c.C);
    CHECK(m.num_layers == c.L);
    CHECK(m.num_heads == c.NH);
    CHECK(m.intermediate_size == c.I);
    CHECK(m.vocab_size == 50304);
    CHECK(m.max_positions == 2048);
    CHECK(m.rotary_pct == 0.25);
    CHECK(m.rotary_base == 10000.0);
    CHECK(m.norm_eps == 1e-5);
    CHECK(m.parallel_residual);
    CHECK_FALSE(m.tie_embeddings);
    CHECK(m.gelu == GeluKind::ERF);
    CHECK(param_count(m) == c.params);
  }
  // spec.md: block-linear weights of pythia-160m total 84,934,656.
  int64_t linear = 0;
  for (const ParamSpec& s : param_specs(ModelConfig::preset("pythia-160m")))
    if (s.shape.size() == 2 && s.name.find("layers.") != std::string::npos)
      linear += shape_numel(s.shape);
  CHECK(linear == 84'934'656);
}

TEST_CASE("config presets: GPT-2 124M") {
  const ModelConfig g = ModelConfig::preset("gpt2");
  CHECK(g.arch == Arch::GPT2);
  CHECK(g.hidden_size == 768);
  CHECK(g.num_layers == 12);
  CHECK(g.num_heads == 12);
  CHECK(g.vocab_size == 50257);
  CHECK(g.max_positions == 1024);
  CHECK(g.tie_embeddings);
  CHECK(g.gelu == GeluKind::TANH);
  CHECK(param_count(g) == 124'439'808);  // the tied head counted once, as HF does
  CHECK_THROWS_WITH_AS(ModelConfig::preset("pythia-12b"), doctest::Contains("unknown model preset 'pythia-12b'"), Error);
}

TEST_CASE("config: parameter table names and order follow the HF state dict") {
  ModelConfig c = ModelConfig::from_hf_json(parse(kNeox), "t");
  c.num_layers = 1;
  const std::vector<ParamSpec> s = param_specs(c);
  const std::vector<std::string> expected = {
      "gpt_neox.embed_in.weight",
      "gpt_neox.layers.0.input_layernorm.weight",
      "gpt_neox.layers.0.input_layernorm.bias",
      "gpt_neox.layers.0.post_attention_layernorm.weight",
      "gpt_neox.layers.0.post_attention_layernorm.bias",
      "gpt_neox.layers.0.attention.query_key_value.weight",
      "gpt_neox.layers.0.attention.query_key_value.bias",
      "gpt_neox.layers.0.attention.dense.weight",
      "gpt_neox.layers.0.attention.dense.bias",
      "gpt_neox.layers.0.mlp.dense_h_to_4h.weight",
      "gpt_neox.layers.0.mlp.dense_h_to_4h.bias",
      "gpt_neox.layers.0.mlp.dense_4h_to_h.weight",
      "gpt_neox.layers.0.mlp.dense_4h_to_h.bias",
      "gpt_neox.final_layer_norm.weight",
      "gpt_neox.final_layer_norm.bias",
      "embed_out.weight"};
  REQUIRE(s.size() == expected.size());
  for (size_t i = 0; i < s.size(); ++i) CHECK(s[i].name == expected[i]);
  CHECK(s[5].shape == Shape{192, 64});
  CHECK(s[9].shape == Shape{256, 64});

  ModelConfig g = ModelConfig::preset("gpt2");
  g.num_layers = 1;
  const std::vector<ParamSpec> t = param_specs(g);
  const std::vector<std::string> expected2 = {
      "transformer.wte.weight",          "transformer.wpe.weight",
      "transformer.h.0.ln_1.weight",     "transformer.h.0.ln_1.bias",
      "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
      "transformer.h.0.attn.c_proj.weight", "transformer.h.0.attn.c_proj.bias",
      "transformer.h.0.ln_2.weight",     "transformer.h.0.ln_2.bias",
      "transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.bias",
      "transformer.h.0.mlp.c_proj.weight", "transformer.h.0.mlp.c_proj.bias",
      "transformer.ln_f.weight",         "transformer.ln_f.bias"};
  REQUIRE(t.size() == expected2.size());
  for (size_t i = 0; i < t.size(); ++i) CHECK(t[i].name == expected2[i]);
  CHECK(t[4].shape == Shape{768, 2304});  // Conv1D: [in, out]
  CHECK(t[12].shape == Shape{3072, 768});
}

TEST_CASE("config: from_hf_json reads GPT-NeoX keys and transformers' defaults") {
  const ModelConfig c = ModelConfig::from_hf_json(parse(kNeox), "t");
  CHECK(c.arch == Arch::GPT_NEOX);
  CHECK(c.hidden_size == 64);
  CHECK(c.head_size() == 16);
  CHECK(c.max_positions == 2048);
  CHECK(c.rotary_pct == 0.25);
  CHECK(c.rotary_base == 10000.0);
  CHECK(c.norm_eps == 1e-5);
  CHECK(c.parallel_residual);
  CHECK_FALSE(c.tie_embeddings);
  CHECK(c.gelu == GeluKind::ERF);
  CHECK(c.norm == NormKind::LAYERNORM);

  const ModelConfig d = ModelConfig::from_hf_json(
      parse(R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000,
        "rotary_pct": 1.0, "rotary_emb_base": 500, "layer_norm_eps": 1e-3,
        "use_parallel_residual": false, "hidden_act": "gelu_new", "attention_bias": true,
        "rope_scaling": null, "max_position_embeddings": 128, "gridlock_norm": "ssnorm"})"),
      "t");
  CHECK(d.rotary_pct == 1.0);
  CHECK(d.rotary_base == 500.0);
  CHECK(d.norm_eps == 1e-3);
  CHECK_FALSE(d.parallel_residual);
  CHECK(d.gelu == GeluKind::TANH);
  CHECK(d.max_positions == 128);
  CHECK(d.norm == NormKind::SSNORM);
  // Newer transformers write partial_rotary_factor / rope_theta.
  const ModelConfig e = ModelConfig::from_hf_json(
      parse(R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000,
        "partial_rotary_factor": 0.5, "rope_theta": 20000})"),
      "t");
  CHECK(e.rotary_pct == 0.5);
  CHECK(e.rotary_base == 20000.0);
}

TEST_CASE("config: from_hf_json reads GPT-2 keys") {
  const ModelConfig g = ModelConfig::from_hf_json(
      parse(R"({"model_type": "gpt2", "n_embd": 48, "n_layer": 3, "n_head": 6, "n_inner": null,
        "vocab_size": 77, "n_positions": 40, "layer_norm_epsilon": 1e-5,
        "activation_function": "gelu_new", "scale_attn_weights": true,
        "reorder_and_upcast_attn": false})"),
      "t");
  CHECK(g.arch == Arch::GPT2);
  CHECK(g.intermediate_size == 4 * 48);
  CHECK(g.max_positions == 40);
  CHECK(g.tie_embeddings);
  CHECK(g.gelu == GeluKind::TANH);
  CHECK_FALSE(g.parallel_residual);
  // OpenAI-converted configs carry n_ctx; n_inner may be set.
  const ModelConfig h = ModelConfig::from_hf_json(
      parse(R"({"model_type": "gpt2", "n_embd": 48, "n_layer": 3, "n_head": 6, "n_inner": 100,
        "vocab_size": 77, "n_ctx": 32})"),
      "t");
  CHECK(h.intermediate_size == 100);
  CHECK(h.max_positions == 32);
}

TEST_CASE("config: from_hf_json errors name the file, the key and the value") {
  auto err = [](const std::string& text) {
    try {
      ModelConfig::from_hf_json(parse(text), "dir/config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(err(R"({"model_type": "llama", "hidden_size": 8})")
            .find("dir/config.json: unknown model_type 'llama'") != std::string::npos);
  CHECK(err(R"({"hidden_size": 8})").find("dir/config.json: missing required key 'model_type'") !=
        std::string::npos);
  CHECK(err(R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 1000})")
            .find("missing required key 'intermediate_size'") != std::string::npos);
  CHECK(err(R"({"model_type": "gpt2", "n_embd": 48, "n_layer": 3, "vocab_size": 7,
    "n_positions": 8})")
            .find("missing required key 'n_head'") != std::string::npos);
  // Bad types.
  CHECK(err(R"({"model_type": "gpt_neox", "hidden_size": "64", "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000})")
            .find("dir/config.json: key 'hidden_size': expected an integer, got string") !=
        std::string::npos);
  CHECK(err(R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2.5,
    "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000})")
            .find("key 'num_hidden_layers': expected an integer") != std::string::npos);
  CHECK(err(R"({"model_type": 7})").find("key 'model_type': expected a string") !=
        std::string::npos);
  CHECK(err(R"([1, 2])").find("dir/config.json: a model config must be a JSON object") !=
        std::string::npos);
  const std::string base = R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000, )";
  CHECK(err(base + R"("use_parallel_residual": "yes"})")
            .find("key 'use_parallel_residual': expected a bool") != std::string::npos);
  CHECK(err(base + R"("hidden_act": "relu"})").find("activation 'relu' is not supported") !=
        std::string::npos);
  CHECK(err(base + R"("attention_bias": false})").find("attention_bias false") !=
        std::string::npos);
  CHECK(err(base + R"("rope_scaling": {"type": "linear", "factor": 2.0}})")
            .find("rope_scaling") != std::string::npos);
  CHECK(err(base + R"("gridlock_norm": "batchnorm"})")
            .find("gridlock_norm 'batchnorm'") != std::string::npos);
  // Inconsistent sizes.
  CHECK(err(R"({"model_type": "gpt_neox", "hidden_size": 30, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000})")
            .find("dir/config.json: hidden size 30 is not divisible by the number of heads 4") !=
        std::string::npos);
  CHECK(err(base + R"("rotary_pct": 0.0625})").find("rotary dims int(16 * 0.0625) = 1 must be even") !=
        std::string::npos);
  CHECK(err(base + R"("rotary_pct": 1.5})").find("rotary_pct must be in [0, 1]") !=
        std::string::npos);
  CHECK(err(R"({"model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 0,
    "num_attention_heads": 4, "intermediate_size": 256, "vocab_size": 1000})")
            .find("num_layers must be positive, got 0") != std::string::npos);
  CHECK(err(R"({"model_type": "gpt2", "n_embd": 48, "n_layer": 3, "n_head": 6, "vocab_size": 7,
    "n_positions": 8, "scale_attn_weights": false})")
            .find("scale_attn_weights false") != std::string::npos);
  CHECK(err(R"({"model_type": "gpt2", "n_embd": 48, "n_layer": 3, "n_head": 6, "vocab_size": 7,
    "n_positions": 8, "reorder_and_upcast_attn": true})")
            .find("reorder_and_upcast_attn true") != std::string::npos);
}

TEST_CASE("config: to_hf_json round-trips through from_hf_json") {
  for (const char* name : {"pythia-14m", "pythia-1b", "gpt2"}) {
    INFO(name);
    ModelConfig c = ModelConfig::preset(name);
    c.norm = NormKind::RMSNORM;
    const Json j = c.to_hf_json();
    const ModelConfig d = ModelConfig::from_hf_json(Json::parse(j.dump(2), "dumped"), "dumped");
    CHECK(d.arch == c.arch);
    CHECK(d.vocab_size == c.vocab_size);
    CHECK(d.hidden_size == c.hidden_size);
    CHECK(d.num_layers == c.num_layers);
    CHECK(d.num_heads == c.num_heads);
    CHECK(d.intermediate_size == c.intermediate_size);
    CHECK(d.max_positions == c.max_positions);
    CHECK(d.norm_eps == c.norm_eps);
    CHECK(d.parallel_residual == c.parallel_residual);
    CHECK(d.tie_embeddings == c.tie_embeddings);
    CHECK(d.gelu == c.gelu);
    CHECK(d.norm == NormKind::RMSNORM);
    CHECK(d.initializer_range == c.initializer_range);
    if (c.arch == Arch::GPT_NEOX) {
      CHECK(d.rotary_pct == c.rotary_pct);
      CHECK(d.rotary_base == c.rotary_base);
    }
    CHECK(j.at("torch_dtype").as_string() == "float32");
    CHECK(j.at("architectures")[0].as_string() ==
          (c.arch == Arch::GPT2 ? "GPT2LMHeadModel" : "GPTNeoXForCausalLM"));
    CHECK(j.at("bos_token_id").as_int() == (c.arch == Arch::GPT2 ? 50256 : 0));
    CHECK(j.at("eos_token_id").as_int() == (c.arch == Arch::GPT2 ? 50256 : 0));
  }
  // A layernorm model carries no gridlock key (a plain transformers config).
  CHECK_FALSE(ModelConfig::preset("pythia-14m").to_hf_json().contains("gridlock_norm"));
}
