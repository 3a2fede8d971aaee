// The fragment layout of mma.sync.m16n8k16 (cuda/mma_layout.h), which the
// mma.sync attention forward (cuda/flash_attention_mma.cu) computes every
// shared-memory and register index from, checked on the CPU: against the
// PTX ISA's formulas written out as the spec states them (section "Matrix
// Fragments for mma.m16n8k16 with floating point type"), as bijections onto
// the matrices, and for the properties the kernel relies on (adjacent
// pairs in one 32-bit register, accumulators reused as A fragments).
#include <doctest/doctest.h>

#include <cstddef>
#include <set>
#include <utility>

#include "cuda/mma_layout.h"

using namespace gl::cuda::mma;

namespace {

// The spec's wording, case by case (groupID = lane >> 2, threadID_in_group = lane % 4).
RowCol spec_a(int lane, int i) {
  const int group = lane >> 2, tig = lane % 4;
  const int row = ((0 <= i && i < 2) || (4 <= i && i < 6)) ? group : group + 8;
  const int col = i < 4 ? tig * 2 + (i & 0x1) : tig * 2 + (i & 0x1) + 8;
  return {row, col};
}
RowCol spec_b(int lane, int i) {
  const int group = lane >> 2, tig = lane % 4;
  const int row = i < 2 ? tig * 2 + (i & 0x1) : tig * 2 + (i & 0x1) + 8;
  return {row, group};
}
RowCol spec_c(int lane, int i) {
  const int group = lane >> 2, tig = lane % 4;
  return {i < 2 ? group : group + 8, tig * 2 + (i & 0x1)};
}

bool same(RowCol a, RowCol b) { return a.row == b.row && a.col == b.col; }

}  // namespace

TEST_CASE("mma layout: the PTX ISA's m16n8k16 fragments, element by element") {
  for (int lane = 0; lane < 32; ++lane) {
    CAPTURE(lane);
    for (int i = 0; i < 8; ++i) CHECK(same(a_elem(lane, i), spec_a(lane, i)));
    for (int i = 0; i < 4; ++i) {
      CHECK(same(b_elem(lane, i), spec_b(lane, i)));
      CHECK(same(c_elem(lane, i), spec_c(lane, i)));
    }
  }
  // One worked example: lane 6 (group 1, thread 2) holds A's (1, 4) and
  // (9, 13), B's (4, 1) and (13, 1), and C's (1, 4) and (9, 5).
  CHECK(same(a_elem(6, 0), {1, 4}));
  CHECK(same(a_elem(6, 7), {9, 13}));
  CHECK(same(b_elem(6, 0), {4, 1}));
  CHECK(same(b_elem(6, 3), {13, 1}));
  CHECK(same(c_elem(6, 0), {1, 4}));
  CHECK(same(c_elem(6, 3), {9, 5}));
}

TEST_CASE("mma layout: each matrix element is held by exactly one lane") {
  auto cover = [](auto elem, int per_lane, int rows, int cols) {
    std::set<std::pair<int, int>> seen;
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < per_lane; ++i) {
        const RowCol e = elem(lane, i);
        CHECK(e.row >= 0);
        CHECK(e.row < rows);
        CHECK(e.col >= 0);
        CHECK(e.col < cols);
        seen.insert({e.row, e.col});
      }
    return seen.size() == std::size_t(rows * cols) && 32 * per_lane == rows * cols;
  };
  CHECK(cover(a_elem, 8, 16, 16));
  CHECK(cover(b_elem, 4, 16, 8));
  CHECK(cover(c_elem, 4, 16, 8));
}

TEST_CASE("mma layout: what the attention kernel relies on") {
  for (int lane = 0; lane < 32; ++lane) {
    CAPTURE(lane);
    // A register holds two adjacent columns of one row (Q: one 32-bit load);
    // a B register two adjacent rows of one column (K^T: adjacent d of one
    // key row, one 32-bit load; V: two keys, two loads).
    for (int r = 0; r < 4; ++r) {
      const RowCol lo = a_elem(lane, 2 * r), hi = a_elem(lane, 2 * r + 1);
      CHECK(hi.row == lo.row);
      CHECK(hi.col == lo.col + 1);
      CHECK(lo.col % 2 == 0);
    }
    for (int r = 0; r < 2; ++r) {
      const RowCol lo = b_elem(lane, 2 * r), hi = b_elem(lane, 2 * r + 1);
      CHECK(hi.col == lo.col);
      CHECK(hi.row == lo.row + 1);
      CHECK(lo.row % 2 == 0);
    }
    // Accumulator elements 0, 1 are one row and 2, 3 the row 8 below (the
    // kernel's row halves h = i >> 1).
    CHECK(c_elem(lane, 1).row == c_elem(lane, 0).row);
    CHECK(c_elem(lane, 2).row == c_elem(lane, 0).row + 8);
    CHECK(c_elem(lane, 3).row == c_elem(lane, 2).row);
    // The accumulators of tiles 2m and 2m + 1 (columns 8 apart) are the A
    // fragment over their 16 columns, in the kernel's register order.
    for (int i = 0; i < 8; ++i) {
      const RowCol c = c_elem(lane, c_of_a(i));
      CHECK(same(a_elem(lane, i), {c.row, c.col + 8 * tile_of_a(i)}));
    }
  }
}
