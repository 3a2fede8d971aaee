// Training-step throughput on the CPU (issue 4 item 9): the whole step a
// trainer runs — forward + cross-entropy loss, backward, global-norm
// gradient clipping, AdamW, zero_grad — on random token batches, f32.
// The PyTorch peer is bench/train_torch.py (same model, batch, optimizer);
// bench/train_bench.sh runs both interleaved. Prints one JSON object per
// line: tokens/s over the timed steps (best and median step) and the median
// seconds of each phase, so a profile can start from the slow phase, and
// the median CPU seconds per step (cpu_s: all threads; see
// process_cpu_seconds for why it helps on a shared machine).
//
//   gridlock_bench_train [--preset tiny|pythia-160m|...] [--seq 256] [--batch 8]
//                        [--steps 10] [--warmup 2] [--seed 0] [--device cpu|cuda]
//                        [--qat] [--tf32] [--precision f32|bf16|f16] [--profile] [--tag NAME]
//
// --device cuda trains on the GPU (the device is synchronised before every
// clock read, so each phase is its own device time); --qat attaches the
// QAT hooks (quant/qat.h, preset int4_probe) so the step includes fake
// quantization of the attention and MLP weights; --tf32 runs the f32
// matrix products in TF32 (cuda/runtime.h set_tf32); --precision bf16|f16
// runs forward and backward under run.precision's rounding (bf16/f16
// operands, f32 accumulation: cuBLASLt on cuda, emulated on a CPU), and f16
// includes the loss-scale multiply and the unscaling of the gradients at a
// fixed 65536 (the trainer's initial scale). On cuda the JSON also
// carries the caching allocator's peak reserved bytes. --profile times
// every op of forward and backward (autograd/tape.h start_op_timing,
// synchronising the device around each) and prints the ops by total time
// to stderr; the step times it reports are then slower than unprofiled.
//
// "tiny" is recipes/tiny.yaml's model: GPT-NeoX, 4 layers, d 256, 4 heads,
// intermediate 1024, vocab 8192 (rotary_pct 0.25, parallel residual, erf
// GELU, untied head). The optimizer is the trainer's: AdamW lr 6e-4, betas
// (0.9, 0.95), eps 1e-8, weight decay 0.1 on the decay group of
// default_param_groups (2-D weights), clip_grad_norm 1.0. Warm-up steps
// (first-touch page faults, the optimizer's state allocation) are excluded.
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "models/model.h"
#include "optim/adamw.h"
#include "quant/qat.h"
#include "quant/quantizer.h"
#if GRIDLOCK_CUDA
#include "cuda/runtime.h"
#endif

using namespace gl;

namespace {

// CPU seconds used by the whole process (all threads). Under
// OMP_WAIT_POLICY=PASSIVE idle threads sleep instead of spinning, so the CPU
// time of a step measures its work and is far less disturbed than wall time
// when other jobs share the cores.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

ModelConfig bench_config(const std::string& preset) {
  if (preset != "tiny") return ModelConfig::preset(preset);
  ModelConfig c = ModelConfig::preset("pythia-14m");  // GPT-NeoX defaults, then the recipe's sizes
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.intermediate_size = 1024;
  c.vocab_size = 8192;
  c.max_positions = 256;
  c.rotary_pct = 0.25;
  c.validate("gridlock_bench_train");
  return c;
}

}  // namespace

int main(int argc, char** argv) try {
  std::string preset = "tiny";
  int64_t seq = 256, batch = 8;
  int steps = 10, warmup = 2;
  uint64_t seed = 0;
  std::string device_name = "cpu";
  bool use_qat = false, profile = false, tf32 = false;
  std::string precision_name = "f32", tag;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      GL_CHECK(i + 1 < argc, "missing value after ", argv[i]);
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--preset")) preset = next();
    else if (!std::strcmp(argv[i], "--seq")) seq = std::atoll(next());
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(next());
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(next());
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atoi(next());
    else if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(next(), nullptr, 10);
    else if (!std::strcmp(argv[i], "--device")) device_name = next();
    else if (!std::strcmp(argv[i], "--qat")) use_qat = true;
    else if (!std::strcmp(argv[i], "--profile")) profile = true;
    else if (!std::strcmp(argv[i], "--tf32")) tf32 = true;
    else if (!std::strcmp(argv[i], "--precision")) precision_name = next();
    else if (!std::strcmp(argv[i], "--tag")) tag = next();
    else GL_CHECK(false, "unknown argument ", argv[i]);
  }
  GL_CHECK(steps >= 1 && warmup >= 0 && seq >= 1 && batch >= 1,
           "need --steps >= 1, --warmup >= 0, --seq >= 1, --batch >= 1");
  GL_CHECK(tag.find_first_of("\"\\") == std::string::npos, "--tag must not hold quotes or backslashes");
  ModelConfig cfg = bench_config(preset);
  GL_CHECK(seq <= cfg.max_positions, "--seq ", seq, " exceeds max_positions ", cfg.max_positions);
  const Device device = device_from_name(device_name);
  GL_CHECK(!tf32 || device.is_cuda(), "--tf32 needs --device cuda");
  const MatmulPrecision precision = matmul_precision_from_name(precision_name);
  const double loss_scale = precision == MatmulPrecision::F16 ? 65536.0 : 1.0;
#if GRIDLOCK_CUDA
  cuda::set_tf32(tf32);
#endif
  // Device time: every clock read waits for the GPU's queued work first.
  auto now = [&]() {
#if GRIDLOCK_CUDA
    if (device.is_cuda()) cuda::synchronize(device.index);
#endif
    return bench::now_seconds();
  };
  Generator gen(seed);
  const auto model = make_model(cfg, gen, DType::F32, device);
  const std::vector<NamedParam> params = model->parameters();
  AdamW opt(default_param_groups(params, 0.1), AdamWOptions{0.9, 0.95, 1e-8});
  const double lr = 6e-4, max_norm = 1.0;
  std::unique_ptr<QatPlan> qat;
  if (use_qat) {
    QatOptions q;
    q.spec = quant_preset("int4_probe");
    qat = std::make_unique<QatPlan>(*model, q);
    qat->attach(*model);
  }

  OpTimes prof;
  auto merge = [](std::map<std::string, OpTime>& into, const std::map<std::string, OpTime>& from) {
    for (const auto& [op, t] : from) {
      into[op].seconds += t.seconds;
      into[op].calls += t.calls;
    }
  };
  std::vector<double> t_step, t_fwd, t_bwd, t_clip, t_opt, t_cpu;
  double last_loss = 0.0;
  // cudaMalloc calls during the timed steps: the caching allocator should
  // serve a steady-state step from its cache (issue "CUDA performance": no
  // allocation in the steady state), so this should read 0.
  int64_t mallocs_at_warmup = 0;
  auto malloc_calls = [&]() -> int64_t {
#if GRIDLOCK_CUDA
    if (device.is_cuda()) return cuda::allocator_stats(device.index).cuda_malloc_calls;
#endif
    return 0;
  };
  for (int s = 0; s < warmup + steps; ++s) {
    if (s == warmup) mallocs_at_warmup = malloc_calls();
    // A fresh random batch each step: uniform ids in [0, V) (truncation),
    // ids = tokens[:, :-1], targets = tokens[:, 1:], as a data loader gives.
    const Tensor tokens = Tensor::uniform({batch, seq + 1}, gen, 0.0, double(cfg.vocab_size),
                                          DType::F64)
                              .to(DType::I64);
    const Tensor ids = tokens.narrow(1, 0, seq).contiguous().to(device);
    // Targets stay on the host, as the trainer's batches do: loss() moves or
    // counts them there (on CUDA without a device synchronisation).
    const Tensor targets = tokens.narrow(1, 1, seq).contiguous();
    const double c0 = process_cpu_seconds();
    const double t0 = now();
    if (profile && s >= warmup) start_op_timing([&]() { (void)now(); });
    const MatmulPrecisionGuard products(precision);
    const Var loss = model->loss(ids, targets);
    const double t1 = now();
    if (loss_scale != 1.0) {
      scale(loss, loss_scale).backward();
      scale_grads(params, 1.0 / loss_scale);
    } else {
      loss.backward();
    }
    const double t2 = now();
    if (profile && s >= warmup) {
      const OpTimes t = stop_op_timing();
      merge(prof.forward, t.forward);
      merge(prof.backward, t.backward);
    }
    clip_grad_norm(params, max_norm);
    const double t3 = now();
    opt.step(lr);
    opt.zero_grad();
    const double t4 = now();
    const double c1 = process_cpu_seconds();
    last_loss = loss.value().item();
    if (s >= warmup) {
      t_fwd.push_back(t1 - t0);
      t_bwd.push_back(t2 - t1);
      t_clip.push_back(t3 - t2);
      t_opt.push_back(t4 - t3);
      t_step.push_back(t4 - t0);
      t_cpu.push_back(c1 - c0);
    }
  }
  if (profile) {
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (const auto& [op, t] : prof.forward) rows.push_back({t.seconds, "forward  " + op}), total += t.seconds;
    for (const auto& [op, t] : prof.backward) rows.push_back({t.seconds, "backward " + op}), total += t.seconds;
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "op profile over %d steps (seconds per step, share of forward+backward):\n", steps);
    for (const auto& [sec, name] : rows)
      std::fprintf(stderr, "  %-40s %9.5f  %5.1f%%\n", name.c_str(), sec / steps, 100 * sec / total);
  }
  const bench::Stats st = bench::stats_of(t_step);
  const double tokens = double(batch * seq);
  double peak_gib = 0.0;
#if GRIDLOCK_CUDA
  if (device.is_cuda()) peak_gib = double(cuda::allocator_stats(device.index).bytes_reserved) / (1 << 30);
#endif
  std::printf("{\"bench\":\"gridlock_train\",\"tag\":\"%s\",\"device\":\"%s\",\"dtype\":\"%s\",\"qat\":%s,\"reserved_gib\":%.2f,"
              "\"preset\":\"%s\",\"seq\":%lld,\"batch\":%lld,"
              "\"steps\":%d,\"best_s\":%.5f,\"median_s\":%.5f,\"tokens_per_s\":%.1f,"
              "\"tokens_per_s_best\":%.1f,\"forward_s\":%.5f,\"backward_s\":%.5f,"
              "\"clip_s\":%.5f,\"adamw_s\":%.5f,\"cpu_s\":%.5f,\"last_loss\":%.4f,"
              "\"mallocs_timed\":%lld}\n",
              tag.c_str(), device_name.c_str(), precision != MatmulPrecision::F32 ? precision_name.c_str() : tf32 ? "tf32" : "f32", use_qat ? "true" : "false", peak_gib, preset.c_str(), (long long)seq, (long long)batch, steps, st.best, st.median,
              tokens / st.median, tokens / st.best, bench::stats_of(t_fwd).median,
              bench::stats_of(t_bwd).median, bench::stats_of(t_clip).median,
              bench::stats_of(t_opt).median, bench::stats_of(t_cpu).median, last_loss,
              (long long)(malloc_calls() - mallocs_at_warmup));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gridlock_bench_train: %s\n", e.what());
  return 1;
}
