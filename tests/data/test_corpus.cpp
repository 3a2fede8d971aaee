// The King James Bible corpus (data/corpus.h): verse parsing, the split
// rule, document shards, unigram entropy against hand-computed values, and
// prepare_debian_corpus end to end in a temporary directory: counts, the
// tokenizer (byte-identical to Hugging Face's, by a pinned hash), the
// decode round trip of both shards, train/val disjointness, the cache hit,
// concurrent preparation, a damaged cache and the errors. `bible` is a
// required package (scripts/setup.sh), so nothing here is skipped.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/json.h"
#include "data/bpe_trainer.h"
#include "data/corpus.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

// FNV-1a 64 of the tokenizer.json that Hugging Face tokenizers 0.20.3
// writes (to_str(pretty=True)) when trained like data/bpe_trainer.h on the
// corpus's train chapters at vocab 8192 (Debian bible-kjv-text 4.38);
// tests/reference/bpe_interop.py prints it. Ours must be byte-identical.
constexpr uint64_t kKjvTokenizerFnv = 0xb56484818b418fadull;

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("gl_corpus_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str() const { return path.string(); }
};

// The shard's documents: each starts at an <|endoftext|> (id eot).
std::vector<std::vector<int32_t>> split_documents(const TokenShard& s, int32_t eot) {
  const std::vector<int32_t> ids = s.read(0, s.count());
  std::vector<std::vector<int32_t>> docs;
  REQUIRE_MESSAGE((!ids.empty() && ids[0] == eot), s.path() << " does not start with <|endoftext|>");
  for (int32_t id : ids) {
    if (id == eot) docs.emplace_back();
    else docs.back().push_back(id);
  }
  return docs;
}

}  // namespace

TEST_CASE("corpus: parse_bible_text strips references and groups verses into chapters") {
  const std::string text =
      "Ge1:1 In the beginning God created the heaven and the earth.\n"
      "Ge1:2 And the earth was without form.  \n"
      "Ge2:1 Thus the heavens were finished.\n"
      "\n"
      "1Sm12:3 Behold, here I am.\r\n"
      "Rev22:21 The grace of our Lord.";
  const std::vector<BibleChapter> c = parse_bible_text(text, "t");
  REQUIRE(c.size() == 4);
  CHECK(c[0].book == "Ge");
  CHECK(c[0].chapter == 1);
  CHECK(c[0].verses == 2);
  CHECK(c[0].text == "In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n");
  CHECK((c[1].book == "Ge" && c[1].chapter == 2 && c[1].text == "Thus the heavens were finished.\n"));
  CHECK((c[2].book == "1Sm" && c[2].chapter == 12 && c[2].text == "Behold, here I am.\n"));
  CHECK((c[3].book == "Rev" && c[3].chapter == 22 && c[3].verses == 1));
  for (const char* bad : {"Ge1 no colon", "1:1 no book", "Ge1:x text", "Ge1:1", ":1 x", "Ge:1 x"})
    CHECK_THROWS_WITH_AS(parse_bible_text(std::string("Ge1:1 ok\n") + bad + "\n", "kjv.txt"),
                         doctest::Contains("kjv.txt: line 2: expected \"<Book><chapter>:<verse> <text>\""), Error);
}

TEST_CASE("corpus: the split rule takes every 1/f-th document") {
  std::vector<int64_t> val;
  for (int64_t k = 0; k < 100; ++k)
    if (is_validation_document(k, 0.05)) val.push_back(k);
  CHECK(val == std::vector<int64_t>{19, 39, 59, 79, 99});
  int64_t n = 0;
  for (int64_t k = 0; k < 1189; ++k) n += is_validation_document(k, 0.05);
  CHECK(n == 59);  // floor(1189 / 20)
  CHECK(is_validation_document(1, 0.5));
  CHECK_FALSE(is_validation_document(2, 0.5));
  CHECK(is_validation_document(9, 0.1));
  for (int64_t k = 0; k < 50; ++k) CHECK_FALSE(is_validation_document(k, 0.0));
}

TEST_CASE("corpus: unigram entropy of a shard, hand-computed") {
  TempDir dir;
  // p = (1/2, 1/4, 1/4, 0): H = 1.5 ln 2.
  write_token_shard(dir.str() + "/a.gltok", {0, 0, 1, 2}, TokenDType::u16, 4);
  CHECK(unigram_entropy_nats(TokenShard::open(dir.str() + "/a.gltok")) == doctest::Approx(1.5 * std::log(2.0)).epsilon(1e-12));
  // Uniform over 5 ids (the unused id 5 of vocab 6 adds nothing): ln 5.
  write_token_shard(dir.str() + "/b.gltok", {4, 3, 2, 1, 0, 0, 1, 2, 3, 4}, TokenDType::u32, 6);
  CHECK(unigram_entropy_nats(TokenShard::open(dir.str() + "/b.gltok")) == doctest::Approx(std::log(5.0)).epsilon(1e-12));
  // One id: 0. More than one read chunk (65536 ids): p = (0.75, 0.25).
  write_token_shard(dir.str() + "/c.gltok", {7, 7, 7}, TokenDType::u16, 8);
  CHECK(unigram_entropy_nats(TokenShard::open(dir.str() + "/c.gltok")) == 0.0);
  std::vector<int32_t> big(200000, 1);
  for (size_t i = 0; i < big.size(); i += 4) big[i] = 2;
  write_token_shard(dir.str() + "/d.gltok", big, TokenDType::u16, 3);
  CHECK(unigram_entropy_nats(TokenShard::open(dir.str() + "/d.gltok")) ==
        doctest::Approx(-(0.75 * std::log(0.75) + 0.25 * std::log(0.25))).epsilon(1e-12));
  // An altered file with an id >= vocab is an error, not a write out of bounds.
  write_token_shard(dir.str() + "/f.gltok", {0, 1, 2}, TokenDType::u16, 3);
  {
    std::fstream f(dir.str() + "/f.gltok", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kTokenShardHeaderBytes + 2);
    f.put(char(9));
  }
  CHECK_THROWS_WITH_AS(unigram_entropy_nats(TokenShard::open(dir.str() + "/f.gltok")),
                       doctest::Contains("token 1 is id 9, outside the vocab size 3"), Error);
  write_token_shard(dir.str() + "/e.gltok", {}, TokenDType::u16, 8);
  CHECK_THROWS_WITH_AS(unigram_entropy_nats(TokenShard::open(dir.str() + "/e.gltok")),
                       doctest::Contains("e.gltok holds no tokens"), Error);
}

TEST_CASE("corpus: write_document_shards writes <|endoftext|> + ids per document, split by the rule") {
  TempDir dir;
  BpeTrainOptions o;
  o.vocab_size = 280;
  const std::vector<std::string> docs = {"first document\n", "second one\n", "third\n", "fourth document\n"};
  const Tokenizer tok = Tokenizer::from_json(train_bpe_tokenizer_json(docs, o), "t.json");
  const int32_t eot = *tok.eos_id();
  const SplitCounts n = write_document_shards(tok, docs, 0.5, dir.str() + "/train.gltok", dir.str() + "/val.gltok");
  CHECK((n.train_documents == 2 && n.val_documents == 2));
  const TokenShard train = TokenShard::open(dir.str() + "/train.gltok");
  const TokenShard val = TokenShard::open(dir.str() + "/val.gltok");
  CHECK(train.dtype() == TokenDType::u16);
  CHECK(train.vocab_size() == uint64_t(tok.vocab_size()));
  CHECK((train.count() == n.train_tokens && val.count() == n.val_tokens));
  auto stream = [&](std::initializer_list<int> ks) {
    std::vector<int32_t> ids;
    for (int k : ks) {
      ids.push_back(eot);
      const std::vector<int32_t> d = tok.encode(docs[size_t(k)]);
      ids.insert(ids.end(), d.begin(), d.end());
    }
    return ids;
  };
  CHECK(train.read(0, train.count()) == stream({0, 2}));  // k = 1, 3 go to val at f = 0.5
  CHECK(val.read(0, val.count()) == stream({1, 3}));
  // f = 0: one shard with everything, no validation path needed.
  const SplitCounts all = write_document_shards(tok, docs, 0, dir.str() + "/all.gltok", "");
  CHECK(all.val_documents == 0);
  CHECK(TokenShard::open(dir.str() + "/all.gltok").read(0, all.train_tokens) == stream({0, 1, 2, 3}));

  BpeTrainOptions no_eot = o;
  no_eot.special_tokens = {"<pad>"};
  const Tokenizer tok2 = Tokenizer::from_json(train_bpe_tokenizer_json(docs, no_eot), "t2.json");
  CHECK_THROWS_WITH_AS(write_document_shards(tok2, docs, 0, dir.str() + "/x.gltok", ""),
                       doctest::Contains("no <|endoftext|>"), Error);
  CHECK_THROWS_WITH_AS(write_document_shards(tok, docs, 1.0, dir.str() + "/x.gltok", dir.str() + "/y.gltok"),
                       doctest::Contains("val_fraction 1 out of range"), Error);
}

TEST_CASE("corpus: prepare_debian_corpus builds the KJV corpus, then hits the cache") {
  TempDir dir;
  CorpusSpec spec;
  spec.cache_dir = dir.str() + "/cache";  // created by the call
  const PreparedCorpus c = prepare_debian_corpus(spec);
  CHECK_FALSE(c.cache_hit);
  CHECK(c.dir == spec.cache_dir + "/kjv-v8192");
  CHECK(c.tokenizer_path == c.dir + "/tokenizer.json");
  CHECK(c.vocab_size == 8192);
  CHECK(c.train_documents == 1130);  // 1189 chapters, every 20th to val
  CHECK(c.val_documents == 59);
  REQUIRE(c.sources.size() == 1);
  CHECK(c.sources[0].find("bible-kjv-text") != std::string::npos);
  // Nothing else is left in the cache directory (no temporary).
  CHECK(std::distance(fs::directory_iterator(spec.cache_dir), fs::directory_iterator()) == 1);

  // The tokenizer: trained on the train chapters only, byte-identical to
  // Hugging Face's trainer on the same texts.
  const std::string tokenizer_json = slurp(c.tokenizer_path);
  CHECK_MESSAGE(fnv1a64(tokenizer_json) == kKjvTokenizerFnv,
                "tokenizer.json differs from Hugging Face's (run tests/reference/bpe_interop.py check)");
  const Tokenizer tok = Tokenizer::from_json_file(c.tokenizer_path);
  CHECK(*tok.eos_id() == 0);

  // The shards decode to exactly the chapters, train and val disjoint.
  const std::vector<BibleChapter> chapters = parse_bible_text(read_bible_text(), "bible");
  REQUIRE(chapters.size() == 1189);
  const TokenShard train = TokenShard::open(c.train_path), val = TokenShard::open(c.val_path);
  CHECK((train.count() == c.train_tokens && val.count() == c.val_tokens));
  CHECK(train.dtype() == TokenDType::u16);
  CHECK(train.vocab_size() == 8192);
  train.check_ids();
  const std::vector<std::vector<int32_t>> train_docs = split_documents(train, 0), val_docs = split_documents(val, 0);
  REQUIRE(train_docs.size() == 1130);
  REQUIRE(val_docs.size() == 59);
  std::string train_text;
  std::set<std::string> train_set;
  size_t t = 0, v = 0;
  for (size_t k = 0; k < chapters.size(); ++k) {
    const bool is_val = is_validation_document(int64_t(k), 0.05);
    const std::string decoded = tok.decode(is_val ? val_docs[v++] : train_docs[t++]);
    CHECK(decoded == chapters[k].text);  // decode(encode(chapter)) == chapter
    if (!is_val) {
      train_text += decoded;
      train_set.insert(decoded);
    }
  }
  for (size_t k = 19; k < chapters.size(); k += 20) {
    CHECK(train_set.count(chapters[k].text) == 0);
    CHECK(train_text.find(chapters[k].text) == std::string::npos);
  }
  // About 4.4 MB / ~4.5 bytes per token, and a unigram entropy between a
  // few nats and ln(8192) = 9.01.
  CHECK((c.train_tokens > 800000 && c.train_tokens < 1100000));
  CHECK(c.unigram_entropy_nats == doctest::Approx(unigram_entropy_nats(train)).epsilon(1e-12));
  CHECK((c.unigram_entropy_nats > 4.0 && c.unigram_entropy_nats < std::log(8192.0)));

  const Json meta = Json::parse_file(c.dir + "/corpus.json");
  CHECK(meta.at("recipe_version").as_int() == kCorpusRecipeVersion);
  CHECK(meta.at("licence").as_string().find("public domain") != std::string::npos);
  CHECK(meta.at("verses").as_int() == 31102);

  // Second call: read from the cache, same answer.
  const PreparedCorpus again = prepare_debian_corpus(spec);
  CHECK(again.cache_hit);
  CHECK((again.dir == c.dir && again.train_tokens == c.train_tokens && again.val_tokens == c.val_tokens &&
         again.vocab_size == c.vocab_size && again.train_documents == c.train_documents &&
         again.sources == c.sources && again.unigram_entropy_nats == c.unigram_entropy_nats));
  CHECK(slurp(c.tokenizer_path) == tokenizer_json);

  // A cache from another recipe version asks to be deleted; a damaged one
  // is an error naming the file. (Not SUBCASEs: each would rebuild.)
  const std::string meta_text = slurp(c.dir + "/corpus.json");
  const std::string from = "\"recipe_version\": " + std::to_string(kCorpusRecipeVersion);
  REQUIRE(meta_text.find(from) != std::string::npos);
  std::string edited = meta_text;
  edited.replace(edited.find(from), from.size(), "\"recipe_version\": 999");
  std::ofstream(c.dir + "/corpus.json", std::ios::trunc) << edited;
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(spec), doctest::Contains(("delete " + c.dir).c_str()), Error);
  std::ofstream(c.dir + "/corpus.json", std::ios::trunc) << meta_text;
  CHECK(prepare_debian_corpus(spec).cache_hit);
  fs::resize_file(c.val_path, fs::file_size(c.val_path) - 2);
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(spec), doctest::Contains("val.gltok"), Error);
}

TEST_CASE("corpus: concurrent preparation is safe, the first rename wins") {
  TempDir dir;
  CorpusSpec spec;
  spec.cache_dir = dir.str();
  spec.vocab_size = 300;
  spec.val_fraction = 0.1;
  PreparedCorpus a, b;
  std::string error_a, error_b;
  auto prepare = [&](PreparedCorpus& out, std::string& error) {
    try {
      out = prepare_debian_corpus(spec);
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread ta(prepare, std::ref(a), std::ref(error_a)), tb(prepare, std::ref(b), std::ref(error_b));
  ta.join();
  tb.join();
  CHECK(error_a.empty());
  CHECK(error_b.empty());
  CHECK(a.dir == dir.str() + "/kjv-v300-val0.1");
  CHECK((a.dir == b.dir && a.train_tokens == b.train_tokens && a.val_tokens == b.val_tokens));
  CHECK(a.train_documents + a.val_documents == 1189);
  CHECK(a.val_documents == 118);  // floor(1189 / 10)
  // Only the published directory remains (the loser removed its temporary).
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path)) entries.push_back(e.path().filename().string());
  CHECK(entries == std::vector<std::string>{"kjv-v300-val0.1"});
  CHECK(Tokenizer::from_json_file(a.tokenizer_path).vocab_size() == 300);
}

TEST_CASE("corpus: errors") {
  TempDir dir;
  CorpusSpec spec;
  spec.cache_dir = dir.str();
  CorpusSpec bad = spec;
  bad.vocab_size = 256;
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(bad), doctest::Contains("vocab_size 256 out of range"), Error);
  bad = spec;
  bad.vocab_size = 70000;
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(bad), doctest::Contains("vocab_size 70000 out of range"), Error);
  bad = spec;
  bad.val_fraction = 0;
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(bad), doctest::Contains("val_fraction 0 out of range"), Error);
  bad.val_fraction = 0.75;
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(bad), doctest::Contains("val_fraction 0.75 out of range"), Error);
  bad = spec;
  bad.cache_dir = "";
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(bad), doctest::Contains("cache_dir is empty"), Error);
  // A directory in the way that is not a finished cache.
  fs::create_directories(dir.str() + "/kjv-v8192");
  std::ofstream(dir.str() + "/kjv-v8192/junk") << "x";
  CHECK_THROWS_WITH_AS(prepare_debian_corpus(spec), doctest::Contains("holds no corpus.json"), Error);

  // Without the `bible` program: the error names the packages.
  const std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", "/nonexistent", 1);
  std::string message;
  try {
    read_bible_text();
  } catch (const Error& e) {
    message = e.what();
  }
  ::setenv("PATH", path.c_str(), 1);
  CHECK(message.find("install bible-kjv and bible-kjv-text") != std::string::npos);
  CHECK(message.find("command not found") != std::string::npos);
}
