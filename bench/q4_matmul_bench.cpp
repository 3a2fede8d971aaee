// The 4-bit packed matmul (quant/packed_linear, cpu/q4_matmul) against the
// f32 linear on the CPU (issue 5 item 6: 4-bit must beat f32 at batch 1,
// since it moves about 8x fewer weight bytes).
//
// For each weight [out, in] (Pythia-160m's QKV 768->2304, attention output
// 768->768, MLP up 768->3072 and down 3072->768, and a 4096x4096) and batch
// M = 1 and 8, times, interleaved within each repetition so drifting machine
// load hits all alike:
//   f32 linear           gl::linear(x, W) on Vars under NoGradGuard (Eigen)
//   q4 int4_probe        packed_linear, symmetric SYM-7 g128 (the probe's INT4)
//   q4 w4a16_g128        packed_linear, asymmetric with zero point, g128
// and prints one JSON line per (shape, M, impl): median and best seconds
// per call, the interquartile spread of the samples relative to the median
// (how noisy the machine was), the weight bytes one call reads (codes +
// scales + zeros for q4), GB/s of those bytes at the median, and the
// speedup over f32 (median / median). A table goes to stderr. Each sample
// times enough back-to-back calls to last about 2 ms.
//
// Usage: gridlock_bench_q4_matmul [--reps N]   (threads: OMP_NUM_THREADS)
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops/matmul.h"
#include "autograd/tape.h"
#include "bench/bench_util.h"
#include "quant/packed_linear.h"

namespace {

using gl::Tensor;

struct Impl {
  std::string name;
  std::function<void()> run;
  size_t weight_bytes;
  int inner = 1;
  std::vector<double> seconds;  // per call
};

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

// cold: cycle through enough copies of the weight that the f32 copies
// total >= 96 MiB (3x this machine's 32 MiB L3), so every call streams its
// weight from DRAM as a model's forward does (each layer's weights are read
// once per token); hot: one weight, re-read from cache when it fits.
void bench_shape(int64_t in, int64_t out, int64_t M, int reps, bool cold) {
  gl::Generator gen(7);
  const Tensor x = Tensor::uniform({M, in}, gen, -1.0, 1.0);
  const gl::Var xv(x);
  const int64_t copies =
      cold ? std::max<int64_t>(2, (int64_t(96) << 20) / (out * in * 4) + 1) : 1;
  std::vector<Tensor> ws;
  std::vector<gl::Var> wvs;
  std::vector<gl::PackedWeight> p_syms, p_asyms;
  for (int64_t c = 0; c < copies; ++c) {
    ws.push_back(Tensor::normal({out, in}, gen, 0.0, 0.02));
    wvs.emplace_back(ws.back());
    p_syms.push_back(gl::PackedWeight::pack(ws.back(), gl::quant_preset("int4_probe")));
    p_asyms.push_back(gl::PackedWeight::pack(ws.back(), gl::quant_preset("w4a16_g128")));
  }
  const Tensor& w = ws[0];
  const gl::PackedWeight& p_sym = p_syms[0];
  Tensor y_f32, y_sym, y_asym;
  size_t i_f32 = 0, i_sym = 0, i_asym = 0;

  std::vector<Impl> impls;
  impls.push_back({"f32 linear", [&] {
                     gl::NoGradGuard no_grad;
                     y_f32 = gl::linear(xv, wvs[i_f32++ % wvs.size()]).value();
                   }, size_t(out * in) * 4, 1, {}});
  impls.push_back({"q4 int4_probe", [&] { y_sym = gl::packed_linear(x, p_syms[i_sym++ % p_syms.size()]); },
                   p_sym.weight_bytes(), 1, {}});
  impls.push_back({"q4 w4a16_g128", [&] { y_asym = gl::packed_linear(x, p_asyms[i_asym++ % p_asyms.size()]); },
                   p_asyms[0].weight_bytes(), 1, {}});

  // Warm-up, and the number of calls per sample (about 2 ms of work).
  for (Impl& im : impls) {
    im.run();
    const double t0 = gl::bench::now_seconds();
    for (int i = 0; i < 3; ++i) im.run();
    const double per_call = (gl::bench::now_seconds() - t0) / 3;
    im.inner = std::max(1, int(2e-3 / std::max(per_call, 1e-7)));
  }
  for (int r = 0; r < reps; ++r) {
    for (Impl& im : impls) {
      const double t0 = gl::bench::now_seconds();
      for (int i = 0; i < im.inner; ++i) im.run();
      im.seconds.push_back((gl::bench::now_seconds() - t0) / im.inner);
    }
  }
  // Sanity: the packed result is linear on the fake-quantized weight.
  gl::NoGradGuard no_grad;
  y_sym = gl::packed_linear(x, p_sym);
  const Tensor ref = gl::linear(xv, gl::Var(gl::fake_quantize_reference(w, p_sym.spec))).value();
  const std::vector<float> a = y_sym.to_vector_as<float>(), b = ref.to_vector_as<float>();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1e-3 + std::abs(double(b[i]))));

  const double f32_median = gl::bench::stats_of(impls[0].seconds).median;
  for (const Impl& im : impls) {
    const gl::bench::Stats s = gl::bench::stats_of(im.seconds);
    const double iqr = (quantile(im.seconds, 0.75) - quantile(im.seconds, 0.25)) / s.median;
    const double gbs = double(im.weight_bytes) / s.median / 1e9;
    std::printf(
        "{\"bench\": \"q4_matmul\", \"impl\": \"%s\", \"cache\": \"%s\", \"in\": %lld, \"out\": %lld, \"M\": %lld, "
        "\"threads\": %d, \"reps\": %d, \"median_s\": %.4g, \"best_s\": %.4g, \"iqr_rel\": %.3f, "
        "\"weight_bytes\": %zu, \"weight_GBps\": %.2f, \"speedup_vs_f32\": %.2f, "
        "\"max_rel_diff_vs_fakequant\": %.2g}\n",
        im.name.c_str(), cold ? "cold" : "hot", (long long)in, (long long)out, (long long)M,
        omp_get_max_threads(), reps,
        s.median, s.best, iqr, im.weight_bytes, gbs, f32_median / s.median, worst);
    std::fprintf(stderr, "%s %5lld x %-5lld M=%-2lld %-15s median %8.1f us  best %8.1f us  iqr %5.1f%%  "
                 "%7.2f GB/s  x%.2f vs f32\n",
                 cold ? "cold" : "hot ", (long long)in, (long long)out, (long long)M,
                 im.name.c_str(), s.median * 1e6,
                 s.best * 1e6, 100 * iqr, gbs, f32_median / s.median);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 31;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--reps N]\n", argv[0]);
      return 2;
    }
  }
  const int64_t shapes[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}, {4096, 4096}};
  for (bool cold : {true, false})
    for (int64_t M : {1, 8})
      for (const auto& s : shapes) bench_shape(s[0], s[1], M, reps, cold);
  return 0;
}
