// What the SGEMM driver (cpu/sgemm.cpp) and its micro-kernels
// (cpu/sgemm_avx512.h, cpu/sgemm_avx2.h) share. Only cpu/sgemm.cpp includes
// these headers.
//
// A micro-kernel is a struct with
//   MR, NR              the register tile of C (rows, columns)
//   NC, MC, MC_WIDE     cache blocks: B columns packed at a time, A rows
//                       packed at a time in the B-outer and A-outer orders
//   kernel<L>(kc, a, b, c, ldc, add)   C[0:MR, 0:NR] (+)= A-panel . B-panel
//   pack_b_fast(panel, src, b_row, b_col, kc)  packs a full NR-column panel
//                       where its vector code applies and returns how many
//                       depths it packed (the driver does the rest)
// each function carrying its own target attribute, so the file compiles
// for the baseline ISA and the CPU is checked before anything calls them.
#pragma once
#include <cstdint>

namespace gl::cpu::sgemm_detail {

// The depth block: the same for every kernel, because it fixes where each
// C element's fused multiply-add chain restarts from zero, and so its
// rounding (the kernels agree bit for bit). A 256-deep micro-panel of A is
// 6-12 KB, which stays in a 32-48 KB L1 while B streams past it.
constexpr int64_t KC = 256;

// Packed A comes in two layouts so that packing is a plain copy whichever
// way A is stored: row-major (element (r, k) at r * KC + k) when A's rows
// are contiguous, as for activations; k-major (k * MR + r) when its columns
// are, as for a transposed operand. The kernels are compiled for both.
enum class ALayout { RowMajor, KMajor };

template <int MR, ALayout L>
constexpr int64_t a_k_step() { return L == ALayout::RowMajor ? 1 : MR; }
template <int MR, ALayout L>
constexpr int64_t a_r_step() { return L == ALayout::RowMajor ? KC : 1; }

}  // namespace gl::cpu::sgemm_detail
