// train.sync_free (optim/step_gate.h): the trainer's sync-free steps give
// the host-synchronised steps' run, number for number. Each case trains a
// tiny model twice on the CPU, train.sync_free false and true, and compares
// every metrics record (losses, gradient norms, learning rates, skips,
// events, validation), the final weights and the optimizer state, bit for
// bit (the loss-spike detector included). Between evaluations and saves the sync-free run reads each step's
// gate only after queueing the next step (late_gate_reads counts those),
// so stop and rollback act a step late there; the results must not show it.
// The faults are GRIDLOCK_FAULT's (trainer/faults.h).
#include <doctest/doctest.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/safetensors.h"
#include "data/token_shard.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

struct Dir {
  fs::path path;
  Dir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("gl_syncfree_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct FaultEnv {
  explicit FaultEnv(const std::string& spec) {
    if (!spec.empty()) ::setenv("GRIDLOCK_FAULT", spec.c_str(), 1);
  }
  ~FaultEnv() { ::unsetenv("GRIDLOCK_FAULT"); }
};

std::vector<int32_t> tokens(size_t n, uint32_t seed) {
  std::vector<int32_t> ids(n);
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids[i] = (x >> 28) == 0 ? int32_t((x >> 8) % 64) : int32_t((i * 7 + i / 5) % 64);
  }
  return ids;
}

std::string base_recipe(const Dir& d) {
  const std::string train = d / "train.gltok", val = d / "val.gltok";
  write_token_shard(train, tokens(3000, 1), TokenDType::u16, 64);
  write_token_shard(val, tokens(400, 2), TokenDType::u16, 64);
  return "run: {name: r, seed: 7, out_dir: " + d / "runs" +
         "}\n"
         "model: {preset: pythia-14m, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64,"
         " vocab_size: 64, max_positions: 16}\n"
         "data: {kind: shards, paths: [" + train + "], val_paths: [" + val +
         "], seq_len: 8, batch_size: 2}\n"
         "optim: {name: adamw, lr: 0.003}\n"
         "schedule: {kind: cosine, params: {warmup: 2, min_ratio: 0.1}}\n"
         "train: {steps: 9, log_every: 1, eval_every: 4, eval_batches: 2, save_every: 4, keep_last: 0, threads: 1}\n"
         "quant: {probe_every: -1}\n";
}

TrainerHooks quiet() {
  TrainerHooks h;
  h.quiet = true;
  return h;
}

// The records minus wall-clock fields.
std::vector<std::string> records(const std::string& run_dir) {
  std::vector<std::string> out;
  for (const Json& r : MetricsLog::read(run_dir + "/metrics.jsonl")) {
    std::string line;
    for (const auto& [k, v] : r.items()) {
      if (k == "tokens_per_s" || k == "elapsed_s") continue;
      char num[64];
      if (v.is_number()) std::snprintf(num, sizeof num, "%.17g", v.as_double());  // NaN too
      line += k + "=" + (v.is_number() ? std::string(num) : v.dump()) + " ";
    }
    out.push_back(line);
  }
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

void check_same_checkpoint(const std::string& a, const std::string& b) {
  const SafetensorsCheckpoint ma = SafetensorsCheckpoint::open_dir(a), mb = SafetensorsCheckpoint::open_dir(b);
  REQUIRE(ma.names() == mb.names());
  for (const std::string& n : ma.names()) {
    CAPTURE(n);
    CHECK(same_bits(ma.load(n, DType::F32), mb.load(n, DType::F32)));
  }
  const CheckpointContents ca = load_checkpoint(a), cb = load_checkpoint(b);
  REQUIRE(ca.optimizer_state.size() == cb.optimizer_state.size());
  for (size_t i = 0; i < ca.optimizer_state.size(); ++i) {
    CAPTURE(ca.optimizer_state[i].first);
    CHECK(ca.optimizer_state[i].first == cb.optimizer_state[i].first);
    CHECK(same_bits(ca.optimizer_state[i].second, cb.optimizer_state[i].second));
  }
  CHECK(ca.state.step == cb.state.step);
  CHECK(ca.state.skipped_steps == cb.state.skipped_steps);
  CHECK(ca.state.rollbacks == cb.state.rollbacks);
  CHECK(ca.state.lr_scale == cb.state.lr_scale);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("sync-free steps: the host-synchronised run's numbers, with and without faults") {
  Dir d;
  const std::string yaml = base_recipe(d);
  struct Case {
    const char* name;
    std::vector<std::string> overrides;
    const char* fault;
  };
  const Case cases[] = {
      {"adamw-clip-accum", {"data.grad_accum=2", "optim.clip_grad_norm=0.3"}, ""},
      {"sgd-momentum", {"optim.name=sgd", "optim.lr=0.05", "optim.clip_grad_norm=0.5"}, ""},
      {"muon", {"optim.name=muon", "optim.lr=0.02"}, ""},
      {"qat-int4", {"quant.scheme=int4:g32:sym:full:absmax:div=7:even:f32", "quant.start_step=2"}, ""},
      {"nan-grad-skip", {"train.on_nonfinite=skip"}, "nan_grad:3"},
      {"inf-loss-skip-muon", {"train.on_nonfinite=skip", "optim.name=muon"}, "inf_loss:2"},
      {"nan-activation-skip-first", {"train.on_nonfinite=skip"}, "nan_activation:1"},
      {"nan-grad-rollback", {"train.on_nonfinite=rollback"}, "nan_grad:6"},
      {"inf-loss-rollback-sgd", {"train.on_nonfinite=rollback", "optim.name=sgd", "optim.lr=0.05"}, "inf_loss:7"},
      // The spike detector on the device: a 3-step window, logits x 30 at
      // step 6 (skipped) or 7 (rolled back to step 4, the window with it).
      {"spike-skip", {"train.spike_factor=2", "train.spike_window=3", "train.on_spike=skip"}, "loss_spike:6"},
      {"spike-rollback", {"train.spike_factor=2", "train.spike_window=3", "train.on_spike=rollback"},
       "loss_spike:7"},
  };
  for (const Case& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    TrainResult res[2];
    for (int sf = 0; sf < 2; ++sf) {
      const FaultEnv env(c.fault);
      std::vector<std::string> ov = c.overrides;
      ov.push_back(std::string("run.name=") + c.name + (sf ? "-sf" : "-host"));
      ov.push_back(std::string("train.sync_free=") + (sf ? "true" : "false"));
      res[sf] = run_training(Recipe::parse(yaml, "sync_free.yaml", ov), quiet());
    }
    CHECK(res[0].late_gate_reads == 0);
    CHECK(res[1].late_gate_reads > 0);  // the lagged path ran
    CHECK(res[0].steps == res[1].steps);
    CHECK(res[0].skipped_steps == res[1].skipped_steps);
    CHECK(res[0].rollbacks == res[1].rollbacks);
    CHECK(res[0].events == res[1].events);
    CHECK(res[1].events == (std::strlen(c.fault) == 0 ? 0 : 1));
    CHECK(records(res[0].run_dir) == records(res[1].run_dir));
    check_same_checkpoint(res[0].run_dir + "/checkpoints/step-00000009", res[1].run_dir + "/checkpoints/step-00000009");
  }
}

TEST_CASE("sync-free steps: train.on_nonfinite=stop stops at the same step with the same message") {
  Dir d;
  const std::string yaml = base_recipe(d);
  std::string msg[2];
  for (int sf = 0; sf < 2; ++sf) {
    const FaultEnv env("nan_grad:2");
    msg[sf] = error_of([&] {
      run_training(Recipe::parse(yaml, "sync_free.yaml",
                                 {std::string("run.name=stop") + (sf ? "-sf" : "-host"),
                                  std::string("train.sync_free=") + (sf ? "true" : "false")}),
                   quiet());
    });
  }
  CHECK(msg[0].find("step 2: non-finite gradient norm") != std::string::npos);
  // The messages differ only in the run directory they name.
  const auto strip = [](std::string m) {
    for (const char* tag : {"stop-host", "stop-sf"})
      for (size_t at; (at = m.find(tag)) != std::string::npos;) m.erase(at, std::strlen(tag));
    return m;
  };
  CHECK(strip(msg[0]) == strip(msg[1]));
  CHECK(records(d / "runs/stop-host") == records(d / "runs/stop-sf"));
}

TEST_CASE("sync-free steps: train.sync_free true refuses what the host must decide, naming it") {
  Dir d;
  const std::string yaml = base_recipe(d);
  const std::pair<std::vector<std::string>, const char*> refused[] = {
      {{"optim.name=sam"}, "optim.name sam"},
      {{"averaging.kind=ema"}, "averaging.kind"},
      {{"run.precision=f16"}, "run.precision f16"},
  };
  for (const auto& [ov, what] : refused) {
    const std::string key = what;  // a copy: clang 14 cannot capture a structured binding
    CAPTURE(key);
    std::vector<std::string> o = ov;
    o.push_back("train.sync_free=true");
    const std::string e = error_of([&] { run_training(Recipe::parse(yaml, "sync_free.yaml", o), quiet()); });
    CHECK(e.find("train.sync_free: true, but this run has") != std::string::npos);
    CHECK(e.find(what) != std::string::npos);
  }
  // auto on the CPU, and with any of those, trains host-synchronised.
  std::vector<std::string> o = {"optim.name=sam", "train.steps=3", "run.name=auto"};
  CHECK(run_training(Recipe::parse(yaml, "sync_free.yaml", o), quiet()).late_gate_reads == 0);
}

TEST_CASE("sync-free steps: a stop signal between reads saves the step it arrived in, and resumes bit-exactly") {
  Dir d;
  const std::string yaml = base_recipe(d);
  auto parse = [&](std::vector<std::string> ov) { return Recipe::parse(yaml, "sync_free.yaml", ov); };
  for (const char* sf : {"false", "true"}) {
    const std::string mode = sf;
    CAPTURE(mode);
    const std::string flag = std::string("train.sync_free=") + sf;
    const TrainResult straight = run_training(parse({"run.name=straight-" + mode, flag}), quiet());
    // SIGTERM during step 6's backward (eval and saves are at 4 and 8, so a
    // sync-free run has not read step 5's gate yet): the run must finish
    // step 6, save it and stop.
    TrainerHooks h = quiet();
    h.after_backward = [](int64_t s, const std::vector<NamedParam>&) {
      if (s + 1 == 6) std::raise(SIGTERM);
    };
    const TrainResult stopped = run_training(parse({"run.name=sig-" + mode, flag}), h);
    CHECK(stopped.stop_signal == SIGTERM);
    CHECK(stopped.steps == 6);
    CHECK(fs::exists(stopped.run_dir + "/checkpoints/step-00000006"));
    if (mode == "true") CHECK(stopped.late_gate_reads > 0);
    const TrainResult resumed = run_training(parse({"run.name=sig-" + mode, flag, "train.resume=true"}), quiet());
    CHECK(resumed.steps == 9);
    check_same_checkpoint(straight.run_dir + "/checkpoints/step-00000009", resumed.run_dir + "/checkpoints/step-00000009");
  }
}
