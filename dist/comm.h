// Data-parallel communication: a process group (Communicator) with the few
// collectives a data-parallel trainer needs, the process-wide world() group,
// and the gradient all-reduce built on them. ZeRO-1, the optimizer state
// sharded over the ranks on top of these collectives, is dist/zero.h; the
// gradient all-reduce in buckets overlapped with backward is
// dist/grad_reducer.h.
//
// Backends:
//   "single"  one process; every collective is the identity. Used when the
//             program was not started by a launcher (or by one with 1 rank
//             in a build without MPI).
//   "mpi"     MPI_COMM_WORLD, when the program was started by mpirun/mpiexec
//             (OMPI_COMM_WORLD_SIZE or PMI_SIZE in the environment) and the
//             build found MPI (GRIDLOCK_HAVE_MPI). Started with several ranks
//             in a build without MPI is an error: never N independent runs
//             that each believe they are alone.
//   "tcp"     a star over TCP sockets (dist/tcp.h), when started without an
//             MPI launcher but with torchrun's RANK / WORLD_SIZE / LOCAL_RANK /
//             MASTER_ADDR / MASTER_PORT (torchrun --no-python, or
//             scripts/launch_local.sh): for machines without MPI, such as
//             the lent GPU machines. The same bits as "mpi".
//
// Determinism: allreduce_sum is a reduce to rank 0 followed by a broadcast of
// rank 0's result, so every rank holds the same bits by construction. The
// MPI standard requires identical results from MPI_Allreduce on all ranks,
// but implementations have shipped algorithms that add in a different order
// on different ranks (MPICH's recexch, pmodels/mpich#6538; Open MPI's
// allgather-reduce, open-mpi/ompi#12258), and a data-parallel run whose
// replicas drift apart by one ulp per step diverges silently.
//
// Running under mpirun (Open MPI 4.1, one machine, as root in a container):
//   mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2
//          --mca pml ob1 --mca btl self,vader
//          --mca btl_vader_single_copy_mechanism none ./train RECIPE.yaml
// (one line).
// pml ob1 + btl self,vader: shared memory only, no probing of UCX, InfiniBand
// or TCP devices a container does not have; single_copy none: vader's CMA
// copies need ptrace rights between the ranks that containers often deny.
// tests/dist/mpirun_local.sh sets these (as OMPI_* variables) for the tests.
//
// Errors: every collective that can detect a mismatch (check_same_on_all_ranks,
// the grad checks of allreduce_mean_grads) decides on all ranks from the same
// all-reduced data, so all ranks throw the same gl::Error together and can
// exit normally. An error only one rank sees (a file missing on one node)
// must end the job with abort_world(): a rank that returns from main would
// wait in MPI_Finalize for ranks that wait in a collective for it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "models/model.h"

namespace gl {

class Communicator {  // a process group
 public:
  virtual ~Communicator();
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place; afterwards every rank holds the same sum (bit-identical).
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  // Every rank receives root's `bytes` bytes; `bytes` must agree on all ranks.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  virtual std::string backend() const = 0;  // "single", "mpi"
  // True when another thread than the one that made the group may call its
  // collectives, one thread at a time (MPI_THREAD_SERIALIZED): the
  // overlapped gradient reducer (dist/grad_reducer.h) runs them on a
  // communication thread while the main thread computes, and falls back to
  // running them on the main thread when this is false.
  virtual bool collectives_from_any_thread() const { return true; }
};

// The group of one process: rank 0 of 1, collectives leave data as it is.
class SingleCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void* data, size_t bytes, int root) override;  // checks root == 0
  void barrier() override {}
  std::string backend() const override { return "single"; }
};

// The process-wide group (see the file comment for the choice of backend).
// MPI is initialised on the first call and finalised at exit, once per
// process. Throws gl::Error when the launcher asked for several ranks and the
// build has no MPI, or when MPI fails to start.
Communicator& world();

// The number of ranks the launcher announced (OMPI_COMM_WORLD_SIZE, else
// PMI_SIZE), or 0 when the process was not started by an MPI launcher.
// Throws on a value that is not a positive integer.
int launcher_world_size();
// This process's rank among the ranks on its node (OMPI_COMM_WORLD_LOCAL_RANK,
// else MPI_LOCALRANKID (MPICH/Hydra), else SLURM_LOCALID, else torchrun's
// LOCAL_RANK), or 0 when no launcher said. Throws on a value that is not a non-negative integer.
int launcher_local_rank();
// The GPU a data-parallel rank trains on: local_rank modulo the visible
// GPUs (ranks share GPUs round-robin when there are more ranks than GPUs).
int device_for_local_rank(int local_rank, int device_count);

// The backend world() uses for a launcher size (0: none) in a build
// with/without MPI: "single" or "mpi"; throws when several ranks were
// launched and the build has no MPI. Exposed for tests.
std::string choose_backend(int launcher_size, bool built_with_mpi);

// Ends every rank of the job with `exit_code` (MPI_Abort when MPI is running,
// std::exit otherwise). For errors that only this rank has seen.
[[noreturn]] void abort_world(int exit_code);

// Gradient all-reduce for data parallelism: the mean over ranks of every
// defined grad of `params` (same params in the same order on every rank).
// The grads are packed into one contiguous buffer per dtype (f32, f64),
// all-reduced with one call each, divided by size() and copied back, so
// every rank ends with bit-identical grads. A param whose grad is defined on
// some ranks but not on others -> gl::Error naming it, on every rank. f32
// CUDA grads go through NCCL (cuda/nccl.h: reduce-scatter, divide on the
// owner, all-gather, in buckets of 64 MiB; the group's NCCL id travels over
// this communicator) when every rank can load NCCL and has a GPU of its
// own; otherwise (ranks sharing a GPU, which NCCL refuses, or
// GRIDLOCK_NCCL=0) through host memory. Rank 0 says which on stderr, once.
// This runs after backward; dist/grad_reducer.h is the same mean, bucketed
// and overlapped with backward, bit-identical to this function (the trainer
// uses it unless dist.overlap_grad_reduce is false). With one rank this does
// nothing.
void allreduce_mean_grads(Communicator& comm, const std::vector<NamedParam>& params);

// The NCCL group of `comm` for f32 grads on the current CUDA device, made on
// first use, or nullptr where the host path must serve (NCCL does not load
// on some rank, two ranks share a GPU, GRIDLOCK_NCCL=0 on some rank, or a
// build without CUDA/NCCL). Collective on first use for a communicator:
// every rank votes, so all take the same path; rank 0 says which, once.
namespace cuda {
class NcclGroup;
}
cuda::NcclGroup* grad_nccl_group(Communicator& comm);

// Checks that every rank holds the same `bytes` bytes at `data` (e.g. the
// resolved recipe, the initial weights): rank 0's bytes are broadcast in
// chunks and compared exactly. On a difference every rank throws a gl::Error
// naming `what`, the first differing rank and the first differing byte.
void check_same_on_all_ranks(Communicator& comm, const void* data, size_t bytes,
                             const std::string& what);

}  // namespace gl
