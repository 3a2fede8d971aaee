// See run_setup.h.
#include "trainer/run_setup.h"

#include <filesystem>

#include "core/device_hooks.h"
#include "core/error.h"
#include "dist/comm.h"
#include "dist/zero.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sgd.h"
#include "trainer/checkpoint.h"

namespace fs = std::filesystem;

namespace gl::run_setup {

namespace {

// Broadcast a string from rank 0 (the run directory name, chosen there).
std::string broadcast_string(Communicator& comm, std::string s) {
  uint64_t n = s.size();
  comm.broadcast(&n, sizeof n, 0);
  s.resize(size_t(n));
  if (n) comm.broadcast(s.data(), size_t(n), 0);
  return s;
}

void check_hf_dir(const std::string& dir, const char* key) {
  GL_CHECK(fs::exists(fs::path(dir) / "config.json"), key, ": ", dir,
           " is not a Hugging Face model directory (no config.json). For a Pythia step checkpoint: "
           "huggingface-cli download EleutherAI/pythia-160m --revision step100000 --local-dir DIR, "
           "then tools/convert_pytorch_bin.py DIR if it holds pytorch_model.bin (docs/reproduction.md)");
}

}  // namespace

DType recipe_dtype(const Recipe& r) { return r.get_string("model.dtype") == "f64" ? DType::F64 : DType::F32; }

Device recipe_device(const Recipe& r) {
  const Device d = device_from_name(r.get_string("run.device"));
  if (!d.is_cuda()) return d;
  GL_CHECK(GRIDLOCK_CUDA, "run.device: cuda, but this build has no CUDA backend (nvcc was not found at configure time)");
  // Under mpirun each rank of a node takes its own GPU.
  return Device::cuda(device_for_local_rank(launcher_local_rank(), cuda_hooks::device_count()));
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

std::unique_ptr<LanguageModel> build_model(const Recipe& r, const std::string& resume_dir) {
  const DType dt = recipe_dtype(r);
  const Device dev = recipe_device(r);
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
    d.train_file = c.train_path;
    d.unigram_entropy = c.unigram_entropy_nats;
    d.tokenizer = c.tokenizer_path;
  } else if (kind == "shards") {
    GL_CHECK(!val.empty(), "data.val_paths: required when data.kind is shards (held-out shards for validation)");
    d.src = make_shard_source(paths, val, T, seed);
    d.train_file = paths[0];
    d.unigram_entropy = unigram_entropy_nats(TokenShard::open(paths[0]));
  } else {
    d.src = make_megatron_source(paths[0], val.empty() ? paths[0] : val[0], T,
                                 uint64_t(r.get_int("data.fork_step")), uint64_t(r.get_int("data.fork_offset")),
                                 uint64_t(r.get_int("data.val_start")));
    const std::string& p = paths[0];
    d.train_file = (p.size() > 4 && p.substr(p.size() - 4) == ".idx" ? p.substr(0, p.size() - 4) : p) + ".bin";
  }
  GL_CHECK(d.src->vocab_size() <= uint64_t(vocab), "data: ", d.src->describe(), " has vocabulary ",
           d.src->vocab_size(), ", larger than the model's ", vocab, " (model.vocab_size)");
  return d;
}

// `extra`: QAT's learned (LSQ) scales, optimised without weight decay.
Optim build_optimizer(const Recipe& r, const std::vector<NamedParam>& params,
                      const std::vector<NamedParam>& extra, Communicator& comm) {
  Optim o;
  const std::string& name = r.get_string("optim.name");
  const double wd = r.get_float("optim.weight_decay");
  const std::vector<double>& betas = r.get_floats("optim.betas");
  const AdamWOptions adam{betas[0], betas[1], r.get_float("optim.eps")};
  const std::string base = name == "sam" ? r.get_string("optim.sam_base") : name;
  GL_CHECK(extra.empty() || base != "muon", "quant.ste: lsq with optim.name=muon is not supported (Muon would "
           "orthogonalise the 2-D scale tensors); use adamw or sgd");
  // The optimizer over some parameter groups: all of them, or (ZeRO-1) one
  // rank's share of each. Muon makes its own groups from the parameters.
  auto make = [&](std::vector<ParamGroup> groups) -> std::unique_ptr<Optimizer> {
    if (base == "adamw") return std::make_unique<AdamW>(std::move(groups), adam);
    if (base == "sgd") {
      SgdOptions s;
      s.momentum = r.get_float("optim.momentum");
      return std::make_unique<Sgd>(std::move(groups), s);
    }
    std::vector<NamedParam> ps;
    for (const ParamGroup& g : groups) ps.insert(ps.end(), g.params.begin(), g.params.end());
    MuonOptions m;
    m.momentum = r.get_float("optim.momentum");
    m.weight_decay = wd;
    m.adam = adam;
    return std::make_unique<Muon>(ps, m);
  };
  std::vector<ParamGroup> groups = default_param_groups(params, wd);
  if (!extra.empty()) groups.push_back(ParamGroup{extra, 1.0, 0.0});
  o.opt = make(std::move(groups));
  // The unsharded optimizer has allocated no state yet (that happens on its
  // first step): its groups are the ones to shard.
  if (r.get_int("optim.zero_stage") == 1 && comm.size() > 1)
    o.opt = std::make_unique<ShardedOptimizer>(comm, o.opt->groups(), make);
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

}  // namespace gl::run_setup
