// gridlock token shard reader and atomic writer; layout and invariants in
// data/token_shard.h.
#include "data/token_shard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace gl {

namespace {

constexpr char kMagic[8] = {'G', 'L', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kVersion = 1;

template <class T>
T load_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the host is little-endian (x86-64, aarch64)
  return v;
}

template <class T>
void store_le(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

void encode_header(char* h, TokenDType dtype, uint64_t count, uint64_t vocab) {
  std::memcpy(h, kMagic, 8);
  store_le<uint32_t>(h + 8, kVersion);
  store_le<uint32_t>(h + 12, uint32_t(dtype));
  store_le<uint64_t>(h + 16, count);
  store_le<uint64_t>(h + 24, vocab);
}

}  // namespace

// --- reader ---------------------------------------------------------------

TokenShard TokenShard::open(const std::string& path) {
  TokenShard s;
  s.file_.emplace(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  GL_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  s.fd_ = std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  const MappedFile& f = *s.file_;
  const char* p = f.data();
  GL_CHECK(f.size() >= kTokenShardHeaderBytes, path, ": truncated: ", f.size(),
           " bytes, the token shard header alone needs ", kTokenShardHeaderBytes);
  GL_CHECK(std::memcmp(p, kMagic, 8) == 0, path,
           ": bad magic, not a gridlock token shard (expected \"GLTOKENS\")");
  const uint32_t version = load_le<uint32_t>(p + 8);
  GL_CHECK(version == kVersion, path, ": unsupported token shard version ", version,
           " (expected ", kVersion, ")");
  const uint32_t code = load_le<uint32_t>(p + 12);
  GL_CHECK(code == 2 || code == 4, path, ": unsupported token dtype code ", code,
           " (expected 2 = uint16 or 4 = uint32)");
  s.dtype_ = TokenDType(code);
  s.count_ = load_le<uint64_t>(p + 16);
  s.vocab_size_ = load_le<uint64_t>(p + 24);
  GL_CHECK(s.vocab_size_ >= 1, path, ": vocab size 0 in the header");
  uint64_t expect;
  const bool ok = !__builtin_mul_overflow(s.count_, uint64_t(code), &expect) &&
                  !__builtin_add_overflow(expect, uint64_t(kTokenShardHeaderBytes), &expect);
  GL_CHECK(ok, path, ": token count ", s.count_, " overflows");
  GL_CHECK(f.size() == expect, path, ": ", f.size() < expect ? "truncated" : "trailing bytes",
           ": ", f.size(), " bytes, expected ", expect, " = 32 + ", s.count_, " tokens x ",
           code);
  return s;
}

void TokenShard::read(size_t begin, size_t n, int32_t* out) const {
  GL_CHECK(begin <= count_ && n <= count_ - begin, path(), ": tokens [", begin, ", ",
           begin + n, ") outside the ", count_, " tokens of the shard");
  // A file cut under the mapping would SIGBUS below; see token_shard.h.
  const uint64_t need = kTokenShardHeaderBytes + uint64_t(begin + n) * uint64_t(dtype_);
  struct stat sb {};
  GL_CHECK(::fstat(*fd_, &sb) == 0, path(), ": fstat failed: ", std::strerror(errno));
  GL_CHECK(uint64_t(sb.st_size) >= need, path(), ": truncated while in use: tokens [", begin, ", ", begin + n,
           ") need bytes up to offset ", need, " but the file is now ", uint64_t(sb.st_size), " bytes (",
           file_->size(), " when opened)");
  const char* p = file_->data() + kTokenShardHeaderBytes;
  if (dtype_ == TokenDType::u16) {
    for (size_t k = 0; k < n; ++k) out[k] = int32_t(load_le<uint16_t>(p + 2 * (begin + k)));
  } else {
    for (size_t k = 0; k < n; ++k) {
      const uint32_t v = load_le<uint32_t>(p + 4 * (begin + k));
      // int32 is the id type everywhere else (Tokenizer, Embedding): an id
      // that does not fit is corrupt data, not a valid token.
      GL_CHECK(v <= uint32_t(INT32_MAX), path(), ": token ", begin + k, " (byte offset ",
               kTokenShardHeaderBytes + 4 * (begin + k), ") is ", v, ", beyond int32");
      out[k] = int32_t(v);
    }
  }
}

std::vector<int32_t> TokenShard::read(size_t begin, size_t n) const {
  GL_CHECK(begin <= count_ && n <= count_ - begin, path(), ": tokens [", begin, ", ",
           begin + n, ") outside the ", count_, " tokens of the shard");
  std::vector<int32_t> out(n);
  read(begin, n, out.data());
  return out;
}

int32_t TokenShard::token(size_t i) const {
  int32_t v;
  read(i, 1, &v);
  return v;
}

void TokenShard::check_ids(std::optional<uint64_t> vocab) const {
  const uint64_t v = vocab.value_or(vocab_size_);
  const size_t width = size_t(dtype_);
  const char* p = file_->data() + kTokenShardHeaderBytes;
  for (uint64_t i = 0; i < count_; ++i) {
    const uint64_t id = dtype_ == TokenDType::u16 ? load_le<uint16_t>(p + 2 * i)
                                                  : load_le<uint32_t>(p + 4 * i);
    GL_CHECK(id < v, path(), ": token ", i, " (byte offset ", kTokenShardHeaderBytes + width * i,
             ") is ", id, ", not below the vocab size ", v);
  }
}

// --- writer ---------------------------------------------------------------

TokenShardWriter::TokenShardWriter(const std::string& path, TokenDType dtype,
                                   uint64_t vocab_size)
    : path_(path),
      tmp_(path + ".tmp." + std::to_string(::getpid())),
      dtype_(dtype),
      vocab_size_(vocab_size) {
  GL_CHECK(dtype == TokenDType::u16 || dtype == TokenDType::u32, "TokenShardWriter: ", path,
           ": dtype code ", uint32_t(dtype), ", expected 2 (u16) or 4 (u32)");
  GL_CHECK(vocab_size >= 1, "TokenShardWriter: ", path, ": vocab size must be >= 1");
  GL_CHECK(dtype == TokenDType::u32 || vocab_size <= 65536, "TokenShardWriter: ", path,
           ": vocab size ", vocab_size, " does not fit u16 ids (at most 65536); use u32");
  GL_CHECK(vocab_size <= uint64_t(INT32_MAX) + 1, "TokenShardWriter: ", path, ": vocab size ",
           vocab_size, " beyond int32 ids");
  do {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd_ < 0 && errno == EINTR);
  GL_CHECK(fd_ >= 0, "TokenShardWriter: ", path_, ": cannot create ", tmp_, ": ",
           std::strerror(errno));
  // Placeholder header (count 0) until commit() knows the count.
  char h[kTokenShardHeaderBytes];
  encode_header(h, dtype_, 0, vocab_size_);
  write_at(0, h, sizeof h);
}

TokenShardWriter::~TokenShardWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void TokenShardWriter::write_at(uint64_t offset, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(fd_, p + done, std::min<size_t>(n - done, size_t(1) << 30),
                               off_t(offset + done));
    if (w < 0 && errno == EINTR) continue;
    GL_CHECK(w > 0, "TokenShardWriter: ", path_, ": write failed at byte ", offset + done, ": ",
             w < 0 ? std::strerror(errno) : "short write");
    done += size_t(w);
  }
}

void TokenShardWriter::append(const int32_t* ids, size_t n) {
  GL_CHECK(fd_ >= 0 && !committed_, "TokenShardWriter: ", path_, ": append after commit");
  const size_t width = size_t(dtype_);
  buf_.resize(n * width);
  for (size_t k = 0; k < n; ++k) {
    GL_CHECK(ids[k] >= 0 && uint64_t(ids[k]) < vocab_size_, "TokenShardWriter: ", path_,
             ": token ", count_ + k, " is ", ids[k], ", outside [0, ", vocab_size_, ")");
    if (dtype_ == TokenDType::u16)
      store_le<uint16_t>(buf_.data() + 2 * k, uint16_t(ids[k]));
    else
      store_le<uint32_t>(buf_.data() + 4 * k, uint32_t(ids[k]));
  }
  write_at(kTokenShardHeaderBytes + count_ * width, buf_.data(), buf_.size());
  count_ += n;
}

void TokenShardWriter::commit() {
  GL_CHECK(fd_ >= 0 && !committed_, "TokenShardWriter: ", path_, ": commit twice");
  char h[kTokenShardHeaderBytes];
  encode_header(h, dtype_, count_, vocab_size_);
  write_at(0, h, sizeof h);
  // fsync before rename: otherwise a crash soon after could leave the name
  // pointing at a file whose data never reached the disk.
  GL_CHECK(::fsync(fd_) == 0, "TokenShardWriter: ", path_, ": fsync failed: ",
           std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  GL_CHECK(::close(fd) == 0, "TokenShardWriter: ", path_, ": close failed: ",
           std::strerror(errno));
  GL_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, "TokenShardWriter: ", path_,
           ": cannot rename ", tmp_, " into place: ", std::strerror(errno));
  committed_ = true;
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_token_shard(const std::string& path, const std::vector<int32_t>& ids,
                       TokenDType dtype, uint64_t vocab_size) {
  TokenShardWriter w(path, dtype, vocab_size);
  w.append(ids);
  w.commit();
}

}  // namespace gl
