// GGUF v3, the llama.cpp / ggml model container (ggml docs/gguf.md; spec.md
// 4.2). All values little-endian:
//
//   uint32 magic "GGUF" (bytes 47 47 55 46); uint32 version = 3;
//   uint64 tensor_count; uint64 metadata_kv_count;
//   metadata_kv[]: { string key; uint32 value_type; value }
//   tensor_info[]: { string name; uint32 n_dims; uint64 ne[n_dims];
//                    uint32 ggml_type; uint64 offset }
//   zero padding to ALIGNMENT; tensor data (each tensor at data start +
//   offset, offset % ALIGNMENT == 0, zero padding after each tensor)
//   string = { uint64 len; char[len] } (no NUL);
//   value_type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
//               8 string, 9 array { uint32 type; uint64 n; values }, 10 u64,
//               11 i64, 12 f64
//   ALIGNMENT = metadata "general.alignment" (uint32, power of two), else 32.
//
// ne[0] is the fastest-varying dimension: a row-major torch [out, in]
// matrix is stored as ne = {in, out}, and quantization blocks run along ne0.
//
// Writing goes to "<path>.tmp.<pid>", is fsync'ed, then renamed over `path`,
// so a crash never leaves a half-written model under the final name. The
// writer lays tensors out in the order given, each offset the running sum of
// the padded sizes (what ggml's own reader requires).
//
// Reading memory-maps the file and validates everything before returning:
// magic, version, counts against the bytes left, string lengths, value and
// ggml types, duplicate keys or tensor names, dims (1..4, non-negative, no
// overflow, ne0 a multiple of the block size), the alignment key, offsets
// aligned, inside the file and not overlapping. Every error names the file
// and the field (with its byte offset where the file is malformed).
// Arrays of arrays (legal GGUF, used by no llama.cpp model) are refused.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quant/types.h"

namespace gl {

enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12
};
const char* gguf_type_name(GgufType t);  // "uint32", "array", ...

// One metadata value: a scalar, a string, or an array of scalars or of
// strings. Numbers are kept as the bit pattern of their GGUF type (zero-
// extended to 64 bits), so a round trip is exact for every type, and the
// typed getters below convert (throwing, naming the key, on a type mismatch).
class GgufValue {
 public:
  GgufValue() = default;
  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f64(double v);
  // Arrays: elements of a numeric/bool type, given as int64 / double values
  // (each must be representable in `elem`), or strings.
  static GgufValue int_array(GgufType elem, const std::vector<int64_t>& v);
  static GgufValue float_array(GgufType elem, const std::vector<double>& v);
  static GgufValue str_array(std::vector<std::string> v);
  // Raw constructor used by the reader: bit patterns of `elem` elements.
  static GgufValue from_bits(GgufType type, GgufType elem, std::vector<uint64_t> bits,
                             std::vector<std::string> strings);

  GgufType type() const { return type_; }
  GgufType elem_type() const { return elem_; }  // for arrays (type() == ARRAY)
  size_t size() const;                          // array length (1 for a scalar)

  // Scalar getters; `key` names the value in errors. as_int accepts any
  // integer type (and bool), as_double any number.
  int64_t as_int(const std::string& key) const;
  uint64_t as_u64(const std::string& key) const;
  double as_double(const std::string& key) const;
  bool as_bool(const std::string& key) const;
  const std::string& as_string(const std::string& key) const;
  // Array getters (elements converted as the scalar getters do).
  std::vector<int64_t> int_elems(const std::string& key) const;
  std::vector<double> float_elems(const std::string& key) const;
  const std::vector<std::string>& str_elems(const std::string& key) const;

  const std::vector<uint64_t>& bits() const { return bits_; }
  bool operator==(const GgufValue& o) const;
  bool operator!=(const GgufValue& o) const { return !(*this == o); }

 private:
  GgufType type_ = GgufType::UINT8;
  GgufType elem_ = GgufType::UINT8;  // element type of an array; == type_ for scalars
  std::vector<uint64_t> bits_;       // numeric/bool elements
  std::vector<std::string> strings_; // string elements
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

// What the writer takes: a tensor's raw bytes in its ggml encoding.
struct GgufTensor {
  std::string name;            // < 64 bytes (ggml's GGML_MAX_NAME includes the NUL)
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;     // ne[0] fastest; 1..4 dims
  std::vector<uint8_t> data;   // exactly gguf_tensor_bytes(type, ne) bytes
};

// Bytes of a tensor of `type` and dims `ne` (ne0 % block size == 0 for the
// quantized types). `what` names the tensor in errors.
uint64_t gguf_tensor_bytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& what);

// Writes metadata (in order) and tensors (in order) to `path` atomically.
// The alignment is metadata "general.alignment" when present (must be a
// uint32 power of two), else 32. Errors name the path and the key/tensor.
void write_gguf(const std::string& path, const std::vector<GgufKV>& metadata,
                const std::vector<GgufTensor>& tensors);

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> ne;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// A validated, memory-mapped GGUF file.
class GgufReader {
 public:
  static GgufReader open(const std::string& path);
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // file offset of tensor data
  const std::vector<GgufKV>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;    // nullptr if absent
  const GgufValue& at(const std::string& key) const;      // throws naming file + key
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  const GgufTensorInfo& tensor(const std::string& name) const;  // throws naming file + tensor
  // The tensor's bytes (nbytes of them), valid while the reader lives.
  const uint8_t* data(const GgufTensorInfo& t) const;
  // The tensor decoded to f32 (ggml_dequantize for every supported type).
  std::vector<float> dequantize(const GgufTensorInfo& t) const;

 private:
  std::string path_;
  std::shared_ptr<const void> mapping_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKV> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace gl
