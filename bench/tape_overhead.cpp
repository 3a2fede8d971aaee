// Per-op cost of the autograd tape (issue 2, part 7).
//
// (a) chain: a chain of `ops` tiny ops (1-element f32 add and mul,
//     alternating) timed three ways: forward under NoGradGuard (no tape),
//     forward with grad enabled (every op records a tape entry: a Var, a
//     std::function closure, a weak pointer), and the backward pass over
//     that tape. On 1-element tensors the kernels cost next to nothing, so
//     tape overhead per op = (grad forward + backward - no-grad forward) / ops.
//     The split between the two grad phases is not itself meaningful: under
//     NoGradGuard each intermediate is freed during the forward loop, with
//     grad they are all freed when backward clears the tape. The overhead
//     includes the backward kernels (one tiny tensor op per entry here), so
//     it is an upper bound on the bookkeeping alone.
// (b) mlp: one step of a 2-layer MLP at batch 8, width 64, in f32:
//       h = linear(x, W1, b1); a = h * h; y = linear(a, W2, b2);
//       loss = mean((y - target) * (y - target))
//     built only from ops in autograd/ops/{elementwise,matmul,reduce}.h.
//     Forward-only (NoGradGuard) against forward with grad + backward, and
//     the number of tape entries one step records (gl::tape_size()).
//
// Every timing is the best and the median over --reps repetitions (one
// repetition: one chain of --ops ops, or the mean of --iters MLP steps),
// after one warm-up repetition; the modes alternate within a repetition.
// Prints one JSON line per measurement on stdout, a readable summary on stderr.
//
// Usage: gridlock_bench_tape [--ops N] [--iters N] [--reps N]
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "autograd/ops/elementwise.h"
#include "autograd/ops/matmul.h"
#include "autograd/ops/reduce.h"
#include "autograd/tape.h"
#include "bench/bench_util.h"

namespace {

using gl::Tensor;
using gl::Var;
using gl::bench::now_seconds;
using gl::bench::Stats;
using gl::bench::stats_of;

struct Options {
  int ops = 10000;  // chain length
  int iters = 200;  // MLP steps averaged per repetition
  int reps = 15;
};

// y = ((x + c) * c + c) * c ...: alternating add and mul keeps the value
// bounded (c close to 1) so no denormals or infinities slow a kernel down.
Var chain_forward(const Var& x, const Var& c, int ops) {
  Var y = x;
  for (int i = 0; i < ops; ++i) y = (i % 2 == 0) ? gl::add(y, c) : gl::mul(y, c);
  return y;
}

bool bench_chain(const Options& opt) {
  Var x(Tensor::full({1}, 0.5), /*requires_grad=*/true, "x");
  const Var c(Tensor::full({1}, 0.999), false, "c");
  std::vector<double> t_nograd, t_fwd, t_bwd;
  size_t entries = 0;
  for (int r = 0; r < opt.reps + 1; ++r) {  // repetition 0 is warm-up
    double t0 = now_seconds();
    {
      gl::NoGradGuard no_grad;
      gl::bench::keep(chain_forward(x, c, opt.ops));
    }
    double t1 = now_seconds();
    Var y = chain_forward(x, c, opt.ops);
    double t2 = now_seconds();
    entries = gl::tape_size();
    y.backward();
    double t3 = now_seconds();
    x.zero_grad();  // start each repetition from no gradient
    if (r == 0) continue;
    t_nograd.push_back(t1 - t0);
    t_fwd.push_back(t2 - t1);
    t_bwd.push_back(t3 - t2);
  }
  std::vector<double> t_fb(t_fwd.size());
  for (size_t i = 0; i < t_fb.size(); ++i) t_fb[i] = t_fwd[i] + t_bwd[i];
  const Stats n = stats_of(t_nograd), f = stats_of(t_fwd), b = stats_of(t_bwd),
              fb = stats_of(t_fb);
  const double us = 1e6 / opt.ops;
  std::printf(
      "{\"bench\":\"tape_chain\",\"ops\":%d,\"tape_entries\":%zu,\"reps\":%d,"
      "\"nograd_fwd_us_per_op\":{\"best\":%.4f,\"median\":%.4f},"
      "\"grad_fwd_us_per_op\":{\"best\":%.4f,\"median\":%.4f},"
      "\"backward_us_per_op\":{\"best\":%.4f,\"median\":%.4f},"
      "\"grad_fwd_bwd_us_per_op\":{\"best\":%.4f,\"median\":%.4f},"
      "\"tape_overhead_us_per_op\":{\"best\":%.4f,\"median\":%.4f}}\n",
      opt.ops, entries, opt.reps, n.best * us, n.median * us, f.best * us, f.median * us,
      b.best * us, b.median * us, fb.best * us, fb.median * us, (fb.best - n.best) * us,
      (fb.median - n.median) * us);
  std::fprintf(stderr,
               "chain of %d 1-element ops (median us/op): no-grad forward %.3f; with grad: "
               "forward %.3f + backward %.3f = %.3f; tape overhead %.3f us/op; %zu tape entries\n",
               opt.ops, n.median * us, f.median * us, b.median * us, fb.median * us,
               (fb.median - n.median) * us, entries);
  return entries == size_t(opt.ops);
}

struct Mlp {
  Var W1, b1, W2, b2;
};

Var mlp_loss(const Mlp& m, const Var& x, const Var& target) {
  const Var h = gl::linear(x, m.W1, m.b1);
  const Var a = gl::mul(h, h);  // a smooth nonlinearity from the ops at hand
  const Var y = gl::linear(a, m.W2, m.b2);
  const Var d = gl::sub(y, target);
  return gl::mean(gl::mul(d, d));
}

bool bench_mlp(const Options& opt) {
  const int64_t batch = 8, width = 64;
  gl::Generator gen(7);
  const double s = 1.0 / 8.0;  // ~1/sqrt(width): keeps activations O(1)
  Mlp m{Var(Tensor::uniform({width, width}, gen, -s, s), true, "W1"),
        Var(Tensor::zeros({width}), true, "b1"),
        Var(Tensor::uniform({width, width}, gen, -s, s), true, "W2"),
        Var(Tensor::zeros({width}), true, "b2")};
  const Var x(Tensor::uniform({batch, width}, gen, -1, 1), false, "x");
  const Var target(Tensor::uniform({batch, width}, gen, -1, 1), false, "target");
  Var* params[] = {&m.W1, &m.b1, &m.W2, &m.b2};

  std::vector<double> t_nograd, t_fwd, t_bwd;
  size_t entries = 0;
  for (int r = 0; r < opt.reps + 1; ++r) {
    double nograd = 0, fwd = 0, bwd = 0;
    for (int i = 0; i < opt.iters; ++i) {
      double t0 = now_seconds();
      {
        gl::NoGradGuard no_grad;
        gl::bench::keep(mlp_loss(m, x, target));
      }
      double t1 = now_seconds();
      const Var loss = mlp_loss(m, x, target);
      double t2 = now_seconds();
      entries = gl::tape_size();
      loss.backward();
      double t3 = now_seconds();
      for (Var* p : params) p->zero_grad();
      nograd += t1 - t0;
      fwd += t2 - t1;
      bwd += t3 - t2;
    }
    if (r == 0) continue;
    t_nograd.push_back(nograd / opt.iters);
    t_fwd.push_back(fwd / opt.iters);
    t_bwd.push_back(bwd / opt.iters);
  }
  std::vector<double> t_step(t_fwd.size());
  for (size_t i = 0; i < t_step.size(); ++i) t_step[i] = t_fwd[i] + t_bwd[i];
  const Stats n = stats_of(t_nograd), f = stats_of(t_fwd), b = stats_of(t_bwd),
              st = stats_of(t_step);
  const double us = 1e6;
  std::printf(
      "{\"bench\":\"tape_mlp\",\"batch\":%lld,\"width\":%lld,\"tape_entries\":%zu,\"iters\":%d,"
      "\"reps\":%d,\"nograd_fwd_us\":{\"best\":%.3f,\"median\":%.3f},"
      "\"grad_fwd_us\":{\"best\":%.3f,\"median\":%.3f},"
      "\"backward_us\":{\"best\":%.3f,\"median\":%.3f},"
      "\"fwd_bwd_us\":{\"best\":%.3f,\"median\":%.3f},"
      "\"fwd_bwd_over_fwd\":{\"best\":%.3f,\"median\":%.3f}}\n",
      (long long)batch, (long long)width, entries, opt.iters, opt.reps, n.best * us,
      n.median * us, f.best * us, f.median * us, b.best * us, b.median * us, st.best * us,
      st.median * us, st.best / n.best, st.median / n.median);
  std::fprintf(stderr,
               "MLP step (batch %lld, width %lld, median us): forward only (no grad) %.2f; "
               "with grad: forward %.2f + backward %.2f = %.2f (%.2fx forward only); "
               "%zu tape entries\n",
               (long long)batch, (long long)width, n.median * us, f.median * us, b.median * us,
               st.median * us, st.median / n.median, entries);
  return entries > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    int* field = nullptr;
    if (!std::strcmp(argv[i], "--ops")) field = &opt.ops;
    else if (!std::strcmp(argv[i], "--iters")) field = &opt.iters;
    else if (!std::strcmp(argv[i], "--reps")) field = &opt.reps;
    if (!field || i + 1 >= argc || (*field = std::atoi(argv[++i])) < 1) {
      std::fprintf(stderr, "usage: %s [--ops N] [--iters N] [--reps N] (all >= 1)\n", argv[0]);
      return 2;
    }
  }
  std::fprintf(stderr, "tape_overhead: f32 CPU, %d OpenMP threads, %d reps\n",
               omp_get_max_threads(), opt.reps);
  const bool ok_chain = bench_chain(opt);
  const bool ok_mlp = bench_mlp(opt);
  return ok_chain && ok_mlp ? 0 : 1;
}
