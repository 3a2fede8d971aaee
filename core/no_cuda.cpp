// Linked instead of the cuda/ backend when gridlock is built without nvcc:
// every entry point says so, and no CUDA tensor can ever be created.
#include "core/device_hooks.h"
#include "core/error.h"

namespace gl::cuda_hooks {
namespace {
[[noreturn]] void unavailable(const char* what) {
  GL_CHECK(false, what, ": gridlock was built without CUDA (nvcc was not found at configure time)");
}
}  // namespace

bool built() { return false; }
int device_count() { return 0; }
void* alloc(size_t, int) { unavailable("cuda alloc"); }
void free(void*, int) {}
void memcpy(void*, Device, const void*, Device, size_t) { unavailable("cuda memcpy"); }
void copy_strided(int, void*, const int64_t*, const void*, const int64_t*, const int64_t*, int,
                  size_t) {
  unavailable("cuda copy_strided");
}
void convert(int, void*, DType, const void*, DType, int64_t) { unavailable("cuda convert"); }
void fill(int, void*, DType, int64_t, double) { unavailable("cuda fill"); }
void random(int, void*, DType, int64_t, uint64_t, uint64_t, RandomKind, double, double) {
  unavailable("cuda random");
}
}  // namespace gl::cuda_hooks

// cuda/runtime.h services: nothing to guard or synchronise without CUDA.
#include "cuda/runtime.h"

namespace gl::cuda {
DeviceGuard::DeviceGuard(int) {}
DeviceGuard::~DeviceGuard() {}
void synchronize(int) {}
int64_t host_waits() { return 0; }
AllocatorStats allocator_stats(int) { return {}; }
void empty_cache(int) {}
void set_tf32(bool on) {
  GL_CHECK(!on, "TF32: gridlock was built without CUDA (nvcc was not found at configure time)");
}
bool tf32_enabled() { return false; }
Readback::Readback(size_t nbytes) : nbytes_(nbytes) {}
Readback::~Readback() {}
void Readback::start(const void*, int) { GL_CHECK(false, "Readback: gridlock was built without CUDA"); }
const void* Readback::wait() {
  GL_CHECK(false, "Readback: gridlock was built without CUDA");
  return nullptr;
}
}  // namespace gl::cuda

// cuda/attention.h's kernel choice: a setting with nothing to choose from.
#include "cuda/attention.h"

namespace gl::cuda {
void set_attention_mma(bool) {}
bool attention_mma_enabled() { return false; }
}  // namespace gl::cuda
