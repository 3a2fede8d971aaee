// Training and validation batches for the trainer: which token sequences a
// step reads, as a pure function of (seed, step), so that a resumed run, a
// run on N processes and a run on one process read exactly the same data.
//
// Every source exposes numbered sequences of seq_len + 1 tokens (inputs are
// the first seq_len, targets the last seq_len):
//   - flat token streams (the Debian corpus, our GLTOKENS shards): the
//     training shards are cut into non-overlapping windows of seq_len + 1
//     tokens (a shard's tail shorter than a window is dropped); global
//     sequence g reads window perm_e[g mod W] of epoch e = g / W, where perm_e
//     is a Fisher-Yates shuffle drawn from Philox keyed by (seed, epoch).
//     Every window is seen once per epoch, in an order fixed by the seed.
//     Validation reads the validation shards' windows in file order.
//   - Megatron .bin/.idx (Pythia's pre-shuffled Pile): global sequence g is
//     dataset sequence fork_step x 1024 + fork_offset + g, read in order
//     (spec.md "Fork batches": the next unseen sequences after the fork
//     step), of which the first seq_len + 1 tokens are used. Validation
//     reads sequences val_start, val_start + 1, ...
//
// Step s, micro-batch m, rank r of W, row b of a B-row micro-batch reads
//   g = s*G + (m*W + r)*B + b,   G = B * grad_accum * W (the global batch),
// so one process with grad_accum = k*a reads, per step, the same sequences
// as k processes with grad_accum = a: data parallelism is exactly a
// split of the global batch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace gl {

class Recipe;

struct Batch {
  Tensor ids;      // [B, T] I64
  Tensor targets;  // [B, T] I64
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Training sequence g (any g >= 0; flat sources wrap into later epochs).
  virtual void train_sequence(uint64_t g, int32_t* out) const = 0;
  // Validation sequence i < val_count().
  virtual void val_sequence(uint64_t i, int32_t* out) const = 0;
  virtual uint64_t val_count() const = 0;
  // Largest token id + 1 the data may hold (a flat shard's header vocab;
  // 0 where the format does not say: Megatron).
  virtual uint64_t vocab_size() const = 0;
  virtual std::string describe() const = 0;
  int64_t seq_len() const { return seq_len_; }

 protected:
  explicit DataSource(int64_t seq_len) : seq_len_(seq_len) {}
  int64_t seq_len_;
};

// Flat token shards: training windows from `train`, validation from `val`.
std::unique_ptr<DataSource> make_shard_source(const std::vector<std::string>& train,
                                              const std::vector<std::string>& val, int64_t seq_len,
                                              uint64_t seed);
// Megatron dataset prefix(es); see the file comment.
std::unique_ptr<DataSource> make_megatron_source(const std::string& train_prefix,
                                                 const std::string& val_prefix, int64_t seq_len,
                                                 uint64_t fork_step, uint64_t fork_offset,
                                                 uint64_t val_start);

// Rows [B, T] of micro-batch `micro` of `step` for `rank` of `world` (see
// the file comment); every id is checked against `vocab` (the model's),
// naming the source and the sequence on failure.
Batch train_batch(const DataSource& src, int64_t step, int64_t micro, int64_t grad_accum, int rank,
                  int world, int64_t batch_size, int64_t vocab);
// Validation batch `index` (rows index*B ... index*B + B - 1, wrapping
// modulo val_count()).
Batch val_batch(const DataSource& src, int64_t index, int64_t batch_size, int64_t vocab);

// The shuffle of flat sources, exposed for tests: a permutation of [0, n)
// that depends only on (seed, epoch).
std::vector<uint64_t> epoch_permutation(uint64_t n, uint64_t seed, uint64_t epoch);

}  // namespace gl
