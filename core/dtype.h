// Element types and device descriptors.
// bf16 and f16 are storage types: they are converted to f32 with
// round-to-nearest-even, matching torch's .to(bfloat16/float16) and CUDA's
// __float2bfloat16_rn/__float2half_rn, so a tensor converted on either
// device holds the same bits.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace gl {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, U16 };

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
DType dtype_from_name(const std::string& name);  // "f32", "bf16", ...
inline bool is_floating(DType dt) {
  return dt == DType::F32 || dt == DType::F64 || dt == DType::BF16 || dt == DType::F16;
}

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string name() const;  // "cpu", "cuda:0"
  static Device cpu() { return Device{DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return Device{DeviceType::CUDA, index}; }
};
Device device_from_name(const std::string& name);  // "cpu", "cuda", "cuda:1"

// --- 16-bit float conversions (host side) -------------------------------

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return uint16_t(u >> 16);
}
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f);  // IEEE 754 binary16, RNE, subnormals and inf
float f16_to_f32(uint16_t h);

}  // namespace gl
