// The two GPT-2 byte-level BPE building blocks that both the tokenizer
// (data/tokenizer.cpp) and the BPE trainer (data/bpe_trainer.cpp) need, so
// that training and encoding split text into exactly the same words:
//   - bytes_to_unicode: each byte <-> one printable character (GPT-2's
//     encoder.py), the alphabet every token string is written in;
//   - the GPT-2 pre-tokenizer regex
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     as a hand-written leftmost-first matcher over bytes (invalid UTF-8 is
//     one OTHER unit per maximal ill-formed subpart, see data/unicode.h).
// Reference: openai/gpt-2 src/encoder.py; Hugging Face tokenizers 0.20
// pre_tokenizers/byte_level.rs.
//
// Invariant: the words of gpt2_match_end tile any byte string (every
// position starts a non-empty match), so splitting never drops a byte.
//
// NOTE for the lead: data/tokenizer.cpp still holds private copies of these
// in its anonymous namespace (byte_to_char, char_to_byte, byte_level_string,
// gpt2_match_end); they should be deleted there in favour of this header.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gl::byte_level {

// Byte -> code point of its byte-level character: printable Latin-1 bytes
// map to themselves, the other 68 (controls, space, 0x7F-0xA0, 0xAD) to
// U+0100.. in byte order.
const std::array<uint32_t, 256>& byte_to_char();
// The inverse (-1 where cp is not one of the 256 byte-level characters).
int char_to_byte(uint32_t cp);
// The byte-level string of raw bytes (UTF-8 of each byte's character).
std::string byte_level_string(std::string_view bytes);

// End of the GPT-2 regex match that starts at s[i] (requires i < s.size()).
size_t gpt2_match_end(std::string_view s, size_t i);

// Calls word(view) for each pre-tokenizer word of text, in order.
template <class Fn>
void for_each_gpt2_word(std::string_view text, Fn&& word) {
  for (size_t i = 0; i < text.size();) {
    const size_t end = gpt2_match_end(text, i);
    word(text.substr(i, end - i));
    i = end;
  }
}

}  // namespace gl::byte_level
