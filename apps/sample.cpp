// gridlock_sample: the program behind ./sample. Generates text from a
// prompt with a Hugging Face model directory.
//
// Generation with the KV cache (LanguageModel::logits with a KVCache): the
// prompt goes through the model in one forward pass, then each new token
// alone, attending over the cached keys and values, so the cost is linear
// in the length. --no-cache recomputes the whole sequence every step (the
// quadratic reference; greedy decoding must give the same tokens).
// The choice of each token (temperature, top-k, top-p, the draw) is
// models/sampling.h, on the host in double, with one Philox draw per token
// from --seed: a seed gives the same tokens on CPU and GPU up to the
// logits' rounding differences between devices.
// Stops at the end-of-sequence token (config.json's eos_token_id, else the
// tokenizer's <|endoftext|>; unless --ignore-eos), after --max-new-tokens,
// or when the sequence fills the model's context (max_positions).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "data/unicode.h"
#include "models/model.h"
#include "models/sampling.h"

using namespace gl;
using namespace gl::apps;

namespace {

const char* kUsage =
    "usage: ./sample MODEL_DIR --prompt TEXT [options]\n"
    "\n"
    "Generates a continuation of TEXT with the Hugging Face model in MODEL_DIR\n"
    "(config.json, model.safetensors, tokenizer.json) and prints prompt + continuation.\n"
    "\n"
    "options:\n"
    "  --prompt TEXT           the prompt (tokenized with MODEL_DIR/tokenizer.json)\n"
    "  --prompt-tokens IDS     the prompt as comma-separated token ids instead\n"
    "                          (no tokenizer needed; without one, ids are printed)\n"
    "  --max-new-tokens N      tokens to generate at most (default 64)\n"
    "  --temperature T         softmax temperature, 0 = greedy argmax (default 1)\n"
    "  --top-k K               keep the K most probable tokens, 0 = off (default 0)\n"
    "  --top-p P               keep the smallest set of most probable tokens with\n"
    "                          total probability >= P, 1 = off (default 1)\n"
    "                          (temperature, then top-k, then top-p, as Hugging Face)\n"
    "  --seed S                Philox seed of the draws (default 0)\n"
    "  --device cpu|cuda[:N]   where to run (default cpu)\n"
    "  --dtype f32|f64         compute dtype (default f32)\n"
    "  --ignore-eos            do not stop at the end-of-sequence token\n"
    "  --no-cache              recompute the whole sequence each step (slow; a check)\n"
    "  --json                  print one JSON line: prompt_tokens, tokens, text, stop\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

struct Options {
  std::string model_dir;
  std::optional<std::string> prompt, prompt_tokens;
  int64_t max_new_tokens = 64;
  SamplingParams sampling;
  uint64_t seed = 0;
  Device device = Device::cpu();
  DType dtype = DType::F32;
  bool ignore_eos = false, no_cache = false, json = false;
};

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--prompt") o.prompt = args.value(a);
    else if (a == "--prompt-tokens") o.prompt_tokens = args.value(a);
    else if (a == "--max-new-tokens") o.max_new_tokens = parse_int(a, args.value(a), 0);
    else if (a == "--temperature") o.sampling.temperature = parse_double(a, args.value(a));
    else if (a == "--top-k") o.sampling.top_k = parse_int(a, args.value(a), 0);
    else if (a == "--top-p") o.sampling.top_p = parse_double(a, args.value(a));
    else if (a == "--seed") o.seed = parse_u64(a, args.value(a));
    else if (a == "--device") o.device = parse_device(a, args.value(a));
    else if (a == "--dtype") o.dtype = parse_float_dtype(a, args.value(a));
    else if (a == "--ignore-eos") args.no_value(a), o.ignore_eos = true;
    else if (a == "--no-cache") args.no_value(a), o.no_cache = true;
    else if (a == "--json") args.no_value(a), o.json = true;
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else positional.push_back(a);
  }
  if (positional.size() != 1)
    throw UsageError("expected one MODEL_DIR, got " + std::to_string(positional.size()) +
                     " positional argument(s)");
  o.model_dir = positional[0];
  if (o.prompt.has_value() == o.prompt_tokens.has_value())
    throw UsageError("give exactly one of --prompt TEXT and --prompt-tokens IDS");
  if (o.sampling.temperature < 0)
    throw UsageError("--temperature must be >= 0, got " + std::to_string(o.sampling.temperature));
  if (!(o.sampling.top_p > 0 && o.sampling.top_p <= 1))
    throw UsageError("--top-p must be in (0, 1], got " + std::to_string(o.sampling.top_p));
  return o;
}

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    ids.push_back(int32_t(parse_int("--prompt-tokens", text.substr(pos, comma - pos), 0)));
    pos = comma + 1;
  }
  return ids;
}

// config.json's eos_token_id when it is one id inside the vocabulary (a
// fixture may name an id its small vocabulary lacks), else the tokenizer's.
std::optional<int32_t> find_eos(const std::string& model_dir, const Tokenizer* tok,
                                int64_t vocab_size) {
  const Json cfg = Json::parse_file(model_dir + "/config.json");
  if (const Json* e = cfg.find("eos_token_id"); e && e->is_int()) {
    const int64_t id = e->as_int();
    if (id >= 0 && id < vocab_size) return int32_t(id);
  }
  if (tok) {
    const std::optional<int32_t> id = tok->eos_id();
    if (id && *id < vocab_size) return id;
  }
  return std::nullopt;
}

// Writes generated text as it comes, never splitting a UTF-8 character
// (decode gives raw bytes; a character may span two tokens).
struct TextStream {
  const Tokenizer* tok = nullptr;
  bool enabled = false;
  size_t printed = 0;
  void update(const std::vector<int32_t>& generated, bool final) {
    if (!enabled) return;
    if (!tok) {  // no tokenizer: the ids themselves
      for (size_t i = printed; i < generated.size(); ++i) std::printf(" %d", generated[i]);
      printed = generated.size();
    } else {
      const std::string text = tok->decode(generated);
      const size_t upto = final ? text.size() : utf8_complete_prefix(text);
      if (upto > printed) std::fwrite(text.data() + printed, 1, upto - printed, stdout);
      printed = std::max(printed, upto);
    }
    std::fflush(stdout);
  }
};

// The last position's logits of `ids` as host doubles. With a cache, ids
// continue the cached sequence and extend the cache.
std::vector<double> next_logits(const LanguageModel& model, const std::vector<int32_t>& ids,
                                KVCache* cache) {
  const int64_t T = int64_t(ids.size());
  const Var logits = model.logits(Tensor::from_data(ids, {1, T}), cache);
  return logits.value().select(0, 0).select(0, T - 1).to_vector();
}

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  require_directory(o.model_dir, "model directory");
  const std::unique_ptr<LanguageModel> model = load_hf_model(o.model_dir, o.dtype, o.device);
  const ModelConfig& cfg = model->config();

  const std::string tok_path = o.model_dir + "/tokenizer.json";
  std::optional<Tokenizer> tok;
  if (file_exists(tok_path)) tok = Tokenizer::from_json_file(tok_path);
  std::vector<int32_t> prompt;
  if (o.prompt) {
    GL_CHECK(tok.has_value(), tok_path, ": no such file (needed to tokenize --prompt; ",
             "--prompt-tokens takes ids)");
    prompt = tok->encode(*o.prompt);
  } else {
    prompt = parse_token_list(*o.prompt_tokens);
  }
  const Tokenizer* tokp = tok ? &*tok : nullptr;
  const std::optional<int32_t> eos = find_eos(o.model_dir, tokp, cfg.vocab_size);
  // An empty prompt starts from the end-of-text token, as GPT-2's
  // unconditional samples do.
  if (prompt.empty()) {
    GL_CHECK(eos.has_value(), "empty prompt and no end-of-sequence token to start from");
    prompt.push_back(*eos);
  }
  for (size_t i = 0; i < prompt.size(); ++i)
    GL_CHECK(prompt[i] >= 0 && prompt[i] < cfg.vocab_size, "prompt token ", i, " is id ",
             prompt[i], ", outside the model's vocabulary of ", cfg.vocab_size);
  const int64_t P = int64_t(prompt.size());
  GL_CHECK(P < cfg.max_positions, "the prompt has ", P, " tokens; the model's context holds ",
           cfg.max_positions, ", leaving no room to generate");
  const int64_t total = std::min(P + o.max_new_tokens, cfg.max_positions);

  NoGradGuard no_grad;
  std::optional<KVCache> cache;
  if (!o.no_cache) cache = model->make_cache(1, total);
  Generator gen(o.seed);
  std::vector<int32_t> seq = prompt, generated;
  TextStream out{tokp, !o.json};
  if (!o.json) {
    if (o.prompt) std::fputs(o.prompt->c_str(), stdout);
    else for (size_t i = 0; i < prompt.size(); ++i) std::printf(i ? " %d" : "%d", prompt[i]);
    std::fflush(stdout);
  }
  std::string stop = "max_new_tokens";
  const auto t0 = std::chrono::steady_clock::now();
  while (int64_t(generated.size()) < o.max_new_tokens) {
    if (int64_t(seq.size()) >= cfg.max_positions) {
      stop = "context";
      break;
    }
    // With the cache, only what it has not seen: the prompt, then one token.
    const std::vector<double> row =
        cache ? next_logits(*model, generated.empty() ? prompt : std::vector<int32_t>{seq.back()},
                            &*cache)
              : next_logits(*model, seq, nullptr);
    const double u = o.sampling.temperature > 0 ? philox_uniform_double(gen) : 0.0;
    const int32_t next = int32_t(sample_token(row, o.sampling, u));
    if (eos && next == *eos && !o.ignore_eos) {
      stop = "eos";
      break;
    }
    seq.push_back(next);
    generated.push_back(next);
    out.update(generated, false);
  }
  out.update(generated, true);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    Json j = Json::object(), pj = Json::array(), gj = Json::array();
    for (int32_t id : prompt) pj.push_back(Json(int64_t(id)));
    for (int32_t id : generated) gj.push_back(Json(int64_t(id)));
    j.set("prompt_tokens", pj);
    j.set("tokens", gj);
    // JSON strings must be UTF-8: invalid bytes become U+FFFD, as
    // Hugging Face's decode does.
    if (tok) j.set("text", unicode::utf8_lossy(tok->decode(generated)));
    j.set("stop", stop);
    j.set("seconds", secs);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("\n");
    std::fprintf(stderr, "[%zu tokens in %.2f s, %.1f tokens/s; stop: %s]\n", generated.size(),
                 secs, double(generated.size()) / std::max(secs, 1e-9), stop.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("sample", [&] { return run(argc, argv); });
}
