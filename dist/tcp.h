// The "tcp" backend of dist/comm.h: data parallelism without MPI, for
// processes started the way torchrun starts them (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT in each one's environment), e.g.
//
//   torchrun --nproc-per-node 2 --no-python ./train RECIPE.yaml
//   scripts/launch_local.sh 2 ./train RECIPE.yaml      (no torch needed)
//
// It exists so that N processes can share one machine, or one GPU, where no
// MPI is installed (the lent GPU machines have torch but no MPI), and so the
// N-process runs can be checked against one process there. It is a star
// over TCP, not a fast collective: rank 0 adds every rank's data in rank
// order and sends the sum back, so every rank holds the same bits, the
// MPI backend's guarantee (and its sums for two ranks). Multi-GPU speed is
// NCCL's job (cuda/nccl.h), which this backend carries too: the NCCL id
// goes over broadcast() like any other bytes.
//
// Rank 0 listens on MASTER_PORT; the others connect to MASTER_ADDR (retrying
// for GRIDLOCK_TCP_TIMEOUT seconds, default 120, while rank 0 starts) and
// introduce themselves; every rank checks the world size it was given.
// A peer that goes away mid-collective is an error naming it.
#pragma once
#include <memory>
#include <string>

#include "dist/comm.h"

namespace gl {

struct TcpLaunch {
  int rank = 0, world_size = 0, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
};

// torchrun's variables, or nullopt-like world_size 0 when RANK or
// WORLD_SIZE is unset; a malformed or missing companion is an error naming
// the variable.
TcpLaunch tcp_launch_from_env();

// Connects the group (collective over all ranks, see the file comment).
std::unique_ptr<Communicator> make_tcp_communicator(const TcpLaunch& launch, double timeout_s = 120);

}  // namespace gl
