// Read-only file mapping; see core/mmap.h.
#include "core/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace gl {

namespace {

// Closes the descriptor on every path out of the constructor: the mapping
// stays valid after close(), so the descriptor is never needed afterwards.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  GL_CHECK(fd >= 0, path, ": cannot open for reading: ", std::strerror(errno));
  FdGuard guard{fd};
  struct stat st;
  GL_CHECK(::fstat(fd, &st) == 0, path, ": cannot stat: ", std::strerror(errno));
  GL_CHECK(!S_ISDIR(st.st_mode), path, ": is a directory, expected a file");
  GL_CHECK(S_ISREG(st.st_mode), path, ": not a regular file");
  size_ = size_t(st.st_size);
  if (size_ == 0) return;  // nothing to map; data() stays nullptr
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  GL_CHECK(p != MAP_FAILED, path, ": cannot mmap ", size_, " bytes: ", std::strerror(errno));
  data_ = static_cast<const char*>(p);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::release() {
  // munmap only fails for arguments we never produce; nothing to report.
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace gl
