// Byte-level BPE tokenizer as GPT-2 and GPT-NeoX/Pythia use it, read from a
// Hugging Face tokenizer.json (or GPT-2's vocab.json + merges.txt), encoding
// token for token as the Hugging Face `tokenizers` library (0.20) does.
//
// encode(text), in Hugging Face's order:
//   1. added tokens with "normalized": false (special tokens such as
//      <|endoftext|>) are cut out of the raw text, leftmost-longest;
//   2. each remaining piece is normalized (nothing, or NFC);
//   3. added tokens with "normalized": true (GPT-NeoX's runs of spaces) are
//      cut out of each normalized piece, leftmost-longest;
//   4. each remaining piece gets a leading space if add_prefix_space is set
//      and it does not start with one, and is split by the GPT-2 regex
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (hand-written leftmost-first matcher, see pretokenize() in the .cpp);
//   5. each word's bytes become the 256 byte-level symbols (GPT-2's
//      bytes_to_unicode) and are merged by BPE, lowest merge rank first
//      (ties: leftmost), exactly as tokenizers' Word::merge_all.
// decode(ids) concatenates each token's bytes: model tokens map their
// characters back through bytes_to_unicode (the ByteLevel decoder); added
// tokens give their content. Special tokens are kept (Hugging Face's
// decode(ids, skip_special_tokens=False)).
//
// Bytes, not strings: Hugging Face only accepts valid UTF-8 (a Python str or
// Rust &str). Here any bytes are accepted: an ill-formed UTF-8 sequence is
// pre-tokenized as a symbol character (the class of U+FFFD) and left alone by
// NFC, and its bytes go to the byte-level BPE unchanged, so
// decode(encode(x)) == x for every byte string x when there is no normalizer
// (with NFC: == nfc(x)). decode returns raw bytes, which may end inside a
// multi-byte character when ids are a slice; Hugging Face instead returns
// String::from_utf8_lossy of them: unicode::utf8_lossy(decode(ids)).
//
// Supported tokenizer.json: model BPE (vocab; merges as "a b" strings or
// ["a", "b"] pairs; ignore_merges), normalizer null or NFC, pre_tokenizer
// ByteLevel (add_prefix_space, use_regex), decoder ByteLevel, post_processor
// null, ByteLevel or a TemplateProcessing of the sequence alone (none adds
// tokens), added_tokens without single_word/lstrip/rstrip, whose ids must be
// the ones tokenizers would assign. Anything else (another model, normalizer,
// pre-tokenizer or decoder, dropout, a continuing_subword_prefix,
// byte_fallback, a post-processor that adds tokens, truncation, padding, an
// unknown field) is refused with a one-line error naming the file and field,
// never tokenized differently.
//
// A Tokenizer is immutable after loading; encode and decode are const and
// safe to call from several threads. encode keeps a word cache per call, so
// one call on a long text is faster than many calls on its pieces (~20 MB/s
// for GPT-2-style English-and-code text on one core here).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace gl {

class Json;

class Tokenizer {
 public:
  static Tokenizer from_json_file(const std::string& path);
  // tokenizer.json text; `source` names it in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& source);
  // GPT-2's two files (paths). Configured as GPT-2: no normalizer, ByteLevel
  // without prefix space, and <|endoftext|>, if in the vocab, as a special
  // token (as transformers' GPT2Tokenizer treats it).
  static Tokenizer from_vocab_merges(const std::string& vocab_json_path,
                                     const std::string& merges_txt_path);

  std::vector<int32_t> encode(std::string_view text) const;
  // Throws naming the id if one is outside [0, vocab_size()) or unassigned.
  std::string decode(const std::vector<int32_t>& ids) const;

  // 1 + the largest id of the vocab and the added tokens (Hugging Face's
  // get_vocab_size(with_added_tokens=True) when ids have no holes).
  int32_t vocab_size() const { return int32_t(id_to_token_.size()); }
  std::optional<int32_t> token_to_id(const std::string& token) const;
  // The token's string as stored (byte-level characters, e.g. "Ġthe").
  const std::string& id_to_token(int32_t id) const;
  std::optional<int32_t> eos_id() const { return token_to_id("<|endoftext|>"); }
  bool is_special(int32_t id) const;
  bool normalizes_nfc() const { return nfc_; }

 private:
  struct AddedToken {
    std::string content;  // what decode() gives
    std::string pattern;  // what is matched: content, or nfc(content) if normalized
    int32_t id;
    bool special;
    bool normalized;
  };
  struct MergeResult {
    int32_t rank;
    int32_t new_id;
  };
  // Splits text on `tokens` (leftmost-longest); calls piece(text, -1) for
  // text between matches and piece(match, id) for each match.
  template <class Fn>
  void split_added(std::string_view text, const std::vector<AddedToken>& tokens, Fn&& piece) const;
  struct WordCache;  // per encode() call, in the .cpp
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids, WordCache& cache) const;
  void bpe_word(std::string_view word, std::vector<int32_t>& ids) const;
  // Loading, in this order (from_json).
  void read_pipeline(const Json& j);
  void read_model_options(const Json& model);
  static std::vector<AddedToken> read_added_tokens(const Json& j, const std::string& source);
  static std::vector<std::pair<std::string, std::string>> read_merges(const Json& model,
                                                                      const std::string& source);
  void build_vocab(const std::vector<std::pair<std::string, Json>>& vocab,
                   const std::vector<AddedToken>& added);
  void build_merges(const std::vector<std::pair<std::string, std::string>>& merges);
  void finish_setup(const std::vector<AddedToken>& added);
  int32_t checked_id(int32_t id, const char* what) const;

  std::string source_;                                   // file named in errors
  std::vector<std::string> id_to_token_;                 // [V]; "" for holes
  std::vector<uint8_t> assigned_;                        // [V] 0 for holes
  std::vector<uint8_t> special_;                         // [V]
  std::vector<std::string> id_to_bytes_;                 // [V] what decode() emits
  std::unordered_map<std::string, int32_t> token_to_id_;  // vocab + added tokens
  std::unordered_map<uint64_t, MergeResult> merges_;     // (left id << 32 | right id)
  int32_t byte_id_[256] = {};                            // id of each byte's symbol
  std::vector<AddedToken> raw_added_;                    // "normalized": false
  std::vector<AddedToken> normalized_added_;             // "normalized": true
  bool nfc_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  bool ignore_merges_ = false;
};

}  // namespace gl
