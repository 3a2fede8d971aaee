#include "core/storage.h"

#include <cstdint>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/device_hooks.h"
#include "core/error.h"

namespace gl {

namespace {

// glibc serves blocks above M_MMAP_THRESHOLD (at most 32 MiB, adaptively)
// with a fresh mmap and gives them back with munmap on free, so a training
// step that allocates the same activation and gradient buffers every step
// pays the kernel to zero every page again (about 10% of a Pythia-160m step
// in clear_page, perf). Keeping large blocks in the heap and never trimming
// it lets the next step reuse them: the process keeps its peak footprint,
// which is what a training loop needs anyway. Set once, before the first
// tensor; a no-op outside glibc (and under sanitizers, whose allocator
// ignores mallopt).
bool tune_malloc() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  return true;
}

}  // namespace

// Aligned by hand on top of malloc, the block's own start stored in the
// word before the aligned address. Not aligned_alloc: glibc serves a large
// aligned request by carving the alignment out of a bigger chunk, and the
// leftover pieces stop freed blocks from being reused, so with a 64 MB
// logits buffer every step took fresh pages from the kernel and the heap
// kept growing (measured: 17-34k page faults per step for two 67 MB
// blocks with aligned_alloc, none after the first step with malloc).
void* cpu_alloc(size_t nbytes) {
  static const bool tuned = tune_malloc();
  (void)tuned;
  // malloc's blocks are at least 8-byte aligned (16 in glibc), so the
  // aligned address lies 8 to 64 bytes in: room for the stored pointer.
  void* raw = std::malloc(nbytes + kCpuAlignment);
  GL_CHECK(raw != nullptr, "cpu_alloc: out of host memory allocating ", nbytes, " bytes");
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + kCpuAlignment) & ~uintptr_t(kCpuAlignment - 1);
  reinterpret_cast<void**>(aligned)[-1] = raw;
  return reinterpret_cast<void*>(aligned);
}

void cpu_free(void* p) {
  if (p) std::free(static_cast<void**>(p)[-1]);
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  data = dev.is_cpu() ? cpu_alloc(n) : cuda_hooks::alloc(n, dev.index);
}

Storage::~Storage() {
  if (device.is_cpu()) cpu_free(data);
  else cuda_hooks::free(data, device.index);
}

}  // namespace gl
