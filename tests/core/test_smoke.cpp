#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;

TEST_CASE("tensor basics") {
  Tensor t = Tensor::arange(6).view({2, 3});
  CHECK(t.transpose(0, 1).contiguous().to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
}
