// quant/types.h: the ggml type ids are the ones GGUF files carry (ggml.h;
// spec.md 4.2), so a renumbering here would silently corrupt exports.
#include <doctest/doctest.h>

#include "quant/types.h"

using namespace gl;

TEST_CASE("quant types: ggml type ids match ggml.h") {
  CHECK(uint32_t(GgmlType::F32) == 0);
  CHECK(uint32_t(GgmlType::F16) == 1);
  CHECK(uint32_t(GgmlType::Q4_0) == 2);
  CHECK(uint32_t(GgmlType::Q4_1) == 3);
  CHECK(uint32_t(GgmlType::Q8_0) == 8);
  CHECK(uint32_t(GgmlType::BF16) == 30);
}
