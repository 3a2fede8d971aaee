// A deterministic byte-level BPE trainer (GPT-2 style) that writes a
// tokenizer.json which gl::Tokenizer (data/tokenizer.h) and Hugging Face
// `tokenizers` load and encode identically.
//
// It is Hugging Face tokenizers 0.20's BpeTrainer (models/bpe/trainer.rs)
// as configured by
//   Tokenizer(models.BPE()); pre_tokenizer = ByteLevel(add_prefix_space=False)
//   decoder = ByteLevel(); post_processor = ByteLevel(trim_offsets=True)
//   BpeTrainer(vocab_size, min_frequency, special_tokens,
//              initial_alphabet=ByteLevel.alphabet())
//   train_from_iterator(texts)
// re-implemented step for step, so that for the same texts the vocab and
// the merges are the same as Hugging Face's (tests/reference/bpe_interop.py
// checks this):
//   1. Words: each text is split by the GPT-2 pre-tokenizer regex
//      (data/byte_level.h; special tokens are NOT cut out of training text,
//      as in Hugging Face) and each distinct word is counted.
//   2. Ids: the special tokens first (0, 1, ... in the given order), then the
//      256 byte-level symbols in code-point order ("!" .. "~", "¡" .. "ÿ",
//      then "Ā" .. "Ń" for the bytes 0x00-0x20, 0x7F-0xA0, 0xAD), then one
//      id per new merged token, in merge order.
//   3. Merges: repeatedly the pair of adjacent symbols with the highest count
//      over all words (weighted by word frequency). Ties: the pair with the
//      smaller (left id, right id), compared left id first. A merge
//      replaces the pair left to right, non-overlapping, in every word that
//      holds it. Stops at vocab_size tokens, when no pair is left, or when
//      the best count is < max(1, min_frequency).
//   Counts are updated incrementally (only the words that hold the merged
//   pair are touched), with Hugging Face's bookkeeping kept as is, including
//   its quirks: a merged pair's own count is not decremented, and a pair's
//   queue entry only covers the words listed when it was pushed, so one pair
//   can be merged twice (then it is listed once in merges, at its last rank,
//   as Hugging Face's HashMap-of-merges serialization does).
//   Those quirks only act when a merge makes a token string that already
//   exists (the same string from another split, or a special token); that
//   never happened in the reference corpora except for special tokens, so
//   the rest of that path follows the Rust source but is not compared with
//   it. The one intended difference: where Hugging Face would pick among two
//   queue entries with the same (count, pair) in HashMap (random) order,
//   this takes std::pop_heap's choice, which depends only on the texts.
//
// The texts are raw bytes (no UTF-8 requirement) and no normalizer is used.
// vocab_size counts everything: special tokens, the 256 byte symbols and
// the merges. The result can have fewer tokens than vocab_size when the
// texts run out of pairs with count >= min_frequency.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gl {

struct BpeTrainOptions {
  int64_t vocab_size = 0;  // >= 256 + special_tokens.size()
  std::vector<std::string> special_tokens{"<|endoftext|>"};  // distinct, non-empty
  int64_t min_frequency = 2;  // merges need a pair count >= this (>= 0)
};

// A trained model. Token strings are in the byte-level alphabet ("Ġthe");
// special tokens are stored as given.
struct BpeModel {
  std::vector<std::string> tokens;                    // [V] id -> token
  std::vector<std::pair<int32_t, int32_t>> merges;    // in rank order (left id, right id)
  std::vector<std::string> special_tokens;            // ids 0 .. size-1
};

// The distinct pre-tokenizer words of texts with their counts, sorted by
// bytes (step 1 above; exposed for tests and for tools that report it).
std::vector<std::pair<std::string, int64_t>> count_bpe_words(const std::vector<std::string>& texts);

BpeModel train_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& options);

// tokenizer.json text of a model (Hugging Face 0.20's pretty layout: no
// normalizer, ByteLevel pre-tokenizer / post-processor / decoder, merges as
// [left, right] pairs, special tokens as added tokens with normalized false).
std::string bpe_tokenizer_json(const BpeModel& model);

// train_bpe + bpe_tokenizer_json.
std::string train_bpe_tokenizer_json(const std::vector<std::string>& texts,
                                     const BpeTrainOptions& options);

}  // namespace gl
