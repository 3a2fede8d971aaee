// Unicode support for the tokenizer: see data/unicode.h for the contract.
// NFC follows UAX #15: full canonical decomposition (Hangul syllables
// algorithmically), canonical ordering of each run of non-starters by
// combining class (stable), then canonical composition, where a character C
// composes with the last starter S unless some B between them has ccc(B) == 0
// or ccc(B) >= ccc(C).
#include "data/unicode.h"

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>
#include <vector>

namespace gl::unicode {

namespace {

struct CodeRange {
  uint32_t lo, hi;
};
struct CombiningRange {
  uint32_t lo, hi;
  uint8_t ccc;
};
struct Decomposition {
  uint32_t cp;
  uint16_t offset;  // into kDecompositionData
  uint8_t len;
};
struct Composition {
  uint32_t first, second, composite;
};

#include "data/unicode_tables.inc"

// Hangul syllable constants (Unicode chapter 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Invalid units inside nfc() are carried as this tag | byte: above U+10FFFF,
// so no table lookup matches them (ccc 0, no decomposition, no composition).
constexpr uint32_t kInvalidTag = 0x80000000u;

template <size_t N>
bool in_ranges(const CodeRange (&table)[N], uint32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                             [](uint32_t c, const CodeRange& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= std::prev(it)->hi;
}

CharClass class_from_tables(uint32_t cp) {
  if (in_ranges(kSpaceRanges, cp)) return CharClass::SPACE;
  if (in_ranges(kLetterRanges, cp)) return CharClass::LETTER;
  if (in_ranges(kNumberRanges, cp)) return CharClass::NUMBER;
  return CharClass::OTHER;
}

// The BMP holds nearly all text, so its classes are a flat table built once
// (function-local static: thread-safe initialisation).
const std::array<CharClass, 0x10000>& bmp_classes() {
  static const std::array<CharClass, 0x10000> table = [] {
    std::array<CharClass, 0x10000> t{};
    for (uint32_t cp = 0; cp < 0x10000; ++cp) t[cp] = class_from_tables(cp);
    return t;
  }();
  return table;
}

const Decomposition* find_decomposition(uint32_t cp) {
  auto it = std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                             [](const Decomposition& d, uint32_t c) { return d.cp < c; });
  return it != std::end(kDecompositions) && it->cp == cp ? &*it : nullptr;
}

void decompose_into(std::vector<uint32_t>& out, uint32_t cp) {
  if (cp < 0xC0) {  // nothing below U+00C0 decomposes
    out.push_back(cp);
  } else if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
  } else if (const Decomposition* d = find_decomposition(cp)) {
    out.insert(out.end(), kDecompositionData + d->offset, kDecompositionData + d->offset + d->len);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (a, b), or 0 if there is none.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kCompositions), std::end(kCompositions),
                             std::make_pair(a, b), [](const Composition& c, std::pair<uint32_t, uint32_t> k) {
                               return c.first != k.first ? c.first < k.first : c.second < k.second;
                             });
  return it != std::end(kCompositions) && it->first == a && it->second == b ? it->composite : 0;
}

// Stable sort of each maximal run of non-starters by combining class.
void canonical_order(std::vector<uint32_t>& cps, std::vector<uint8_t>& ccc) {
  std::vector<std::pair<uint8_t, uint32_t>> run;
  for (size_t i = 0; i < cps.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && ccc[j] != 0) ++j;
    if (j - i > 1) {
      run.clear();
      for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], cps[k]);
      std::stable_sort(run.begin(), run.end(),
                       [](const auto& x, const auto& y) { return x.first < y.first; });
      for (size_t k = i; k < j; ++k) std::tie(ccc[k], cps[k]) = run[k - i];
    }
    i = j;
  }
}

// UAX #15 canonical composition in place; returns the new length.
size_t canonical_compose(std::vector<uint32_t>& cps, const std::vector<uint8_t>& ccc) {
  if (cps.empty()) return 0;
  size_t starter = 0, n_out = 1;
  // 256: "blocked", for text that starts with a non-starter (no starter yet).
  int last_class = ccc[0] == 0 ? 0 : 256;
  for (size_t i = 1; i < cps.size(); ++i) {
    const int cls = ccc[i];
    if (last_class < cls || last_class == 0) {
      if (uint32_t c = compose_pair(cps[starter], cps[i])) {
        cps[starter] = c;
        continue;
      }
    }
    if (cls == 0) starter = n_out;
    last_class = cls;
    cps[n_out++] = cps[i];
  }
  return n_out;
}

}  // namespace

const char* version() { return kUnicodeVersion; }

CharClass char_class(uint32_t cp) {
  if (cp < 0x10000) return bmp_classes()[cp];
  return class_from_tables(cp);
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCombiningRanges), std::end(kCombiningRanges), cp,
                             [](uint32_t c, const CombiningRange& r) { return c < r.lo; });
  if (it == std::begin(kCombiningRanges)) return 0;
  --it;
  return cp <= it->hi ? it->ccc : 0;
}

Utf8Unit utf8_next(std::string_view s, size_t pos) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) return {b0, 1, true};
  // Lead byte -> number of continuation bytes, the allowed range of the first
  // continuation byte (which excludes overlongs, surrogates and > U+10FFFF),
  // and the payload bits of the lead byte.
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  uint32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0xFFFD, 1, false};
  }
  uint32_t len = 1;
  for (int k = 0; k < need; ++k, ++len) {
    if (pos + len >= s.size()) return {0xFFFD, len, false};
    const auto b = static_cast<uint8_t>(s[pos + len]);
    if (b < (k == 0 ? lo : 0x80) || b > (k == 0 ? hi : 0xBF)) return {0xFFFD, len, false};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, len, true};
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Unit u = utf8_next(s, pos);
    if (!u.valid) return false;
    pos += u.len;
  }
  return true;
}

std::string nfc(std::string_view s) {
  // Every code point below U+0300 (UTF-8 lead byte < 0xCC) is a starter that
  // is already NFC and composes with nothing before it (the generator checks
  // this), so such text, ASCII included, is returned as is.
  if (std::none_of(s.begin(), s.end(), [](char c) { return uint8_t(c) >= 0xCC; }))
    return std::string(s);
  std::vector<uint32_t> cps;
  cps.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Unit u = utf8_next(s, pos);
    if (u.valid) {
      decompose_into(cps, u.cp);
    } else {
      for (uint32_t k = 0; k < u.len; ++k) cps.push_back(kInvalidTag | uint8_t(s[pos + k]));
    }
    pos += u.len;
  }
  std::vector<uint8_t> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i]);
  canonical_order(cps, ccc);
  const size_t n = canonical_compose(cps, ccc);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < n; ++i) {
    if (cps[i] & kInvalidTag)
      out += char(cps[i] & 0xFF);
    else
      append_utf8(out, cps[i]);
  }
  return out;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Unit u = utf8_next(s, pos);
    if (u.valid)
      out.append(s.substr(pos, u.len));
    else
      out += "\xEF\xBF\xBD";
    pos += u.len;
  }
  return out;
}

}  // namespace gl::unicode
