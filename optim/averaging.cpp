// Weight averaging: EMA and running (equal-weight) average of the parameters,
// with swap in/out for evaluation. See averaging.h for the formulas.
//
// Updates use Tensor-level elementwise ops (binary, affine, add_) so they run
// on whichever device holds the weights, in the weights' dtype.
#include "optim/averaging.h"

#include <cmath>

#include "autograd/ops/elementwise.h"
#include "core/error.h"

namespace gl {

WeightAverager::WeightAverager(AveragingSpec spec) : spec_(std::move(spec)) {
  GL_CHECK(spec_.kind == "ema" || spec_.kind == "running", "averaging: unknown kind '", spec_.kind,
           "' (kinds: ema, running)");
  GL_CHECK(spec_.kind != "ema" || (spec_.decay >= 0 && spec_.decay < 1), "averaging ema: decay = ",
           spec_.decay, " must be in [0, 1)");
  GL_CHECK(spec_.start_step >= 0, "averaging ", spec_.kind, ": start_step = ", spec_.start_step,
           " must be >= 0");
}

std::vector<size_t> WeightAverager::check_matches(const std::vector<NamedParam>& params,
                                                  const char* what) const {
  GL_CHECK(params.size() == names_.size(), "averaging ", what, ": ", params.size(),
           " parameters, the average holds ", names_.size());
  // Matched by name, not position: a loaded state comes back sorted by name.
  std::vector<size_t> slots;
  for (const auto& p : params) {
    size_t j = 0;
    while (j < names_.size() && names_[j] != p.name) ++j;
    GL_CHECK(j < names_.size(), "averaging ", what, ": no average for parameter '", p.name, "'");
    const Tensor& v = p.var.value();
    GL_CHECK(v.shape() == avg_[j].shape() && v.dtype() == avg_[j].dtype(), "averaging ", what,
             ": parameter ", v.describe(), " does not match its average ", avg_[j].describe());
    slots.push_back(j);
  }
  return slots;
}

bool WeightAverager::update(const std::vector<NamedParam>& params, int64_t step) {
  GL_CHECK(!swapped_in(), "averaging update: the average is swapped in; swap_out first");
  if (step < spec_.start_step) return false;
  if (num_averaged_ == 0) {
    // The first update copies (an exact W, not avg + (W - avg) * 1 rounded).
    names_.clear();
    avg_.clear();
    for (const auto& p : params) {
      names_.push_back(p.name);
      avg_.push_back(p.var.value().contiguous().clone());
    }
    num_averaged_ = 1;
    return true;
  }
  const std::vector<size_t> slot = check_matches(params, "update");
  const double weight = spec_.kind == "ema" ? 1.0 - spec_.decay : 1.0 / double(num_averaged_ + 1);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& w = params[i].var.value();
    Tensor& avg = avg_[slot[i]];
    // A loaded checkpoint's averages arrive on the CPU; follow the weights.
    if (avg.device() != w.device()) avg = avg.to(w.device());
    // avg += weight * (W - avg): torch's lerp(avg, W, weight) for weight < 0.5.
    add_(avg, affine(binary(w, avg, BinaryOp::SUB), weight, 0.0));
  }
  ++num_averaged_;
  return true;
}

const Tensor& WeightAverager::average(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return avg_[i];
  GL_CHECK(false, "averaging: no average for parameter '", name, "' (", num_averaged_,
           " updates averaged)");
  return avg_.front();  // unreachable
}

void WeightAverager::swap_in(const std::vector<NamedParam>& params) {
  GL_CHECK(!swapped_in(), "averaging swap_in: already swapped in");
  GL_CHECK(num_averaged_ > 0, "averaging swap_in: nothing averaged yet");
  const std::vector<size_t> slot = check_matches(params, "swap_in");
  raw_.assign(avg_.size(), Tensor());
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor w = params[i].var.value();  // handle: writes go to the parameter's storage
    raw_[slot[i]] = w.clone();
    w.copy_(avg_[slot[i]]);
  }
}

void WeightAverager::swap_out(const std::vector<NamedParam>& params) {
  GL_CHECK(swapped_in(), "averaging swap_out: not swapped in");
  const std::vector<size_t> slot = check_matches(params, "swap_out");
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor w = params[i].var.value();
    w.copy_(raw_[slot[i]]);
  }
  raw_.clear();
}

void WeightAverager::copy_to(const std::vector<NamedParam>& params) const {
  GL_CHECK(!swapped_in(), "averaging copy_to: the average is swapped in; swap_out first");
  GL_CHECK(num_averaged_ > 0, "averaging copy_to: nothing averaged yet");
  const std::vector<size_t> slot = check_matches(params, "copy_to");
  for (size_t i = 0; i < params.size(); ++i) {
    Tensor w = params[i].var.value();
    w.copy_(avg_[slot[i]]);
  }
}

std::map<std::string, Tensor> WeightAverager::state(const std::string& prefix) const {
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < names_.size(); ++i) out[prefix + names_[i]] = avg_[i];
  out[prefix + "num_averaged"] = Tensor::full({1}, double(num_averaged_), DType::F64);
  return out;
}

void WeightAverager::load_state(const std::map<std::string, Tensor>& state,
                                const std::string& prefix) {
  GL_CHECK(!swapped_in(), "averaging load_state: the average is swapped in; swap_out first");
  auto it = state.find(prefix + "num_averaged");
  GL_CHECK(it != state.end(), "averaging load_state: no '", prefix, "num_averaged' entry");
  const double n = it->second.item();
  GL_CHECK(n >= 0 && n == std::floor(n), "averaging load_state: num_averaged = ", n,
           " is not a count");
  names_.clear();
  avg_.clear();
  // Stored in name order; check_matches pairs them with parameters by name.
  for (const auto& [key, t] : state) {
    if (key.compare(0, prefix.size(), prefix) != 0 || key == prefix + "num_averaged") continue;
    names_.push_back(key.substr(prefix.size()));
    avg_.push_back(t.contiguous().clone());
  }
  GL_CHECK(n == 0 || !names_.empty(), "averaging load_state: num_averaged = ", n,
           " but no averaged tensors under '", prefix, "'");
  num_averaged_ = int64_t(n);
}

}  // namespace gl
