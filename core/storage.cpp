#include "core/storage.h"

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

void* cpu_alloc(size_t nbytes) {
  static const bool tuned = tune_malloc();
  (void)tuned;
  const size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  void* p = std::aligned_alloc(kCpuAlignment, rounded == 0 ? kCpuAlignment : rounded);
  GL_CHECK(p != nullptr, "cpu_alloc: out of host memory allocating ", nbytes, " bytes");
  return p;
}

void cpu_free(void* p) { std::free(p); }

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  data = dev.is_cpu() ? cpu_alloc(n) : cuda_hooks::alloc(n, dev.index);
}

Storage::~Storage() {
  if (device.is_cpu()) cpu_free(data);
  else cuda_hooks::free(data, device.index);
}

}  // namespace gl
