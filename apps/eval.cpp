// gridlock_eval: the program behind ./eval. Perplexity of a Hugging Face
// model directory on a text or token file.
//
// Protocol (the GPTQ / Hugging Face "perplexity of fixed-length models"
// one with stride = context): the token stream is cut into consecutive,
// non-overlapping windows of `context` tokens (apps/common.h eval_windows);
// in each window tokens 1..n-1 are predicted from the tokens before them IN
// THAT WINDOW only, so the first token of every window is never scored and
// every other token exactly once. The last, partial window counts when it
// holds >= 2 tokens. mean NLL = (sum of -log p(token)) / (tokens scored),
// PPL = exp(mean NLL). Text is tokenized as one string with the model's
// tokenizer.json, nothing prepended.
// Reference: https://huggingface.co/docs/transformers/perplexity;
//   GPTQ's datautils/eval (Frantar et al., arXiv 2210.17323).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "models/model.h"
#include "quant/packed_model.h"
#include "quant/qat.h"

using namespace gl;
using namespace gl::apps;

namespace {

const char* kUsage =
    "usage: ./eval MODEL_DIR DATA [options]\n"
    "\n"
    "Perplexity of the Hugging Face model in MODEL_DIR (config.json + model.safetensors)\n"
    "on DATA: a text file (tokenized with MODEL_DIR/tokenizer.json) or a token file of\n"
    "raw little-endian ids (.u16, .u32, or .bin with --token-dtype).\n"
    "\n"
    "The tokens are cut into non-overlapping windows of --context tokens; each window\n"
    "predicts its tokens 1..n-1 from the tokens before them in the same window only\n"
    "(the GPTQ / Hugging Face fixed-length protocol with stride = context), so the\n"
    "first token of each window is not scored. A last partial window of >= 2 tokens\n"
    "is included. Reports mean NLL (nats/token), PPL = exp(mean NLL), tokens scored.\n"
    "\n"
    "options:\n"
    "  --device cpu|cuda[:N]   where to run (default cpu)\n"
    "  --context N             window length (default: the model's max_positions)\n"
    "  --batch B               windows per forward pass (default 1)\n"
    "  --max-tokens N          use only the first N tokens of DATA\n"
    "  --token-dtype u16|u32   read DATA as a token file of that width\n"
    "  --dtype f32|f64         compute dtype (default f32)\n"
    "  --fake-quant SPEC       evaluate with fake-quantized weights (a quant preset or spec\n"
    "                          string, quant/quantizer.h; layers: --quant-layers)\n"
    "  --packed SPEC           evaluate on the integer path: 4-bit packed weights decoded in\n"
    "                          the matmul kernel (GPT-NeoX; equals --fake-quant SPEC to rounding)\n"
    "  --quant-layers LIST     comma-separated patterns (default attention,mlp)\n"
    "  --json                  print one JSON line instead of the report\n"
    "  --progress              progress bar even when stderr is not a terminal\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

struct Options {
  std::string model_dir, data, token_dtype;
  Device device = Device::cpu();
  DType dtype = DType::F32;
  int64_t context = 0;  // 0: the model's max_positions
  int64_t batch = 1;
  int64_t max_tokens = -1;
  bool json = false, progress = false;
  std::string fake_quant, packed;
  std::vector<std::string> quant_layers = {"attention", "mlp"};
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
    } else if (a == "--device") o.device = parse_device(a, args.value(a));
    else if (a == "--context") o.context = parse_int(a, args.value(a), 2);
    else if (a == "--batch") o.batch = parse_int(a, args.value(a), 1);
    else if (a == "--max-tokens") o.max_tokens = parse_int(a, args.value(a), 2);
    else if (a == "--token-dtype") o.token_dtype = args.value(a);
    else if (a == "--dtype") o.dtype = parse_float_dtype(a, args.value(a));
    else if (a == "--json") args.no_value(a), o.json = true;
    else if (a == "--fake-quant") o.fake_quant = args.value(a);
    else if (a == "--packed") o.packed = args.value(a);
    else if (a == "--quant-layers") {
      o.quant_layers.clear();
      std::string v = args.value(a), item;
      for (size_t i = 0; i <= v.size(); ++i)
        if (i == v.size() || v[i] == ',') {
          if (!item.empty()) o.quant_layers.push_back(item);
          item.clear();
        } else {
          item += v[i];
        }
      if (o.quant_layers.empty()) throw UsageError("--quant-layers: no pattern given");
    }
    else if (a == "--progress") args.no_value(a), o.progress = true;
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else positional.push_back(a);
  }
  if (positional.size() != 2)
    throw UsageError("expected MODEL_DIR and DATA, got " + std::to_string(positional.size()) +
                     " positional argument(s)");
  o.model_dir = positional[0];
  o.data = positional[1];
  // A bad --token-dtype is a usage error, reported before any file is read.
  (void)token_file_dtype(o.data, o.token_dtype);
  return o;
}

std::vector<int32_t> load_tokens(const Options& o, int64_t vocab_size) {
  require_file(o.data, "data file");
  if (const auto dt = token_file_dtype(o.data, o.token_dtype))
    return read_token_file(o.data, *dt, vocab_size, o.max_tokens);
  const std::string tok_path = o.model_dir + "/tokenizer.json";
  GL_CHECK(file_exists(tok_path), tok_path, ": no such file (needed to tokenize the text file '",
           o.data, "'; or pass a token file: .u16, .u32, .bin with --token-dtype)");
  const Tokenizer tok = Tokenizer::from_json_file(tok_path);
  const auto encoded = tok.encode(read_text_file(o.data));
  std::vector<int32_t> ids(encoded.begin(), encoded.end());
  if (o.max_tokens >= 0 && int64_t(ids.size()) > o.max_tokens) ids.resize(size_t(o.max_tokens));
  for (size_t i = 0; i < ids.size(); ++i)
    GL_CHECK(ids[i] >= 0 && ids[i] < vocab_size, o.data, ": token ", i, " encodes to id ", ids[i],
             ", outside the model's vocabulary of ", vocab_size, " (tokenizer ", tok_path, ")");
  return ids;
}

struct EvalResult {
  double nll_sum = 0;   // sum over scored tokens of -log p
  int64_t tokens = 0;   // tokens scored
  int64_t windows = 0;
  double seconds = 0;
};

// Windows of equal length go through the model `batch` at a time:
// ids = window[0 .. n-2], targets = window[1 .. n-1], and the batch's mean
// cross-entropy times its token count adds to the sum.
EvalResult evaluate(const LanguageModel& model, const std::vector<int32_t>& tokens,
                    const std::vector<Window>& windows, int64_t batch, bool progress) {
  NoGradGuard no_grad;
  EvalResult r;
  ProgressBar bar("eval", int64_t(windows.size()), progress);
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < windows.size();) {
    const int64_t len = windows[i].length;
    size_t j = i;
    while (j < windows.size() && int64_t(j - i) < batch && windows[j].length == len) ++j;
    const int64_t b = int64_t(j - i), n = len - 1;
    std::vector<int32_t> ids(size_t(b * n)), targets(size_t(b * n));
    for (int64_t w = 0; w < b; ++w) {
      const int32_t* src = tokens.data() + windows[i + size_t(w)].start;
      std::copy(src, src + n, ids.begin() + w * n);
      std::copy(src + 1, src + 1 + n, targets.begin() + w * n);
    }
    const Var logits = model.logits(Tensor::from_data(ids, {b, n}));
    const Var nll = cross_entropy(logits, Tensor::from_data(targets, {b, n}, logits.device()));
    r.nll_sum += nll.value().item() * double(b * n);
    r.tokens += b * n;
    r.windows += b;
    i = j;
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, "ppl %.3f", std::exp(r.nll_sum / double(r.tokens)));
    bar.update(r.windows, suffix);
  }
  bar.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  require_directory(o.model_dir, "model directory");
  const std::unique_ptr<LanguageModel> model = load_hf_model(o.model_dir, o.dtype, o.device);
  const ModelConfig& cfg = model->config();
  if (!o.fake_quant.empty() && !o.packed.empty())
    throw UsageError("--fake-quant and --packed are two ways to run one scheme: give one");
  // Both are installed on the model and stay for the whole evaluation.
  std::optional<QatPlan> fake;
  std::optional<PackedModel> packed;
  if (!o.fake_quant.empty()) {
    QatOptions q;
    q.spec = quant_spec_from_string(o.fake_quant);
    q.layers = o.quant_layers;
    fake.emplace(*model, q);
    fake->attach(*model);
  }
  if (!o.packed.empty()) {
    packed.emplace(*model, quant_spec_from_string(o.packed), o.quant_layers);
    packed->attach(*model);
  }
  const int64_t context = o.context > 0 ? o.context : cfg.max_positions;
  if (context > cfg.max_positions)
    throw UsageError("--context " + std::to_string(context) + " exceeds the model's " +
                     std::to_string(cfg.max_positions) + " positions");
  const std::vector<int32_t> tokens = load_tokens(o, cfg.vocab_size);
  const std::vector<Window> windows = eval_windows(int64_t(tokens.size()), context);
  GL_CHECK(!windows.empty(), o.data, ": ", tokens.size(),
           " token(s), need at least 2 to score anything");
  const EvalResult r =
      evaluate(*model, tokens, windows, o.batch, o.progress || stderr_is_tty());
  const double mean = r.nll_sum / double(r.tokens), ppl = std::exp(mean);
  if (o.json) {
    Json j = Json::object();
    j.set("model", o.model_dir);
    j.set("data", o.data);
    if (!o.fake_quant.empty()) j.set("fake_quant", o.fake_quant);
    if (!o.packed.empty()) j.set("packed", o.packed);
    j.set("device", o.device.name());
    j.set("context", context);
    j.set("windows", r.windows);
    j.set("tokens", r.tokens);
    j.set("mean_nll", mean);
    j.set("ppl", ppl);
    j.set("seconds", r.seconds);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("model     %s (%s)\n", o.model_dir.c_str(), o.device.name().c_str());
    std::printf("data      %s (%zu tokens)\n", o.data.c_str(), tokens.size());
    std::printf("windows   %lld of up to %lld tokens\n", static_cast<long long>(r.windows),
                static_cast<long long>(context));
    std::printf("tokens    %lld scored\n", static_cast<long long>(r.tokens));
    std::printf("mean NLL  %.6f nats/token\n", mean);
    std::printf("PPL       %.4f\n", ppl);
    std::printf("time      %.2f s (%.0f tokens/s)\n", r.seconds,
                double(r.tokens) / std::max(r.seconds, 1e-9));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("eval", [&] { return run(argc, argv); });
}
