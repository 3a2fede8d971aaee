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
//   4. SAM only (when the gradient at w is finite): ascend, recompute 2-3
//      on the same batches at w + e
//   5. global-norm clip (the norm is computed even with clipping off); a
//      non-finite loss or norm, or a loss spike, is a bad step, handled as
//      below -- never trained through
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
// Bad steps (train.on_nonfinite, train.on_spike): a non-finite loss or
// gradient norm, or a loss above train.spike_factor x the mean of the last
// train.spike_window accepted losses (a window saved in every checkpoint,
// so a resumed run detects what an uninterrupted one would), is an "event"
// record in metrics.jsonl (event, action, detail, value) and a row of the
// report's events table, and is then handled: stop (the report is written, then the run throws naming
// the step and the last checkpoint), skip (no update; counted in
// skipped_steps), or rollback (weights, optimizer state and step reload from
// the newest checkpoint, the learning rate is multiplied by
// train.rollback_lr_factor, metrics after that checkpoint are cut; a run
// with rollback saves a step-0 checkpoint so there is always one; more than
// train.max_rollbacks rollbacks stop the run).
//
// SIGINT / SIGTERM (installed for the duration of run_training): the step in
// progress finishes, a checkpoint of it is saved, and the run returns with
// stop_signal set (./train exits 75, EX_TEMPFAIL, printing how to resume). A
// second signal while that happens kills the process as usual.
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
#include "trainer/faults.h"
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
  int64_t rollbacks = 0;
  int64_t events = 0;          // bad steps seen (non-finite or spike), whatever the action
  bool interrupted = false;    // ended by hooks.after_step or a signal
  int stop_signal = 0;         // SIGINT / SIGTERM that ended the run (checkpoint saved), else 0
  int64_t late_gate_reads = 0; // train.sync_free: steps whose checks were read after the next was queued
};

TrainResult run_training(const Recipe& recipe, const TrainerHooks& hooks = {});
// Same, on an explicit communicator (tests).
TrainResult run_training(const Recipe& recipe, Communicator& comm, const TrainerHooks& hooks = {});

}  // namespace gl
