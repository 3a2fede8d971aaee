// Multi-tensor launches, as apex's multi_tensor_apply: one kernel launch
// updates up to kMaxTensors tensors, each cut into chunks of kChunk
// elements with one block per chunk. The launch's table of tensors (their
// pointers, sizes and per-tensor constants) travels in the kernel's
// parameters, so a step over all of a model's parameters costs a few
// launches, no copy of a table to the device and no host synchronisation.
//
// Plain C++ (the plan is computed on the host and tested on the CPU).
#pragma once
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace gl::cuda {

// Tensors per launch: the table must fit the 4 KB of kernel parameters
// every CUDA version accepts (AdamW's table in f64 is about 2.3 KB).
constexpr int kMaxTensors = 32;
constexpr int64_t kChunk = 16384;  // elements per block: 64 per thread at 256 threads

// One launch: tensors [first, first + count) of the list; block_start[k]
// (k = 0 .. count) is the first block of tensor first + k, so
// block_start[count] is the launch's grid size. Empty tensors get no block.
struct MultiTensorLaunch {
  size_t first = 0, count = 0;
  std::vector<int> block_start;
};

inline int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Launches covering `sizes` in order: a launch closes when it holds
// max_tensors tensors or the next tensor would take its grid past
// max_blocks. Empty tensors are skipped (no launch holds only them).
inline std::vector<MultiTensorLaunch> plan_multi_tensor(const std::vector<int64_t>& sizes,
                                                        int max_tensors = kMaxTensors,
                                                        int64_t max_blocks = int64_t(1) << 30) {
  GL_CHECK(max_tensors >= 1 && max_blocks >= 1, "plan_multi_tensor: limits must be positive");
  std::vector<MultiTensorLaunch> out;
  MultiTensorLaunch cur;
  int64_t blocks = 0;
  auto close = [&](size_t next) {
    if (blocks > 0) out.push_back(cur);
    cur = MultiTensorLaunch{};
    cur.first = next;
    blocks = 0;
  };
  for (size_t i = 0; i < sizes.size(); ++i) {
    GL_CHECK(sizes[i] >= 0, "plan_multi_tensor: tensor ", i, " has negative size ", sizes[i]);
    const int64_t c = chunks_of(sizes[i]);
    GL_CHECK(c <= max_blocks, "plan_multi_tensor: tensor ", i, " of ", sizes[i],
             " elements needs ", c, " blocks, more than one launch's ", max_blocks);
    if (cur.count > 0 && (int64_t(cur.count) >= max_tensors || blocks + c > max_blocks)) close(i);
    if (cur.count == 0) {
      cur.first = i;
      cur.block_start = {0};
    }
    blocks += c;
    cur.count += 1;
    cur.block_start.push_back(int(blocks));
  }
  close(sizes.size());
  return out;
}

}  // namespace gl::cuda
