// libFuzzer target: recipe YAML through the schema (trainer/recipe.h):
// yaml-cpp parsing, types, ranges, choices, unknown keys, the derived specs
// (schedule, quantization, model sizes). base: chains are exercised only
// with paths that do not exist (the input cannot name real files usefully).
#include <string>

#include "fuzz/fuzz_common.h"
#include "trainer/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  gl::fuzz::expect_ok_or_error([&] { (void)gl::Recipe::parse(text, "/nonexistent/fuzz.yaml"); });
  return 0;
}
