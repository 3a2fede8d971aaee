// ZeRO-1: the optimizer state sharded over the data-parallel ranks
// (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", arXiv 1910.02054, stage 1 "P_os"; the whole-tensor
// partition of torch.distributed.optim.ZeroRedundancyOptimizer,
// https://pytorch.org/docs/stable/distributed.optim.html).
//
// What it does. Every rank still holds all the weights and, after
// allreduce_mean_grads, all the (identical) gradients. The parameters are
// split, whole tensors, over the W ranks; each rank's optimizer owns the
// state of its share only and updates only those weights; then every owner
// broadcasts its updated weights so that all ranks again hold the same bits.
//
//   partition  sort the tensors by numel, largest first (ties: table
//              order); give each to the rank whose total numel is smallest
//              so far (ties: the lowest rank). The same on every rank.
//              (torch sorts inside each parameter group with the totals
//              carried across groups; we sort all tensors together, which
//              balances at least as well.)
//   step(lr)   base.step(lr) over this rank's tensors, then one broadcast per
//              owner of its tensors packed into one buffer (W collectives).
//
// Results are bit-identical to the unsharded optimizer: every supported
// optimizer (AdamW, SGD, Muon, SAM around AdamW/SGD) updates each tensor from
// that tensor's own grad and state only, so the owner computes exactly the
// bits every rank would have computed.
//
// What it saves: the optimizer state (AdamW's two moments, SGD's or Muon's
// momentum) is about 1/W per rank, within the balance of whole tensors.
// What it does not do: gradients are still all-reduced in full (no
// reduce-scatter; that and sharded gradients are ZeRO-2), weights are not
// sharded (ZeRO-3), and nothing overlaps with compute. The broadcast of
// CUDA weights goes through host memory (copy to host, broadcast, copy
// back): correct, not fast; an NCCL broadcast would be the next step. A
// checkpoint gathers the whole state on every rank for the time of the
// write (state() below), so checkpoints are the same files as unsharded.
//
// Checkpoints are interchangeable: state() returns the full, unsharded state
// in the unsharded optimizer's order, and load_state takes such a full
// state, so a run can resume with another zero_stage or rank count.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "optim/optimizer.h"

namespace gl {

// The owner rank of each tensor, given the tensors' numel in table order
// (see the file comment). Every tensor gets exactly one owner in
// [0, world_size); with more ranks than tensors some ranks own none.
std::vector<int> zero_partition(const std::vector<int64_t>& numels, int world_size);

class ShardedOptimizer final : public Optimizer {
 public:
  // Builds the base optimizer over `groups` filtered to some params (every
  // group kept, in order, with its lr_scale and weight_decay; it may be empty).
  using MakeBase = std::function<std::unique_ptr<Optimizer>(std::vector<ParamGroup>)>;

  // `groups`: the full groups, the same on every rank (e.g. the unsharded
  // optimizer's groups()). make_base is called once, here. `comm` must
  // outlive this object.
  ShardedOptimizer(Communicator& comm, std::vector<ParamGroup> groups, const MakeBase& make_base);

  // Collective: steps this rank's tensors, then broadcasts every tensor from
  // its owner. Every rank must call it with the same lr.
  void step(double lr) override;
  // The base optimizer's gated step (optim/step_gate.h) on this rank's
  // tensors, then the same broadcast (a dropped step broadcasts unchanged
  // weights); settle is the base's.
  bool supports_gated_step() const override { return base_->supports_gated_step(); }
  void step_gated(double lr, const Tensor& applied) override;
  void settle(bool applied) override { base_->settle(applied); }
  // Collective: the full state, identical to the unsharded optimizer's (same
  // names, order, dtypes and values), on every rank, as CPU tensors.
  NamedTensors state() const override;
  // Takes a full state and keeps this rank's entries. An entry the base
  // refuses (an unknown key, a wrong shape) fails on every rank, with the
  // first failing rank's message, so no rank is left waiting in a collective.
  void load_state(const NamedTensors& state) override;

  // owners()[i]: the rank that updates params()[i].
  const std::vector<int>& owners() const { return owners_; }
  const Optimizer& base() const { return *base_; }
  // One line for the run's log: tensors and elements per rank.
  std::string describe() const;

 private:
  // The index in params() of the tensor a state key "<kind>.<name>" belongs
  // to (the longest matching name), or -1.
  int64_t param_index(const std::string& key) const;
  void broadcast_params();

  Communicator& comm_;
  std::vector<int> owners_;
  std::map<std::string, size_t> index_;  // params() position by name
  std::unique_ptr<Optimizer> base_;
};

}  // namespace gl
