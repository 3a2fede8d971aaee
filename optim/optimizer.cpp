// Parameter groups, global-norm clipping and the shared optimizer plumbing;
// the maths and conventions are in optim/optimizer.h.
#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "cuda/optim.h"

namespace gl {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Sum of squares of a tensor, accumulated in double. Fixed chunks of
// kChunk elements are summed in parallel (simd lanes within a chunk), then
// the chunk sums are added in chunk order: the result depends on the data
// only, not on the thread count.
//
// On CUDA the same two-level scheme: cuda::sum_squares_partials writes one
// double partial per block of a fixed grid (a function of n only, no
// atomics), and the partials are added here in block order. Copying them to
// the host synchronises the stream: grad_norm gathers all tensors'
// partials first, so a step pays that once (sum_squares_each).
double sum_squares(const Tensor& t) {
  constexpr int64_t kChunk = 1 << 14;
  const Tensor c = t.contiguous();
  double acc = 0.0;
  dispatch("grad_norm", c,
      [&](auto tag) {
        using T = decltype(tag);
        const T* p = c.data<T>();
        const int64_t n = c.numel(), nchunks = (n + kChunk - 1) / kChunk;
        std::vector<double> part(size_t(nchunks), 0.0);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
        for (int64_t b = 0; b < nchunks; ++b) {
          const int64_t end = std::min(n, (b + 1) * kChunk);
          double s = 0.0;
#pragma omp simd reduction(+ : s)
          for (int64_t i = b * kChunk; i < end; ++i) s += double(p[i]) * double(p[i]);
          part[size_t(b)] = s;
        }
        for (double s : part) acc += s;
      },
      [&](auto tag) {
        using T = decltype(tag);
        Tensor part = Tensor::empty({int64_t(cuda::sum_squares_blocks(c.numel()))}, DType::F64,
                                    c.device());
        cuda::sum_squares_partials<T>(part.data<double>(), c.data<T>(), nullptr, c.numel());
        for (double s : part.to_vector_as<double>()) acc += s;
      });
  return acc;
}

}  // namespace

bool is_no_decay_param(const NamedParam& p) {
  const std::string& n = p.name;
  if (p.var.dim() <= 1) return true;
  if (ends_with(n, ".bias") || ends_with(n, ".scale")) return true;
  const bool normish = n.find("norm") != std::string::npos || n.find("ln_") != std::string::npos;
  return normish && ends_with(n, ".weight");
}

std::vector<ParamGroup> default_param_groups(const std::vector<NamedParam>& params,
                                             double weight_decay) {
  ParamGroup decay, no_decay;
  decay.weight_decay = weight_decay;
  no_decay.weight_decay = 0.0;
  for (const NamedParam& p : params) (is_no_decay_param(p) ? no_decay : decay).params.push_back(p);
  std::vector<ParamGroup> out;
  if (!decay.params.empty()) out.push_back(std::move(decay));
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  return out;
}

namespace {

// sum_squares of each tensor, with one host synchronisation per device
// instead of one per tensor: the block partials of all of a device's
// tensors land in one buffer that comes to the host at once (Pythia-160m:
// 1 round trip per step instead of 148). Each tensor's partials are added
// in block order, as sum_squares adds them: the same bits.
std::vector<double> sum_squares_each(const std::vector<Tensor>& ts) {
  std::vector<double> out(ts.size(), 0.0);
  std::map<int, std::vector<size_t>> on_device;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].is_cuda()) on_device[ts[i].device().index].push_back(i);
    else out[i] = sum_squares(ts[i]);
  }
#if GRIDLOCK_CUDA
  for (const auto& [device, members] : on_device) {
    std::vector<Tensor> mine;
    for (size_t i : members) mine.push_back(ts[i]);
    const SquarePartials sq = square_partials(mine, Device::cuda(device));
    const std::vector<double> host = sq.partials.to_vector_as<double>();
    for (size_t k = 0; k < members.size(); ++k) {
      double acc = 0.0;
      for (int64_t b = k == 0 ? 0 : sq.block_end[k - 1]; b < sq.block_end[k]; ++b) acc += host[size_t(b)];
      out[members[k]] = acc;
    }
  }
#endif
  return out;
}

}  // namespace

SquarePartials square_partials(const std::vector<Tensor>& ts, Device device) {
  SquarePartials sq;
#if GRIDLOCK_CUDA
  int64_t blocks = 0;
  for (const Tensor& t : ts) {
    GL_CHECK(t.device() == device, "square_partials: ", t.describe(), " is not on ", device.name());
    blocks += cuda::sum_squares_blocks(t.numel());
    sq.block_end.push_back(blocks);
  }
  sq.partials = Tensor::empty({blocks}, DType::F64, device);
  for (size_t k = 0; k < ts.size(); ++k) {
    const Tensor c = ts[k].contiguous();
    sq.alive.push_back(c);
    dispatch("grad_norm", c, [&](auto) {},
        [&](auto tag) {
          using T = decltype(tag);
          cuda::sum_squares_partials<T>(sq.partials.data<double>() + (k == 0 ? 0 : sq.block_end[k - 1]),
                                        c.data<T>(), nullptr, c.numel());
        });
  }
#else
  GL_CHECK(ts.empty(), "square_partials: CUDA tensors in a build without CUDA (", device.name(), ")");
#endif
  return sq;
}

double grad_norm(const std::vector<NamedParam>& params) {
  // torch takes the norm of the per-tensor norms; the square root of the sum
  // of all squares is the same number (in exact arithmetic).
  std::vector<Tensor> grads;
  for (const NamedParam& p : params)
    if (p.var.defined() && p.var.grad().defined()) grads.push_back(p.var.grad());
  double total = 0.0;
  for (double s : sum_squares_each(grads)) total += s;
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<NamedParam>& params, double max_norm) {
  GL_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  const double total = grad_norm(params);
  if (!std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) scale_grads(params, coef);
  return total;
}

void scale_grads(const std::vector<NamedParam>& params, double factor) {
  for (const NamedParam& p : params) {
    if (!p.var.defined() || !p.var.grad().defined()) continue;
    Tensor g = checked_grad("scale_grads", p);
    dispatch("scale_grads", g,
        [&](auto tag) {
          using T = decltype(tag);
          T* d = g.data<T>();
          const T f = T(factor);  // torch multiplies by the coefficient cast to the grad's dtype
          const int64_t n = g.numel();
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
          for (int64_t i = 0; i < n; ++i) d[i] *= f;
        },
        [&](auto tag) {
          using T = decltype(tag);
          cuda::scale_<T>(g.data<T>(), factor, g.numel());
        });
    // checked_grad may have made a contiguous copy: write it back.
    if (!g.shares_storage(p.var.grad())) p.var.impl()->grad.copy_(g);
  }
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> seen;
  for (const ParamGroup& g : groups_)
    for (const NamedParam& p : g.params) {
      GL_CHECK(p.var.defined(), "optimizer: parameter '", p.name, "' is undefined");
      GL_CHECK(seen.insert(p.name).second, "optimizer: parameter '", p.name,
               "' appears twice (names key the optimizer state)");
      GL_CHECK(p.var.value().is_contiguous(), "optimizer: parameter '", p.name,
               "' is not contiguous: ", p.var.describe());
    }
}

void Optimizer::zero_grad() {
  for (ParamGroup& g : groups_)
    for (NamedParam& p : g.params) p.var.zero_grad();
}

void Optimizer::step_gated(double, const Tensor&) {
  GL_CHECK(false, "this optimizer has no sync-free (gated) step; use optim.name adamw, sgd or muon, "
                  "or train.sync_free: false");
}

bool gate_closed_on_host(const Tensor& gate) {
  if (!gate.defined()) return false;
  GL_CHECK(gate.numel() == 1 && gate.dtype() == DType::F64, "step gate must be one F64 value, got ",
           gate.describe());
  return !gate.is_cuda() && gate.to_vector_as<double>()[0] == 0.0;
}

const double* gate_pointer(const Tensor& gate) {
  if (!gate.defined()) return nullptr;
  GL_CHECK(gate.numel() == 1 && gate.dtype() == DType::F64 && gate.is_cuda(),
           "a CUDA update's step gate must be one F64 value on the device, got ", gate.describe());
  return gate.data<double>();
}

std::vector<NamedParam> Optimizer::params() const {
  std::vector<NamedParam> out;
  for (const ParamGroup& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

void check_operand(const char* op, const Tensor& param, const Tensor& t, const char* name) {
  GL_CHECK(t.defined(), op, ": ", name, " is undefined");
  GL_CHECK(t.shape() == param.shape() && t.dtype() == param.dtype() && t.device() == param.device(),
           op, ": ", name, " ", t.describe(), " does not match the parameter ", param.describe());
  GL_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got ", t.describe());
}

Tensor checked_grad(const char* op, const NamedParam& p) {
  const Tensor& g = p.var.grad();
  GL_CHECK(g.defined(), op, ": parameter '", p.name, "' has no grad");
  GL_CHECK(g.shape() == p.var.shape() && g.dtype() == p.var.dtype() && g.device() == p.var.device(),
           op, ": grad ", g.describe(), " of '", p.name, "' does not match its value ",
           p.var.describe());
  return g.contiguous();
}

const Tensor* find_state(const NamedTensors& state, const std::string& key) {
  for (const auto& kv : state)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

void load_state_tensor(const char* op, const NamedTensors& state, const std::string& key,
                       const Tensor& like, Tensor& dst) {
  const Tensor* src = find_state(state, key);
  GL_CHECK(src != nullptr, op, ".load_state: missing state tensor '", key, "'");
  GL_CHECK(src->shape() == like.shape(), op, ".load_state: '", key, "' is ", src->describe(),
           ", expected shape ", shape_str(like.shape()));
  if (!dst.defined()) dst = Tensor::empty_like(like);
  dst.copy_(*src);
}

void check_state_keys(const char* op, const NamedTensors& state,
                      const std::vector<std::string>& known) {
  const std::set<std::string> k(known.begin(), known.end());
  for (const auto& kv : state)
    GL_CHECK(k.count(kv.first) != 0, op, ".load_state: unknown state tensor '", kv.first,
             "' (not a parameter of this optimizer?)");
}

Tensor step_tensor(int64_t step) { return Tensor::from_data<int64_t>({step}, {1}); }

int64_t step_value(const char* op, const NamedTensors& state, const std::string& key) {
  const Tensor* t = find_state(state, key);
  GL_CHECK(t != nullptr, op, ".load_state: missing state tensor '", key, "'");
  GL_CHECK(t->numel() == 1, op, ".load_state: '", key, "' must hold one value, got ", t->describe());
  return t->to_vector_as<int64_t>()[0];
}

}  // namespace gl
