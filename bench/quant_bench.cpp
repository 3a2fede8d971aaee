// Quantization costs (issue 5 item 6), on the CPU, random-weight models:
//   qat    a training step (forward, backward, clip, AdamW) with QAT hooks
//          (quant/qat.h, int4_probe on the attention and MLP weights) against
//          the same step without them, interleaved step by step; the overhead
//          is (t_qat - t_fp) / t_fp of the medians.
//   probe  ./train's INT4/INT8 probe (quant/probe.h) on B x T tokens: tokens
//          scored per second over all of its passes (one FP pass plus one per
//          format), next to a plain FP evaluation of the same batches.
// Prints one JSON object per line.
//
//   gridlock_bench_quant qat   [--preset tiny|pythia-160m] [--seq T] [--batch B] [--reps N]
//   gridlock_bench_quant probe [--preset tiny|pythia-160m] [--seq T] [--batch B] [--batches N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "models/model.h"
#include "optim/adamw.h"
#include "quant/probe.h"
#include "quant/qat.h"

using namespace gl;

namespace {

// "tiny" is recipes/tiny.yaml's model (issue 4 item 9's tiny config).
ModelConfig config_for(const std::string& preset) {
  if (preset != "tiny") return ModelConfig::preset(preset);
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.intermediate_size = 1024;
  c.vocab_size = 8192;
  c.max_positions = 256;
  return c;
}

Tensor tokens(int64_t B, int64_t T, int64_t V, uint64_t salt) {
  std::vector<int64_t> ids(size_t(B * T));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t((i * 7919 + salt * 104729) % uint64_t(V));
  return Tensor::from_data(ids, {B, T});
}

void bench_qat(const ModelConfig& cfg, const std::string& preset, int64_t B, int64_t T, int reps) {
  Generator gen(0);
  const auto model = make_model(cfg, gen);
  const std::vector<NamedParam> params = model->parameters();
  AdamW opt(default_param_groups(params, 0.1));
  QatOptions q;
  q.spec = quant_preset("int4_probe");
  QatPlan plan(*model, q);
  const Tensor x = tokens(B, T, cfg.vocab_size, 1), y = tokens(B, T, cfg.vocab_size, 2);
  auto step = [&]() {
    const double t0 = bench::now_seconds();
    opt.zero_grad();
    const Var loss = model->loss(x, y);
    loss.backward();
    clip_grad_norm(params, 1.0);
    opt.step(1e-6);  // a tiny LR: the weights (and so the work) stay the same
    bench::keep(loss.value().item());
    return bench::now_seconds() - t0;
  };
  std::vector<double> fp, qat;
  for (int r = 0; r < reps + 1; ++r) {  // the first round warms up
    const double a = step();
    plan.attach(*model);
    const double b = step();
    QatPlan::detach(*model);
    if (r > 0) fp.push_back(a), qat.push_back(b);
  }
  const bench::Stats sf = bench::stats_of(fp), sq = bench::stats_of(qat);
  const double tok = double(B * T);
  std::printf("{\"bench\": \"qat_step\", \"preset\": \"%s\", \"batch\": %lld, \"seq\": %lld, \"reps\": %d, "
              "\"fp_tokens_per_s\": %.1f, \"qat_tokens_per_s\": %.1f, \"overhead_pct\": %.2f, "
              "\"fp_median_s\": %.5f, \"qat_median_s\": %.5f}\n",
              preset.c_str(), (long long)B, (long long)T, reps, tok / sf.median, tok / sq.median,
              100.0 * (sq.median - sf.median) / sf.median, sf.median, sq.median);
}

void bench_probe(const ModelConfig& cfg, const std::string& preset, int64_t B, int64_t T, int batches) {
  Generator gen(0);
  const auto model = make_model(cfg, gen);
  std::vector<std::pair<Tensor, Tensor>> data;
  for (int i = 0; i < batches; ++i)
    data.emplace_back(tokens(B, T, cfg.vocab_size, uint64_t(3 + 2 * i)), tokens(B, T, cfg.vocab_size, uint64_t(4 + 2 * i)));
  ProbeOptions opts;  // int4_probe, int8_probe on attention + MLP
  run_probe(*model, {data[0]}, opts);  // warm-up
  double t0 = bench::now_seconds();
  const ProbeResult r = run_probe(*model, data, opts);
  const double probe_s = bench::now_seconds() - t0;
  t0 = bench::now_seconds();
  {
    NoGradGuard no_grad;
    for (const auto& [x, y] : data) bench::keep(model->loss(x, y).value().item());
  }
  const double fp_s = bench::now_seconds() - t0;
  const double scored = double(r.tokens) * double(r.passes);  // tokens scored over all passes
  std::printf("{\"bench\": \"probe\", \"preset\": \"%s\", \"batch\": %lld, \"seq\": %lld, \"batches\": %d, "
              "\"passes\": %lld, \"probe_s\": %.3f, \"probe_tokens_per_s\": %.1f, \"checkpoint_tokens_per_s\": %.1f, "
              "\"fp_eval_tokens_per_s\": %.1f}\n",
              preset.c_str(), (long long)B, (long long)T, batches, (long long)r.passes, probe_s,
              scored / probe_s, double(r.tokens) / probe_s, double(r.tokens) / fp_s);
}

}  // namespace

int main(int argc, char** argv) try {
  GL_CHECK(argc >= 2 && (!std::strcmp(argv[1], "qat") || !std::strcmp(argv[1], "probe")),
           "usage: gridlock_bench_quant qat|probe [--preset P] [--seq T] [--batch B] [--reps N] [--batches N]");
  const std::string what = argv[1];
  std::string preset = "tiny";
  int64_t T = 256, B = -1;
  int reps = 5, batches = 4;
  for (int i = 2; i < argc; ++i) {
    auto next = [&]() -> const char* {
      GL_CHECK(i + 1 < argc, "missing value after ", argv[i]);
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--preset")) preset = next();
    else if (!std::strcmp(argv[i], "--seq")) T = std::atoll(next());
    else if (!std::strcmp(argv[i], "--batch")) B = std::atoll(next());
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(next());
    else if (!std::strcmp(argv[i], "--batches")) batches = std::atoi(next());
    else GL_CHECK(false, "unknown argument ", argv[i]);
  }
  if (B < 0) B = preset == "tiny" ? 8 : 4;  // issue 4 item 9's batches
  const ModelConfig cfg = config_for(preset);
  if (what == "qat") bench_qat(cfg, preset, B, T, reps);
  else bench_probe(cfg, preset, B, T, batches);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gridlock_bench_quant: %s\n", e.what());
  return 1;
}
