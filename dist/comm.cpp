// Communicators (single process, MPI), world(), and the collectives built on
// the Communicator interface: allreduce_mean_grads, check_same_on_all_ranks.
// See dist/comm.h for the contract; the invariants that matter here:
//   - every rank takes every branch that leads to a collective on data all
//     ranks share (sizes, all-reduced flags), so ranks never wait on each
//     other in different collectives, and errors are thrown on all ranks;
//   - MPI counts are ints: large buffers go in chunks of at most 2^30
//     elements, each chunk its own reduce + broadcast.
#include "dist/comm.h"
#include "dist/tcp.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#if GRIDLOCK_HAVE_MPI
// The C API only: Open MPI and MPICH would otherwise pull in their
// deprecated C++ bindings, which live in a separate library.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
#include "cuda/nccl.h"
#include "cuda/runtime.h"
#endif

namespace gl {

Communicator::~Communicator() = default;

void SingleCommunicator::broadcast(void*, size_t, int root) {
  GL_CHECK(root == 0, "broadcast: root ", root, " out of range for a group of 1 rank");
}

// --- launcher detection ------------------------------------------------------

int launcher_world_size() {
  // Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; MPICH/Hydra, Intel MPI and
  // Slurm's PMI-2 set PMI_SIZE.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    GL_CHECK(end != v && *end == '\0' && n >= 1 && n <= (1L << 24), "launcher_world_size: ", name,
             "='", v, "' is not a positive rank count");
    return int(n);
  }
  return 0;
}

int launcher_local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    GL_CHECK(end != v && *end == '\0' && n >= 0 && n < (1L << 24), "launcher_local_rank: ", name, "='", v,
             "' is not a local rank");
    return int(n);
  }
  return 0;
}

int device_for_local_rank(int local_rank, int device_count) {
  GL_CHECK(device_count > 0, "run.device: cuda, but no GPU is visible to this process (CUDA_VISIBLE_DEVICES=",
           std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "unset", ")");
  return local_rank % device_count;
}

std::string choose_backend(int launcher_size, bool built_with_mpi) {
  GL_CHECK(launcher_size >= 0, "choose_backend: negative launcher size ", launcher_size);
  if (launcher_size == 0) return "single";
  if (built_with_mpi) return "mpi";
  GL_CHECK(launcher_size == 1, "world(): started by an MPI launcher with ", launcher_size,
           " ranks, but gridlock was built without MPI (install libopenmpi-dev and "
           "reconfigure with GRIDLOCK_MPI=ON, or run without mpirun); refusing to run ",
           launcher_size, " independent copies");
  return "single";
}

// --- MPI ---------------------------------------------------------------------

#if GRIDLOCK_HAVE_MPI
namespace {

bool mpi_running() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING + 1] = {0};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  GL_CHECK(false, call, " failed: ", msg);
}

constexpr size_t kMaxCount = size_t(1) << 30;  // elements per MPI call (count is an int)

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(int launcher_size) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) {
      // SERIALIZED: OpenMP threads compute, and the overlapped gradient
      // reducer's communication thread calls MPI while the main thread
      // does not (dist/grad_reducer.h); never two threads inside MPI at
      // once. An MPI that gives less makes the reducer call MPI from the
      // main thread (collectives_from_any_thread).
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided_),
                "MPI_Init_thread");
      owns_mpi_ = true;
    } else {
      check_mpi(MPI_Query_thread(&provided_), "MPI_Query_thread");
    }
    // Errors come back as codes we turn into gl::Error rather than MPI's
    // default of aborting the job from inside the library.
    check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
              "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    // A launcher from one MPI starting a program linked against another
    // gives N singleton worlds of size 1: N runs that each think they are
    // alone, which is exactly what must not happen.
    GL_CHECK(size_ == launcher_size, "world(): the launcher announced ", launcher_size,
             " ranks but MPI_COMM_WORLD has ", size_,
             " (is mpirun from a different MPI than the one gridlock links?)");
  }
  ~MpiCommunicator() override {
    if (owns_mpi_ && mpi_running()) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, size_t n) override { reduce_bcast(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, size_t n) override { reduce_bcast(data, n, MPI_DOUBLE); }
  void broadcast(void* data, size_t bytes, int root) override {
    GL_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " out of range for ", size_,
             " ranks");
    char* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes; done += kMaxCount) {
      const int count = int(std::min(kMaxCount, bytes - done));
      check_mpi(MPI_Bcast(p + done, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  std::string backend() const override { return "mpi"; }
  bool collectives_from_any_thread() const override { return provided_ >= MPI_THREAD_SERIALIZED; }

 private:
  // Sum at rank 0, then rank 0's bits to everyone: identical on all ranks
  // whatever order the reduction used (see the determinism note in comm.h).
  template <class T>
  void reduce_bcast(T* data, size_t n, MPI_Datatype type) {
    for (size_t done = 0; done < n; done += kMaxCount) {
      const int count = int(std::min(kMaxCount, n - done));
      T* p = data + done;
      check_mpi(MPI_Reduce(rank_ == 0 ? MPI_IN_PLACE : p, rank_ == 0 ? p : nullptr, count, type,
                           MPI_SUM, 0, MPI_COMM_WORLD),
                "MPI_Reduce");
      check_mpi(MPI_Bcast(p, count, type, 0, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }

  int rank_ = 0, size_ = 1;
  int provided_ = MPI_THREAD_SINGLE;  // the thread level MPI gave
  bool owns_mpi_ = false;
};

}  // namespace
#endif  // GRIDLOCK_HAVE_MPI

namespace {

std::unique_ptr<Communicator> make_world() {
  const int launcher_size = launcher_world_size();
  if (launcher_size == 0) {
    // Not mpirun: torchrun's variables, if any, ask for the tcp backend.
    const TcpLaunch t = tcp_launch_from_env();
    if (t.world_size > 1) {
      const char* e = std::getenv("GRIDLOCK_TCP_TIMEOUT");
      return make_tcp_communicator(t, e ? std::max(1.0, std::atof(e)) : 120.0);
    }
  }
  if (choose_backend(launcher_size, GRIDLOCK_HAVE_MPI != 0) == "single")
    return std::make_unique<SingleCommunicator>();
#if GRIDLOCK_HAVE_MPI
  return std::make_unique<MpiCommunicator>(launcher_size);
#else
  GL_CHECK(false, "internal: MPI backend chosen in a build without MPI");
#endif
}

}  // namespace

Communicator& world() {
  // Function-static: MPI_Init on first use, MPI_Finalize (in the
  // communicator's destructor) when static objects are destroyed at exit.
  static const std::unique_ptr<Communicator> w = make_world();
  return *w;
}

void abort_world(int exit_code) {
  std::fflush(nullptr);
#if GRIDLOCK_HAVE_MPI
  if (mpi_running()) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::exit(exit_code);
}

// --- collectives on top of the interface ----------------------------------

namespace {

// One value per rank, gathered with a sum: every rank writes its own slot of
// a zeroed vector, so the sum holds each rank's value exactly (doubles hold
// integers below 2^53 exactly). Callers append these slots to other sums.
void put_slot(std::vector<double>& v, size_t base, const Communicator& comm, double value) {
  v[base + size_t(comm.rank())] = value;
}

template <class T>
void divide(T* p, int64_t n, T d) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] / d;
}

}  // namespace

#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
namespace {

// The one CUDA device holding every `dt` grad, or -1 (some on the host, or
// on several devices).
int grads_cuda_device(const std::vector<NamedParam>& params, DType dt) {
  int dev = -1;
  for (const NamedParam& p : params) {
    const Tensor& g = p.var.grad();
    if (!g.defined() || g.dtype() != dt) continue;
    if (!g.device().is_cuda() || (dev >= 0 && g.device().index != dev)) return -1;
    dev = g.device().index;
  }
  return dev;
}

}  // namespace

// See dist/comm.h. NCCL refuses two ranks on one GPU. Every rank votes in
// one all-reduce, so all take the same path.
cuda::NcclGroup* grad_nccl_group(Communicator& comm) {
  struct Entry {
    std::unique_ptr<cuda::NcclGroup> group;
  };
  static std::map<const Communicator*, Entry>* groups = new std::map<const Communicator*, Entry>();
  const auto it = groups->find(&comm);
  if (it != groups->end()) return it->second.group.get();

  const size_t ranks = size_t(comm.size());
  const char* env = std::getenv("GRIDLOCK_NCCL");
  const bool off = env && std::string(env) == "0";
  const std::string why = off ? "GRIDLOCK_NCCL=0" : cuda::nccl_unavailable_reason();
  // votes: [0] ranks where NCCL is usable; [1 + r] a hash of rank r's GPU.
  std::vector<double> votes(1 + ranks, 0.0);
  votes[0] = why.empty() ? 1.0 : 0.0;
  uint64_t h = 1469598103934665603ull;  // FNV-1a, kept to 52 bits to be exact in a double
  for (char c : cuda::device_identity()) h = (h ^ uint8_t(c)) * 1099511628211ull;
  put_slot(votes, 1, comm, double(h & ((1ull << 52) - 1)));
  comm.allreduce_sum(votes.data(), votes.size());
  std::string reason;
  if (votes[0] != double(ranks))
    reason = why.empty() ? "NCCL is not usable on every rank" : why;
  for (size_t a = 0; a < ranks && reason.empty(); ++a)
    for (size_t b = a + 1; b < ranks && reason.empty(); ++b)
      if (votes[1 + a] == votes[1 + b])
        reason = "ranks " + std::to_string(a) + " and " + std::to_string(b) +
                 " share a GPU (NCCL needs one GPU per rank)";
  Entry e;
  if (reason.empty())
    e.group = std::make_unique<cuda::NcclGroup>(
        comm.rank(), comm.size(), [&](void* d, size_t bytes) { comm.broadcast(d, bytes, 0); });
  if (comm.rank() == 0)
    std::fprintf(stderr, "gradient all-reduce: %s\n",
                 reason.empty() ? ("NCCL on " + std::to_string(ranks) + " GPUs").c_str()
                                : ("through host memory (" + reason + ")").c_str());
  Entry& kept = (*groups)[&comm];
  kept = std::move(e);
  return kept.group.get();
}

namespace {

// The f32 grads, packed into buckets of at most kBucket elements (a grad
// larger than that gets its own), each padded to a multiple of the ranks
// and averaged on the GPU. The buckets bound the extra memory to one
// bucket instead of a second copy of every gradient.
void allreduce_mean_nccl(cuda::NcclGroup& group, const std::vector<NamedParam>& params) {
  constexpr int64_t kBucket = int64_t(16) << 20;  // 64 MiB of f32
  const int64_t ranks = group.size();
  std::vector<Tensor> grads;
  for (const NamedParam& p : params)
    if (p.var.grad().defined() && p.var.grad().dtype() == DType::F32) grads.push_back(p.var.grad());
  size_t i = 0;
  while (i < grads.size()) {
    size_t j = i;
    int64_t used = 0;
    while (j < grads.size() && (j == i || used + grads[j].numel() <= kBucket)) used += grads[j++].numel();
    const int64_t padded = (used + ranks - 1) / ranks * ranks;
    Tensor buf = Tensor::empty({padded}, DType::F32, grads[i].device());
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      buf.narrow(0, off, grads[k].numel()).view(grads[k].shape()).copy_(grads[k]);
      off += grads[k].numel();
    }
    if (padded > used) buf.narrow(0, used, padded - used).zero_();
    group.allreduce_mean(buf.data<float>(), size_t(padded));
    off = 0;
    for (size_t k = i; k < j; ++k) {
      Tensor g = grads[k];  // a handle: copy_ writes the grad's own storage
      g.copy_(buf.narrow(0, off, g.numel()).view(g.shape()));
      off += g.numel();
    }
    i = j;
  }
}

}  // namespace
#endif

#if !(GRIDLOCK_CUDA && GRIDLOCK_NCCL)
cuda::NcclGroup* grad_nccl_group(Communicator&) { return nullptr; }
#endif

void allreduce_mean_grads(Communicator& comm, const std::vector<NamedParam>& params) {
  if (comm.size() == 1) return;  // the mean over one rank is the grad itself
  const size_t n = params.size(), ranks = size_t(comm.size());

  // Local checks first (every rank holds the same model, so every rank
  // throws here or none does), then one sum that carries: per param, on how
  // many ranks its grad is defined; per rank, its packed f32 and f64 sizes.
  int64_t total32 = 0, total64 = 0;
  std::vector<double> info(n + 2 * ranks, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const Tensor& g = params[i].var.grad();
    if (!g.defined()) continue;
    GL_CHECK(g.dtype() == DType::F32 || g.dtype() == DType::F64,
             "allreduce_mean_grads: grad of '", params[i].name, "' is ", g.describe(),
             "; only f32 and f64 grads can be all-reduced");
    (g.dtype() == DType::F32 ? total32 : total64) += g.numel();
    info[i] = 1.0;
  }
  put_slot(info, n, comm, double(total32));
  put_slot(info, n + ranks, comm, double(total64));
  comm.allreduce_sum(info.data(), info.size());
  for (size_t i = 0; i < n; ++i) {
    GL_CHECK(info[i] == 0.0 || info[i] == double(ranks), "allreduce_mean_grads: the grad of '",
             params[i].name, "' is defined on ", int64_t(info[i]), " of ", ranks,
             " ranks (on rank ", comm.rank(), ": ",
             params[i].var.grad().defined() ? "defined" : "undefined",
             "); every rank must backpropagate through the same parameters");
  }
  for (size_t r = 1; r < ranks; ++r) {
    GL_CHECK(info[n + r] == info[n] && info[n + ranks + r] == info[n + ranks],
             "allreduce_mean_grads: rank ", r, " holds ", int64_t(info[n + r]), " f32 and ",
             int64_t(info[n + ranks + r]), " f64 grad elements, rank 0 holds ", int64_t(info[n]),
             " and ", int64_t(info[n + ranks]), "; the ranks' parameters differ");
  }

  // f32 grads on a GPU: NCCL when every rank has it and its own GPU.
  bool f32_done = false;
#if GRIDLOCK_CUDA && GRIDLOCK_NCCL
  if (const int dev = total32 > 0 ? grads_cuda_device(params, DType::F32) : -1; dev >= 0) {
    const cuda::DeviceGuard guard(dev);  // the group binds to the current device
    if (cuda::NcclGroup* g = grad_nccl_group(comm)) {
      allreduce_mean_nccl(*g, params);
      f32_done = true;
    }
  }
#endif

  // One contiguous host buffer per dtype. Tensor::copy_ gathers any layout
  // and device, so CUDA grads without NCCL go through host memory here.
  for (const DType dt : {DType::F32, DType::F64}) {
    if (dt == DType::F32 && f32_done) continue;
    const int64_t total = dt == DType::F32 ? total32 : total64;
    if (total == 0) continue;
    Tensor buf = Tensor::empty({total}, dt, Device::cpu());
    int64_t off = 0;
    for (const NamedParam& p : params) {
      const Tensor& g = p.var.grad();
      if (!g.defined() || g.dtype() != dt) continue;
      buf.narrow(0, off, g.numel()).view(g.shape()).copy_(g);
      off += g.numel();
    }
    if (dt == DType::F32) {
      comm.allreduce_sum(buf.data<float>(), size_t(total));
      divide(buf.data<float>(), total, float(ranks));
    } else {
      comm.allreduce_sum(buf.data<double>(), size_t(total));
      divide(buf.data<double>(), total, double(ranks));
    }
    off = 0;
    for (const NamedParam& p : params) {
      Tensor g = p.var.grad();  // a handle: copy_ writes the grad's own storage
      if (!g.defined() || g.dtype() != dt) continue;
      g.copy_(buf.narrow(0, off, g.numel()).view(g.shape()));
      off += g.numel();
    }
  }
}

void check_same_on_all_ranks(Communicator& comm, const void* data, size_t bytes,
                             const std::string& what) {
  GL_CHECK(data != nullptr || bytes == 0, "check_same_on_all_ranks(", what,
           "): null data with ", bytes, " bytes");
  if (comm.size() == 1) return;
  const size_t ranks = size_t(comm.size());

  // Sizes first: a broadcast with different sizes on different ranks would
  // be a mismatched collective, not a clean error.
  std::vector<double> sizes(ranks, 0.0);
  put_slot(sizes, 0, comm, double(bytes));
  comm.allreduce_sum(sizes.data(), sizes.size());
  for (size_t r = 1; r < ranks; ++r)
    GL_CHECK(sizes[r] == sizes[0], "check_same_on_all_ranks: ", what, " differs between ranks: ",
             "rank ", r, " has ", int64_t(sizes[r]), " bytes, rank 0 has ", int64_t(sizes[0]));

  // Rank 0's bytes in bounded chunks, compared exactly on every other rank.
  const size_t chunk = std::min<size_t>(bytes, size_t(64) << 20);
  std::vector<unsigned char> buf(chunk);
  const auto* mine = static_cast<const unsigned char*>(data);
  int64_t first_diff = -1;
  for (size_t done = 0; done < bytes; done += chunk) {
    const size_t len = std::min(chunk, bytes - done);
    if (comm.rank() == 0) std::memcpy(buf.data(), mine + done, len);
    comm.broadcast(buf.data(), len, 0);
    if (first_diff < 0 && std::memcmp(buf.data(), mine + done, len) != 0) {
      size_t k = 0;
      while (buf[k] == mine[done + k]) ++k;
      first_diff = int64_t(done + k);
    }
  }
  std::vector<double> diffs(ranks, 0.0);
  put_slot(diffs, 0, comm, double(first_diff + 1));  // 0: same as rank 0
  comm.allreduce_sum(diffs.data(), diffs.size());
  for (size_t r = 1; r < ranks; ++r)
    GL_CHECK(diffs[r] == 0.0, "check_same_on_all_ranks: ", what, " differs between ranks: rank ",
             r, " differs from rank 0 first at byte ", int64_t(diffs[r]) - 1, " of ", bytes);
}

}  // namespace gl
