// CPU vs CUDA parity for the Tensor primitives (core/device_hooks.h):
// Philox draws, dtype conversions, strided copies, fills, host <-> device
// transfers, and the caching allocator (cuda/runtime.h).
//
// Tolerances: uniform draws are bit-exact (24-bit integers scaled by a power
// of two, then one fma in f64 on both devices). Normal draws use f64
// log/sqrt/cos, whose device and glibc results may differ in the last f64
// ulp, so f32 normals may differ by 1 f32 ulp and f64 normals by a few f64
// ulps (rtol 1e-14). Conversions, copies and fills move or round bits the
// same way on both devices: exact, except that NaN payloads are not
// compared (only that both are NaN).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cuda/runtime.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

const DType kAllDtypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16,
                            DType::I32, DType::I64, DType::U16};

// The raw bytes of a tensor (any dtype, any device, any strides).
std::vector<uint8_t> raw_bytes(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<uint8_t> out(c.nbytes());
  if (!out.empty()) std::memcpy(out.data(), c.data_ptr(), out.size());
  return out;
}

std::vector<uint32_t> f32_bits(const Tensor& t) {
  const std::vector<uint8_t> b = raw_bytes(t.to(DType::F32));
  std::vector<uint32_t> out(b.size() / 4);
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// f32 values whose bit patterns cover every class: zeros, subnormals,
// normals, the 16-bit overflow and tie boundaries, inf, and random bits.
Tensor interesting_f32(int64_t n_random) {
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x00800000u,
                                0x3f800000u, 0x3f808000u, 0x3f818000u, 0x477fe000u, 0x477ff000u,
                                0x477fefffu, 0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu, 0x7f800000u,
                                0xff800000u, 0x33000000u, 0x33000001u, 0x387fc000u, 0x38800000u};
  uint64_t s = 77;
  for (int64_t i = 0; i < n_random; ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t b = uint32_t(s >> 32);
    if ((b & 0x7f800000u) != 0x7f800000u) bits.push_back(b);  // NaNs tested separately
  }
  Tensor t = Tensor::empty({int64_t(bits.size())}, DType::F32);
  std::memcpy(t.data_ptr(), bits.data(), bits.size() * 4);
  return t;
}

}  // namespace

TEST_CASE("cuda parity: uniform draws are bit-exact") {
  for (int64_t n : {1, 3, 4, 1001, (1 << 20) + 3}) {
    for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
      Generator gc(31, 7), gg(31, 7);
      const Tensor c = Tensor::uniform({n}, gc, -2.0, 3.0, dt);
      const Tensor g = Tensor::uniform({n}, gg, -2.0, 3.0, dt, Device::cuda());
      CHECK(g.is_cuda());
      CHECK(raw_bytes(g) == raw_bytes(c));
      CHECK(gc.offset == gg.offset);
    }
  }
}

TEST_CASE("cuda parity: normal draws within 1 f32 ulp") {
  for (int64_t n : {1, 5, 1001, (1 << 20) + 3}) {
    Generator gc(5, 11), gg(5, 11);
    const Tensor c = Tensor::normal({n}, gc, 0.5, 2.0);
    const Tensor g = Tensor::normal({n}, gg, 0.5, 2.0, DType::F32, Device::cuda());
    CHECK(gc.offset == gg.offset);
    const std::vector<uint32_t> bc = f32_bits(c), bg = f32_bits(g);
    int64_t worst = 0, exact = 0;
    for (size_t i = 0; i < bc.size(); ++i) {
      // Same sign (a 1-ulp difference never crosses zero here), so the bit
      // patterns differ by the ulp distance.
      const int64_t d = std::llabs(int64_t(bc[i]) - int64_t(bg[i]));
      worst = std::max(worst, d);
      exact += d == 0;
    }
    CAPTURE(n);
    CHECK(worst <= 1);
    CHECK(exact >= int64_t(bc.size()) * 99 / 100);  // differences are rare
    Generator hc(5, 11), hg(5, 11);
    CHECK(check_close("normal f64", Tensor::normal({n}, hg, 0, 1, DType::F64, Device::cuda()),
                      Tensor::normal({n}, hc, 0, 1, DType::F64), 1e-14, 1e-14));
  }
}

TEST_CASE("cuda parity: f32 <-> bf16/f16 conversions are bit-identical") {
  const Tensor x = interesting_f32(1 << 18);
  const Tensor xg = x.to(Device::cuda());
  for (DType dt : {DType::BF16, DType::F16}) {
    CAPTURE(dtype_name(dt));
    const Tensor hc = x.to(dt), hg = xg.to(dt);
    CHECK(raw_bytes(hg) == raw_bytes(hc));
    CHECK(raw_bytes(hg.to(DType::F32)) == raw_bytes(hc.to(DType::F32)));
    // And from f64 (rounded through f32 on both devices).
    const Tensor dc = x.to(DType::F64), dg = xg.to(DType::F64);
    CHECK(raw_bytes(dg.to(dt)) == raw_bytes(dc.to(dt)));
  }
  // NaN stays NaN on both devices (payloads may differ).
  const double nan = std::nan("");
  for (DType dt : {DType::BF16, DType::F16}) {
    const Tensor n = Tensor::from_vector({nan, -nan}, {2}, DType::F32, Device::cuda()).to(dt);
    for (double v : n.to_vector()) CHECK(std::isnan(v));
  }
  // Integer conversions: truncation and saturation match.
  const Tensor f = Tensor::from_vector({2.7, -2.7, 1e10, -1e10, nan, 65535.5, 70000, -0.5},
                                       {8}, DType::F64);
  for (DType dt : {DType::I32, DType::I64, DType::U16})
    CHECK(raw_bytes(f.to(Device::cuda()).to(dt)) == raw_bytes(f.to(dt)));
  const std::vector<int64_t> big = {(int64_t(1) << 53) + 1, std::numeric_limits<int64_t>::min()};
  CHECK(Tensor::from_data<int64_t>(big, {2}, Device::cuda()).clone().to_vector_as<int64_t>() == big);
}

TEST_CASE("cuda parity: strided copies to contiguous, fills, copy_ into strided views") {
  for (DType dt : kAllDtypes) {
    CAPTURE(dtype_name(dt));
    const Tensor c = Tensor::arange(5 * 33 * 7, DType::F64).view({5, 33, 7}).to(dt);
    const Tensor g = c.to(Device::cuda());
    CHECK(raw_bytes(g.permute({2, 0, 1}).contiguous()) == raw_bytes(c.permute({2, 0, 1}).contiguous()));
    CHECK(raw_bytes(g.slice(1, 3, 31, 4).contiguous()) == raw_bytes(c.slice(1, 3, 31, 4).contiguous()));
    CHECK(raw_bytes(g.select(2, 6).unsqueeze(0).expand({3, 5, 33}).contiguous()) ==
          raw_bytes(c.select(2, 6).unsqueeze(0).expand({3, 5, 33}).contiguous()));
    // copy_ into a transposed / stepped destination, and an overlapping shift.
    Tensor dc = Tensor::zeros({7, 33, 5}, dt), dg = Tensor::zeros({7, 33, 5}, dt, Device::cuda());
    dc.permute({2, 1, 0}).copy_(c);
    dg.permute({2, 1, 0}).copy_(g);
    CHECK(raw_bytes(dg) == raw_bytes(dc));
    Tensor lc = c.clone(), lg = g.clone();
    lc.slice(1, 1, 33).copy_(lc.slice(1, 0, 32));
    lg.slice(1, 1, 33).copy_(lg.slice(1, 0, 32));
    CHECK(raw_bytes(lg) == raw_bytes(lc));
    lc.slice(2, 0, 7, 3).fill_(3);
    lg.slice(2, 0, 7, 3).fill_(3);
    CHECK(raw_bytes(lg) == raw_bytes(lc));
  }
  // Cross-device copy_ with a dtype change into a strided view.
  Tensor d = Tensor::zeros({4, 6}, DType::F32, Device::cuda());
  d.slice(1, 0, 6, 2).copy_(Tensor::arange(12, DType::F64).view({4, 3}));
  CHECK(d.to_vector() == std::vector<double>{0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0,
                                             6, 0, 7, 0, 8, 0, 9, 0, 10, 0, 11, 0});
}

TEST_CASE("cuda parity: host <-> device round trips keep every bit") {
  for (DType dt : kAllDtypes) {
    CAPTURE(dtype_name(dt));
    for (int64_t n : {0, 1, 513, 100003}) {
      Tensor h = Tensor::empty({n}, dt);
      std::vector<uint8_t> pattern(h.nbytes());
      for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = uint8_t(i * 131 + 7);
      if (n) std::memcpy(h.data_ptr(), pattern.data(), pattern.size());
      const Tensor g = h.to(Device::cuda());
      CHECK(g.device() == Device::cuda(0));
      CHECK(raw_bytes(g) == pattern);
      CHECK(raw_bytes(g.clone().to(Device::cpu())) == pattern);
    }
  }
  // A strided host view goes over as its logical (contiguous) contents.
  const Tensor t = Tensor::arange(6).view({2, 3}).transpose(0, 1);
  CHECK(t.to(Device::cuda()).to_vector() == t.to_vector());
}

TEST_CASE("cuda: the caching allocator stops calling cudaMalloc in a steady state") {
  const int64_t sizes[] = {1000, 4096, 1 << 20, 3};
  auto step = [&] {
    std::vector<Tensor> live;
    for (int64_t n : sizes) live.push_back(Tensor::empty({n}, DType::F32, Device::cuda()));
    live.push_back(Tensor::ones({257, 3}, DType::F64, Device::cuda()).transpose(0, 1).contiguous());
  };  // everything freed here, back to the cache
  for (int i = 0; i < 3; ++i) step();  // warm-up
  cuda::synchronize(0);
  const cuda::AllocatorStats before = cuda::allocator_stats(0);
  for (int i = 0; i < 20; ++i) step();
  cuda::synchronize(0);
  const cuda::AllocatorStats after = cuda::allocator_stats(0);
  CHECK(after.cuda_malloc_calls == before.cuda_malloc_calls);
  CHECK(after.cache_hits > before.cache_hits);
  CHECK(after.bytes_in_use == before.bytes_in_use);
}
