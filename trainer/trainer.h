// The training loop behind ./train RECIPE.yaml.
//
// One step s (0-based; "step" in logs and checkpoints counts completed
// steps, so the update made here is logged as step s + 1):
//   1. lr = schedule.lr(s) (the schedule's own offset handles continuation)
//   2. for each of grad_accum micro-batches m: batch (s, m, rank) from the
//      data source (trainer/data_loader.h), loss = mean token cross-entropy,
//      backward; the grads of the micro-batches add up
//   3. grads *= 1/grad_accum, then the mean over ranks (dist/comm.h); so the
//      gradient is the mean over the whole global batch, whatever its split
//   4. SAM only: ascend, recompute 2-3 on the same batches at w + e
//   5. global-norm clip (the norm is computed even with clipping off); a
//      non-finite loss or norm is handled by train.on_nonfinite: "stop"
//      throws naming the step, "skip" drops the update (the step and the
//      schedule still advance; metrics record it) -- never trained through
//   6. optimizer step, then the weight average (if any)
// Then, on their cadences: a metrics line (metrics.jsonl + the progress
// line), validation (and the averaged weights' validation), a checkpoint
// (trainer/checkpoint.h). At the end: final validation, a checkpoint and
// RUN_DIR/report.html.
//
// Runs, per process, on ranks of the world communicator: every rank holds
// the whole model and reads its share of each global batch; only rank 0
// writes files and prints.
//
// The run directory is run.out_dir/run.name. A fresh run never overwrites
// an existing one: if that directory exists, the run goes to name-2,
// name-3, ... (and says so). train.resume=true continues the newest
// checkpoint in run.out_dir/run.name itself.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "trainer/recipe.h"

namespace gl {

class Communicator;

struct TrainerHooks {
  // After every micro-batch's backward (tests poison a gradient here).
  std::function<void(int64_t step, const std::vector<NamedParam>&)> after_backward;
  // After every completed step (its checkpoint included); returning false
  // ends the run at once, without the final evaluation and checkpoint, as
  // an interrupted run would (tests of --resume).
  std::function<bool(int64_t step)> after_step;
  bool quiet = false;  // no progress lines on stdout
};

struct TrainResult {
  std::string run_dir;
  int64_t steps = 0;           // completed steps at exit
  double last_train_loss = 0;  // mean loss of the last step (all ranks)
  double last_val_loss = 0;    // NaN when no validation ran
  double unigram_entropy = 0;  // nats/token of the training data (0: unknown)
  int64_t skipped_steps = 0;
  bool interrupted = false;    // ended by hooks.after_step
};

TrainResult run_training(const Recipe& recipe, const TrainerHooks& hooks = {});
// Same, on an explicit communicator (tests).
TrainResult run_training(const Recipe& recipe, Communicator& comm, const TrainerHooks& hooks = {});

}  // namespace gl
