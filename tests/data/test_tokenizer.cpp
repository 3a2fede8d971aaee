// Byte-level BPE tokenizer (data/tokenizer.h) against Hugging Face tokenizers:
// the fixtures in tests/reference/fixtures/tokenizer (written by
// tests/reference/make_tokenizer_fixture.py: trained GPT-2- and NeoX-style
// tokenizers, ~250 KB of varied test text and HF's ids and decodes) must be
// reproduced token for token. Also NFC against Python's unicodedata, invalid
// UTF-8 behaviour, and the one-line errors.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "data/unicode.h"

using gl::Error;
using gl::Json;
using gl::Tokenizer;

namespace {

const std::string kDir = std::string(GRIDLOCK_SOURCE_DIR) + "/tests/reference/fixtures/tokenizer/";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Fixture {
  Json index;
  std::string text;
  std::vector<std::string_view> samples;  // views into text
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.index = Json::parse_file(kDir + "index.json");
    x.text = slurp(kDir + x.index.at("text").as_string());
    for (const Json& s : x.index.at("samples").as_array())
      x.samples.push_back(std::string_view(x.text).substr(size_t(s.at("offset").as_int()),
                                                          size_t(s.at("length").as_int())));
    return x;
  }();
  return f;
}

// One tokenizer's expectations: the ids HF gave for each encoded sample.
struct Expected {
  std::vector<int32_t> ids;
  struct Row {
    size_t sample, offset, count;
  };
  std::vector<Row> rows;
};

Expected expected_for(const std::string& name) {
  const Json& t = fixture().index.at("tokenizers").at(name);
  const std::string raw = slurp(kDir + t.at("ids").as_string());
  Expected e;
  for (size_t i = 0; i + 1 < raw.size(); i += 2)  // little-endian uint16
    e.ids.push_back(int32_t(uint8_t(raw[i]) | uint8_t(raw[i + 1]) << 8));
  for (const Json& r : t.at("encoded").as_array())
    e.rows.push_back({size_t(r[0].as_int()), size_t(r[1].as_int()), size_t(r[2].as_int())});
  return e;
}

std::string show(const std::string& s) {  // printable, for failure messages
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20) out += gl::str("\\x", std::hex, int(c));
    else out += char(c);
  }
  return out;
}

// Token-for-token comparison; on a mismatch reports the first differing
// position with the tokens around it.
bool same_ids(const Tokenizer& tok, const std::vector<int32_t>& got,
              const std::vector<int32_t>& want, const std::string& label) {
  if (got == want) return true;
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto context = [&](const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t k = i > 3 ? i - 3 : 0; k < std::min(ids.size(), i + 4); ++k)
      s += gl::str(k == i ? " >>" : " ", ids[k], "'", show(tok.decode({ids[k]})), "'");
    return s;
  };
  FAIL_CHECK(label << ": first difference at token " << i << " (got " << got.size()
                   << " tokens, HF " << want.size() << ")\n  got:" << context(got)
                   << "\n  HF: " << context(want));
  return false;
}

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t pos = s.find(from);
  REQUIRE_MESSAGE(pos != std::string::npos, "fixture text lacks " << from);
  return s.replace(pos, from.size(), to);
}

void check_tokenizer_against_hf(const std::string& name) {
  const Fixture& f = fixture();
  const Json& t = f.index.at("tokenizers").at(name);
  const std::string path = kDir + t.at("tokenizer").as_string();
  std::string json = slurp(path);
  if (const Json* edit = t.find("edit"); edit && !edit->is_null())
    json = replace_once(json, (*edit)[0].as_string(), (*edit)[1].as_string());
  const Tokenizer tok = Tokenizer::from_json(json, path);
  CHECK(tok.vocab_size() == t.at("vocab_size").as_int());
  const Expected e = expected_for(name);
  const bool nfc_rule = t.at("decode_rule").as_string() == "nfc(text)";
  const Json& exceptions = t.at("decode_exceptions");
  size_t n_ok = 0;
  for (const Expected::Row& r : e.rows) {
    const std::string_view text = f.samples[r.sample];
    const std::string label = gl::str(name, " sample ", r.sample, " (",
                                      f.index.at("samples")[r.sample].at("name").as_string(), ")");
    const std::vector<int32_t> want(e.ids.begin() + r.offset, e.ids.begin() + r.offset + r.count);
    if (same_ids(tok, tok.encode(text), want, label)) ++n_ok;
    // HF's decode of its own ids, and decode(encode(x)) == x (or nfc(x)).
    const std::string decoded = tok.decode(want);
    const Json* exc = exceptions.find(std::to_string(r.sample));
    const std::string rule = nfc_rule ? gl::unicode::nfc(text) : std::string(text);
    CHECK_MESSAGE(decoded == (exc ? exc->as_string() : rule), label << ": decode differs from HF");
  }
  CHECK(n_ok == e.rows.size());
  MESSAGE(name << ": " << n_ok << "/" << e.rows.size() << " samples, " << e.ids.size()
               << " tokens identical to Hugging Face");
  // Slices of ids may end inside a character: HF returns from_utf8_lossy.
  for (const Json& s : t.at("decode_slices").as_array()) {
    const size_t sample = size_t(s[0].as_int()), a = size_t(s[1].as_int()), b = size_t(s[2].as_int());
    const auto row = std::find_if(e.rows.begin(), e.rows.end(),
                                  [&](const Expected::Row& r) { return r.sample == sample; });
    REQUIRE(row != e.rows.end());
    const std::vector<int32_t> ids(e.ids.begin() + row->offset + a, e.ids.begin() + row->offset + b);
    CHECK(gl::unicode::utf8_lossy(tok.decode(ids)) == s[3].as_string());
  }
}

}  // namespace

TEST_CASE("tokenizer: GPT-2-style tokenizer.json encodes and decodes as Hugging Face") {
  check_tokenizer_against_hf("gpt2");
}

TEST_CASE("tokenizer: NeoX-style tokenizer.json (NFC, added space runs) matches Hugging Face") {
  check_tokenizer_against_hf("neox");
}

TEST_CASE("tokenizer: add_prefix_space and \"a b\" merges match Hugging Face") {
  check_tokenizer_against_hf("gpt2_prefix");
}

TEST_CASE("tokenizer: use_regex false matches Hugging Face") { check_tokenizer_against_hf("gpt2_noregex"); }

TEST_CASE("tokenizer: ignore_merges matches Hugging Face") {
  check_tokenizer_against_hf("gpt2_ignore_merges");
}

TEST_CASE("tokenizer: vocab.json + merges.txt gives the same ids as tokenizer.json") {
  const Tokenizer json = Tokenizer::from_json_file(kDir + "gpt2/tokenizer.json");
  const Tokenizer files = Tokenizer::from_vocab_merges(kDir + "gpt2/vocab.json", kDir + "gpt2/merges.txt");
  CHECK(files.vocab_size() == json.vocab_size());
  CHECK(files.eos_id() == json.eos_id());
  size_t n_ok = 0;
  for (size_t i = 0; i < fixture().samples.size(); ++i) {
    const std::string_view text = fixture().samples[i];
    n_ok += same_ids(json, files.encode(text), json.encode(text), gl::str("sample ", i));
  }
  CHECK(n_ok == fixture().samples.size());
}

TEST_CASE("tokenizer: special tokens, vocab accessors") {
  const Tokenizer gpt2 = Tokenizer::from_json_file(kDir + "gpt2/tokenizer.json");
  const Tokenizer neox = Tokenizer::from_json_file(kDir + "neox/tokenizer.json");
  CHECK(gpt2.eos_id() == 2000);  // GPT-2 keeps <|endoftext|> last
  CHECK(neox.eos_id() == 0);     // GPT-NeoX puts it first
  CHECK(neox.token_to_id("<|padding|>") == 1);
  CHECK(neox.is_special(1));
  CHECK_FALSE(neox.is_special(2000));  // a run of spaces: added, not special
  CHECK(neox.id_to_token(2000) == std::string(24, ' '));
  CHECK(gpt2.id_to_token(*gpt2.token_to_id("Ġ")) == "Ġ");
  CHECK(gpt2.decode(gpt2.encode(" ")) == " ");
  CHECK(gpt2.encode("").empty());
  CHECK(gpt2.encode("a<|endoftext|>b") ==
        std::vector<int32_t>{*gpt2.token_to_id("a"), 2000, *gpt2.token_to_id("b")});
  CHECK(gpt2.normalizes_nfc() == false);
  CHECK(neox.normalizes_nfc() == true);
}

TEST_CASE("tokenizer: NFC matches Python's unicodedata") {
  const std::string in = slurp(kDir + "nfc_input.txt");
  const std::string want = slurp(kDir + "nfc_expected.txt");
  const std::string got = gl::unicode::nfc(in);
  if (got != want) {
    // Report the first differing line.
    std::istringstream a(got), b(want), c(in);
    std::string la, lb, lc;
    for (int line = 1; std::getline(a, la) && std::getline(b, lb) && std::getline(c, lc); ++line)
      if (la != lb) {
        FAIL_CHECK("nfc line " << line << ": input '" << lc << "' gave '" << la << "', expected '" << lb << "'");
        break;
      }
  }
  CHECK(got == want);
  CHECK(gl::unicode::nfc(want) == want);  // idempotent
  CHECK(gl::unicode::nfc("e\xCC\x81") == "\xC3\xA9");                          // e + acute -> é
  CHECK(gl::unicode::nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8") == "\xEA\xB0\x81");  // jamo -> 각
  CHECK(gl::unicode::nfc("\xE2\x84\xAB") == "\xC3\x85");                       // Å sign -> Å
  CHECK(std::string(gl::unicode::version()) == fixture().index.at("unicode_version").as_string());
}

TEST_CASE("tokenizer: NFD input tokenizes like its NFC form with the NeoX tokenizer") {
  const Tokenizer neox = Tokenizer::from_json_file(kDir + "neox/tokenizer.json");
  const Tokenizer gpt2 = Tokenizer::from_json_file(kDir + "gpt2/tokenizer.json");
  const std::string nfd = "Cre\xCC\x80me bru\xCC\x82le\xCC\x81" "e, A\xCC\x8Angstro\xCC\x88m";
  const std::string nfc = gl::unicode::nfc(nfd);
  CHECK(nfc == "Cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e, \xC3\x85ngstr\xC3\xB6m");
  CHECK(neox.encode(nfd) == neox.encode(nfc));
  CHECK(neox.decode(neox.encode(nfd)) == nfc);
  CHECK(gpt2.encode(nfd) != gpt2.encode(nfc));  // no normalizer: bytes kept
  CHECK(gpt2.decode(gpt2.encode(nfd)) == nfd);
}

TEST_CASE("tokenizer: invalid UTF-8 is tokenized as bytes and round-trips") {
  const Tokenizer gpt2 = Tokenizer::from_json_file(kDir + "gpt2/tokenizer.json");
  const Tokenizer neox = Tokenizer::from_json_file(kDir + "neox/tokenizer.json");
  const std::vector<std::string> cases = {
      "\x80", "abc\xFF" "def", "caf\xC3", "\xED\xA0\x80 surrogate", "\xC0\x80 overlong",
      "\xF4\x90\x80\x80 too big", "e\xCC", "\xE2\x82 \xE2\x82\xAC", "it\xFE's  \xC3\xA9\xCC\x81"};
  for (const std::string& s : cases) {
    CHECK(gpt2.decode(gpt2.encode(s)) == s);
    CHECK(neox.decode(neox.encode(s)) == gl::unicode::nfc(s));
  }
  // Every byte value, and pseudo-random byte strings.
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  CHECK(gpt2.decode(gpt2.encode(all)) == all);
  uint64_t state = 12345;
  for (int n = 0; n < 200; ++n) {
    std::string s;
    for (int k = 0; k < 64; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      s += char(state >> 56);
    }
    CHECK(gpt2.decode(gpt2.encode(s)) == s);
    CHECK(neox.decode(neox.encode(s)) == gl::unicode::nfc(s));
  }
  // from_utf8_lossy: one U+FFFD per maximal ill-formed subpart.
  const std::string R = "\xEF\xBF\xBD";
  CHECK(gl::unicode::utf8_lossy("a\x80" "b") == "a" + R + "b");
  CHECK(gl::unicode::utf8_lossy("\xF0\x90\x80") == R);
  CHECK(gl::unicode::utf8_lossy("\xC0\x80") == R + R);
  CHECK(gl::unicode::utf8_lossy("\xED\xA0\x80") == R + R + R);
  CHECK(gl::unicode::utf8_lossy("\xE2\x82" "A") == R + "A");
  CHECK(gl::unicode::is_valid_utf8(fixture().text));
}

TEST_CASE("tokenizer: encode speed") {
  const Tokenizer gpt2 = Tokenizer::from_json_file(kDir + "gpt2/tokenizer.json");
  const Tokenizer neox = Tokenizer::from_json_file(kDir + "neox/tokenizer.json");
  for (const Tokenizer* tok : {&gpt2, &neox}) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t n = tok->encode(fixture().text).size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MESSAGE((tok == &gpt2 ? "gpt2" : "neox") << ": " << fixture().text.size() / 1e6 / s
                                             << " MB/s (" << n << " tokens)");
    CHECK(n > 0);
  }
}

TEST_CASE("tokenizer: errors name the file and the field") {
  const std::string path = kDir + "gpt2/tokenizer.json";
  const std::string good = slurp(path);
  auto fails_with = [&](const std::string& text, const std::string& what) {
    CHECK_THROWS_WITH_AS(Tokenizer::from_json(text, "my/tokenizer.json"),
                         doctest::Contains(what.c_str()), Error);
    CHECK_THROWS_WITH_AS(Tokenizer::from_json(text, "my/tokenizer.json"),
                         doctest::Contains("my/tokenizer.json"), Error);
  };
  CHECK_THROWS_WITH_AS(Tokenizer::from_json_file("/nonexistent/tokenizer.json"),
                       doctest::Contains("/nonexistent/tokenizer.json"), Error);
  fails_with(good.substr(0, good.size() / 2), "my/tokenizer.json");  // truncated JSON
  fails_with("[1, 2]", "must be a JSON object");
  fails_with(replace_once(good, "\"type\": \"BPE\"", "\"type\": \"WordPiece\""), "model.type 'WordPiece'");
  fails_with(replace_once(good, "\"dropout\": null", "\"dropout\": 0.1"), "model.dropout");
  fails_with(replace_once(good, "\"continuing_subword_prefix\": null", "\"continuing_subword_prefix\": \"##\""),
             "model.continuing_subword_prefix");
  fails_with(replace_once(good, "\"byte_fallback\": false", "\"byte_fallback\": true"), "model.byte_fallback");
  fails_with(replace_once(good, "\"normalizer\": null", "\"normalizer\": {\"type\": \"NFKC\"}"),
             "normalizer.type 'NFKC'");
  fails_with(replace_once(good, "\"type\": \"ByteLevel\"", "\"type\": \"Metaspace\""),
             "pre_tokenizer.type 'Metaspace'");
  fails_with(replace_once(good, "\"post_processor\": {\n    \"type\": \"ByteLevel\"",
                          "\"post_processor\": {\n    \"type\": \"TemplateProcessing\""),
             "post_processor.type 'TemplateProcessing'");
  // A template of the sequence alone adds nothing and is accepted; one with a
  // special token is not.
  const std::string post =
      "\"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
      "    \"trim_offsets\": true,\n    \"use_regex\": true\n  }";
  const std::string seq = "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}";
  const std::string eos = "{\"SpecialToken\": {\"id\": \"<|endoftext|>\", \"type_id\": 0}}";
  auto template_json = [&](const std::string& single) {
    return replace_once(good, post, "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [" +
                                        single + "], \"pair\": [], \"special_tokens\": {}}");
  };
  const Tokenizer plain = Tokenizer::from_json(template_json(seq), "t.json");
  CHECK(plain.encode("hello world") == Tokenizer::from_json(good, "g.json").encode("hello world"));
  fails_with(template_json(seq + ", " + eos), "post_processor.type 'TemplateProcessing'");
  fails_with(replace_once(good, "\"truncation\": null", "\"truncation\": {\"max_length\": 8}"), "truncation");
  fails_with(replace_once(good, "\"lstrip\": false", "\"lstrip\": true"), "added_tokens[0].lstrip");
  fails_with(replace_once(good, "\"fuse_unk\": false", "\"fuse_unk\": false, \"new_option\": 1"),
             "unsupported field 'model.new_option'");
  fails_with(replace_once(good, "\"id\": 2000", "\"id\": 2005"), "would give it id 2000");
  // Merges: a token missing from the vocab, a malformed legacy line.
  const std::string legacy = slurp(kDir + "gpt2_prefix/tokenizer.json");
  fails_with(replace_once(legacy, "\"Ġ Ġ\"", "\"Ġ Ġ x\""), "model.merges[0]");
  fails_with(replace_once(legacy, "\"Ġ Ġ\"", "\"Ġ QQQ\""), "token 'QQQ' is not in the vocab");
  // decode / id_to_token name the id.
  const Tokenizer tok = Tokenizer::from_json_file(path);
  CHECK_THROWS_WITH_AS(tok.decode({5, 99999}), doctest::Contains("token id 99999"), Error);
  CHECK_THROWS_WITH_AS(tok.decode({-1}), doctest::Contains("token id -1"), Error);
  CHECK_THROWS_WITH_AS(tok.id_to_token(2001), doctest::Contains("token id 2001"), Error);
  // vocab.json + merges.txt.
  char merges_path[] = "/tmp/gl_merges_XXXXXX";
  const int fd = mkstemp(merges_path);
  REQUIRE(fd >= 0);
  close(fd);
  std::ofstream(merges_path) << "#version: 0.2\n\xC4\xA0 \xC4\xA0\nbad line here\n";
  CHECK_THROWS_WITH_AS(Tokenizer::from_vocab_merges(kDir + "gpt2/vocab.json", merges_path),
                       doctest::Contains((std::string(merges_path) + ":3").c_str()), Error);
  std::remove(merges_path);
  CHECK_THROWS_WITH_AS(Tokenizer::from_vocab_merges(kDir + "gpt2/vocab.json", "/nonexistent/merges.txt"),
                       doctest::Contains("/nonexistent/merges.txt"), Error);
}
