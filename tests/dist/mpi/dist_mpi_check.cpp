// The MPI backend of dist/comm.h under a real launcher:
//   mpirun -np N dist_mpi_check            every check below, on N ranks
//   mpirun -np 2 dist_mpi_check --abort    rank 1 calls abort_world(3) while
//                                          rank 0 waits in a collective: the
//                                          job must end (not hang)
//   mpirun -np N dist_mpi_check --cuda N   allreduce_mean_grads and GradReducer on CUDA grads:
//                                          NCCL with one GPU per rank, the
//                                          host path when ranks share a GPU,
//                                          and ZeRO-1 on CUDA weights
//                                          (exits 77 without a GPU)
// Run by tests/dist/mpirun_local.sh from ctest (tests/CMakeLists.txt).
//
// A plain program rather than doctest: every rank must run the same
// collectives in the same order, so a failed check is counted and the run
// goes on; at the end the failure counts are summed so that every rank
// agrees, and rank 0 prints the line the ctest wrapper requires.
//
// Data are functions of (seed, rank), so each rank recomputes what every
// other rank holds and compares the collectives' results with values it
// computed alone. With 2 ranks a sum is one IEEE addition, so results must
// match exactly; with more ranks MPI may add in another order (tolerance).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/device_hooks.h"
#include "autograd/ops.h"
#include "dist/comm.h"
#include "dist/grad_reducer.h"
#include "dist/zero.h"
#include "optim/adamw.h"

using namespace gl;

namespace {

int g_failures = 0;
int g_rank = -1;

void check(bool ok, const std::string& what) {
  if (ok) return;
  ++g_failures;
  std::fprintf(stderr, "[rank %d] FAILED: %s\n", g_rank, what.c_str());
}

// Runs fn, expecting a gl::Error whose message contains `needle`.
template <class Fn>
void check_throws(Fn&& fn, const std::string& needle, const std::string& what) {
  try {
    fn();
  } catch (const Error& e) {
    check(std::string(e.what()).find(needle) != std::string::npos,
          what + ": message '" + e.what() + "' lacks '" + needle + "'");
    return;
  }
  check(false, what + ": no error thrown");
}

// Value i of rank r's test vector (exact in f32 for small i, with a fraction
// that makes the sum round).
double rank_value(int r, size_t i) { return (r + 1) * 0.1 + double(i % 1000) * 1.37 - double(r * i % 7); }

template <class T>
void check_allreduce(Communicator& comm, size_t n, const char* label) {
  const int size = comm.size();
  std::vector<T> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = T(rank_value(comm.rank(), i));
  comm.allreduce_sum(x.data(), n);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    T ref = T(rank_value(0, i));
    for (int r = 1; r < size; ++r) ref += T(rank_value(r, i));
    const bool ok = size == 2 ? x[i] == ref
                              : std::fabs(double(x[i]) - double(ref)) <= 1e-5 * (1 + std::fabs(double(ref)));
    bad += !ok;
  }
  check(bad == 0, std::string("allreduce_sum ") + label + " n=" + std::to_string(n) + ": " +
                      std::to_string(bad) + " wrong elements");
  check_same_on_all_ranks(comm, x.data(), n * sizeof(T), std::string("allreduce_sum ") + label);
}

ModelConfig tiny_config() {
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.vocab_size = 11;
  c.hidden_size = 16;  // head size 8
  c.num_heads = 2;
  c.num_layers = 2;
  c.intermediate_size = 24;
  c.max_positions = 8;
  return c;
}

// Rank r's batch: ids and next-token targets [2, 7] drawn from seed 100 + r.
void rank_batch(int r, int64_t vocab, Tensor& ids, Tensor& targets) {
  Generator gen(100 + uint64_t(r));
  const std::vector<double> u = Tensor::uniform({2, 8}, gen, 0.0, double(vocab), DType::F64).to_vector();
  std::vector<int64_t> a, b;
  for (int64_t row = 0; row < 2; ++row)
    for (int64_t t = 0; t < 7; ++t) {
      a.push_back(int64_t(u[size_t(row * 8 + t)]));
      b.push_back(int64_t(u[size_t(row * 8 + t + 1)]));
    }
  ids = Tensor::from_data(a, {2, 7});
  targets = Tensor::from_data(b, {2, 7});
}

// The grads of the loss on rank r's batch, as f64 host vectors.
std::vector<std::vector<double>> grads_on(const LanguageModel& model, int r, Device dev) {
  const auto params = model.parameters();
  for (auto p : params) p.var.zero_grad();
  Tensor ids, targets;
  rank_batch(r, model.config().vocab_size, ids, targets);
  model.loss(ids.to(dev), targets.to(dev)).backward();
  std::vector<std::vector<double>> out;
  for (const auto& p : params) out.push_back(p.var.grad().to_vector());
  return out;
}

// check_same_on_all_ranks of a tensor on any device.
void check_same_tensor(Communicator& comm, const Tensor& t, const std::string& what) {
  const Tensor h = t.to(Device::cpu()).contiguous();
  check_same_on_all_ranks(comm, h.data_ptr(), h.nbytes(), what);
}

void check_mean_grads(Communicator& comm, DType dt, Device dev = Device::cpu()) {
  const std::string label = std::string("allreduce_mean_grads ") + dtype_name(dt) + " on " + dev.name();
  Generator gen(7);  // same seed: the same initial weights on every rank
  auto model = make_model(tiny_config(), gen, dt, dev);
  const auto params = model->parameters();
  for (const auto& p : params) check_same_tensor(comm, p.var.value(), "initial " + p.name);

  // Every rank's grads, computed here alone.
  std::vector<std::vector<std::vector<double>>> all;
  for (int r = 0; r < comm.size(); ++r) all.push_back(grads_on(*model, r, dev));

  // This rank's grads, then the all-reduce.
  for (auto p : params) p.var.zero_grad();
  Tensor ids, targets;
  rank_batch(comm.rank(), model->config().vocab_size, ids, targets);
  ids = ids.to(dev);
  targets = targets.to(dev);
  model->loss(ids, targets).backward();
  allreduce_mean_grads(comm, params);

  size_t bad = 0, total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& g = params[i].var.grad();
    check(g.defined(), label + ": grad of " + params[i].name + " undefined after the reduce");
    if (!g.defined()) continue;
    const std::vector<double> got = g.to_vector();
    for (size_t k = 0; k < got.size(); ++k, ++total) {
      // The mean in the grad's dtype: sum in rank order, one division.
      double ref;
      if (dt == DType::F32) {
        float s = float(all[0][i][k]);
        for (int r = 1; r < comm.size(); ++r) s += float(all[size_t(r)][i][k]);
        ref = double(s / float(comm.size()));
      } else {
        double s = all[0][i][k];
        for (int r = 1; r < comm.size(); ++r) s += all[size_t(r)][i][k];
        ref = s / double(comm.size());
      }
      const bool ok = comm.size() == 2 ? got[k] == ref
                                       : std::fabs(got[k] - ref) <= 1e-5 * (1e-3 + std::fabs(ref));
      bad += !ok;
    }
    check_same_tensor(comm, g, label + " grad of " + params[i].name);
  }
  check(total > 1000 && bad == 0, label + ": " + std::to_string(bad) + " of " +
                                      std::to_string(total) + " grad elements differ from the mean");
  // Some rank's grads really differed (else the test proves little).
  check(all[0][0] != all[1][0], label + ": rank 0 and rank 1 have the same grads");

  // A grad defined on rank 1 only: every rank throws, naming it.
  for (auto p : params) p.var.zero_grad();
  model->loss(ids, targets).backward();
  if (comm.rank() == 1) {
    auto p = params.back();
    p.var.zero_grad();
  }
  check_throws([&] { allreduce_mean_grads(comm, params); },
               "the grad of '" + params.back().name + "' is defined on " +
                   std::to_string(comm.size() - 1) + " of " + std::to_string(comm.size()),
               label + " mismatch");
}

// The overlapped all-reduce (dist/grad_reducer.h) over MPI, in 512-byte
// buckets (the embeddings larger than a bucket, the norms and biases many
// to a bucket): scaled and reduced during backward, its grads must be the
// bits of scale_grads + allreduce_mean_grads on a copy of the model. The
// table adds "unused" (no grad on any rank: stays undefined) and
// "rank1_only" (used on rank 1 only in the last round: an error naming it,
// on every rank). On the CPU the collectives run on the reducer's thread
// (MPI_THREAD_SERIALIZED); with --cuda on GPUs of their own, through NCCL.
void check_grad_reducer(Communicator& comm, DType dt, Device dev = Device::cpu()) {
  const std::string label = std::string("GradReducer ") + dtype_name(dt) + " on " + dev.name();
  Generator gen(7), gen_ref(7);
  auto model = make_model(tiny_config(), gen, dt, dev);
  auto ref_model = make_model(tiny_config(), gen_ref, dt, dev);
  auto params = model->parameters();
  auto ref_params = ref_model->parameters();
  for (auto* t : {&params, &ref_params}) {
    t->push_back({"unused", Var(Tensor::ones({3}, dt, dev), true, "unused")});
    t->push_back({"rank1_only", Var(Tensor::ones({2}, dt, dev), true, "rank1_only")});
  }
  Tensor ids, targets;
  rank_batch(comm.rank(), model->config().vocab_size, ids, targets);
  ids = ids.to(dev);
  targets = targets.to(dev);

  ref_model->loss(ids, targets).backward();
  scale_grads(ref_params, 0.5);
  allreduce_mean_grads(comm, ref_params);

  GradReducer red(comm, params, 512);
  check(red.bucket_names().size() > 10, label + ": only " + std::to_string(red.bucket_names().size()) +
                                            " buckets");
  if (!dev.is_cuda()) check(red.overlapped(), label + ": no communication thread (MPI below SERIALIZED?)");
  auto round = [&](bool rank1_extra) {
    for (auto p : params) p.var.zero_grad();
    red.begin(0.5);
    GradReadyGuard guard([&](VarImpl& leaf) { red.grad_ready(leaf); });
    Var loss = model->loss(ids, targets);
    if (rank1_extra && comm.rank() == 1) loss = add(loss, sum(mul(params.back().var, params.back().var)));
    loss.backward();
    red.finish();
  };
  round(false);
  size_t bad = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& g = params[i].var.grad();
    const Tensor& w = ref_params[i].var.grad();
    if (g.defined() != w.defined()) {
      check(false, label + ": grad of " + params[i].name + " defined differs from the reference");
      continue;
    }
    if (g.defined()) bad += g.to_vector() != w.to_vector();
  }
  check(bad == 0, label + ": " + std::to_string(bad) + " grads differ from allreduce_mean_grads");
  check(!params[params.size() - 2].var.grad().defined(), label + ": 'unused' got a grad");
  check_throws([&] { round(true); },
               "the grad of 'rank1_only' is defined on 1 of " + std::to_string(comm.size()),
               label + " mismatch");
}

// ZeRO-1 (dist/zero.h) over MPI: three AdamW steps of a ShardedOptimizer on
// the mean grads must leave the weights and the gathered state bit-identical
// to an unsharded AdamW that this rank runs alone on a copy of the model
// with the same grads; and a full state loaded into a fresh ShardedOptimizer
// must gather back unchanged.
void check_zero(Communicator& comm, Device dev = Device::cpu()) {
  const std::string label = std::string("ZeRO-1 AdamW on ") + dev.name();
  Generator gen(7), gen_ref(7);
  auto model = make_model(tiny_config(), gen, DType::F32, dev);
  auto ref_model = make_model(tiny_config(), gen_ref, DType::F32, dev);
  const auto params = model->parameters(), ref_params = ref_model->parameters();
  auto make = [](std::vector<ParamGroup> g) { return std::make_unique<AdamW>(std::move(g)); };
  ShardedOptimizer zero(comm, default_param_groups(params, 0.1), make);
  AdamW ref(default_param_groups(ref_params, 0.1));
  int owned = 0;
  for (int o : zero.owners()) owned += o == comm.rank();
  check(owned > 0 && owned < int(params.size()), label + ": rank owns " + std::to_string(owned) + " of " +
                                                     std::to_string(params.size()) + " tensors");
  Tensor ids, targets;
  rank_batch(comm.rank(), model->config().vocab_size, ids, targets);
  for (int step = 0; step < 3; ++step) {
    zero.zero_grad();
    model->loss(ids.to(dev), targets.to(dev)).backward();
    allreduce_mean_grads(comm, params);
    for (size_t i = 0; i < params.size(); ++i) ref_params[i].var.impl()->grad = params[i].var.grad().clone();
    zero.step(1e-2);
    ref.step(1e-2);
  }
  auto same_bits = [](const Tensor& a, const Tensor& b) {
    const Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
    return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
  };
  for (size_t i = 0; i < params.size(); ++i) {
    check(same_bits(params[i].var.value(), ref_params[i].var.value()),
          label + ": " + params[i].name + " differs from the unsharded AdamW");
    check_same_tensor(comm, params[i].var.value(), label + " " + params[i].name);
  }
  auto check_state = [&](const NamedTensors& got, const std::string& what) {
    const NamedTensors want = ref.state();
    check(got.size() == want.size(), label + " " + what + ": " + std::to_string(got.size()) +
                                         " state tensors, want " + std::to_string(want.size()));
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
      check(got[i].first == want[i].first && same_bits(got[i].second, want[i].second),
            label + " " + what + ": entry " + std::to_string(i) + " '" + got[i].first + "' differs from '" +
                want[i].first + "'");
  };
  check_state(zero.state(), "gathered state");
  ShardedOptimizer fresh(comm, default_param_groups(params, 0.1), make);
  fresh.load_state(ref.state());
  check_state(fresh.state(), "state loaded and gathered again");
}

int run_checks(Communicator& comm, int expected_size, bool cuda) {
  check(comm.backend() == "mpi", "backend is '" + comm.backend() + "', want 'mpi'");
  check(comm.size() == expected_size,
        "size " + std::to_string(comm.size()) + ", want " + std::to_string(expected_size));
  if (comm.size() < 2) return 1;  // every check below needs a second rank
  if (cuda) {
    // Each rank on its GPU (as ./train picks it): NCCL when every
    // rank has its own, the host path when they share one (dist/comm.cpp
    // says which on stderr). With 2 ranks both give the exact mean.
    const Device dev = Device::cuda(device_for_local_rank(launcher_local_rank(), cuda_hooks::device_count()));
    check_mean_grads(comm, DType::F32, dev);
    check_grad_reducer(comm, DType::F32, dev);
    check_zero(comm, dev);
    return 0;
  }

  // Sums: tiny, odd, and larger than the segment sizes of MPI's algorithms.
  for (size_t n : {size_t(1), size_t(7), size_t(1000003)}) {
    check_allreduce<float>(comm, n, "f32");
    check_allreduce<double>(comm, n, "f64");
  }

  // Broadcast from the last rank, odd size.
  std::vector<unsigned char> b(12345);
  for (size_t i = 0; i < b.size(); ++i) b[i] = (unsigned char)(i * 7 + 31 * comm.rank());
  comm.broadcast(b.data(), b.size(), comm.size() - 1);
  size_t bad = 0;
  for (size_t i = 0; i < b.size(); ++i) bad += b[i] != (unsigned char)(i * 7 + 31 * (comm.size() - 1));
  check(bad == 0, "broadcast from the last rank: " + std::to_string(bad) + " wrong bytes");
  check_throws([&] { comm.broadcast(b.data(), 1, comm.size()); }, "out of range", "broadcast bad root");
  comm.barrier();

  // check_same_on_all_ranks: equal, then different on the last rank.
  std::string s = "seed=1234 lr=3e-4";
  check_same_on_all_ranks(comm, s.data(), s.size(), "the recipe");
  if (comm.rank() == comm.size() - 1) s[5] = '9';
  check_throws([&] { check_same_on_all_ranks(comm, s.data(), s.size(), "the recipe"); },
               "the recipe differs between ranks: rank " + std::to_string(comm.size() - 1) +
                   " differs from rank 0 first at byte 5",
               "check_same difference");
  if (comm.rank() == 1) s += "!";
  check_throws([&] { check_same_on_all_ranks(comm, s.data(), s.size(), "the recipe"); },
               "rank 1 has 18 bytes, rank 0 has 17", "check_same size");

  check_mean_grads(comm, DType::F32);
  check_mean_grads(comm, DType::F64);
  check_grad_reducer(comm, DType::F32);
  check_grad_reducer(comm, DType::F64);
  check_zero(comm);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const bool abort_mode = argc > 1 && std::strcmp(argv[1], "--abort") == 0;
  const bool cuda = argc > 1 && std::strcmp(argv[1], "--cuda") == 0;
  int expected = 2;
  if (argc > 1 && !abort_mode) expected = std::atoi(argv[cuda ? 2 : 1]);
  if (cuda && cuda_hooks::device_count() == 0) {
    std::printf("dist_mpi_check: no GPU visible: skipped\n");
    return 77;  // every rank sees the same machine, so every rank returns here
  }
  try {
    Communicator& comm = world();
    g_rank = comm.rank();
    if (abort_mode) {
      comm.barrier();
      if (comm.rank() == 1) {
        std::printf("dist_mpi_check: rank 1 calls abort_world(3)\n");
        abort_world(3);
      }
      std::vector<double> x(4, 1.0);
      comm.allreduce_sum(x.data(), x.size());  // never completes: rank 1 is gone
      std::printf("dist_mpi_check: rank %d left a collective it should not have\n", comm.rank());
      return 0;
    }
    g_failures += run_checks(comm, expected, cuda);
    // Every rank reports; the sum makes the verdict the same on all ranks.
    double failures = g_failures;
    comm.allreduce_sum(&failures, 1);
    if (comm.rank() == 0) {
      if (failures == 0)
        std::printf("dist_mpi_check: all checks passed on %d ranks\n", comm.size());
      else
        std::printf("dist_mpi_check: %d failed checks over %d ranks\n", int(failures), comm.size());
    }
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", g_rank, e.what());
    std::fflush(nullptr);
    abort_world(2);  // other ranks may wait in a collective for this one
  }
}
