// Hugging Face model directories: load_hf_model's checks (missing, extra,
// misshaped tensors, config mismatches), the buffers and name variants real
// checkpoints carry, f16/bf16 storage, shards, and save -> load round trips.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/safetensors.h"
#include "models/layers.h"
#include "tests/models/model_testing.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

using TensorList = std::vector<std::pair<std::string, Tensor>>;

TensorList read_all(const std::string& dir) {
  const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
  TensorList out;
  for (const SafetensorsEntry& e : f.entries()) out.emplace_back(e.name, f.load(e.name));
  return out;
}

// A copy of fixture `name` in `dst` with its tensors passed through `edit`.
std::string edited_copy(const std::string& name, const std::string& dst,
                        const std::function<void(TensorList&)>& edit) {
  const std::string src = model_fixture_dir(name);
  std::filesystem::create_directories(dst);
  std::filesystem::copy_file(src + "/config.json", dst + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  TensorList t = read_all(src);
  edit(t);
  save_safetensors(dst + "/model.safetensors", t, {{"format", "pt"}});
  return dst;
}

std::string load_error(const std::string& dir) {
  try {
    load_hf_model(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

void check_same_params(const LanguageModel& a, const LanguageModel& b) {
  const auto p = a.parameters(), q = b.parameters();
  REQUIRE(p.size() == q.size());
  for (size_t i = 0; i < p.size(); ++i) {
    CHECK(p[i].name == q[i].name);
    CHECK(check_close(p[i].name, q[i].var.value(), p[i].var.value(), 0, 0));
  }
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

}  // namespace

TEST_CASE("checkpoint: a missing tensor is an error naming the dir, tensor and shape") {
  TempDir tmp;
  const std::string dir = edited_copy("neox_parallel", tmp / "m", [](TensorList& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](auto& p) { return p.first == "gpt_neox.layers.1.mlp.dense_4h_to_h.bias"; }),
            t.end());
  });
  const std::string e = load_error(dir);
  CHECK(e.find(dir + ": tensor 'gpt_neox.layers.1.mlp.dense_4h_to_h.bias' is missing") !=
        std::string::npos);
  CHECK(e.find("[32]") != std::string::npos);
}

TEST_CASE("checkpoint: an extra tensor is an error naming it") {
  TempDir tmp;
  const std::string dir = edited_copy("gpt2", tmp / "m", [](TensorList& t) {
    t.emplace_back("transformer.h.0.attn.q_norm.weight", Tensor::ones({8}));
  });
  const std::string e = load_error(dir);
  CHECK(e.find(dir + ": unexpected tensor 'transformer.h.0.attn.q_norm.weight'") !=
        std::string::npos);
}

TEST_CASE("checkpoint: a wrongly shaped tensor is an error with both shapes") {
  TempDir tmp;
  const std::string dir = edited_copy("neox_parallel", tmp / "m", [](TensorList& t) {
    for (auto& [name, v] : t)
      if (name == "gpt_neox.layers.0.attention.query_key_value.weight") v = v.transpose(0, 1).contiguous();
  });
  const std::string e = load_error(dir);
  CHECK(e.find(dir + ": tensor 'gpt_neox.layers.0.attention.query_key_value.weight' has shape "
                     "[32, 96] but the config needs [96, 32]") != std::string::npos);
}

TEST_CASE("checkpoint: a config that does not match the tensors") {
  TempDir tmp;
  const std::string dir = edited_copy("neox_parallel", tmp / "m", [](TensorList&) {});
  Json cfg = Json::parse_file(dir + "/config.json");
  cfg.set("num_hidden_layers", 3);
  write_text(dir + "/config.json", cfg.dump(2));
  CHECK(load_error(dir).find("tensor 'gpt_neox.layers.2.input_layernorm.weight' is missing") !=
        std::string::npos);
  cfg.set("num_hidden_layers", 2);
  cfg.set("intermediate_size", 96);
  write_text(dir + "/config.json", cfg.dump(2));
  CHECK(load_error(dir).find("'gpt_neox.layers.0.mlp.dense_h_to_4h.weight' has shape [80, 32] but "
                             "the config needs [96, 32]") != std::string::npos);
  cfg.set("intermediate_size", 80);
  cfg.set("model_type", "mistral");
  write_text(dir + "/config.json", cfg.dump(2));
  CHECK(load_error(dir).find(dir + "/config.json: unknown model_type 'mistral'") !=
        std::string::npos);
  // rmsnorm declared over a layernorm checkpoint: the biases are extra.
  cfg.set("model_type", "gpt_neox");
  cfg.set("gridlock_norm", "rmsnorm");
  write_text(dir + "/config.json", cfg.dump(2));
  CHECK(load_error(dir).find("unexpected tensor") != std::string::npos);
  std::filesystem::remove(dir + "/config.json");
  CHECK(load_error(dir).find("no config.json") != std::string::npos);
  CHECK(load_error(tmp / "nowhere").find("no config.json") != std::string::npos);
}

TEST_CASE("checkpoint: an integer tensor where a weight belongs is an error") {
  TempDir tmp;
  const std::string dir = edited_copy("gpt2", tmp / "m", [](TensorList& t) {
    for (auto& [name, v] : t)
      if (name == "transformer.ln_f.bias") v = Tensor::zeros(v.shape(), DType::I32);
  });
  CHECK(load_error(dir).find("'transformer.ln_f.bias' is i32, expected a floating dtype") !=
        std::string::npos);
}

TEST_CASE("checkpoint: buffers of old checkpoints and a stored tied head are ignored") {
  TempDir tmp;
  // Pythia's transformers-4.24 checkpoints: causal mask, masked_bias, inv_freq.
  const std::string neox = edited_copy("neox_parallel", tmp / "neox", [](TensorList& t) {
    for (int l = 0; l < 2; ++l) {
      const std::string p = "gpt_neox.layers." + std::to_string(l) + ".attention.";
      t.emplace_back(p + "bias", Tensor::ones({1, 1, 64, 64}));
      t.emplace_back(p + "masked_bias", Tensor::full({}, -1e9));
      t.emplace_back(p + "rotary_emb.inv_freq", Tensor::ones({1}));
    }
  });
  check_same_params(*load_hf_model(neox), *load_hf_model(model_fixture_dir("neox_parallel")));
  // openai-community/gpt2: names without "transformer.", attn.bias buffers,
  // and (in some saves) the tied lm_head.weight.
  const std::string gpt2 = edited_copy("gpt2", tmp / "gpt2", [](TensorList& t) {
    Tensor wte;
    for (auto& [name, v] : t) {
      if (name == "transformer.wte.weight") wte = v;
      name = name.substr(std::string("transformer.").size());
    }
    t.emplace_back("h.0.attn.bias", Tensor::ones({1, 1, 64, 64}));
    t.emplace_back("h.1.attn.masked_bias", Tensor::full({}, -1e4));
    t.emplace_back("lm_head.weight", wte);
  });
  check_same_params(*load_hf_model(gpt2), *load_hf_model(model_fixture_dir("gpt2")));
  // An untied model must not treat its head as ignorable: a GPT-NeoX
  // checkpoint without embed_out is incomplete.
  const std::string headless = edited_copy("neox_parallel", tmp / "headless", [](TensorList& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](auto& p) { return p.first == "embed_out.weight"; }),
            t.end());
  });
  CHECK(load_error(headless).find("'embed_out.weight' is missing") != std::string::npos);
}

TEST_CASE("checkpoint: f16 and bf16 stored tensors are converted on load") {
  TempDir tmp;
  const auto ref = load_hf_model(model_fixture_dir("neox_sequential"));
  for (DType dt : {DType::F16, DType::BF16}) {
    INFO(dtype_name(dt));
    const std::string dir = edited_copy("neox_sequential", tmp / dtype_name(dt), [&](TensorList& t) {
      for (auto& [name, v] : t) v = v.to(dt);
    });
    const auto m = load_hf_model(dir);
    const auto p = m->parameters(), q = ref->parameters();
    for (size_t i = 0; i < p.size(); ++i) {
      CHECK(p[i].var.dtype() == DType::F32);
      // Exactly the 16-bit rounding of the f32 original, widened.
      CHECK(check_close(p[i].name, p[i].var.value(), q[i].var.value().to(dt).to(DType::F32), 0, 0));
    }
  }
}

TEST_CASE("checkpoint: a sharded checkpoint loads like the single file") {
  TempDir tmp;
  const std::string src = model_fixture_dir("gpt2");
  const std::string dir = tmp / "sharded";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
  const TensorList t = read_all(src);
  const size_t half = t.size() / 2;
  save_safetensors(dir + "/model-00001-of-00002.safetensors", TensorList(t.begin(), t.begin() + half));
  save_safetensors(dir + "/model-00002-of-00002.safetensors", TensorList(t.begin() + half, t.end()));
  Json map = Json::object();
  for (size_t i = 0; i < t.size(); ++i)
    map.set(t[i].first, i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
  Json index = Json::object();
  index.set("metadata", Json::object());
  index.set("weight_map", map);
  write_text(dir + "/model.safetensors.index.json", index.dump(2));
  check_same_params(*load_hf_model(dir), *load_hf_model(src));
}

TEST_CASE("checkpoint: save_hf_model -> load_hf_model round trip of random models") {
  TempDir tmp;
  ModelConfig neox = ModelConfig::preset("pythia-14m");
  neox.vocab_size = 97;
  neox.hidden_size = 32;
  neox.num_layers = 2;
  neox.intermediate_size = 48;
  ModelConfig gpt2 = ModelConfig::preset("gpt2");
  gpt2.vocab_size = 61;
  gpt2.hidden_size = 24;
  gpt2.num_heads = 3;
  gpt2.num_layers = 1;
  gpt2.intermediate_size = 96;
  gpt2.max_positions = 16;
  ModelConfig untied = gpt2;
  untied.tie_embeddings = false;
  ModelConfig ss = neox;
  ss.norm = NormKind::SSNORM;
  ModelConfig tied_neox = neox;
  tied_neox.tie_embeddings = true;
  int i = 0;
  for (const ModelConfig& c : {neox, gpt2, untied, ss, tied_neox}) {
    for (DType dt : {DType::F32, DType::F64}) {
      INFO("config ", i, " ", dtype_name(dt));
      Generator gen(7);
      const auto m = make_model(c, gen, dt);
      const std::string dir = tmp / ("m" + std::to_string(i++));
      save_hf_model(*m, dir);
      const Json cfg = Json::parse_file(dir + "/config.json");
      CHECK(cfg.at("torch_dtype").as_string() == (dt == DType::F32 ? "float32" : "float64"));
      const auto back = load_hf_model(dir, dt);
      CHECK(back->config().tie_embeddings == c.tie_embeddings);
      CHECK(back->config().norm == c.norm);
      check_same_params(*m, *back);
      // The stored names are exactly the parameter table.
      const SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
      const auto specs = param_specs(c);
      REQUIRE(f.entries().size() == specs.size());
      for (size_t k = 0; k < specs.size(); ++k) {
        CHECK(f.entries()[k].name == specs[k].name);
        CHECK(f.entries()[k].dtype == dt);
      }
      const Tensor ids = Tensor::from_data<int64_t>({1, 5, 9, 2, 0, 7}, {2, 3});
      NoGradGuard no_grad;
      CHECK(check_close("logits", back->logits(ids).value(), m->logits(ids).value(), 0, 0));
    }
  }
}

TEST_CASE("checkpoint: a token id beyond the vocabulary is an error naming it") {
  const auto m = load_hf_model(model_fixture_dir("neox_sequential"));
  const Tensor ids = Tensor::from_data<int64_t>({1, 2, 101}, {1, 3});
  CHECK_THROWS_WITH_AS(m->logits(ids), doctest::Contains("101"), Error);
  CHECK_THROWS_WITH_AS(m->logits(Tensor::zeros({3}, DType::I64)), doctest::Contains("ids must be [B, T]"),
                       Error);
  CHECK_THROWS_WITH_AS(m->logits(Tensor::zeros({1, 3}, DType::F32)),
                       doctest::Contains("ids must be i32 or i64"), Error);
  const auto g = load_hf_model(model_fixture_dir("gpt2"));
  CHECK_THROWS_WITH_AS(g->logits(Tensor::zeros({1, 65}, DType::I64)),
                       doctest::Contains("exceed the model's n_positions 64"), Error);
}
