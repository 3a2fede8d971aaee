// Learning-rate schedules: pure functions of the optimizer step.
//
// A schedule is described by a ScheduleSpec (kind + named numeric parameters
// + named string options), validated once by make_schedule(): an unknown
// kind, an unknown or missing parameter, a non-integer where an integer is
// needed or an out-of-range value throws gl::Error naming the schedule and
// the parameter. After that lr(step) cannot fail for step >= 0.
//
// Step convention. Steps are absolute optimizer-step counts starting at 0;
// lr(t) is the learning rate of the update that follows t completed updates.
// A run that resumes from a checkpoint taken after s updates just keeps
// calling lr(s), lr(s+1), ...: nothing about the schedule is stateful, so the
// phase (warmup, cosine, SGDR cycle, OLI hot/cool) is exactly where it was.
// Continuation schedules: a fork from a checkpoint at global step s that
// counts its own steps from 0 sets the parameter `offset` = s; then
// lr_fork(k) = lr_base(k + s) for every kind (the whole schedule, including
// the OLI wave and SGDR cycles, is defined on global steps).
//
// Warmup convention (every kind with `warmup`): lr(t) = peak * t / warmup for
// t < warmup, so lr(0) = 0 and lr(warmup) = peak. This is GPT-NeoX v1.0's
// (spec 2.3); note that its first update therefore uses LR 0.
//
// Kinds and formulas (p = progress in [0, 1]; min = peak * min_ratio):
//   constant        lr = peak
//   linear_warmup   warmup, then peak
//   cosine          warmup, then min + (peak - min) * 0.5 * (1 + cos(pi p)),
//                   p = (t - warmup) / (total - warmup); min after total
//   pythia_cosine   GPT-NeoX v1.0 megatron/learning_rates.py exactly (spec 2.3),
//                   min = min_lr (absolute, default 6e-5, as in the NeoX config):
//                   n = min(t, E - W); t <= W: peak * n / W;
//                   else max(peak/2 * (cos(pi (n - W) / E) + 1), min)  -- the
//                   cosine divides by E (not E - W) and decays toward 0; the
//                   clamp makes the floor (6e-5 from step 115139 for Pythia)
//   sgdr            torch CosineAnnealingWarmRestarts (T_0 = t0, T_mult =
//                   t_mult, integer steps) + a peak decay per restart:
//                   lr = eta_min + (peak - eta_min) * restart_decay^k *
//                        0.5 * (1 + cos(pi T_cur / T_k)), k = restarts so far
//                   (the amplitude above eta_min decays, so it never inverts).
//                   Cycles are found with integers; torch's float log misses
//                   some exact restart steps (t = 121, T_0 = 1, T_mult = 3).
//   oli             Oscillatory Lock-In placeholder (spec 3.5) over a base
//                   schedule (option `base`): lr = base(t) * (1 + A s(t)),
//                   s = 0.5 (1 - cos(2 pi (t mod P) / (h P))) while
//                   (t mod P) < h P ("hot"), else 0 ("cool"). The wave's
//                   origin is global step 0 (forks at multiples of P align).
//   one_cycle       torch OneCycleLR, anneal_strategy 'cos', two phases:
//                   initial = peak / div_factor, final = initial /
//                   final_div_factor, step_up = pct_start * total - 1;
//                   held at final after total - 1 (torch raises instead)
//   wsd             warmup-stable-decay: warmup, hold peak, then decay over
//                   the last round(decay_fraction * total) steps to min with
//                   shape linear (1 - p), cosine (0.5 (1 + cos pi p)) or
//                   1-sqrt (1 - sqrt p); min after total
//
// References: spec.md 2.3, 3.4, 3.5; PyTorch torch/optim/lr_scheduler.py;
// Loshchilov & Hutter arXiv 1608.03983; Smith & Topin arXiv 1708.07120;
// Hu et al. (MiniCPM, WSD) arXiv 2404.06395; Hägele et al. arXiv 2405.18392 (1-sqrt).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gl {

struct ScheduleSpec {
  std::string kind;                              // see schedule_kinds()
  std::map<std::string, double> params;          // e.g. {"peak", 6e-4}, {"warmup", 1430}
  std::map<std::string, std::string> options;    // e.g. {"base", "pythia_cosine"}
};

// One row of a kind's parameter table (drives validation, defaults, docs).
struct ScheduleParam {
  std::string name;
  bool integer;        // must hold an integral value
  bool required;       // no default
  double default_value;
  std::string doc;
};

// The string options a kind accepts, with their allowed values.
struct ScheduleOption {
  std::string name;
  std::vector<std::string> values;  // first = default
  std::string doc;
};

class Schedule {
 public:
  virtual ~Schedule() = default;
  // LR of the update after `step` completed updates (step >= 0, else Error).
  double lr(int64_t step) const;
  // Phase label at `step`: "warmup", "cosine", "floor", "min", "constant",
  // "stable", "decay", "up", "down", "restart k", "hot", "cool".
  std::string phase(int64_t step) const;
  const ScheduleSpec& spec() const { return spec_; }  // with defaults filled in
  int64_t offset() const { return offset_; }
  // "cosine(peak=0.0006, warmup=1430, ...)"
  std::string describe() const;

 protected:
  explicit Schedule(ScheduleSpec resolved);
  double param(const std::string& name) const { return spec_.params.at(name); }
  int64_t iparam(const std::string& name) const { return int64_t(spec_.params.at(name)); }
  // Evaluated at the global step t = step + offset.
  virtual double lr_at(int64_t t) const = 0;
  virtual std::string phase_at(int64_t t) const = 0;

 private:
  ScheduleSpec spec_;
  int64_t offset_ = 0;
};

// Validates `spec` (filling defaults) and builds the schedule.
std::unique_ptr<Schedule> make_schedule(const ScheduleSpec& spec);

// The kinds, in documentation order, and each kind's table (`offset` is
// accepted by every kind; oli also accepts its base kind's parameters).
std::vector<std::string> schedule_kinds();
std::vector<ScheduleParam> schedule_params(const std::string& kind);
std::vector<ScheduleOption> schedule_options(const std::string& kind);

}  // namespace gl
