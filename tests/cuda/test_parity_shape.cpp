// CPU vs CUDA parity for the shape ops (autograd/ops/shape.h): forward
// outputs and input gradients of L = sum(out * R) on random f32 inputs with
// odd sizes. Tolerance: exact (atol = rtol = 0) for f32 and f64. The ops only
// move elements (copy_strided on either device), and the gradients are
// R's elements moved back (an input used twice gets one correctly rounded
// f32 add, the same on both devices), so both devices produce identical bits.
#include <doctest/doctest.h>

#include "autograd/ops/shape.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

using ShapeFn = std::function<Var(const std::vector<Var>&)>;

// Runs fn on CPU and CUDA copies of `inputs`; compares output and gradients.
void check_parity(const std::string& label, const ShapeFn& fn, const std::vector<Tensor>& inputs,
                  uint64_t seed) {
  std::vector<Var> cpu_vars, gpu_vars;
  for (const Tensor& t : inputs) {
    cpu_vars.emplace_back(t.clone(), true);
    gpu_vars.emplace_back(t.to(Device::cuda()), true);
  }
  const Var cpu_out = fn(cpu_vars), gpu_out = fn(gpu_vars);
  CHECK(check_close(label + " out", gpu_out.value(), cpu_out.value(), 0, 0));
  const Tensor R = rand(cpu_out.shape(), seed, cpu_out.dtype());
  sum(mul(cpu_out, Var(R))).backward();
  sum(mul(gpu_out, Var(R.to(Device::cuda())))).backward();
  for (size_t i = 0; i < inputs.size(); ++i) {
    REQUIRE(cpu_vars[i].grad().defined());
    REQUIRE(gpu_vars[i].grad().defined());
    CHECK(gpu_vars[i].grad().is_cuda());
    CHECK(check_close(label + " d(input " + std::to_string(i) + ")", gpu_vars[i].grad(),
                      cpu_vars[i].grad(), 0, 0));
  }
}

}  // namespace

TEST_CASE("cuda parity: concat along dims 0, 1 and -1") {
  for (int64_t n : {1, 7, 33}) {
    const Tensor a = rand({n, 5, 65}, 1, DType::F32), b = rand({3, 5, 65}, 2, DType::F32);
    check_parity("concat dim 0", [](auto& v) { return concat({v[0], v[1]}, 0); }, {a, b}, 3);
    const Tensor c = rand({n, 2, 65}, 4, DType::F32), d = rand({n, 5, 65}, 5, DType::F32);
    check_parity("concat dim 1", [](auto& v) { return concat({v[0], v[1], v[0]}, 1); }, {c, d}, 6);
    const Tensor e = rand({n, 5, 31}, 7, DType::F32);
    check_parity("concat dim -1", [](auto& v) { return concat({v[0], v[1]}, -1); }, {d, e}, 8);
  }
}

TEST_CASE("cuda parity: split with a partially used set of pieces") {
  const Tensor a = rand({9, 131, 3}, 9, DType::F32);
  check_parity("split", [](auto& v) {
    const std::vector<Var> p = split(v[0], {17, 100, 14}, 1);
    return concat({p[2], p[0]}, 1);
  }, {a}, 10);
}

TEST_CASE("cuda parity: permute + contiguous, transpose + reshape") {
  const Tensor a = rand({5, 33, 7, 3}, 11, DType::F32);
  check_parity("permute+contiguous",
               [](auto& v) { return contiguous(permute(v[0], {2, 0, 3, 1})); }, {a}, 12);
  check_parity("transpose+reshape", [](auto& v) { return reshape(transpose(v[0], 1, -1), {-1, 7}); },
               {a}, 13);
}

TEST_CASE("cuda parity: slice with steps and narrow") {
  const Tensor a = rand({17, 257}, 14, DType::F32);
  check_parity("slice step 3", [](auto& v) { return slice(v[0], 1, 5, 250, 3); }, {a}, 15);
  check_parity("slice negative", [](auto& v) { return slice(v[0], 0, -9, 1000, 2); }, {a}, 16);
  check_parity("narrow", [](auto& v) { return narrow(v[0], -1, 100, 29); }, {a}, 17);
  // f64 on the device too (slices of a transposed view).
  const Tensor b = rand({13, 6}, 18, DType::F64);
  check_parity("slice of transpose f64",
               [](auto& v) { return slice(transpose(v[0], 0, 1), 1, 1, 13, 4); }, {b}, 19);
}
