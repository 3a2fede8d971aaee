// Reference-counted device memory. Tensors are views over a shared Storage.
// CPU memory is 64-byte aligned (one cache line, one AVX-512 vector);
// CUDA memory comes from the caching allocator in cuda/runtime.cu so a
// training step in steady state never calls cudaMalloc.
#pragma once
#include <cstddef>
#include <memory>

#include "core/dtype.h"

namespace gl {

constexpr size_t kCpuAlignment = 64;

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

void* cpu_alloc(size_t nbytes);  // aligned, never returns null (throws)
void cpu_free(void* p);

}  // namespace gl
