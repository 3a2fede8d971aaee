// The quantization steps of quant/quantizer.h on the CPU in f32:
// compute_scales, quantize, dequantize, pack/unpack, and their composition
// fake_quantize_reference. Each group (a run of G consecutive elements, see
// the header) is independent, so groups are the unit of work and of OpenMP
// parallelism; stochastic rounding indexes its Philox stream by the global
// element index, so the thread schedule never changes a code.
#include "quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/ggml_blocks.h"

// Every f32 multiply and add is rounded on its own (the ggml presets are
// bit-exact only without FMA contraction; see ggml_blocks.h).
GL_NO_FP_CONTRACT

namespace gl {

namespace {

// Scales of one group: `code` quantizes (the f32 value), `store` is what is
// kept and dequantized with (rounded to f16 when the spec says so).
struct GroupScale {
  float code_s = 0.0f, code_z = 0.0f;    // z: integer zero (ASYM_ZERO) or m (ASYM_MIN)
  float store_s = 0.0f, store_z = 0.0f;
};

float round_to_storage(float v, DType dt) {
  return dt == DType::F16 ? f16_to_f32(f32_to_f16(v)) : v;
}

// One code from one value. `u` is the stochastic-rounding uniform.
int quantize_value(float w, float s, float id, float z, const QuantSpec& spec, float u) {
  // The real-valued position v on the integer grid.
  float v;
  const float base = spec.zero_point == QuantZeroPoint::ASYM_MIN ? w - z : w;
  if (s == 0.0f) v = 0.0f;  // all-zero group (or a zero learned scale)
  else if (spec.reciprocal) v = base * id;
  else v = base / s;
  const bool offset_domain = spec.symmetric() && spec.rounding == QuantRounding::HALF_UP;
  const int full_min = spec.symmetric() ? -(1 << (spec.bits - 1)) : 0;
  float r;
  switch (spec.rounding) {
    case QuantRounding::NEAREST_EVEN: r = std::nearbyint(v); break;  // default FE_TONEAREST
    case QuantRounding::NEAREST_AWAY: r = std::round(v); break;
    case QuantRounding::HALF_UP:
      // ggml's (int)(v + 8.5f) - 8: the offset and the half are one f32 add.
      r = offset_domain ? std::floor(v + (0.5f - float(full_min))) + float(full_min)
                        : std::floor(v + 0.5f);
      break;
    case QuantRounding::STOCHASTIC: r = std::floor(v + u); break;
    default: r = 0.0f;
  }
  // Only reachable in reciprocal mode with a scale below 2^-128 (1/s = inf):
  // ggml's C cast gives code 0 in its own storage domain there (x86), and
  // the f16 scale is 0, so the value dequantizes to 0 either way.
  if (!std::isfinite(r)) return offset_domain ? full_min : 0;
  if (spec.zero_point == QuantZeroPoint::ASYM_ZERO) r += z;
  r = std::min(std::max(r, float(spec.qmin())), float(spec.qmax()));
  return int(r);
}

float dequantize_value(int q, float s, float z, QuantZeroPoint zp) {
  switch (zp) {
    case QuantZeroPoint::SYMMETRIC: return float(q) * s;
    case QuantZeroPoint::ASYM_ZERO: return s * (float(q) - z);   // GPTQ: scale * (q - zero)
    case QuantZeroPoint::ASYM_MIN: return float(q) * s + z;      // ggml Q4_1: q * d + m
  }
  return 0.0f;
}

// Scale (and zero) of one group for a clip ratio p (ABSMAX is p = 1).
GroupScale scale_for_ratio(const float* w, int64_t n, const QuantSpec& spec, float p) {
  GroupScale g;
  const float div = float(spec.divisor());
  if (spec.symmetric()) {
    // The (signed) value of largest magnitude, first on ties (ggml's loop).
    float amax = 0.0f, max = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      if (amax < std::fabs(w[j])) {
        amax = std::fabs(w[j]);
        max = w[j];
      }
    }
    const float a = spec.signed_max ? max : amax;
    g.code_s = (p == 1.0f ? a : p * a) / div;
  } else {
    float mn = w[0], mx = w[0];
    for (int64_t j = 1; j < n; ++j) {
      mn = std::min(mn, w[j]);
      mx = std::max(mx, w[j]);
    }
    if (spec.zero_point == QuantZeroPoint::ASYM_ZERO) {
      // GPTQ quant.py: the range always contains 0, so 0 is exactly a code.
      mn = std::min(mn, 0.0f);
      mx = std::max(mx, 0.0f);
    }
    if (p != 1.0f) {
      mn = p * mn;
      mx = p * mx;
    }
    g.code_s = (mx - mn) / div;
    if (spec.zero_point == QuantZeroPoint::ASYM_ZERO)
      g.code_z = g.code_s != 0.0f ? std::nearbyint(-mn / g.code_s) : 0.0f;  // torch.round
    else
      g.code_z = mn;
  }
  g.store_s = round_to_storage(g.code_s, spec.scale_dtype);
  g.store_z = spec.zero_point == QuantZeroPoint::ASYM_MIN
                  ? round_to_storage(g.code_z, spec.scale_dtype)
                  : g.code_z;
  return g;
}

double group_sq_error(const float* w, int64_t n, const QuantSpec& spec, const GroupScale& g) {
  const float id = g.code_s != 0.0f ? 1.0f / g.code_s : 0.0f;
  double err = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const int q = quantize_value(w[j], g.code_s, id, g.code_z, spec, 0.5f);
    const double e = double(dequantize_value(q, g.store_s, g.store_z, spec.zero_point)) - w[j];
    err += e * e;
  }
  return err;
}

GroupScale group_scale(const float* w, int64_t n, const QuantSpec& spec) {
  switch (spec.scale_rule) {
    case QuantScaleRule::ABSMAX: return scale_for_ratio(w, n, spec, 1.0f);
    case QuantScaleRule::MSE: {
      // The search rounds to nearest even when the spec is stochastic, so
      // the chosen scale does not depend on the random stream.
      QuantSpec search = spec;
      if (search.rounding == QuantRounding::STOCHASTIC)
        search.rounding = QuantRounding::NEAREST_EVEN;
      GroupScale best = scale_for_ratio(w, n, search, 1.0f);
      double best_err = group_sq_error(w, n, search, best);
      for (int i = 1; i < 80; ++i) {
        const float p = float(1.0 - i / 100.0);
        const GroupScale g = scale_for_ratio(w, n, search, p);
        const double err = group_sq_error(w, n, search, g);
        if (err < best_err) {  // strict: the largest ratio wins ties
          best = g;
          best_err = err;
        }
      }
      return best;
    }
    case QuantScaleRule::LEARNED: {
      // LSQ init (Esser et al. 2020): s = 2 mean|w| / sqrt(Q_P).
      double sum = 0.0;
      for (int64_t j = 0; j < n; ++j) sum += std::fabs(double(w[j]));
      GroupScale g;
      g.code_s = float(2.0 * (sum / double(n)) / std::sqrt(double(spec.qmax())));
      g.store_s = round_to_storage(g.code_s, spec.scale_dtype);
      return g;
    }
  }
  return {};
}

// f32, contiguous, CPU copy of w; rejects non-finite values before any work.
Tensor checked_input(const Tensor& w, const QuantSpec& spec, const char* op) {
  GL_CHECK(w.defined(), op, ": undefined tensor for quant spec '", spec.name, "'");
  GL_CHECK(is_floating(w.dtype()), op, ": quant spec '", spec.name,
           "' needs a floating tensor, got ", w.describe());
  validate_for_shape(spec, w.shape());
  Tensor c = w.to(Device::cpu()).to(DType::F32).contiguous();
  const float* p = c.data<float>();
  const int64_t n = c.numel();
  int64_t bad = -1;
  for (int64_t i = 0; i < n && bad < 0; ++i)
    if (!std::isfinite(p[i])) bad = i;
  GL_CHECK(bad < 0, op, ": quant spec '", spec.name, "': non-finite value ", p[bad < 0 ? 0 : bad],
           " at flat index ", bad, " of ", w.describe());
  return c;
}

// The stored scales (and zeros) as tensors of quant_scales_shape.
QuantScales stored_scales(const std::vector<GroupScale>& groups, const QuantSpec& spec,
                          const Shape& w_shape) {
  std::vector<float> s, z;
  for (const GroupScale& g : groups) {
    s.push_back(g.store_s);
    z.push_back(g.store_z);
  }
  const Shape sshape = quant_scales_shape(spec, w_shape);
  QuantScales out;
  out.scale = Tensor::from_data<float>(s, sshape);
  if (!spec.symmetric()) out.zero = Tensor::from_data<float>(z, sshape);
  return out;
}

QuantizedTensor quantize_with(const Tensor& wc, const QuantSpec& spec,
                              const std::vector<GroupScale>& groups, Generator* gen) {
  const int64_t n = wc.numel();
  const int64_t G = quant_group_length(spec, wc.shape());
  const int64_t n_groups = n / G;
  GL_CHECK(spec.rounding != QuantRounding::STOCHASTIC || gen != nullptr, "quantize: quant spec '",
           spec.name, "' rounds stochastically and needs a Generator");
  uint64_t seed = 0, offset = 0;
  if (spec.rounding == QuantRounding::STOCHASTIC) {
    seed = gen->seed;
    offset = gen->advance(uint64_t((n + 3) / 4));
  }
  const bool stochastic = spec.rounding == QuantRounding::STOCHASTIC;
  const float* w = wc.data<float>();
  Tensor codes = Tensor::empty(wc.shape(), DType::I32);
  int32_t* q = codes.data<int32_t>();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t k = 0; k < n_groups; ++k) {
    const GroupScale& g = groups[size_t(k)];
    const float id = g.code_s != 0.0f ? 1.0f / g.code_s : 0.0f;
    for (int64_t j = k * G; j < (k + 1) * G; ++j) {
      const float u = stochastic ? philox_uniform(seed, offset, uint64_t(j)) : 0.0f;
      q[j] = quantize_value(w[j], g.code_s, id, g.code_z, spec, u);
    }
  }
  QuantizedTensor out;
  out.spec = spec;
  out.codes = codes;
  out.scales = stored_scales(groups, spec, wc.shape());
  return out;
}

std::vector<GroupScale> all_group_scales(const Tensor& wc, const QuantSpec& spec) {
  const int64_t G = quant_group_length(spec, wc.shape());
  const int64_t n_groups = wc.numel() / G;
  std::vector<GroupScale> groups(static_cast<size_t>(n_groups));
  const float* w = wc.data<float>();
#pragma omp parallel for schedule(static) if (wc.numel() > (1 << 16))
  for (int64_t k = 0; k < n_groups; ++k) groups[size_t(k)] = group_scale(w + k * G, G, spec);
  return groups;
}

}  // namespace

QuantScales compute_scales(const Tensor& w, const QuantSpec& spec) {
  const Tensor wc = checked_input(w, spec, "compute_scales");
  return stored_scales(all_group_scales(wc, spec), spec, wc.shape());
}

QuantizedTensor quantize(const Tensor& w, const QuantSpec& spec, Generator* gen) {
  const Tensor wc = checked_input(w, spec, "quantize");
  return quantize_with(wc, spec, all_group_scales(wc, spec), gen);
}

QuantizedTensor quantize(const Tensor& w, const QuantSpec& spec, const QuantScales& given,
                         Generator* gen) {
  const Tensor wc = checked_input(w, spec, "quantize");
  const Shape sshape = quant_scales_shape(spec, wc.shape());
  GL_CHECK(given.scale.defined() && given.scale.shape() == sshape, "quantize: quant spec '",
           spec.name, "' on ", w.describe(), " needs scales of shape ", shape_str(sshape),
           ", got ", given.scale.defined() ? given.scale.describe() : std::string("none"));
  GL_CHECK(spec.symmetric() || (given.zero.defined() && given.zero.shape() == sshape),
           "quantize: asymmetric quant spec '", spec.name, "' on ", w.describe(),
           " needs zeros of shape ", shape_str(sshape), ", got ",
           given.zero.defined() ? given.zero.describe() : std::string("none"));
  const std::vector<float> s = given.scale.to_vector_as<float>();
  const std::vector<float> z =
      spec.symmetric() ? std::vector<float>(s.size(), 0.0f) : given.zero.to_vector_as<float>();
  std::vector<GroupScale> groups(s.size());
  for (size_t k = 0; k < s.size(); ++k) {
    GL_CHECK(std::isfinite(s[k]) && std::isfinite(z[k]), "quantize: quant spec '", spec.name,
             "': non-finite given scale/zero at group ", k, " of ", given.scale.describe());
    groups[k] = GroupScale{s[k], z[k], s[k], z[k]};
  }
  return quantize_with(wc, spec, groups, gen);
}

Tensor dequantize(const QuantizedTensor& q) {
  const QuantSpec& spec = q.spec;
  GL_CHECK(q.codes.defined() && q.codes.dtype() == DType::I32, "dequantize: quant spec '",
           spec.name, "' needs i32 codes, got ",
           q.codes.defined() ? q.codes.describe() : std::string("none"));
  const Shape sshape = quant_scales_shape(spec, q.codes.shape());
  GL_CHECK(q.scales.scale.defined() && q.scales.scale.shape() == sshape,
           "dequantize: quant spec '", spec.name, "' on codes ", q.codes.describe(),
           " needs scales of shape ", shape_str(sshape));
  GL_CHECK(spec.symmetric() || (q.scales.zero.defined() && q.scales.zero.shape() == sshape),
           "dequantize: asymmetric quant spec '", spec.name, "' needs zeros of shape ",
           shape_str(sshape));
  const Tensor codes = q.codes.to(Device::cpu()).contiguous();
  const std::vector<float> s = q.scales.scale.to_vector_as<float>();
  const std::vector<float> z = spec.symmetric() ? std::vector<float>(s.size(), 0.0f)
                                                : q.scales.zero.to_vector_as<float>();
  const int64_t n = codes.numel();
  const int64_t G = quant_group_length(spec, codes.shape());
  Tensor out = Tensor::empty(codes.shape(), DType::F32);
  float* o = out.data<float>();
  const int32_t* c = codes.data<int32_t>();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t k = 0; k < n / G; ++k)
    for (int64_t j = k * G; j < (k + 1) * G; ++j)
      o[j] = dequantize_value(c[j], s[size_t(k)], z[size_t(k)], spec.zero_point);
  return out;
}

Tensor fake_quantize_reference(const Tensor& w, const QuantSpec& spec, Generator* gen) {
  return dequantize(quantize(w, spec, gen));
}

// --- packing ---------------------------------------------------------------------

size_t packed_bytes(const QuantSpec& spec, int64_t numel) {
  validate(spec);
  return spec.bits <= 4 ? size_t((numel + 1) / 2) : size_t(numel);
}

std::vector<uint8_t> pack(const QuantizedTensor& q) {
  const QuantSpec& spec = q.spec;
  validate(spec);
  GL_CHECK(q.codes.defined() && q.codes.dtype() == DType::I32, "pack: quant spec '", spec.name,
           "' needs i32 codes");
  const std::vector<int32_t> c = q.codes.to_vector_as<int32_t>();
  const int full_min = spec.symmetric() ? -(1 << (spec.bits - 1)) : 0;
  const int64_t n = int64_t(c.size());
  // Unsigned storage code; out-of-range codes would silently alias.
  auto stored = [&](int64_t i) {
    GL_CHECK(c[size_t(i)] >= spec.qmin() && c[size_t(i)] <= spec.qmax(), "pack: quant spec '",
             spec.name, "': code ", c[size_t(i)], " at flat index ", i, " is outside [",
             spec.qmin(), ", ", spec.qmax(), "]");
    return uint8_t(c[size_t(i)] - full_min);
  };
  std::vector<uint8_t> out(packed_bytes(spec, n), 0);
  if (spec.bits <= 4) {
    for (int64_t i = 0; i < n; ++i)
      out[size_t(i / 2)] |= uint8_t(stored(i) << (i % 2 == 0 ? 0 : 4));  // low nibble first
  } else {
    for (int64_t i = 0; i < n; ++i) out[size_t(i)] = stored(i);
  }
  return out;
}

Tensor unpack(const std::vector<uint8_t>& bytes, const QuantSpec& spec, const Shape& shape) {
  validate(spec);
  const int64_t n = shape_numel(shape);
  GL_CHECK(bytes.size() == packed_bytes(spec, n), "unpack: quant spec '", spec.name, "': ",
           bytes.size(), " bytes for shape ", shape_str(shape), ", expected ",
           packed_bytes(spec, n));
  const int full_min = spec.symmetric() ? -(1 << (spec.bits - 1)) : 0;
  Tensor codes = Tensor::empty(shape, DType::I32);
  int32_t* q = codes.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int u = spec.bits <= 4 ? (bytes[size_t(i / 2)] >> (i % 2 == 0 ? 0 : 4)) & 0x0F
                                 : bytes[size_t(i)];
    GL_CHECK(u <= (1 << spec.bits) - 1, "unpack: quant spec '", spec.name, "': stored code ", u,
             " at flat index ", i, " does not fit ", spec.bits, " bits");
    q[i] = u + full_min;
  }
  return codes;
}

}  // namespace gl
