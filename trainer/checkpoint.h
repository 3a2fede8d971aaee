// Training checkpoints: everything needed to continue a run bit-exactly.
//
// Layout: RUN_DIR/checkpoints/step-00000500/
//   config.json, model.safetensors   the model, Hugging Face format (what
//                                    save_hf_model writes: transformers and
//                                    ./eval load it as it is)
//   optimizer.safetensors            the optimizer's named state tensors
//                                    (exp_avg.<param>, step.<param>, ...)
//                                    plus the weight average ("avg.*")
//   trainer_state.json               step, tokens, global batch, world size,
//                                    seed, elapsed time, skipped steps
//   recipe.resolved.yaml             the recipe the run was started with
//   tokenizer.json                   the run's tokenizer, when it has one
// Randomness needs no state of its own: data order and every random draw
// are Philox streams keyed by (seed, step) (trainer/data_loader.h), so the
// step IS the RNG position; trainer_state.json records seed and step.
//
// Atomicity: the directory is written as checkpoints/.tmp-step-XXXXXXXX-PID,
// every file fsynced, then renamed to step-XXXXXXXX (rename(2) of a
// directory is atomic), then the parent directory is fsynced. A crash
// while saving leaves at most a .tmp-* directory, which the next save
// removes; the previous checkpoints are untouched. Older checkpoints beyond
// keep_last are deleted only after the new one is in place, and (like an
// older copy of the same step) are first renamed to a .tmp-* name, so a
// kill during the recursive delete never leaves a half-deleted step-*.
//
// A save that fails (disk full, read-only directory, ...) removes its
// temporary directory (best effort) and throws ONE line naming the
// checkpoint being written, the system's reason and the newest complete
// checkpoint, which is untouched. Fault injection (trainer/trainer.h,
// GRIDLOCK_FAULT) reaches the save through `fault`: it is called with a
// stage ("begin": before anything is created, "midway": model files written,
// optimizer state not yet) and the path about to be written, and may throw
// (an injected ENOSPC / EROFS) or kill the process.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/model.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"

namespace gl {

struct TrainerState {
  int64_t step = 0;          // optimizer steps completed
  int64_t tokens = 0;        // training tokens consumed (all ranks)
  int64_t global_batch = 0;  // sequences per step (all ranks)
  int64_t world_size = 1;
  int64_t seed = 0;
  int64_t skipped_steps = 0;  // steps skipped for a non-finite loss/gradient or a loss spike
  double elapsed_s = 0;       // training wall time so far
  // train.on_nonfinite / on_spike = rollback: the learning rate is the
  // schedule's times lr_scale (train.rollback_lr_factor per rollback), and
  // the rollbacks made so far. Both optional in the file (default 1, 0).
  double lr_scale = 1;
  int64_t rollbacks = 0;
  // The loss-spike detector's window: the last train.spike_window accepted
  // losses, oldest first (saved so that a resumed run detects exactly what
  // the uninterrupted one would). Optional in the file (default empty).
  std::vector<double> recent_losses;
  // run.precision = f16: the dynamic loss scale (optim/loss_scaler.h);
  // scale 0 when there is none. Optional in the file.
  LossScale loss_scale{0.0, 0};
};

std::string checkpoint_dir_name(int64_t step);  // "step-00000500"

// Writes the checkpoint of `state.step`; returns its directory. Keeps the
// newest `keep_last` checkpoints (0: all).
// `tokenizer_json` (a path, or empty) is copied in, so that the checkpoint
// is a complete model directory for ./eval, ./sample and ./export.
std::string save_checkpoint(const std::string& run_dir, const LanguageModel& model,
                            const NamedTensors& optimizer_state, const TrainerState& state,
                            const std::string& recipe_yaml, int64_t keep_last,
                            const std::string& tokenizer_json = "",
                            const std::function<void(const char* stage, const std::string& path)>& fault = {});

// Newest complete checkpoint directory of a run (by step), if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);
// Every complete checkpoint directory, oldest first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);

struct CheckpointContents {
  TrainerState state;
  NamedTensors optimizer_state;  // in file order
};
// trainer_state.json and optimizer.safetensors of `dir` (the model is read
// with load_hf_model(dir)); every malformed field is an error naming the file.
CheckpointContents load_checkpoint(const std::string& dir);

}  // namespace gl
