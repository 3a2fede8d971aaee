// Error messages (core/error.h): every failure is a gl::Error whose message
// names the offending shapes, dtypes and devices, and the source location.
#include <doctest/doctest.h>

#include <string>

#include "core/device_hooks.h"
#include "tests/testing.h"

using namespace gl;

TEST_CASE("errors carry the source location") {
  try {
    Tensor::zeros({2, 3}).item();
    FAIL("item() on 6 elements did not throw");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK(what.find("item() needs one element, got f32[2, 3] cpu") != std::string::npos);
    CHECK(what.find("[core/tensor.cpp:") != std::string::npos);
  }
}

TEST_CASE("view/reshape errors name the shapes") {
  const Tensor t = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(t.transpose(0, 1).view({6}),
                       doctest::Contains("view: f32[3, 2] cpu is not contiguous"), Error);
  CHECK_THROWS_WITH_AS(t.view({4, 2}),
                       doctest::Contains("shape [4, 2] has 8 elements, tensor has 6"), Error);
  CHECK_THROWS_WITH_AS(t.view({-1, -1}), doctest::Contains("more than one -1 in [-1, -1]"), Error);
  CHECK_THROWS_WITH_AS(t.reshape({-1, 4}), doctest::Contains("cannot infer -1 in [-1, 4] for 6"),
                       Error);
  CHECK_THROWS_WITH_AS(t.view({-2, 3}), doctest::Contains("negative dimension in [-2, 3]"), Error);
  CHECK_THROWS_WITH_AS(t.permute({0, 1, 2}), doctest::Contains("permute: 3 dims given for f32[2, 3]"),
                       Error);
  CHECK_THROWS_WITH_AS(t.permute({1, 1}), doctest::Contains("permute: dim 1 repeated"), Error);
  CHECK_THROWS_WITH_AS(t.transpose(0, 2), doctest::Contains("dim 2 out of range for f32[2, 3] cpu"),
                       Error);
  CHECK_THROWS_WITH_AS(t.size(-3), doctest::Contains("dim -3 out of range"), Error);
  CHECK_THROWS_WITH_AS(t.select(1, 3),
                       doctest::Contains("select: index 3 out of range for dim 1 of f32[2, 3]"),
                       Error);
  CHECK_THROWS_WITH_AS(t.squeeze(0), doctest::Contains("squeeze: dim 0 of f32[2, 3] cpu is not 1"),
                       Error);
  CHECK_THROWS_WITH_AS(t.unsqueeze(3), doctest::Contains("unsqueeze: dim 3 out of range"), Error);
  CHECK_THROWS_WITH_AS(t.expand({2, 4}),
                       doctest::Contains("expand: f32[2, 3] cpu cannot expand to [2, 4]"), Error);
  CHECK_THROWS_WITH_AS(t.expand({3}), doctest::Contains("has fewer dims"), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({1}).expand({-1}),
                       doctest::Contains("expand: f32[1] cpu to [-1]: negative size"), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({1}).expand({-2, 1}), doctest::Contains("negative size"),
                       Error);
}

TEST_CASE("dtype errors name the dtypes") {
  const Tensor d = Tensor::zeros({2}, DType::F64);
  CHECK_THROWS_WITH_AS(d.data<float>(), doctest::Contains("data<f32>() on f64[2] cpu"), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({2}, DType::BF16).data<uint16_t>(),
                       doctest::Contains("data<u16>() on bf16[2] cpu"), Error);
  Generator g(1);
  CHECK_THROWS_WITH_AS(Tensor::uniform({2}, g, 0, 1, DType::I32),
                       doctest::Contains("random tensors need a floating dtype, got i32"), Error);
  CHECK_THROWS_WITH_AS(Tensor::uniform({2}, g, 1, 0),
                       doctest::Contains("uniform: low 1 > high 0"), Error);
  CHECK_THROWS_WITH_AS(Tensor::normal({2}, g, 0, -1),
                       doctest::Contains("normal: negative std -1"), Error);
  CHECK_THROWS_WITH_AS(dtype_from_name("f8"), doctest::Contains("unknown dtype 'f8'"), Error);
  CHECK_THROWS_WITH_AS(device_from_name("gpu"), doctest::Contains("bad device 'gpu'"), Error);
  CHECK_THROWS_WITH_AS(device_from_name("cuda:x"), doctest::Contains("bad device 'cuda:x'"), Error);
  // Ops compute in f32/f64 only and say so.
  const Tensor h = Tensor::zeros({2}, DType::BF16);
  CHECK_THROWS_WITH_AS(binary(h, h, BinaryOp::ADD),
                       doctest::Contains("add: dtype bf16 not supported (bf16[2] cpu)"), Error);
  CHECK_THROWS_WITH_AS(Var(Tensor::zeros({2}, DType::I32), true, "idx"),
                       doctest::Contains("requires_grad on idx: i32[2] cpu"), Error);
}

TEST_CASE("element-count errors") {
  CHECK_THROWS_WITH_AS(Tensor::zeros({2, 3}).item(),
                       doctest::Contains("item() needs one element, got f32[2, 3] cpu"), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({0}).item(),
                       doctest::Contains("item() needs one element, got f32[0] cpu"), Error);
  CHECK(Tensor::full({1, 1}, 4.0).item() == 4.0);
  CHECK_THROWS_WITH_AS(Tensor::from_vector({1, 2, 3}, {2, 2}),
                       doctest::Contains("from_vector: 3 values for shape [2, 2]"), Error);
  CHECK_THROWS_WITH_AS(Tensor::from_data<int32_t>({1}, {2}),
                       doctest::Contains("from_data: 1 values for shape [2]"), Error);
  CHECK_THROWS_WITH_AS(Tensor::empty({2, -1}),
                       doctest::Contains("Tensor::empty: negative dimension in shape [2, -1]"),
                       Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({3}).copy_(Tensor::zeros({4})),
                       doctest::Contains("copy_: source f32[4] cpu does not match f32[3] cpu"),
                       Error);
  const Var v(Tensor::zeros({2}), true, "w");
  CHECK_THROWS_WITH_AS(v.backward(),
                       doctest::Contains("backward() needs a one-element Var, got w: f32[2] cpu"),
                       Error);
}

TEST_CASE("undefined tensors are reported, not dereferenced") {
  const Tensor u;
  CHECK(u.describe() == "undefined tensor");
  CHECK_THROWS_WITH_AS(u.data_ptr(), doctest::Contains("data_ptr() of an undefined tensor"), Error);
  CHECK_THROWS_WITH_AS(u.contiguous(), doctest::Contains("contiguous() of an undefined tensor"),
                       Error);
  Tensor t = Tensor::zeros({1});
  CHECK_THROWS_WITH_AS(t.copy_(u), doctest::Contains("copy_: undefined tensor"), Error);
  CHECK_THROWS_WITH_AS(Var(u, false, "x"), doctest::Contains("Var x: undefined tensor"), Error);
}

TEST_CASE("creating a tensor on a missing CUDA device names the device count") {
  // One past the last visible device is never available, with or without a GPU.
  const int n = cuda_hooks::device_count();
  const std::string expected = "device cuda:" + std::to_string(n) + " is not available (" +
                               std::to_string(n) + " CUDA device(s) visible";
  CHECK_THROWS_WITH_AS(Tensor::empty({2}, DType::F32, Device::cuda(n)),
                       doctest::Contains(expected.c_str()), Error);
  CHECK_THROWS_WITH_AS(Tensor::zeros({2}, DType::F32, Device::cuda(-1)),
                       doctest::Contains("device cuda:-1 is not available"), Error);
  if (n == 0) {
    // Moving a CPU tensor to the (absent) GPU fails the same way.
    CHECK_THROWS_WITH_AS(Tensor::zeros({2}).to(Device::cuda()),
                         doctest::Contains("device cuda:0 is not available (0 CUDA device(s) visible"),
                         Error);
    if (!cuda_hooks::built())
      CHECK_THROWS_WITH_AS(Tensor::zeros({2}).to(Device::cuda()),
                           doctest::Contains("gridlock was built without CUDA"), Error);
  }
}

TEST_CASE("copy_ into an expanded (broadcast) view is rejected") {
  Tensor t = Tensor::zeros({1, 3}).expand({4, 3});
  CHECK_THROWS_WITH_AS(t.copy_(Tensor::ones({4, 3})), doctest::Contains("expanded view"), Error);
}
