// dist/comm.h in one process: the single-process communicator and world()
// outside a launcher, launcher detection and the backend choice, and the
// collectives built on the Communicator interface (allreduce_mean_grads,
// check_same_on_all_ranks) over a group of ranks simulated by threads, which
// reaches their multi-rank paths (means, mismatch errors thrown on every
// rank) without mpirun. The MPI backend itself is tested under mpirun by
// tests/dist/mpi/dist_mpi_check.cpp.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>

#include "dist/comm.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace gl;
using gl::testing::run_ranks;

namespace {

// Sets (or unsets, with nullopt) an environment variable for one scope.
class EnvGuard {
 public:
  EnvGuard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    set(value);
  }
  ~EnvGuard() { set(old_); }

 private:
  void set(const std::optional<std::string>& v) {
    if (v)
      setenv(name_, v->c_str(), 1);
    else
      unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> old_;
};

NamedParam make_param(const std::string& name, const Shape& shape, DType dt) {
  return {name, Var(Tensor::zeros(shape, dt), true, name)};
}

// The grad rank r holds for param i: fixed random values.
Tensor rank_grad(const NamedParam& p, int r, size_t i) {
  return testing::rand(p.var.shape(), 1000 * uint64_t(r) + i).to(p.var.dtype());
}

// A params table of odd sizes, both dtypes, a scalar, and one param without
// a grad; fresh Vars per call (one table per simulated rank).
std::vector<NamedParam> grad_table() {
  return {make_param("w", {3, 5}, DType::F32), make_param("s", {}, DType::F32),
          make_param("none", {4}, DType::F32), make_param("d", {7}, DType::F64),
          make_param("t", {2, 3}, DType::F32)};
}

void set_rank_grads(std::vector<NamedParam>& params, int r) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].name == "none") continue;
    Tensor g = rank_grad(params[i], r, i);
    // "t" gets a non-contiguous grad (a transposed view): packing must
    // gather it and unpacking must write through its strides.
    if (params[i].name == "t") g = g.view({3, 2}).contiguous().transpose(0, 1);
    params[i].var.impl()->grad = g;
  }
}

}  // namespace

TEST_CASE("dist: world() outside a launcher is the single-process communicator") {
  REQUIRE_MESSAGE(launcher_world_size() == 0, "this test must not run under mpirun");
  Communicator& w = world();
  CHECK(&w == &world());
  CHECK(w.backend() == "single");
  CHECK(w.rank() == 0);
  CHECK(w.size() == 1);
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  std::vector<double> d = {0.1, 0.2};
  w.allreduce_sum(f.data(), f.size());
  w.allreduce_sum(d.data(), d.size());
  CHECK(f == std::vector<float>{1.5f, -2.0f, 3.25f});
  CHECK(d == std::vector<double>{0.1, 0.2});
  char bytes[4] = {'a', 'b', 'c', 'd'};
  w.broadcast(bytes, 4, 0);
  CHECK(std::string(bytes, 4) == "abcd");
  w.barrier();
  CHECK_THROWS_WITH_AS(w.broadcast(bytes, 4, 1), doctest::Contains("root 1 out of range"), Error);
}

TEST_CASE("dist: launcher_world_size reads OMPI_COMM_WORLD_SIZE, then PMI_SIZE") {
  {
    EnvGuard a("OMPI_COMM_WORLD_SIZE", std::nullopt), b("PMI_SIZE", std::nullopt);
    CHECK(launcher_world_size() == 0);
  }
  {
    EnvGuard a("OMPI_COMM_WORLD_SIZE", "3"), b("PMI_SIZE", "5");
    CHECK(launcher_world_size() == 3);
  }
  {
    EnvGuard a("OMPI_COMM_WORLD_SIZE", std::nullopt), b("PMI_SIZE", "5");
    CHECK(launcher_world_size() == 5);
  }
  for (const char* bad : {"", "two", "0", "-1", "3x"}) {
    EnvGuard a("OMPI_COMM_WORLD_SIZE", std::string(bad));
    CHECK_THROWS_WITH_AS(launcher_world_size(), doctest::Contains("OMPI_COMM_WORLD_SIZE"), Error);
  }
}

TEST_CASE("dist: choose_backend refuses several ranks without MPI") {
  CHECK(choose_backend(0, false) == "single");
  CHECK(choose_backend(0, true) == "single");
  CHECK(choose_backend(1, false) == "single");
  CHECK(choose_backend(1, true) == "mpi");
  CHECK(choose_backend(4, true) == "mpi");
  CHECK_THROWS_WITH_AS(choose_backend(2, false), doctest::Contains("built without MPI"), Error);
  CHECK_THROWS_WITH_AS(choose_backend(2, false), doctest::Contains("2 independent copies"), Error);
}

TEST_CASE("dist: abort_world outside MPI exits the process with the code") {
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    abort_world(7);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 7);
}

TEST_CASE("dist: single communicator: allreduce_mean_grads and check_same are identities") {
  SingleCommunicator comm;
  auto params = grad_table();
  set_rank_grads(params, 0);
  std::vector<std::vector<double>> before;
  for (const auto& p : params)
    before.push_back(p.var.grad().defined() ? p.var.grad().to_vector() : std::vector<double>{});
  allreduce_mean_grads(comm, params);
  for (size_t i = 0; i < params.size(); ++i) {
    INFO(params[i].name);
    CHECK(params[i].var.grad().defined() == (params[i].name != "none"));
    if (params[i].var.grad().defined()) CHECK(params[i].var.grad().to_vector() == before[i]);
  }
  const std::string s = "recipe";
  check_same_on_all_ranks(comm, s.data(), s.size(), "the recipe");
  check_same_on_all_ranks(comm, nullptr, 0, "nothing");
  CHECK_THROWS_WITH_AS(check_same_on_all_ranks(comm, nullptr, 3, "the recipe"),
                       doctest::Contains("null data"), Error);
}

TEST_CASE("dist: allreduce_mean_grads over 3 simulated ranks is the mean, bit-identical") {
  const int n = 3;
  std::vector<std::vector<NamedParam>> tables(n);
  for (int r = 0; r < n; ++r) {
    tables[size_t(r)] = grad_table();
    set_rank_grads(tables[size_t(r)], r);
  }
  const auto errors = run_ranks(n, [&](Communicator& c) {
    allreduce_mean_grads(c, tables[size_t(c.rank())]);
  });
  for (int r = 0; r < n; ++r) CHECK_MESSAGE(errors[size_t(r)].empty(), errors[size_t(r)]);

  const auto ref_table = grad_table();
  for (size_t i = 0; i < ref_table.size(); ++i) {
    const NamedParam& p = ref_table[i];
    INFO(p.name);
    if (p.name == "none") {
      for (int r = 0; r < n; ++r) CHECK_FALSE(tables[size_t(r)][i].var.grad().defined());
      continue;
    }
    // The mean in the communicator's order, in the param's dtype: sum in
    // rank order, then one division (what allreduce_mean_grads does).
    std::vector<double> ref;
    if (p.var.dtype() == DType::F32) {
      std::vector<std::vector<float>> g;
      for (int r = 0; r < n; ++r) g.push_back(rank_grad(p, r, i).to_vector_as<float>());
      for (size_t k = 0; k < g[0].size(); ++k) ref.push_back(((g[0][k] + g[1][k]) + g[2][k]) / 3.0f);
    } else {
      std::vector<std::vector<double>> g;
      for (int r = 0; r < n; ++r) g.push_back(rank_grad(p, r, i).to_vector());
      for (size_t k = 0; k < g[0].size(); ++k) ref.push_back(((g[0][k] + g[1][k]) + g[2][k]) / 3.0);
    }
    for (int r = 0; r < n; ++r) {
      const Tensor& got = tables[size_t(r)][i].var.grad();
      REQUIRE(got.defined());
      CHECK(got.dtype() == p.var.dtype());
      CHECK(got.shape() == p.var.shape());
      // to_vector walks the logical (row-major) order, whatever the strides.
      std::vector<double> want = ref;
      if (p.name == "t") {  // the grad is the transpose of rank_grad's [3, 2] buffer
        want.clear();
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 3; ++b) want.push_back(ref[size_t(b * 2 + a)]);
      }
      CHECK(got.to_vector() == want);
    }
  }
  // A sanity anchor independent of the rank-order reasoning above.
  const double mean0 = (rank_grad(ref_table[0], 0, 0).to_vector()[0] +
                        rank_grad(ref_table[0], 1, 0).to_vector()[0] +
                        rank_grad(ref_table[0], 2, 0).to_vector()[0]) / 3.0;
  CHECK(tables[0][0].var.grad().to_vector()[0] == doctest::Approx(mean0).epsilon(1e-6));
}

TEST_CASE("dist: allreduce_mean_grads names a grad defined on some ranks only, on every rank") {
  const int n = 3;
  std::vector<std::vector<NamedParam>> tables(n);
  for (int r = 0; r < n; ++r) {
    tables[size_t(r)] = grad_table();
    set_rank_grads(tables[size_t(r)], r);
  }
  tables[1][3].var.zero_grad();  // "d": undefined on rank 1 only
  const std::vector<double> w_before = tables[0][0].var.grad().to_vector();
  const auto errors = run_ranks(n, [&](Communicator& c) {
    allreduce_mean_grads(c, tables[size_t(c.rank())]);
  });
  for (int r = 0; r < n; ++r) {
    INFO("rank ", r, ": ", errors[size_t(r)]);
    CHECK(errors[size_t(r)].find("the grad of 'd' is defined on 2 of 3 ranks") != std::string::npos);
  }
  CHECK(errors[1].find("on rank 1: undefined") != std::string::npos);
  CHECK(errors[0].find("on rank 0: defined") != std::string::npos);
  CHECK(tables[0][0].var.grad().to_vector() == w_before);  // nothing was reduced
}

TEST_CASE("dist: allreduce_mean_grads refuses ranks whose parameters differ in size") {
  const int n = 2;
  std::vector<std::vector<NamedParam>> tables(n);
  for (int r = 0; r < n; ++r) {
    tables[size_t(r)] = {make_param("a", {4}, DType::F32), make_param("b", {r == 0 ? 3 : 5}, DType::F64)};
    set_rank_grads(tables[size_t(r)], r);
  }
  const auto errors = run_ranks(n, [&](Communicator& c) {
    allreduce_mean_grads(c, tables[size_t(c.rank())]);
  });
  for (int r = 0; r < n; ++r) {
    INFO("rank ", r, ": ", errors[size_t(r)]);
    CHECK(errors[size_t(r)].find("rank 1 holds 4 f32 and 5 f64 grad elements, rank 0 holds 4 and 3") !=
          std::string::npos);
  }
}

TEST_CASE("dist: allreduce_mean_grads refuses grads it cannot reduce") {
  SingleCommunicator one;
  std::vector<NamedParam> params = {make_param("h", {2}, DType::BF16)};
  params[0].var.impl()->grad = Tensor::zeros({2}, DType::BF16);
  allreduce_mean_grads(one, params);  // one rank: nothing to reduce, nothing checked
  const auto errors = run_ranks(2, [&](Communicator& c) {
    std::vector<NamedParam> mine = {make_param("h", {2}, DType::BF16)};
    mine[0].var.impl()->grad = Tensor::zeros({2}, DType::BF16);
    allreduce_mean_grads(c, mine);
  });
  for (const auto& e : errors) CHECK(e.find("grad of 'h' is bf16[2] cpu") != std::string::npos);
}

TEST_CASE("dist: check_same_on_all_ranks over simulated ranks names the first differing rank") {
  std::vector<std::string> data = {"the resolved recipe", "the resolved recipe",
                                   "the resolved recipe"};
  auto run = [&](int n) {
    return run_ranks(n, [&](Communicator& c) {
      const std::string& mine = data[size_t(c.rank())];
      check_same_on_all_ranks(c, mine.data(), mine.size(), "the recipe");
    });
  };
  for (const auto& e : run(3)) CHECK(e.empty());
  for (const auto& e : run_ranks(2, [](Communicator& c) { check_same_on_all_ranks(c, nullptr, 0, "nothing"); }))
    CHECK(e.empty());

  data[2][7] = 'X';  // rank 2 differs at byte 7
  for (const auto& e : run(3)) {
    INFO(e);
    CHECK(e.find("the recipe differs between ranks: rank 2 differs from rank 0 first at byte 7 of 19") !=
          std::string::npos);
  }
  data[1][12] = 'Y';  // now ranks 1 and 2 differ: the first one is named
  for (const auto& e : run(3)) CHECK(e.find("rank 1 differs from rank 0 first at byte 12") != std::string::npos);

  data = {"0123456789", "012345678", "0123456789"};
  for (const auto& e : run(3)) {
    INFO(e);
    CHECK(e.find("the recipe differs between ranks: rank 1 has 9 bytes, rank 0 has 10") !=
          std::string::npos);
  }
}

TEST_CASE("dist: check_same_on_all_ranks compares buffers larger than one 64 MiB chunk") {
  const size_t bytes = (size_t(64) << 20) + 5;
  std::vector<std::vector<unsigned char>> data(2, std::vector<unsigned char>(bytes));
  for (size_t i = 0; i < bytes; ++i) data[0][i] = data[1][i] = (unsigned char)(i * 131 + 7);
  auto run = [&] {
    return run_ranks(2, [&](Communicator& c) {
      check_same_on_all_ranks(c, data[size_t(c.rank())].data(), bytes, "the weights");
    });
  };
  for (const auto& e : run()) CHECK(e.empty());
  data[1][bytes - 2] ^= 1;  // in the second chunk
  for (const auto& e : run()) {
    INFO(e);
    CHECK(e.find("rank 1 differs from rank 0 first at byte " + std::to_string(bytes - 2)) !=
          std::string::npos);
  }
}

TEST_CASE("dist: the local rank picks the GPU, round-robin over the visible ones") {
  {
    EnvGuard a("OMPI_COMM_WORLD_LOCAL_RANK", std::nullopt), b("MPI_LOCALRANKID", std::nullopt),
        c("SLURM_LOCALID", std::nullopt);
    CHECK(launcher_local_rank() == 0);
  }
  {
    EnvGuard a("OMPI_COMM_WORLD_LOCAL_RANK", "3"), b("MPI_LOCALRANKID", "1");
    CHECK(launcher_local_rank() == 3);
  }
  {
    EnvGuard a("OMPI_COMM_WORLD_LOCAL_RANK", std::nullopt), b("MPI_LOCALRANKID", "2");
    CHECK(launcher_local_rank() == 2);
  }
  {
    EnvGuard a("OMPI_COMM_WORLD_LOCAL_RANK", "-1");
    CHECK_THROWS_WITH_AS(launcher_local_rank(), doctest::Contains("OMPI_COMM_WORLD_LOCAL_RANK='-1'"), Error);
  }
  CHECK(device_for_local_rank(0, 8) == 0);
  CHECK(device_for_local_rank(7, 8) == 7);
  CHECK(device_for_local_rank(1, 1) == 0);  // two ranks sharing one GPU
  CHECK(device_for_local_rank(5, 2) == 1);
  CHECK_THROWS_WITH_AS(device_for_local_rank(0, 0), doctest::Contains("no GPU is visible"), Error);
}
