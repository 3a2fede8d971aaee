#include <doctest/doctest.h>

#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("cuda parity: binary ops with broadcasting") {
  const Tensor a = rand({4, 33, 65}, 1, DType::F32), b = rand({33, 1}, 2, DType::F32);
  for (BinaryOp op : {BinaryOp::ADD, BinaryOp::SUB, BinaryOp::MUL}) {
    const Tensor ref = binary(a, b, op);
    const Tensor got = binary(a.to(Device::cuda()), b.to(Device::cuda()), op);
    CHECK(check_close("binary", got, ref, 0, 0));
  }
}
