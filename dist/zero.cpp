// ZeRO-1 sharding of the optimizer state; what and why in dist/zero.h.
// Everything crosses ranks through Communicator::broadcast, as raw bytes.
#include "dist/zero.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <sstream>

#include "autograd/var.h"

namespace gl {

namespace {

// --- bytes in and out of a flat buffer (the state's wire format) -----------
//
// Per owner: u64 count, then per entry: u64 name length, the name, u8 dtype,
// u64 ndim, ndim x i64 dims, the tensor's bytes (numel x dtype size). The
// dtype travels, so the I64 step counters and the f32/f64 moments come back
// as they left.

void put(std::vector<char>& out, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  out.insert(out.end(), c, c + n);
}

template <class T>
void put_value(std::vector<char>& out, T v) {
  put(out, &v, sizeof v);
}

struct Reader {
  const std::vector<char>& in;
  size_t at = 0;
  void get(void* p, size_t n) {
    GL_CHECK(at + n <= in.size(), "zero: truncated state buffer (", in.size(), " bytes)");
    std::memcpy(p, in.data() + at, n);
    at += n;
  }
  template <class T>
  T value() {
    T v;
    get(&v, sizeof v);
    return v;
  }
};

std::vector<char> pack_state(const NamedTensors& state) {
  std::vector<char> out;
  put_value<uint64_t>(out, state.size());
  for (const auto& [name, t] : state) {
    put_value<uint64_t>(out, name.size());
    put(out, name.data(), name.size());
    put_value<uint8_t>(out, uint8_t(t.dtype()));
    put_value<uint64_t>(out, t.shape().size());
    for (int64_t d : t.shape()) put_value<int64_t>(out, d);
    const Tensor c = t.to(Device::cpu()).contiguous();
    put(out, c.data_ptr(), c.nbytes());
  }
  return out;
}

NamedTensors unpack_state(const std::vector<char>& in) {
  Reader r{in};
  NamedTensors out(r.value<uint64_t>());
  for (auto& [name, t] : out) {
    name.resize(r.value<uint64_t>());
    r.get(name.data(), name.size());
    const DType dt = DType(r.value<uint8_t>());
    Shape shape(r.value<uint64_t>());
    for (int64_t& d : shape) d = r.value<int64_t>();
    t = Tensor::empty(shape, dt, Device::cpu());
    r.get(t.data_ptr(), t.nbytes());
  }
  GL_CHECK(r.at == in.size(), "zero: ", in.size() - r.at, " stray bytes after the state");
  return out;
}

std::vector<ParamGroup> owned_groups(const std::vector<ParamGroup>& groups, const std::vector<int>& owners,
                                     int rank) {
  std::vector<ParamGroup> out;
  size_t i = 0;
  for (const ParamGroup& g : groups) {
    ParamGroup mine{{}, g.lr_scale, g.weight_decay};
    for (const NamedParam& p : g.params)
      if (owners[i++] == rank) mine.params.push_back(p);
    out.push_back(std::move(mine));
  }
  return out;
}

std::vector<int64_t> numels_of(const std::vector<NamedParam>& params) {
  std::vector<int64_t> n;
  for (const NamedParam& p : params) n.push_back(p.var.numel());
  return n;
}

}  // namespace

std::vector<int> zero_partition(const std::vector<int64_t>& numels, int world_size) {
  GL_CHECK(world_size >= 1, "zero_partition: world_size must be >= 1, got ", world_size);
  std::vector<size_t> order(numels.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return numels[a] > numels[b]; });
  std::vector<int64_t> total(size_t(world_size), 0);
  std::vector<int> owner(numels.size(), 0);
  for (size_t i : order) {
    // min_element returns the first minimum: ties go to the lowest rank.
    const size_t r = size_t(std::min_element(total.begin(), total.end()) - total.begin());
    owner[i] = int(r);
    total[r] += numels[i];
  }
  return owner;
}

ShardedOptimizer::ShardedOptimizer(Communicator& comm, std::vector<ParamGroup> groups,
                                   const MakeBase& make_base)
    : Optimizer(std::move(groups)), comm_(comm) {
  const std::vector<NamedParam> ps = params();
  for (size_t i = 0; i < ps.size(); ++i) index_[ps[i].name] = i;
  owners_ = zero_partition(numels_of(ps), comm_.size());
  base_ = make_base(owned_groups(groups_, owners_, comm_.rank()));
  GL_CHECK(base_ != nullptr, "zero: make_base returned no optimizer");
}

void ShardedOptimizer::step(double lr) {
  base_->step(lr);
  broadcast_params();
}

void ShardedOptimizer::step_gated(double lr, const Tensor& applied) {
  base_->step_gated(lr, applied);
  broadcast_params();
}

// One broadcast per owner: its tensors' bytes, in table order, packed into
// one host buffer. CUDA tensors are staged through host memory (a copy each
// way); correct on any backend the Communicator has, not the fast path.
void ShardedOptimizer::broadcast_params() {
  if (comm_.size() == 1) return;
  NoGradGuard no_grad;
  const std::vector<NamedParam> ps = params();
  std::vector<char> buf;
  for (int r = 0; r < comm_.size(); ++r) {
    size_t bytes = 0;
    for (size_t i = 0; i < ps.size(); ++i)
      if (owners_[i] == r) bytes += ps[i].var.value().nbytes();
    if (bytes == 0) continue;
    buf.resize(bytes);
    const bool mine = r == comm_.rank();
    size_t at = 0;
    if (mine)
      for (size_t i = 0; i < ps.size(); ++i) {
        if (owners_[i] != r) continue;
        const Tensor host = ps[i].var.value().to(Device::cpu());  // contiguous (Optimizer's check)
        std::memcpy(buf.data() + at, host.data_ptr(), host.nbytes());
        at += host.nbytes();
      }
    comm_.broadcast(buf.data(), bytes, r);
    if (mine) continue;
    for (size_t i = 0; i < ps.size(); ++i) {
      if (owners_[i] != r) continue;
      Var v = ps[i].var;
      Tensor& w = v.mutable_value();
      if (w.is_cuda()) {
        Tensor host = Tensor::empty(w.shape(), w.dtype(), Device::cpu());
        std::memcpy(host.data_ptr(), buf.data() + at, host.nbytes());
        w.copy_(host);
      } else {
        std::memcpy(w.data_ptr(), buf.data() + at, w.nbytes());
      }
      at += w.nbytes();
    }
  }
}

int64_t ShardedOptimizer::param_index(const std::string& key) const {
  // The first dot gives the longest name: "exp_avg.a.b" is a.b's before b's.
  for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
    const auto it = index_.find(key.substr(dot + 1));
    if (it != index_.end()) return int64_t(it->second);
  }
  return -1;
}

NamedTensors ShardedOptimizer::state() const {
  // Each owner's entries go to every rank (a broadcast per owner: size, then
  // bytes), then all entries are ordered by their tensor's place in the
  // table. The unsharded optimizers list their state tensor by tensor in
  // table order, and each tensor's entries come from one owner in the base's
  // own order, so a stable sort by tensor restores the unsharded list.
  std::vector<std::pair<int64_t, std::pair<std::string, Tensor>>> all;
  for (int r = 0; r < comm_.size(); ++r) {
    std::vector<char> buf;
    if (r == comm_.rank()) buf = pack_state(base_->state());
    uint64_t bytes = buf.size();
    comm_.broadcast(&bytes, sizeof bytes, r);
    buf.resize(bytes);
    comm_.broadcast(buf.data(), bytes, r);
    for (auto& kv : unpack_state(buf)) {
      const int64_t i = param_index(kv.first);
      GL_CHECK(i >= 0, "zero: state tensor '", kv.first, "' names no parameter of this optimizer");
      all.emplace_back(i, std::move(kv));
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  NamedTensors out;
  for (auto& e : all) out.push_back(std::move(e.second));
  return out;
}

void ShardedOptimizer::load_state(const NamedTensors& state) {
  // This rank's entries, plus those naming no parameter, which the base
  // then refuses as unknown keys (on every rank, since every rank keeps them).
  NamedTensors mine;
  for (const auto& kv : state) {
    const int64_t i = param_index(kv.first);
    if (i < 0 || owners_[size_t(i)] == comm_.rank()) mine.push_back(kv);
  }
  std::string error;
  try {
    base_->load_state(mine);
  } catch (const Error& e) {
    error = e.what();
  }
  // Agree on failure: the first failing rank's message, thrown everywhere.
  std::vector<double> failed(size_t(comm_.size()), 0.0);
  failed[size_t(comm_.rank())] = error.empty() ? 0.0 : 1.0;
  comm_.allreduce_sum(failed.data(), failed.size());
  const auto first = std::find(failed.begin(), failed.end(), 1.0);
  if (first == failed.end()) return;
  const int root = int(first - failed.begin());
  uint64_t len = error.size();
  comm_.broadcast(&len, sizeof len, root);
  error.resize(len);
  comm_.broadcast(error.data(), len, root);
  throw Error(comm_.size() > 1 ? "rank " + std::to_string(root) + ": " + error : error);
}

std::string ShardedOptimizer::describe() const {
  const std::vector<NamedParam> ps = params();
  std::vector<int64_t> tensors(size_t(comm_.size()), 0), elements(size_t(comm_.size()), 0);
  int64_t all = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    tensors[size_t(owners_[i])] += 1;
    elements[size_t(owners_[i])] += ps[i].var.numel();
    all += ps[i].var.numel();
  }
  std::ostringstream os;
  os << "ZeRO-1: optimizer state sharded over " << comm_.size() << " ranks by whole tensors (" << all
     << " parameters):";
  for (int r = 0; r < comm_.size(); ++r)
    os << (r ? ";" : "") << " rank " << r << " " << tensors[size_t(r)] << " tensors, "
       << elements[size_t(r)] << " parameters";
  return os.str();
}

}  // namespace gl
