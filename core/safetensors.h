// safetensors (https://github.com/huggingface/safetensors, format spec in
// its README): 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//  "__metadata__": {str: str}}, then the data buffer; offsets are relative
// to the buffer, tensors are row-major little-endian.
//
// Reading memory-maps the file and validates the whole header before any
// tensor is used (offsets inside the buffer, sizes matching dtype x shape,
// no overlaps); every error names the file and what is wrong. Writing goes
// to a temporary file in the same directory, then rename(), so a crash never
// leaves a half-written checkpoint under the final name.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/tensor.h"

namespace gl {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  Shape shape;
  size_t begin = 0, end = 0;  // byte range within the data buffer
};

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);  // mmap + validate
  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;  // nullptr if absent
  // A copy of tensor `name` on `device`, converted to `dtype` (default: as stored).
  Tensor load(const std::string& name, Device device = Device::cpu()) const;
  Tensor load(const std::string& name, DType dtype, Device device = Device::cpu()) const;
  // Tensors stored in a safetensors dtype gridlock has no DType for (BOOL,
  // U8, I8, U32, ...; e.g. the bool causal-mask buffers old Pythia
  // checkpoints carry): validated like the others but left out of
  // entries(); name -> dtype string. load() of one says why it cannot.
  const std::map<std::string, std::string>& unsupported() const { return unsupported_; }

 private:
  std::string path_;
  std::shared_ptr<const void> mapping_;  // keeps the mmap alive (munmap on release)
  const char* data_ = nullptr;           // start of the data buffer
  size_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::string> unsupported_;
};

// Writes `tensors` (any device; stored as their dtype) in the given order.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The tensors of a Hugging Face model directory: model.safetensors, or the
// shards listed by model.safetensors.index.json ({"weight_map": {name: file}}).
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open_dir(const std::string& dir);
  std::vector<std::string> names() const;  // every tensor, in file order
  const SafetensorsEntry& entry(const std::string& name) const;  // throws naming dir + tensor
  Tensor load(const std::string& name, DType dtype, Device device = Device::cpu()) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_of_;  // tensor -> index in files_
  std::vector<std::string> order_;
};

// safetensors dtype strings <-> DType ("F32", "F16", "BF16", "F64", "I32", "I64", "U16").
const char* safetensors_dtype_name(DType dt);
DType safetensors_dtype_from_name(const std::string& name, const std::string& where);

}  // namespace gl
