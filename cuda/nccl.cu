#include "cuda/nccl.h"

#include <dlfcn.h>
#include <nccl.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "cuda/common.cuh"

namespace gl::cuda {

namespace {

// The NCCL entry points we call, resolved from the loaded library.
struct NcclApi {
  ncclResult_t (*get_unique_id)(ncclUniqueId*) = nullptr;
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*reduce_scatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t,
                                 ncclComm_t, cudaStream_t) = nullptr;
  ncclResult_t (*all_gather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t,
                             cudaStream_t) = nullptr;
  const char* (*error_string)(ncclResult_t) = nullptr;
  std::string error;  // why loading failed
};

const NcclApi& api() {
  static NcclApi a;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("GRIDLOCK_NCCL_LIB");
    const std::string lib = env && *env ? env : "libnccl.so.2";
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* why = dlerror();
      a.error = "cannot load NCCL (" + lib + ": " + (why ? why : "unknown") +
                "); set GRIDLOCK_NCCL_LIB to the path of libnccl.so.2";
      return;
    }
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && a.error.empty()) a.error = lib + " has no symbol " + name;
    };
    sym(a.get_unique_id, "ncclGetUniqueId");
    sym(a.comm_init_rank, "ncclCommInitRank");
    sym(a.comm_destroy, "ncclCommDestroy");
    sym(a.reduce_scatter, "ncclReduceScatter");
    sym(a.all_gather, "ncclAllGather");
    sym(a.error_string, "ncclGetErrorString");
  });
  return a;
}

void nccl_check(ncclResult_t r, const char* what, const char* file, int line) {
  if (r == ncclSuccess) return;
  throw_error(file, line, str("NCCL error in ", what, ": ", api().error_string(r),
                              " (NCCL_DEBUG=WARN prints NCCL's own reason)"));
}
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

__global__ void divide_kernel(float* d, size_t n, float by) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(blockDim.x) * gridDim.x)
    d[i] /= by;
}

}  // namespace

std::string nccl_unavailable_reason() { return api().error; }

std::string device_identity() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  char bus[64] = {0};
  CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), dev));
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + "/" + bus;
}

NcclGroup::NcclGroup(int rank, int size,
                     const std::function<void(void*, size_t)>& broadcast_from_0)
    : rank_(rank), size_(size) {
  const NcclApi& a = api();
  GL_CHECK(a.error.empty(), a.error);
  ncclUniqueId id{};
  if (rank == 0) NCCL_CHECK(a.get_unique_id(&id));
  broadcast_from_0(&id, sizeof(id));
  ncclComm_t comm = nullptr;
  NCCL_CHECK(a.comm_init_rank(&comm, size, id, rank));
  comm_ = comm;
}

NcclGroup::~NcclGroup() {
  // Destructors must not throw.
  if (comm_) api().comm_destroy(static_cast<ncclComm_t>(comm_));
  if (side_stream_) cudaStreamDestroy(static_cast<cudaStream_t>(side_stream_));
}

void NcclGroup::enqueue_mean(float* data, size_t n, void* stream) {
  GL_CHECK(n % size_t(size_) == 0, "NcclGroup::allreduce_mean: ", n,
           " elements do not split into ", size_, " equal shards");
  if (n == 0) return;
  const NcclApi& a = api();
  const size_t shard = n / size_t(size_);
  float* mine = data + size_t(rank_) * shard;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  ncclComm_t comm = static_cast<ncclComm_t>(comm_);
  NCCL_CHECK(a.reduce_scatter(data, mine, shard, ncclFloat32, ncclSum, comm, s));
  divide_kernel<<<blocks_for(int64_t(shard), 256), 256, 0, s>>>(mine, shard, float(size_));
  CUDA_CHECK_LAUNCH("divide_kernel");
  NCCL_CHECK(a.all_gather(mine, data, shard, ncclFloat32, comm, s));
}

void NcclGroup::allreduce_mean(float* data, size_t n) { enqueue_mean(data, n, current_stream()); }

// One event per hand-over: the waiting stream keeps what it needs of an
// event destroyed after cudaStreamWaitEvent was queued.
static void stream_waits_for(cudaStream_t waiter, cudaStream_t producer) {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(e, producer));
  CUDA_CHECK(cudaStreamWaitEvent(waiter, e, 0));
  CUDA_CHECK(cudaEventDestroy(e));
}

void NcclGroup::allreduce_mean_async(float* data, size_t n) {
  if (!side_stream_) {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    side_stream_ = s;
  }
  cudaStream_t side = static_cast<cudaStream_t>(side_stream_);
  stream_waits_for(side, current_stream());  // the bucket's grads are packed
  enqueue_mean(data, n, side);
}

void NcclGroup::join_async() {
  if (side_stream_) stream_waits_for(current_stream(), static_cast<cudaStream_t>(side_stream_));
}

}  // namespace gl::cuda
