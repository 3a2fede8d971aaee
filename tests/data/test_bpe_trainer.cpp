// The byte-level BPE trainer (data/bpe_trainer.h): word counting, the exact
// merges and ids on hand-checkable texts (tie rule, overlapping pairs,
// min_frequency, vocab cap), determinism, the tokenizer.json it writes as
// gl::Tokenizer loads it (ids < vocab, decode(encode(x)) == x, special
// tokens), and the errors. Identity with Hugging Face tokenizers' trainer is
// checked by tests/reference/bpe_interop.py (label reference), and offline
// by the pinned hash of the corpus tokenizer in test_corpus.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "data/bpe_trainer.h"
#include "data/byte_level.h"
#include "data/tokenizer.h"

using gl::BpeModel;
using gl::BpeTrainOptions;
using gl::Error;
using gl::Tokenizer;

namespace {

BpeTrainOptions opts(int64_t vocab, int64_t min_frequency = 2,
                     std::vector<std::string> specials = {"<|endoftext|>"}) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.min_frequency = min_frequency;
  o.special_tokens = std::move(specials);
  return o;
}

// The merges as token strings, e.g. {"l", "o"}.
std::vector<std::pair<std::string, std::string>> merge_strings(const BpeModel& m) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [a, b] : m.merges) out.emplace_back(m.tokens[size_t(a)], m.tokens[size_t(b)]);
  return out;
}

using Merges = std::vector<std::pair<std::string, std::string>>;
const std::string G = "\xC4\xA0";  // "Ġ", the byte-level symbol of ' '

}  // namespace

TEST_CASE("bpe_trainer: words are the GPT-2 pre-tokenizer's, counted over all texts") {
  const auto words = gl::count_bpe_words({"Hello world  hello\n", "hello", ""});
  // "  hello": the whitespace run before a letter gives " " and " hello".
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"\n", 1}, {" ", 1}, {" hello", 1}, {" world", 1}, {"Hello", 1}, {"hello", 1}};
  CHECK(words == expected);
  CHECK(gl::count_bpe_words({"a a a", " a"}) == std::vector<std::pair<std::string, int64_t>>{{" a", 3}, {"a", 1}});
}

TEST_CASE("bpe_trainer: ids are specials, then the 256 byte symbols by code point, then merges") {
  const BpeModel m = gl::train_bpe({"low lower lowest"}, opts(300));
  REQUIRE(m.tokens.size() >= 257);
  CHECK(m.tokens[0] == "<|endoftext|>");
  CHECK(m.tokens[1] == "!");       // U+0021, the smallest byte-level code point
  CHECK(m.tokens[94] == "~");      // '!'..'~' are ids 1..94
  CHECK(m.tokens[95] == "\xC2\xA1");  // "¡" U+00A1 follows
  CHECK(m.tokens[188] == "\xC3\xBF");  // "ÿ" U+00FF, the last printable Latin-1
  CHECK(m.tokens[189] == "\xC4\x80");  // "Ā" U+0100 = byte 0x00
  CHECK(m.tokens[221] == G);           // U+0120 = byte 0x20 (space)
  CHECK(m.tokens[256] == "\xC5\x83");  // "Ń" U+0143 = byte 0xAD, the last
  CHECK(m.special_tokens == std::vector<std::string>{"<|endoftext|>"});
}

TEST_CASE("bpe_trainer: exact merges of a hand-checked text") {
  // Words: "low" x1, "Ġlower" x1, "Ġlowest" x1. Pair counts: (l,o) 3, (o,w) 3,
  // (Ġ,l) 2, (w,e) 2, (e,r) (e,s) (s,t) 1.
  //  1. (l,o) and (o,w) tie at 3: the smaller pair wins, id(l)=76 < id(o)=79.
  //  2. (lo,w) 3.   3. (Ġ,low) and (low,e) tie at 2: id(Ġ)=221 < id(low)=258.
  //  4. (Ġlow,e) 2. Then every count is 1 < min_frequency 2.
  const BpeModel m = gl::train_bpe({"low lower lowest"}, opts(300));
  const Merges first = {{"l", "o"}, {"lo", "w"}, {G, "low"}, {G + "low", "e"}};
  CHECK(merge_strings(m) == first);
  CHECK(m.tokens.size() == 261);
  CHECK(m.tokens[257] == "lo");
  CHECK(m.tokens[260] == G + "lowe");

  SUBCASE("min_frequency 1 goes on: ties at 1 go to the smaller left id") {
    // (s,t): id(s)=83; (Ġlowe,r) and (Ġlowe,s): id(Ġlowe)=260, r=82 < s.
    const BpeModel m1 = gl::train_bpe({"low lower lowest"}, opts(300, 1));
    Merges all = first;
    all.insert(all.end(), {{"s", "t"}, {G + "lowe", "r"}, {G + "lowe", "st"}});
    CHECK(merge_strings(m1) == all);
    CHECK(m1.tokens.size() == 264);  // no pair left
    // min_frequency 0 behaves as 1: a count must be >= 1.
    CHECK(merge_strings(gl::train_bpe({"low lower lowest"}, opts(300, 0))) == all);
  }
  SUBCASE("vocab_size caps the merges") {
    const BpeModel m2 = gl::train_bpe({"low lower lowest"}, opts(259));
    CHECK(m2.tokens.size() == 259);
    CHECK(merge_strings(m2) == Merges(first.begin(), first.begin() + 2));
  }
  SUBCASE("word frequency weights the counts") {
    // No special tokens: id = code point - 33 for ASCII, a=64 b=65 c=66 d=67,
    // Ġ=220. Words "cd" x1, "Ġcd" x2, "Ġab" x2: (c,d) 3 beats the smaller
    // pair (a,b) 2. Then (a,b) 2 ties (Ġ,cd) 2 and wins as the smaller
    // pair; then (Ġ,cd)=(220,256) before (Ġ,ab)=(220,257).
    const BpeModel m3 = gl::train_bpe({"cd cd cd ab ab"}, opts(300, 2, {}));
    CHECK(merge_strings(m3) == Merges{{"c", "d"}, {"a", "b"}, {G, "cd"}, {G, "ab"}});
    CHECK(m3.tokens[64] == "a");
  }
}

TEST_CASE("bpe_trainer: overlapping pairs merge left to right, as Hugging Face's Word::merge") {
  // "aaaa": (a,a) x3 -> [aa, aa]; then (aa,aa) -> "aaaa". "aaa" -> [aa, a].
  const BpeModel m = gl::train_bpe({"aaaa"}, opts(300, 1, {}));
  CHECK(merge_strings(m) == Merges{{"a", "a"}, {"aa", "aa"}});
  const Tokenizer tok = Tokenizer::from_json(gl::bpe_tokenizer_json(m), "aaaa.json");
  const int32_t aa = *tok.token_to_id("aa"), a = *tok.token_to_id("a");
  CHECK(tok.encode("aaa") == std::vector<int32_t>{aa, a});
  CHECK(tok.encode("aaaa") == std::vector<int32_t>{*tok.token_to_id("aaaa")});
}

TEST_CASE("bpe_trainer: deterministic, and independent of the order of the texts") {
  std::vector<std::string> texts = {"The quick brown fox jumps over the lazy dog.\n",
                                    "the the the quick quick fox, 12345 678 -- done!\n",
                                    "caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 tabs\t\tend  "};
  const std::string a = gl::train_bpe_tokenizer_json(texts, opts(320, 1));
  CHECK(gl::train_bpe_tokenizer_json(texts, opts(320, 1)) == a);
  std::reverse(texts.begin(), texts.end());
  CHECK(gl::train_bpe_tokenizer_json(texts, opts(320, 1)) == a);
}

TEST_CASE("bpe_trainer: the tokenizer.json loads and round-trips what it was trained on") {
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "In the beginning " + std::to_string(i * 37) + " words, words; words!\n"
            "\xCE\xB1\xCE\xB2\xCE\xB3 \xD0\xBC\xD0\xB8\xD1\x80 \xE4\xB8\xAD\xE6\x96\x87   \t x\r\n";
  const std::string bad_utf8 = "bytes \xFF\xFE\x80 \xC3 end";  // invalid UTF-8 is fine
  const std::string json = gl::train_bpe_tokenizer_json({text, bad_utf8}, opts(300));
  const gl::Json j = gl::Json::parse(json, "trained.json");  // valid JSON
  CHECK(j.at("model").at("type").as_string() == "BPE");
  CHECK(j.at("model").at("merges").size() == 300 - 257);
  const Tokenizer tok = Tokenizer::from_json(json, "trained.json");
  CHECK(tok.vocab_size() == 300);
  REQUIRE(tok.eos_id().has_value());
  CHECK(*tok.eos_id() == 0);
  CHECK(tok.is_special(0));
  CHECK_FALSE(tok.is_special(1));
  for (const std::string& s : {text, bad_utf8, std::string("unseen \xE2\x82\xAC text <|endoftext|>x")}) {
    const std::vector<int32_t> ids = tok.encode(s);
    CHECK(std::all_of(ids.begin(), ids.end(), [&](int32_t id) { return id >= 0 && id < tok.vocab_size(); }));
    CHECK(tok.decode(ids) == s);
  }
  // Merges make the training text shorter than one token per byte.
  CHECK(tok.encode(text).size() * 3 < text.size());
  // The special token is cut out of text (HF: special added tokens).
  const std::vector<int32_t> ids = tok.encode("a<|endoftext|>b");
  CHECK(ids.size() == 3);
  CHECK(ids[1] == 0);
}

TEST_CASE("bpe_trainer: special tokens that are byte symbols or merge results keep their id") {
  // "e" is a byte symbol and "Ġthe" a merge result; both keep the special
  // id (1 and 2) and the alphabet / the merge reuse it (as Hugging Face).
  const std::string the = G + "the";
  const BpeModel m = gl::train_bpe({"the the the then the"}, opts(300, 2, {"<|endoftext|>", "e", the}));
  CHECK(m.tokens[1] == "e");
  CHECK(m.tokens[2] == the);
  CHECK(std::count(m.tokens.begin(), m.tokens.end(), "e") == 1);
  CHECK(std::count(m.tokens.begin(), m.tokens.end(), the) == 1);
  const Tokenizer tok = Tokenizer::from_json(gl::bpe_tokenizer_json(m), "specials.json");
  CHECK(tok.decode(tok.encode("the then")) == "the then");
  CHECK(tok.is_special(1));
}

TEST_CASE("bpe_trainer: errors") {
  CHECK_THROWS_WITH_AS(gl::train_bpe({"text"}, opts(256)),
                       doctest::Contains("vocab_size 256 is too small"), Error);
  CHECK_THROWS_WITH_AS(gl::train_bpe({"text"}, opts(257, 2, {"<a>", "<b>"})),
                       doctest::Contains("need 258"), Error);
  CHECK_NOTHROW(gl::train_bpe({"text"}, opts(256, 2, {})));
  CHECK_THROWS_WITH_AS(gl::train_bpe({}, opts(300)), doctest::Contains("no training text"), Error);
  CHECK_THROWS_WITH_AS(gl::train_bpe({"", ""}, opts(300)), doctest::Contains("no training text (2 texts"),
                       Error);
  CHECK_THROWS_WITH_AS(gl::train_bpe({"x"}, opts(300, 2, {"<s>", "<s>"})),
                       doctest::Contains("special token '<s>' is given twice"), Error);
  CHECK_THROWS_WITH_AS(gl::train_bpe({"x"}, opts(300, 2, {""})), doctest::Contains("empty special token"),
                       Error);
  CHECK_THROWS_WITH_AS(gl::train_bpe({"x"}, opts(300, -1)), doctest::Contains("min_frequency -1"), Error);
}

TEST_CASE("byte_level: the pre-tokenizer split tiles the text and matches the tokenizer's") {
  const std::string s = "It's 2024:  don't\tstop\n\n  \xF0\x9F\x98\x80x \xFF\xFE y   ";
  std::vector<std::string> words;
  gl::byte_level::for_each_gpt2_word(s, [&](std::string_view w) { words.emplace_back(w); });
  const std::vector<std::string> expected = {"It", "'s", " 2024", ":", " ", " don", "'t", "\t", "stop",
                                             "\n\n ", " \xF0\x9F\x98\x80", "x", " \xFF\xFE", " y", "   "};
  CHECK(words == expected);
  // byte_to_char is a bijection onto the 256 symbols.
  for (int b = 0; b < 256; ++b) CHECK(gl::byte_level::char_to_byte(gl::byte_level::byte_to_char()[size_t(b)]) == b);
  CHECK(gl::byte_level::byte_level_string(" a\n") == G + "a\xC4\x8A");
}
