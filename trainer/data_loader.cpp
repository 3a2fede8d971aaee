// Batches as a pure function of (seed, step); see data_loader.h.
#include "trainer/data_loader.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/philox.h"
#include "data/indexed_dataset.h"
#include "data/token_shard.h"

namespace gl {

std::vector<uint64_t> epoch_permutation(uint64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> p(n);
  for (uint64_t i = 0; i < n; ++i) p[i] = i;
  // Fisher-Yates; draw i uses the 128-bit counter (i, epoch) so epochs are
  // independent streams of the same key. The modulo bias is below n / 2^64.
  for (uint64_t i = n; i-- > 1;) {
    const Philox4 r = philox4x32_10(
        Philox4{{uint32_t(i), uint32_t(i >> 32), uint32_t(epoch), uint32_t(epoch >> 32)}},
        uint32_t(seed), uint32_t(seed >> 32));
    const uint64_t u = (uint64_t(r.v[1]) << 32) | r.v[0];
    std::swap(p[i], p[u % (i + 1)]);
  }
  return p;
}

namespace {

// Windows of seq_len + 1 tokens over a list of shards.
struct Windows {
  std::vector<TokenShard> shards;
  std::vector<uint64_t> first;  // first[i]: index of shard i's first window; first.back() = total
  uint64_t vocab = 0;

  void open(const std::vector<std::string>& paths, int64_t seq_len, const char* what) {
    first.push_back(0);
    for (const std::string& p : paths) {
      shards.push_back(TokenShard::open(p));
      const uint64_t n = shards.back().count() / uint64_t(seq_len + 1);
      vocab = std::max<uint64_t>(vocab, shards.back().vocab_size());
      first.push_back(first.back() + n);
    }
    GL_CHECK(total() > 0, what, " data ", paths.empty() ? std::string("(none)") : paths[0],
             (paths.size() > 1 ? " ..." : ""), ": fewer than seq_len + 1 = ", seq_len + 1,
             " tokens, not one sequence");
  }
  uint64_t total() const { return first.back(); }
  void read(uint64_t w, int64_t seq_len, int32_t* out) const {
    const size_t s = size_t(std::upper_bound(first.begin(), first.end(), w) - first.begin()) - 1;
    shards[s].read(size_t(w - first[s]) * size_t(seq_len + 1), size_t(seq_len + 1), out);
  }
};

class ShardSource : public DataSource {
 public:
  ShardSource(const std::vector<std::string>& train, const std::vector<std::string>& val,
              int64_t seq_len, uint64_t seed)
      : DataSource(seq_len), seed_(seed) {
    GL_CHECK(!train.empty(), "data: no training shard given");
    GL_CHECK(!val.empty(), "data: no validation shard given (data.val_paths)");
    train_.open(train, seq_len, "training");
    val_.open(val, seq_len, "validation");
    desc_ = "token shards " + train[0] + (train.size() > 1 ? " (+" + std::to_string(train.size() - 1) + ")" : "");
  }
  void train_sequence(uint64_t g, int32_t* out) const override {
    const uint64_t n = train_.total(), epoch = g / n;
    std::lock_guard<std::mutex> lock(mu_);
    if (perm_epoch_ != epoch || perm_.empty()) {
      perm_ = epoch_permutation(n, seed_, epoch);
      perm_epoch_ = epoch;
    }
    train_.read(perm_[g % n], seq_len_, out);
  }
  void val_sequence(uint64_t i, int32_t* out) const override { val_.read(i, seq_len_, out); }
  uint64_t val_count() const override { return val_.total(); }
  uint64_t vocab_size() const override { return std::max(train_.vocab, val_.vocab); }
  std::string describe() const override { return desc_; }

 private:
  Windows train_, val_;
  uint64_t seed_;
  std::string desc_;
  mutable std::mutex mu_;
  mutable std::vector<uint64_t> perm_;
  mutable uint64_t perm_epoch_ = 0;
};

class MegatronSource : public DataSource {
 public:
  MegatronSource(const std::string& train, const std::string& val, int64_t seq_len, uint64_t fork_step,
                 uint64_t fork_offset, uint64_t val_start)
      : DataSource(seq_len),
        train_(IndexedDataset::open(train)),
        val_(val == train ? std::nullopt : std::optional<IndexedDataset>(IndexedDataset::open(val))),
        first_(fork_step * kPythiaBatchSequences + fork_offset),
        val_start_(val_start) {
    GL_CHECK(first_ < train_.size(), "data.fork_step: ", fork_step, " x 1024 + data.fork_offset ",
             fork_offset, " = sequence ", first_, " is past the end of ", train_.idx_path(), " (",
             train_.size(), " sequences)");
    GL_CHECK(val_start_ < vds().size(), "data.val_start: sequence ", val_start_, " is past the end of ",
             vds().idx_path(), " (", vds().size(), " sequences)");
  }
  void train_sequence(uint64_t g, int32_t* out) const override {
    GL_CHECK(first_ + g < train_.size(), "data: training needs sequence ", first_ + g, " but ",
             train_.idx_path(), " has ", train_.size(), " (the run reads past the dataset)");
    read(train_, first_ + g, out);
  }
  void val_sequence(uint64_t i, int32_t* out) const override { read(vds(), val_start_ + i, out); }
  uint64_t val_count() const override { return vds().size() - val_start_; }
  uint64_t vocab_size() const override { return 0; }
  std::string describe() const override {
    return "Megatron dataset " + train_.idx_path() + " from sequence " + std::to_string(first_);
  }

 private:
  const IndexedDataset& vds() const { return val_ ? *val_ : train_; }
  void read(const IndexedDataset& d, uint64_t i, int32_t* out) const {
    const size_t len = d.sequence_length(size_t(i));
    GL_CHECK(int64_t(len) >= seq_len_ + 1, d.idx_path(), ": sequence ", i, " has ", len,
             " tokens, fewer than data.seq_len + 1 = ", seq_len_ + 1);
    std::vector<int32_t> buf(len);
    d.read_sequence(size_t(i), buf.data(), len);
    std::copy(buf.begin(), buf.begin() + seq_len_ + 1, out);
  }
  IndexedDataset train_;
  std::optional<IndexedDataset> val_;
  uint64_t first_, val_start_;
};

Batch make_batch(const DataSource& src, int64_t batch_size, int64_t vocab,
                 const std::function<uint64_t(int64_t)>& seq_of_row, bool train) {
  const char* what = train ? "training" : "validation";
  const int64_t T = src.seq_len();
  std::vector<int32_t> row(size_t(T + 1));
  std::vector<int64_t> x(size_t(batch_size * T)), y(size_t(batch_size * T));
  for (int64_t b = 0; b < batch_size; ++b) {
    const uint64_t g = seq_of_row(b);
    if (train) src.train_sequence(g, row.data());
    else src.val_sequence(g, row.data());
    for (int64_t t = 0; t <= T; ++t)
      GL_CHECK(row[size_t(t)] >= 0 && row[size_t(t)] < vocab, src.describe(), ": ", what, " sequence ", g,
               " holds token id ", row[size_t(t)], ", outside the model's vocabulary [0, ", vocab, ")");
    std::copy(row.begin(), row.begin() + T, x.begin() + b * T);
    std::copy(row.begin() + 1, row.end(), y.begin() + b * T);
  }
  return {Tensor::from_data(x, {batch_size, T}), Tensor::from_data(y, {batch_size, T})};
}

}  // namespace

std::unique_ptr<DataSource> make_shard_source(const std::vector<std::string>& train,
                                              const std::vector<std::string>& val, int64_t seq_len,
                                              uint64_t seed) {
  return std::make_unique<ShardSource>(train, val, seq_len, seed);
}

std::unique_ptr<DataSource> make_megatron_source(const std::string& train_prefix,
                                                 const std::string& val_prefix, int64_t seq_len,
                                                 uint64_t fork_step, uint64_t fork_offset,
                                                 uint64_t val_start) {
  return std::make_unique<MegatronSource>(train_prefix, val_prefix, seq_len, fork_step, fork_offset,
                                          val_start);
}

Batch train_batch(const DataSource& src, int64_t step, int64_t micro, int64_t grad_accum, int rank,
                  int world, int64_t batch_size, int64_t vocab) {
  const uint64_t G = uint64_t(batch_size * grad_accum * world);
  const uint64_t base = uint64_t(step) * G + uint64_t((micro * world + rank) * batch_size);
  return make_batch(src, batch_size, vocab, [&](int64_t b) { return base + uint64_t(b); }, true);
}

Batch val_batch(const DataSource& src, int64_t index, int64_t batch_size, int64_t vocab) {
  const uint64_t n = src.val_count();
  return make_batch(src, batch_size, vocab,
                    [&](int64_t b) { return (uint64_t(index * batch_size + b)) % n; }, false);
}

}  // namespace gl
