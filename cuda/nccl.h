// Collectives on GPU memory through NCCL, for data parallelism with one
// GPU per process (dist/comm.h allreduce_mean_grads uses it for CUDA
// grads). Plain C++: no CUDA or NCCL headers needed to include it.
//
// NCCL is loaded at run time (dlopen of $GRIDLOCK_NCCL_LIB, else
// libnccl.so.2), not linked: a binary must start on a machine without it
// (a lent GPU has PyTorch's copy in site-packages, off the library path;
// point GRIDLOCK_NCCL_LIB at it), and single-GPU work never needs it.
//
// NCCL refuses two ranks on one GPU (since 2.5: "Duplicate GPU detected";
// its topology search needs distinct devices), so N processes sharing a GPU
// keep the host (MPI) path; dist/comm.cpp decides before creating a group.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

namespace gl::cuda {

// Empty when NCCL can be loaded, else why not (one line).
std::string nccl_unavailable_reason();

// "<host>/<PCI bus id>" of the current device: equal strings on two ranks
// mean they share a GPU.
std::string device_identity();

class NcclGroup {
 public:
  // Collective: every rank of the group calls it with its rank, the group
  // size and a broadcast from rank 0 over some other channel (MPI) that
  // carries NCCL's unique id. Binds the group to the current device.
  NcclGroup(int rank, int size, const std::function<void(void* data, size_t bytes)>& broadcast_from_0);
  ~NcclGroup();
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // In place on the current stream, n a multiple of size(): data becomes the
  // mean over ranks, bit-identical on every rank. Reduce-scatter (each
  // shard summed on its owner), the owner divides its shard by size() (the
  // same division as the MPI path), all-gather. An all-reduce would not
  // promise identical bits on every rank.
  void allreduce_mean(float* data, size_t n);

  // For the gradient all-reduce overlapped with backward
  // (dist/grad_reducer.h): allreduce_mean on the group's own stream, after
  // the work queued so far on the current stream (an event recorded there
  // and waited on by the group's stream), without waiting for it; the
  // current stream goes on with backward meanwhile. data must stay
  // allocated until join_async().
  void allreduce_mean_async(float* data, size_t n);
  // The current stream waits (on the device, not the host) for everything
  // allreduce_mean_async queued.
  void join_async();

 private:
  void enqueue_mean(float* data, size_t n, void* stream);
  int rank_ = 0, size_ = 1;
  void* comm_ = nullptr;         // ncclComm_t
  void* side_stream_ = nullptr;  // cudaStream_t, made on first use
};

}  // namespace gl::cuda
