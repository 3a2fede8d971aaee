// One description of a weight quantizer (QuantSpec), the named presets people
// deploy, and the steps of quantization as separate, inspectable functions:
//
//   compute_scales(w, spec)        -> scales (+ zeros)        one per group
//   quantize(w, spec[, scales])    -> integer codes + scales (+ zeros)
//   dequantize(q)                  -> f32 values
//   pack(q) / unpack(...)          -> bytes / codes
//   fake_quantize_reference(w, s)  =  dequantize(quantize(w)), CPU, f32
//
// fake_quantize_reference is the ground truth the fake-quant autograd op and
// the integer inference path must reproduce. References: spec.md 4.1 (ggml),
// 4.3 (LSQ), 4.4 (per-group INT4 conventions), 5.3 (GPTQ quant.py).
//
// Groups. w is read as rows of its last (input) dimension: a torch Linear
// weight [out, in] has `out` rows of `in` values. Every granularity is a run
// of G consecutive elements of the row-major w, so scale k covers elements
// [k*G, (k+1)*G):
//   PER_TENSOR   G = numel            scales shape [1]
//   PER_CHANNEL  G = in (one row)     scales shape w.shape[:-1] + [1]
//   PER_GROUP    G = group_size       scales shape w.shape[:-1] + [in / G]
//
// Integer codes (int32 tensor, shape of w):
//   symmetric    q in [qmin, qmax]: FULL [-2^(b-1), 2^(b-1)-1] or
//                RESTRICTED [-(2^(b-1)-1), 2^(b-1)-1];  w' = q * s
//   ASYM_ZERO    q in [0, 2^b-1], integer zero point z;  w' = s * (q - z)
//                (GPTQ quant.py / AWQ: z = round(-min/s), min <= 0 <= max)
//   ASYM_MIN     q in [0, 2^b-1], float offset m = group min; w' = q*s + m
//                (ggml Q4_1)
// Scale rules (a = max |w| of the group):
//   ABSMAX   s = a / scale_divisor. With signed_max, a is the SIGNED value
//            of largest magnitude (first on ties) and the divisor may be
//            negative (ggml Q4_0: s = max / -8, the extreme maps to -8).
//            Asymmetric: s = (max - min) / scale_divisor.
//   MSE      clip ratios p = 1.00, 0.99, ..., 0.21 (p = 1 - i/100,
//            i = 0..79, GPTQ quant.py's grid with maxshrink 0.8): a -> p*a
//            (asymmetric: min, max -> p*min, p*max); keep the ratio with the
//            smallest sum of squared errors of the group (double), the
//            largest p on ties.
//   LEARNED  LSQ init s = 2 mean|w| / sqrt(Q_P) with Q_P = qmax (spec 4.3);
//            the value then lives in a trainable tensor. Symmetric only.
// scale_divisor 0 means the default: 2^(b-1)-1 symmetric (SYM-7 for 4 bits,
// a/127 for 8), 2^b-1 asymmetric. The spec 4.4 conventions are:
//   SYM-7      divisor 7,   FULL or RESTRICTED (-8 is never reached)
//   SYM-8      divisor 8,   FULL (+a clips to 7s)
//   GPTQ sym   divisor 7.5 (s = 2a/15), FULL: codes -8..7 are GPTQ's
//              unsigned 0..15 minus its zero 8; half-even rounding
//   ggml Q4_0  signed_max, divisor -8, FULL, HALF_UP, reciprocal, f16 scale
//
// Step from w to a real v (then rounded with `rounding`, then clamped):
//   symmetric v = w / s;  ASYM_ZERO v = w / s (then + z);  ASYM_MIN
//   v = (w - m) / s. With `reciprocal` the division is w * (1/s) in f32, as
//   ggml does; a zero scale gives v = 0 (ggml's `id = d ? 1/d : 0`).
//   HALF_UP on symmetric codes rounds in the unsigned domain, as ggml's
//   (int)(v + 8.5f) - 8: q = floor(f32(v + (2^(b-1) + 0.5))) - 2^(b-1),
//   which differs from floor(v + 0.5) when the f32 sum rounds.
//   STOCHASTIC: q = floor(v + u_i), u_i = philox_uniform(seed, offset, i)
//   for element i of w in row-major order; the generator advances by
//   ceil(numel / 4) blocks (core/philox.h), so CUDA can reproduce it.
// Scale storage: F32, or F16 as ggml stores d: codes are computed with the
// f32 scale, then scales (and ASYM_MIN's m) are rounded to f16 and
// dequantize uses the rounded values (quantize_row_q4_0_ref). The scale
// tensors are always f32 tensors; with F16 their values are f16-exact.
// All f32 arithmetic is rounded per operation (no FMA), see ggml_blocks.h.
// An all-zero group gets s = 0, codes 0 (zero point 0) and dequantizes to 0.
//
// Spec strings (recipes): TOKEN(:TOKEN)*, where the first token is a preset
// name or int<b> (b = 2..8; defaults: sym, g128, full, absmax, default
// divisor, even, f32 scales), and later tokens override one field each:
//   granularity   tensor | channel | g<N>
//   zero point    sym | asym (integer zero, ASYM_ZERO) | asym_min (ggml m)
//   range         full | restricted
//   scale rule    absmax | mse | lsq
//   divisor       div=<number> (e.g. div=7.5, div=-8)
//   signed max    signed_max
//   rounding      even | away | half_up | stochastic
//   storage       f32 | f16
//   step          recip (multiply by 1/s in f32)
// e.g. "int4:g64:sym:restricted:absmax:even", "q4_0", "int4_probe:g64".
// Key/values (quant_spec_from_kv): keys preset, bits, granularity
// (tensor|channel|group), group_size, zero_point (sym|asym|asym_min), range,
// scale_rule (absmax|mse|lsq), scale_divisor, signed_max (true|false),
// rounding, scale_dtype (f32|f16), reciprocal (true|false).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "quant/types.h"

namespace gl {

enum class QuantGranularity : uint8_t { PER_TENSOR, PER_CHANNEL, PER_GROUP };
enum class QuantZeroPoint : uint8_t { SYMMETRIC, ASYM_ZERO, ASYM_MIN };
enum class QuantRange : uint8_t { FULL, RESTRICTED };
enum class QuantScaleRule : uint8_t { ABSMAX, MSE, LEARNED };

struct QuantSpec {
  std::string name = "custom";  // preset name or the string it was parsed from
  int bits = 4;
  QuantZeroPoint zero_point = QuantZeroPoint::SYMMETRIC;
  QuantGranularity granularity = QuantGranularity::PER_GROUP;
  int64_t group_size = 128;  // PER_GROUP only
  QuantRange range = QuantRange::FULL;
  QuantScaleRule scale_rule = QuantScaleRule::ABSMAX;
  double scale_divisor = 0.0;  // 0: default (see header comment)
  bool signed_max = false;
  QuantRounding rounding = QuantRounding::NEAREST_EVEN;
  DType scale_dtype = DType::F32;  // F32 or F16
  bool reciprocal = false;         // v = w * f32(1/s) instead of w / s

  bool symmetric() const { return zero_point == QuantZeroPoint::SYMMETRIC; }
  int qmin() const;  // smallest code (see the table above)
  int qmax() const;  // largest code
  double divisor() const;  // scale_divisor with the default resolved
};

// Throws (naming the spec) unless bits, range, divisor, group size and the
// field combination are valid; used by every function below before work.
void validate(const QuantSpec& spec);
// validate() plus the shape checks (rank >= 1, group size divides the last
// dimension), naming the spec and the shape.
void validate_for_shape(const QuantSpec& spec, const Shape& shape);
// Canonical spec string: parses back to the same spec.
std::string to_string(const QuantSpec& spec);

// Named presets: q4_0, q4_1, q8_0 (ggml, bit-exact), int4_probe and
// int8_probe (spec.md 0: SYM-7 g128 full range, and a/127 clamp [-127, 127]
// g128; aliases paper_int4 / paper_int8), sym7_g128 (restricted SYM-7),
// sym8_g128 (SYM-8), gptq_sym4 (s = 2a/15, g128), w4a16_g128 (4-bit
// ASYM_ZERO g128, GPTQ/AWQ deploy scheme). Unknown -> error listing them.
QuantSpec quant_preset(const std::string& name);
std::vector<std::string> quant_preset_names();
QuantSpec quant_spec_from_string(const std::string& text);
QuantSpec quant_spec_from_kv(const std::map<std::string, std::string>& kv);

// Elements per scale (G above) for a tensor of this shape.
int64_t quant_group_length(const QuantSpec& spec, const Shape& shape);
Shape quant_scales_shape(const QuantSpec& spec, const Shape& shape);

struct QuantScales {
  Tensor scale;  // f32, quant_scales_shape
  Tensor zero;   // f32, same shape; ASYM_ZERO: integer z; ASYM_MIN: m;
                 // undefined for symmetric specs
};

struct QuantizedTensor {
  QuantSpec spec;
  Tensor codes;  // i32, shape of w
  QuantScales scales;
};

// Scales (and zeros) by the spec's scale rule, already rounded to the
// storage dtype: what quantize() would store. w: any float dtype/device.
QuantScales compute_scales(const Tensor& w, const QuantSpec& spec);
// Codes for w. Without `given`, scales come from the scale rule (with
// F16 storage, codes use the unrounded f32 scales as ggml does); with
// `given` (e.g. a learned or GPTQ scale), those values are used as they are.
// `gen` is required for STOCHASTIC rounding and advanced.
QuantizedTensor quantize(const Tensor& w, const QuantSpec& spec, Generator* gen = nullptr);
QuantizedTensor quantize(const Tensor& w, const QuantSpec& spec, const QuantScales& given,
                         Generator* gen = nullptr);
Tensor dequantize(const QuantizedTensor& q);  // f32 CPU tensor, shape of w
Tensor fake_quantize_reference(const Tensor& w, const QuantSpec& spec, Generator* gen = nullptr);

// Packed codes: each code is stored unsigned, u = q - qmin_full where
// qmin_full = -2^(b-1) for symmetric specs and 0 for asymmetric ones (so a
// symmetric 4-bit code -8..7 is the nibble 0..15, GPTQ's and ggml's q + 8).
// bits <= 4: two codes per byte over the row-major order, element 2k in the
// LOW nibble and 2k+1 in the high nibble; an odd count leaves the last high
// nibble 0. bits 5..8: one byte per code. (ggml's own Q4_0 nibble order,
// j / j+16 within a block, is in ggml_blocks.h.)
size_t packed_bytes(const QuantSpec& spec, int64_t numel);
std::vector<uint8_t> pack(const QuantizedTensor& q);
// Codes (i32 tensor of `shape`) from packed bytes; checks the byte count.
Tensor unpack(const std::vector<uint8_t>& bytes, const QuantSpec& spec, const Shape& shape);

}  // namespace gl
