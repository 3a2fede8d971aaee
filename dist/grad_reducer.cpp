// GradReducer: the gradient all-reduce in buckets, overlapped with backward
// (see dist/grad_reducer.h for the contract). Threads: the main thread runs
// backward, scales, packs and hands buckets over in bucket order; the
// communication thread (host path) only reads the buckets' host buffers,
// calls the communicator and divides. Nothing else is shared: the queue,
// the stop flag and the error are under mu_, and the buffers a bucket's
// reduction writes are not touched by the main thread between its
// hand-over and the join in finish().
#include "dist/grad_reducer.h"

#include <algorithm>

#include "optim/optimizer.h"

#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
#include "cuda/nccl.h"
#include "cuda/runtime.h"
#endif

namespace gl {

namespace {

// The one CUDA device holding every f32 param, or -1.
int f32_params_cuda_device(const std::vector<NamedParam>& params) {
  int dev = -1;
  for (const NamedParam& p : params) {
    if (p.var.dtype() != DType::F32) continue;
    const Device d = p.var.device();
    if (!d.is_cuda() || (dev >= 0 && d.index != dev)) return -1;
    dev = d.index;
  }
  return dev;
}

// p[i] / by over the first n elements: the division allreduce_mean_grads
// makes (dist/comm.cpp), so the bits agree.
template <class T>
void divide(T* p, int64_t n, T by) {
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] / by;
}

}  // namespace

GradReducer::GradReducer(Communicator& comm, std::vector<NamedParam> params, size_t bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  GL_CHECK(bucket_bytes > 0, "GradReducer: the bucket size must be positive");
  const size_t n = params_.size();
  const int ranks = comm_.size();
  bucket_of_.assign(n, -1);
  const int nccl_device = ranks > 1 ? f32_params_cuda_device(params_) : -1;
#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
  if (nccl_device >= 0) {
    const cuda::DeviceGuard guard(nccl_device);  // the group binds to the current device
    nccl_ = grad_nccl_group(comm_);              // collective: every rank decides the same
  }
#else
  (void)nccl_device;
#endif

  // Reverse table order, a new bucket at a dtype or path change or when the
  // next param would overflow it.
  for (size_t i = n; i-- > 0;) {
    const Var& v = params_[i].var;
    GL_CHECK(v.defined(), "GradReducer: param '", params_[i].name, "' is undefined");
    GL_CHECK(index_.emplace(v.impl().get(), i).second, "GradReducer: param '", params_[i].name,
             "' appears twice in the table");
    const DType dt = v.dtype();
    if (dt != DType::F32 && dt != DType::F64) {
      GL_CHECK(!v.requires_grad(), "GradReducer: param '", params_[i].name, "' is ", v.describe(),
               "; only f32 and f64 grads can be all-reduced");
      continue;
    }
    const bool nccl = nccl_ != nullptr && dt == DType::F32;
    const size_t bytes = size_t(v.numel()) * dtype_size(dt);
    if (buckets_.empty() || buckets_.back().dtype != dt || buckets_.back().nccl != nccl ||
        (buckets_.back().numel > 0 &&
         size_t(buckets_.back().numel) * dtype_size(dt) + bytes > bucket_bytes)) {
      buckets_.emplace_back();
      buckets_.back().dtype = dt;
      buckets_.back().nccl = nccl;
    }
    buckets_.back().params.push_back(i);
    buckets_.back().numel += v.numel();
    bucket_of_[i] = int64_t(buckets_.size() - 1);
  }
  if (ranks == 1) return;  // nothing to reduce: begin/grad_ready/finish only scale

  for (Bucket& b : buckets_) {
    const int64_t len = b.numel + int64_t(b.params.size());  // grads, then one flag per param
    if (b.nccl) {
      const int64_t padded = (len + ranks - 1) / ranks * ranks;
      b.buf = Tensor::zeros({padded}, DType::F32, Device::cuda(nccl_device));
    } else {
      b.buf = Tensor::zeros({len}, b.dtype, Device::cpu());
      b.host = b.dtype == DType::F32 ? static_cast<void*>(b.buf.data<float>())
                                     : static_cast<void*>(b.buf.data<double>());
    }
  }
  threaded_ = comm_.collectives_from_any_thread() &&
              std::any_of(buckets_.begin(), buckets_.end(), [](const Bucket& b) { return !b.nccl; });

  // The ranks must cut the same buckets, or their collectives would not
  // match: per rank, its element count and bucket count, summed into slots.
  std::vector<double> layout(2 * size_t(ranks), 0.0);
  for (const Bucket& b : buckets_) layout[size_t(comm_.rank())] += double(b.buf.numel());
  layout[size_t(ranks + comm_.rank())] = double(buckets_.size());
  comm_.allreduce_sum(layout.data(), layout.size());
  for (int r = 1; r < ranks; ++r)
    GL_CHECK(layout[size_t(r)] == layout[0] && layout[size_t(ranks + r)] == layout[size_t(ranks)],
             "GradReducer: rank ", r, " cuts ", int64_t(layout[size_t(ranks + r)]), " buckets of ",
             int64_t(layout[size_t(r)]), " elements, rank 0 ", int64_t(layout[size_t(ranks)]), " of ",
             int64_t(layout[0]), "; the ranks' parameters differ");
}

GradReducer::~GradReducer() { stop_thread(); }

void GradReducer::stop_thread() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool GradReducer::uses_nccl() const {
  return std::any_of(buckets_.begin(), buckets_.end(), [](const Bucket& b) { return b.nccl; });
}

std::vector<std::vector<std::string>> GradReducer::bucket_names() const {
  std::vector<std::vector<std::string>> out;
  for (const Bucket& b : buckets_) {
    out.emplace_back();
    for (size_t i : b.params) out.back().push_back(params_[i].name);
  }
  return out;
}

void GradReducer::begin(double grad_scale) {
  // A round abandoned by an exception: its thread stops after its bucket.
  if (armed_) stop_thread();
  armed_ = true;
  grad_scale_ = grad_scale;
  ready_.assign(params_.size(), 0);
  packed_.assign(buckets_.size(), 0);
  next_dispatch_ = 0;
  for (Bucket& b : buckets_) b.pending = b.params.size();
  queue_.clear();
  stop_ = false;
  error_ = nullptr;
  if (threaded_) {
    const size_t host = size_t(std::count_if(buckets_.begin(), buckets_.end(),
                                             [](const Bucket& b) { return !b.nccl; }));
    thread_ = std::thread([this, host] { comm_loop(host); });
  }
}

void GradReducer::grad_ready(VarImpl& leaf) {
  if (!armed_) return;
  const auto it = index_.find(&leaf);
  if (it != index_.end()) mark_ready(it->second);
}

void GradReducer::mark_ready(size_t i) {
  if (ready_[i]) return;
  ready_[i] = 1;
  // The trainer's scale_grads after backward, one grad at a time.
  if (grad_scale_ != 1.0 && params_[i].var.grad().defined()) scale_grads({params_[i]}, grad_scale_);
  const int64_t b = bucket_of_[i];
  if (b < 0 || --buckets_[size_t(b)].pending > 0 || comm_.size() == 1) return;
  pack(buckets_[size_t(b)]);
  packed_[size_t(b)] = 1;
  dispatch_in_order();
}

void GradReducer::pack(Bucket& b) {
  Tensor flags = Tensor::empty({int64_t(b.params.size())}, b.dtype, Device::cpu());
  int64_t off = 0;
  for (size_t k = 0; k < b.params.size(); ++k) {
    const Var& v = params_[b.params[k]].var;
    Tensor slot = b.buf.narrow(0, off, v.numel()).view(v.shape());
    const bool defined = v.grad().defined();
    if (defined) slot.copy_(v.grad());  // gathers any layout, from any device
    else slot.zero_();
    if (b.dtype == DType::F32) flags.data<float>()[k] = defined ? 1.0f : 0.0f;
    else flags.data<double>()[k] = defined ? 1.0 : 0.0;
    off += v.numel();
  }
  b.buf.narrow(0, b.numel, int64_t(b.params.size())).copy_(flags);
}

void GradReducer::dispatch_in_order() {
  while (next_dispatch_ < buckets_.size() && packed_[next_dispatch_]) {
    Bucket& b = buckets_[next_dispatch_];
    if (b.nccl) {
#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
      // Packed on the compute stream; the group's stream waits for that,
      // then reduces while backward continues on the compute stream.
      const cuda::DeviceGuard guard(b.buf.device().index);
      nccl_->allreduce_mean_async(b.buf.data<float>(), size_t(b.buf.numel()));
#endif
    } else if (threaded_) {
      {
        const std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(next_dispatch_);
      }
      cv_.notify_one();
    } else {
      reduce_host(b);
    }
    ++next_dispatch_;
  }
}

void GradReducer::reduce_host(Bucket& b) {
  const size_t len = size_t(b.numel) + b.params.size();  // the flags are summed, not divided
  if (b.dtype == DType::F32) {
    float* p = static_cast<float*>(b.host);
    comm_.allreduce_sum(p, len);
    divide(p, b.numel, float(comm_.size()));
  } else {
    double* p = static_cast<double*>(b.host);
    comm_.allreduce_sum(p, len);
    divide(p, b.numel, double(comm_.size()));
  }
}

void GradReducer::comm_loop(size_t host_buckets) {
  for (size_t done = 0; done < host_buckets; ++done) {
    size_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      b = queue_.front();
      queue_.pop_front();
    }
    try {
      reduce_host(buckets_[b]);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(mu_);
      error_ = std::current_exception();
      return;
    }
  }
}

void GradReducer::finish() {
  GL_CHECK(armed_, "GradReducer::finish() without begin()");
  // Params backward did not report (not reached by the last backward, or
  // not params of its graph) are final now; reverse table order is bucket
  // order.
  for (size_t i = params_.size(); i-- > 0;) mark_ready(i);
  if (thread_.joinable()) thread_.join();
  armed_ = false;
  if (error_) std::rethrow_exception(error_);
  if (comm_.size() == 1) return;
#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
  if (nccl_ && uses_nccl()) {
    const auto b = std::find_if(buckets_.begin(), buckets_.end(), [](const Bucket& x) { return x.nccl; });
    const cuda::DeviceGuard guard(b->buf.device().index);
    nccl_->join_async();  // the compute stream waits for the reductions
  }
#endif

  // Every check before any copy, so that an error changes no grad. All
  // ranks see the same summed flags and throw the same error.
  const int ranks = comm_.size();
  for (const Bucket& b : buckets_) {
    const std::vector<double> flags = b.buf.narrow(0, b.numel, int64_t(b.params.size())).to(Device::cpu()).to_vector();
    for (size_t k = 0; k < b.params.size(); ++k) {
      // Host: the number of ranks; NCCL: that number / ranks (0 or 1 exactly).
      const double on = b.nccl ? flags[k] * ranks : flags[k];
      const NamedParam& p = params_[b.params[k]];
      GL_CHECK(b.nccl ? (flags[k] == 0.0 || flags[k] == 1.0) : (on == 0.0 || on == double(ranks)),
               "GradReducer: the grad of '", p.name, "' is defined on ", int64_t(on + 0.5), " of ", ranks,
               " ranks (on rank ", comm_.rank(), ": ", p.var.grad().defined() ? "defined" : "undefined",
               "); every rank must backpropagate through the same parameters");
    }
  }
  for (size_t i = 0; i < params_.size(); ++i)
    GL_CHECK(bucket_of_[i] >= 0 || !params_[i].var.grad().defined(), "GradReducer: grad of '",
             params_[i].name, "' is ", params_[i].var.grad().describe(),
             "; only f32 and f64 grads can be all-reduced");
  for (const Bucket& b : buckets_) {
    int64_t off = 0;
    for (size_t i : b.params) {
      Tensor g = params_[i].var.grad();  // a handle: copy_ writes the grad's own storage
      if (g.defined()) g.copy_(b.buf.narrow(0, off, g.numel()).view(g.shape()));
      off += params_[i].var.numel();
    }
  }
}

}  // namespace gl
