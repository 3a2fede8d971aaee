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
// How often the host has waited for a device's work so far (all devices):
// synchronize(), copies to the host or between devices, a staging slot
// still in flight, the allocator's release. Readback::wait() is not
// counted: it is the sync-free step's planned read. Tests check that a
// steady-state sync-free step adds none.
int64_t host_waits();

// f32 matrix products on the tensor cores in TF32 (10-bit mantissa inputs,
// f32 accumulation; about 3e-4 relative error instead of ~1e-6). Off by
// default, as in PyTorch: the f32 path is the numerical reference and the
// parity tests run with it off. Process-wide, all devices.
void set_tf32(bool on);
bool tf32_enabled();

// A few bytes of device memory the host reads later without draining the
// stream now (a sync-free step's checks, optim/step_gate.h): start()
// queues their copy into pinned host memory behind an event, wait() blocks
// until that copy has landed -- by then, a step later, usually long done.
class Readback {
 public:
  explicit Readback(size_t nbytes);
  ~Readback();
  Readback(const Readback&) = delete;
  Readback& operator=(const Readback&) = delete;
  void start(const void* device_src, int device);
  const void* wait();  // the bytes of the last start()

 private:
  size_t nbytes_ = 0;
  int device_ = -1;
  void* host_ = nullptr;   // pinned
  void* event_ = nullptr;  // cudaEvent_t
};

struct AllocatorStats {
  int64_t cuda_malloc_calls = 0;  // cudaMalloc calls since start
  int64_t cache_hits = 0;         // allocations served from the cache
  size_t bytes_in_use = 0;
  size_t bytes_reserved = 0;      // in use + cached
};
AllocatorStats allocator_stats(int device);
void empty_cache(int device);  // returns cached blocks to the driver

}  // namespace gl::cuda
