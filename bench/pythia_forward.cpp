// Forward-only throughput of Pythia-160m (random weights, f32, CPU) at
// sequence length 512, and the machine's SGEMM ceiling measured in the same
// process on the block's own GEMM shapes (the faster of Eigen and our own
// cpu/sgemm; the PyTorch script adds OpenBLAS's), so the model's speed can
// be read as a fraction of what the matrix products alone could reach.
// The PyTorch peer is bench/pythia_forward_torch.py; bench/pythia_forward.sh
// runs both interleaved. Prints one JSON object per line.
//
//   gridlock_bench_pythia_forward [--seq 512] [--batch 1] [--reps 5] [--preset pythia-160m]
#include <Eigen/Core>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "cpu/sgemm.h"
#include "models/model.h"

using namespace gl;

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// GFLOP/s of C = A . B^T with A [M, K], B [N, K] (the Linear layout), best
// of `reps`, through Eigen or (own) cpu::sgemm.
double sgemm_gflops(int64_t M, int64_t K, int64_t N, int reps, bool own) {
  RowMajor A = RowMajor::Random(M, K), B = RowMajor::Random(N, K), C(M, N);
  cpu::SgemmArgs g;
  g.M = M, g.N = N, g.K = K, g.a = A.data(), g.a_row = K, g.a_col = 1;
  g.b = B.data(), g.b_row = 1, g.b_col = K, g.c = C.data(), g.ldc = N;
  std::vector<double> t;
  for (int r = 0; r < reps + 1; ++r) {
    const double t0 = bench::now_seconds();
    if (own) cpu::sgemm(g);
    else C.noalias() = A * B.transpose();
    bench::keep(C(0, 0));
    if (r > 0) t.push_back(bench::now_seconds() - t0);
  }
  return 2.0 * double(M) * double(K) * double(N) / bench::stats_of(t).best / 1e9;
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t seq = 512, batch = 1;
  int reps = 5;
  std::string preset = "pythia-160m";
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      GL_CHECK(i + 1 < argc, "missing value after ", argv[i]);
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--seq")) seq = std::atoll(next());
    else if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(next());
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(next());
    else if (!std::strcmp(argv[i], "--preset")) preset = next();
    else GL_CHECK(false, "unknown argument ", argv[i]);
  }
  const ModelConfig cfg = ModelConfig::preset(preset);
  Generator gen(0);
  const auto model = make_model(cfg, gen);
  std::vector<int64_t> ids(size_t(batch * seq));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t((i * 7919) % uint64_t(cfg.vocab_size));
  const Tensor x = Tensor::from_data(ids, {batch, seq});

  NoGradGuard no_grad;
  std::vector<double> t;
  for (int r = 0; r < reps + 1; ++r) {  // first run is warm-up
    const double t0 = bench::now_seconds();
    const Var logits = model->logits(x);
    bench::keep(logits);
    if (r > 0) t.push_back(bench::now_seconds() - t0);
  }
  const bench::Stats s = bench::stats_of(t);
  const double tokens = double(batch * seq);
  // Matmul FLOPs of one forward: 4 block linears + head (2 per MAC), plus
  // attention's QK^T and PV (causal: half of T^2 each).
  const double C = double(cfg.hidden_size), F = double(cfg.intermediate_size);
  const double V = double(cfg.vocab_size), L = double(cfg.num_layers), T = double(seq);
  const double flops = tokens * (L * 2.0 * (3 * C * C + C * C + 2 * C * F) + 2.0 * C * V) +
                       double(batch) * L * 2.0 * T * T * C;
  std::printf("{\"bench\":\"gridlock_forward\",\"preset\":\"%s\",\"seq\":%lld,\"batch\":%lld,"
              "\"best_s\":%.5f,\"median_s\":%.5f,\"tokens_per_s\":%.1f,\"gflops\":%.1f}\n",
              preset.c_str(), (long long)seq, (long long)batch, s.best, s.median,
              tokens / s.best, flops / s.best / 1e9);
  // The ceiling: the block's largest GEMM shapes at this token count, for
  // each library available in this process.
  const int64_t M = batch * seq;
  const int64_t shapes[3][2] = {{cfg.hidden_size, cfg.intermediate_size},
                                {cfg.intermediate_size, cfg.hidden_size},
                                {cfg.hidden_size, 3 * cfg.hidden_size}};
  for (bool own : {false, true}) {
    if (own && !cpu::sgemm_available()) continue;
    double g[3];
    for (int i = 0; i < 3; ++i) g[i] = sgemm_gflops(M, shapes[i][0], shapes[i][1], 5, own);
    const double ceiling = std::max(g[0], std::max(g[1], g[2]));
    std::printf("{\"bench\":\"%s_sgemm_ceiling\",\"kernel\":\"%s\",\"gflops_h_to_4h\":%.1f,\"gflops_4h_to_h\":%.1f,"
                "\"gflops_qkv\":%.1f,\"ceiling_gflops\":%.1f,\"forward_fraction_of_ceiling\":%.3f}\n",
                own ? "gridlock" : "eigen", own ? cpu::sgemm_isa_name(cpu::sgemm_isa()) : "eigen",
                g[0], g[1], g[2], ceiling,
                flops / s.best / 1e9 / ceiling);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gridlock_bench_pythia_forward: %s\n", e.what());
  return 1;
}
