// The King James Bible corpus: see data/corpus.h for the text, split, cache
// layout and concurrency rules. Reference for the source text: Debian
// packages bible-kjv (the `bible` program) and bible-kjv-text (the data;
// /usr/share/doc/bible-kjv-text/copyright: the 1611 translation is out of
// copyright).
#include "data/corpus.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/json.h"
#include "data/bpe_trainer.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"

namespace gl {

namespace fs = std::filesystem;

namespace {

const char* kBibleCommand = "bible -f \"gen1:1-rev22:21\"";
const char* kInstallHint = "install bible-kjv and bible-kjv-text (scripts/setup.sh does)";
const char* kLicence =
    "public domain: the King James Version (1611) is out of copyright "
    "(/usr/share/doc/bible-kjv-text/copyright)";
// The KJV has 31102 verses in 1189 chapters; fewer means a broken install.
constexpr size_t kMinVerses = 31000;
constexpr int64_t kMaxU16Vocab = 65536;

// Runs a shell command and returns its stdout; `status` gets the exit code
// (-1 if it did not exit normally).
std::string run_command(const std::string& command, int& status) {
  FILE* p = ::popen(command.c_str(), "r");
  GL_CHECK(p, "corpus: cannot run `", command, "`: ", std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int raw = ::pclose(p);
  status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return out;
}

std::string package_version(const std::string& package) {
  int status = 0;
  std::string v = run_command("dpkg-query -W -f='${Version}' " + package + " 2>/dev/null", status);
  return status == 0 && !v.empty() ? v : "unknown version";
}

// Writes and fsyncs a file inside the temporary cache directory (whose
// rename is what publishes it, so no per-file rename is needed).
void write_file_synced(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  GL_CHECK(fd >= 0, "corpus: cannot create ", path, ": ", std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      GL_CHECK(false, "corpus: write to ", path, " failed: ", std::strerror(e));
    }
    done += size_t(n);
  }
  const bool synced = ::fsync(fd) == 0;
  GL_CHECK(::close(fd) == 0 && synced, "corpus: ", path, ": fsync/close failed: ", std::strerror(errno));
}

void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Removes the temporary directory unless released (built and renamed).
struct TempDir {
  std::string path;
  ~TempDir() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string corpus_dir_name(const CorpusSpec& spec) {
  std::string name = str("kjv-v", spec.vocab_size);
  if (spec.val_fraction != 0.05) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "-val%g", spec.val_fraction);
    name += buf;
  }
  return name;
}

void check_spec(const CorpusSpec& spec) {
  GL_CHECK(!spec.cache_dir.empty(), "prepare_debian_corpus: cache_dir is empty");
  GL_CHECK(spec.vocab_size >= 257 && spec.vocab_size <= kMaxU16Vocab, "prepare_debian_corpus: vocab_size ",
           spec.vocab_size, " out of range [257, 65536] (256 byte symbols + <|endoftext|> at least)");
  GL_CHECK(spec.val_fraction > 0 && spec.val_fraction <= 0.5, "prepare_debian_corpus: val_fraction ",
           spec.val_fraction, " out of range (0, 0.5]");
}

PreparedCorpus corpus_paths(const std::string& dir) {
  PreparedCorpus c;
  c.dir = dir;
  c.tokenizer_path = dir + "/tokenizer.json";
  c.train_path = dir + "/train.gltok";
  c.val_path = dir + "/val.gltok";
  return c;
}

// Reads <dir>/corpus.json and checks it against the spec and the files.
PreparedCorpus load_cached(const std::string& dir, const CorpusSpec& spec) {
  const std::string meta_path = dir + "/corpus.json";
  const Json meta = Json::parse_file(meta_path);
  const std::string w = meta_path;
  GL_CHECK(meta.is_object() && meta.find("format") && meta.at("format", w).is_string() &&
               meta.at("format", w).as_string() == "gridlock-corpus",
           meta_path, ": not a gridlock corpus description (format != \"gridlock-corpus\")");
  const int64_t version = meta.at("recipe_version", w).as_int(w + ": recipe_version");
  GL_CHECK(version == kCorpusRecipeVersion, meta_path, ": made by corpus recipe version ", version,
           ", this build uses ", kCorpusRecipeVersion, ": delete ", dir, " to rebuild it");
  GL_CHECK(meta.at("vocab_size_requested", w).as_int(w) == spec.vocab_size &&
               meta.at("val_fraction", w).as_double(w) == spec.val_fraction,
           meta_path, ": made for vocab_size ", meta.at("vocab_size_requested", w).dump(), " val_fraction ",
           meta.at("val_fraction", w).dump(), ", not ", spec.vocab_size, " and ", spec.val_fraction);
  PreparedCorpus c = corpus_paths(dir);
  c.cache_hit = true;
  c.vocab_size = uint64_t(meta.at("vocab_size", w).as_int(w + ": vocab_size"));
  const Json& tokens = meta.at("tokens", w);
  c.train_tokens = uint64_t(tokens.at("train", w + ": tokens").as_int(w + ": tokens.train"));
  c.val_tokens = uint64_t(tokens.at("val", w + ": tokens").as_int(w + ": tokens.val"));
  const Json& docs = meta.at("documents", w);
  c.train_documents = docs.at("train", w + ": documents").as_int(w + ": documents.train");
  c.val_documents = docs.at("val", w + ": documents").as_int(w + ": documents.val");
  c.unigram_entropy_nats = meta.at("unigram_entropy_nats", w).as_double(w + ": unigram_entropy_nats");
  for (const Json& s : meta.at("sources", w).as_array(w + ": sources")) c.sources.push_back(s.as_string());

  // The files: a tokenizer that loads with the recorded vocab, and shards
  // whose headers (TokenShard::open checks magic, version and exact size)
  // agree with the recorded counts.
  const Tokenizer tok = Tokenizer::from_json_file(c.tokenizer_path);
  GL_CHECK(uint64_t(tok.vocab_size()) == c.vocab_size, c.tokenizer_path, ": vocab size ", tok.vocab_size(),
           " but corpus.json says ", c.vocab_size);
  for (const auto& [path, count] : {std::pair{c.train_path, c.train_tokens}, std::pair{c.val_path, c.val_tokens}}) {
    const TokenShard shard = TokenShard::open(path);
    GL_CHECK(shard.count() == count && shard.vocab_size() == c.vocab_size, path, ": ", shard.count(),
             " tokens of vocab ", shard.vocab_size(), " but corpus.json says ", count, " of vocab ",
             c.vocab_size);
  }
  return c;
}

// Builds the whole cache content in `dir` (an empty directory).
PreparedCorpus build_corpus(const std::string& dir, const CorpusSpec& spec) {
  const std::string raw = read_bible_text();
  const std::vector<BibleChapter> chapters = parse_bible_text(raw, kBibleCommand);
  std::vector<std::string> documents, train_texts;
  size_t verses = 0;
  for (size_t k = 0; k < chapters.size(); ++k) {
    documents.push_back(chapters[k].text);
    verses += size_t(chapters[k].verses);
    if (!is_validation_document(int64_t(k), spec.val_fraction)) train_texts.push_back(chapters[k].text);
  }
  GL_CHECK(verses >= kMinVerses, "corpus: `", kBibleCommand, "` printed only ", verses, " verses (expected ",
           "31102): ", kInstallHint);

  PreparedCorpus c = corpus_paths(dir);
  BpeTrainOptions bpe;
  bpe.vocab_size = spec.vocab_size;
  const std::string tokenizer_json = train_bpe_tokenizer_json(train_texts, bpe);
  write_file_synced(c.tokenizer_path, tokenizer_json);
  const Tokenizer tok = Tokenizer::from_json(tokenizer_json, c.tokenizer_path);
  const SplitCounts n = write_document_shards(tok, documents, spec.val_fraction, c.train_path, c.val_path);
  c.vocab_size = uint64_t(tok.vocab_size());
  c.train_tokens = n.train_tokens;
  c.val_tokens = n.val_tokens;
  c.train_documents = n.train_documents;
  c.val_documents = n.val_documents;
  c.unigram_entropy_nats = unigram_entropy_nats(TokenShard::open(c.train_path));
  c.sources = {str("Debian package bible-kjv-text ", package_version("bible-kjv-text"),
                   ": the King James Version of the Bible, printed by `", kBibleCommand, "` (bible-kjv ",
                   package_version("bible-kjv"), ")")};

  Json meta = Json::object();
  meta.set("format", "gridlock-corpus");
  meta.set("recipe_version", kCorpusRecipeVersion);
  meta.set("name", "kjv");
  Json sources = Json::array();
  for (const std::string& s : c.sources) sources.push_back(s);
  meta.set("sources", sources);
  meta.set("licence", kLicence);
  meta.set("text", "one document per chapter, verses one per line, references stripped; "
                   "token stream: <|endoftext|> + ids per document");
  meta.set("split", "chapter k (0-based, Bible order) is validation iff floor((k+1)*f) > floor(k*f)");
  meta.set("val_fraction", spec.val_fraction);
  meta.set("vocab_size_requested", spec.vocab_size);
  meta.set("vocab_size", int64_t(c.vocab_size));
  meta.set("text_bytes", int64_t(raw.size()));
  meta.set("verses", int64_t(verses));
  Json docs = Json::object();
  docs.set("train", c.train_documents);
  docs.set("val", c.val_documents);
  meta.set("documents", docs);
  Json tokens = Json::object();
  tokens.set("train", c.train_tokens);
  tokens.set("val", c.val_tokens);
  meta.set("tokens", tokens);
  meta.set("unigram_entropy_nats", c.unigram_entropy_nats);
  Json files = Json::object();
  files.set("tokenizer", "tokenizer.json");
  files.set("train", "train.gltok");
  files.set("val", "val.gltok");
  meta.set("files", files);
  write_file_synced(dir + "/corpus.json", meta.dump(2) + "\n");
  fsync_directory(dir);
  return c;
}

// Where the final directory's paths point once the temporary is renamed.
PreparedCorpus moved(PreparedCorpus c, const std::string& final_dir) {
  PreparedCorpus m = corpus_paths(final_dir);
  c.dir = m.dir;
  c.tokenizer_path = m.tokenizer_path;
  c.train_path = m.train_path;
  c.val_path = m.val_path;
  return c;
}

}  // namespace

std::string read_bible_text() {
  int status = 0;
  const std::string out = run_command(std::string(kBibleCommand) + " 2>/dev/null", status);
  GL_CHECK(status == 0, "corpus: `", kBibleCommand, "` failed (exit status ", status,
           status == 127 ? ": command not found" : "", "): ", kInstallHint);
  // ~4.4 MB when installed; a small output means missing text data.
  GL_CHECK(out.size() > 4'000'000, "corpus: `", kBibleCommand, "` printed only ", out.size(),
           " bytes (expected ~4.4 MB): ", kInstallHint);
  return out;
}

std::vector<BibleChapter> parse_bible_text(std::string_view text, const std::string& source) {
  std::vector<BibleChapter> chapters;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t'))
      line.remove_suffix(1);
    if (line.empty()) continue;
    // "<Book><chapter>:<verse> <text>": the book may start with a digit
    // ("1Sm"), so the chapter is the digit run just before ':'.
    const size_t space = line.find(' ');
    const std::string_view ref = line.substr(0, std::min(space, line.size()));
    const size_t colon = ref.find(':');
    size_t chapter_begin = colon == std::string_view::npos ? 0 : colon;
    while (chapter_begin > 0 && std::isdigit(uint8_t(ref[chapter_begin - 1]))) --chapter_begin;
    const bool ok = space != std::string_view::npos && space + 1 < line.size() &&
                    colon != std::string_view::npos && colon + 1 < ref.size() &&
                    chapter_begin > 0 && chapter_begin < colon && colon - chapter_begin <= 4 &&
                    std::isalpha(uint8_t(ref[chapter_begin - 1])) &&
                    ref.find_first_not_of("0123456789", colon + 1) == std::string_view::npos;
    GL_CHECK(ok, source, ": line ", line_no, ": expected \"<Book><chapter>:<verse> <text>\", got \"",
             line.substr(0, 80), "\"");
    const std::string book(ref.substr(0, chapter_begin));
    const int32_t chapter = int32_t(std::stol(std::string(ref.substr(chapter_begin, colon - chapter_begin))));
    if (chapters.empty() || chapters.back().book != book || chapters.back().chapter != chapter)
      chapters.push_back(BibleChapter{book, chapter, 0, ""});
    BibleChapter& c = chapters.back();
    c.text.append(line.substr(space + 1));
    c.text += '\n';
    ++c.verses;
  }
  return chapters;
}

bool is_validation_document(int64_t k, double val_fraction) {
  if (val_fraction <= 0) return false;
  // The small offset keeps exact products such as 20 * 0.05 = 1 from
  // falling just below an integer in floating point.
  const double eps = 1e-9;
  return std::floor(double(k + 1) * val_fraction + eps) > std::floor(double(k) * val_fraction + eps);
}

SplitCounts write_document_shards(const Tokenizer& tokenizer, const std::vector<std::string>& documents,
                                  double val_fraction, const std::string& train_path,
                                  const std::string& val_path) {
  const std::optional<int32_t> eot = tokenizer.eos_id();
  GL_CHECK(eot.has_value(), "write_document_shards: the tokenizer has no <|endoftext|> token to separate documents");
  GL_CHECK(val_fraction >= 0 && val_fraction < 1, "write_document_shards: val_fraction ", val_fraction,
           " out of range [0, 1)");
  GL_CHECK(val_fraction == 0 || !val_path.empty(), "write_document_shards: no path for the validation shard");
  const uint64_t vocab = uint64_t(tokenizer.vocab_size());
  const TokenDType dtype = vocab <= uint64_t(kMaxU16Vocab) ? TokenDType::u16 : TokenDType::u32;
  TokenShardWriter train(train_path, dtype, vocab);
  std::optional<TokenShardWriter> val;
  if (val_fraction > 0) val.emplace(val_path, dtype, vocab);
  SplitCounts n;
  for (size_t k = 0; k < documents.size(); ++k) {
    const bool is_val = is_validation_document(int64_t(k), val_fraction);
    TokenShardWriter& out = is_val ? *val : train;
    out.append(&*eot, 1);
    out.append(tokenizer.encode(documents[k]));
    ++(is_val ? n.val_documents : n.train_documents);
  }
  n.train_tokens = train.count();
  train.commit();
  if (val) {
    n.val_tokens = val->count();
    val->commit();
  }
  return n;
}

double unigram_entropy_nats(const TokenShard& shard) {
  GL_CHECK(shard.count() > 0, "unigram_entropy_nats: ", shard.path(), " holds no tokens");
  std::vector<uint64_t> counts(shard.vocab_size(), 0);
  std::vector<int32_t> buf(1 << 16);
  for (size_t begin = 0; begin < shard.count(); begin += buf.size()) {
    const size_t n = std::min(buf.size(), shard.count() - begin);
    shard.read(begin, n, buf.data());
    // The writer never stores an id >= vocab_size, but an altered file
    // could: check before indexing.
    for (size_t i = 0; i < n; ++i) {
      GL_CHECK(buf[i] >= 0 && uint64_t(buf[i]) < counts.size(), "unigram_entropy_nats: ", shard.path(),
               ": token ", begin + i, " is id ", buf[i], ", outside the vocab size ", counts.size());
      ++counts[size_t(buf[i])];
    }
  }
  const double total = double(shard.count());
  double h = 0;
  for (uint64_t c : counts)
    if (c > 0) {
      const double p = double(c) / total;
      h -= p * std::log(p);
    }
  return h;
}

PreparedCorpus prepare_debian_corpus(const CorpusSpec& spec) {
  check_spec(spec);
  const std::string final_dir = (fs::path(spec.cache_dir) / corpus_dir_name(spec)).string();
  if (fs::exists(final_dir + "/corpus.json")) return load_cached(final_dir, spec);
  GL_CHECK(!fs::exists(final_dir) || fs::is_empty(final_dir), "prepare_debian_corpus: ", final_dir,
           " exists but holds no corpus.json (an interrupted copy?): delete it to rebuild");
  fs::create_directories(spec.cache_dir);

  // A name no other process or thread uses: pid + a per-process counter.
  static std::atomic<uint64_t> serial{0};
  TempDir tmp;
  tmp.path = str(final_dir, ".tmp-", ::getpid(), "-", serial++);
  fs::create_directory(tmp.path);
  PreparedCorpus built = build_corpus(tmp.path, spec);

  if (::rename(tmp.path.c_str(), final_dir.c_str()) == 0) {
    tmp.path.clear();  // published: nothing to remove
    fsync_directory(spec.cache_dir);
    return moved(built, final_dir);
  }
  const int e = errno;
  // Another process published first (rename onto a non-empty directory
  // fails): use its files; ours are removed by TempDir.
  GL_CHECK(e == ENOTEMPTY || e == EEXIST, "prepare_debian_corpus: cannot rename ", tmp.path, " to ",
           final_dir, ": ", std::strerror(e));
  return load_cached(final_dir, spec);
}

}  // namespace gl
