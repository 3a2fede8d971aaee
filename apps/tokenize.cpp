// gridlock_tokenize: trains byte-level BPE tokenizers, tokenizes text into
// gridlock token shards, prepares the built-in Debian English corpus, and
// describes shards.
//
//   train-bpe  data/bpe_trainer.h (Hugging Face BpeTrainer's merges and ids)
//   encode     data/corpus.h write_document_shards: each FILE is one
//              document, written as <|endoftext|> + its ids; with
//              --val-fraction F > 0, document k goes to PREFIX.val.gltok iff
//              floor((k+1)F) > floor(kF), the rest to PREFIX.train.gltok
//              (F = 0: everything to PREFIX.gltok)
//   corpus     data/corpus.h prepare_debian_corpus (cached)
//   info       count, dtype, vocab, unigram entropy of shards
// Exit codes (apps/common.h): 0 ok, 1 runtime error, 2 usage error; every
// error is one line on stderr.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "apps/common.h"
#include "core/error.h"
#include "data/bpe_trainer.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

using namespace gl;
using gl::apps::ArgCursor;
using gl::apps::UsageError;

namespace {

const char* kUsage =
    "usage: gridlock_tokenize COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  train-bpe --vocab N -o TOKENIZER.json [--min-frequency M] [--special TOKEN]...\n"
    "            [--no-special] FILES...\n"
    "      train a byte-level BPE tokenizer (GPT-2 pre-tokenizer, Hugging Face BpeTrainer's\n"
    "      merge order) on FILES, each file one text. N counts the special tokens\n"
    "      (default one: <|endoftext|>; --special replaces the default, repeatable;\n"
    "      --no-special: none) and the 256 byte symbols. --min-frequency: smallest pair\n"
    "      count merged (default 2).\n"
    "  encode --tokenizer TOKENIZER.json -o PREFIX [--val-fraction F] FILES...\n"
    "      tokenize FILES, each file one document (<|endoftext|> then its ids), into\n"
    "      gridlock token shards: PREFIX.train.gltok and PREFIX.val.gltok, document k\n"
    "      going to val iff floor((k+1)F) > floor(kF); with F = 0 (the default) one\n"
    "      shard PREFIX.gltok.\n"
    "  corpus [--vocab N] [--cache DIR] [--val-fraction F]\n"
    "      prepare the King James Bible corpus from Debian's bible-kjv (default vocab 8192,\n"
    "      cache ./cache, F 0.05) into DIR/kjv-vN/ or reuse it; prints the summary.\n"
    "  info SHARD...\n"
    "      token count, id width, vocab size and unigram entropy of gridlock token shards.\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = str(path, ".tmp.", ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    GL_CHECK(f.good(), path, ": cannot create ", tmp);
    f << text;
    f.close();
    GL_CHECK(f.good(), path, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) std::filesystem::remove(tmp);
  GL_CHECK(!ec, path, ": cannot rename ", tmp, " into place: ", ec.message());
}

double parse_fraction(const std::string& flag, const std::string& text, double max_value) {
  const double f = apps::parse_double(flag, text);
  if (!(f >= 0 && f <= max_value))
    throw UsageError(flag + " " + text + " out of range [0, " + str(max_value) + "]");
  return f;
}

int train_bpe_command(ArgCursor& args) {
  BpeTrainOptions opt;
  std::string out;
  std::vector<std::string> files;
  bool specials_given = false;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--vocab") opt.vocab_size = apps::parse_int(a, args.value(a), 1);
    else if (a == "--min-frequency") opt.min_frequency = apps::parse_int(a, args.value(a), 0);
    else if (a == "--special") {
      if (!specials_given) opt.special_tokens.clear();
      specials_given = true;
      opt.special_tokens.push_back(args.value(a));
    } else if (a == "--no-special") {
      args.no_value(a);
      opt.special_tokens.clear();
      specials_given = true;
    } else if (a == "-o") out = args.value(a);
    else if (a.size() > 1 && a[0] == '-') throw UsageError("train-bpe: unknown option '" + a + "'");
    else files.push_back(a);
  }
  if (opt.vocab_size == 0) throw UsageError("train-bpe: --vocab N is required");
  if (out.empty()) throw UsageError("train-bpe: -o TOKENIZER.json is required");
  if (files.empty()) throw UsageError("train-bpe: no input FILES");
  const int64_t min_vocab = 256 + int64_t(opt.special_tokens.size());
  if (opt.vocab_size < min_vocab)
    throw UsageError(str("train-bpe: --vocab ", opt.vocab_size, " is below ", min_vocab,
                         " (256 byte symbols + ", opt.special_tokens.size(), " special tokens)"));
  std::vector<std::string> texts;
  for (const std::string& f : files) texts.push_back(apps::read_text_file(f));
  const BpeModel model = train_bpe(texts, opt);
  write_text_atomic(out, bpe_tokenizer_json(model));
  std::printf("%s: %zu tokens (%zu special, 256 bytes, %zu merges) from %zu file(s)\n", out.c_str(),
              model.tokens.size(), model.special_tokens.size(), model.merges.size(), files.size());
  return 0;
}

int encode_command(ArgCursor& args) {
  std::string tokenizer_path, prefix;
  double val_fraction = 0;
  std::vector<std::string> files;
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--tokenizer") tokenizer_path = args.value(a);
    else if (a == "-o") prefix = args.value(a);
    else if (a == "--val-fraction") val_fraction = parse_fraction(a, args.value(a), 0.5);
    else if (a.size() > 1 && a[0] == '-') throw UsageError("encode: unknown option '" + a + "'");
    else files.push_back(a);
  }
  if (tokenizer_path.empty()) throw UsageError("encode: --tokenizer TOKENIZER.json is required");
  if (prefix.empty()) throw UsageError("encode: -o PREFIX is required");
  if (files.empty()) throw UsageError("encode: no input FILES");
  int64_t n_val = 0;
  for (size_t k = 0; k < files.size(); ++k) n_val += is_validation_document(int64_t(k), val_fraction);
  if (val_fraction > 0 && (n_val == 0 || n_val == int64_t(files.size())))
    throw UsageError(str("encode: --val-fraction ", val_fraction, " puts ", n_val, " of ", files.size(),
                         " files in validation: give more files or --val-fraction 0"));
  const Tokenizer tok = Tokenizer::from_json_file(tokenizer_path);
  std::vector<std::string> docs;
  for (const std::string& f : files) docs.push_back(apps::read_text_file(f));
  const std::string train_path = val_fraction > 0 ? prefix + ".train.gltok" : prefix + ".gltok";
  const std::string val_path = val_fraction > 0 ? prefix + ".val.gltok" : "";
  const SplitCounts n = write_document_shards(tok, docs, val_fraction, train_path, val_path);
  std::printf("%s: %llu tokens, %lld document(s)\n", train_path.c_str(),
              static_cast<unsigned long long>(n.train_tokens), static_cast<long long>(n.train_documents));
  if (val_fraction > 0)
    std::printf("%s: %llu tokens, %lld document(s)\n", val_path.c_str(),
                static_cast<unsigned long long>(n.val_tokens), static_cast<long long>(n.val_documents));
  return 0;
}

int corpus_command(ArgCursor& args) {
  CorpusSpec spec;
  spec.cache_dir = "cache";
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "--vocab") spec.vocab_size = apps::parse_int(a, args.value(a), 257);
    else if (a == "--cache") spec.cache_dir = args.value(a);
    else if (a == "--val-fraction") spec.val_fraction = parse_fraction(a, args.value(a), 0.5);
    else throw UsageError("corpus: unexpected argument '" + a + "'");
  }
  if (spec.vocab_size > 65536) throw UsageError("corpus: --vocab is at most 65536");
  if (spec.val_fraction <= 0) throw UsageError("corpus: --val-fraction must be > 0");
  const PreparedCorpus c = prepare_debian_corpus(spec);
  std::printf("corpus     %s (%s)\n", c.dir.c_str(), c.cache_hit ? "cached" : "built");
  for (const std::string& s : c.sources) std::printf("source     %s\n", s.c_str());
  std::printf("tokenizer  %s (vocab %llu)\n", c.tokenizer_path.c_str(), static_cast<unsigned long long>(c.vocab_size));
  std::printf("train      %s: %llu tokens, %lld chapters\n", c.train_path.c_str(),
              static_cast<unsigned long long>(c.train_tokens), static_cast<long long>(c.train_documents));
  std::printf("val        %s: %llu tokens, %lld chapters\n", c.val_path.c_str(),
              static_cast<unsigned long long>(c.val_tokens), static_cast<long long>(c.val_documents));
  std::printf("entropy    %.4f nats/token (unigram, train)\n", c.unigram_entropy_nats);
  return 0;
}

int info_command(ArgCursor& args) {
  std::vector<std::string> shards;
  while (!args.done()) {
    const std::string a = args.next();
    if (a.size() > 1 && a[0] == '-') throw UsageError("info: unknown option '" + a + "'");
    shards.push_back(a);
  }
  if (shards.empty()) throw UsageError("info: no SHARD given");
  for (const std::string& path : shards) {
    const TokenShard s = TokenShard::open(path);
    std::printf("%s: %zu tokens, uint%d ids, vocab %llu, unigram entropy %.4f nats/token\n", path.c_str(),
                s.count(), s.dtype() == gl::TokenDType::u16 ? 16 : 32,
                static_cast<unsigned long long>(s.vocab_size()), s.count() ? unigram_entropy_nats(s) : 0.0);
  }
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 2) throw UsageError("missing COMMAND (train-bpe, encode, corpus, info)");
  const std::string command = argv[1];
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  // The cursor skips argv[0]; here the command takes its place.
  ArgCursor args(argc - 1, argv + 1);
  if (command == "train-bpe") return train_bpe_command(args);
  if (command == "encode") return encode_command(args);
  if (command == "corpus") return corpus_command(args);
  if (command == "info") return info_command(args);
  throw UsageError("unknown command '" + command + "' (train-bpe, encode, corpus, info)");
}

}  // namespace

int main(int argc, char** argv) {
  return gl::apps::run_program("gridlock_tokenize", [&] { return run(argc, argv); });
}
