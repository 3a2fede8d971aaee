// Byte-level BPE tokenizer: see data/tokenizer.h for the pipeline and what is
// supported. Reference: Hugging Face tokenizers 0.20 (tokenizer/
// added_vocabulary.rs, pre_tokenizers/byte_level.rs, models/bpe/word.rs) and
// GPT-2's encoder.py (bytes_to_unicode).
#include "data/tokenizer.h"

#include <algorithm>
#include <array>
#include <deque>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "data/byte_level.h"
#include "data/unicode.h"

namespace gl {

namespace {

// The byte-level alphabet and the pre-tokenizer split live in
// data/byte_level.h, shared with the BPE trainer.
using byte_level::byte_level_string;
using byte_level::byte_to_char;
using byte_level::char_to_byte;
using byte_level::gpt2_match_end;

// The ByteLevel decoder for one token: its characters mapped back to bytes,
// or, if one of them is not a byte symbol (an added token such as GPT-NeoX's
// runs of spaces), the token's own UTF-8 (tokenizers does the same).
std::string token_bytes(const std::string& token) {
  std::string out;
  for (size_t pos = 0; pos < token.size();) {
    const unicode::Utf8Unit u = unicode::utf8_next(token, pos);
    const int b = u.valid ? char_to_byte(u.cp) : -1;
    if (b < 0) return token;
    out += char(b);
    pos += u.len;
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GL_CHECK(f.good(), path, ": cannot open tokenizer file");
  std::ostringstream ss;
  ss << f.rdbuf();
  GL_CHECK(!f.bad(), path, ": read error");
  return ss.str();
}

// Refuses keys this implementation does not know: a field it does not read
// could change the tokenization.
void check_keys(const Json& obj, const std::string& source, const std::string& where,
                std::initializer_list<const char*> known) {
  for (const auto& item : obj.items(source + ": " + where)) {
    const std::string& key = item.first;  // a named variable: C++17 lambdas cannot capture bindings
    const bool ok = std::any_of(known.begin(), known.end(), [&](const char* k) { return key == k; });
    GL_CHECK(ok, source, ": unsupported field '", where, ".", key, "'");
  }
}

// A field that must be absent, null, or one of the values that mean "off".
void check_off(const Json& obj, const std::string& source, const std::string& where,
               const char* key) {
  const Json* v = obj.find(key);
  const bool off = !v || v->is_null() || (v->is_bool() && !v->as_bool()) ||
                   (v->is_string() && v->as_string().empty());
  GL_CHECK(off, source, ": unsupported ", where, ".", key, " = ", v ? v->dump() : "",
           " (only null/false/\"\" is supported)");
}

std::string type_of(const Json& obj, const std::string& source, const std::string& where) {
  GL_CHECK(obj.is_object(), source, ": ", where, " must be an object or null, got ", obj.type_name());
  const Json* t = obj.find("type");
  GL_CHECK(t && t->is_string(), source, ": ", where, ".type is missing");
  return t->as_string();
}

}  // namespace

Tokenizer Tokenizer::from_json_file(const std::string& path) {
  return from_json(read_file(path), path);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  const Json j = Json::parse(json_text, source);
  GL_CHECK(j.is_object(), source, ": tokenizer.json must be a JSON object");
  check_keys(j, source, "<root>",
             {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
              "post_processor", "decoder", "model"});
  check_off(j, source, "<root>", "truncation");
  check_off(j, source, "<root>", "padding");
  Tokenizer t;
  t.source_ = source;
  t.read_pipeline(j);
  const Json& model = j.at("model", source);
  t.read_model_options(model);
  const std::vector<AddedToken> added = read_added_tokens(j, source);
  t.build_vocab(model.at("vocab", source + ": model").items(source + ": model.vocab"), added);
  t.build_merges(read_merges(model, source));
  t.finish_setup(added);
  return t;
}

// normalizer, pre_tokenizer, post_processor and decoder.
void Tokenizer::read_pipeline(const Json& j) {
  const std::string& source = source_;
  // normalizer: null or NFC.
  if (const Json* norm = j.find("normalizer"); norm && !norm->is_null()) {
    const std::string type = type_of(*norm, source, "normalizer");
    GL_CHECK(type == "NFC", source, ": unsupported normalizer.type '", type,
             "' (supported: null, NFC)");
    nfc_ = true;
  }

  // pre_tokenizer: ByteLevel.
  const Json& pre = j.at("pre_tokenizer", source);
  GL_CHECK(!pre.is_null(), source, ": unsupported pre_tokenizer null (supported: ByteLevel)");
  const std::string pre_type = type_of(pre, source, "pre_tokenizer");
  GL_CHECK(pre_type == "ByteLevel", source, ": unsupported pre_tokenizer.type '", pre_type,
           "' (supported: ByteLevel)");
  check_keys(pre, source, "pre_tokenizer", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  add_prefix_space_ = pre.at("add_prefix_space", source + ": pre_tokenizer")
                          .as_bool(source + ": pre_tokenizer.add_prefix_space");
  if (const Json* r = pre.find("use_regex")) use_regex_ = r->as_bool(source + ": pre_tokenizer.use_regex");

  // post_processor: null, ByteLevel (which only trims offsets), or a
  // TemplateProcessing whose single-sequence template is the sequence alone
  // (what transformers writes for GPT-NeoX without BOS/EOS): none adds tokens.
  if (const Json* post = j.find("post_processor"); post && !post->is_null()) {
    const std::string type = type_of(*post, source, "post_processor");
    bool adds_nothing = type == "ByteLevel";
    if (type == "TemplateProcessing") {
      const Json* single = post->find("single");
      adds_nothing = single && single->is_array() && single->size() == 1 &&
                     (*single)[0].is_object() && (*single)[0].contains("Sequence");
    }
    GL_CHECK(adds_nothing, source, ": unsupported post_processor.type '", type,
             "' (supported: null, ByteLevel, TemplateProcessing that adds no token)");
  }

  // decoder: ByteLevel.
  const Json* dec = j.find("decoder");
  GL_CHECK(dec && !dec->is_null(), source, ": unsupported decoder null (supported: ByteLevel)");
  const std::string dec_type = type_of(*dec, source, "decoder");
  GL_CHECK(dec_type == "ByteLevel", source, ": unsupported decoder.type '", dec_type,
           "' (supported: ByteLevel)");
}

// model: BPE. Old files omit "type"; tokenizers then infers it from the fields.
void Tokenizer::read_model_options(const Json& model) {
  const std::string& source = source_;
  GL_CHECK(model.is_object(), source, ": model must be an object");
  if (const Json* type = model.find("type")) {
    const std::string& s = type->as_string(source + ": model.type");
    GL_CHECK(s == "BPE", source, ": unsupported model.type '", s, "' (supported: BPE)");
  }
  check_keys(model, source, "model",
             {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
              "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
  for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"})
    check_off(model, source, "model", key);
  // unk_token and fuse_unk never matter: every byte symbol must be in the
  // vocab (checked in finish_setup), so no character is ever unknown.
  if (const Json* im = model.find("ignore_merges")) ignore_merges_ = im->as_bool(source + ": model.ignore_merges");
}

std::vector<std::pair<std::string, std::string>> Tokenizer::read_merges(const Json& model,
                                                                      const std::string& source) {
  std::vector<std::pair<std::string, std::string>> merges;
  const auto& list = model.at("merges", source + ": model").as_array(source + ": model.merges");
  for (size_t r = 0; r < list.size(); ++r) {
    const Json& m = list[r];
    const std::string where = str(source, ": model.merges[", r, "]");
    if (m.is_string()) {
      // "a b": exactly one space (tokenizers: line.split(' ') must give 2 parts).
      const std::string& s = m.as_string(where);
      const size_t sp = s.find(' ');
      GL_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos, where,
               ": expected \"left right\", got \"", s, "\"");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      const auto& pair = m.as_array(where);
      GL_CHECK(pair.size() == 2, where, ": expected a [left, right] pair");
      merges.emplace_back(pair[0].as_string(where), pair[1].as_string(where));
    }
  }
  return merges;
}

std::vector<Tokenizer::AddedToken> Tokenizer::read_added_tokens(const Json& j, const std::string& source) {
  std::vector<AddedToken> added;
  const Json* list = j.find("added_tokens");
  if (!list || list->is_null()) return added;
  const auto& items = list->as_array(source + ": added_tokens");
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string field = str("added_tokens[", i, "]"), where = source + ": " + field;
    const Json& a = items[i];
    check_keys(a, source, field, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
    for (const char* key : {"single_word", "lstrip", "rstrip"}) check_off(a, source, field, key);
    AddedToken tok;
    tok.content = a.at("content", where).as_string(where + ".content");
    GL_CHECK(!tok.content.empty(), where, ": empty content");
    const int64_t id = a.at("id", where).as_int(where + ".id");
    GL_CHECK(id >= 0 && id < (int64_t(1) << 30), where, ": id ", id, " out of range");
    tok.id = int32_t(id);
    tok.special = a.at("special", where).as_bool(where + ".special");
    tok.normalized = a.at("normalized", where).as_bool(where + ".normalized");
    added.push_back(std::move(tok));
  }
  return added;
}

void Tokenizer::build_vocab(const Json::Items& vocab, const std::vector<AddedToken>& added) {
  const std::string& source = source_;
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    const int64_t v = id.as_int(source + ": model.vocab['" + token + "']");
    GL_CHECK(v >= 0 && v < (int64_t(1) << 30), source, ": model.vocab['", token, "'] has id ", v,
             " out of range");
    max_id = std::max(max_id, v);
  }
  for (const AddedToken& tok : added) max_id = std::max(max_id, int64_t(tok.id));
  id_to_token_.assign(size_t(max_id + 1), std::string());
  assigned_.assign(size_t(max_id + 1), 0);
  for (const auto& [token, id_json] : vocab) {
    const int64_t id = id_json.as_int();
    GL_CHECK(!assigned_[id], source, ": model.vocab: id ", id, " is given to both '",
             id_to_token_[id], "' and '", token, "'");
    GL_CHECK(token_to_id_.emplace(token, int32_t(id)).second, source,
             ": model.vocab: duplicate token '", token, "'");
    id_to_token_[id] = token;
    assigned_[id] = 1;
  }
  // Added tokens not in the vocab: tokenizers gives the first one id
  // len(vocab) and each later one the largest added id + 1; a file that says
  // otherwise would be re-numbered by it, so it is refused here.
  const int64_t model_vocab_len = int64_t(vocab.size());
  int64_t max_added = -1;
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& tok = added[i];
    auto it = token_to_id_.find(tok.content);
    const bool in_vocab = it != token_to_id_.end();
    const int64_t expected = in_vocab ? it->second
                             : max_added >= model_vocab_len ? max_added + 1
                                                            : model_vocab_len;
    GL_CHECK(tok.id == expected, source, ": added_tokens[", i, "] '", tok.content, "' has id ",
             tok.id, " but tokenizers would give it id ", expected);
    max_added = std::max(max_added, int64_t(tok.id));
    if (!in_vocab) {
      token_to_id_.emplace(tok.content, tok.id);
      id_to_token_[tok.id] = tok.content;
      assigned_[tok.id] = 1;
    }
  }
}

void Tokenizer::build_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [left, right] = merges[r];
    auto find = [&](const std::string& tok) {
      auto it = token_to_id_.find(tok);
      GL_CHECK(it != token_to_id_.end(), source_, ": model.merges[", r, "]: token '", tok,
               "' is not in the vocab");
      return it->second;
    };
    const int32_t a = find(left), b = find(right), merged = find(left + right);
    // A repeated pair keeps its last rank, as tokenizers' HashMap collect does.
    merges_[uint64_t(uint32_t(a)) << 32 | uint32_t(b)] = MergeResult{int32_t(r), merged};
  }
}

Tokenizer Tokenizer::from_vocab_merges(const std::string& vocab_json_path,
                                       const std::string& merges_txt_path) {
  // Build the equivalent tokenizer.json: one code path for both formats.
  const Json vocab = Json::parse(read_file(vocab_json_path), vocab_json_path);
  GL_CHECK(vocab.is_object(), vocab_json_path, ": vocab.json must be an object {token: id}");
  Json merges = Json::array();
  std::istringstream lines(read_file(merges_txt_path));
  std::string line;
  for (size_t line_no = 1; std::getline(lines, line); ++line_no) {
    if (line.rfind("#version", 0) == 0) continue;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t sp = line.find(' ');
    GL_CHECK(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos,
             merges_txt_path, ":", line_no, ": expected \"left right\", got \"", line, "\"");
    merges.push_back(Json(line));
  }
  Json model = Json::object();
  model.set("type", "BPE");
  model.set("vocab", vocab);
  model.set("merges", merges);
  Json pre = Json::object();
  pre.set("type", "ByteLevel");
  pre.set("add_prefix_space", false);
  Json dec = Json::object();
  dec.set("type", "ByteLevel");
  Json added = Json::array();
  if (const Json* eos = vocab.find("<|endoftext|>")) {
    Json tok = Json::object();
    tok.set("id", eos->as_int(vocab_json_path + ": '<|endoftext|>'"));
    tok.set("content", "<|endoftext|>");
    tok.set("normalized", false);
    tok.set("special", true);
    added.push_back(tok);
  }
  Json j = Json::object();
  j.set("added_tokens", added);
  j.set("pre_tokenizer", pre);
  j.set("decoder", dec);
  j.set("model", model);
  return from_json(j.dump(), vocab_json_path + " + " + merges_txt_path);
}

void Tokenizer::finish_setup(const std::vector<AddedToken>& added) {
  const size_t V = id_to_token_.size();
  special_.assign(V, 0);
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    unicode::append_utf8(sym, byte_to_char()[b]);
    auto it = token_to_id_.find(sym);
    GL_CHECK(it != token_to_id_.end(), source_, ": the vocab lacks the byte-level symbol '", sym,
             "' of byte ", b, " (not a byte-level BPE vocab)");
    byte_id_[b] = it->second;
  }
  id_to_bytes_.resize(V);
  for (size_t id = 0; id < V; ++id)
    if (assigned_[id]) id_to_bytes_[id] = token_bytes(id_to_token_[id]);
  for (AddedToken tok : added) {
    special_[tok.id] = tok.special;
    id_to_bytes_[tok.id] = token_bytes(tok.content);
    tok.pattern = tok.normalized && nfc_ ? unicode::nfc(tok.content) : tok.content;
    (tok.normalized ? normalized_added_ : raw_added_).push_back(std::move(tok));
  }
  // Longest first, so the first pattern that matches at a position is the
  // leftmost-longest match.
  for (auto* list : {&raw_added_, &normalized_added_})
    std::stable_sort(list->begin(), list->end(), [](const AddedToken& a, const AddedToken& b) {
      return a.pattern.size() > b.pattern.size();
    });
}

template <class Fn>
void Tokenizer::split_added(std::string_view text, const std::vector<AddedToken>& tokens,
                            Fn&& piece) const {
  if (tokens.empty()) {
    if (!text.empty()) piece(text, -1);
    return;
  }
  std::array<bool, 256> starts{};
  for (const AddedToken& tok : tokens) starts[uint8_t(tok.pattern[0])] = true;
  size_t done = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    if (starts[uint8_t(text[i])]) {
      for (const AddedToken& tok : tokens) {
        if (text.compare(i, tok.pattern.size(), tok.pattern) == 0) {
          hit = &tok;
          break;
        }
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > done) piece(text.substr(done, i - done), -1);
    piece(text.substr(i, hit->pattern.size()), hit->id);
    i += hit->pattern.size();
    done = i;
  }
  if (done < text.size()) piece(text.substr(done), -1);
}

// Word -> ids, per encode() call: text repeats its words, and a local cache
// keeps encode const and thread-safe without locks. Keys are views of owned
// copies (a deque never moves them), so a lookup allocates nothing.
struct Tokenizer::WordCache {
  std::deque<std::string> words;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> spans;  // into ids
  std::vector<int32_t> ids;
};

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  WordCache cache;
  split_added(text, raw_added_, [&](std::string_view raw, int32_t id) {
    if (id >= 0) {
      ids.push_back(id);
      return;
    }
    const std::string normalized = nfc_ ? unicode::nfc(raw) : std::string();
    split_added(nfc_ ? std::string_view(normalized) : raw, normalized_added_,
                [&](std::string_view piece, int32_t id2) {
                  if (id2 >= 0)
                    ids.push_back(id2);
                  else
                    encode_piece(piece, ids, cache);
                });
  });
  return ids;
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids,
                             WordCache& cache) const {
  std::string prefixed;
  if (add_prefix_space_ && piece[0] != ' ') {
    prefixed = " ";
    prefixed.append(piece);
    piece = prefixed;
  }
  auto word = [&](std::string_view w) {
    auto it = cache.spans.find(w);
    if (it == cache.spans.end()) {
      const size_t start = cache.ids.size();
      bpe_word(w, cache.ids);
      const std::string_view key = cache.words.emplace_back(w);
      it = cache.spans.emplace(key, std::make_pair(uint32_t(start), uint32_t(cache.ids.size() - start))).first;
    }
    const int32_t* p = cache.ids.data() + it->second.first;
    ids.insert(ids.end(), p, p + it->second.second);
  };
  if (!use_regex_) {
    word(piece);
    return;
  }
  for (size_t i = 0; i < piece.size();) {
    const size_t end = gpt2_match_end(piece, i);
    word(piece.substr(i, end - i));
    i = end;
  }
}

// tokenizers' Word::merge_all: a min-heap of candidate merges ordered by
// (rank, position); a popped candidate is stale if its left symbol was merged
// away or the pair there no longer produces the same token.
void Tokenizer::bpe_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    auto it = token_to_id_.find(byte_level_string(word));
    if (it != token_to_id_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const int32_t n = int32_t(word.size());
  if (n == 1) {
    ids.push_back(byte_id_[uint8_t(word[0])]);
    return;
  }
  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, new_id;
  };
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {byte_id_[uint8_t(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  auto lookup = [&](int32_t a, int32_t b) -> const MergeResult* {
    auto it = merges_.find(uint64_t(uint32_t(a)) << 32 | uint32_t(b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::vector<Candidate> heap;
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const MergeResult* m = lookup(sym[i].id, sym[i + 1].id)) heap.push_back({m->rank, i, m->new_id});
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& cur = sym[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    const Symbol right = sym[cur.next];
    const MergeResult* m = lookup(cur.id, right.id);
    if (!m || m->new_id != top.new_id) continue;
    sym[cur.next].alive = false;
    cur.id = top.new_id;
    cur.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const MergeResult* p = lookup(sym[cur.prev].id, cur.id)) {
        heap.push_back({p->rank, cur.prev, p->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
    if (cur.next >= 0) {
      if (const MergeResult* p = lookup(cur.id, sym[cur.next].id)) {
        heap.push_back({p->rank, top.pos, p->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

int32_t Tokenizer::checked_id(int32_t id, const char* what) const {
  GL_CHECK(id >= 0 && id < vocab_size() && assigned_[id], source_, ": ", what, ": token id ", id,
           " is out of range (vocab size ", vocab_size(), ")");
  return id;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += id_to_bytes_[checked_id(id, "decode")];
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  return id_to_token_[checked_id(id, "id_to_token")];
}

bool Tokenizer::is_special(int32_t id) const { return special_[checked_id(id, "is_special")] != 0; }

}  // namespace gl
