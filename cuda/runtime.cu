// Error checks, per-device streams and cuBLAS handles, and the caching
// allocator behind CUDA tensors.
//
// Allocator: freed blocks go to a per-device cache (a size-ordered
// multimap) and are reused for any later request of at most twice their
// size, so a training step that allocates the same buffers every iteration
// stops calling cudaMalloc after the first one. All work runs on one stream
// per device, so a block freed on the host can be handed out again at once:
// the stream orders the old and new users. On out-of-memory the cache is
// released and the allocation retried once.
//
// Host-to-device copies up to 8 MiB return without waiting for the stream
// (pinned staging slots, see Staging below); copies to the host wait.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/device_hooks.h"
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace gl::cuda {

void check(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    throw_error(file, line, str("CUDA error ", cudaGetErrorName(err), " (",
                                cudaGetErrorString(err), ") in ", what));
}

void check_cublas(cublasStatus_t st, const char* what, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw_error(file, line, str("cuBLAS error ", cublasGetStatusName(st), " in ", what));
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw_error(file, line, str("CUDA kernel ", kernel, " failed to launch: ",
                                cudaGetErrorName(err), " (", cudaGetErrorString(err), ")"));
}

namespace {

struct DeviceState {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  bool tf32 = false;  // the math mode the handle was last given
};

std::atomic<bool> g_tf32{false};
std::atomic<int64_t> g_host_waits{0};

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

DeviceState& device_state(int device) {
  static std::mutex mu;
  // Leaked on purpose: tensors destroyed during static destruction must
  // still find their device state and pool.
  static auto* states = new std::unordered_map<int, DeviceState>();
  std::lock_guard<std::mutex> lock(mu);
  DeviceState& s = (*states)[device];
  if (!s.stream) {
    DeviceGuard guard(device);
    CUDA_CHECK(cudaStreamCreate(&s.stream));
    CUBLAS_CHECK(cublasCreate(&s.cublas));
    CUBLAS_CHECK(cublasSetStream(s.cublas, s.stream));
  }
  return s;
}

struct Pool {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;  // size -> block
  std::unordered_map<void*, size_t> block_size;
  AllocatorStats stats;
};

Pool& pool(int device) {
  static std::mutex mu;
  static auto* pools = new std::unordered_map<int, Pool>();
  std::lock_guard<std::mutex> lock(mu);
  return (*pools)[device];
}

void release_cached(Pool& p, int device) {
  DeviceGuard guard(device);
  g_host_waits.fetch_add(1, std::memory_order_relaxed);
  CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& [size, ptr] : p.free_blocks) {
    CUDA_CHECK(cudaFree(ptr));
    p.block_size.erase(ptr);
    p.stats.bytes_reserved -= size;
  }
  p.free_blocks.clear();
}

}  // namespace

DeviceGuard::DeviceGuard(int device) {
  CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // destructors must not throw
}

cudaStream_t current_stream() { return device_state(current_device()).stream; }
cublasHandle_t cublas_handle() {
  DeviceState& s = device_state(current_device());
  const bool want = g_tf32.load(std::memory_order_relaxed);
  if (s.tf32 != want) {
    CUBLAS_CHECK(cublasSetMathMode(s.cublas, want ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    s.tf32 = want;
  }
  return s.cublas;
}

void set_tf32(bool on) { g_tf32.store(on); }
bool tf32_enabled() { return g_tf32.load(); }

void synchronize(int device) {
  DeviceGuard guard(device);
  g_host_waits.fetch_add(1, std::memory_order_relaxed);
  CUDA_CHECK(cudaStreamSynchronize(device_state(device).stream));
}

int64_t host_waits() { return g_host_waits.load(std::memory_order_relaxed); }

AllocatorStats allocator_stats(int device) {
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  return p.stats;
}

void empty_cache(int device) {
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  release_cached(p, device);
}

}  // namespace gl::cuda

namespace gl::cuda_hooks {

bool built() { return true; }

int device_count() {
  int n = 0;
  // No driver or no device both mean "no CUDA here", not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

void* alloc(size_t nbytes, int device) {
  using namespace gl::cuda;
  // 512-byte granularity keeps every block aligned for vector loads.
  const size_t size = ((nbytes == 0 ? 1 : nbytes) + 511) / 512 * 512;
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.free_blocks.lower_bound(size);
  if (it != p.free_blocks.end() && it->first <= 2 * size) {
    void* ptr = it->second;
    p.stats.bytes_in_use += it->first;
    p.stats.cache_hits++;
    p.free_blocks.erase(it);
    return ptr;
  }
  DeviceGuard guard(device);
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, size);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    release_cached(p, device);
    err = cudaMalloc(&ptr, size);
  }
  if (err != cudaSuccess) {
    cudaGetLastError();
    GL_CHECK(false, "CUDA out of memory on cuda:", device, " allocating ", nbytes,
             " bytes (", p.stats.bytes_in_use, " bytes in use by gridlock): ",
             cudaGetErrorString(err));
  }
  p.stats.cuda_malloc_calls++;
  p.stats.bytes_in_use += size;
  p.stats.bytes_reserved += size;
  p.block_size[ptr] = size;
  return ptr;
}

void free(void* ptr, int device) {
  using namespace gl::cuda;
  if (!ptr) return;
  Pool& p = pool(device);
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.block_size.find(ptr);
  if (it == p.block_size.end()) return;  // not ours: never happens, never crash in a destructor
  p.stats.bytes_in_use -= it->second;
  p.free_blocks.emplace(it->second, ptr);
}

namespace {

// Host-to-device copies of up to kSlotBytes go through a ring of pinned
// staging buffers per device: the bytes are copied into the next slot and
// the transfer is queued with an event behind it, so the call returns
// without waiting for the stream (the caller may free or reuse its memory
// at once: the slot holds the bytes). A training step's batch upload then
// no longer drains the GPU of the previous step's work. A slot is reused
// once its event has completed, so the host waits only when kSlots copies
// are still in flight. A sync-free step (optim/step_gate.h) runs a whole
// step ahead of the GPU, with a few copies per micro-batch, hence 32 slots;
// each is allocated at its first use and grown to the largest copy it has
// carried (batches are far below kSlotBytes, so the ring stays small).
// Larger copies, and every copy to the host (which the host reads right
// after), synchronise the stream.
struct Staging {
  static constexpr size_t kSlotBytes = size_t(8) << 20;
  static constexpr int kSlots = 32;
  std::mutex mu;
  void* buf[kSlots] = {};
  size_t cap[kSlots] = {};
  cudaEvent_t done[kSlots] = {};
  int next = 0;
};

Staging& staging(int device) {
  static std::mutex mu;
  static auto* all = new std::unordered_map<int, Staging>();  // leaked, as device_state's
  std::lock_guard<std::mutex> lock(mu);
  return (*all)[device];
}

}  // namespace

void memcpy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  using namespace gl::cuda;
  if (nbytes == 0) return;
  const int dev = dst_device.is_cuda() ? dst_device.index : src_device.index;
  DeviceGuard guard(dev);
  cudaStream_t s = device_state(dev).stream;
  if (dst_device.is_cuda() && !src_device.is_cuda() && nbytes <= Staging::kSlotBytes) {
    Staging& st = staging(dev);
    std::lock_guard<std::mutex> lock(st.mu);
    const int k = st.next;
    st.next = (k + 1) % Staging::kSlots;
    if (!st.done[k]) {
      CUDA_CHECK(cudaEventCreateWithFlags(&st.done[k], cudaEventDisableTiming));
    } else {
      const cudaError_t q = cudaEventQuery(st.done[k]);
      if (q == cudaErrorNotReady) {
        (void)cudaGetLastError();  // "not ready" is no error: clear it, as PyTorch's allocator does
        g_host_waits.fetch_add(1, std::memory_order_relaxed);
        CUDA_CHECK(cudaEventSynchronize(st.done[k]));  // the slot's last transfer has left it
      } else {
        CUDA_CHECK(q);
      }
    }
    if (st.cap[k] < nbytes) {
      if (st.buf[k]) CUDA_CHECK(cudaFreeHost(st.buf[k]));
      st.cap[k] = std::max(nbytes, size_t(64) << 10);
      CUDA_CHECK(cudaHostAlloc(&st.buf[k], st.cap[k], cudaHostAllocDefault));
    }
    std::memcpy(st.buf[k], src, nbytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, st.buf[k], nbytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaEventRecord(st.done[k], s));
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index != src_device.index) {
    // Both streams must be idle: the source may still be being written.
    synchronize(src_device.index);
    CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, s));
  } else {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, s));
  }
  // Host memory may be freed or read right after return.
  gl::cuda::g_host_waits.fetch_add(1, std::memory_order_relaxed);
  CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace gl::cuda_hooks

namespace gl::cuda {

Readback::Readback(size_t nbytes) : nbytes_(nbytes) {}

Readback::~Readback() {
  // No throwing from a destructor: errors here are ignored.
  if (event_) {
    DeviceGuard guard(device_);
    cudaEventSynchronize(static_cast<cudaEvent_t>(event_));
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  if (host_) cudaFreeHost(host_);
}

void Readback::start(const void* device_src, int device) {
  GL_CHECK(device_ == -1 || device_ == device, "Readback: started on device ", device, " after ", device_);
  device_ = device;
  DeviceGuard guard(device);
  if (!host_) {
    CUDA_CHECK(cudaHostAlloc(&host_, nbytes_, cudaHostAllocDefault));
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    event_ = e;
  } else {
    // The previous copy must have landed before its buffer is overwritten.
    CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
  }
  cudaStream_t s = current_stream();
  CUDA_CHECK(cudaMemcpyAsync(host_, device_src, nbytes_, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), s));
}

const void* Readback::wait() {
  GL_CHECK(event_ != nullptr, "Readback: wait() before start()");
  DeviceGuard guard(device_);
  CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)));
  return host_;
}

}  // namespace gl::cuda
