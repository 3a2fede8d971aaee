// CPU storage: 64-byte alignment for every size, and large blocks reused
// from one "step" to the next instead of taken fresh from the kernel (the
// page faults of re-faulting a 64 MB logits buffer every training step).
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/storage.h"

using namespace gl;

namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Sanitizer runtimes replace malloc and ignore mallopt: reuse is theirs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

}  // namespace

TEST_CASE("cpu_alloc: 64-byte aligned at every size, writable to the end") {
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(63), size_t(64), size_t(65), size_t(4096),
                   size_t(1) << 20, (size_t(1) << 20) + 3}) {
    void* p = cpu_alloc(n);
    CHECK(reinterpret_cast<uintptr_t>(p) % kCpuAlignment == 0);
    if (n) std::memset(p, 0xAB, n);
    cpu_free(p);
  }
  cpu_free(nullptr);  // like free(nullptr)
}

TEST_CASE("cpu storage: large blocks are reused across steps, not re-faulted" *
          doctest::skip(kSanitized)) {
  // Two 67 MB blocks (a tiny model's logits and their gradient) allocated,
  // written and freed per step. The first step faults their pages in
  // (17k 4 KiB pages each); later steps must find them in the heap.
  const size_t n = size_t(67) << 20;
  long later = 0;
  for (int step = 0; step < 4; ++step) {
    const long f0 = minor_faults();
    {
      Storage a(n, Device::cpu()), b(n, Device::cpu());
      std::memset(a.data, 1, n);
      std::memset(b.data, 2, n);
    }
    if (step >= 2) later += minor_faults() - f0;
  }
  INFO("minor page faults in steps 3 and 4: " << later);
  CHECK(later < 1000);  // aligned_alloc gave ~34k per step
}
