// What a training run is built from, read from its recipe: the run
// directory, the model (fresh, init_from or resumed), the data source, the
// optimizer, and the checks made before any work. Split from trainer.cpp,
// which keeps the loop itself.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "models/model.h"
#include "optim/optimizer.h"
#include "optim/sam.h"
#include "trainer/data_loader.h"
#include "trainer/recipe.h"

namespace gl::run_setup {

DType recipe_dtype(const Recipe& r);
// run.device as a Device: for cuda, the GPU of this process's local rank
// (dist/comm.h device_for_local_rank), so that mpirun -np N on a node of N
// GPUs puts one rank on each.
Device recipe_device(const Recipe& r);

// out_dir/name, or name-2, name-3, ... when it exists (a fresh run never
// writes into an old one); exactly out_dir/name on resume. Chosen on rank 0.
std::string choose_run_dir(const Recipe& r, Communicator& comm);

// The model: loaded from resume_dir when given, else from train.init_from or
// model.hf_dir, else fresh from the recipe's config and run.seed.
std::unique_ptr<LanguageModel> build_model(const Recipe& r, const std::string& resume_dir);

// Inputs a recipe names that must exist, checked before anything is created
// so a missing checkpoint or dataset stops the run at once, saying where to
// get it.
void preflight(const Recipe& r);

struct Data {
  std::unique_ptr<DataSource> src;
  std::string train_file;  // the first training data file (GRIDLOCK_FAULT=truncate_data)
  double unigram_entropy = 0;
  std::string tokenizer;  // tokenizer.json of the corpus (copied into the run dir)
};
Data build_data(const Recipe& r, Communicator& comm, int64_t vocab);

struct Optim {
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Sam> sam;
};
// `extra`: QAT's learned (LSQ) scales, optimised without weight decay.
// With optim.zero_stage 1 and several ranks, opt is a ShardedOptimizer
// (dist/zero.h) over `comm`: step() and state() are then collectives.
Optim build_optimizer(const Recipe& r, const std::vector<NamedParam>& params,
                      const std::vector<NamedParam>& extra, Communicator& comm);

// Every rank must start from the same weights (same seed and files): a
// cheap fingerprint of all parameter bytes compared across ranks.
void check_same_weights(Communicator& comm, const std::vector<NamedParam>& params);

}  // namespace gl::run_setup
