// CPU matmul throughput of the engine against a raw Eigen product
// (issue 2, part 7: the op must reach >= 90% of raw Eigen).
//
// For each size (M, K, N) in f32 on the CPU, times, interleaved within each
// repetition so that drifting machine load hits all of them alike:
//   eigen              C.noalias() = A * B on Eigen::Map'd row-major buffers,
//                      C preallocated once (the ceiling we compare against)
//   gl::matmul_tensor  the engine's tensor-level op (allocates its output)
//   gl::matmul         the autograd op on Vars under NoGradGuard
//   eigen+fresh_out    diagnostic: Eigen into a freshly allocated output each
//                      call, separating allocation cost from the op's own
// and prints one JSON line per (size, impl): best and median seconds and
// GFLOP/s over the repetitions (2*M*K*N flops per product) and the ratio to
// raw Eigen's. A human-readable table goes to stderr.
//
// Usage: gridlock_bench_matmul [--reps N] [--warmup W]
// Threads: OpenMP's (OMP_NUM_THREADS); Eigen uses the same pool.
#include <omp.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops/matmul.h"
#include "bench/bench_util.h"

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using gl::Tensor;

struct Impl {
  std::string name;
  std::function<void()> run;
  std::vector<double> seconds;
};

struct Size {
  int64_t M, K, N;
};

// Largest |x - y| / (1 + |y|) between two f32 buffers.
double max_rel_diff(const float* x, const float* y, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i)
    worst = std::max(worst, std::abs(double(x[i]) - double(y[i])) / (1.0 + std::abs(double(y[i]))));
  return worst;
}

bool bench_size(const Size& sz, int reps, int warmup) {
  const auto [M, K, N] = sz;
  gl::Generator gen(42);
  const Tensor a = Tensor::uniform({M, K}, gen, -1.0, 1.0);
  const Tensor b = Tensor::uniform({K, N}, gen, -1.0, 1.0);
  const gl::Var va(a), vb(b);

  Eigen::Map<const RowMajor> A(a.data<float>(), M, K);
  Eigen::Map<const RowMajor> B(b.data<float>(), K, N);
  RowMajor C(M, N);
  C.setZero();  // touch the pages once: the preallocated case never faults
  Tensor ours_out, autograd_out, fresh_out;

  std::vector<Impl> impls;
  impls.push_back({"eigen", [&] { C.noalias() = A * B; }, {}});
  impls.push_back({"gl::matmul_tensor", [&] { ours_out = gl::matmul_tensor(a, b); }, {}});
  impls.push_back({"gl::matmul", [&] {
                     gl::NoGradGuard no_grad;
                     autograd_out = gl::matmul(va, vb).value();
                   }, {}});
  impls.push_back({"eigen+fresh_out", [&] {
                     fresh_out = Tensor::empty({M, N});
                     Eigen::Map<RowMajor> F(fresh_out.data<float>(), M, N);
                     F.noalias() = A * B;
                   }, {}});

  for (int r = 0; r < warmup + reps; ++r) {
    for (Impl& impl : impls) {
      // The allocating impls get a new output buffer each call (the
      // previous one is freed on assignment), as every op does in a step.
      const double t0 = gl::bench::now_seconds();
      impl.run();
      const double t1 = gl::bench::now_seconds();
      if (r >= warmup) impl.seconds.push_back(t1 - t0);
    }
  }

  // All four compute the same product with the same Eigen kernel.
  const double d1 = max_rel_diff(ours_out.data<float>(), C.data(), M * N);
  const double d2 = max_rel_diff(autograd_out.data<float>(), C.data(), M * N);
  const bool ok = d1 < 1e-4 && d2 < 1e-4;

  const double flops = 2.0 * double(M) * double(K) * double(N);
  const gl::bench::Stats base = gl::bench::stats_of(impls[0].seconds);
  for (const Impl& impl : impls) {
    const gl::bench::Stats s = gl::bench::stats_of(impl.seconds);
    std::printf(
        "{\"bench\":\"matmul\",\"impl\":\"%s\",\"dtype\":\"f32\",\"M\":%lld,\"K\":%lld,\"N\":%lld,"
        "\"threads\":%d,\"reps\":%d,\"best_s\":%.6g,\"median_s\":%.6g,\"best_gflops\":%.2f,"
        "\"median_gflops\":%.2f,\"ratio_best\":%.4f,\"ratio_median\":%.4f}\n",
        impl.name.c_str(), (long long)M, (long long)K, (long long)N, omp_get_max_threads(), reps,
        s.best, s.median, flops / s.best * 1e-9, flops / s.median * 1e-9, base.best / s.best,
        base.median / s.median);
    std::fprintf(stderr, "  %lldx%lldx%lld  %-18s best %8.2f GFLOP/s  median %8.2f GFLOP/s"
                 "  vs eigen: best %5.1f%%  median %5.1f%%\n",
                 (long long)M, (long long)K, (long long)N, impl.name.c_str(),
                 flops / s.best * 1e-9, flops / s.median * 1e-9, 100 * base.best / s.best,
                 100 * base.median / s.median);
  }
  if (!ok)
    std::fprintf(stderr, "matmul_bench: results differ from Eigen (max rel diff %g, %g)\n", d1, d2);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 15, warmup = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--warmup W]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1 || warmup < 0) {
    std::fprintf(stderr, "matmul_bench: --reps must be >= 1 and --warmup >= 0\n");
    return 2;
  }
  std::fprintf(stderr, "matmul_bench: f32, %d OpenMP threads, Eigen %d.%d.%d (%d threads), "
               "%d reps after %d warm-up\n", omp_get_max_threads(), EIGEN_WORLD_VERSION,
               EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, Eigen::nbThreads(), reps, warmup);
  bool ok = true;
  for (const Size& sz : {Size{1024, 1024, 1024}, Size{4096, 768, 768}})
    ok = bench_size(sz, reps, warmup) && ok;
  return ok ? 0 : 1;
}
