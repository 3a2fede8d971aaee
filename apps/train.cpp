// gridlock_train: the program behind ./train.
//
// Until the trainer (recipes, data pipeline, optimizers, checkpoints) lands
// with the "Training" issue, this is the engine's smoke run: it trains a
// tiny GPT-NeoX (models/gpt_neox.h, built by make_model), character level,
// on a short embedded text, on the CPU (or a GPU with --device cuda), and prints
// the loss falling and a greedy sample. Every op of the engine runs in it:
// embedding, LayerNorm, fused QKV linear, split/permute/reshape, rotary,
// fused causal attention, GELU, cross-entropy, and their backward passes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"

using namespace gl;

namespace {

const char* kText =
    "A model that has converged in full precision is not yet a model that survives "
    "four-bit rounding. Each weight must land on a grid of sixteen levels, and the "
    "distance from a weight to its nearest level is the error the network must absorb. "
    "While the network still learns, those errors are small against the progress of "
    "training; once it has settled, nothing pulls the weights back towards the grid. "
    "This program trains a tiny transformer on these sentences, one character at a "
    "time, to show that every part of the engine works: the forward pass, the tape, "
    "the backward pass and the update. ";

struct Args {
  Device device = Device::cpu();
  int steps = 600;
  uint64_t seed = 1337;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "gridlock_train: %s\n", msg.c_str());
  std::fprintf(stderr, "usage: ./train [--device cpu|cuda[:N]] [--steps N] [--seed S]\n");
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("missing value after " + arg);
      return argv[++i];
    };
    if (arg == "--device") a.device = device_from_name(value());
    else if (arg == "--steps") a.steps = std::stoi(value());
    else if (arg == "--seed") a.seed = std::stoull(value());
    else if (arg == "-h" || arg == "--help") usage_error("the engine smoke run");
    else
      usage_error("'" + arg + "': recipe files and key=value overrides arrive with the trainer "
                  "(issue \"Training\"); today ./train runs the engine smoke run only");
  }
  if (a.steps < 1) usage_error("--steps must be >= 1");
  return a;
}

// Adam (Kingma & Ba) on the host: the smoke run's own minimal optimizer.
// The project's optimizers (AdamW, SAM, Muon) come with the trainer.
struct Adam {
  double lr = 3e-3, beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  std::map<VarImpl*, std::pair<std::vector<double>, std::vector<double>>> state;
  int t = 0;
  void step(const std::vector<NamedParam>& params) {
    ++t;
    const double c1 = 1 - std::pow(beta1, t), c2 = 1 - std::pow(beta2, t);
    for (const NamedParam& np : params) {
      const Var& p = np.var;
      if (!p.grad().defined()) continue;
      const std::vector<double> g = p.grad().to_vector();
      std::vector<double> w = p.value().to_vector();
      auto& [m, v] = state[p.impl().get()];
      m.resize(w.size());
      v.resize(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        w[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
      }
      Var(p).mutable_value().copy_(Tensor::from_vector(w, p.shape(), p.dtype()));
    }
  }
};

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse_args(argc, argv);
  // Character vocabulary of the text.
  const std::string text = kText;
  std::map<char, int64_t> id_of;
  std::string chars;
  for (char ch : text)
    if (!id_of.count(ch)) {
      id_of[ch] = int64_t(chars.size());
      chars += ch;
    }
  std::vector<int64_t> tokens;
  for (char ch : text) tokens.push_back(id_of[ch]);

  const int64_t B = 8, T = 48;
  // A tiny GPT-NeoX: 2 layers of 64 channels, 4 heads of 16 with rotary on
  // the first 4 dims of each, parallel residual, untied head.
  ModelConfig cfg = ModelConfig::preset("pythia-14m");
  cfg.vocab_size = int64_t(chars.size());
  cfg.hidden_size = 64;
  cfg.num_heads = 4;
  cfg.num_layers = 2;
  cfg.intermediate_size = 4 * cfg.hidden_size;
  cfg.rotary_pct = 0.25;
  cfg.max_positions = T;
  Generator init_gen(args.seed), data_gen(args.seed + 1);
  const std::unique_ptr<LanguageModel> model = make_model(cfg, init_gen, DType::F32, args.device);
  const std::vector<NamedParam> params = model->parameters();
  int64_t n_params = 0;
  for (const NamedParam& p : params) n_params += p.var.numel();
  std::printf("gridlock engine smoke run: tiny GPT-NeoX model, %lld parameters, vocab %lld "
              "characters, %d steps of %lld x %lld tokens on %s\n",
              (long long)n_params, (long long)cfg.vocab_size, args.steps, (long long)B,
              (long long)T, args.device.name().c_str());

  Adam opt;
  const auto start = std::chrono::steady_clock::now();
  double first_loss = 0, last_loss = 0;
  for (int step = 1; step <= args.steps; ++step) {
    // Random windows of the text (Philox draws: reproducible for a seed).
    const std::vector<double> u = Tensor::uniform({B}, data_gen).to_vector();
    std::vector<int64_t> x(size_t(B * T)), y(size_t(B * T));
    for (int64_t b = 0; b < B; ++b) {
      const auto start_pos = int64_t(u[size_t(b)] * double(tokens.size() - T - 1));
      for (int64_t t = 0; t < T; ++t) {
        x[size_t(b * T + t)] = tokens[size_t(start_pos + t)];
        y[size_t(b * T + t)] = tokens[size_t(start_pos + t + 1)];
      }
    }
    const Tensor ids = Tensor::from_data(x, {B, T}, args.device);
    const Tensor targets = Tensor::from_data(y, {B, T}, args.device);
    const Var loss = model->loss(ids, targets);
    for (const NamedParam& p : params) Var(p.var).zero_grad();
    loss.backward();
    opt.step(params);
    last_loss = loss.value().item();
    if (step == 1) first_loss = last_loss;
    if (step == 1 || step % 25 == 0 || step == args.steps)
      std::printf("step %4d  loss %.4f\n", step, last_loss);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("trained %d steps in %.1f s (%.0f tokens/s); loss %.3f -> %.3f (uniform guess: %.3f)\n",
              args.steps, secs, double(args.steps * B * T) / secs, first_loss, last_loss,
              std::log(double(cfg.vocab_size)));

  // Greedy continuation of the text's opening.
  std::string sample = text.substr(0, 16);
  {
    NoGradGuard no_grad;
    for (int i = 0; i < 80; ++i) {
      const size_t n = std::min<size_t>(sample.size(), size_t(T));
      std::vector<int64_t> ctx;
      for (size_t j = sample.size() - n; j < sample.size(); ++j) ctx.push_back(id_of[sample[j]]);
      const Tensor ids = Tensor::from_data(ctx, {1, int64_t(n)}, args.device);
      const std::vector<double> logits =
          model->logits(ids).value().select(1, int64_t(n) - 1).to_vector();
      size_t best = 0;
      for (size_t v = 1; v < logits.size(); ++v)
        if (logits[v] > logits[best]) best = v;
      sample += chars[best];
    }
  }
  std::printf("sample: \"%s\"\n", sample.c_str());
  if (!(last_loss < first_loss)) {
    std::fprintf(stderr, "gridlock_train: loss did not decrease (%.4f -> %.4f)\n", first_loss,
                 last_loss);
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gridlock_train: %s\n", e.what());
  return 1;
}
