// cuda/flash_attention_mma.cu's kernels run on the CPU: their bodies
// (cuda/flash_attention_mma_body.h) under an emulated CUDA block of 128
// threads, with the block barrier, the warp shuffles and mma.sync.m16n8k16
// emulated (the mma gathers the warp's fragments through cuda/mma_layout.h,
// which tests/autograd/test_mma_layout.cpp checks against the PTX ISA, and
// accumulates in f32). Compared with the CPU attention on the rounded inputs
// (the reference the GPU parity test uses, with its bounds: the kernels
// also round P and dS). This tests the kernels' own logic -- tiling,
// masking, the online softmax, the register reuse, the barriers -- without
// a GPU; only the hardware's execution of the same instructions is left to
// the gpu-labelled parity test.
#include <doctest/doctest.h>

#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/attention.h"
#include "cuda/flash_attention_mma_body.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;
namespace ma = gl::cuda::mma_attention;
namespace mma = gl::cuda::mma;

namespace {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  int64_t gen_ = 0;
};

// One block's shared state: its shared memory, its barriers and the slots
// through which lanes exchange registers.
struct EmuBlock {
  EmuBlock(size_t smem_bytes, int bx_, int by_) : smem((smem_bytes + 15) / 16), bx(bx_), by(by_) {
    for (int w = 0; w < ma::kWarps; ++w) warp.push_back(std::make_unique<Barrier>(32));
  }
  std::vector<std::max_align_t> smem;  // 16-byte aligned, as __align__(16)
  Barrier block{ma::kThreads};
  std::vector<std::unique_ptr<Barrier>> warp;
  float shfl[ma::kThreads] = {};
  uint32_t a[ma::kThreads][4] = {}, b[ma::kThreads][2] = {};
  int bx, by;
};

thread_local EmuBlock* t_block = nullptr;
thread_local int t_tid = 0;

template <class E>
float half_of(uint32_t reg, int high) {
  const uint16_t bits = uint16_t(high ? reg >> 16 : reg & 0xffffu);
  E e;
  std::memcpy(&e, &bits, 2);
  return ma::widen(e);
}

struct EmuArch {
  static int tid() { return t_tid; }
  static int bx() { return t_block->bx; }
  static int by() { return t_block->by; }
  static void sync() { t_block->block.wait(); }
  static unsigned char* smem() { return reinterpret_cast<unsigned char*>(t_block->smem.data()); }
  static float shfl_xor(float v, int mask) {
    EmuBlock& blk = *t_block;
    const int w = t_tid / 32, lane = t_tid % 32;
    blk.shfl[t_tid] = v;
    blk.warp[w]->wait();
    const float r = blk.shfl[w * 32 + (lane ^ mask)];
    blk.warp[w]->wait();
    return r;
  }
  // D = A B + C for the warp: A [16 x 16] and B [16 x 8] rebuilt from all 32
  // lanes' registers through the fragment layout, this lane's four D
  // elements accumulated in f32.
  template <class E>
  static void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    EmuBlock& blk = *t_block;
    const int w = t_tid / 32, lane = t_tid % 32;
    for (int r = 0; r < 4; ++r) blk.a[t_tid][r] = a[r];
    for (int r = 0; r < 2; ++r) blk.b[t_tid][r] = b[r];
    blk.warp[w]->wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l) {
      for (int i = 0; i < 8; ++i) {
        const mma::RowCol e = mma::a_elem(l, i);
        A[e.row][e.col] = half_of<E>(blk.a[w * 32 + l][i / 2], i % 2);
      }
      for (int i = 0; i < 4; ++i) {
        const mma::RowCol e = mma::b_elem(l, i);
        B[e.row][e.col] = half_of<E>(blk.b[w * 32 + l][i / 2], i % 2);
      }
    }
    blk.warp[w]->wait();
    for (int i = 0; i < 4; ++i) {
      const mma::RowCol e = mma::c_elem(lane, i);
      float s = d[i];
      for (int k = 0; k < 16; ++k) s += A[e.row][k] * B[k][e.col];
      d[i] = s;
    }
  }
};

// A grid of blocks, one after the other, each as 128 threads.
void launch(int64_t gx, int64_t gy, size_t smem_bytes, const std::function<void()>& body) {
  for (int64_t y = 0; y < gy; ++y)
    for (int64_t x = 0; x < gx; ++x) {
      EmuBlock blk(smem_bytes, int(x), int(y));
      std::vector<std::thread> threads;
      for (int t = 0; t < ma::kThreads; ++t)
        threads.emplace_back([&, t] {
          t_block = &blk;
          t_tid = t;
          body();
        });
      for (std::thread& th : threads) th.join();
    }
}

template <int HSP, class E>
void run_emulated(std::vector<float>& out, std::vector<float>& lse, std::vector<float>& dq, std::vector<float>& dk,
                  std::vector<float>& dv, const std::vector<float>& q, const std::vector<float>& k,
                  const std::vector<float>& v, const std::vector<float>& dout, int64_t BH, int64_t Tq, int64_t Tk,
                  int HS, float scale) {
  const int64_t qtiles = (Tq + ma::kTile - 1) / ma::kTile, ktiles = (Tk + ma::kTile - 1) / ma::kTile;
  const size_t tile = size_t(ma::kTile) * (HSP + 8) * sizeof(E);
  std::vector<float> delta(size_t(BH * Tq));
  launch(qtiles, BH, 3 * tile, [&] {
    ma::forward_body<HSP, E, EmuArch>(out.data(), lse.data(), q.data(), k.data(), v.data(), Tq, Tk, HS, scale);
  });
  launch(qtiles, BH, 4 * tile, [&] {
    ma::dq_body<HSP, E, EmuArch>(dq.data(), delta.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                                 lse.data(), Tq, Tk, HS, scale);
  });
  launch(ktiles, BH, 4 * tile + 2 * ma::kTile * sizeof(float), [&] {
    ma::dkv_body<HSP, E, EmuArch>(dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), lse.data(),
                                  delta.data(), Tq, Tk, HS, scale);
  });
}

std::vector<float> as_floats(const Tensor& t) {
  const std::vector<double> d = t.to_vector();
  return std::vector<float>(d.begin(), d.end());
}

Tensor from_floats(const std::vector<float>& v, const Shape& s) {
  return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), s, DType::F32);
}

// amp scales q: large scores make the running max change between key tiles
// (the online softmax's rescaling).
template <class E>
void check_case(int64_t BH, int64_t Tq, int64_t Tk, int HS, uint64_t seed, double atol, double rtol, double gtol,
                double amp = 1.0) {
  CAPTURE(BH);
  CAPTURE(Tq);
  CAPTURE(Tk);
  CAPTURE(HS);
  CAPTURE(amp);
  const float scale = float(1.0 / std::sqrt(double(HS)));
  const Tensor q = affine(randn({BH, Tq, HS}, seed, DType::F32), amp, 0.0);
  const Tensor k = randn({BH, Tk, HS}, seed + 1, DType::F32);
  const Tensor v = randn({BH, Tk, HS}, seed + 2, DType::F32), R = randn({BH, Tq, HS}, seed + 3, DType::F32);
  // The reference: the CPU kernels on the inputs rounded to E.
  const DType half = ma::kBf16<E> ? DType::BF16 : DType::F16;
  auto rnd = [&](const Tensor& t) { return as_floats(t.to(half).to(DType::F32)); };
  const std::vector<float> qr = rnd(q), kr = rnd(k), vr = rnd(v), Rr = rnd(R);
  std::vector<float> out_ref(size_t(BH * Tq * HS)), lse_ref(size_t(BH * Tq)), delta(size_t(BH * Tq));
  std::vector<float> dq_ref(qr.size()), dk_ref(kr.size()), dv_ref(vr.size());
  cpu::attention_forward<float>(out_ref.data(), lse_ref.data(), qr.data(), kr.data(), vr.data(), BH, Tq, Tk, HS, scale);
  cpu::attention_backward<float>(dq_ref.data(), dk_ref.data(), dv_ref.data(), delta.data(), Rr.data(), qr.data(),
                                 kr.data(), vr.data(), out_ref.data(), lse_ref.data(), BH, Tq, Tk, HS, scale);
  // The kernels take the f32 inputs and round them themselves.
  const std::vector<float> qf = as_floats(q), kf = as_floats(k), vf = as_floats(v), Rf = as_floats(R);
  std::vector<float> out(out_ref.size(), -7.f), lse(lse_ref.size(), -7.f), dq(dq_ref.size(), -7.f);
  std::vector<float> dk(dk_ref.size(), -7.f), dv(dv_ref.size(), -7.f);
  if (HS <= 32) run_emulated<32, E>(out, lse, dq, dk, dv, qf, kf, vf, Rf, BH, Tq, Tk, HS, scale);
  else if (HS <= 64) run_emulated<64, E>(out, lse, dq, dk, dv, qf, kf, vf, Rf, BH, Tq, Tk, HS, scale);
  else run_emulated<128, E>(out, lse, dq, dk, dv, qf, kf, vf, Rf, BH, Tq, Tk, HS, scale);
  CHECK(check_close("out", from_floats(out, {BH, Tq, HS}), from_floats(out_ref, {BH, Tq, HS}), atol, rtol));
  CHECK(check_close("lse", from_floats(lse, {BH, Tq}), from_floats(lse_ref, {BH, Tq}), atol, rtol));
  CHECK(check_close("dq", from_floats(dq, {BH, Tq, HS}), from_floats(dq_ref, {BH, Tq, HS}), gtol, gtol));
  CHECK(check_close("dk", from_floats(dk, {BH, Tk, HS}), from_floats(dk_ref, {BH, Tk, HS}), gtol, gtol));
  CHECK(check_close("dv", from_floats(dv, {BH, Tk, HS}), from_floats(dv_ref, {BH, Tk, HS}), gtol, gtol));
}

}  // namespace

// Bounds as in tests/cuda/test_parity_attention.cpp ("attention with bf16 and
// f16 operands"): out and lse 1e-2 (bf16) / 4e-3 (f16), gradients 6e-2 / 3e-2.
// The sizes cross tiles (T = 70, 130), pad heads (24 -> 32, 80 -> 128), put
// fewer queries than keys (a KV cache) and a single row.
TEST_CASE("mma.sync attention kernels, emulated on the CPU: bf16") {
  check_case<__nv_bfloat16>(2, 70, 70, 24, 10, 1e-2, 1e-2, 6e-2);
  check_case<__nv_bfloat16>(1, 130, 130, 64, 20, 1e-2, 1e-2, 6e-2);
  check_case<__nv_bfloat16>(1, 5, 70, 64, 30, 1e-2, 1e-2, 6e-2);
  check_case<__nv_bfloat16>(1, 1, 1, 32, 40, 1e-2, 1e-2, 6e-2);
  check_case<__nv_bfloat16>(1, 66, 66, 80, 50, 1e-2, 1e-2, 6e-2);
  check_case<__nv_bfloat16>(1, 130, 130, 32, 55, 1e-2, 1e-2, 6e-2, 4.0);
}

TEST_CASE("mma.sync attention kernels, emulated on the CPU: f16") {
  check_case<__half>(1, 70, 70, 64, 60, 4e-3, 4e-3, 3e-2);
  check_case<__half>(1, 3, 67, 24, 70, 4e-3, 4e-3, 3e-2);
}
