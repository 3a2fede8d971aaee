// A read-only memory map of a whole file (POSIX mmap), released by the
// destructor. Checkpoints are mapped rather than read so that opening a
// multi-GB file costs nothing until tensors are actually loaded, and the
// page cache is shared between processes reading the same checkpoint.
//
// Invariants: data() points at size() readable bytes for the object's whole
// lifetime (nullptr when the file is empty: mmap cannot map zero bytes);
// the mapping is private and read-only, so a writer replacing the file by
// rename() (as save_safetensors does) never changes what a reader sees.
// Every error names the path and the system's reason.
#pragma once
#include <cstddef>
#include <string>

namespace gl {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws naming `path`
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();
  std::string path_;
  const char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace gl
