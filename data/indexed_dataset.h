// Megatron / GPT-NeoX indexed datasets (".bin" + ".idx", MMIDIDX v1), the
// format of Pythia's pre-tokenized, pre-shuffled Pile, read by memory map;
// plus Pythia's batch -> sequence mapping.
//
// Reference: docs/shared spec.md section 2.4 (from GPT-NeoX v1.0
// megatron/data/indexed_dataset.py and Pythia's utils/mmap_dataset.py,
// batch_viewer.py, unshard_memmap.py). The .idx, all little-endian:
//   offset 0 : 9 bytes magic  "MMIDIDX\0\0"
//   offset 9 : uint64 version = 1
//   offset 17: uint8  dtype code {1:uint8 2:int8 3:int16 4:int32 5:int64
//                                 6:float32 7:float64 8:uint16}
//   offset 18: uint64 len        (number of sequences)
//   offset 26: uint64 doc_count  (length of doc_idx)
//   offset 34: int32 sizes[len], int64 pointers[len] (byte offsets into the
//              .bin), int64 doc_idx[doc_count]
// Offset 34 is not 4-aligned, so every field is memcpy'd, never cast.
//
// The .bin may be one file "<prefix>.bin" or a plain byte split of it
// (Pythia's HF upload): "<prefix>-00000-of-000MM.bin", "-00001-of-...", ...
// concatenated in order, not aligned to sequences. Pythia numbers its 21
// shards 00000..00020 "of-00020", i.e. MM is the LAST index; the usual
// convention has MM = count. Both are accepted: shards 0..MM-1 must exist,
// shard MM is used when present. Every shard but the last must have the size
// of shard 0 (unshard_memmap.py's assumption), the last one at most that.
//
// Invariants after open() (all checked, each failure one line naming the
// file): magic, version 1, a supported dtype (4 int32, 8 uint16), the .idx
// size is exactly 34 + len*4 + len*8 + doc_count*8, sizes are >= 0,
// pointers are nondecreasing and pointer + size*elsize lies inside the
// (concatenated) .bin. Checking every pointer reads the whole .idx once
// (about 1.75 GB for the Pile: seconds, once per run).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "core/mmap.h"

namespace gl {

// Pythia's training batch (sequences per iteration) and sequence length
// (2048 predicted tokens + 1), spec.md 2.2/2.4.
constexpr uint64_t kPythiaBatchSequences = 1024;
constexpr uint64_t kPythiaSequenceLength = 2049;

// Sequence index consumed by Pythia at training iteration `iteration`
// (0-based), position k in its batch: iteration*1024 + k (spec.md 2.4,
// batch_viewer.py). Checkpoint stepN has consumed iterations 0..N-1, so a
// faithful continuation from stepN starts at pythia_sequence_for(N, 0).
// k must be < 1024.
uint64_t pythia_sequence_for(uint64_t iteration, uint64_t k);

// Sequence read at step `fork_step` (0-based), slot j (< sequences_per_step)
// of a fork continuing from checkpoint step `start_step` with a reduced
// batch: start_step*1024 + fork_step*S + j + seed_offset (spec.md section 0
// "Fork batches" and 2.4 [ASSUMED]: the next unseen sequences in order, S at
// a time, default S = 4; each seed starts at its own documented offset, the
// caller's `seed_offset`). Throws on overflow.
constexpr uint64_t kForkSequencesPerStepDefault = 4;
uint64_t fork_sequence(uint64_t start_step, uint64_t fork_step, uint64_t sequences_per_step,
                       uint64_t j, uint64_t seed_offset);

// The .bin as one byte range over one or several mapped files.
class ByteRange {
 public:
  ByteRange() = default;
  explicit ByteRange(std::vector<MappedFile> files);
  uint64_t size() const { return total_; }
  size_t file_count() const { return files_.size(); }
  const MappedFile& file(size_t i) const { return files_[i]; }
  // Copies bytes [offset, offset + n) into dst; the range must lie inside.
  // Each file's current size is checked first (fstat on a descriptor held
  // next to the mapping): a .bin truncated while in use is an error naming
  // the file and the byte offset, not a SIGBUS from the mapping.
  void read(uint64_t offset, uint64_t n, void* dst) const;

 private:
  std::vector<MappedFile> files_;
  std::vector<std::shared_ptr<const int>> fds_;  // files_[i] opened again, for the size check
  std::vector<uint64_t> starts_;  // starts_[i] = byte offset of files_[i]
  uint64_t total_ = 0;
};

class IndexedDataset {
 public:
  // `path`: the prefix ("dir/document") or the .idx path ("dir/document.idx").
  static IndexedDataset open(const std::string& path);

  const std::string& idx_path() const { return idx_path_; }
  // The .bin file(s) in concatenation order.
  std::vector<std::string> bin_paths() const;
  int dtype_code() const { return dtype_code_; }   // 4 or 8
  size_t element_size() const { return elsize_; }  // bytes per token

  size_t size() const { return size_t(len_); }  // number of sequences
  size_t sequence_length(size_t i) const;       // tokens in sequence i
  uint64_t pointer(size_t i) const;             // byte offset of sequence i in the .bin

  // Tokens of sequence i, widened to int32.
  std::vector<int32_t> read_sequence(size_t i) const;
  // Into a caller buffer of `capacity` tokens (>= sequence_length(i));
  // returns the number of tokens written.
  size_t read_sequence(size_t i, int32_t* out, size_t capacity) const;

  size_t doc_count() const { return size_t(doc_count_); }
  int64_t doc_idx(size_t i) const;
  std::vector<int64_t> doc_idx() const;

  // Every sequence has exactly `length` tokens (Pythia: 2049), else an error
  // naming the first sequence that differs and its length.
  void require_fixed_length(size_t length = kPythiaSequenceLength) const;

 private:
  IndexedDataset() = default;
  int32_t size_at(size_t i) const;
  int64_t pointer_at(size_t i) const;

  std::string idx_path_;
  std::optional<MappedFile> idx_;  // optional: MappedFile has no empty state
  ByteRange bin_;
  int dtype_code_ = 0;
  size_t elsize_ = 0;
  uint64_t len_ = 0, doc_count_ = 0;
  uint64_t sizes_off_ = 0, pointers_off_ = 0, doc_idx_off_ = 0;
};

}  // namespace gl
