// Weight averaging (spec 3.6; PyTorch torch/optim/swa_utils.py):
//   ema:     W_ema <- W at the first update, then W_ema <- W_ema + (1 - decay)(W - W_ema)
//            (= decay W_ema + (1 - decay) W, torch's lerp(ema, cur, 1 - decay);
//            no bias correction: starting from W makes it unnecessary)
//   running: equal-weight average of the weights after every update at step
//            >= start_step (SWA / LAWA): W_avg <- W at the first, then
//            W_avg <- W_avg + (W - W_avg) / (n + 1), n = updates averaged so far
//
// The averages live next to the model, one tensor per parameter, in the
// parameter's dtype and device (as torch's AveragedModel). To evaluate the
// averaged model in place of the raw weights: swap_in(params) (the raw values
// are kept aside), evaluate, swap_out(params) (raw values copied back,
// bit-exact). Both copy into the parameters' existing storage, so anything
// holding a view of a weight sees the change. Training while swapped in is an
// error (update() refuses).
//
// Checkpointing: state() gives named tensors "<prefix><param name>" plus
// "<prefix>num_averaged" (an f64 scalar); load_state() takes them back.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/model.h"

namespace gl {

struct AveragingSpec {
  std::string kind = "ema";  // "ema" | "running"
  double decay = 0.999;      // ema: in [0, 1)
  int64_t start_step = 0;    // updates at steps < start_step are ignored (both kinds)
};

class WeightAverager {
 public:
  explicit WeightAverager(AveragingSpec spec);  // validates (gl::Error naming the field)

  // Folds in the current values of `params` after the update of step `step`.
  // Returns false (and does nothing) when step < start_step. The parameter
  // list (names, shapes, dtypes) must be the same at every call.
  bool update(const std::vector<NamedParam>& params, int64_t step);

  int64_t num_averaged() const { return num_averaged_; }
  bool swapped_in() const { return !raw_.empty(); }
  const AveragingSpec& spec() const { return spec_; }
  // The average of parameter `name` (Error if unknown or nothing averaged yet).
  const Tensor& average(const std::string& name) const;

  void swap_in(const std::vector<NamedParam>& params);   // params <- average; raw kept
  void swap_out(const std::vector<NamedParam>& params);  // params <- raw (bit-exact)
  void copy_to(const std::vector<NamedParam>& params) const;  // params <- average, for good

  std::map<std::string, Tensor> state(const std::string& prefix = "avg.") const;
  void load_state(const std::map<std::string, Tensor>& state, const std::string& prefix = "avg.");

 private:
  // Slot in names_/avg_ of each parameter; Error unless the sets match.
  std::vector<size_t> check_matches(const std::vector<NamedParam>& params, const char* what) const;

  AveragingSpec spec_;
  int64_t num_averaged_ = 0;
  std::vector<std::string> names_;  // parameter names (first update's order, or sorted after load)
  std::vector<Tensor> avg_;         // the averages, same slots
  std::vector<Tensor> raw_;         // raw weights (same slots) while swapped in, else empty
};

}  // namespace gl
