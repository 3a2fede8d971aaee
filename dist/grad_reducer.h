// The data-parallel gradient all-reduce, bucketed and overlapped with
// backward (as torch DDP's Reducer, https://pytorch.org/docs/stable/notes/ddp.html):
// a bucket of grads is reduced as soon as backward() has made all of them
// final, while backward goes on with the layers below.
//
// Buckets. The params (the same table in the same order on every rank) are
// cut, in reverse table order (about the order backward makes grads final:
// the head first, the embeddings last), into runs of one dtype (f32 or f64)
// of at most bucket_bytes (25 MiB by default, DDP's bucket_cap_mb; a larger
// param gets a bucket of its own). Every rank reduces the buckets in the same
// order, bucket 0 first, whatever order its grads became ready in.
//
// Use, for one backward (the trainer: the last micro-batch of a step):
//   reducer.begin(grad_scale);
//   { GradReadyGuard g([&](VarImpl& leaf) { reducer.grad_ready(leaf); }); loss.backward(); }
//   reducer.finish();
// grad_ready multiplies the grad by grad_scale (scale_grads, the same float
// operation the trainer applies after backward; skipped when it is 1) and,
// when the last grad of a bucket is ready, packs the bucket into its buffer
// (zeros where a grad is undefined, plus one "defined here" flag per param)
// and hands it to the communication:
//   host path   a communication thread runs comm.allreduce_sum on the
//               buckets in order, then divides each by the rank count. The
//               main thread makes no collective call until finish() has
//               joined that thread (MPI_THREAD_SERIALIZED is enough). A
//               communicator whose collectives must stay on the main thread
//               (collectives_from_any_thread() false) gets the same calls
//               there, when the buckets become ready: bucketed, not
//               overlapped.
//   NCCL path   f32 params that all live on one CUDA device, when
//               grad_nccl_group() gives a group (dist/comm.h): the bucket is
//               packed on the compute stream and its reduce-scatter, divide,
//               all-gather are queued on the group's own stream after an
//               event recorded on the compute stream (NcclGroup::
//               allreduce_mean_async). Compiled, never run: no machine here
//               has had two GPUs and MPI.
// finish() treats every param not yet reported as ready now (a leaf the last
// backward did not reach may hold a grad of an earlier micro-batch), waits
// for all buckets, checks the flags (a grad defined on some ranks but not
// others is a gl::Error naming the param, on every rank, and no grad is
// changed) and copies the means back into the grads; an undefined grad stays
// undefined.
//
// Bit-identical to scale_grads + allreduce_mean_grads on the same grads:
// each element is the same sum (the communicator's allreduce_sum, reduce to
// rank 0 then broadcast) divided by the same float(ranks) or double(ranks).
// With 2 ranks this holds on any MPI (a + b == b + a in floating point); with
// more it needs an MPI whose reduction adds each element in the same order
// for any message size, which MPI does not promise (the thread-simulated
// ranks of the tests add in rank order). The same holds of the NCCL path
// against allreduce_mean_grads' 64 MiB NCCL buckets.
//
// Costs: one host buffer per bucket (a second copy of the grads), kept from
// step to step; on the NCCL path the buffers are on the GPU. The overlap
// itself has been measured nowhere yet.
//
// An exception between begin() and finish() (or the reducer's destruction)
// stops the communication thread after the bucket it is reducing: a
// collective the other ranks never enter would wait for them, as any
// collective does after an error that only one rank sees (abort_world).
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "dist/comm.h"

namespace gl {

class GradReducer {
 public:
  static constexpr size_t kDefaultBucketBytes = size_t(25) << 20;  // torch DDP's 25 MiB

  // Collective: checks that every rank has the same bucket layout. A param
  // that requires grad and is neither f32 nor f64 is an error naming it.
  GradReducer(Communicator& comm, std::vector<NamedParam> params,
              size_t bucket_bytes = kDefaultBucketBytes);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  void begin(double grad_scale = 1.0);  // arms the reducer for one backward
  void grad_ready(VarImpl& leaf);       // the GradReadyHook: ignores leaves that are not params
  void finish();                        // waits, checks, writes the mean grads

  // The buckets as param names, in reduction order (for tests and logs).
  std::vector<std::vector<std::string>> bucket_names() const;
  bool overlapped() const { return threaded_; }  // a communication thread (host path)
  bool uses_nccl() const;
  // Buckets handed to the communication so far in this round (tests: the
  // ones backward completed are handed over before finish()).
  size_t handed_over() const { return next_dispatch_; }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    DType dtype = DType::F32;
    int64_t numel = 0;           // grad elements; the flags follow them in buf
    bool nccl = false;
    Tensor buf;                  // host [numel + params]; NCCL: device, padded to the ranks
    void* host = nullptr;        // buf's data on the host path (read by the communication thread)
    size_t pending = 0;          // params not yet ready in this round
  };
  void mark_ready(size_t param);
  void pack(Bucket& b);
  void dispatch_in_order();           // main thread: hands packed buckets over, in bucket order
  void reduce_host(Bucket& b);        // allreduce_sum + divide, on whichever thread runs it
  void comm_loop(size_t host_buckets);  // the communication thread
  void stop_thread();

  Communicator& comm_;
  std::vector<NamedParam> params_;
  std::unordered_map<const VarImpl*, size_t> index_;
  std::vector<int64_t> bucket_of_;  // per param, -1: not all-reduced (not f32/f64)
  std::vector<Bucket> buckets_;
  cuda::NcclGroup* nccl_ = nullptr;
  bool threaded_ = false;

  // One round (begin .. finish), main thread only.
  bool armed_ = false;
  double grad_scale_ = 1.0;
  std::vector<char> ready_;    // per param
  std::vector<char> packed_;   // per bucket
  size_t next_dispatch_ = 0;

  // Shared with the communication thread, under mu_.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> queue_;   // host buckets handed over, in bucket order
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace gl
