// quant/packed_linear (the integer inference path, issue 5 item 5): the
// packed layout on a hand-built row, PackedWeight::dequantize equal bit for
// bit to fake_quantize_reference for every 4-bit spec family at odd row
// counts and several group sizes, packed_linear against linear(x,
// fake-quantized w, bias) at M = 1, 3, 6, 8 (the packed kernel) and 40 (the
// dequantize + GEMM path), in f32 and f64, and the errors.
//
// Tolerance of packed_linear vs linear: the weights are identical, only the
// summation order differs, and any order of a K-term sum errs by at most
// gamma_K * sum_k |x_k w_k| with gamma_K ~ K u (u = 2^-24 f32, 2^-53 f64).
// Two such sums differ by at most 2 gamma_K sum|x w| per output; the check
// uses exactly that bound, plus one ulp of the bias addition.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/ops/matmul.h"
#include "core/error.h"
#include "quant/packed_linear.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

int64_t bit_mismatches(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector_as<float>(), y = b.to_vector_as<float>();
  if (x.size() != y.size()) return -1;
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) bad += std::memcmp(&x[i], &y[i], 4) != 0;
  return bad;
}

// Weights with per-row scale spread and a few outliers, so groups differ.
Tensor test_weight(int64_t out, int64_t in, uint64_t seed) {
  std::vector<double> v = randn({out, in}, seed).to_vector();
  for (int64_t n = 0; n < out; ++n)
    for (int64_t k = 0; k < in; ++k) v[size_t(n * in + k)] *= 0.02 * double(1 + n % 5);
  v[size_t((seed * 7) % v.size())] = 0.9;  // an outlier
  return Tensor::from_vector(v, {out, in}, DType::F32);
}

struct SpecCase {
  const char* spec;
  int64_t in;
};

// Every 4-bit family: symmetric SYM-7 / SYM-8 / GPTQ / ggml Q4_0, asymmetric
// with integer zero (w4a16) and with ggml's float minimum (Q4_1), per group
// at 16, 32, 48 (not a multiple of the 32-code block), 64, 128, per channel
// with in not a multiple of 32, per tensor, the MSE scale rule.
const SpecCase kSpecs[] = {
    {"int4_probe", 256},       {"sym7_g128", 384},         {"sym8_g128", 128},
    {"gptq_sym4", 256},        {"q4_0", 96},               {"q4_1", 160},
    {"w4a16_g128", 256},       {"int4:g16", 80},           {"int4:g48:asym", 144},
    {"int4:g64:asym_min", 192}, {"int4:channel", 100},     {"int4:tensor:asym", 70},
    {"int4_probe:g32:mse", 96}, {"int4:g16:restricted", 48}};

// Bound of |packed - reference| per output (see the header comment).
Tensor order_bound(const Tensor& x2, const Tensor& wq, double u) {
  const int64_t M = x2.size(0), K = x2.size(1), N = wq.size(0);
  const std::vector<double> x = x2.to_vector(), w = wq.to_vector();
  const double gamma = K * u / (1 - K * u);
  std::vector<double> b(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += std::abs(x[size_t(m * K + k)] * w[size_t(n * K + k)]);
      b[size_t(m * N + n)] = 2 * gamma * s;
    }
  return Tensor::from_vector(b, {M, N}, DType::F64);
}

// Every |got - ref| within its bound (plus an ulp for the bias addition).
bool within_bound(const std::string& label, const Tensor& got, const Tensor& ref,
                  const Tensor& bound, double u) {
  const std::vector<double> g = got.to_vector(), r = ref.to_vector(), b = bound.to_vector();
  REQUIRE(g.size() == r.size());
  REQUIRE(b.size() == r.size());
  int64_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::abs(g[i] - r[i]), tol = b[i] + 2 * u * std::abs(r[i]);
    worst = std::max(worst, tol > 0 ? d / tol : d);
    bad += d > tol;
  }
  if (bad) MESSAGE(label, ": ", bad, " outputs outside the summation-order bound, worst ratio ",
                   worst);
  return bad == 0;
}

Tensor reference_linear(const Tensor& x, const Tensor& wq, const Tensor& bias) {
  NoGradGuard no_grad;
  return linear(Var(x), Var(wq), bias.defined() ? Var(bias) : Var()).value();
}

}  // namespace

TEST_CASE("packed_linear: the packed layout of a hand-built row") {
  // Codes q = (k % 16) - 8 with scale 1: u = k % 16, so in each block of
  // 32 byte j = u(j) | u(j + 16) << 4 = j | j << 4 = 0x00, 0x11, ..., 0xff.
  // in = 40: the second block holds 8 codes and zero padding.
  std::vector<float> w(2 * 40);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t k = 0; k < 40; ++k) w[size_t(n * 40 + k)] = float(k % 16 - 8);
  const QuantSpec spec = quant_spec_from_string("int4:channel");
  QuantScales given;
  given.scale = Tensor::full({2, 1}, 1.0, DType::F32);
  const PackedWeight p = PackedWeight::pack(Tensor::from_data<float>(w, {2, 40}), spec, given);
  CHECK(p.codes.shape() == Shape{2, 8});  // 2 blocks * 4 words per row
  CHECK(p.group == 40);
  CHECK(p.scales.shape() == Shape{2, 1});
  CHECK(!p.zeros.defined());
  std::vector<uint8_t> bytes(64);
  std::memcpy(bytes.data(), p.codes.data<int32_t>(), 64);
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < 16; ++j) CHECK(bytes[size_t(n * 32 + j)] == uint8_t(j | j << 4));
    // Block 2: codes 32..39 are u = 0..7 in the low nibbles of bytes 0..7;
    // the padding (high nibbles, bytes 8..15) is zero.
    for (int j = 0; j < 16; ++j) CHECK(bytes[size_t(n * 32 + 16 + j)] == uint8_t(j < 8 ? j : 0));
  }
  CHECK(bit_mismatches(p.dequantize(), Tensor::from_data<float>(w, {2, 40})) == 0);
  CHECK(p.weight_bytes() == size_t(64 + 2 * 4));
}

TEST_CASE("packed_linear: dequantize equals fake_quantize_reference bit for bit") {
  uint64_t seed = 10;
  for (const SpecCase& c : kSpecs) {
    for (int64_t out : {1, 7, 13}) {
      CAPTURE(c.spec);
      CAPTURE(out);
      const QuantSpec spec = quant_spec_from_string(c.spec);
      const Tensor w = test_weight(out, c.in, ++seed);
      const PackedWeight p = PackedWeight::pack(w, spec);
      CHECK(p.out == out);
      CHECK(p.in == c.in);
      CHECK(bit_mismatches(p.dequantize(), fake_quantize_reference(w, spec)) == 0);
    }
  }
  // Stochastic rounding: the same generator state gives the same codes.
  const QuantSpec st = quant_spec_from_string("int4:g32:stochastic");
  const Tensor w = test_weight(5, 64, 99);
  Generator g1(7), g2(7);
  CHECK(bit_mismatches(PackedWeight::pack(w, st, &g1).dequantize(),
                       fake_quantize_reference(w, st, &g2)) == 0);
  // An f64 weight quantizes through its f32 values, as fake_quantize_reference.
  const QuantSpec q40 = quant_preset("q4_0");
  CHECK(bit_mismatches(PackedWeight::pack(w.to(DType::F64), q40).dequantize(),
                       fake_quantize_reference(w, q40)) == 0);
}

TEST_CASE("packed_linear: equals linear(x, fake-quantized w, bias) to float rounding") {
  uint64_t seed = 1000;
  for (const SpecCase& c : kSpecs) {
    const QuantSpec spec = quant_spec_from_string(c.spec);
    const int64_t out = 11;
    const Tensor w = test_weight(out, c.in, ++seed);
    const Tensor wq = fake_quantize_reference(w, spec);
    const PackedWeight p = PackedWeight::pack(w, spec);
    for (int64_t M : {1, 3, 6, 8, 40}) {  // 6: the f32 tiles of 4 + 2
      for (bool with_bias : {false, true}) {
        CAPTURE(c.spec);
        CAPTURE(M);
        CAPTURE(with_bias);
        const Tensor x = rand({M, c.in}, ++seed, DType::F32);
        const Tensor bias = with_bias ? rand({out}, ++seed, DType::F32) : Tensor();
        const Tensor got = packed_linear(x, p, bias);
        CHECK(got.shape() == Shape{M, out});
        CHECK(got.dtype() == DType::F32);
        const double u32 = std::ldexp(1.0, -24);
        CHECK(within_bound("f32", got, reference_linear(x, wq, bias), order_bound(x, wq, u32), u32));
        // f64 inputs: the same weights, a far tighter bound.
        const Tensor xd = x.to(DType::F64);
        const Tensor bd = with_bias ? bias.to(DType::F64) : Tensor();
        const double u64 = std::ldexp(1.0, -53);
        const Tensor gd = packed_linear(xd, p, bd);
        CHECK(gd.dtype() == DType::F64);
        CHECK(within_bound("f64", gd, reference_linear(xd, wq.to(DType::F64), bd),
                           order_bound(xd, wq, u64), u64));
      }
    }
  }
}

TEST_CASE("packed_linear: batched input shapes and a non-contiguous x") {
  const QuantSpec spec = quant_preset("int4_probe");
  const Tensor w = test_weight(9, 128, 5);
  const Tensor wq = fake_quantize_reference(w, spec);
  const PackedWeight p = PackedWeight::pack(w, spec);
  const Tensor bias = rand({9}, 6, DType::F32);
  const double u32 = std::ldexp(1.0, -24);
  // [2, 3, in] folds to 6 rows.
  const Tensor x3 = rand({2, 3, 128}, 7, DType::F32);
  const Tensor y3 = packed_linear(x3, p, bias);
  CHECK(y3.shape() == Shape{2, 3, 9});
  CHECK(within_bound("3-D", y3.reshape({6, 9}),
                     reference_linear(x3.reshape({6, 128}), wq, bias),
                     order_bound(x3.reshape({6, 128}), wq, u32), u32));
  // A 1-D x is one row.
  const Tensor x1 = rand({128}, 8, DType::F32);
  CHECK(packed_linear(x1, p).shape() == Shape{9});
  // A transposed (non-contiguous) x.
  const Tensor xt = rand({128, 4}, 9, DType::F32).transpose(0, 1);
  CHECK(within_bound("transposed", packed_linear(xt, p), reference_linear(xt, wq, Tensor()),
                     order_bound(xt.contiguous(), wq, u32), u32));
  // Zero rows.
  CHECK(packed_linear(Tensor::zeros({0, 128}), p).shape() == Shape{0, 9});
}

TEST_CASE("packed_linear: errors name the tensor and what is wrong") {
  const Tensor w = test_weight(3, 100, 1);
  CHECK_THROWS_WITH_AS(PackedWeight::pack(w, quant_preset("int4_probe")),
                       doctest::Contains("group size 128 of quant spec 'int4_probe' does not "
                                         "divide in_features 100 of weight f32[3, 100]"),
                       Error);
  CHECK_THROWS_WITH_AS(PackedWeight::pack(test_weight(3, 128, 2), quant_preset("int8_probe")),
                       doctest::Contains("4-bit specs only"), Error);
  CHECK_THROWS_WITH_AS(PackedWeight::pack(Tensor::zeros({128}), quant_preset("int4_probe")),
                       doctest::Contains("weight must be [out, in]"), Error);
  CHECK_THROWS_WITH_AS(PackedWeight::pack(test_weight(2, 64, 3), quant_spec_from_string("int4:g32:stochastic")),
                       doctest::Contains("needs a Generator"), Error);
  const PackedWeight p = PackedWeight::pack(test_weight(3, 128, 4), quant_preset("int4_probe"));
  CHECK_THROWS_WITH_AS(packed_linear(Tensor::zeros({2, 99}), p),
                       doctest::Contains("input f32[2, 99] cpu does not match packed weight [3, 128]"),
                       Error);
  CHECK_THROWS_WITH_AS(packed_linear(Tensor::zeros({2, 128}), p, Tensor::zeros({4})),
                       doctest::Contains("bias f32[4] cpu does not match packed weight [3, 128]"),
                       Error);
  CHECK_THROWS_WITH_AS(packed_linear(Tensor::zeros({2, 128}, DType::I32), p),
                       doctest::Contains("must be f32 or f64"), Error);
  CHECK_THROWS_WITH_AS(packed_linear(Tensor::zeros({2, 128}), p, Tensor::zeros({3}, DType::F64)),
                       doctest::Contains("packed_linear"), Error);
  CHECK_THROWS_WITH_AS(packed_linear(Tensor::zeros({2, 128}), PackedWeight{}),
                       doctest::Contains("empty PackedWeight"), Error);
}
