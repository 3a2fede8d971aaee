#include "core/storage.h"

#include <cstdlib>

#include "core/device_hooks.h"
#include "core/error.h"

namespace gl {

void* cpu_alloc(size_t nbytes) {
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
