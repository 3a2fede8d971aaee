// PackedWeight (quantize + pack into the Q4Layout of cpu/q4_matmul.h) and
// packed_linear, the inference-only linear layer over it. Quantization is
// quant/quantizer.h's quantize(), so the codes and stored scales are exactly
// those fake_quantize_reference dequantizes; this file only rearranges them
// for the kernels and checks inputs. See quant/packed_linear.h for the
// contract and the layout.
#include "quant/packed_linear.h"

#include <cstring>
#include <vector>

#include "autograd/dispatch.h"
#include "autograd/ops/matmul.h"
#include "cpu/elementwise.h"
#include "cuda/elementwise.h"
#include "cuda/q4_matmul.h"

namespace gl {

namespace {

void check_weight(const Tensor& w, const QuantSpec& spec) {
  GL_CHECK(w.defined(), "PackedWeight::pack: undefined weight for quant spec '", spec.name, "'");
  GL_CHECK(w.dim() == 2 && w.size(1) > 0, "PackedWeight::pack: weight must be [out, in] with in > 0, got ",
           w.describe());
  validate(spec);
  GL_CHECK(spec.bits == 4, "PackedWeight::pack: quant spec '", spec.name, "' has ", spec.bits,
           " bits; the packed path supports 4-bit specs only (weight ", w.describe(), ")");
  GL_CHECK(spec.granularity != QuantGranularity::PER_GROUP || w.size(1) % spec.group_size == 0,
           "PackedWeight::pack: group size ", spec.group_size, " of quant spec '", spec.name,
           "' does not divide in_features ", w.size(1), " of weight ", w.describe());
}

// Rearranges quantize()'s row-major i32 codes and scales into the packed
// layout, on the CPU, then moves the tensors to `device`.
PackedWeight pack_quantized(const QuantizedTensor& q, int64_t out, int64_t in, Device device) {
  PackedWeight p;
  p.spec = q.spec;
  p.out = out;
  p.in = in;
  const Q4Layout l0 = [&] {
    Q4Layout l;
    l.N = out;
    l.K = in;
    return l;
  }();
  const int64_t words = l0.words_per_row();
  // Unsigned nibble: GPTQ's / ggml's q + 8 for symmetric codes, q itself
  // for asymmetric ones (the same convention as quantizer.h's pack()).
  const int full_min = q.spec.symmetric() ? -8 : 0;
  const std::vector<int32_t> c = q.codes.to_vector_as<int32_t>();
  std::vector<uint8_t> bytes(size_t(out * words * 4), 0);
  for (int64_t n = 0; n < out; ++n) {
    uint8_t* row = bytes.data() + n * words * 4;
    for (int64_t k = 0; k < in; ++k) {
      const int u = c[size_t(n * in + k)] - full_min;
      GL_CHECK(u >= 0 && u <= 15, "PackedWeight::pack: quant spec '", q.spec.name, "': code ",
               u + full_min, " at [", n, ", ", k, "] does not fit 4 bits");
      const int64_t j = k % Q4_BLOCK;
      row[(k - j) / 2 + j % 16] |= uint8_t(u << (j < 16 ? 0 : 4));  // low nibble: j < 16
    }
  }
  Tensor codes = Tensor::empty({out, words}, DType::I32);
  if (!bytes.empty()) std::memcpy(codes.data<int32_t>(), bytes.data(), bytes.size());

  // Scales per row and group; a per-tensor scale is repeated on every row
  // so the kernels see one shape.
  const bool per_tensor = q.spec.granularity == QuantGranularity::PER_TENSOR;
  p.group = q.spec.granularity == QuantGranularity::PER_GROUP ? q.spec.group_size : in;
  const int64_t groups = in / p.group;
  auto per_row = [&](const Tensor& t) {
    if (!per_tensor) return t.contiguous().reshape({out, groups});
    return Tensor::full({out, 1}, t.to_vector_as<float>()[0], DType::F32);
  };
  p.codes = codes.to(device);
  p.scales = per_row(q.scales.scale).to(device);
  if (!q.spec.symmetric()) p.zeros = per_row(q.scales.zero).to(device);
  return p;
}

}  // namespace

PackedWeight PackedWeight::pack(const Tensor& w, const QuantSpec& spec, Generator* gen) {
  check_weight(w, spec);
  return pack_quantized(quantize(w, spec, gen), w.size(0), w.size(1), w.device());
}

PackedWeight PackedWeight::pack(const Tensor& w, const QuantSpec& spec, const QuantScales& given,
                                Generator* gen) {
  check_weight(w, spec);
  return pack_quantized(quantize(w, spec, given, gen), w.size(0), w.size(1), w.device());
}

PackedWeight PackedWeight::to(Device device) const {
  PackedWeight p = *this;
  p.codes = codes.to(device);
  p.scales = scales.to(device);
  if (zeros.defined()) p.zeros = zeros.to(device);
  return p;
}

Q4Layout PackedWeight::layout() const {
  Q4Layout l;
  l.N = out;
  l.K = in;
  l.group = group;
  switch (spec.zero_point) {
    case QuantZeroPoint::SYMMETRIC: l.decode = Q4Decode::SYMMETRIC; break;
    case QuantZeroPoint::ASYM_ZERO: l.decode = Q4Decode::ASYM_ZERO; break;
    case QuantZeroPoint::ASYM_MIN: l.decode = Q4Decode::ASYM_MIN; break;
  }
  l.code_offset = spec.symmetric() ? -8 : 0;
  return l;
}

size_t PackedWeight::weight_bytes() const {
  return codes.nbytes() + scales.nbytes() + (zeros.defined() ? zeros.nbytes() : 0);
}

Tensor PackedWeight::dequantize() const {
  GL_CHECK(codes.defined(), "PackedWeight::dequantize: empty PackedWeight (use PackedWeight::pack)");
  Tensor w = Tensor::empty({out, in}, DType::F32, device());
  const Q4Layout l = layout();
  const float* z = zeros.defined() ? zeros.data<float>() : nullptr;
  // The scales (always f32) pick the device; the lambdas ignore the type.
  dispatch("PackedWeight::dequantize", scales,
      [&](auto) { cpu::q4_dequantize(w.data<float>(), codes.data<int32_t>(), scales.data<float>(), z, l); },
      [&](auto) { cuda::q4_dequantize(w.data<float>(), codes.data<int32_t>(), scales.data<float>(), z, l); });
  return w;
}

Tensor packed_linear(const Tensor& x, const PackedWeight& w, const Tensor& bias) {
  GL_CHECK(w.codes.defined(), "packed_linear: empty PackedWeight (use PackedWeight::pack)");
  GL_CHECK(x.defined(), "packed_linear: undefined input for packed weight [", w.out, ", ", w.in, "]");
  GL_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, "packed_linear: input ",
           x.describe(), " must be f32 or f64");
  GL_CHECK(x.device() == w.device(), "packed_linear: input ", x.describe(),
           " is not on the packed weight's device ", w.device().name());
  GL_CHECK(x.dim() >= 1 && x.size(-1) == w.in, "packed_linear: input ", x.describe(),
           " does not match packed weight [", w.out, ", ", w.in, "] (in_features ", w.in, ")");
  Tensor b;
  if (bias.defined()) {
    GL_CHECK(bias.dim() == 1 && bias.size(0) == w.out, "packed_linear: bias ", bias.describe(),
             " does not match packed weight [", w.out, ", ", w.in, "] (out_features ", w.out, ")");
    check_same("packed_linear", x, bias, "bias");
    b = bias.contiguous();
  }
  const int64_t M = x.numel() / w.in;
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(w.out);
  const Tensor x2 = x.contiguous().reshape({M, w.in});

  if (M > PACKED_LINEAR_MAX_KERNEL_ROWS) {
    // Many rows (prompt / evaluation batches): the GEMM wins over decoding
    // per tile; one dequantize, then linear's own order of operations.
    Tensor y = matmul_tensor(x2, w.dequantize().to(x.dtype()), false, true);
    if (b.defined()) {
      dispatch("packed_linear", y,
          [&](auto t) {
            using T = decltype(t);
            cpu::add_bias_rows<T>(y.data<T>(), b.data<T>(), M, w.out);
          },
          [&](auto t) {
            using T = decltype(t);
            cuda::add_bias_rows<T>(y.data<T>(), b.data<T>(), M, w.out);
          });
    }
    return y.reshape(out_shape);
  }

  Tensor y = Tensor::empty({M, w.out}, x.dtype(), x.device());
  const Q4Layout l = w.layout();
  const float* z = w.zeros.defined() ? w.zeros.data<float>() : nullptr;
  dispatch("packed_linear", x2,
      [&](auto t) {
        using T = decltype(t);
        cpu::q4_matmul_forward<T>(y.data<T>(), x2.data<T>(), w.codes.data<int32_t>(),
                                  w.scales.data<float>(), z, b.defined() ? b.data<T>() : nullptr,
                                  M, l);
      },
      [&](auto t) {
        using T = decltype(t);
        cuda::q4_matmul_forward<T>(y.data<T>(), x2.data<T>(), w.codes.data<int32_t>(),
                                   w.scales.data<float>(), z, b.defined() ? b.data<T>() : nullptr,
                                   M, l);
      });
  return y.reshape(out_shape);
}

}  // namespace gl
