// CUDA runtime services visible to plain C++ (no CUDA headers needed):
// device selection for a scope, synchronisation, and the caching
// allocator's statistics (tests use them to show that a steady-state
// training step does not call cudaMalloc).
#pragma once
#include <cstddef>
#include <cstdint>

namespace gl::cuda {

// Makes `device` current for the scope, restoring the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

void synchronize(int device);  // waits for the device's stream

// f32 matrix products on the tensor cores in TF32 (10-bit mantissa inputs,
// f32 accumulation; about 3e-4 relative error instead of ~1e-6). Off by
// default, as in PyTorch: the f32 path is the numerical reference and the
// parity tests run with it off. Process-wide, all devices.
void set_tf32(bool on);
bool tf32_enabled();

struct AllocatorStats {
  int64_t cuda_malloc_calls = 0;  // cudaMalloc calls since start
  int64_t cache_hits = 0;         // allocations served from the cache
  size_t bytes_in_use = 0;
  size_t bytes_reserved = 0;      // in use + cached
};
AllocatorStats allocator_stats(int device);
void empty_cache(int device);  // returns cached blocks to the driver

}  // namespace gl::cuda
