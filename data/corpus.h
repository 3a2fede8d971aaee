// The built-in English training corpus: the King James Bible from Debian's
// bible-kjv-text package (public domain), prepared once into a cache
// directory as a BPE tokenizer and two token shards.
//
// prepare_debian_corpus(spec) makes <cache_dir>/kjv-v<vocab>/ (with
// "-val<F>" appended when val_fraction is not 0.05) holding
//   tokenizer.json  byte-level BPE trained on the TRAIN chapters only
//                   (data/bpe_trainer.h; special token <|endoftext|> = id 0)
//   train.gltok     token shards (data/token_shard.h; uint16 ids when the
//   val.gltok       vocab fits), one document per chapter
//   corpus.json     sources, licence, counts, entropy, split rule, version
// Text: `bible -f "gen1:1-rev22:21"` prints one verse per line,
// "Ge1:1 In the beginning ..."; the reference is stripped and a chapter's
// verses become one document, one verse per line ("...\n"). The token stream
// of a shard is, for each document in Bible order, <|endoftext|> followed by
// the document's ids (every document starts after the same token, as in
// llm.c / nanoGPT data), so documents are separated by the end-of-text id.
// Split: chapter k (0-based, Bible order, 1189 chapters) is validation iff
// floor((k+1)·f) > floor(k·f), f = val_fraction: for f = 0.05 exactly every
// 20th chapter (k = 19, 39, ...), 59 chapters; no chapter is in both parts.
//
// Cache: everything is written into a temporary sibling directory, fsynced,
// then renamed into place (rename(2) of a directory is atomic), so a crash
// never leaves a half-written cache. A call that finds corpus.json reads it
// and checks the files (headers, sizes, counts, tokenizer vocab) instead of
// rebuilding. Concurrent callers (several MPI ranks) are safe: each builds
// in its own temporary directory, the first rename wins, the others discard
// theirs and use the winner's files. A cache written by another version of
// this recipe (kCorpusRecipeVersion) is an error asking to delete it.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace gl {

class TokenShard;
class Tokenizer;

// Bump when the text, split or tokenizer recipe changes (cached corpora
// then stop matching).
constexpr int64_t kCorpusRecipeVersion = 1;

struct CorpusSpec {
  std::string cache_dir;       // created if missing
  int64_t vocab_size = 8192;   // BPE vocab incl. <|endoftext|> and 256 bytes; <= 65536
  double val_fraction = 0.05;  // in (0, 0.5]
};

struct PreparedCorpus {
  std::string dir, tokenizer_path, train_path, val_path;
  uint64_t vocab_size = 0;  // the tokenizer's (can be < requested if merges ran out)
  uint64_t train_tokens = 0, val_tokens = 0;
  int64_t train_documents = 0, val_documents = 0;
  double unigram_entropy_nats = 0;  // of train.gltok's empirical token distribution
  std::vector<std::string> sources;
  bool cache_hit = false;  // true: read from an existing cache, nothing built
};

PreparedCorpus prepare_debian_corpus(const CorpusSpec& spec);

// Entropy -sum_i p_i ln p_i of the shard's token frequencies (nats/token):
// the loss of the best context-free model, a baseline a language model must
// beat. Error on an empty shard.
double unigram_entropy_nats(const TokenShard& shard);

// --- pieces, for tests and the tokenize tool ---------------------------------

struct BibleChapter {
  std::string book;  // the bible program's abbreviation, e.g. "Ge", "1Sm"
  int32_t chapter = 0;
  int32_t verses = 0;
  std::string text;  // the verses, each ending in '\n'
};

// `bible -f "gen1:1-rev22:21"`'s output; error naming the package when the
// program is missing, fails, or prints too little.
std::string read_bible_text();
// Verse lines -> chapters in order. Error naming `source` and the line for a
// line that is not "<Book><chapter>:<verse> <text>".
std::vector<BibleChapter> parse_bible_text(std::string_view text, const std::string& source);

// The split rule above: document k goes to validation iff
// floor((k+1)·f) > floor(k·f). f = 0: never.
bool is_validation_document(int64_t k, double val_fraction);

struct SplitCounts {
  uint64_t train_tokens = 0, val_tokens = 0;
  int64_t train_documents = 0, val_documents = 0;
};
// Tokenizes documents into token shards in the layout above
// (<|endoftext|> + ids per document): validation documents (by the rule,
// val_fraction > 0) to val_path, the others to train_path. The tokenizer
// must have <|endoftext|>. Shards are uint16 when the vocab fits, else uint32.
SplitCounts write_document_shards(const Tokenizer& tokenizer, const std::vector<std::string>& documents,
                                  double val_fraction, const std::string& train_path,
                                  const std::string& val_path);

}  // namespace gl
