// ggml block codecs: a line-by-line transcription of ggml-quants.c's
// quantize_row_q{4_0,4_1,8_0}_ref and dequantize_row_* (spec.md 4.1), with
// the same operation order so every f32 rounding matches. See ggml_blocks.h
// for the layouts and rules.
#include "quant/ggml_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

// Bit-exactness needs every f32 multiply and add rounded on its own.
GL_NO_FP_CONTRACT

namespace gl {

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q4_1: return "Q4_1";
    case GgmlType::Q8_0: return "Q8_0";
    case GgmlType::BF16: return "BF16";
  }
  return "unknown";
}

int64_t ggml_block_size(GgmlType t) {
  switch (t) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: return 1;
    case GgmlType::Q4_0: case GgmlType::Q4_1: case GgmlType::Q8_0: return GGML_QK;
  }
  GL_CHECK(false, "ggml_block_size: unsupported ggml type id ", uint32_t(t));
}

size_t ggml_type_size(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 4;
    case GgmlType::F16: case GgmlType::BF16: return 2;
    case GgmlType::Q4_0: return sizeof(BlockQ4_0);
    case GgmlType::Q4_1: return sizeof(BlockQ4_1);
    case GgmlType::Q8_0: return sizeof(BlockQ8_0);
  }
  GL_CHECK(false, "ggml_type_size: unsupported ggml type id ", uint32_t(t));
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
  const int64_t bs = ggml_block_size(t);
  GL_CHECK(n >= 0 && n % bs == 0, "ggml ", ggml_type_name(t), ": ", n,
           " values is not a multiple of the block size ", bs);
  return size_t(n / bs) * ggml_type_size(t);
}

// ggml writes (int8_t)(v) for v in [0, 17): truncation. The guard only
// matters when the scale is so small (|max| below about 2e-38) that 1/d
// overflows and v is inf or NaN, where the C cast is undefined: 0 is what
// x86's cvttss2si (INT32_MIN, low byte 0) gives ggml there.
static int trunc_code(float v, int max_code) {
  if (!std::isfinite(v)) return 0;
  return std::min(max_code, int(v));
}

// --- Q4_0 ---------------------------------------------------------------

void quantize_block_q4_0_ref(BlockQ4_0* y, const float* x) {
  // The signed value of largest magnitude; strict < keeps the first on ties.
  float amax = 0.0f, max = 0.0f;
  for (int64_t j = 0; j < GGML_QK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  // Negative divisor: the extreme lands on code 0 (level -8) exactly.
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  for (int64_t j = 0; j < GGML_QK / 2; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[j + GGML_QK / 2] * id;
    // x*id >= -8 (up to rounding), so the sum is >= 0 and truncation is
    // floor: round half up. MIN(15) clips the extreme's opposite (+8).
    const int q0 = trunc_code(x0 + 8.5f, 15);
    const int q1 = trunc_code(x1 + 8.5f, 15);
    y->qs[j] = uint8_t(q0 | (q1 << 4));
  }
}

void dequantize_block_q4_0(float* y, const BlockQ4_0* b) {
  const float d = f16_to_f32(b->d);
  for (int64_t j = 0; j < GGML_QK / 2; ++j) {
    y[j] = float((b->qs[j] & 0x0F) - 8) * d;
    y[j + GGML_QK / 2] = float((b->qs[j] >> 4) - 8) * d;
  }
}

// --- Q4_1 ---------------------------------------------------------------

void quantize_block_q4_1_ref(BlockQ4_1* y, const float* x) {
  float min = x[0], max = x[0];
  for (int64_t j = 1; j < GGML_QK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  y->m = f32_to_f16(min);
  for (int64_t j = 0; j < GGML_QK / 2; ++j) {
    const float x0 = (x[j] - min) * id;
    const float x1 = (x[j + GGML_QK / 2] - min) * id;
    const int q0 = trunc_code(x0 + 0.5f, 15);  // x0 >= 0: round half up
    const int q1 = trunc_code(x1 + 0.5f, 15);
    y->qs[j] = uint8_t(q0 | (q1 << 4));
  }
}

void dequantize_block_q4_1(float* y, const BlockQ4_1* b) {
  const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
  for (int64_t j = 0; j < GGML_QK / 2; ++j) {
    y[j] = float(b->qs[j] & 0x0F) * d + m;
    y[j + GGML_QK / 2] = float(b->qs[j] >> 4) * d + m;
  }
}

// --- Q8_0 ---------------------------------------------------------------

void quantize_block_q8_0_ref(BlockQ8_0* y, const float* x) {
  float amax = 0.0f;
  for (int64_t j = 0; j < GGML_QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  y->d = f32_to_f16(d);
  // |x*id| <= 127 up to one rounding, and roundf(127.00001f) == 127: the
  // result always fits int8 (ggml does not clamp either).
  for (int64_t j = 0; j < GGML_QK; ++j) y->qs[j] = int8_t(trunc_code(std::round(x[j] * id), 127));
}

void dequantize_block_q8_0(float* y, const BlockQ8_0* b) {
  const float d = f16_to_f32(b->d);
  for (int64_t j = 0; j < GGML_QK; ++j) y[j] = float(b->qs[j]) * d;
}

// --- dispatch over types --------------------------------------------------

std::vector<uint8_t> ggml_quantize(GgmlType t, const float* x, int64_t n) {
  std::vector<uint8_t> out(ggml_row_bytes(t, n));
  uint8_t* o = out.data();
  switch (t) {
    case GgmlType::F32:
      std::memcpy(o, x, size_t(n) * 4);
      break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(o + 2 * i, &h, 2);
      }
      break;
    // Blocks are built in an aligned local and copied out, since the byte
    // stream gives no alignment guarantee for the uint16_t fields.
    case GgmlType::Q4_0:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ4_0 blk;
        quantize_block_q4_0_ref(&blk, x + b * GGML_QK);
        std::memcpy(o + b * sizeof blk, &blk, sizeof blk);
      }
      break;
    case GgmlType::Q4_1:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ4_1 blk;
        quantize_block_q4_1_ref(&blk, x + b * GGML_QK);
        std::memcpy(o + b * sizeof blk, &blk, sizeof blk);
      }
      break;
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ8_0 blk;
        quantize_block_q8_0_ref(&blk, x + b * GGML_QK);
        std::memcpy(o + b * sizeof blk, &blk, sizeof blk);
      }
      break;
  }
  return out;
}

void ggml_dequantize(GgmlType t, const uint8_t* blocks, int64_t n, float* out) {
  ggml_row_bytes(t, n);  // validates n for t
  switch (t) {
    case GgmlType::F32:
      std::memcpy(out, blocks, size_t(n) * 4);
      break;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, blocks + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      break;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, blocks + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      break;
    case GgmlType::Q4_0:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ4_0 blk;
        std::memcpy(&blk, blocks + b * sizeof blk, sizeof blk);
        dequantize_block_q4_0(out + b * GGML_QK, &blk);
      }
      break;
    case GgmlType::Q4_1:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ4_1 blk;
        std::memcpy(&blk, blocks + b * sizeof blk, sizeof blk);
        dequantize_block_q4_1(out + b * GGML_QK, &blk);
      }
      break;
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < n / GGML_QK; ++b) {
        BlockQ8_0 blk;
        std::memcpy(&blk, blocks + b * sizeof blk, sizeof blk);
        dequantize_block_q8_0(out + b * GGML_QK, &blk);
      }
      break;
  }
}

}  // namespace gl
