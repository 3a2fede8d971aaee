// Reliability of the trainer under faults (issue 8 items 3 and 4), in
// process, on tiny models and token shards written here:
//   - GRIDLOCK_FAULT (trainer/trainer.h) parsing;
//   - data files truncated while in use (token shards, Megatron .bin): an
//     error naming the file and the offset, never SIGBUS; mid-run through
//     the trainer;
//   - NaN/Inf injected in a gradient, an activation and the loss, and a loss
//     spike, each handled as train.on_nonfinite / train.on_spike say (stop,
//     skip, rollback), with the event in metrics.jsonl and the report;
//   - saves failing (disk full, read-only): one line naming the path, the
//     previous checkpoint intact;
//   - SIGTERM: a checkpoint of the step, stop_signal set, resume bit-exact.
// The SIGKILL faults need a process to kill: tests/trainer/e2e/fault_kill.sh.
//
// Each case also appends its outcome to GRIDLOCK_RELIABILITY_DIR/<case>.jsonl
// (one JSON line per fault tried), which tests/trainer/e2e/
// render_reliability.py turns into docs/reliability.md.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/safetensors.h"
#include "data/indexed_dataset.h"
#include "data/token_shard.h"
#include "trainer/checkpoint.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

struct FaultDir {
  fs::path path;
  FaultDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("gl_faults_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~FaultDir() {
    std::error_code ec;
    // A read-only test may have left a directory unwritable.
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// GRIDLOCK_FAULT for one scope.
struct FaultEnv {
  explicit FaultEnv(const std::string& spec) { ::setenv("GRIDLOCK_FAULT", spec.c_str(), 1); }
  ~FaultEnv() { ::unsetenv("GRIDLOCK_FAULT"); }
};

constexpr int64_t kV = 64;

std::vector<int32_t> tokens(size_t n, uint32_t seed) {
  std::vector<int32_t> ids(n);
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids[i] = (x >> 28) == 0 ? int32_t((x >> 8) % kV) : int32_t((i * 7 + i / 5) % kV);
  }
  return ids;
}

std::string shards_recipe(const FaultDir& d) {
  const std::string train = d / "train.gltok", val = d / "val.gltok";
  write_token_shard(train, tokens(3000, 1), TokenDType::u16, kV);
  write_token_shard(val, tokens(400, 2), TokenDType::u16, kV);
  return "run: {name: f, seed: 7, out_dir: " + d / "runs" +
         "}\n"
         "model: {preset: pythia-14m, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64,"
         " vocab_size: 64, max_positions: 16}\n"
         "data: {kind: shards, paths: [" + train + "], val_paths: [" + val +
         "], seq_len: 8, batch_size: 2}\n"
         "optim: {name: adamw, lr: 0.003}\n"
         "schedule: {kind: cosine, params: {warmup: 2, min_ratio: 0.1}}\n"
         "train: {steps: 6, log_every: 1, eval_every: 3, eval_batches: 2, save_every: 3, keep_last: 0, threads: 1}\n"
         "quant: {probe_every: -1}\n";
}

Recipe recipe(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return Recipe::parse(yaml, "faults.yaml", overrides);
}

TrainerHooks quiet() {
  TrainerHooks h;
  h.quiet = true;
  return h;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<Json> records_of(const std::string& run_dir, const std::string& kind) {
  std::vector<Json> out;
  for (const Json& r : MetricsLog::read(run_dir + "/metrics.jsonl"))
    if (r.at("kind").as_string() == kind) out.push_back(r);
  return out;
}

std::vector<int64_t> train_steps(const std::string& run_dir) {
  std::vector<int64_t> s;
  for (const Json& r : records_of(run_dir, "train")) s.push_back(r.at("step").as_int());
  return s;
}

// Appends one row of docs/reliability.md's table for this test binary.
void record_result(const std::string& file, const std::string& fault, const std::string& where, int trials,
                   const std::string& outcome, bool ok) {
#ifdef GRIDLOCK_RELIABILITY_DIR
  fs::create_directories(GRIDLOCK_RELIABILITY_DIR);
  Json j = Json::object();
  j.set("fault", fault);
  j.set("where", where);
  j.set("trials", trials);
  j.set("outcome", outcome);
  j.set("ok", ok);
  j.set("test", "test_trainer: " + file);
  std::ofstream(std::string(GRIDLOCK_RELIABILITY_DIR) + "/" + file + ".jsonl", std::ios::app) << j.dump() << "\n";
#else
  (void)file, (void)fault, (void)where, (void)trials, (void)outcome, (void)ok;
#endif
}
void reset_results(const std::string& file) {
#ifdef GRIDLOCK_RELIABILITY_DIR
  std::error_code ec;
  fs::remove(std::string(GRIDLOCK_RELIABILITY_DIR) + "/" + file + ".jsonl", ec);
#else
  (void)file;
#endif
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("faults: GRIDLOCK_FAULT parses NAME:N lists and refuses anything else") {
  const FaultPlan f = FaultPlan::parse("kill_during_save:2,nan_grad:5,,truncate_data:1");
  CHECK(f.kill_during_save == 2);
  CHECK(f.nan_grad == 5);
  CHECK(f.truncate_data == 1);
  CHECK(f.inf_loss == 0);
  CHECK(FaultPlan::parse("").nan_grad == 0);
  CHECK_THROWS_WITH_AS(FaultPlan::parse("nan_grads:3"), doctest::Contains("unknown fault 'nan_grads'"), Error);
  CHECK_THROWS_WITH_AS(FaultPlan::parse("nan_grad"), doctest::Contains("needs a count >= 1"), Error);
  CHECK_THROWS_WITH_AS(FaultPlan::parse("nan_grad:0"), doctest::Contains("needs a count >= 1"), Error);
  CHECK_THROWS_WITH_AS(FaultPlan::parse("nan_grad:-1"), doctest::Contains("needs a count >= 1"), Error);
  FaultDir d;
  const FaultEnv env("bogus:1");
  CHECK_THROWS_WITH_AS(run_training(recipe(shards_recipe(d)), quiet()), doctest::Contains("GRIDLOCK_FAULT"), Error);
}

TEST_CASE("faults: data files truncated while in use are errors naming the file and offset, not SIGBUS") {
  reset_results("truncated_data");
  FaultDir d;
  // Token shard: 1000 u16 tokens, cut to the header + 10 tokens.
  const std::string shard = d / "s.gltok";
  write_token_shard(shard, tokens(1000, 3), TokenDType::u16, kV);
  const TokenShard ts = TokenShard::open(shard);
  CHECK(ts.read(900, 5).size() == 5);
  REQUIRE(::truncate(shard.c_str(), 32 + 20) == 0);
  CHECK(ts.read(0, 10).size() == 10);  // still inside what is left
  const std::string e1 = error_of([&] { ts.read(900, 5); });
  CHECK(contains(e1, shard));
  CHECK(contains(e1, "truncated while in use"));
  CHECK(contains(e1, "need bytes up to offset 1842"));  // 32 + 905 x 2
  CHECK(contains(e1, "now 52 bytes (2032 when opened)"));

  // Megatron .bin (uint16): 4 sequences of 100 tokens, the .bin cut in half.
  std::string idx("MMIDIDX\0\0", 9), bin;
  auto put = [](std::string& s, auto v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); };
  put(idx, uint64_t(1));
  put(idx, uint8_t(8));
  put(idx, uint64_t(4));
  put(idx, uint64_t(5));
  for (int i = 0; i < 4; ++i) put(idx, int32_t(100));
  for (int i = 0; i < 4; ++i) put(idx, int64_t(200 * i));
  for (int i = 0; i < 5; ++i) put(idx, int64_t(i));
  for (int i = 0; i < 400; ++i) put(bin, uint16_t(i % 50));
  std::ofstream(d / "doc.idx", std::ios::binary) << idx;
  std::ofstream(d / "doc.bin", std::ios::binary) << bin;
  const IndexedDataset ds = IndexedDataset::open(d / "doc");
  CHECK(ds.read_sequence(3).size() == 100);
  REQUIRE(::truncate((d / "doc.bin").c_str(), 400) == 0);
  CHECK(ds.read_sequence(1).size() == 100);
  const std::string e2 = error_of([&] { ds.read_sequence(3); });
  CHECK(contains(e2, d / "doc.bin"));
  CHECK(contains(e2, "truncated while in use: reading bytes [600, 800)"));

  // Mid-run, through the trainer: the training shard is cut after step 2.
  const std::string yaml = shards_recipe(d);
  std::string e3;
  {
    const FaultEnv env("truncate_data:2");
    e3 = error_of([&] { run_training(recipe(yaml), quiet()); });
  }
  CHECK(contains(e3, "step 3: reading the training batch: " + d / "train.gltok"));
  CHECK(train_steps(d / "runs/f") == std::vector<int64_t>{1, 2});  // steps 1-2 trained, 3 stopped
  CHECK(contains(e3, "truncated while in use"));
  CHECK(contains(e3, "need bytes up to offset"));
  CHECK(e3.find('\n') == std::string::npos);
  const bool ok = contains(e1, "offset") && contains(e2, "bytes [600, 800)") && contains(e3, "step 3: reading");
  record_result("truncated_data", "data file truncated while in use", "token shard read (unit)", 1,
                "error naming file and byte offset, no SIGBUS", ok);
  record_result("truncated_data", "data file truncated while in use", "Megatron .bin read (unit)", 1,
                "error naming file and byte range, no SIGBUS", ok);
  const std::string shown = e3.substr(std::min(e3.size(), e3.find("truncated while")), 60);
  record_result("truncated_data", "data file truncated while in use",
                "training shard cut after step 2 (GRIDLOCK_FAULT=truncate_data:2)", 1,
                "run stops at step 3: \"step 3: reading the training batch: .../train.gltok: " + shown + "...\"", ok);
}

TEST_CASE("numerics: NaN/Inf in a gradient, an activation and the loss: stop, skip or roll back") {
  reset_results("numerics");
  FaultDir d;
  const std::string yaml = shards_recipe(d);
  struct Inj {
    const char* fault;
    const char* event;
  };
  const Inj injections[] = {{"nan_grad", "nonfinite_grad"}, {"nan_activation", "nonfinite_loss"},
                            {"inf_loss", "nonfinite_loss"}};
  for (const Inj& inj : injections) {
    CAPTURE(inj.fault);
    const std::string f = inj.fault;
    // stop: the error names the step; the event is in metrics and the report.
    {
      const FaultEnv env(f + ":3");
      const std::string e = error_of([&] { run_training(recipe(yaml, {"run.name=" + f + "-stop"}), quiet()); });
      CHECK(contains(e, "step 3: non-finite"));
      CHECK(contains(e, "train.on_nonfinite=stop"));
      const std::string dir = d / ("runs/" + f + "-stop");
      const std::vector<Json> ev = records_of(dir, "event");
      REQUIRE(ev.size() == 1);
      CHECK(ev[0].at("step").as_int() == 3);
      CHECK(ev[0].at("event").as_string() == inj.event);
      CHECK(ev[0].at("action").as_string() == "stop");
      const std::string html = slurp(dir + "/report.html");
      CHECK(contains(html, "<h2>Events</h2>"));
      CHECK(contains(html, std::string("<td>") + inj.event + "</td><td>stop</td>"));
      record_result("numerics", f + " at step 3", "train.on_nonfinite=stop", 1,
                    "detected at step 3; event in metrics.jsonl and report; run stops naming the step",
                    ev.size() == 1 && contains(e, "step 3: non-finite"));
    }
    // skip: counted, the update dropped, every step logged once.
    {
      const FaultEnv env(f + ":3");
      const TrainResult r =
          run_training(recipe(yaml, {"run.name=" + f + "-skip", "train.on_nonfinite=skip"}), quiet());
      CHECK(r.steps == 6);
      CHECK(r.skipped_steps == 1);
      CHECK(r.events == 1);
      const std::vector<Json> ev = records_of(r.run_dir, "event");
      REQUIRE(ev.size() == 1);
      CHECK(ev[0].at("action").as_string() == "skip");
      CHECK(ev[0].at("step").as_int() == 3);
      CHECK(load_checkpoint(r.run_dir + "/checkpoints/step-00000006").state.skipped_steps == 1);
      CHECK(contains(slurp(r.run_dir + "/report.html"), "<td>skip</td>"));
      record_result("numerics", f + " at step 3", "train.on_nonfinite=skip", 1,
                    "detected at step 3; step skipped and counted (skipped_steps 1); run completes",
                    r.skipped_steps == 1 && ev.size() == 1);
    }
    // rollback: at step 5, back to the step-3 checkpoint with lr x 0.5.
    {
      const FaultEnv env(f + ":5");
      const TrainResult r =
          run_training(recipe(yaml, {"run.name=" + f + "-rb", "train.on_nonfinite=rollback"}), quiet());
      CHECK(r.steps == 6);
      CHECK(r.rollbacks == 1);
      CHECK(r.skipped_steps == 0);
      const std::vector<Json> ev = records_of(r.run_dir, "event");
      REQUIRE(ev.size() == 1);  // written after the metrics were cut back to step 3
      CHECK(ev[0].at("step").as_int() == 5);
      CHECK(ev[0].at("event").as_string() == inj.event);
      CHECK(ev[0].at("action").as_string() == "rollback");
      CHECK(contains(ev[0].at("detail").as_string(), "resumed from step-00000003"));
      CHECK(train_steps(r.run_dir) == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
      const CheckpointContents c = load_checkpoint(r.run_dir + "/checkpoints/step-00000006");
      CHECK(c.state.lr_scale == 0.5);
      CHECK(c.state.rollbacks == 1);
      // The re-run steps trained at half the learning rate.
      const std::vector<Json> tr = records_of(r.run_dir, "train");
      const std::vector<Json> clean = records_of(d / ("runs/" + f + "-skip"), "train");
      CHECK(tr[4].at("lr").as_double() == doctest::Approx(clean[4].at("lr").as_double() * 0.5).epsilon(1e-12));
      CHECK(contains(slurp(r.run_dir + "/report.html"), "<td>rollback</td>"));
      record_result("numerics", f + " at step 5", "train.on_nonfinite=rollback", 1,
                    "detected at step 5; weights, optimizer and step restored from step 3, lr x 0.5; run completes",
                    r.rollbacks == 1 && c.state.lr_scale == 0.5);
    }
  }
  // Rollbacks are bounded.
  {
    const FaultEnv env("nan_grad:5");
    const std::string e = error_of([&] {
      run_training(recipe(yaml, {"run.name=maxrb", "train.on_nonfinite=rollback", "train.max_rollbacks=0"}),
                   quiet());
    });
    CHECK(contains(e, "step 5: non-finite gradient norm"));
    CHECK(contains(e, "train.max_rollbacks = 0 are used up"));
  }
  // A rollback with no periodic checkpoint yet returns to the step-0 one.
  {
    const FaultEnv env("inf_loss:2");
    const TrainResult r = run_training(
        recipe(yaml, {"run.name=rb0", "train.on_nonfinite=rollback", "train.save_every=0"}), quiet());
    CHECK(r.rollbacks == 1);
    CHECK(r.steps == 6);
    const std::vector<Json> ev = records_of(r.run_dir, "event");
    REQUIRE(ev.size() == 1);
    CHECK(contains(ev[0].at("detail").as_string(), "step-00000000"));
  }
  // Rollback under SAM with an EMA of the weights: both restored, the run completes.
  {
    const FaultEnv env("nan_grad:5");
    const TrainResult r = run_training(recipe(yaml, {"run.name=rbsam", "train.on_nonfinite=rollback",
                                                     "optim.name=sam", "averaging.kind=ema"}),
                                       quiet());
    CHECK(r.rollbacks == 1);
    CHECK(r.steps == 6);
    CHECK(std::isfinite(r.last_val_loss));
    const std::vector<Json> val = records_of(r.run_dir, "val");
    REQUIRE(!val.empty());
    CHECK(std::isfinite(val.back().at("val_loss_avg").as_double()));
    record_result("numerics", "nan_grad at step 5 under SAM with an EMA of the weights",
                  "train.on_nonfinite=rollback", 1,
                  "no SAM ascent on the bad gradient; weights, optimizer and EMA restored from step 3; run completes",
                  r.rollbacks == 1);
  }
}

TEST_CASE("numerics: the loss-spike detector stops, skips or rolls back") {
  reset_results("spike");
  FaultDir d;
  const std::string yaml = shards_recipe(d);
  const std::vector<std::string> spike = {"train.spike_factor=1.5", "train.spike_window=3", "train.steps=8"};
  auto with = [&](std::vector<std::string> o, const std::string& extra) {
    o.push_back(extra);
    return o;
  };
  // No spike, no event: the detector does not fire on ordinary training.
  const TrainResult plain = run_training(recipe(yaml, with(spike, "run.name=plain")), quiet());
  CHECK(plain.events == 0);
  CHECK(records_of(plain.run_dir, "event").empty());
  const FaultEnv env("loss_spike:6");
  // Detector off: the spike trains through.
  const TrainResult off = run_training(recipe(yaml, {"run.name=off", "train.steps=8"}), quiet());
  CHECK(off.events == 0);
  const std::vector<Json> off_train = records_of(off.run_dir, "train");
  CHECK(off_train[5].at("loss").as_double() > 1.5 * off_train[4].at("loss").as_double());  // it is a spike

  const TrainResult skip = run_training(recipe(yaml, with(spike, "run.name=skip")), quiet());
  CHECK(skip.events == 1);
  CHECK(skip.skipped_steps == 1);
  std::vector<Json> ev = records_of(skip.run_dir, "event");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].at("event").as_string() == "loss_spike");
  CHECK(ev[0].at("step").as_int() == 6);
  CHECK(contains(ev[0].at("detail").as_string(), "mean of the last 3 steps"));
  record_result("spike", "loss spike at step 6 (head input x 30)", "train.on_spike=skip", 1,
                "detected at step 6 (factor 1.5 over a 3-step mean); step skipped and counted", ev.size() == 1);

  const std::string e = error_of(
      [&] { run_training(recipe(yaml, with(with(spike, "run.name=stop"), "train.on_spike=stop")), quiet()); });
  CHECK(contains(e, "step 6: loss spike: loss"));
  CHECK(contains(e, "train.on_spike=stop"));
  CHECK(records_of(d / "runs/stop", "event").size() == 1);
  record_result("spike", "loss spike at step 6 (head input x 30)", "train.on_spike=stop", 1,
                "detected at step 6; event in metrics and report; run stops naming the step",
                contains(e, "step 6: loss spike"));

  const TrainResult rb =
      run_training(recipe(yaml, with(with(spike, "run.name=rb"), "train.on_spike=rollback")), quiet());
  CHECK(rb.rollbacks == 1);
  CHECK(rb.steps == 8);
  ev = records_of(rb.run_dir, "event");
  REQUIRE(ev.size() == 1);
  CHECK(contains(ev[0].at("detail").as_string(), "resumed from step-00000003"));
  CHECK(train_steps(rb.run_dir) == std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8});
  // The detector's window is checkpointed: stopped after step 4 (checkpoint
  // at 3) and resumed, the run still sees the spike at 6 (its window then
  // holds steps 3-5, one from before the resume) and ends bit-identical.
  TrainerHooks stop4 = quiet();
  stop4.after_step = [](int64_t step) { return step < 4; };
  run_training(recipe(yaml, with(spike, "run.name=split")), stop4);
  const TrainResult split =
      run_training(recipe(yaml, with(with(spike, "run.name=split"), "train.resume=true")), quiet());
  CHECK(split.skipped_steps == 1);
  CHECK(slurp(split.run_dir + "/checkpoints/step-00000008/model.safetensors") ==
        slurp(skip.run_dir + "/checkpoints/step-00000008/model.safetensors"));
  CHECK(load_checkpoint(split.run_dir + "/checkpoints/step-00000008").state.recent_losses.size() == 3);
  record_result("spike", "loss spike at step 6, run stopped after step 4 and resumed from step 3",
                "train.on_spike=skip", 1,
                "the checkpointed window still detects the spike; final weights bit-identical to the unbroken run",
                split.skipped_steps == 1);

  record_result("spike", "loss spike at step 6 (head input x 30)", "train.on_spike=rollback", 1,
                "detected at step 6; restored from step 3 with lr x 0.5; run completes", rb.rollbacks == 1);
}

TEST_CASE("faults: a save failing (disk full, read-only) is one line naming the path, the last checkpoint intact") {
  reset_results("save_failure");
  FaultDir d;
  const std::string yaml = shards_recipe(d);
  struct Case {
    const char* fault;
    const char* reason;
  };
  for (const Case c : {Case{"disk_full_save:2", "No space left on device"},
                       Case{"readonly_save:2", "Read-only file system"}}) {
    CAPTURE(c.fault);
    const std::string name = std::string(c.fault).substr(0, std::string(c.fault).find(':'));
    std::string e;
    {
      const FaultEnv env(c.fault);
      e = error_of([&] { run_training(recipe(yaml, {"run.name=" + name}), quiet()); });
    }
    const std::string ckpts = d / ("runs/" + name + "/checkpoints");
    CHECK(contains(e, "checkpoint: cannot save step 6 under " + ckpts));
    CHECK(contains(e, c.reason));
    CHECK(contains(e, "the previous checkpoint is intact: " + ckpts + "/step-00000003"));
    CHECK(e.find('\n') == std::string::npos);
    // step 3 is whole and loads; no half-written directory is left.
    const CheckpointContents cc = load_checkpoint(ckpts + "/step-00000003");
    CHECK(cc.state.step == 3);
    CHECK_NOTHROW(SafetensorsFile::open(ckpts + "/step-00000003/model.safetensors"));
    int entries = 0;
    for (auto it = fs::directory_iterator(ckpts); it != fs::directory_iterator(); ++it) ++entries;
    CHECK(entries == 1);
    // And it resumes.
    const TrainResult r = run_training(recipe(yaml, {"run.name=" + name, "train.resume=true"}), quiet());
    CHECK(r.steps == 6);
    record_result("save_failure", std::string(c.reason) + " at save 2 (GRIDLOCK_FAULT=" + c.fault + ")",
                  "writing checkpoint step 6", 1,
                  "one-line error naming the path; step 3 intact, no temp dir left; --resume completes",
                  contains(e, c.reason) && r.steps == 6);
  }
  // The real thing where permissions bind (root ignores them).
  if (::geteuid() != 0) {
    const TrainResult first = run_training(recipe(yaml, {"run.name=ro", "train.steps=3"}), quiet());
    const std::string ckpts = first.run_dir + "/checkpoints";
    fs::permissions(ckpts, fs::perms::owner_read | fs::perms::owner_exec);
    const std::string e =
        error_of([&] { run_training(recipe(yaml, {"run.name=ro", "train.resume=true"}), quiet()); });
    fs::permissions(ckpts, fs::perms::owner_all);
    CHECK(contains(e, "checkpoint: cannot save step 6 under " + ckpts));
    CHECK(contains(e, "Permission denied"));
    CHECK(load_checkpoint(ckpts + "/step-00000003").state.step == 3);
    record_result("save_failure", "checkpoints directory chmod a-w", "writing checkpoint step 6", 1,
                  "one-line error naming the path; step 3 intact", contains(e, "Permission denied"));
  }
}

TEST_CASE("faults: SIGTERM saves a checkpoint of the step and stops, --resume is bit-exact") {
  reset_results("sigterm_inprocess");
  FaultDir d;
  const std::string yaml = shards_recipe(d);
  const TrainResult straight = run_training(recipe(yaml, {"run.name=straight"}), quiet());
  struct sigaction before {};
  sigaction(SIGTERM, nullptr, &before);
  TrainResult stopped;
  {
    const FaultEnv env("sigterm_at_step:4");
    stopped = run_training(recipe(yaml, {"run.name=sig"}), quiet());
  }
  CHECK(stopped.stop_signal == SIGTERM);
  CHECK(stopped.interrupted);
  CHECK(stopped.steps == 4);
  CHECK(*latest_checkpoint(stopped.run_dir) == stopped.run_dir + "/checkpoints/step-00000004");
  // The trainer's handler is gone after the run: the previous one is back.
  struct sigaction now {};
  sigaction(SIGTERM, nullptr, &now);
  CHECK((now.sa_handler == before.sa_handler));
  const TrainResult resumed = run_training(recipe(yaml, {"run.name=sig", "train.resume=true"}), quiet());
  CHECK(resumed.steps == 6);
  const std::string a = slurp(straight.run_dir + "/checkpoints/step-00000006/model.safetensors");
  const std::string b = slurp(resumed.run_dir + "/checkpoints/step-00000006/model.safetensors");
  CHECK(a == b);
  CHECK(slurp(straight.run_dir + "/checkpoints/step-00000006/optimizer.safetensors") ==
        slurp(resumed.run_dir + "/checkpoints/step-00000006/optimizer.safetensors"));
  CHECK(train_steps(resumed.run_dir) == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  record_result("sigterm_inprocess", "SIGTERM after step 4 (GRIDLOCK_FAULT=sigterm_at_step:4)", "training loop",
                1, "checkpoint step 4 saved, run returns stop_signal; --resume bit-identical to an uninterrupted run",
                a == b && stopped.steps == 4);
}
