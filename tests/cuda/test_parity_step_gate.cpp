// Sync-free steps on the GPU (optim/step_gate.h, cuda/optim.cu's
// step_check, scale_below_one and the gated update kernels):
//   - the device gate's norm is grad_norm's on the same device, bit for bit
//     (the same partials added in the same order, one on the device, one on
//     the host); the loss is the mean of the losses; NaN gradients and
//     non-finite losses close the gate;
//   - clip_by_gate gives clip_grad_norm's grads bit for bit;
//   - a gated step with the gate open is step(), with it closed plus
//     settle(false) a step never taken (AdamW multi-tensor, SGD momentum,
//     Muon with its device-side Newton-Schulz norms), bit for bit on the GPU;
//   - the trainer's sync-free and host-synchronised runs on the GPU give the
//     same records and weights, bit for bit (a NaN gradient skipped on the way);
//   - steady-state sync-free steps (Pythia-style model, f32 and bf16, AdamW
//     and Muon, two micro-batches) make the host wait for the GPU zero times
//     (cuda::host_waits) and call cudaMalloc zero times.
// Sizes: odd, one tensor over 65536 elements and one over 1024 * 256 (the
// sum of squares' grid-stride loop runs several passes).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>

#include "autograd/ops/matmul.h"
#include "core/safetensors.h"
#include "cuda/runtime.h"
#include "models/model.h"
#include "data/token_shard.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sgd.h"
#include "optim/step_gate.h"
#include "tests/testing.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

using namespace gl;
using namespace gl::testing;
namespace fs = std::filesystem;

namespace {

std::vector<NamedParam> cuda_params(bool big) {
  std::vector<std::pair<std::string, Shape>> specs = {
      {"gpt_neox.layers.0.attention.dense.weight", {37, 29}},
      {"gpt_neox.layers.0.attention.dense.bias", {37}},
      {"gpt_neox.layers.1.attention.dense.weight", {37, 29}},
      {"transformer.h.1.mlp.c_fc.weight", {13, 71}},
      {"gpt_neox.embed_in.weight", {301, 223}},
  };
  if (big) specs.push_back({"big", {513, 1031}});
  std::vector<NamedParam> out;
  for (size_t k = 0; k < specs.size(); ++k)
    out.push_back({specs[k].first,
                   Var(rand(specs[k].second, 70 + k, DType::F32).to(Device::cuda()), true, specs[k].first)});
  return out;
}

void set_grads(std::vector<NamedParam>& ps, uint64_t seed, double scale = 1.0) {
  for (size_t k = 0; k < ps.size(); ++k)
    ps[k].var.impl()->grad =
        affine(randn(ps[k].var.shape(), seed * 100 + k, DType::F32), scale, 0.0).to(Device::cuda());
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

Tensor device_gate(double v) { return Tensor::from_vector({v}, {1}, DType::F64).to(Device::cuda()); }

std::vector<Tensor> device_losses(std::vector<double> v) {
  std::vector<Tensor> out;
  for (double x : v) out.push_back(Tensor::from_vector({x}, {}, DType::F32).to(Device::cuda()));
  return out;
}

}  // namespace

TEST_CASE("cuda: check_step's gate, clip_by_gate and GateReader match the host path's bits") {
  std::vector<NamedParam> ps = cuda_params(true), ref = cuda_params(true);
  set_grads(ps, 1, 10.0);
  set_grads(ref, 1, 10.0);
  const std::vector<Tensor> losses = device_losses({2.5, 3.25, 1.0});
  const double norm = grad_norm(ps);
  const StepGate g = check_step(ps, losses, 1.0);
  GateReader reader;
  reader.start(g);
  const StepOutcome out = reader.wait();
  CHECK(out.loss == (double(2.5f) + double(3.25f) + 1.0) / 3);
  CHECK(out.grad_norm == norm);  // bit for bit
  CHECK(out.applied);
  const std::vector<double> v = g.values.to_vector_as<double>();
  CHECK(v[3] == 1.0 / (norm + 1e-6));
  clip_by_gate(ps, g);
  CHECK(clip_grad_norm(ref, 1.0) == norm);
  for (size_t k = 0; k < ps.size(); ++k) CHECK(same_bits(ps[k].var.grad(), ref[k].var.grad()));
  // No clipping under the threshold: the grads keep their bits.
  const Tensor before = ps[0].var.grad().clone();
  clip_by_gate(ps, check_step(ps, losses, 1e9));
  CHECK(same_bits(ps[0].var.grad(), before));

  // A NaN gradient, a non-finite loss, the inf_loss fault: gate closed.
  Tensor h = ps[3].var.grad().to(Device::cpu());
  h.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();
  ps[3].var.impl()->grad = h.to(Device::cuda());
  std::vector<double> bad = check_step(ps, losses, 1.0).values.to_vector_as<double>();
  CHECK(std::isnan(bad[1]));
  CHECK(bad[2] == 0.0);
  set_grads(ps, 2);
  bad = check_step(ps, device_losses({1.0, INFINITY}), 1.0).values.to_vector_as<double>();
  CHECK(std::isinf(bad[0]));
  CHECK(bad[2] == 0.0);
  bad = check_step(ps, losses, 1.0, /*poison_loss=*/true).values.to_vector_as<double>();
  CHECK(std::isinf(bad[0]));
  CHECK(bad[2] == 0.0);
}

TEST_CASE("cuda: gated adamw, sgd and muon steps, a closed gate being a step never taken") {
  using Make = std::function<std::unique_ptr<Optimizer>(const std::vector<NamedParam>&)>;
  const std::vector<std::pair<const char*, Make>> makers = {
      {"adamw", [](const std::vector<NamedParam>& p) { return std::make_unique<AdamW>(default_param_groups(p, 0.1)); }},
      {"sgd", [](const std::vector<NamedParam>& p) {
         SgdOptions o;
         o.momentum = 0.9;
         o.nesterov = true;
         return std::make_unique<Sgd>(default_param_groups(p, 0.01), o);
       }},
      {"muon", [](const std::vector<NamedParam>& p) { return std::make_unique<Muon>(p); }},
  };
  for (const auto& [name, make] : makers) {
    const std::string label = name;
    CAPTURE(label);
    std::vector<NamedParam> pa = cuda_params(false), pb = cuda_params(false);
    const std::unique_ptr<Optimizer> a = make(pa), b = make(pb);
    for (uint64_t seed : {1, 3, 4}) {
      set_grads(pa, seed);
      a->step(0.01);
    }
    for (uint64_t seed : {1, 2, 3, 4}) {
      set_grads(pb, seed);
      b->step_gated(0.01, device_gate(seed == 2 ? 0.0 : 1.0));
      b->settle(seed != 2);
    }
    for (size_t k = 0; k < pa.size(); ++k) CHECK(same_bits(pa[k].var.value(), pb[k].var.value()));
    const NamedTensors sa = a->state(), sb = b->state();
    REQUIRE(sa.size() == sb.size());
    for (size_t i = 0; i < sa.size(); ++i) {
      CAPTURE(sa[i].first);
      CHECK(sa[i].first == sb[i].first);
      CHECK(same_bits(sa[i].second, sb[i].second));
    }
  }
}

TEST_CASE("cuda: the trainer's sync-free steps give the host-synchronised run's bits") {
  const fs::path dir = fs::temp_directory_path() / ("gl_cuda_syncfree_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<int32_t> ids(3000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 7 + i / 5 + (i * i) % 11) % 64);
  write_token_shard((dir / "train.gltok").string(), ids, TokenDType::u16, 64);
  write_token_shard((dir / "val.gltok").string(), std::vector<int32_t>(ids.begin(), ids.begin() + 400),
                    TokenDType::u16, 64);
  const std::string yaml =
      "run: {name: r, seed: 7, device: cuda, out_dir: " + (dir / "runs").string() +
      "}\n"
      "model: {preset: pythia-14m, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64,"
      " vocab_size: 64, max_positions: 16}\n"
      "data: {kind: shards, paths: [" + (dir / "train.gltok").string() + "], val_paths: [" +
      (dir / "val.gltok").string() +
      "], seq_len: 8, batch_size: 2, grad_accum: 2}\n"
      "optim: {name: adamw, lr: 0.003, clip_grad_norm: 0.3}\n"
      "schedule: {kind: cosine, params: {warmup: 2, min_ratio: 0.1}}\n"
      "train: {steps: 9, log_every: 1, eval_every: 4, eval_batches: 2, save_every: 0, on_nonfinite: skip}\n"
      "quant: {probe_every: -1}\n";
  ::setenv("GRIDLOCK_FAULT", "nan_grad:3", 1);
  TrainerHooks quiet;
  quiet.quiet = true;
  const TrainResult host = run_training(Recipe::parse(yaml, "t.yaml", {"run.name=host", "train.sync_free=false"}), quiet);
  const TrainResult sf = run_training(Recipe::parse(yaml, "t.yaml", {"run.name=sf", "train.sync_free=auto"}), quiet);
  ::unsetenv("GRIDLOCK_FAULT");
  CHECK(sf.late_gate_reads > 0);  // auto is on for CUDA
  CHECK(host.skipped_steps == 1);
  CHECK(sf.skipped_steps == 1);
  const auto strip = [](const std::string& run_dir) {
    std::vector<std::string> out;
    for (const Json& r : MetricsLog::read(run_dir + "/metrics.jsonl")) {
      std::string line;
      for (const auto& [k, v] : r.items()) {
        if (k == "tokens_per_s" || k == "elapsed_s") continue;
        char num[64];
        if (v.is_number()) std::snprintf(num, sizeof num, "%.17g", v.as_double());
        line += k + "=" + (v.is_number() ? std::string(num) : v.dump()) + " ";
      }
      out.push_back(line);
    }
    return out;
  };
  CHECK(strip(host.run_dir) == strip(sf.run_dir));
  const SafetensorsCheckpoint a = SafetensorsCheckpoint::open_dir(host.run_dir + "/checkpoints/step-00000009");
  const SafetensorsCheckpoint b = SafetensorsCheckpoint::open_dir(sf.run_dir + "/checkpoints/step-00000009");
  for (const std::string& n : a.names()) {
    CAPTURE(n);
    CHECK(same_bits(a.load(n, DType::F32), b.load(n, DType::F32)));
  }
  fs::remove_all(dir);
}

TEST_CASE("cuda: steady-state sync-free steps never wait for the GPU and never call cudaMalloc") {
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.vocab_size = 301;
  c.num_layers = 2;
  c.max_positions = 64;
  for (const char* opt_name : {"adamw", "muon"})
    for (MatmulPrecision prec : {MatmulPrecision::F32, MatmulPrecision::BF16}) {
      const std::string label = std::string(opt_name) + (prec == MatmulPrecision::BF16 ? " bf16" : " f32");
      CAPTURE(label);
      Generator gen(3);
      const auto model = make_model(c, gen, DType::F32, Device::cuda());
      const std::vector<NamedParam> params = model->parameters();
      std::unique_ptr<Optimizer> opt;
      if (std::string(opt_name) == "adamw") opt = std::make_unique<AdamW>(default_param_groups(params, 0.1));
      else opt = std::make_unique<Muon>(params);
      GateReader reader;
      int64_t waits_at = 0, mallocs_at = 0;
      for (int s = 0; s < 7; ++s) {
        if (s == 4) {
          waits_at = cuda::host_waits();
          mallocs_at = cuda::allocator_stats(0).cuda_malloc_calls;
        }
        opt->zero_grad();
        std::vector<Tensor> losses;
        for (int m = 0; m < 2; ++m) {
          // The trainer's batches: ids on the device, targets on the host.
          const Tensor tokens =
              Tensor::uniform({2, 33}, gen, 0.0, double(c.vocab_size), DType::F64).to(DType::I64);
          const Tensor ids = tokens.narrow(1, 0, 32).contiguous().to(Device::cuda());
          const Tensor targets = tokens.narrow(1, 1, 32).contiguous();
          const MatmulPrecisionGuard products(prec);
          const Var loss = model->loss(ids, targets);
          loss.backward();
          losses.push_back(loss.value());
        }
        scale_grads(params, 0.5);
        if (s > 0) opt->settle(reader.wait().applied);
        const StepGate gate = check_step(params, losses, 1.0);
        clip_by_gate(params, gate);
        opt->step_gated(1e-3, gate.applied());
        reader.start(gate);
      }
      CHECK(cuda::host_waits() - waits_at == 0);
      CHECK(cuda::allocator_stats(0).cuda_malloc_calls - mallocs_at == 0);
      CHECK(reader.wait().applied);
    }
}

TEST_CASE("cuda: check_step's spike window judges and keeps the losses as the CPU's") {
  std::vector<NamedParam> gpu = cuda_params(false);
  set_grads(gpu, 4);
  std::vector<NamedParam> cpu;
  for (const NamedParam& p : gpu) {
    cpu.push_back({p.name, Var(p.var.value().to(Device::cpu()), true, p.name)});
    cpu.back().var.impl()->grad = p.var.grad().to(Device::cpu());
  }
  SpikeWindow wg = make_spike_window({1.0, 2.0, 3.0, 4.0}, 3, 1.5, Device::cuda());
  SpikeWindow wc = make_spike_window({1.0, 2.0, 3.0, 4.0}, 3, 1.5, Device::cpu());
  // mean of {2, 3, 4} = 3: 4.5 is not above 1.5 x 3 (applied, joins), then
  // 6 is above 1.5 x mean{3, 4, 4.5} (a spike: closed, window unchanged).
  for (double loss : {4.5, 6.0, 1.0}) {
    CAPTURE(loss);
    const std::vector<double> g = check_step(gpu, device_losses({loss}), 0.0, false, &wg).values.to_vector_as<double>();
    std::vector<Tensor> host_loss = {Tensor::from_vector({loss}, {}, DType::F32)};
    const std::vector<double> c = check_step(cpu, host_loss, 0.0, false, &wc).values.to_vector_as<double>();
    CHECK(g[2] == c[2]);
    CHECK(spike_window_losses(wg) == spike_window_losses(wc));
  }
  CHECK(spike_window_losses(wc) == std::vector<double>{4.0, 4.5, 1.0});
}
