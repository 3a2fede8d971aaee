// Byte-level BPE training: see data/bpe_trainer.h for the algorithm and its
// tie rule. Reference: Hugging Face tokenizers 0.20, models/bpe/trainer.rs
// (BpeTrainer::do_train, count_pairs) and models/bpe/word.rs (Word::merge).
//
// Invariants: ids [0, n_special) are the special tokens, the next 256 the
// byte symbols; a word is a list of symbol ids whose token strings
// concatenate to the word's byte-level string; pair_counts[p] is Hugging
// Face's running count of p (exact for unmerged pairs, see the header for
// the merged pair).
#include "data/bpe_trainer.h"

#include <algorithm>
#include <numeric>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/json.h"
#include "data/byte_level.h"
#include "data/unicode.h"

namespace gl {

namespace {

// A pair of symbol ids as one key; (left << 32 | right) orders pairs as the
// tuple (left, right) does, which is the tie rule.
using PairKey = uint64_t;
PairKey pair_key(int32_t left, int32_t right) { return uint64_t(uint32_t(left)) << 32 | uint32_t(right); }
int32_t pair_left(PairKey p) { return int32_t(p >> 32); }
int32_t pair_right(PairKey p) { return int32_t(p & 0xffffffffu); }

// A queue entry: the count when pushed, and the words to merge in.
struct QueueEntry {
  int64_t count;
  PairKey pair;
  std::vector<int32_t> words;
};
// Heap order (std::*_heap keep the "largest" on top): higher count first,
// then the smaller pair.
bool lower_priority(const QueueEntry& a, const QueueEntry& b) {
  if (a.count != b.count) return a.count < b.count;
  return a.pair > b.pair;
}

struct PairChange {
  PairKey pair;
  int32_t delta;  // -1: an occurrence removed, +1: one created
};

// Word::merge: replaces each (left, right), left to right and
// non-overlapping, by merged, and reports the neighbouring pairs that
// disappear and appear. The merged pair itself is not reported (Hugging
// Face does not decrement it). `prev` is the symbol already written, which
// can be the result of an earlier replacement in the same word.
void merge_word(std::vector<int32_t>& word, int32_t left, int32_t right, int32_t merged,
                std::vector<PairChange>& changes) {
  const size_t n = word.size();
  size_t out = 0;
  for (size_t i = 0; i < n;) {
    if (word[i] == left && i + 1 < n && word[i + 1] == right) {
      if (out > 0) {
        changes.push_back({pair_key(word[out - 1], left), -1});
        changes.push_back({pair_key(word[out - 1], merged), +1});
      }
      if (i + 2 < n) {
        changes.push_back({pair_key(right, word[i + 2]), -1});
        changes.push_back({pair_key(merged, word[i + 2]), +1});
      }
      word[out++] = merged;
      i += 2;
    } else {
      word[out++] = word[i++];
    }
  }
  word.resize(out);
}

void check_options(const BpeTrainOptions& o) {
  std::unordered_set<std::string> seen;
  for (const std::string& s : o.special_tokens) {
    GL_CHECK(!s.empty(), "train_bpe: empty special token");
    GL_CHECK(seen.insert(s).second, "train_bpe: special token '", s, "' is given twice");
  }
  const int64_t min_vocab = 256 + int64_t(o.special_tokens.size());
  GL_CHECK(o.vocab_size >= min_vocab, "train_bpe: vocab_size ", o.vocab_size,
           " is too small: the ", o.special_tokens.size(), " special tokens and the 256 byte symbols need ",
           min_vocab);
  GL_CHECK(o.vocab_size <= (int64_t(1) << 30), "train_bpe: vocab_size ", o.vocab_size, " is too large");
  GL_CHECK(o.min_frequency >= 0, "train_bpe: min_frequency ", o.min_frequency, " is negative");
}

// The training state: Hugging Face's word_to_id / id_to_word, words,
// counts, pair counts and queue.
class Trainer {
 public:
  Trainer(const std::vector<std::pair<std::string, int64_t>>& word_counts, const BpeTrainOptions& o)
      : options_(o) {
    for (const std::string& s : o.special_tokens) add_token(s);
    // The alphabet sorted by code point (byte_to_char is not monotonic).
    std::vector<int> bytes(256);
    std::iota(bytes.begin(), bytes.end(), 0);
    std::sort(bytes.begin(), bytes.end(), [](int a, int b) {
      return byte_level::byte_to_char()[a] < byte_level::byte_to_char()[b];
    });
    for (int b : bytes) {
      std::string sym;
      unicode::append_utf8(sym, byte_level::byte_to_char()[b]);
      // A special token spelled as one byte symbol keeps its id (as in HF).
      auto it = token_to_id_.find(sym);
      byte_id_[b] = it != token_to_id_.end() ? it->second : add_token(sym);
    }
    words_.reserve(word_counts.size());
    for (const auto& [word, count] : word_counts) {
      std::vector<int32_t> symbols(word.size());
      for (size_t i = 0; i < word.size(); ++i) symbols[i] = byte_id_[uint8_t(word[i])];
      words_.push_back(std::move(symbols));
      counts_.push_back(count);
    }
  }

  BpeModel run();

 private:
  int32_t add_token(const std::string& token) {
    const int32_t id = int32_t(tokens_.size());
    tokens_.push_back(token);
    token_to_id_.emplace(token, id);
    return id;
  }
  void count_pairs();
  void note_occurrence(PairKey pair, int32_t word);
  void push_pending();
  void merge(const QueueEntry& top);

  const BpeTrainOptions& options_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  int32_t byte_id_[256] = {};
  std::vector<std::vector<int32_t>> words_;  // symbol ids
  std::vector<int64_t> counts_;              // occurrences of each word
  std::unordered_map<PairKey, int64_t> pair_counts_;
  // Words where a pair gained occurrences since the last push (HF's
  // where_to_update); each list holds a word once, since a word's changes
  // are produced together.
  std::unordered_map<PairKey, std::vector<int32_t>> pending_;
  std::vector<QueueEntry> queue_;  // a heap by lower_priority
  std::vector<std::pair<PairKey, int32_t>> merges_;  // (pair, new id), with repeats
};

void Trainer::note_occurrence(PairKey pair, int32_t word) {
  std::vector<int32_t>& list = pending_[pair];
  if (list.empty() || list.back() != word) list.push_back(word);
}

void Trainer::count_pairs() {
  for (int32_t w = 0; w < int32_t(words_.size()); ++w) {
    const std::vector<int32_t>& s = words_[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const PairKey p = pair_key(s[i], s[i + 1]);
      pair_counts_[p] += counts_[w];
      note_occurrence(p, w);
    }
  }
}

// Pushes an entry for each pair that gained occurrences, in pair order so
// that the run does not depend on hash-map order.
void Trainer::push_pending() {
  std::vector<PairKey> pairs;
  pairs.reserve(pending_.size());
  for (const auto& kv : pending_) pairs.push_back(kv.first);
  std::sort(pairs.begin(), pairs.end());
  for (PairKey p : pairs) {
    const int64_t count = pair_counts_[p];
    if (count <= 0) continue;
    queue_.push_back({count, p, std::move(pending_[p])});
    std::push_heap(queue_.begin(), queue_.end(), lower_priority);
  }
  pending_.clear();
}

void Trainer::merge(const QueueEntry& top) {
  const int32_t left = pair_left(top.pair), right = pair_right(top.pair);
  const std::string merged_token = tokens_[left] + tokens_[right];
  // The merged string can already exist (made from another split, or a
  // special token): HF then reuses its id and the vocab does not grow.
  auto it = token_to_id_.find(merged_token);
  const int32_t merged = it != token_to_id_.end() ? it->second : add_token(merged_token);
  merges_.emplace_back(top.pair, merged);
  std::vector<PairChange> changes;
  for (int32_t w : top.words) {
    changes.clear();
    merge_word(words_[w], left, right, merged, changes);
    for (const PairChange& c : changes) {
      pair_counts_[c.pair] += c.delta * counts_[w];
      if (c.delta > 0) note_occurrence(c.pair, w);
    }
  }
}

BpeModel Trainer::run() {
  count_pairs();
  push_pending();
  while (int64_t(token_to_id_.size()) < options_.vocab_size && !queue_.empty()) {
    std::pop_heap(queue_.begin(), queue_.end(), lower_priority);
    QueueEntry top = std::move(queue_.back());
    queue_.pop_back();
    // A stale count: requeue with the current one (its word list kept).
    const int64_t current = pair_counts_[top.pair];
    if (top.count != current) {
      top.count = current;
      queue_.push_back(std::move(top));
      std::push_heap(queue_.begin(), queue_.end(), lower_priority);
      continue;
    }
    if (top.count < 1 || top.count < options_.min_frequency) break;
    merge(top);
    push_pending();
  }

  BpeModel model;
  model.tokens = std::move(tokens_);
  model.special_tokens = options_.special_tokens;
  // A pair merged twice keeps its last rank (HF collects merges into a map
  // pair -> rank, later ranks overwriting earlier ones, and writes them
  // sorted by rank).
  std::unordered_map<PairKey, size_t> last;
  for (size_t r = 0; r < merges_.size(); ++r) last[merges_[r].first] = r;
  for (size_t r = 0; r < merges_.size(); ++r)
    if (last[merges_[r].first] == r)
      model.merges.emplace_back(pair_left(merges_[r].first), pair_right(merges_[r].first));
  return model;
}

}  // namespace

std::vector<std::pair<std::string, int64_t>> count_bpe_words(const std::vector<std::string>& texts) {
  // Views into texts: no copy per occurrence.
  std::unordered_map<std::string_view, int64_t> counts;
  for (const std::string& text : texts)
    byte_level::for_each_gpt2_word(text, [&](std::string_view w) { ++counts[w]; });
  std::vector<std::pair<std::string, int64_t>> out;
  out.reserve(counts.size());
  for (const auto& [w, c] : counts) out.emplace_back(std::string(w), c);
  std::sort(out.begin(), out.end());
  return out;
}

BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options) {
  check_options(options);
  const std::vector<std::pair<std::string, int64_t>> words = count_bpe_words(texts);
  GL_CHECK(!words.empty(), "train_bpe: no training text (", texts.size(), " texts, all empty)");
  return Trainer(words, options).run();
}

std::string bpe_tokenizer_json(const BpeModel& model) {
  // Hugging Face's field order and pretty layout (Tokenizer.save), written
  // by hand: core/json's objects look keys up linearly, too slow for a big
  // vocab. Json(s).dump() escapes strings as serde_json does.
  auto q = [](const std::string& s) { return Json(s).dump(); };
  const char* byte_level =
      "{\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": %s,\n"
      "    \"trim_offsets\": true,\n    \"use_regex\": true\n  }";
  auto byte_level_block = [&](bool prefix) {
    std::string s = byte_level;
    s.replace(s.find("%s"), 2, prefix ? "true" : "false");
    return s;
  };
  std::string out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [";
  for (size_t i = 0; i < model.special_tokens.size(); ++i) {
    out += i ? ",\n" : "\n";
    out += str("    {\n      \"id\": ", i, ",\n      \"content\": ", q(model.special_tokens[i]),
               ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
               "      \"normalized\": false,\n      \"special\": true\n    }");
  }
  out += model.special_tokens.empty() ? "],\n" : "\n  ],\n";
  out += "  \"normalizer\": null,\n";
  out += "  \"pre_tokenizer\": " + byte_level_block(false) + ",\n";
  out += "  \"post_processor\": " + byte_level_block(true) + ",\n";
  out += "  \"decoder\": " + byte_level_block(true) + ",\n";
  out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
         "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
         "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
         "    \"vocab\": {";
  for (size_t id = 0; id < model.tokens.size(); ++id) {
    out += id ? ",\n      " : "\n      ";
    out += q(model.tokens[id]) + ": " + std::to_string(id);
  }
  out += model.tokens.empty() ? "},\n" : "\n    },\n";
  out += "    \"merges\": [";
  for (size_t r = 0; r < model.merges.size(); ++r) {
    out += r ? ",\n" : "\n";
    out += "      [\n        " + q(model.tokens[model.merges[r].first]) + ",\n        " +
           q(model.tokens[model.merges[r].second]) + "\n      ]";
  }
  out += model.merges.empty() ? "]\n" : "\n    ]\n";
  out += "  }\n}";
  return out;
}

std::string train_bpe_tokenizer_json(const std::vector<std::string>& texts,
                                     const BpeTrainOptions& options) {
  return bpe_tokenizer_json(train_bpe(texts, options));
}

}  // namespace gl
