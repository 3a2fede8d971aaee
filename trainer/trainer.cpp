// The training loop; see trainer.h for the step and the run directory rules.
#include "trainer/trainer.h"

#if GRIDLOCK_CUDA
#include "cuda/runtime.h"
#endif

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <set>
#include <system_error>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "core/error.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "dist/comm.h"
#include "dist/grad_reducer.h"
#include "dist/zero.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sam.h"
#include "optim/sgd.h"
#include "optim/step_gate.h"
#include "autograd/ops/distill.h"
#include "quant/gptq.h"
#include "quant/probe.h"
#include "quant/qat.h"
#include "quant/quantizer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_loader.h"
#include "trainer/faults.h"
#include "trainer/metrics.h"
#include "trainer/report.h"
#include "trainer/run_setup.h"

namespace fs = std::filesystem;

namespace gl {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

using namespace run_setup;

TrainResult run_training(const Recipe& recipe, const TrainerHooks& hooks) {
  return run_training(recipe, world(), hooks);
}

TrainResult run_training(const Recipe& r, Communicator& comm, const TrainerHooks& hooks) {
  GL_CHECK(!r.get_bool("run.tf32") || r.get_string("run.device") == "cuda",
           "run.tf32: true needs run.device=cuda (the CPU has no TF32 mode)");
#if GRIDLOCK_CUDA
  cuda::set_tf32(r.get_bool("run.tf32"));
#endif
#ifdef _OPENMP
  if (r.get_int("train.threads") > 0) omp_set_num_threads(int(r.get_int("train.threads")));
#endif
  const int rank = comm.rank(), W = comm.size();
  const bool lead = rank == 0;
  const FaultPlan faults = FaultPlan::from_env();
  const StopSignalScope signal_scope;
  const bool talk = lead && !hooks.quiet;
  preflight(r);
  const std::string yaml = r.to_yaml();
  check_same_on_all_ranks(comm, yaml.data(), yaml.size(), "the resolved recipe");

  TrainResult res;
  res.run_dir = choose_run_dir(r, comm);
  const std::string resume_dir = r.get_bool("train.resume") ? *latest_checkpoint(res.run_dir) : "";

  const std::unique_ptr<LanguageModel> model = build_model(r, resume_dir);
  const ModelConfig& cfg = model->config();
  if (!r.get_string("train.init_from").empty() || !resume_dir.empty()) {
    // A loaded model brings its own config.json: recipe keys that would
    // change its architecture cannot apply, and are refused rather than
    // ignored.
    const std::string& n = r.get_string("model.norm");
    const NormKind want = n == "rmsnorm" ? NormKind::RMSNORM : n == "ssnorm" ? NormKind::SSNORM : NormKind::LAYERNORM;
    GL_CHECK(want == cfg.norm, "model.norm: ", n, " differs from the norm of the loaded model (",
             resume_dir.empty() ? r.get_string("train.init_from") : resume_dir,
             "); a trained model's norm layers cannot be swapped in place: train from scratch with model.norm");
    const std::pair<const char*, int64_t> sizes[] = {
        {"model.hidden_size", cfg.hidden_size},      {"model.num_layers", cfg.num_layers},
        {"model.num_heads", cfg.num_heads},          {"model.intermediate_size", cfg.intermediate_size},
        {"model.vocab_size", cfg.vocab_size},        {"model.max_positions", cfg.max_positions}};
    for (const auto& [k, have] : sizes)
      GL_CHECK(r.get_int(k) == 0 || r.get_int(k) == have, k, " = ", r.get_int(k), " but the loaded model has ",
               have, " (its config.json decides; remove the override)");
  }
  const std::vector<NamedParam> params = model->parameters();
  check_same_weights(comm, params);
  const int64_t B = r.get_int("data.batch_size"), T = r.get_int("data.seq_len");
  const int64_t accum = r.get_int("data.grad_accum"), steps = r.get_int("train.steps");
  GL_CHECK(T <= cfg.max_positions, "data.seq_len = ", T, " exceeds the model's context (max_positions ",
           cfg.max_positions, ")");
  const Data data = build_data(r, comm, cfg.vocab_size);
  res.unigram_entropy = data.unigram_entropy;

  // QAT (quant/qat.h): fake-quantized weights in the forward from
  // quant.start_step on; LSQ scales are extra trainable tensors, checkpointed
  // with the optimizer state under "qat.<name>".
  std::optional<QatPlan> qat;
  std::vector<NamedParam> qat_params;
  std::vector<GptqLayerReport> gptq_reports;
  if (r.get_int("quant.gptq_init") > 0 && resume_dir.empty()) {
    // GPTQ initialisation (spec.md 5.3 "PTQ init -> QAT"): the latent weights
    // start at GPTQ's dequantized weights, calibrated on the run's own
    // training data (the first micro-batches this run will see). Every rank
    // computes the same thing from the same data.
    GptqOptions g;
    g.spec = quant_spec_from_string(r.get_string("quant.scheme"));
    std::vector<Tensor> calib;
    for (int64_t i = 0; i < r.get_int("quant.gptq_init"); ++i)
      calib.push_back(train_batch(*data.src, i / accum, i % accum, accum, 0, 1, B, cfg.vocab_size).ids);
    gptq_reports = gptq_quantize_model(*model, calib, g, r.get_strings("quant.layers"));
    const std::vector<GptqLayerReport>& rep = gptq_reports;
    if (talk) {
      double e = 0, e_rtn = 0;
      for (const GptqLayerReport& l : rep) e += l.error, e_rtn += l.rtn_error;
      std::printf("GPTQ init of %zu weights: layer error %.4g (round-to-nearest %.4g)\n", rep.size(), e, e_rtn);
    }
  }
  if (!r.get_string("quant.scheme").empty()) {
    QatOptions q;
    q.spec = quant_spec_from_string(r.get_string("quant.scheme"));
    q.layers = r.get_strings("quant.layers");
    const std::string& ste = r.get_string("quant.ste");
    q.ste = ste == "lsq" ? SteKind::LSQ : ste == "clipped" ? SteKind::CLIPPED : SteKind::PLAIN;
    q.act_bits = int(r.get_int("quant.act_bits"));
    q.start_step = r.get_int("quant.start_step");
    qat.emplace(*model, q);
    qat->attach(*model);
    qat_params = qat->extra_parameters();
    // Learned scales start at GPTQ's (spec.md 5.3): with absmax scales they
    // would be recomputed from the weights instead.
    for (const GptqLayerReport& g : gptq_reports)
      for (const NamedParam& p : qat_params)
        if (p.name == g.name + ".lsq_scale") {
          GL_CHECK(g.perm.empty() && g.scales.scale.numel() == p.var.numel(), "quant.gptq_init: GPTQ's scales of ",
                   g.name, " do not fit its LSQ scales (act_order groups?)");
          Var(p.var).mutable_value().copy_(g.scales.scale.reshape(p.var.shape()).to(p.var.dtype()));
        }
  }
  Optim o = build_optimizer(r, params, qat_params, comm);
  // ZeRO-1 (optim.zero_stage 1): state() gathers the shards, a collective.
  const auto* zero = dynamic_cast<const ShardedOptimizer*>(o.opt.get());
  // The gradient all-reduce overlapped with the last micro-batch's backward
  // (dist.overlap_grad_reduce); its constructor is a collective.
  std::unique_ptr<GradReducer> reducer;
  if (W > 1 && r.get_bool("dist.overlap_grad_reduce")) {
    const double bytes = r.get_float("dist.grad_bucket_mb") * double(1 << 20);
    reducer = std::make_unique<GradReducer>(comm, params, size_t(std::max(1.0, std::round(bytes))));
  }

  // Knowledge distillation (spec.md 5.2): a frozen teacher, by default the
  // model the run started from (train.init_from), typically FP while the
  // student trains under QAT.
  const double kd_alpha = r.get_float("quant.distill"), kd_tau = r.get_float("quant.distill_temperature");
  std::unique_ptr<LanguageModel> teacher;
  if (kd_alpha > 0) {
    const std::string& t = r.get_string("quant.teacher").empty() ? r.get_string("train.init_from")
                                                                 : r.get_string("quant.teacher");
    teacher = load_hf_model(t, recipe_dtype(r), recipe_device(r));
    GL_CHECK(teacher->config().vocab_size == cfg.vocab_size, "quant.teacher: ", t, " has vocabulary ",
             teacher->config().vocab_size, ", the model ", cfg.vocab_size);
  }
  const std::unique_ptr<Schedule> sched = make_schedule(r.schedule_spec());
  std::unique_ptr<WeightAverager> avg;
  if (r.has_averaging()) avg = std::make_unique<WeightAverager>(r.averaging_spec());

  // run.precision: the products' rounding during training forward and
  // backward (evaluation and the probe stay f32); f16 brings a loss scale.
  const MatmulPrecision precision = matmul_precision_from_name(r.get_string("run.precision"));
  const bool scaled = precision == MatmulPrecision::F16;
  const int64_t scale_growth = r.get_int("run.loss_scale_growth_interval");
  auto fix_loss_scale = [&](TrainerState& t) {
    // A checkpoint of an f32/bf16 run resumed in f16 starts at the initial
    // scale; an f16 checkpoint resumed without f16 drops its scale.
    if (!scaled) t.loss_scale = LossScale{0.0, 0};
    else if (t.loss_scale.scale == 0) t.loss_scale = LossScale{r.get_float("run.loss_scale_init"), 0};
  };

  TrainerState st;
  fix_loss_scale(st);
  st.global_batch = B * accum * W;
  st.world_size = W;
  st.seed = r.get_int("run.seed");
  const std::string metrics_path = (fs::path(res.run_dir) / "metrics.jsonl").string();
  // The optimizer state, weight average and QAT scales of checkpoint `dir`
  // (on resume the model itself came from it through build_model; a
  // rollback copies the weights in itself); returns its trainer state.
  auto restore_state = [&](const std::string& resume_dir) {
    CheckpointContents c = load_checkpoint(resume_dir);
    GL_CHECK(c.state.global_batch == st.global_batch, resume_dir, ": saved with a global batch of ",
             c.state.global_batch, " sequences, this run has ", st.global_batch,
             " (data.batch_size x data.grad_accum x processes); the data order would change");
    GL_CHECK(c.state.seed == st.seed, resume_dir, ": saved with run.seed ", c.state.seed, ", this run has ",
             st.seed);
    NamedTensors opt_state;
    std::map<std::string, Tensor> avg_state, qat_state;
    for (auto& [k, t] : c.optimizer_state) {
      if (k.rfind("avg.", 0) == 0) avg_state[k] = t;
      else if (k.rfind("qat.", 0) == 0) qat_state[k.substr(4)] = t;
      else opt_state.emplace_back(k, t);
    }
    o.opt->load_state(opt_state);
    if (avg && !avg_state.empty()) avg->load_state(avg_state, "avg.");
    GL_CHECK(qat_state.size() == qat_params.size(), resume_dir, ": holds ", qat_state.size(),
             " QAT scale tensors, this run's quant: section makes ", qat_params.size());
    for (const NamedParam& p : qat_params) {
      const auto it = qat_state.find(p.name);
      GL_CHECK(it != qat_state.end() && it->second.shape() == p.var.shape(), resume_dir,
               ": QAT scale ", p.name, " missing or of another shape");
      Var(p.var).mutable_value().copy_(it->second);
    }
    fix_loss_scale(c.state);
    return c.state;
  };
  if (!resume_dir.empty()) {
    st = restore_state(resume_dir);
    st.world_size = W;
    if (lead) MetricsLog::truncate_after(metrics_path, st.step);
    if (talk) std::printf("resuming %s at step %lld\n", resume_dir.c_str(), (long long)st.step);
  }
  GL_CHECK(st.step <= steps, "train.steps = ", steps, " but the checkpoint is already at step ", st.step);

  // train.sync_free (optim/step_gate.h): the checks a gated step can make
  // on the device are the non-finite ones and clipping; anything else the
  // host must decide before the update.
  std::string host_decides;
  if (o.sam) host_decides = "optim.name sam (its ascent needs the gradient norm first)";
  else if (!o.opt->supports_gated_step()) host_decides = "an optimizer without a gated step";
  else if (scaled) host_decides = "run.precision f16 (its loss scale is managed on the host)";
  else if (r.get_float("train.spike_factor") > 0 && W > 1)
    host_decides = "train.spike_factor > 0 on several processes (a spike is judged on the loss averaged over them)";
  else if (r.has_averaging()) host_decides = "averaging.kind (the average folds in applied steps only)";
  else if (const char* e = std::getenv("GRIDLOCK_SYNC_FREE"); e && std::string(e) == "0" &&
           r.get_string("train.sync_free") == "auto")
    host_decides = "GRIDLOCK_SYNC_FREE=0 in the environment";
  GL_CHECK(r.get_string("train.sync_free") != "true" || host_decides.empty(),
           "train.sync_free: true, but this run has ", host_decides,
           ", which needs the host-synchronised step; use train.sync_free: auto or false");
  const bool sync_free = host_decides.empty() && (r.get_string("train.sync_free") == "true" ||
                                                  (r.get_string("train.sync_free") == "auto" &&
                                                   recipe_device(r).is_cuda()));

  std::optional<MetricsLog> metrics;
  if (lead) {
    metrics.emplace(metrics_path);
    std::ofstream(fs::path(res.run_dir) / "recipe.resolved.yaml") << yaml;
    if (!data.tokenizer.empty())
      fs::copy_file(data.tokenizer, fs::path(res.run_dir) / "tokenizer.json",
                    fs::copy_options::overwrite_existing);
  }
  if (talk) {
    int64_t n = 0;
    for (const NamedParam& p : params) n += p.var.numel();
    std::printf("gridlock train: %s -> %s\n  model %lld params (%lld layers, d %lld, vocab %lld), data %s\n"
                "  %lld steps x %lld sequences x %lld tokens on %d process%s\n",
                r.file().c_str(), res.run_dir.c_str(), (long long)n, (long long)cfg.num_layers,
                (long long)cfg.hidden_size, (long long)cfg.vocab_size, data.src->describe().c_str(),
                (long long)steps, (long long)st.global_batch, (long long)T, W, W > 1 ? "es" : "");
    if (zero) std::printf("  %s\n", zero->describe().c_str());
    if (sync_free) std::printf("  step checks on the device, read a step late (train.sync_free)\n");
    else if (recipe_device(r).is_cuda() && r.get_string("train.sync_free") == "auto")
      std::printf("  host-synchronised steps: %s\n", host_decides.c_str());
    if (reducer)
      std::printf("  gradient all-reduce: %zu buckets, %s\n", reducer->bucket_names().size(),
                  reducer->overlapped() ? "overlapped with backward" : "during backward, on the main thread");
    std::fflush(stdout);
  }

  // The INT4/INT8 probe (quant/probe.h) on the validation batches: every
  // quant.probe_every steps (0: only at the end; -1: never), on rank 0.
  const int64_t probe_every = r.get_int("quant.probe_every");
  ProbeOptions probe_opts;
  if (probe_every >= 0) {
    probe_opts.formats.clear();
    for (const std::string& f : r.get_strings("quant.probe_formats"))
      probe_opts.formats.push_back(quant_spec_from_string(f));
    probe_opts.layers = r.get_strings("quant.layers");
    check_probe_options(*model, probe_opts);  // a bad pattern or shape stops the run before step 1
  }
  const std::string on_nonfinite = r.get_string("train.on_nonfinite");
  const std::string on_spike = r.get_string("train.on_spike");
  const double spike_factor = r.get_float("train.spike_factor");
  const size_t spike_window = size_t(r.get_int("train.spike_window"));
  const double rollback_lr_factor = r.get_float("train.rollback_lr_factor");
  const int64_t max_rollbacks = r.get_int("train.max_rollbacks");
  const bool may_roll_back = on_nonfinite == "rollback" || (spike_factor > 0 && on_spike == "rollback");
  // Step faults (GRIDLOCK_FAULT) fire once per process: a rolled-back step
  // then re-runs clean, as a transient fault would.
  std::set<std::string> fired;
  auto fault_now = [&](const char* name, int64_t at, int64_t step) {
    return at == step && fired.insert(name).second;
  };
  const double clip = r.get_float("optim.clip_grad_norm");
  const int64_t log_every = r.get_int("train.log_every"), eval_every = r.get_int("train.eval_every");
  const int64_t save_every = r.get_int("train.save_every"), eval_batches = r.get_int("train.eval_batches");

  // Queues step s's forward and backward over its micro-batches and leaves
  // the mean gradient; returns the micro-batches' losses, still where they
  // were computed (a sync-free step reads them a step later).
  auto queue_forward_backward = [&](int64_t s) {
    const MatmulPrecisionGuard products(precision);
    const double loss_scale = scaled ? st.loss_scale.scale : 1.0;
    // The mean over micro-batches and the loss scale come off together.
    const double grad_scale = accum > 1 || loss_scale != 1.0 ? 1.0 / (double(accum) * loss_scale) : 1.0;
    // Overlapped: the last micro-batch's backward scales each grad as it
    // becomes final and all-reduces its bucket. Not when a test hook or the
    // nan_grad fault edits the grads after backward: that must happen
    // before they are reduced.
    const bool overlap =
        reducer && !hooks.after_backward && !(faults.nan_grad == s + 1 && !fired.count("nan_grad"));
    // The micro-batches' losses stay on the device until all are queued:
    // reading each at once would make the host wait for its backward before
    // it could queue the next micro-batch.
    std::vector<Tensor> losses;
    for (int64_t m = 0; m < accum; ++m) {
      Batch b;
      try {
        b = train_batch(*data.src, s, m, accum, rank, W, B, cfg.vocab_size);
      } catch (const Error& e) {
        // A data file gone bad mid-run (truncated, rewritten): say when.
        throw Error("step " + std::to_string(s + 1) + ": reading the training batch: " + e.what());
      }
      Var loss;
      if (!teacher) {
        loss = model->loss(b.ids, b.targets);
      } else {
        const Var lg = model->logits(b.ids);
        Tensor tl;
        {
          NoGradGuard frozen;
          tl = teacher->logits(b.ids).value();
        }
        const Var kd = distill_kl(lg, tl, kd_tau);
        loss = kd_alpha == 1.0 ? kd
                               : add(scale(kd, kd_alpha), scale(cross_entropy(lg, b.targets), 1.0 - kd_alpha));
      }
      std::optional<GradReadyGuard> ready;
      if (overlap && m == accum - 1) {
        reducer->begin(grad_scale);
        ready.emplace([&](VarImpl& leaf) { reducer->grad_ready(leaf); });
      }
      if (loss_scale != 1.0) {
        scale(loss, loss_scale).backward();
      } else if (sync_free && W > 1) {
        nan_grads_unless_finite(loss).backward();  // every rank's gate closes alike
      } else {
        loss.backward();
      }
      ready.reset();
      losses.push_back(loss.value());
      if (hooks.after_backward) hooks.after_backward(s, params);
      if (fault_now("nan_grad", faults.nan_grad, s + 1)) {
        Tensor g = params[0].var.grad();
        Tensor h = g.to(Device::cpu()).to(DType::F64).contiguous();
        h.data<double>()[0] = std::numeric_limits<double>::quiet_NaN();
        g.copy_(h);
      }
    }
    if (!overlap && grad_scale != 1.0) scale_grads(params, grad_scale);
    if (W > 1) {
      if (overlap) reducer->finish();
      else allreduce_mean_grads(comm, params);
    }
    return losses;
  };
  // Mean loss over the global batch of step s; leaves the mean gradient.
  auto forward_backward = [&](int64_t s) {
    const std::vector<Tensor> losses = queue_forward_backward(s);
    double loss_sum = 0;
    for (const Tensor& l : losses) loss_sum += l.item();
    double l[1] = {loss_sum / double(accum)};
    if (fault_now("inf_loss", faults.inf_loss, s + 1)) l[0] = std::numeric_limits<double>::infinity();
    if (W > 1) {
      comm.allreduce_sum(l, 1);
      l[0] /= double(W);
    }
    return l[0];
  };

  auto evaluate = [&]() {
    NoGradGuard no_grad;
    double acc[2] = {0, 0};  // loss sum, batches
    for (int64_t i = rank; i < eval_batches; i += W) {
      const Batch b = val_batch(*data.src, i, B, cfg.vocab_size);
      acc[0] += model->loss(b.ids, b.targets).value().item();
      acc[1] += 1;
    }
    comm.allreduce_sum(acc, 2);
    return acc[0] / acc[1];
  };

  auto run_probe_at = [&](int64_t step) {
    if (!lead) return;
    std::vector<std::pair<Tensor, Tensor>> batches;
    for (int64_t i = 0; i < eval_batches; ++i) {
      Batch b = val_batch(*data.src, i, B, cfg.vocab_size);
      batches.emplace_back(b.ids, b.targets);
    }
    // The probe quantizes the latent (FP) weights itself: without the QAT
    // hooks, or they would be quantized twice.
    if (qat) QatPlan::detach(*model);
    ProbeResult pr;
    try {
      pr = run_probe(*model, batches, probe_opts);
    } catch (...) {
      if (qat) qat->attach(*model);
      throw;
    }
    if (qat) qat->attach(*model);
    Json full = pr.to_json();
    Json rec = Json::object();
    rec.set("kind", "quant");
    rec.set("step", step);
    for (const auto& [k, v] : full.items())
      if (v.is_number()) rec.set(k, v);
    metrics->append(rec);
    full.set("step", step);
    std::ofstream(fs::path(res.run_dir) / "probe.jsonl", std::ios::app) << full.dump() << "\n";
    if (talk) {
      std::printf("step %lld: probe fp ppl %.2f", (long long)step, pr.fp_ppl);
      for (const ProbeResult::Fmt& f : pr.formats) std::printf(" | %s gap %+.2f%%", f.name.c_str(), f.gap_pct);
      std::printf("\n");
      std::fflush(stdout);
    }
  };

  auto run_eval = [&](int64_t step) {
    Json rec = Json::object();
    rec.set("kind", "val");
    rec.set("step", step);
    const double v = evaluate();
    rec.set("val_loss", v);
    rec.set("val_ppl", std::exp(v));
    res.last_val_loss = v;
    if (avg && avg->num_averaged() > 0) {
      avg->swap_in(params);
      const double va = evaluate();
      avg->swap_out(params);
      rec.set("val_loss_avg", va);
      rec.set("val_ppl_avg", std::exp(va));
    }
    if (lead) metrics->append(rec);
    const bool final_eval = step == steps;
    if (probe_every >= 0 && (final_eval || (probe_every > 0 && step % probe_every == 0))) run_probe_at(step);
    if (talk) {
      std::printf("step %lld: val loss %.4f (ppl %.2f)%s\n", (long long)step, v, std::exp(v),
                  data.unigram_entropy > 0
                      ? (" | unigram entropy of the data " + std::to_string(data.unigram_entropy)).c_str()
                      : "");
      std::fflush(stdout);
    }
  };

  int64_t saves = 0, saved_step = -1;
  // GRIDLOCK_FAULT's save faults, called by save_checkpoint at its stages.
  auto save_fault = [&](const char* stage, const std::string& path) {
    const std::string st_name = stage;
    if (st_name == "begin" && saves == faults.readonly_save)
      throw std::system_error(EROFS, std::generic_category(),
                              "cannot create " + path + " (injected by GRIDLOCK_FAULT=readonly_save)");
    if (st_name == "midway" && saves == faults.disk_full_save)
      throw std::system_error(ENOSPC, std::generic_category(),
                              "cannot write " + path + " (injected by GRIDLOCK_FAULT=disk_full_save)");
    if (st_name == "midway" && saves == faults.kill_during_save) kill_self();
  };
  auto save = [&]() {
    ++saves;
    saved_step = st.step;
    NamedTensors state;
    if (lead || zero) state = o.opt->state();  // other ranks drop theirs
    if (lead) {
      for (const NamedParam& p : qat_params) state.emplace_back("qat." + p.name, p.var.value());
      if (avg)
        for (auto& [k, t] : avg->state("avg.")) state.emplace_back(k, t);
      const std::string dir = save_checkpoint(res.run_dir, *model, state, st, yaml, r.get_int("train.keep_last"),
                                                data.tokenizer, save_fault);
      if (talk) std::printf("saved %s\n", dir.c_str());
    }
    comm.barrier();
  };

  auto write_run_report = [&]() {
    if (!lead) return;
    int64_t n = 0;
    for (const NamedParam& p : params) n += p.var.numel();
    std::vector<std::pair<std::string, std::string>> summary = {
        {"recipe", r.file()},
        {"model", std::to_string(n) + " parameters, " + std::to_string(cfg.num_layers) + " layers, d " +
                      std::to_string(cfg.hidden_size) + ", vocab " + std::to_string(cfg.vocab_size)},
        {"data", data.src->describe()},
        {"steps", std::to_string(st.step) + " x " + std::to_string(st.global_batch) + " sequences x " +
                      std::to_string(T) + " tokens (" + std::to_string(W) + " process" + (W > 1 ? "es)" : ")")},
        {"skipped steps", std::to_string(st.skipped_steps)},
    };
    if (st.rollbacks > 0)
      summary.push_back({"rollbacks", std::to_string(st.rollbacks) + " (learning rate now x " +
                                          std::to_string(st.lr_scale) + ")"});
    std::vector<ReportFigure> figs = default_report_figures();
    if (probe_every >= 0) {
      ReportFigure gap;
      gap.title = "Quantization gap (PPL_q - PPL_fp) / PPL_fp";
      gap.y_label = "gap (%)";
      for (const QuantSpec& f : probe_opts.formats) gap.series.push_back({f.name, "quant", "gap_pct_" + f.name});
      gap.hlines.push_back({"no gap", 0.0});
      figs.push_back(gap);
    }
    if (data.unigram_entropy > 0) {
      summary.push_back({"unigram entropy of the training data", std::to_string(data.unigram_entropy) + " nats/token"});
      for (ReportFigure& f : figs)
        if (f.title.find("oss") != std::string::npos) f.hlines.push_back({"unigram entropy", data.unigram_entropy});
    }
    write_report(res.run_dir, "gridlock run " + fs::path(res.run_dir).filename().string(), summary, figs);
  };

  // Rollback: the newest checkpoint's weights, optimizer state and step; the
  // counters of what happened since (skips, rollbacks, the LR scale) carry on.
  const Device device = recipe_device(r);
  auto roll_back = [&]() {
    const std::optional<std::string> dir = latest_checkpoint(res.run_dir);
    GL_CHECK(dir.has_value(), "rollback: no checkpoint in ", res.run_dir, "/checkpoints");
    const TrainerState keep = st;
    const std::unique_ptr<LanguageModel> saved = load_hf_model(*dir, recipe_dtype(r), device);
    const std::vector<NamedParam> sp = saved->parameters();
    GL_CHECK(sp.size() == params.size(), "rollback: ", *dir, " holds ", sp.size(), " parameters, the model ",
             params.size());
    for (size_t i = 0; i < sp.size(); ++i) {
      GL_CHECK(sp[i].name == params[i].name && sp[i].var.shape() == params[i].var.shape(), "rollback: ", *dir,
               ": parameter ", sp[i].name, " does not match the model's ", params[i].name);
      Var(params[i].var).mutable_value().copy_(sp[i].var.value());
    }
    if (avg) avg = std::make_unique<WeightAverager>(r.averaging_spec());  // the checkpoint's average, or none yet
    st = restore_state(*dir);
    st.world_size = W;
    st.skipped_steps = keep.skipped_steps;
    st.elapsed_s = keep.elapsed_s;
    st.rollbacks = keep.rollbacks + 1;
    st.lr_scale = keep.lr_scale * rollback_lr_factor;
    if (lead) {
      metrics->close();
      MetricsLog::truncate_after(metrics_path, st.step);
      metrics->open(metrics_path);
    }
    return *dir;
  };

  res.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  if (may_roll_back && st.step == 0 && !latest_checkpoint(res.run_dir)) save();  // something to roll back to
  const int64_t start_step = st.step;
  Clock::time_point t_log = Clock::now();
  double train_s = 0;  // wall time of steps since start (eval and saves excluded)
  int64_t tokens_at_log = st.tokens;
  // Step d.s's outcome: the checks, the event and action of a bad step
  // (skip, stop, rollback), the update (host path) or its settling (a
  // gated, sync-free step), the counters and the metrics line. False when
  // it rolled back: st is then the checkpoint's.
  struct StepDone {
    int64_t s = 0;
    double lr = 0, loss = 0, gnorm = 0;
    bool gated = false, applied_on_device = false;
    Clock::time_point t0;
  };
  auto finish = [&](const StepDone& d) -> bool {
    const int64_t s = d.s;
    const double lr = d.lr, loss = d.loss, gnorm = d.gnorm;
    const bool finite = std::isfinite(loss) && std::isfinite(gnorm);
    // f16: a non-finite gradient under a finite loss is first taken for an
    // overflow of the scaled backward (skip, halve the scale). A non-finite
    // loss is the forward's, which no loss scale cures.
    const double scale_before = st.loss_scale.scale;
    const bool backoff = scaled && std::isfinite(loss) &&
                         loss_scale_overflowed(st.loss_scale, scale_growth, std::isfinite(gnorm));
    // A bad step: non-finite, or a spike over the running mean of accepted losses.
    std::string event, detail, action;
    std::vector<double>& recent = st.recent_losses;  // the spike detector's window (checkpointed)
    while (recent.size() > spike_window) recent.erase(recent.begin());  // a resume with a smaller window
    double mean = 0;
    for (double x : recent) mean += x;
    mean /= double(std::max<size_t>(recent.size(), 1));
    if (backoff) {
      event = "loss_scale_backoff";
      detail = "gradient norm " + std::to_string(gnorm) + " at loss scale " + std::to_string(scale_before) +
               ", scale now " + std::to_string(st.loss_scale.scale);
      action = "skip";
    } else if (!finite) {
      event = !std::isfinite(loss) ? "nonfinite_loss" : "nonfinite_grad";
      detail = !std::isfinite(loss) ? "loss " + std::to_string(loss) : "gradient norm " + std::to_string(gnorm);
      action = on_nonfinite;
    } else if (spike_factor > 0 && recent.size() == spike_window && loss > spike_factor * mean) {
      event = "loss_spike";
      detail = "loss " + std::to_string(loss) + " > " + std::to_string(spike_factor) + " x " +
               std::to_string(mean) + " (mean of the last " + std::to_string(spike_window) + " steps)";
      action = on_spike;
    }
    const bool applied = event.empty();
    GL_CHECK(!d.gated || applied == d.applied_on_device, "step ", s + 1,
             ": the device's step check disagrees with the host's (loss ", loss, ", gradient norm ", gnorm, ")");
    if (!applied) {
      const char* key = event == "loss_spike"           ? "train.on_spike"
                        : event == "loss_scale_backoff" ? "run.precision=f16"
                                                        : "train.on_nonfinite";
      if (d.gated) {
        // The kernels dropped the update; the grads now are the next step's.
        o.opt->settle(false);
      } else {
        if (o.sam && o.sam->ascended()) {
          // Put w back without an update: dropping the grads first makes the
          // base optimizer skip every param (its state does not move either).
          o.opt->zero_grad();
          o.sam->descend_and_step(0.0);
        }
        o.opt->zero_grad();
      }
      ++res.events;
      if (action == "rollback" && st.rollbacks >= max_rollbacks) action = "stop";
      if (lead && action != "rollback") {  // a rollback logs after cutting the metrics back
        Json rec = Json::object();
        rec.set("kind", "event");
        rec.set("step", s + 1);
        rec.set("event", event);
        rec.set("action", action);
        rec.set("detail", detail);
        rec.set("value", event == "nonfinite_grad" || event == "loss_scale_backoff" ? gnorm : loss);
        metrics->append(rec);
      }
      if (action == "stop") {
        st.step = s;  // the report describes the steps completed
        write_run_report();
        const std::string configured = event == "loss_spike" ? on_spike : on_nonfinite;
        const std::string why = configured == "rollback"
                                    ? std::string(key) + "=rollback, but train.max_rollbacks = " +
                                          std::to_string(max_rollbacks) + " are used up"
                                    : std::string(key) + "=stop";
        GL_CHECK(false, "step ", s + 1, ": ", event == "loss_spike" ? "loss spike: " : "non-finite ", detail,
                 "; stopping (", why, "; skip drops such steps, rollback returns to the last checkpoint). ",
                 "Last checkpoint: ",
                 latest_checkpoint(res.run_dir).value_or("none"));
      }
      if (action == "rollback") {
        const int64_t at = s + 1;
        const std::string dir = roll_back();  // the window too, as of the checkpoint
        if (talk)
          std::printf("step %lld: %s (%s), rolled back to %s; learning rate now x %g (%s=rollback)\n",
                      (long long)at, event.c_str(), detail.c_str(), dir.c_str(), st.lr_scale, key);
        if (lead) {
          // The event survives the cut of the metrics to the checkpoint.
          Json rec = Json::object();
          rec.set("kind", "event");
          rec.set("step", at);
          rec.set("event", event);
          rec.set("action", "rollback");
          rec.set("detail", detail + "; resumed from " + fs::path(dir).filename().string() + ", lr x " +
                                std::to_string(st.lr_scale));
          rec.set("value", event == "nonfinite_grad" ? gnorm : loss);
          metrics->append(rec);
        }
        t_log = Clock::now();
        tokens_at_log = st.tokens;
        return false;
      }
      ++st.skipped_steps;
      if (talk)
        std::printf("step %lld: %s (%s), step skipped (%s=skip)\n", (long long)(s + 1), event.c_str(),
                    detail.c_str(), key);
    } else if (d.gated) {
      o.opt->settle(true);
    } else if (o.sam) {
      o.sam->descend_and_step(lr);
    } else {
      o.opt->step(lr);
    }
    if (applied && spike_factor > 0) {
      recent.push_back(loss);
      if (recent.size() > spike_window) recent.erase(recent.begin());
    }
    if (applied && avg) avg->update(params, s + 1);
    st.step = s + 1;
    st.tokens += st.global_batch * T;
    res.last_train_loss = loss;
    if (!d.gated) {  // a sync-free step's time is counted when it is queued
      train_s += seconds_since(d.t0);
      st.elapsed_s += seconds_since(d.t0);
    }

    if (st.step % log_every == 0 || st.step == steps || !applied) {
      const double dt = seconds_since(t_log);
      const double tps = double(st.tokens - tokens_at_log) / std::max(dt, 1e-9);
      const double eta = train_s / double(std::max<int64_t>(st.step - start_step, 1)) * double(steps - st.step);
      if (lead) {
        Json rec = Json::object();
        rec.set("kind", "train");
        rec.set("step", st.step);
        rec.set("loss", loss);
        rec.set("lr", lr);
        rec.set("grad_norm", gnorm);
        rec.set("tokens", st.tokens);
        rec.set("tokens_per_s", tps);
        if (scaled) rec.set("loss_scale", st.loss_scale.scale);
        rec.set("elapsed_s", st.elapsed_s);
        if (!applied) rec.set("skipped", true);
        metrics->append(rec);
      }
      if (talk) {
        ProgressFields pf;
        pf.step = st.step;
        pf.total_steps = steps;
        pf.loss = loss;
        pf.lr = lr;
        pf.grad_norm = gnorm;
        pf.tokens_per_s = tps;
        pf.eta_s = eta;
        std::printf("%s\n", format_progress_line(pf).c_str());
        std::fflush(stdout);
      }
      t_log = Clock::now();
      tokens_at_log = st.tokens;
    }
    return true;
  };

  // train.sync_free: the queued step whose gate the host has not read yet.
  std::optional<StepDone> pending;
  // ... and the spike detector's window on the device, re-sent from
  // st.recent_losses at the start and after a rollback.
  std::optional<SpikeWindow> spike_dev;
  GateReader gate_reader;
  auto read_pending = [&]() {
    const StepOutcome out = gate_reader.wait();
    StepDone d = *pending;
    pending.reset();
    d.loss = out.loss;
    d.gnorm = out.grad_norm;
    d.applied_on_device = out.applied;
    if (W > 1) {
      // The gate holds this rank's mean loss: the mean over ranks as the
      // host path forms it. The norm is every rank's (all-reduced grads);
      // the host path does not compute it under a non-finite loss.
      comm.allreduce_sum(&d.loss, 1);
      d.loss /= double(W);
      if (!std::isfinite(d.loss)) d.gnorm = std::numeric_limits<double>::quiet_NaN();
    }
    return finish(d);
  };
  // The same answer on every rank: the stop signal is rank 0's.
  auto drain_after = [&](int64_t step) {
    int sig = pending_stop_signal();
    if (W > 1) comm.broadcast(&sig, sizeof sig, 0);
    return sig != 0 || step == steps || (eval_every > 0 && step % eval_every == 0) ||
           (save_every > 0 && step % save_every == 0) || bool(hooks.after_step) ||
           faults.truncate_data == step || faults.kill_at_step == step || faults.sigterm_at_step == step;
  };
  for (int64_t s = st.step; s < steps; ++s) {
    const Clock::time_point t0 = Clock::now();
    const double lr = sched->lr(s) * st.lr_scale;
    if (qat) qat->update_for_step(s);
    o.opt->zero_grad();
    LanguageModel::ActivationTransform prev_act;
    const bool poison_act = fault_now("nan_activation", faults.nan_activation, s + 1);
    const bool spike_act = fault_now("loss_spike", faults.loss_spike, s + 1);
    if (poison_act || spike_act) prev_act = model->activation_transform();
    if (spike_act) {
      // Logits x 30: confidently wrong predictions, a large finite loss.
      model->set_activation_transform([prev_act](const std::string& name, const Var& x) {
        const Var y = prev_act ? prev_act(name, x) : x;
        const bool head = name == "embed_out.weight" || name == "lm_head.weight";
        return head ? scale(y, 30.0) : y;
      });
    }
    if (poison_act) {
      // One element of the first linear layer's input becomes NaN, as an
      // overflowing activation would.
      auto done = std::make_shared<bool>(false);
      model->set_activation_transform([prev_act, done](const std::string& name, const Var& x) {
        const Var y = prev_act ? prev_act(name, x) : x;
        if (*done) return y;
        *done = true;
        Tensor t = Tensor::zeros(y.value().shape(), DType::F64);
        t.data<double>()[0] = std::numeric_limits<double>::quiet_NaN();
        return add(y, Var(t.to(y.value().dtype()).to(y.value().device())));
      });
    }
    if (sync_free) {
      const std::vector<Tensor> losses = queue_forward_backward(s);
      if (poison_act || spike_act) model->set_activation_transform(prev_act);
      // Step s - 1's gate, read now that step s is queued behind it.
      if (pending) ++res.late_gate_reads;
      if (pending && !read_pending()) {
        spike_dev.reset();
        s = st.step - 1;  // rolled back: the loop's ++s makes it the checkpoint's step
        continue;
      }
      const bool poison_loss = fault_now("inf_loss", faults.inf_loss, s + 1);
      if (spike_factor > 0 && !spike_dev)
        spike_dev = make_spike_window(st.recent_losses, int64_t(spike_window), spike_factor, device);
      const StepGate gate = check_step(params, losses, clip, poison_loss, spike_dev ? &*spike_dev : nullptr);
      clip_by_gate(params, gate);
      o.opt->step_gated(lr, gate.applied());
      gate_reader.start(gate);
      pending = StepDone{s, lr, 0, 0, true, false, t0};
      // The host acts after some steps (evaluate, save, a hook, a signal):
      // it reads their gate at once.
      const bool drain = drain_after(s + 1);
      if (drain && !read_pending()) {
        spike_dev.reset();
        s = st.step - 1;
        continue;
      }
      train_s += seconds_since(t0);
      st.elapsed_s += seconds_since(t0);
      if (!drain) continue;
    } else {
      double loss = forward_backward(s);
      if (poison_act || spike_act) model->set_activation_transform(prev_act);
      double gnorm = std::numeric_limits<double>::quiet_NaN();
      bool usable = std::isfinite(loss);
      if (usable && o.sam) {
        // A non-finite gradient at w cannot define SAM's ascent: it is this
        // step's bad gradient norm, handled below like any other.
        const double g0 = grad_norm(params);
        if (!std::isfinite(g0)) {
          gnorm = g0;
          usable = false;
        }
      }
      if (usable && o.sam) {
        o.sam->ascend(r.get_float("optim.rho"));
        o.opt->zero_grad();
        forward_backward(s);  // the gradient at w + e; the logged loss stays L(w)
      }
      if (usable) gnorm = clip > 0 ? clip_grad_norm(params, clip) : grad_norm(params);
      if (!finish(StepDone{s, lr, loss, gnorm, false, false, t0})) {
        s = st.step - 1;  // rolled back: the loop's ++s makes it the checkpoint's step
        continue;
      }
    }
    const bool last = st.step == steps;
    if (!last && eval_every > 0 && st.step % eval_every == 0) run_eval(st.step);
    if (!last && save_every > 0 && st.step % save_every == 0) save();
    if (fault_now("truncate_data", faults.truncate_data, st.step) && lead) {
      // Another process shrinking the file under us: header + a few tokens stay.
      struct stat sb {};
      GL_CHECK(::stat(data.train_file.c_str(), &sb) == 0, "GRIDLOCK_FAULT=truncate_data: cannot stat ",
               data.train_file);
      GL_CHECK(::truncate(data.train_file.c_str(), std::min<off_t>(sb.st_size, 96)) == 0,
               "GRIDLOCK_FAULT=truncate_data: cannot truncate ", data.train_file);
    }
    if (fault_now("kill_at_step", faults.kill_at_step, st.step)) kill_self();
    if (fault_now("sigterm_at_step", faults.sigterm_at_step, st.step)) std::raise(SIGTERM);
    if (hooks.after_step && !hooks.after_step(st.step)) {
      res.steps = st.step;
      res.interrupted = true;
      res.skipped_steps = st.skipped_steps;
      res.rollbacks = st.rollbacks;
      return res;
    }
    // A stop signal: every rank follows rank 0's view, so all stop after
    // the same step.
    int sig = pending_stop_signal();
    if (W > 1) comm.broadcast(&sig, sizeof sig, 0);
    if (sig && !last) {
      if (saved_step != st.step) save();
      if (talk) {
        std::printf("gridlock train: %s received: stopped after step %lld, checkpoint %s saved; continue with "
                    "the same command plus --resume (or train.resume=true)\n",
                    signal_name(sig), (long long)st.step,
                    latest_checkpoint(res.run_dir).value_or("(none)").c_str());
        std::fflush(stdout);
      }
      res.steps = st.step;
      res.interrupted = true;
      res.stop_signal = sig;
      res.skipped_steps = st.skipped_steps;
      res.rollbacks = st.rollbacks;
      return res;
    }
  }
  run_eval(st.step);
  save();
  res.steps = st.step;
  res.skipped_steps = st.skipped_steps;
  res.rollbacks = st.rollbacks;
  if (lead) {
    write_run_report();
    if (talk) {
      std::printf("done: %lld steps, final val loss %.4f (ppl %.2f)%s; report %s/report.html\n",
                  (long long)st.step, res.last_val_loss, std::exp(res.last_val_loss),
                  data.unigram_entropy > 0
                      ? (", unigram entropy of the data " + std::to_string(data.unigram_entropy)).c_str()
                      : "",
                  res.run_dir.c_str());
    }
  }
  return res;
}

}  // namespace gl
