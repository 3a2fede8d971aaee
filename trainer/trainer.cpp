// The training loop; see trainer.h for the step and the run directory rules.
#include "trainer/trainer.h"

#if GRIDLOCK_CUDA
#include "cuda/runtime.h"
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/error.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "dist/comm.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sam.h"
#include "optim/sgd.h"
#include "autograd/ops/distill.h"
#include "quant/gptq.h"
#include "quant/probe.h"
#include "quant/qat.h"
#include "quant/quantizer.h"
#include "trainer/checkpoint.h"
#include "trainer/data_loader.h"
#include "trainer/metrics.h"
#include "trainer/report.h"

namespace fs = std::filesystem;

namespace gl {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

DType recipe_dtype(const Recipe& r) { return r.get_string("model.dtype") == "f64" ? DType::F64 : DType::F32; }

// Broadcast a string from rank 0 (the run directory name, chosen there).
std::string broadcast_string(Communicator& comm, std::string s) {
  uint64_t n = s.size();
  comm.broadcast(&n, sizeof n, 0);
  s.resize(size_t(n));
  if (n) comm.broadcast(s.data(), size_t(n), 0);
  return s;
}

// out_dir/name, or name-2, name-3, ... when it exists (a fresh run never
// writes into an old one); exactly out_dir/name on resume.
std::string choose_run_dir(const Recipe& r, Communicator& comm) {
  const fs::path base = fs::path(r.get_string("run.out_dir")) / r.get_string("run.name");
  std::string dir;
  if (comm.rank() == 0) {
    if (r.get_bool("train.resume")) {
      GL_CHECK(latest_checkpoint(base.string()).has_value(), "train.resume: no checkpoint in ",
               (base / "checkpoints").string(), " (run.out_dir/run.name names the run to resume)");
      dir = base.string();
    } else {
      fs::path p = base;
      for (int i = 2; fs::exists(p); ++i) p = base.string() + "-" + std::to_string(i);
      fs::create_directories(p);
      dir = p.string();
    }
  }
  return broadcast_string(comm, dir);
}

void check_hf_dir(const std::string& dir, const char* key) {
  GL_CHECK(fs::exists(fs::path(dir) / "config.json"), key, ": ", dir,
           " is not a Hugging Face model directory (no config.json). For a Pythia step checkpoint: "
           "huggingface-cli download EleutherAI/pythia-160m --revision step100000 --local-dir DIR, "
           "then tools/convert_pytorch_bin.py DIR if it holds pytorch_model.bin (docs/reproduction.md)");
}

std::unique_ptr<LanguageModel> build_model(const Recipe& r, const std::string& resume_dir) {
  const DType dt = recipe_dtype(r);
  const Device dev = device_from_name(r.get_string("run.device"));
  if (!resume_dir.empty()) return load_hf_model(resume_dir, dt, dev);
  const std::string& init = r.get_string("train.init_from");
  if (!init.empty()) {
    check_hf_dir(init, "train.init_from");
    return load_hf_model(init, dt, dev);
  }
  ModelConfig cfg = r.model_config();
  const std::string& hf = r.get_string("model.hf_dir");
  if (!hf.empty()) {
    check_hf_dir(hf, "model.hf_dir");
    const std::string file = (fs::path(hf) / "config.json").string();
    cfg = ModelConfig::from_hf_json(Json::parse_file(file), file);
  }
  Generator gen(uint64_t(r.get_int("run.seed")));
  return make_model(cfg, gen, dt, dev);
}

// Inputs a recipe names that must exist, checked before anything is created
// so a missing checkpoint or dataset stops the run at once, saying where to
// get it.
void preflight(const Recipe& r) {
  if (!r.get_string("train.init_from").empty() && !r.get_bool("train.resume"))
    check_hf_dir(r.get_string("train.init_from"), "train.init_from");
  if (!r.get_string("model.hf_dir").empty()) check_hf_dir(r.get_string("model.hf_dir"), "model.hf_dir");
  if (r.get_float("quant.distill") > 0 && !r.get_string("quant.teacher").empty())
    check_hf_dir(r.get_string("quant.teacher"), "quant.teacher");
  if (r.get_string("data.kind") == "megatron") {
    const std::vector<std::string>& paths = r.get_strings("data.paths");
    const std::vector<std::string>& val = r.get_strings("data.val_paths");
    GL_CHECK(paths.size() == 1, "data.paths: megatron takes one path prefix, got ", paths.size());
    for (const std::string& p : {paths[0], val.empty() ? paths[0] : val[0]}) {
      const std::string idx = p.size() > 4 && p.substr(p.size() - 4) == ".idx" ? p : p + ".idx";
      GL_CHECK(fs::exists(idx), "data.paths: ", idx,
               " not found. Pythia's pre-shuffled Pile is the Hugging Face dataset "
               "EleutherAI/pile-standard-pythia-preshuffled (document.idx + document-000NN-of-00020.bin; "
               "the -deduped models use pile-deduped-pythia-preshuffled); see docs/reproduction.md");
    }
  }
}

struct Data {
  std::unique_ptr<DataSource> src;
  double unigram_entropy = 0;
  std::string tokenizer;  // tokenizer.json of the corpus (copied into the run dir)
};

Data build_data(const Recipe& r, Communicator& comm, int64_t vocab) {
  Data d;
  const std::string& kind = r.get_string("data.kind");
  const int64_t T = r.get_int("data.seq_len");
  const auto seed = uint64_t(r.get_int("run.seed"));
  const std::vector<std::string>& paths = r.get_strings("data.paths");
  std::vector<std::string> val = r.get_strings("data.val_paths");
  if (kind == "corpus") {
    CorpusSpec spec;
    spec.cache_dir = r.get_string("data.cache_dir");
    spec.vocab_size = vocab;
    // Rank 0 prepares (tokenizer training, shards); the others then find it cached.
    PreparedCorpus c;
    if (comm.rank() == 0) c = prepare_debian_corpus(spec);
    comm.barrier();
    if (comm.rank() != 0) c = prepare_debian_corpus(spec);
    d.src = make_shard_source({c.train_path}, {c.val_path}, T, seed);
    d.unigram_entropy = c.unigram_entropy_nats;
    d.tokenizer = c.tokenizer_path;
  } else if (kind == "shards") {
    GL_CHECK(!val.empty(), "data.val_paths: required when data.kind is shards (held-out shards for validation)");
    d.src = make_shard_source(paths, val, T, seed);
    d.unigram_entropy = unigram_entropy_nats(TokenShard::open(paths[0]));
  } else {
    d.src = make_megatron_source(paths[0], val.empty() ? paths[0] : val[0], T,
                                 uint64_t(r.get_int("data.fork_step")), uint64_t(r.get_int("data.fork_offset")),
                                 uint64_t(r.get_int("data.val_start")));
  }
  GL_CHECK(d.src->vocab_size() <= uint64_t(vocab), "data: ", d.src->describe(), " has vocabulary ",
           d.src->vocab_size(), ", larger than the model's ", vocab, " (model.vocab_size)");
  return d;
}

struct Optim {
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Sam> sam;
};

// `extra`: QAT's learned (LSQ) scales, optimised without weight decay.
Optim build_optimizer(const Recipe& r, const std::vector<NamedParam>& params,
                      const std::vector<NamedParam>& extra) {
  Optim o;
  auto groups = [&](double wd) {
    std::vector<ParamGroup> g = default_param_groups(params, wd);
    if (!extra.empty()) g.push_back(ParamGroup{extra, 1.0, 0.0});
    return g;
  };
  const std::string& name = r.get_string("optim.name");
  const double wd = r.get_float("optim.weight_decay");
  const std::vector<double>& betas = r.get_floats("optim.betas");
  const AdamWOptions adam{betas[0], betas[1], r.get_float("optim.eps")};
  const std::string base = name == "sam" ? r.get_string("optim.sam_base") : name;
  if (base == "adamw") {
    o.opt = std::make_unique<AdamW>(groups(wd), adam);
  } else if (base == "sgd") {
    SgdOptions s;
    s.momentum = r.get_float("optim.momentum");
    o.opt = std::make_unique<Sgd>(groups(wd), s);
  } else {
    GL_CHECK(extra.empty(), "quant.ste: lsq with optim.name=muon is not supported (Muon would "
             "orthogonalise the 2-D scale tensors); use adamw or sgd");
    MuonOptions m;
    m.momentum = r.get_float("optim.momentum");
    m.weight_decay = wd;
    m.adam = adam;
    o.opt = std::make_unique<Muon>(params, m);
  }
  if (name == "sam") o.sam = std::make_unique<Sam>(*o.opt, r.get_bool("optim.adaptive"));
  return o;
}

// Every rank must start from the same weights (same seed and files): a
// cheap fingerprint of all parameter bytes compared across ranks.
void check_same_weights(Communicator& comm, const std::vector<NamedParam>& params) {
  if (comm.size() == 1) return;
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes
  for (const NamedParam& p : params) {
    const Tensor t = p.var.value().to(Device::cpu()).contiguous();
    const auto* b = static_cast<const unsigned char*>(t.data_ptr());
    for (size_t i = 0; i < t.nbytes(); ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  check_same_on_all_ranks(comm, &h, sizeof h, "initial weights");
}

}  // namespace

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
  Optim o = build_optimizer(r, params, qat_params);

  // Knowledge distillation (spec.md 5.2): a frozen teacher, by default the
  // model the run started from (train.init_from), typically FP while the
  // student trains under QAT.
  const double kd_alpha = r.get_float("quant.distill"), kd_tau = r.get_float("quant.distill_temperature");
  std::unique_ptr<LanguageModel> teacher;
  if (kd_alpha > 0) {
    const std::string& t = r.get_string("quant.teacher").empty() ? r.get_string("train.init_from")
                                                                 : r.get_string("quant.teacher");
    teacher = load_hf_model(t, recipe_dtype(r), device_from_name(r.get_string("run.device")));
    GL_CHECK(teacher->config().vocab_size == cfg.vocab_size, "quant.teacher: ", t, " has vocabulary ",
             teacher->config().vocab_size, ", the model ", cfg.vocab_size);
  }
  const std::unique_ptr<Schedule> sched = make_schedule(r.schedule_spec());
  std::unique_ptr<WeightAverager> avg;
  if (r.has_averaging()) avg = std::make_unique<WeightAverager>(r.averaging_spec());

  TrainerState st;
  st.global_batch = B * accum * W;
  st.world_size = W;
  st.seed = r.get_int("run.seed");
  const std::string metrics_path = (fs::path(res.run_dir) / "metrics.jsonl").string();
  if (!resume_dir.empty()) {
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
    st = c.state;
    st.world_size = W;
    if (lead) MetricsLog::truncate_after(metrics_path, st.step);
    if (talk) std::printf("resuming %s at step %lld\n", resume_dir.c_str(), (long long)st.step);
  }
  GL_CHECK(st.step <= steps, "train.steps = ", steps, " but the checkpoint is already at step ", st.step);

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
  const double clip = r.get_float("optim.clip_grad_norm");
  const int64_t log_every = r.get_int("train.log_every"), eval_every = r.get_int("train.eval_every");
  const int64_t save_every = r.get_int("train.save_every"), eval_batches = r.get_int("train.eval_batches");

  // Mean loss over the global batch of step s; leaves the mean gradient.
  auto forward_backward = [&](int64_t s) {
    double loss_sum = 0;
    for (int64_t m = 0; m < accum; ++m) {
      const Batch b = train_batch(*data.src, s, m, accum, rank, W, B, cfg.vocab_size);
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
      loss.backward();
      loss_sum += loss.value().item();
      if (hooks.after_backward) hooks.after_backward(s, params);
    }
    if (accum > 1) scale_grads(params, 1.0 / double(accum));
    double l[1] = {loss_sum / double(accum)};
    if (W > 1) {
      allreduce_mean_grads(comm, params);
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

  auto save = [&]() {
    if (lead) {
      NamedTensors state = o.opt->state();
      for (const NamedParam& p : qat_params) state.emplace_back("qat." + p.name, p.var.value());
      if (avg)
        for (auto& [k, t] : avg->state("avg.")) state.emplace_back(k, t);
      const std::string dir = save_checkpoint(res.run_dir, *model, state, st, yaml, r.get_int("train.keep_last"),
                                                data.tokenizer);
      if (talk) std::printf("saved %s\n", dir.c_str());
    }
    comm.barrier();
  };

  res.last_val_loss = std::numeric_limits<double>::quiet_NaN();
  const int64_t start_step = st.step;
  Clock::time_point t_log = Clock::now();
  double train_s = 0;  // wall time of steps since start (eval and saves excluded)
  int64_t tokens_at_log = st.tokens;
  for (int64_t s = st.step; s < steps; ++s) {
    const Clock::time_point t0 = Clock::now();
    const double lr = sched->lr(s);
    if (qat) qat->update_for_step(s);
    o.opt->zero_grad();
    double loss = forward_backward(s);
    double gnorm = std::numeric_limits<double>::quiet_NaN();
    if (std::isfinite(loss) && o.sam) {
      o.sam->ascend(r.get_float("optim.rho"));
      o.opt->zero_grad();
      forward_backward(s);  // the gradient at w + e; the logged loss stays L(w)
    }
    if (std::isfinite(loss)) gnorm = clip > 0 ? clip_grad_norm(params, clip) : grad_norm(params);
    const bool finite = std::isfinite(loss) && std::isfinite(gnorm);
    if (!finite) {
      const std::string what = !std::isfinite(loss) ? "loss " + std::to_string(loss)
                                                     : "gradient norm " + std::to_string(gnorm);
      if (o.sam && o.sam->ascended()) {
        // Put w back without an update: dropping the grads first makes the
        // base optimizer skip every param (its state does not move either).
        o.opt->zero_grad();
        o.sam->descend_and_step(0.0);
      }
      GL_CHECK(on_nonfinite != "stop", "step ", s + 1, ": non-finite ", what,
               "; stopping (train.on_nonfinite=stop; =skip drops such steps). Last checkpoint: ",
               latest_checkpoint(res.run_dir).value_or("none"));
      o.opt->zero_grad();
      ++st.skipped_steps;
      if (talk) std::printf("step %lld: non-finite %s, step skipped (train.on_nonfinite=skip)\n",
                            (long long)(s + 1), what.c_str());
    } else if (o.sam) {
      o.sam->descend_and_step(lr);
    } else {
      o.opt->step(lr);
    }
    if (finite && avg) avg->update(params, s + 1);
    st.step = s + 1;
    st.tokens += st.global_batch * T;
    res.last_train_loss = loss;
    train_s += seconds_since(t0);
    st.elapsed_s += seconds_since(t0);

    if (st.step % log_every == 0 || st.step == steps || !finite) {
      const double dt = seconds_since(t_log);
      const double tps = double(st.tokens - tokens_at_log) / std::max(dt, 1e-9);
      const double eta = train_s / double(st.step - start_step) * double(steps - st.step);
      if (lead) {
        Json rec = Json::object();
        rec.set("kind", "train");
        rec.set("step", st.step);
        rec.set("loss", loss);
        rec.set("lr", lr);
        rec.set("grad_norm", gnorm);
        rec.set("tokens", st.tokens);
        rec.set("tokens_per_s", tps);
        rec.set("elapsed_s", st.elapsed_s);
        if (!finite) rec.set("skipped", true);
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
    const bool last = st.step == steps;
    if (!last && eval_every > 0 && st.step % eval_every == 0) run_eval(st.step);
    if (!last && save_every > 0 && st.step % save_every == 0) save();
    if (hooks.after_step && !hooks.after_step(st.step)) {
      res.steps = st.step;
      res.interrupted = true;
      res.skipped_steps = st.skipped_steps;
      return res;
    }
  }
  run_eval(st.step);
  save();
  res.steps = st.step;
  res.skipped_steps = st.skipped_steps;
  if (lead) {
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
