// The trainer (trainer/trainer.h), its data order (trainer/data_loader.h)
// and checkpoints (trainer/checkpoint.h), on tiny models and token shards
// written here: bit-exact resume, the split of a global batch, non-finite
// handling, atomic checkpoints, run directories.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/safetensors.h"
#include "data/token_shard.h"
#include "dist/comm.h"
#include "tests/testing.h"
#include "quant/quantizer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_loader.h"
#include "trainer/metrics.h"
#include "trainer/trainer.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("gl_training_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

constexpr int64_t kVocab = 64;

// A learnable stream: mostly a fixed cycle with some noise from a LCG.
std::vector<int32_t> pattern_tokens(size_t n, uint32_t seed) {
  std::vector<int32_t> ids(n);
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    ids[i] = (x >> 28) == 0 ? int32_t((x >> 8) % kVocab) : int32_t((i * 7 + i / 5) % kVocab);
  }
  return ids;
}

struct Shards {
  std::string train, val;
};
Shards write_shards(const TempDir& d) {
  Shards s{d / "train.gltok", d / "val.gltok"};
  write_token_shard(s.train, pattern_tokens(3000, 1), TokenDType::u16, kVocab);
  write_token_shard(s.val, pattern_tokens(400, 2), TokenDType::u16, kVocab);
  return s;
}

std::string tiny_recipe(const TempDir& d, const Shards& s) {
  return "run: {name: t, seed: 7, out_dir: " + d / "runs" +
         "}\n"
         "model: {preset: pythia-14m, hidden_size: 32, num_layers: 2, num_heads: 4, intermediate_size: 64,"
         " vocab_size: 64, max_positions: 16}\n"
         "data: {kind: shards, paths: [" + s.train + "], val_paths: [" + s.val +
         "], seq_len: 8, batch_size: 2}\n"
         "optim: {name: adamw, lr: 0.003}\n"
         "schedule: {kind: cosine, params: {warmup: 2, min_ratio: 0.1}}\n"
         "train: {steps: 6, log_every: 1, eval_every: 3, eval_batches: 2, save_every: 3, keep_last: 0}\n"
         "quant: {probe_formats: [\"int4_probe:g32\", \"int8_probe:g32\"]}\n";
}

Recipe recipe(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return Recipe::parse(yaml, "test.yaml", overrides);
}

TrainerHooks quiet() {
  TrainerHooks h;
  h.quiet = true;
  return h;
}

// Every tensor of a safetensors file, by name, as raw bytes.
std::map<std::string, std::string> tensor_bytes(const std::string& file) {
  const SafetensorsFile f = SafetensorsFile::open(file);
  std::map<std::string, std::string> out;
  for (const SafetensorsEntry& e : f.entries()) {
    const Tensor t = f.load(e.name).contiguous();
    out[e.name] = std::string(static_cast<const char*>(t.data_ptr()), t.nbytes());
  }
  return out;
}

}  // namespace

TEST_CASE("data order: epoch permutations are permutations fixed by (seed, epoch)") {
  const std::vector<uint64_t> p = epoch_permutation(1000, 5, 0);
  std::set<uint64_t> seen(p.begin(), p.end());
  CHECK(seen.size() == 1000);
  CHECK(*seen.rbegin() == 999);
  CHECK(epoch_permutation(1000, 5, 0) == p);
  CHECK(epoch_permutation(1000, 5, 1) != p);
  CHECK(epoch_permutation(1000, 6, 0) != p);
  int fixed = 0;
  for (uint64_t i = 0; i < 1000; ++i) fixed += p[i] == i;
  CHECK(fixed < 10);  // a shuffle, not the identity (expected about 1 fixed point)
}

TEST_CASE("data order: a global batch splits the same way over micro-batches and ranks") {
  TempDir d;
  const Shards s = write_shards(d);
  const auto src = make_shard_source({s.train}, {s.val}, 8, 3);
  for (int64_t step : {0, 1, 41}) {
    // One process, 4 micro-batches of 2 == 2 ranks x 2 micro-batches == 4 ranks x 1.
    for (int64_t m = 0; m < 4; ++m) {
      const Batch one = train_batch(*src, step, m, 4, 0, 1, 2, kVocab);
      const Batch two = train_batch(*src, step, m / 2, 2, int(m % 2), 2, 2, kVocab);
      const Batch four = train_batch(*src, step, 0, 1, int(m), 4, 2, kVocab);
      CHECK(one.ids.to_vector() == two.ids.to_vector());
      CHECK(one.ids.to_vector() == four.ids.to_vector());
      CHECK(one.targets.to_vector() == four.targets.to_vector());
    }
  }
  // Targets are the inputs shifted by one token, inside one window of the shard.
  const Batch b = train_batch(*src, 0, 0, 1, 0, 1, 2, kVocab);
  const std::vector<double> x = b.ids.to_vector(), y = b.targets.to_vector();
  for (int r = 0; r < 2; ++r)
    for (int t = 0; t + 1 < 8; ++t) CHECK(y[size_t(r * 8 + t)] == x[size_t(r * 8 + t + 1)]);
  // Each epoch visits every window once: 3000 tokens / 9 = 333 windows.
  std::multiset<std::vector<double>> rows;
  for (int64_t g = 0; g < 333; ++g) {
    const Batch one = train_batch(*src, g, 0, 1, 0, 1, 1, kVocab);
    rows.insert(one.ids.to_vector());
  }
  const TokenShard shard = TokenShard::open(s.train);
  std::multiset<std::vector<double>> windows;
  for (size_t w = 0; w < 333; ++w) {
    const std::vector<int32_t> ids = shard.read(w * 9, 8);
    windows.insert(std::vector<double>(ids.begin(), ids.end()));
  }
  CHECK(rows == windows);
}

TEST_CASE("data order: bad data is refused naming the source") {
  TempDir d;
  const Shards s = write_shards(d);
  const auto src = make_shard_source({s.train}, {s.val}, 8, 3);
  CHECK_THROWS_WITH_AS(train_batch(*src, 0, 0, 1, 0, 1, 2, 10), doctest::Contains("outside the model's vocabulary [0, 10)"),
                       Error);
  write_token_shard(d / "short.gltok", {1, 2, 3}, TokenDType::u16, kVocab);
  CHECK_THROWS_WITH_AS(make_shard_source({d / "short.gltok"}, {s.val}, 8, 3),
                       doctest::Contains("fewer than seq_len + 1 = 9 tokens"), Error);
}

TEST_CASE("trainer: k steps, stop, resume and N-k more give bit-identical weights") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult straight = run_training(recipe(yaml, {"run.name=straight"}), quiet());
  CHECK(straight.steps == 6);
  CHECK(std::isfinite(straight.last_val_loss));

  TrainerHooks stop = quiet();
  stop.after_step = [](int64_t step) { return step < 4; };  // dies after step 4, checkpoint at 3
  const TrainResult first = run_training(recipe(yaml, {"run.name=split"}), stop);
  CHECK(first.interrupted);
  CHECK(first.steps == 4);
  const TrainResult second = run_training(recipe(yaml, {"run.name=split", "train.resume=true"}), quiet());
  CHECK(second.run_dir == first.run_dir);
  CHECK(second.steps == 6);

  const std::string a = straight.run_dir + "/checkpoints/step-00000006";
  const std::string b = second.run_dir + "/checkpoints/step-00000006";
  const auto wa = tensor_bytes(a + "/model.safetensors"), wb = tensor_bytes(b + "/model.safetensors");
  REQUIRE(wa.size() == wb.size());
  for (const auto& [name, bytes] : wa) CHECK_MESSAGE(bytes == wb.at(name), name);
  CHECK(tensor_bytes(a + "/optimizer.safetensors") == tensor_bytes(b + "/optimizer.safetensors"));
  CHECK(straight.last_val_loss == second.last_val_loss);

  // The resumed run's metrics were cut back to its checkpoint: one train
  // record per step, none duplicated.
  std::vector<int64_t> steps;
  for (const Json& r : MetricsLog::read(second.run_dir + "/metrics.jsonl"))
    if (r.at("kind").as_string() == "train") steps.push_back(r.at("step").as_int());
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5, 6});
  CHECK(fs::exists(second.run_dir + "/report.html"));

  // The INT4/INT8 probe ran at the end (quant.probe_every 0) on the
  // validation batches and its gaps are in the metrics and the report.
  int probes = 0;
  for (const Json& r : MetricsLog::read(second.run_dir + "/metrics.jsonl"))
    if (r.at("kind").as_string() == "quant") {
      ++probes;
      CHECK(r.at("step").as_int() == 6);
      CHECK(std::isfinite(r.at("gap_pct_int4_probe:g32").as_double()));
      CHECK(std::isfinite(r.at("gap_pct_int8_probe:g32").as_double()));
      CHECK(r.at("fp_ppl").as_double() == doctest::Approx(std::exp(second.last_val_loss)).epsilon(1e-6));
    }
  CHECK(probes == 1);
  std::ifstream html(second.run_dir + "/report.html");
  const std::string page((std::istreambuf_iterator<char>(html)), {});
  CHECK(page.find("Quantization gap") != std::string::npos);
}

TEST_CASE("trainer: gradient accumulation equals the larger batch") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult big = run_training(recipe(yaml, {"run.name=big", "data.batch_size=4", "train.steps=3"}), quiet());
  const TrainResult acc = run_training(
      recipe(yaml, {"run.name=acc", "data.batch_size=2", "data.grad_accum=2", "train.steps=3"}), quiet());
  // The same rows and the same mean gradient, summed in another order.
  CHECK(acc.last_train_loss == doctest::Approx(big.last_train_loss).epsilon(1e-5));
  const auto wa = tensor_bytes(big.run_dir + "/checkpoints/step-00000003/model.safetensors");
  const auto wb = tensor_bytes(acc.run_dir + "/checkpoints/step-00000003/model.safetensors");
  for (const auto& [name, bytes] : wa) {
    const size_t n = bytes.size() / 4;
    std::vector<float> x(n), y(n);
    std::memcpy(x.data(), bytes.data(), bytes.size());
    std::memcpy(y.data(), wb.at(name).data(), bytes.size());
    double worst = 0;
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, double(std::fabs(x[i] - y[i])));
    CHECK_MESSAGE(worst < 1e-5, name);
  }
}

TEST_CASE("trainer: a non-finite gradient stops the run naming the step, or is skipped") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  TrainerHooks poison = quiet();
  poison.after_backward = [](int64_t step, const std::vector<NamedParam>& ps) {
    if (step != 2) return;  // the update logged as step 3
    Tensor g = ps[0].var.grad();
    g.data<float>()[0] = std::nanf("");
  };
  CHECK_THROWS_WITH_AS(run_training(recipe(yaml, {"run.name=stop"}), poison),
                       doctest::Contains("step 3: non-finite gradient norm"), Error);

  const TrainResult r = run_training(recipe(yaml, {"run.name=skip", "train.on_nonfinite=skip"}), poison);
  CHECK(r.steps == 6);
  CHECK(r.skipped_steps == 1);
  int skipped = 0;
  for (const Json& rec : MetricsLog::read(r.run_dir + "/metrics.jsonl"))
    if (rec.contains("skipped")) {
      ++skipped;
      CHECK(rec.at("step").as_int() == 3);
    }
  CHECK(skipped == 1);
  // The weights after step 3 equal those after step 2: nothing was trained through.
  TrainerHooks stop3 = poison;
  stop3.after_step = [](int64_t step) { return step < 3; };
  // (save_every=1 so both steps have a checkpoint to compare)
  const TrainResult cut = run_training(
      recipe(yaml, {"run.name=cut", "train.on_nonfinite=skip", "train.save_every=1", "train.keep_last=0"}), stop3);
  CHECK(tensor_bytes(cut.run_dir + "/checkpoints/step-00000002/model.safetensors") ==
        tensor_bytes(cut.run_dir + "/checkpoints/step-00000003/model.safetensors"));
}

TEST_CASE("trainer: SAM, Muon and SGD train, with EMA weights evaluated next to the raw ones") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  for (const char* opt : {"optim.name=sam", "optim.name=muon", "optim.name=sgd"}) {
    CAPTURE(opt);
    const TrainResult r = run_training(
        recipe(yaml, {"run.name=o", opt, "train.steps=4", "averaging.kind=ema", "averaging.decay=0.5"}), quiet());
    CHECK(std::isfinite(r.last_train_loss));
    bool avg_seen = false;
    for (const Json& rec : MetricsLog::read(r.run_dir + "/metrics.jsonl"))
      if (rec.contains("val_loss_avg")) avg_seen = std::isfinite(rec.at("val_loss_avg").as_double());
    CHECK(avg_seen);
  }
}

TEST_CASE("trainer: run directories are never reused by a fresh run") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult a = run_training(recipe(yaml, {"train.steps=3"}), quiet());
  const TrainResult b = run_training(recipe(yaml, {"train.steps=3"}), quiet());
  CHECK(a.run_dir == d / "runs/t");
  CHECK(b.run_dir == d / "runs/t-2");
  CHECK_THROWS_WITH_AS(run_training(recipe(yaml, {"run.name=none", "train.resume=true"}), quiet()),
                       doctest::Contains("train.resume: no checkpoint in"), Error);
}

TEST_CASE("checkpoints: keep-last, leftovers of a crashed save, malformed state") {
  TempDir d;
  const Shards s = write_shards(d);
  const TrainResult r = run_training(
      recipe(tiny_recipe(d, s), {"train.save_every=1", "train.keep_last=2"}), quiet());
  std::vector<std::string> all = list_checkpoints(r.run_dir);
  REQUIRE(all.size() == 2);
  CHECK(fs::path(all[0]).filename() == "step-00000005");
  CHECK(fs::path(all[1]).filename() == "step-00000006");

  // A save that died half-way leaves a .tmp-* directory: never listed,
  // removed by the next save; the previous checkpoints are untouched.
  const std::string junk = r.run_dir + "/checkpoints/.tmp-step-00000007-1";
  fs::create_directories(junk);
  std::ofstream(junk + "/model.safetensors") << "half";
  CHECK(*latest_checkpoint(r.run_dir) == all[1]);
  const CheckpointContents c = load_checkpoint(all[1]);
  CHECK(c.state.step == 6);
  CHECK(c.state.global_batch == 2);
  CHECK(c.state.tokens == 6 * 2 * 8);
  CHECK(!c.optimizer_state.empty());

  std::ofstream(all[0] + "/trainer_state.json") << "{\"format\": \"other\"}";
  CHECK_THROWS_WITH_AS(load_checkpoint(all[0]), doctest::Contains("not a gridlock trainer state"), Error);
  const TrainResult again = run_training(
      recipe(tiny_recipe(d, s), {"train.resume=true", "train.steps=7", "train.keep_last=2"}), quiet());
  CHECK(again.steps == 7);
  CHECK(!fs::exists(junk));
}

TEST_CASE("trainer: missing inputs stop the run before anything is created") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  CHECK_THROWS_WITH_AS(run_training(recipe(yaml, {"train.init_from=" + d / "nope"}), quiet()),
                       doctest::Contains("is not a Hugging Face model directory"), Error);
  CHECK_THROWS_WITH_AS(
      run_training(recipe(yaml, {"data.kind=megatron", "data.paths=" + d / "pile/document"}), quiet()),
      doctest::Contains("document.idx not found"), Error);
  CHECK(!fs::exists(d / "runs"));
}

TEST_CASE("trainer: QAT with learned (LSQ) scales trains, checkpoints its scales and resumes bit-exactly") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const std::vector<std::string> qat = {"quant.scheme=int4:g16", "quant.ste=lsq", "quant.start_step=2",
                                        "quant.layers=[attention, mlp]"};
  auto with = [&](std::vector<std::string> o) {
    o.insert(o.end(), qat.begin(), qat.end());
    return o;
  };
  const TrainResult straight = run_training(recipe(yaml, with({"run.name=q"})), quiet());
  TrainerHooks stop = quiet();
  stop.after_step = [](int64_t step) { return step < 4; };
  run_training(recipe(yaml, with({"run.name=qs"})), stop);
  const TrainResult resumed = run_training(recipe(yaml, with({"run.name=qs", "train.resume=true"})), quiet());
  const std::string a = straight.run_dir + "/checkpoints/step-00000006";
  const std::string b = resumed.run_dir + "/checkpoints/step-00000006";
  const auto oa = tensor_bytes(a + "/optimizer.safetensors");
  CHECK(oa == tensor_bytes(b + "/optimizer.safetensors"));
  CHECK(tensor_bytes(a + "/model.safetensors") == tensor_bytes(b + "/model.safetensors"));
  // 2 layers x 4 linear weights, each with its scales; they moved from their init.
  int scales = 0;
  for (const auto& [name, bytes] : oa) scales += name.rfind("qat.", 0) == 0;
  CHECK(scales == 8);
  // The same run without QAT validates differently: the forward was quantized.
  const TrainResult fp = run_training(recipe(yaml, {"run.name=fp"}), quiet());
  CHECK(fp.last_val_loss != straight.last_val_loss);

  CHECK_THROWS_WITH_AS(run_training(recipe(yaml, with({"run.name=m", "optim.name=muon"})), quiet()),
                       doctest::Contains("lsq with optim.name=muon is not supported"), Error);
  CHECK_THROWS_WITH_AS(
      run_training(recipe(yaml, {"run.name=p", "quant.scheme=int4:g16", "quant.layers=[nothing_matches]"}),
                   quiet()),
      doctest::Contains("nothing_matches"), Error);
}

TEST_CASE("trainer: knowledge distillation from a frozen teacher") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult base = run_training(recipe(yaml, {"run.name=teacher"}), quiet());
  const std::string teacher = base.run_dir + "/checkpoints/step-00000006";
  // Student = teacher at step 1 and no QAT: KL(p || p) = 0 (to float rounding).
  const TrainResult same = run_training(
      recipe(yaml, {"run.name=same", "train.init_from=" + teacher, "quant.distill=1", "train.steps=3"}), quiet());
  const std::vector<Json> recs = MetricsLog::read(same.run_dir + "/metrics.jsonl");
  REQUIRE(!recs.empty());
  CHECK(std::fabs(recs[0].at("loss").as_double()) < 1e-5);
  // Under QAT the quantized student differs from its FP teacher: KL > 0, and mixing in CE works.
  const TrainResult qat = run_training(recipe(yaml, {"run.name=kdq", "train.init_from=" + teacher, "quant.distill=0.5",
                                                     "quant.scheme=int4:g16", "quant.distill_temperature=2"}),
                                       quiet());
  CHECK(std::isfinite(qat.last_train_loss));
  CHECK(qat.last_train_loss > 0);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"quant.distill=1"}), doctest::Contains("quant.distill needs a teacher"), Error);
}

TEST_CASE("trainer: QAT from a GPTQ-initialised model") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult base = run_training(recipe(yaml, {"run.name=fp"}), quiet());
  const std::string ckpt = base.run_dir + "/checkpoints/step-00000006";
  // One step at a negligible LR leaves the weights and the learned scales
  // where GPTQ put them: every weight of a quantized layer is an integer
  // multiple of its group's scale (GPTQ's scales, not absmax ones).
  const TrainResult g = run_training(
      recipe(yaml, {"run.name=g", "train.init_from=" + ckpt, "quant.scheme=int4:g16", "quant.ste=lsq",
                    "quant.gptq_init=2", "schedule.kind=constant", "schedule.params.peak=1e-30", "train.steps=1"}),
      quiet());
  const std::string dir = g.run_dir + "/checkpoints/step-00000001";
  const std::string name = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight";
  const std::vector<double> w = SafetensorsFile::open(dir + "/model.safetensors").load(name).to_vector();
  const std::vector<double> sc =
      SafetensorsFile::open(dir + "/optimizer.safetensors").load("qat." + name + ".lsq_scale").to_vector();
  REQUIRE(sc.size() * 16 == w.size());
  int off_grid = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double v = w[i] / sc[i / 16];
    off_grid += std::fabs(v - std::nearbyint(v)) > 1e-3 || v < -8.001 || v > 7.001;
  }
  CHECK(off_grid == 0);
  const std::vector<double> before = SafetensorsFile::open(ckpt + "/model.safetensors").load(name).to_vector();
  CHECK(before != w);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"quant.gptq_init=2"}), doctest::Contains("quant.gptq_init needs quant.scheme"),
                       Error);
}

TEST_CASE("trainer: recipe keys that cannot apply to a loaded model are refused, not ignored") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  const TrainResult base = run_training(recipe(yaml, {"run.name=fp", "train.steps=3"}), quiet());
  const std::string ckpt = base.run_dir + "/checkpoints/step-00000003";
  CHECK_THROWS_WITH_AS(run_training(recipe(yaml, {"run.name=n", "train.init_from=" + ckpt, "model.norm=rmsnorm"}),
                                    quiet()),
                       doctest::Contains("cannot be swapped in place"), Error);
}

TEST_CASE("trainer: run.precision bf16/f16 trains close to f32, and f16 loss scale backs off and regrows") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  auto losses = [](const TrainResult& r) {
    std::vector<double> v;
    for (const Json& rec : MetricsLog::read(r.run_dir + "/metrics.jsonl"))
      if (rec.at("kind").as_string() == "train") v.push_back(rec.at("loss").as_double());
    return v;
  };
  const std::vector<double> f32 = losses(run_training(recipe(yaml, {"run.name=f32"}), quiet()));
  for (const std::string p : {"bf16", "f16"}) {
    CAPTURE(p);
    const std::vector<double> low =
        losses(run_training(recipe(yaml, {std::string("run.name=") + p, std::string("run.precision=") + p}), quiet()));
    REQUIRE(low.size() == f32.size());
    CHECK(low != f32);  // the products were rounded
    double worst = 0;
    for (size_t i = 0; i < f32.size(); ++i) worst = std::max(worst, std::fabs(low[i] - f32[i]) / f32[i]);
    CHECK(worst < 1e-3);  // measured 4.3e-5 (bf16) and 5.3e-6 (f16) over these 6 steps
  }

  // A scale of 2^24 overflows f16 in the head's backward product (the
  // logits' gradient reaches 2^24 / 16 rows > 65504): steps are skipped and
  // the scale halved until it fits; with growth_interval 2 it then doubles
  // after every two finite steps and overflows again.
  const TrainResult r = run_training(
      recipe(yaml, {"run.name=scaled", "run.precision=f16", "run.loss_scale_init=16777216",
                    "run.loss_scale_growth_interval=2", "train.steps=14"}),
      quiet());
  CHECK(r.steps == 14);
  double scale = 16777216.0;
  int64_t good = 0, backoffs = 0, events = 0;
  bool grew = false;
  for (const Json& rec : MetricsLog::read(r.run_dir + "/metrics.jsonl")) {
    if (rec.at("kind").as_string() == "event") {
      CHECK(rec.at("event").as_string() == "loss_scale_backoff");
      ++events;
    }
    if (rec.at("kind").as_string() != "train") continue;
    // The logged scale is the one after the step's update, by the rule of
    // optim/loss_scaler.h replayed from the skip flags.
    if (rec.contains("skipped")) {
      scale /= 2;
      good = 0;
      ++backoffs;
    } else if (++good == 2) {
      scale *= 2;
      good = 0;
      grew = true;
    }
    CHECK(rec.at("loss_scale").as_double() == scale);
    CHECK(std::isfinite(rec.at("loss").as_double()));
  }
  CHECK(backoffs >= 2);
  CHECK(events == backoffs);
  CHECK(r.skipped_steps == backoffs);
  CHECK(grew);
  CHECK(r.last_train_loss < losses(r).front());

  // The scale is checkpointed: stop after step 5 (checkpoint at 3), resume,
  // and the weights at step 6 equal an uninterrupted run's bit for bit.
  const std::vector<std::string> f16 = {"run.precision=f16", "run.loss_scale_init=16777216",
                                        "run.loss_scale_growth_interval=2"};
  auto with = [&](std::vector<std::string> o, std::initializer_list<std::string> more) {
    o.insert(o.end(), more);
    return o;
  };
  const TrainResult straight = run_training(recipe(yaml, with(f16, {"run.name=st"})), quiet());
  TrainerHooks stop = quiet();
  stop.after_step = [](int64_t step) { return step < 5; };
  run_training(recipe(yaml, with(f16, {"run.name=sp"})), stop);
  const TrainResult resumed = run_training(recipe(yaml, with(f16, {"run.name=sp", "train.resume=true"})), quiet());
  CHECK(tensor_bytes(straight.run_dir + "/checkpoints/step-00000006/model.safetensors") ==
        tensor_bytes(resumed.run_dir + "/checkpoints/step-00000006/model.safetensors"));
  CHECK(straight.last_val_loss == resumed.last_val_loss);
}

TEST_CASE("trainer: run.precision keys that cannot apply are refused") {
  TempDir d;
  const Shards s = write_shards(d);
  const std::string yaml = tiny_recipe(d, s);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"run.precision=bf16", "run.loss_scale_init=1024"}),
                       doctest::Contains("run.loss_scale_init: loss scaling applies only with run.precision: f16"),
                       Error);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"run.loss_scale_growth_interval=10"}),
                       doctest::Contains("run.loss_scale_growth_interval: loss scaling applies only"), Error);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"run.precision=bf16", "model.dtype=f64"}),
                       doctest::Contains("run.precision: bf16 needs model.dtype: f32"), Error);
  CHECK_THROWS_WITH_AS(recipe(yaml, {"run.precision=f16", "run.loss_scale_init=0.5"}),
                       doctest::Contains("run.loss_scale_init"), Error);
}
