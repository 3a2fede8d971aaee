// GPT-2 byte-level alphabet and pre-tokenizer split: see data/byte_level.h.
// The code is data/tokenizer.cpp's, moved here unchanged so the BPE trainer
// splits words exactly as the tokenizer does.
#include "data/byte_level.h"

#include "data/unicode.h"

namespace gl::byte_level {

using unicode::CharClass;

const std::array<uint32_t, 256>& byte_to_char() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

int char_to_byte(uint32_t cp) {
  // The characters are U+0021..U+0143, so a 324-entry table covers them.
  static const std::array<int16_t, 324> table = [] {
    std::array<int16_t, 324> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b) t[byte_to_char()[b]] = int16_t(b);
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

std::string byte_level_string(std::string_view bytes) {
  std::string s;
  for (char c : bytes) unicode::append_utf8(s, byte_to_char()[uint8_t(c)]);
  return s;
}

// One leftmost-first match of the GPT-2 pattern at s[i]. Every character is
// matched by some alternative, so the words tile the text.
size_t gpt2_match_end(std::string_view s, size_t i) {
  struct Unit {
    CharClass cls;
    uint32_t len;
  };
  auto unit_at = [&](size_t pos) -> Unit {
    const auto b = uint8_t(s[pos]);
    if (b < 0x80) return {unicode::char_class(b), 1};
    const unicode::Utf8Unit u = unicode::utf8_next(s, pos);
    return {u.valid ? unicode::char_class(u.cp) : CharClass::OTHER, u.len};
  };
  auto run_end = [&](size_t pos, CharClass cls) {
    while (pos < s.size()) {
      const Unit u = unit_at(pos);
      if (u.cls != cls) break;
      pos += u.len;
    }
    return pos;
  };
  const size_t n = s.size();
  if (s[i] == '\'' && i + 1 < n) {
    const char c = s[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
    if (i + 2 < n) {
      const std::string_view two = s.substr(i + 1, 2);
      if (two == "re" || two == "ve" || two == "ll") return i + 3;
    }
  }
  // ` ?X+` for X in L, N, [^\s\p{L}\p{N}]: the optional space is a literal
  // U+0020 only, and without it X must start at i. A space is not X, so the
  // three alternatives reduce to: skip one leading ' ', take the run of the
  // next character's class unless that class is SPACE.
  const Unit first = unit_at(i);
  size_t j = i;
  if (s[i] == ' ') j = i + 1;
  if (j < n) {
    const Unit u = j == i ? first : unit_at(j);
    if (u.cls != CharClass::SPACE) return run_end(j, u.cls);
  }
  // Here s[i] starts a whitespace run. \s+(?!\S): the whole run if it ends
  // the text, else the run minus its last character (which must then leave at
  // least one); otherwise \s+ takes the lone whitespace character.
  size_t end = i, last = i;
  while (end < n) {
    const Unit u = unit_at(end);
    if (u.cls != CharClass::SPACE) break;
    last = end;
    end += u.len;
  }
  if (end == n) return n;
  return last > i ? last : end;
}

}  // namespace gl::byte_level
