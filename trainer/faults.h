// Fault injection and stop signals for the training loop (trainer.cpp):
// what the reliability tests drive (docs/reliability.md) and what makes
// SIGINT/SIGTERM end a run with a checkpoint instead of losing the step.
#pragma once
#include <cstdint>
#include <string>

namespace gl {

// Fault injection for the reliability tests (docs/reliability.md). Read in
// ONE place, run_training, from the environment variable GRIDLOCK_FAULT: a
// comma-separated list of NAME:N items (steps are 1-based as logged; saves
// count this process's checkpoint saves from 1):
//   kill_during_save:N   SIGKILL itself midway through writing save N (model
//                        files written, optimizer state not)
//   kill_at_step:S       SIGKILL itself after step S (and its checkpoint)
//   sigterm_at_step:S    raise SIGTERM after step S (the real handler runs)
//   disk_full_save:N     save N fails as a write would with ENOSPC
//   readonly_save:N      save N fails as creating its directory would with
//                        EROFS (root ignores chmod, so tests use this there)
//   nan_grad:S           one gradient element := NaN after step S's backward
//   nan_activation:S     one element of the first linear layer's input := NaN
//                        in step S's forward (model activation transform)
//   inf_loss:S           step S's loss := +inf
//   loss_spike:S         the head's input x 30 in step S's forward: a large,
//                        finite loss (for train.spike_factor)
//   truncate_data:S      after step S, the first training data file is cut to
//                        its header + 64 bytes (another process shrinking it)
// Each step fault fires once per process (a rolled-back step re-runs clean).
// An unknown name or a bad number is an error; unset or empty: no faults.
struct FaultPlan {
  int64_t kill_during_save = 0, kill_at_step = 0, sigterm_at_step = 0;
  int64_t disk_full_save = 0, readonly_save = 0;
  int64_t nan_grad = 0, nan_activation = 0, inf_loss = 0, loss_spike = 0, truncate_data = 0;
  static FaultPlan parse(const std::string& spec);
  static FaultPlan from_env();  // parse(getenv("GRIDLOCK_FAULT") or "")
};

// SIGINT / SIGTERM while a StopSignalScope lives: the first one is recorded
// (pending_stop_signal() returns it) and the loop stops after the current
// step with a checkpoint; a second one gets the default action.
struct StopSignalScope {
  StopSignalScope();   // installs the handlers, clears any pending signal
  ~StopSignalScope();  // restores the previous handlers (tests call run_training many times)
  StopSignalScope(const StopSignalScope&) = delete;
  StopSignalScope& operator=(const StopSignalScope&) = delete;

 private:
  struct Saved;
  Saved* saved_;
};
int pending_stop_signal();         // 0, SIGINT or SIGTERM
const char* signal_name(int sig);  // "SIGINT", "SIGTERM"
[[noreturn]] void kill_self();     // flushes stdio, then SIGKILL (the kill_* faults)

}  // namespace gl
