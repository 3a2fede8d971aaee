// quant/quantizer: every preset against a hand-computed small case (spec.md
// 0, 4.1, 4.4, 5.3), the ggml presets bit-identical to quant/ggml_blocks on
// random and adversarial rows, the scale rules (absmax, MSE search, LSQ
// init), stochastic rounding, pack/unpack, the spec grammar and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "quant/ggml_blocks.h"
#include "quant/quantizer.h"

using namespace gl;

namespace {

Tensor row_tensor(const std::vector<float>& v, const Shape& shape) {
  return Tensor::from_data<float>(v, shape);
}

std::vector<float> values(const Tensor& t) { return t.to_vector_as<float>(); }
std::vector<int32_t> codes_of(const QuantizedTensor& q) { return q.codes.to_vector_as<int32_t>(); }

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// Rows exercising ggml's corner cases: random normals at several scales,
// exact half-way ties, all-zero blocks, single outliers of either sign,
// equal-magnitude extremes of both signs, constant blocks, tiny values.
std::vector<float> adversarial_rows(int64_t n_blocks, uint64_t seed) {
  Generator gen(seed);
  const std::vector<double> r = Tensor::normal({n_blocks * 32}, gen).to_vector();
  std::vector<float> x(r.begin(), r.end());
  for (int64_t b = 0; b < n_blocks; ++b) {
    float* blk = x.data() + b * 32;
    switch (b % 9) {
      case 0: break;                                                    // N(0, 1)
      case 1: for (int j = 0; j < 32; ++j) blk[j] *= 1e-3f; break;      // small scale
      case 2: for (int j = 0; j < 32; ++j) blk[j] = 0.0f; break;        // all zero
      case 3: blk[b % 32] = 1e4f; break;                                // huge outlier
      case 4: blk[b % 32] = -1e4f; break;
      case 5:  // ties: multiples of d/2 with d = 1 (max = -8 or 8)
        for (int j = 0; j < 32; ++j) blk[j] = float(j - 16) * 0.5f;
        blk[0] = (b % 2) ? -8.0f : 8.0f;
        break;
      case 6: blk[3] = 5.0f; blk[7] = -5.0f; break;                     // +a first
      case 7: for (int j = 0; j < 32; ++j) blk[j] = 0.375f; break;      // constant
      case 8: for (int j = 0; j < 32; ++j) blk[j] = float(j - 16) * 0.125f; break;  // spec vector
    }
  }
  return x;
}

}  // namespace

TEST_CASE("quantizer: ggml presets equal ggml_dequantize(ggml_quantize(x)) bit for bit") {
  const int64_t n_blocks = 9 * 8;
  const std::vector<float> x = adversarial_rows(n_blocks, 7);
  const Tensor w = row_tensor(x, {n_blocks / 4, 4 * 32});
  for (const auto& preset : {std::pair{"q4_0", GgmlType::Q4_0}, std::pair{"q4_1", GgmlType::Q4_1},
                              std::pair{"q8_0", GgmlType::Q8_0}}) {
    const char* name = preset.first;  // named: CAPTURE's lambda cannot capture a binding in C++17
    const GgmlType type = preset.second;
    CAPTURE(name);
    const std::vector<float> got = values(fake_quantize_reference(w, quant_preset(name)));
    const std::vector<uint8_t> bytes = ggml_quantize(type, x.data(), int64_t(x.size()));
    std::vector<float> ref(x.size());
    ggml_dequantize(type, bytes.data(), int64_t(x.size()), ref.data());
    int64_t mismatches = 0;
    for (size_t i = 0; i < x.size(); ++i) mismatches += !same_bits(got[i], ref[i]);
    CHECK(mismatches == 0);
    // Scales are the stored f16 d of every block.
    const QuantizedTensor q = quantize(w, quant_preset(name));
    const std::vector<float> s = values(q.scales.scale);
    const size_t bsize = ggml_type_size(type);
    for (int64_t b = 0; b < n_blocks; ++b) {
      uint16_t d;
      std::memcpy(&d, bytes.data() + size_t(b) * bsize, 2);
      CHECK(same_bits(s[size_t(b)], f16_to_f32(d)));
    }
    // Codes: Q4_0's nibble minus 8, Q8_0's int8, Q4_1's nibble.
    const std::vector<int32_t> c = codes_of(q);
    for (int64_t b = 0; b < n_blocks; ++b) {
      const uint8_t* blk = bytes.data() + size_t(b) * bsize;
      for (int j = 0; j < 32; ++j) {
        const int32_t got_code = c[size_t(b * 32 + j)];
        if (type == GgmlType::Q8_0) {
          CHECK(got_code == int8_t(blk[2 + j]));
        } else {
          const uint8_t* qs = blk + (type == GgmlType::Q4_0 ? 2 : 4);
          const int nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
          CHECK(got_code == nib - (type == GgmlType::Q4_0 ? 8 : 0));
        }
      }
    }
  }
}

TEST_CASE("quantizer: int4_probe is SYM-7, g = 128, half-even, clamp [-8, 7]") {
  const QuantSpec s = quant_preset("int4_probe");
  CHECK(s.qmin() == -8);
  CHECK(s.qmax() == 7);
  CHECK(to_string(quant_preset("paper_int4")) == to_string(s));
  // Row 0: a = 7 -> s = 1. Row 1: everything doubled -> s = 2, same codes.
  std::vector<float> row(128, 0.0f);
  row[0] = 7.0f; row[1] = -7.0f; row[2] = 0.5f; row[3] = 1.5f; row[4] = 2.5f;
  row[5] = -2.5f; row[6] = 3.2f; row[127] = -0.49f;
  std::vector<float> x = row;
  for (float v : row) x.push_back(2.0f * v);
  const QuantizedTensor q = quantize(row_tensor(x, {2, 128}), s);
  CHECK(q.scales.scale.shape() == Shape{2, 1});
  CHECK(values(q.scales.scale) == std::vector<float>{1.0f, 2.0f});
  const std::vector<int32_t> c = codes_of(q);
  const std::vector<int32_t> expect = {7, -7, 0, 2, 2, -2, 3};
  for (size_t i = 0; i < expect.size(); ++i) {
    CHECK(c[i] == expect[i]);
    CHECK(c[128 + i] == expect[i]);
  }
  CHECK(c[127] == 0);
  CHECK(values(dequantize(q))[128 + 4] == 4.0f);
}

TEST_CASE("quantizer: int8_probe, sym7_g128, sym8_g128 and gptq_sym4 hand cases") {
  std::vector<float> x(128, 0.0f);
  // int8_probe: a = 127 -> s = 1; restricted [-127, 127]; 126.5 -> 126 (even).
  x[0] = 127.0f; x[1] = -127.0f; x[2] = 126.5f; x[3] = -3.5f;
  std::vector<int32_t> c = codes_of(quantize(row_tensor(x, {1, 128}), quant_preset("int8_probe")));
  CHECK(c[0] == 127); CHECK(c[1] == -127); CHECK(c[2] == 126); CHECK(c[3] == -4);
  CHECK(quant_preset("int8_probe").qmin() == -127);

  // SYM-7 restricted: a = 7 -> s = 1, codes in [-7, 7].
  std::fill(x.begin(), x.end(), 0.0f);
  x[0] = -7.0f; x[1] = 6.5f; x[2] = 7.0f;
  c = codes_of(quantize(row_tensor(x, {1, 128}), quant_preset("sym7_g128")));
  CHECK(c[0] == -7); CHECK(c[1] == 6); CHECK(c[2] == 7);
  CHECK(quant_preset("sym7_g128").qmin() == -7);

  // SYM-8: a = 8 -> s = 1; +a clips to 7 (0.875 a), -a is exactly -8.
  x[0] = 8.0f; x[1] = -8.0f; x[2] = 7.5f;
  c = codes_of(quantize(row_tensor(x, {1, 128}), quant_preset("sym8_g128")));
  CHECK(c[0] == 7); CHECK(c[1] == -8); CHECK(c[2] == 7);

  // GPTQ sym: s = 2a/15; a = 7.5 -> s = 1; torch.round: 7.5 -> 8 -> clamp 7,
  // -7.5 -> -8 (spec 4.4: +a -> 7s = 0.933a, -a -> -8s).
  std::fill(x.begin(), x.end(), 0.0f);
  x[0] = 7.5f; x[1] = -7.5f; x[2] = 0.5f;
  const QuantizedTensor q = quantize(row_tensor(x, {1, 128}), quant_preset("gptq_sym4"));
  CHECK(values(q.scales.scale)[0] == 1.0f);
  c = codes_of(q);
  CHECK(c[0] == 7); CHECK(c[1] == -8); CHECK(c[2] == 0);
}

TEST_CASE("quantizer: w4a16_g128 is GPTQ's asymmetric integer zero point") {
  // min -1, max 14 -> s = 1, z = round(1) = 1; w' = s (q - z).
  std::vector<float> x(256, 0.0f);
  x[0] = -1.0f; x[1] = 14.0f; x[2] = 0.5f; x[3] = 2.5f;
  // Row 1 is all positive: the range is widened to include 0 -> z = 0.
  for (int j = 0; j < 128; ++j) x[size_t(128 + j)] = float(j % 16);
  const QuantizedTensor q = quantize(row_tensor(x, {2, 128}), quant_preset("w4a16_g128"));
  CHECK(values(q.scales.scale) == std::vector<float>{1.0f, 1.0f});
  CHECK(values(q.scales.zero) == std::vector<float>{1.0f, 0.0f});
  const std::vector<int32_t> c = codes_of(q);
  CHECK(c[0] == 0); CHECK(c[1] == 15); CHECK(c[2] == 1); CHECK(c[3] == 3); CHECK(c[4] == 1);
  const std::vector<float> y = values(dequantize(q));
  CHECK(y[2] == 0.0f);  // 0.5 -> round-half-even(0.5) = 0 -> (1 - 1) * 1
  CHECK(y[3] == 2.0f);
  for (int j = 0; j < 128; ++j) CHECK(y[size_t(128 + j)] == x[size_t(128 + j)]);
}

TEST_CASE("quantizer: granularity shapes and group lengths") {
  const Shape shape{3, 2, 64};
  QuantSpec s = quant_spec_from_string("int4:tensor");
  CHECK(quant_group_length(s, shape) == 384);
  CHECK(quant_scales_shape(s, shape) == Shape{1});
  s = quant_spec_from_string("int4:channel");
  CHECK(quant_group_length(s, shape) == 64);
  CHECK(quant_scales_shape(s, shape) == Shape{3, 2, 1});
  s = quant_spec_from_string("int4:g16");
  CHECK(quant_group_length(s, shape) == 16);
  CHECK(quant_scales_shape(s, shape) == Shape{3, 2, 4});
  // Per-channel: each row has its own absmax scale (divisor 7).
  const Tensor w = row_tensor({1, -2, 3, 4, 0, 0, -14, 7}, {2, 4});
  const QuantScales sc = compute_scales(w, quant_spec_from_string("int4:channel"));
  CHECK(values(sc.scale) == std::vector<float>{4.0f / 7.0f, 2.0f});
  const QuantScales st = compute_scales(w, quant_spec_from_string("int4:tensor"));
  CHECK(values(st.scale) == std::vector<float>{2.0f});
}

TEST_CASE("quantizer: MSE clipping search never loses to absmax and picks a grid ratio") {
  // One outlier and many small values: clipping the outlier pays off.
  std::vector<float> x(64);
  for (int j = 0; j < 64; ++j) x[size_t(j)] = 0.1f * float((j * 37) % 17 - 8);
  x[5] = 10.0f;
  const Tensor w = row_tensor(x, {1, 64});
  const QuantSpec absmax = quant_spec_from_string("int4:channel");
  const QuantSpec mse = quant_spec_from_string("int4:channel:mse");
  auto sq_err = [&](const QuantSpec& s) {
    const std::vector<float> y = values(fake_quantize_reference(w, s));
    double e = 0.0;
    for (size_t i = 0; i < x.size(); ++i) e += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    return e;
  };
  CHECK(sq_err(mse) < sq_err(absmax));
  const float s = values(compute_scales(w, mse).scale)[0];
  bool on_grid = false;
  for (int i = 0; i < 80; ++i)
    on_grid |= s == float(1.0 - i / 100.0) * 10.0f / 7.0f;
  CHECK(on_grid);
  CHECK(s < 10.0f / 7.0f);
  // A group already on the grid keeps p = 1 (ties go to the largest ratio).
  const Tensor g = row_tensor({7, -7, 1, 2, -3, 0, 4, 5}, {1, 8});
  CHECK(values(compute_scales(g, mse).scale)[0] == 1.0f);
  // The asymmetric search also runs and never loses.
  const QuantSpec amse = quant_spec_from_string("int4:channel:asym:mse");
  CHECK(sq_err(amse) <= sq_err(quant_spec_from_string("int4:channel:asym")));
}

TEST_CASE("quantizer: LSQ init s = 2 mean|w| / sqrt(Q_P)") {
  const Tensor w = row_tensor({1, -1, 3, -3}, {1, 4});
  const QuantScales s4 = compute_scales(w, quant_spec_from_string("int4:tensor:lsq"));
  CHECK(values(s4.scale)[0] == float(4.0 / std::sqrt(7.0)));
  const QuantScales s8 = compute_scales(w, quant_spec_from_string("int8:tensor:lsq"));
  CHECK(values(s8.scale)[0] == float(4.0 / std::sqrt(127.0)));
  // A learned scale is then given explicitly; codes follow it.
  QuantScales given;
  given.scale = row_tensor({0.5f}, {1});
  const QuantizedTensor q = quantize(w, quant_spec_from_string("int4:tensor:lsq"), given);
  CHECK(codes_of(q) == std::vector<int32_t>{2, -2, 6, -6});
  CHECK(values(dequantize(q)) == std::vector<float>{1, -1, 3, -3});
}

TEST_CASE("quantizer: f16 scale storage quantizes with f32 and stores f16") {
  // a = 1 -> s = 1/7 in f32 (0.14285715), stored as f16 0.14282227.
  // 0.49995 / s32 = 3.49965 -> 3, but 0.49995 / s16 = 3.50050 would give 4:
  // the code must come from the f32 scale (quantize_row_q4_0_ref).
  std::vector<float> x(32, 0.0f);
  x[0] = 1.0f; x[1] = 0.49995f;
  const QuantSpec s = quant_spec_from_string("int4:g32:f16");
  const QuantizedTensor q = quantize(row_tensor(x, {1, 32}), s);
  const float s16 = f16_to_f32(f32_to_f16(1.0f / 7.0f));
  REQUIRE(std::nearbyint(x[1] / s16) == 4.0f);
  CHECK(values(q.scales.scale)[0] == s16);
  CHECK(codes_of(q)[1] == 3);
  CHECK(values(dequantize(q))[1] == 3.0f * s16);
  CHECK(values(dequantize(q))[0] == 7.0f * s16);
}

TEST_CASE("quantizer: stochastic rounding is Philox-indexed and unbiased") {
  std::vector<float> x(4096, 0.3f);
  x[0] = 7.0f;  // per-tensor SYM-7: s = 1, so v = 0.3
  const Tensor w = row_tensor(x, {4096});
  const QuantSpec s = quant_spec_from_string("int4:tensor:stochastic");
  Generator gen(42, 5);
  const QuantizedTensor q = quantize(w, s, &gen);
  CHECK(gen.offset == 5 + 1024);  // ceil(4096 / 4) blocks
  const std::vector<int32_t> c = codes_of(q);
  double mean = 0.0;
  for (size_t i = 1; i < c.size(); ++i) {
    CHECK(c[i] == int32_t(std::floor(0.3f + philox_uniform(42, 5, i))));
    mean += c[i];
  }
  mean /= double(c.size() - 1);
  CHECK(mean == doctest::Approx(0.3).epsilon(0.05));
  Generator again(42, 5);
  CHECK(codes_of(quantize(w, s, &again)) == c);
  CHECK_THROWS_WITH_AS(quantize(w, s), doctest::Contains("rounds stochastically and needs a Generator"),
                       Error);
}

TEST_CASE("quantizer: pack layout and pack/unpack round trips") {
  // Symmetric 4-bit codes are stored as q + 8, element 2k in the low nibble.
  QuantizedTensor q;
  q.spec = quant_spec_from_string("int4:tensor");
  q.codes = Tensor::from_data<int32_t>({-8, 7, 0, -1, 3}, {5});
  q.scales.scale = row_tensor({1.0f}, {1});
  CHECK(pack(q) == std::vector<uint8_t>{0xF0, 0x78, 0x0B});
  CHECK(unpack(pack(q), q.spec, {5}).to_vector_as<int32_t>() == q.codes.to_vector_as<int32_t>());
  // Every bit width, symmetric and asymmetric, odd element counts.
  Generator gen(3);
  for (int bits = 2; bits <= 8; ++bits) {
    for (const char* kind : {"sym", "asym", "asym_min"}) {
      CAPTURE(bits);
      CAPTURE(kind);
      const QuantSpec s = quant_spec_from_string("int" + std::to_string(bits) + ":g7:" + kind);
      const Tensor w = Tensor::normal({3, 21}, gen);
      const QuantizedTensor qt = quantize(w, s);
      const std::vector<uint8_t> bytes = pack(qt);
      CHECK(bytes.size() == (bits <= 4 ? size_t(32) : size_t(63)));
      CHECK(unpack(bytes, s, {3, 21}).to_vector_as<int32_t>() == codes_of(qt));
    }
  }
}

TEST_CASE("quantizer: spec strings, key/values and presets round-trip") {
  const QuantSpec s = quant_spec_from_string("int4:g64:sym:restricted:absmax:even");
  CHECK(s.bits == 4);
  CHECK(s.group_size == 64);
  CHECK(s.range == QuantRange::RESTRICTED);
  CHECK(s.qmin() == -7);
  CHECK(s.divisor() == 7.0);
  const QuantSpec p = quant_spec_from_string("int4_probe:g64");
  CHECK(p.group_size == 64);
  CHECK(p.scale_divisor == 7.0);
  for (const std::string& name : quant_preset_names()) {
    CAPTURE(name);
    const QuantSpec preset = quant_preset(name);
    CHECK(to_string(quant_spec_from_string(to_string(preset))) == to_string(preset));
    CHECK(to_string(quant_spec_from_string(name)) == to_string(preset));
  }
  CHECK(to_string(quant_preset("q4_0")) == "int4:g32:sym:full:absmax:div=-8:signed_max:half_up:f16:recip");
  const QuantSpec kv = quant_spec_from_kv({{"preset", "q4_0"}, {"group_size", "64"}});
  CHECK(kv.group_size == 64);
  CHECK(kv.signed_max);
  const QuantSpec kv2 = quant_spec_from_kv({{"bits", "3"}, {"zero_point", "asym"},
                                            {"granularity", "channel"}, {"rounding", "away"}});
  CHECK(to_string(kv2) == "int3:channel:asym:full:absmax:away:f32");
  CHECK(kv2.qmax() == 7);
}

TEST_CASE("quantizer: bad specs and inputs are refused before any work") {
  CHECK_THROWS_WITH_AS(quant_preset("q5_0"),
                       doctest::Contains("unknown quantization preset 'q5_0' (valid: q4_0, q4_1, q8_0"),
                       Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int9"), doctest::Contains("bits = 9 is outside 2..8"),
                       Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int1:g32"),
                       doctest::Contains("quant spec 'int1:g32'"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int4:asym:restricted"),
                       doctest::Contains("restricted range is symmetric only"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int4:g32:wobble"),
                       doctest::Contains("unknown option 'wobble'"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("float4"),
                       doctest::Contains("'float4' is neither int<bits>"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int4:div=-8"),
                       doctest::Contains("needs signed_max"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int4:asym:lsq"),
                       doctest::Contains("learned (LSQ) scale rule is symmetric only"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_string("int4:g0"), doctest::Contains("group size 0"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_kv({{"bitz", "4"}}),
                       doctest::Contains("unknown quant spec key 'bitz'"), Error);
  CHECK_THROWS_WITH_AS(quant_spec_from_kv({{"rounding", "up"}}),
                       doctest::Contains("quant spec key 'rounding' = 'up': expected even"), Error);
  const Tensor w = Tensor::zeros({3, 100});
  CHECK_THROWS_WITH_AS(quantize(w, quant_preset("int4_probe")),
                       doctest::Contains("group size 128 does not divide the last (input) "
                                         "dimension 100 of [3, 100]"),
                       Error);
  CHECK_THROWS_WITH_AS(quantize(w, quant_preset("int4_probe")),
                       doctest::Contains("quant spec 'int4_probe'"), Error);
  CHECK_THROWS_WITH_AS(fake_quantize_reference(Tensor::zeros({0, 32}), quant_preset("q4_0")),
                       doctest::Contains("empty tensor [0, 32]"), Error);
  Tensor bad = Tensor::zeros({1, 32});
  bad.data<float>()[3] = std::nanf("");
  CHECK_THROWS_WITH_AS(quantize(bad, quant_preset("q8_0")),
                       doctest::Contains("non-finite value nan at flat index 3"), Error);
  QuantScales wrong;
  wrong.scale = Tensor::ones({2});
  CHECK_THROWS_WITH_AS(quantize(Tensor::zeros({1, 32}), quant_preset("q8_0"), wrong),
                       doctest::Contains("needs scales of shape [1, 1]"), Error);
  QuantizedTensor q;
  q.spec = quant_spec_from_string("int4:tensor");
  q.codes = Tensor::from_data<int32_t>({9}, {1});
  q.scales.scale = Tensor::ones({1});
  CHECK_THROWS_WITH_AS(pack(q), doctest::Contains("code 9 at flat index 0 is outside [-8, 7]"),
                       Error);
  CHECK_THROWS_WITH_AS(unpack({0x00}, q.spec, {3}),
                       doctest::Contains("1 bytes for shape [3], expected 2"), Error);
}
