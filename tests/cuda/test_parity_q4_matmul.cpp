// CPU vs CUDA for quant/packed_linear (cpu/q4_matmul vs cuda/q4_matmul) on
// random inputs: odd output counts (not multiples of the 4 warps per
// block), M from 1 to 40 (partial 8-row tiles, and the dequantize + cuBLAS
// path above 32 rows), group sizes that are multiples of the 32-code block
// and ones that are not (16, 48, a per-channel in of 100 with a padded
// last block), every decode (symmetric, ASYM_ZERO, ASYM_MIN).
// Tolerances: dequantize is bit-identical (the same f32 operations,
// explicitly rounded on the GPU). The outputs differ only in summation
// order (CPU: 32 strided partial sums; GPU: per-lane sums and a shuffle
// tree; cuBLAS on the GEMM path), bounded by 2 K u sum|x w|: with x in
// [-1, 1), |w| < 1 and K <= 384 that is below 5e-5 in f32 (atol 5e-5,
// rtol 1e-5) and below 1e-13 in f64.
#include <doctest/doctest.h>

#include "quant/packed_linear.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("cuda parity: packed_linear and PackedWeight::dequantize") {
  struct Case {
    const char* spec;
    int64_t out, in;
  };
  const Case cases[] = {{"int4_probe", 67, 256},  {"w4a16_g128", 33, 384}, {"q4_0", 129, 96},
                        {"q4_1", 5, 160},         {"int4:g16", 31, 80},    {"int4:g48:asym", 9, 144},
                        {"int4:channel", 13, 100}, {"gptq_sym4", 1, 128}};
  uint64_t seed = 500;
  for (const Case& c : cases) {
    const QuantSpec spec = quant_spec_from_string(c.spec);
    const Tensor w = affine(rand({c.out, c.in}, ++seed, DType::F32), 0.1, 0.0);
    const PackedWeight cpu_w = PackedWeight::pack(w, spec);
    const PackedWeight gpu_w = cpu_w.to(Device::cuda());
    // Packing on the GPU's copy of w gives the same bytes.
    const PackedWeight gpu_packed = PackedWeight::pack(w.to(Device::cuda()), spec);
    CHECK(gpu_packed.device() == Device::cuda());
    CHECK(check_close("packed codes", gpu_packed.codes.to(Device::cpu()).to(DType::F64),
                      cpu_w.codes.to(DType::F64), 0, 0));
    CHECK(check_close("dequantize", gpu_w.dequantize().to(Device::cpu()), cpu_w.dequantize(), 0, 0));
    for (int64_t M : {1, 3, 8, 9, 40}) {
      for (bool with_bias : {false, true}) {
        CAPTURE(c.spec);
        CAPTURE(M);
        CAPTURE(with_bias);
        const Tensor x = rand({M, c.in}, ++seed, DType::F32);
        const Tensor b = with_bias ? rand({c.out}, ++seed, DType::F32) : Tensor();
        const Tensor ref = packed_linear(x, cpu_w, b);
        const Tensor got = packed_linear(x.to(Device::cuda()), gpu_w,
                                         with_bias ? b.to(Device::cuda()) : Tensor());
        CHECK(check_close("packed_linear f32", got.to(Device::cpu()), ref, 5e-5, 1e-5));
        const Tensor xd = x.to(DType::F64), bd = with_bias ? b.to(DType::F64) : Tensor();
        const Tensor refd = packed_linear(xd, cpu_w, bd);
        const Tensor gotd = packed_linear(xd.to(Device::cuda()), gpu_w,
                                          with_bias ? bd.to(Device::cuda()) : Tensor());
        CHECK(check_close("packed_linear f64", gotd.to(Device::cpu()), refd, 1e-13, 1e-13));
      }
    }
  }
}
