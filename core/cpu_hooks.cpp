// CPU implementations of the Tensor-level primitives in core/device_hooks.h.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/device_hooks.h"
#include "core/error.h"
#include "core/philox.h"

namespace gl::cpu_hooks {

void copy_strided(void* dst, const int64_t* dst_strides, const void* src,
                  const int64_t* src_strides, const int64_t* shape, int ndim, size_t elsize) {
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) numel *= shape[d];
  if (numel == 0) return;
  const int64_t inner = ndim > 0 ? shape[ndim - 1] : 1;
  const int64_t in_step = ndim > 0 ? src_strides[ndim - 1] : 1;
  const int64_t out_step = ndim > 0 ? dst_strides[ndim - 1] : 1;
  const int64_t rows = numel / inner;
  auto* out = static_cast<char*>(dst);
  const auto* in = static_cast<const char*>(src);
  const auto es = int64_t(elsize);
#pragma omp parallel for schedule(static) if (numel > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    // Decompose the row index into the offsets of its first element.
    int64_t rem = r, src_off = 0, dst_off = 0;
    for (int d = ndim - 2; d >= 0; --d) {
      src_off += (rem % shape[d]) * src_strides[d];
      dst_off += (rem % shape[d]) * dst_strides[d];
      rem /= shape[d];
    }
    char* o = out + dst_off * es;
    const char* i = in + src_off * es;
    if (in_step == 1 && out_step == 1) {
      std::memcpy(o, i, size_t(inner * es));
    } else {
      for (int64_t j = 0; j < inner; ++j)
        std::memcpy(o + j * out_step * es, i + j * in_step * es, elsize);
    }
  }
}

namespace {

double load(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F64: return static_cast<const double*>(p)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::I32: return static_cast<const int32_t*>(p)[i];
    case DType::I64: return double(static_cast<const int64_t*>(p)[i]);
    case DType::U16: return static_cast<const uint16_t*>(p)[i];
  }
  return 0.0;
}

// Float -> integer truncates toward zero like torch's .to(int); values
// outside the target range (and NaN) saturate instead of being undefined.
template <class I>
I to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v <= double(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (v >= double(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return I(v);
}

void store(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(p)[i] = float(v); break;
    case DType::F64: static_cast<double*>(p)[i] = v; break;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(float(v)); break;
    case DType::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(float(v)); break;
    case DType::I32: static_cast<int32_t*>(p)[i] = to_int<int32_t>(v); break;
    case DType::I64: static_cast<int64_t*>(p)[i] = to_int<int64_t>(v); break;
    case DType::U16: static_cast<uint16_t*>(p)[i] = to_int<uint16_t>(v); break;
  }
}

}  // namespace

void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n) {
  if (dst_dtype == DType::I64 && src_dtype == DType::I64) {  // exact beyond 2^53
    std::memcpy(dst, src, size_t(n) * 8);
    return;
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) store(dst, dst_dtype, i, load(src, src_dtype, i));
}

namespace {
template <class U>
void fill_bits(void* dst, int64_t n, U bits) {
  U* d = static_cast<U*>(dst);
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) d[i] = bits;
}
}  // namespace

// The value is converted once (store() on one element, the same rounding as
// an element-wise store) and its bit pattern replicated: a plain vectorised
// loop instead of a dtype switch per element (zeroing the 154 MB gradient
// of Pythia-160m's embedding took about a tenth of a second).
void fill(void* dst, DType dtype, int64_t n, double value) {
  alignas(8) unsigned char one[8] = {};
  store(one, dtype, 0, value);
  switch (dtype_size(dtype)) {
    case 2: { uint16_t b; std::memcpy(&b, one, 2); fill_bits(dst, n, b); return; }
    case 4: { uint32_t b; std::memcpy(&b, one, 4); fill_bits(dst, n, b); return; }
    case 8: { uint64_t b; std::memcpy(&b, one, 8); fill_bits(dst, n, b); return; }
    default: break;
  }
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) store(dst, dtype, i, value);
}

void random(void* dst, DType dtype, int64_t n, uint64_t seed, uint64_t offset, RandomKind kind,
            double a, double b) {
#pragma omp parallel for schedule(static) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i) {
    const double v = kind == RandomKind::UNIFORM
                         ? std::fma(b - a, double(philox_uniform(seed, offset, uint64_t(i))), a)
                         : std::fma(b, philox_normal(seed, offset, uint64_t(i)), a);
    store(dst, dtype, i, v);
  }
}

}  // namespace gl::cpu_hooks
