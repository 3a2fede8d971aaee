// gridlock's flat token shard: a 32-byte header, then the token ids. What
// the corpus tool writes from tokenized text and the trainer reads by mmap.
//
// Layout (all little-endian; docs/formats.md "gridlock token shard"):
//   offset  0: 8 bytes  magic "GLTOKENS"
//   offset  8: uint32   version = 1
//   offset 12: uint32   dtype code = bytes per token: 2 (uint16) or 4 (uint32)
//   offset 16: uint64   token count
//   offset 24: uint64   vocab size (every id < vocab size; >= 1)
//   offset 32: token count x (dtype code) bytes of ids
// The file size is exactly 32 + count x width: a shorter file is truncated,
// a longer one has trailing bytes; both are errors naming the file and the
// expected and actual sizes. Tokens start at byte 32, so they are naturally
// aligned in the (page-aligned) mapping.
//
// Truncation while in use: the shard is mmapped, and a file shrinking under
// a mapping turns the next touch of a page past its new end into SIGBUS.
// So the reader also holds a descriptor and fstat()s it before every read():
// a file now shorter than the tokens asked for is an error naming the file,
// the tokens, the byte offset needed and the sizes, instead of a crash. (A
// shrink between that check and the copy, microseconds, is not caught.)
//
// Writing is atomic: the shard is written to "<path>.tmp.<pid>", fsynced and
// renamed over `path` (as save_safetensors does); a failure or a writer
// destroyed without commit() removes the temporary and leaves any previous
// file intact. The writer checks every id against the vocab size, so a
// shard on disk never holds an out-of-range id unless it was altered.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mmap.h"

namespace gl {

enum class TokenDType : uint32_t { u16 = 2, u32 = 4 };

// Header bytes before the first token.
constexpr size_t kTokenShardHeaderBytes = 32;

class TokenShard {
 public:
  static TokenShard open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  TokenDType dtype() const { return dtype_; }
  uint64_t vocab_size() const { return vocab_size_; }
  size_t count() const { return size_t(count_); }

  int32_t token(size_t i) const;
  // Tokens [begin, begin + n) into out (n ids); the range must lie inside.
  void read(size_t begin, size_t n, int32_t* out) const;
  std::vector<int32_t> read(size_t begin, size_t n) const;

  // Every id < vocab (default: the header's vocab size), else an error
  // naming the file, the token offset and the id. Reads the whole shard.
  void check_ids(std::optional<uint64_t> vocab = std::nullopt) const;

 private:
  TokenShard() = default;
  std::optional<MappedFile> file_;  // optional: MappedFile has no empty state
  std::shared_ptr<const int> fd_;   // the same file, for the size check; closed by the last copy
  TokenDType dtype_ = TokenDType::u16;
  uint64_t count_ = 0, vocab_size_ = 0;
};

// Streams ids into a new shard; nothing is visible at `path` until commit().
class TokenShardWriter {
 public:
  // u16 requires vocab_size <= 65536; vocab_size must be >= 1.
  TokenShardWriter(const std::string& path, TokenDType dtype, uint64_t vocab_size);
  ~TokenShardWriter();  // without commit(): removes the temporary file
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  // Appends n ids; each must be in [0, vocab_size).
  void append(const int32_t* ids, size_t n);
  void append(const std::vector<int32_t>& ids) { append(ids.data(), ids.size()); }
  uint64_t count() const { return count_; }
  // Writes the final header, fsyncs and renames into place.
  void commit();

 private:
  void write_at(uint64_t offset, const void* data, size_t n);
  std::string path_, tmp_;
  int fd_ = -1;
  TokenDType dtype_;
  uint64_t vocab_size_;
  uint64_t count_ = 0;
  bool committed_ = false;
  std::vector<char> buf_;
};

// One-call writer: the whole id list as one shard.
void write_token_shard(const std::string& path, const std::vector<int32_t>& ids,
                       TokenDType dtype, uint64_t vocab_size);

}  // namespace gl
