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
  // Low-precision shadow: a bf16 or f16 copy of these f32 values, rounded
  // exactly as Tensor::to(DType) rounds, written by the op that created
  // the storage in the same kernel as the values (the fused fake_quantize
  // under run.precision) so that the matrix products read it instead of
  // casting the operand again (autograd/ops/matmul.cpp). Read and attached
  // through Tensor::lowp_shadow / attach_lowp_shadow, which accept only an
  // f32 view of the whole storage, contiguous from element 0.
  // Why it cannot go stale: only ops whose output storage is fresh and is
  // never written after creation attach one (no in-place op takes an op's
  // forward output). Tensor::copy_ and fill_ drop it all the same; a raw
  // kernel writing through data_ptr() would not, hence the rule.
  std::shared_ptr<Storage> lowp_shadow;
  DType lowp_shadow_dtype = DType::F32;  // BF16 or F16 while lowp_shadow is set
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

void* cpu_alloc(size_t nbytes);  // aligned, never returns null (throws)
void cpu_free(void* p);

}  // namespace gl
