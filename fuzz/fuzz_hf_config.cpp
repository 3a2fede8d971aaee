// libFuzzer target: a Hugging Face config.json (models/model.h
// ModelConfig::from_hf_json, through core/json.h): JSON syntax, types and
// ranges of every field, architecture names, consistency of sizes.
#include <string_view>

#include "core/json.h"
#include "fuzz/fuzz_common.h"
#include "models/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::Json j = gl::Json::parse(text, "fuzz/config.json");
    const gl::ModelConfig c = gl::ModelConfig::from_hf_json(j, "fuzz/config.json");
    (void)c.to_hf_json();
  });
  return 0;
}
