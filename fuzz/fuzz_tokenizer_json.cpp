// libFuzzer target: tokenizer.json (data/tokenizer.h, through core/json.h):
// the model, vocabulary, merges, added tokens, pre-tokenizer and
// normalizer; a tokenizer that loads must also encode and decode a fixed
// text (its own vocabulary decides the ids) without crashing.
#include <string_view>

#include "data/tokenizer.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::Tokenizer t = gl::Tokenizer::from_json(text, "fuzz/tokenizer.json");
    const std::vector<int32_t> ids = t.encode("In the beginning, 1611 caf\xc3\xa9 <|endoftext|>  x\n");
    (void)t.decode(ids);
  });
  return 0;
}
