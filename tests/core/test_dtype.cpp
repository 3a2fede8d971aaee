// dtype conversions (core/dtype.h, core/cpu_hooks.cpp).
//
// f16 is checked against the compiler: GCC 12 on x86-64 implements
// _Float16 with IEEE binary16 semantics (round to nearest even), so
// f16_to_f32 is compared for every one of the 65536 bit patterns and
// f32_to_f16 for every f16 value, every midpoint (the ties), the f32
// neighbours of every midpoint, the overflow and underflow boundaries and
// 2^20 random f32 bit patterns. bf16 has no compiler type here, so it is
// checked against bf16_nearest_ref below: an independent reference that
// picks the nearer of the two candidate bf16 neighbours in double
// arithmetic (ties to the even one). NaNs are compared with isnan, since
// payloads are not specified.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/device_hooks.h"
#include "tests/testing.h"

using namespace gl;

using Values = std::vector<double>;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
_Float16 half_of(uint16_t h) {
  _Float16 x;
  std::memcpy(&x, &h, 2);
  return x;
}
uint16_t bits_of(_Float16 x) {
  uint16_t h;
  std::memcpy(&h, &x, 2);
  return h;
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Counts mismatches and keeps the first few as evidence for the log.
struct Mismatches {
  size_t count = 0;
  std::string first;
  void add(const std::string& what) {
    if (count++ < 5) first += "  " + what + "\n";
  }
};

std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Independent bf16 reference: the bf16 values just below and above |f|
// (with 2^128 standing in for the value above the largest finite bf16, as
// IEEE rounding with an unbounded exponent does), the nearer in exact
// double arithmetic, ties to the one with an even last bit. Not for NaN.
uint16_t bf16_nearest_ref(float f) {
  const uint16_t sign = uint16_t((bits_of(f) >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isinf(a)) return uint16_t(sign | 0x7f80u);
  const uint16_t below = uint16_t(bits_of(a) >> 16);  // truncation: largest bf16 <= a
  const double v_below = double(float_of(uint32_t(below) << 16));
  const double v_above =
      below == 0x7f7fu ? std::ldexp(1.0, 128) : double(float_of(uint32_t(below + 1) << 16));
  const double d_below = double(a) - v_below, d_above = v_above - double(a);  // both exact
  uint16_t r;
  if (d_below < d_above) r = below;
  else if (d_above < d_below) r = uint16_t(below + 1);
  else r = (below & 1u) ? uint16_t(below + 1) : below;
  return uint16_t(sign | r);  // below + 1 == 0x7f80 is inf: overflow
}

// Floats worth testing for a 16-bit format whose values are the f32 bit
// patterns `pattern(b)` for b in [0, last]: the values, the midpoints
// between neighbours (ties), and the f32 neighbours of each midpoint.
std::vector<float> boundary_set_f16() {
  std::vector<float> out;
  for (uint32_t h = 0; h < 0x7c00u; ++h) {  // all finite positive f16
    const float v = float(half_of(uint16_t(h)));
    const float next = h + 1 < 0x7c00u ? float(half_of(uint16_t(h + 1))) : 65536.0f;
    const float mid = (v + next) * 0.5f;  // exact: 12 significant bits
    for (float x : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      out.push_back(x);
      out.push_back(-x);
    }
  }
  const float more[] = {65504.0f, std::nextafter(65520.0f, 0.0f), 65520.0f, 65536.0f, 1e10f,
                        std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                        std::ldexp(1.0f, -25), std::nextafter(std::ldexp(1.0f, -25), 0.0f),
                        std::nextafter(std::ldexp(1.0f, -25), 1.0f), std::ldexp(1.0f, -26),
                        std::ldexp(3.0f, -26), std::ldexp(1.0f, -24), std::ldexp(1.0f, -14),
                        std::numeric_limits<float>::denorm_min(), 1e-40f,
                        std::numeric_limits<float>::min(), 0.0f};
  for (float x : more) {
    out.push_back(x);
    out.push_back(-x);
  }
  uint64_t s = 1;
  for (int i = 0; i < (1 << 20); ++i) out.push_back(float_of(uint32_t(splitmix64(s))));
  return out;
}

std::vector<float> boundary_set_bf16() {
  std::vector<float> out;
  for (uint32_t b = 0; b <= 0x7f7fu; ++b) {  // all finite positive bf16
    const uint32_t v = b << 16, mid = v | 0x8000u;  // exact midpoint to the next bf16
    for (uint32_t u : {v, mid, mid - 1, mid + 1, v | 0x7fffu, v | 1u}) {
      out.push_back(float_of(u));
      out.push_back(-float_of(u));
    }
  }
  const float more[] = {std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::denorm_min(), 1e-40f, 0.0f};
  for (float x : more) {
    out.push_back(x);
    out.push_back(-x);
  }
  uint64_t s = 2;
  for (int i = 0; i < (1 << 20); ++i) out.push_back(float_of(uint32_t(splitmix64(s))));
  return out;
}

// Raw 16-bit payloads of a BF16/F16/U16 tensor.
std::vector<uint16_t> raw16(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<uint16_t> out(size_t(c.numel()));
  std::memcpy(out.data(), c.data_ptr(), out.size() * 2);
  return out;
}

Tensor f16_tensor_from_bits(const std::vector<uint16_t>& b) {
  Tensor t = Tensor::empty({int64_t(b.size())}, DType::F16);
  std::memcpy(t.data_ptr(), b.data(), b.size() * 2);
  return t;
}

}  // namespace

TEST_CASE("dtype names, sizes, devices") {
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                       DType::I32, DType::I64, DType::U16};
  const size_t sizes[] = {4, 8, 2, 2, 4, 8, 2};
  for (size_t i = 0; i < 7; ++i) {
    CHECK(dtype_size(all[i]) == sizes[i]);
    CHECK(dtype_from_name(dtype_name(all[i])) == all[i]);
  }
  CHECK(is_floating(DType::BF16));
  CHECK_FALSE(is_floating(DType::U16));
  CHECK(device_from_name("cpu") == Device::cpu());
  CHECK(device_from_name("cuda") == Device::cuda(0));
  CHECK(device_from_name("cuda:3") == Device::cuda(3));
  CHECK(Device::cuda(2).name() == "cuda:2");
}

TEST_CASE("f16_to_f32 equals _Float16 -> float for all 65536 bit patterns") {
  Mismatches bad;
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    all[h] = uint16_t(h);
    const float ref = float(half_of(uint16_t(h))), got = f16_to_f32(uint16_t(h));
    const bool ok = std::isnan(ref) ? std::isnan(got) : bits_of(ref) == bits_of(got);
    if (!ok) bad.add("h=" + hex(h) + " got " + hex(bits_of(got)) + " ref " + hex(bits_of(ref)));
  }
  // The Tensor path (cpu_hooks::convert) decodes the same way.
  const std::vector<double> via_tensor = f16_tensor_from_bits(all).to(DType::F32).to_vector();
  for (uint32_t h = 0; h < 65536; ++h) {
    const float ref = float(half_of(uint16_t(h))), got = float(via_tensor[h]);
    const bool ok = std::isnan(ref) ? std::isnan(got) : bits_of(ref) == bits_of(got);
    if (!ok) bad.add("tensor h=" + hex(h) + " got " + hex(bits_of(got)));
  }
  if (bad.count) MESSAGE("f16_to_f32 mismatches:\n" << bad.first);
  CHECK(bad.count == 0);
}

TEST_CASE("f32_to_f16 equals (_Float16)f: values, ties, their neighbours, boundaries, random") {
  const std::vector<float> xs = boundary_set_f16();
  Mismatches bad;
  for (float x : xs) {
    const _Float16 ref = _Float16(x);
    const uint16_t got = f32_to_f16(x);
    const bool ok = std::isnan(float(ref)) ? std::isnan(f16_to_f32(got)) : got == bits_of(ref);
    if (!ok)
      bad.add("f=" + hex(bits_of(x)) + " (" + std::to_string(x) + ") got " + hex(got) + " ref " +
              hex(bits_of(ref)));
  }
  // Through Tensor::to (f32 -> f16), the same bits.
  std::vector<double> xd(xs.begin(), xs.end());
  const std::vector<uint16_t> tensor_bits =
      raw16(Tensor::from_vector(xd, {int64_t(xd.size())}, DType::F32).to(DType::F16));
  for (size_t i = 0; i < xs.size(); ++i)
    if (!std::isnan(xs[i]) && tensor_bits[i] != f32_to_f16(xs[i]))
      bad.add("tensor f=" + hex(bits_of(xs[i])) + " got " + hex(tensor_bits[i]));
  if (bad.count) MESSAGE("f32_to_f16 mismatches (of " << xs.size() << "):\n" << bad.first);
  CHECK(bad.count == 0);

  // Spot values, readable without the compiler as the oracle.
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 2^16: even -> inf
  CHECK(f32_to_f16(-1e10f) == 0xfc00);
  CHECK(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000);  // tie between 0 and 2^-24: even -> 0
  CHECK(f32_to_f16(std::ldexp(3.0f, -25)) == 0x0002);  // tie between 1 and 2 (x 2^-24): -> 2
  CHECK(f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie, 1.0 is even
  CHECK(f32_to_f16(1.0f + std::ldexp(3.0f, -11)) == 0x3c02);  // tie, rounds up to even
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST_CASE("f32_to_bf16 equals the independent nearest-even reference") {
  const std::vector<float> xs = boundary_set_bf16();
  Mismatches bad;
  for (float x : xs) {
    const uint16_t got = f32_to_bf16(x);
    if (std::isnan(x)) {
      if (!std::isnan(bf16_to_f32(got))) bad.add("NaN " + hex(bits_of(x)) + " -> " + hex(got));
      continue;
    }
    const uint16_t ref = bf16_nearest_ref(x);
    if (got != ref)
      bad.add("f=" + hex(bits_of(x)) + " got " + hex(got) + " ref " + hex(ref));
  }
  if (bad.count) MESSAGE("f32_to_bf16 mismatches (of " << xs.size() << "):\n" << bad.first);
  CHECK(bad.count == 0);

  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(float_of(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(f32_to_bf16(float_of(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // past the last tie: inf
  CHECK(f32_to_bf16(float_of(0x7f7f7fffu)) == 0x7f7f);
  CHECK(f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  // A signalling NaN whose payload lives only in the low 16 bits must stay NaN.
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0x7f800001u)))));
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0xff800001u)))));
  for (uint32_t b = 0; b < 65536; ++b) {  // bf16 -> f32 is exact: shifts the bits
    const float f = bf16_to_f32(uint16_t(b));
    if (bits_of(f) != b << 16) bad.add("bf16_to_f32 " + hex(b));
  }
  CHECK(bad.count == 0);
}

TEST_CASE("Tensor::to round trips across all 7 dtypes") {
  const DType all[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                       DType::I32, DType::I64, DType::U16};
  // Exactly representable in every dtype (bf16 has 8 significant bits).
  const Values v = {0, 1, 2, 3, 7, 100, 255, 256};
  const Values neg = {-1, -128, 0, 64};  // all but U16
  for (DType a : all) {
    for (DType b : all) {
      CAPTURE(dtype_name(a));
      CAPTURE(dtype_name(b));
      const Tensor t = Tensor::from_vector(v, {2, 4}, a);
      CHECK(t.to(b).dtype() == b);
      CHECK(t.to(b).to_vector() == v);
      CHECK(t.to(b).to(a).to_vector() == v);
      CHECK(t.transpose(0, 1).to(b).to_vector() == Tensor::from_vector(v, {2, 4}).transpose(0, 1).to_vector());
      if (a != DType::U16 && b != DType::U16)
        CHECK(Tensor::from_vector(neg, {4}, a).to(b).to(a).to_vector() == neg);
    }
  }
  // Non-representable values round the documented way.
  CHECK(Tensor::from_vector({0.1}, {1}, DType::F64).to(DType::BF16).to_vector()[0] ==
        double(bf16_to_f32(f32_to_bf16(0.1f))));
  CHECK(Tensor::from_vector({0.1}, {1}, DType::F64).to(DType::F16).to_vector()[0] ==
        double(f16_to_f32(f32_to_f16(0.1f))));
  CHECK(Tensor::from_vector({257}, {1}, DType::I32).to(DType::BF16).to_vector()[0] == 256);
  CHECK(Tensor::from_vector({1e-300}, {1}, DType::F64).to(DType::F32).to_vector()[0] == 0);
}

TEST_CASE("float -> int truncates toward zero and saturates, NaN -> 0") {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const Values x = {2.7, -2.7, 0.5, -0.5, 1e10, -1e10, nan, inf, -inf, 65535.5, 70000};
  const Tensor t = Tensor::from_vector(x, {int64_t(x.size())}, DType::F64);
  const int32_t i32max = std::numeric_limits<int32_t>::max(),
                i32min = std::numeric_limits<int32_t>::min();
  CHECK(t.to(DType::I32).to_vector_as<int32_t>() ==
        std::vector<int32_t>{2, -2, 0, 0, i32max, i32min, 0, i32max, i32min, 65535, 70000});
  const int64_t i64max = std::numeric_limits<int64_t>::max(),
                i64min = std::numeric_limits<int64_t>::min();
  CHECK(t.to(DType::I64).to_vector_as<int64_t>() ==
        std::vector<int64_t>{2, -2, 0, 0, 10000000000, -10000000000, 0, i64max, i64min, 65535,
                             70000});
  CHECK(t.to(DType::U16).to_vector_as<uint16_t>() ==
        std::vector<uint16_t>{2, 0, 0, 0, 65535, 0, 0, 65535, 0, 65535, 65535});
  // 2^63 itself is out of range for i64 (its max is 2^63 - 1).
  CHECK(Tensor::from_vector({std::ldexp(1.0, 63), -std::ldexp(1.0, 63)}, {2}, DType::F64)
            .to(DType::I64)
            .to_vector_as<int64_t>() == std::vector<int64_t>{i64max, i64min});
  // From 16-bit floats and f32 as well: inf saturates, NaN is 0.
  for (DType src : {DType::F32, DType::BF16, DType::F16}) {
    CAPTURE(dtype_name(src));
    const Tensor s = Tensor::from_vector({-3.5, inf, nan, -inf}, {4}, src);
    CHECK(s.to(DType::I32).to_vector_as<int32_t>() ==
          std::vector<int32_t>{-3, i32max, 0, i32min});
  }
}

TEST_CASE("i64 values beyond 2^53 are preserved i64 -> i64") {
  const int64_t big = (int64_t(1) << 53) + 1;
  const std::vector<int64_t> v = {big, -big, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min(), 3};
  const Tensor t = Tensor::from_data<int64_t>(v, {5});
  CHECK(t.to_vector_as<int64_t>() == v);
  CHECK(t.clone().to_vector_as<int64_t>() == v);
  CHECK(t.to(DType::I64).to_vector_as<int64_t>() == v);
  // Strided copies move the raw 8 bytes.
  Tensor wide = Tensor::zeros({10}, DType::I64);
  wide.slice(0, 0, 10, 2).copy_(t);
  CHECK(wide.slice(0, 0, 10, 2).contiguous().to_vector_as<int64_t>() == v);
  // The conversion primitive's i64 -> i64 path is a bit copy, not via double.
  std::vector<int64_t> out(v.size());
  cpu_hooks::convert(out.data(), DType::I64, v.data(), DType::I64, int64_t(v.size()));
  CHECK(out == v);
  // Through f64 the low bit is lost (2^53 + 1 is not a double): documented, not a bug.
  CHECK(t.to(DType::F64).to(DType::I64).to_vector_as<int64_t>()[0] == big - 1);
}
