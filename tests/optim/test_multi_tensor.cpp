// The host plan of CUDA multi-tensor launches (cuda/multi_tensor.h), checked
// on the CPU against a direct enumeration: every chunk of every non-empty
// tensor belongs to exactly one block of exactly one launch, in order, and
// no launch exceeds its limits. The kernels themselves are compared with
// the per-tensor kernel on a GPU (tests/cuda/test_parity_optim.cpp).
#include <doctest/doctest.h>

#include "cuda/multi_tensor.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::cuda;

namespace {

// The (tensor, chunk) pairs the plan's blocks cover, in block order, as the
// kernel finds them: block b belongs to the last k with block_start[k] <= b
// whose next start is past b.
std::vector<std::pair<size_t, int64_t>> covered(const std::vector<MultiTensorLaunch>& plan) {
  std::vector<std::pair<size_t, int64_t>> out;
  for (const MultiTensorLaunch& l : plan) {
    REQUIRE(l.block_start.size() == l.count + 1);
    for (int b = 0; b < l.block_start[l.count]; ++b) {
      size_t k = 0;
      while (l.block_start[k + 1] <= b) ++k;
      out.emplace_back(l.first + k, int64_t(b - l.block_start[k]));
    }
  }
  return out;
}

std::vector<std::pair<size_t, int64_t>> expected(const std::vector<int64_t>& sizes) {
  std::vector<std::pair<size_t, int64_t>> out;
  for (size_t i = 0; i < sizes.size(); ++i)
    for (int64_t c = 0; c * kChunk < sizes[i]; ++c) out.emplace_back(i, c);
  return out;
}

}  // namespace

TEST_CASE("multi-tensor plan: every chunk once, in order, within the limits") {
  // Pythia-like sizes plus empty tensors, one-element tensors, exact chunk
  // multiples and a tensor of many chunks.
  std::vector<int64_t> sizes = {0, 1, kChunk, kChunk + 1, 3 * kChunk - 1, 0, 0, 768, 2304 * 768, 38633472};
  for (int i = 0; i < 150; ++i) sizes.push_back((i * 7919) % 50000);
  for (int max_tensors : {1, 3, kMaxTensors}) {
    for (int64_t max_blocks : {int64_t(3000), int64_t(1) << 30}) {
      CAPTURE(max_tensors);
      CAPTURE(max_blocks);
      const auto plan = plan_multi_tensor(sizes, max_tensors, max_blocks);
      CHECK(covered(plan) == expected(sizes));
      size_t next = 0;
      for (const MultiTensorLaunch& l : plan) {
        CHECK(l.count >= 1);
        CHECK(int(l.count) <= max_tensors);
        CHECK(l.block_start[l.count] >= 1);  // no empty launch
        CHECK(l.block_start[l.count] <= max_blocks);
        CHECK(l.first >= next);  // launches in order, never overlapping
        next = l.first + l.count;
      }
    }
  }
}

TEST_CASE("multi-tensor plan: Pythia-160m's 148 tensors take 5 launches") {
  // 12 layers x 12 tensors, the embedding, the head and the final norm.
  std::vector<int64_t> sizes;
  const int64_t C = 768, V = 50304;
  sizes.push_back(V * C);
  for (int l = 0; l < 12; ++l)
    for (int64_t n : {C, C, C, C, 3 * C * C, 3 * C, C * C, C, 4 * C * C, 4 * C, 4 * C * C, C}) sizes.push_back(n);
  sizes.push_back(C);
  sizes.push_back(C);
  sizes.push_back(V * C);
  const auto plan = plan_multi_tensor(sizes);
  CHECK(sizes.size() == 148);
  CHECK(plan.size() == 5);
  CHECK(covered(plan) == expected(sizes));
}

TEST_CASE("multi-tensor plan: errors") {
  CHECK_THROWS_WITH_AS(plan_multi_tensor({5, -1}), doctest::Contains("tensor 1 has negative size -1"), Error);
  CHECK_THROWS_WITH_AS(plan_multi_tensor({10 * kChunk}, kMaxTensors, 4),
                       doctest::Contains("needs 10 blocks, more than one launch's 4"), Error);
  CHECK(plan_multi_tensor({}).empty());
  CHECK(plan_multi_tensor({0, 0}).empty());
}
