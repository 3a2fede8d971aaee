// dist/grad_reducer.h over ranks simulated by threads: the overlapped,
// bucketed all-reduce gives the bits of scale_grads + allreduce_mean_grads
// (two micro-batches, the hook only on the second, buckets cut at 64 bytes:
// a param larger than a bucket, many tiny ones, f32 and f64, a param no
// micro-batch uses, one only the first uses), with its communication thread
// and with the collectives kept on the main thread; a grad defined on one
// rank only is an error naming it on every rank; ranks whose tables differ
// are refused when the reducer is built.
#include <doctest/doctest.h>

#include "dist/grad_reducer.h"
#include "optim/optimizer.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace gl;
using gl::testing::run_ranks;

namespace {

// Delegates to another communicator but says its collectives must stay on
// the main thread (an MPI below MPI_THREAD_SERIALIZED).
class MainThreadOnly final : public Communicator {
 public:
  explicit MainThreadOnly(Communicator& c) : c_(c) {}
  int rank() const override { return c_.rank(); }
  int size() const override { return c_.size(); }
  void allreduce_sum(float* d, size_t n) override { c_.allreduce_sum(d, n); }
  void allreduce_sum(double* d, size_t n) override { c_.allreduce_sum(d, n); }
  void broadcast(void* d, size_t b, int root) override { c_.broadcast(d, b, root); }
  void barrier() override { c_.barrier(); }
  std::string backend() const override { return c_.backend(); }
  bool collectives_from_any_thread() const override { return false; }

 private:
  Communicator& c_;
};

NamedParam param(const std::string& name, const Shape& shape, DType dt, uint64_t seed) {
  return {name, Var(testing::rand(shape, seed, dt), true, name)};
}

// The same values on every rank, as data parallelism keeps them. The table
// order puts what backward reaches last first, as models do.
std::vector<NamedParam> table(bool with_rank0_only = false) {
  std::vector<NamedParam> t = {param("nograd", {3}, DType::F32, 1), param("only_mb1", {4}, DType::F32, 2),
                               param("emb", {64}, DType::F32, 3)};
  for (int k = 0; k < 10; ++k) t.push_back(param("t" + std::to_string(k), {2}, DType::F32, 10 + k));
  t.push_back(param("d", {5}, DType::F64, 30));
  t.push_back(param("d2", {3}, DType::F64, 31));
  if (with_rank0_only) t.push_back(param("rank0_only", {2}, DType::F32, 40));
  return t;
}

const Var& find(const std::vector<NamedParam>& t, const std::string& name) {
  for (const auto& p : t)
    if (p.name == name) return p.var;
  throw Error("no param " + name);
}

// Micro-batch m of rank r: an f32 loss and an f64 loss over rank-dependent
// inputs (two backward calls, disjoint params).
void micro_batch(const std::vector<NamedParam>& t, int r, int m) {
  const Var x(testing::rand({64}, 100 * uint64_t(r) + uint64_t(m), DType::F32));
  const Var& emb = find(t, "emb");
  Var l32 = sum(mul(mul(emb, x), emb));  // emb twice
  for (int k = 0; k < 10; ++k) {
    const Var& tk = find(t, "t" + std::to_string(k));
    l32 = add(l32, scale(sum(mul(tk, tk)), 1.0 + r + m + k));
  }
  if (m == 0) l32 = add(l32, sum(scale(find(t, "only_mb1"), 3.0 + r)));
  if (r == 0 && t.size() > 15) l32 = add(l32, sum(find(t, "rank0_only")));  // table(true)
  l32.backward();
  const Var xd(testing::rand({5}, 200 + uint64_t(r) + uint64_t(m), DType::F64));
  const Var& d = find(t, "d");
  Var l64 = add(sum(mul(mul(d, xd), d)), sum(scale(find(t, "d2"), 2.0 + r * m)));
  l64.backward();
}

// What the trainer did before the reducer: backward on every micro-batch,
// scale, allreduce_mean_grads.
void reference_step(Communicator& c, const std::vector<NamedParam>& t, double grad_scale) {
  for (int m = 0; m < 2; ++m) micro_batch(t, c.rank(), m);
  scale_grads(t, grad_scale);
  allreduce_mean_grads(c, t);
}

size_t overlapped_step(GradReducer& red, const std::vector<NamedParam>& t, int r, double grad_scale) {
  micro_batch(t, r, 0);
  red.begin(grad_scale);
  {
    GradReadyGuard guard([&](VarImpl& leaf) { red.grad_ready(leaf); });
    micro_batch(t, r, 1);
  }
  const size_t before_finish = red.handed_over();
  red.finish();
  return before_finish;
}

void check_same_grads(const std::vector<NamedParam>& got, const std::vector<NamedParam>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(got[i].name);
    const Tensor& g = got[i].var.grad();
    const Tensor& w = want[i].var.grad();
    REQUIRE(g.defined() == w.defined());
    if (g.defined()) CHECK(g.to_vector() == w.to_vector());  // f32/f64 -> double is exact
  }
}

}  // namespace

TEST_CASE("grad reducer: 3 simulated ranks, 64-byte buckets: the bits of allreduce_mean_grads") {
  const std::vector<std::vector<std::string>> want_buckets = {
      {"d2", "d"},                                             // f64, 24 + 40 bytes
      {"t9", "t8", "t7", "t6", "t5", "t4", "t3", "t2"},        // 8 x 8 bytes
      {"t1", "t0"},                                            // emb would overflow it
      {"emb"},                                                 // 256 bytes: a bucket of its own
      {"only_mb1", "nograd"}};
  for (const bool main_thread_only : {false, true}) {
    INFO("collectives on the main thread only: ", main_thread_only);
    const auto errors = run_ranks(3, [&](Communicator& threads) {
      MainThreadOnly serial(threads);
      Communicator& c = main_thread_only ? static_cast<Communicator&>(serial) : threads;
      const auto ref = table(), mine = table();
      reference_step(c, ref, 0.5);
      GradReducer red(c, mine, 64);
      CHECK(red.bucket_names() == want_buckets);
      CHECK(red.overlapped() == !main_thread_only);
      for (int step = 0; step < 2; ++step) {  // reused across steps
        for (const auto& p : mine) p.var.impl()->grad = Tensor();
        // The last bucket waits for only_mb1 and nograd, which the hooked
        // micro-batch does not reach: finish() hands it over.
        CHECK(overlapped_step(red, mine, c.rank(), 0.5) == 4);
        check_same_grads(mine, ref);
      }
      CHECK_FALSE(find(mine, "nograd").grad().defined());
    });
    for (int r = 0; r < 3; ++r) CHECK_MESSAGE(errors[size_t(r)].empty(), errors[size_t(r)]);
  }
}

TEST_CASE("grad reducer: one rank is scale_grads, nothing else") {
  SingleCommunicator one;
  const auto ref = table(), mine = table();
  for (int m = 0; m < 2; ++m) micro_batch(ref, 0, m);
  scale_grads(ref, 0.25);
  GradReducer red(one, mine, 64);
  overlapped_step(red, mine, 0, 0.25);
  check_same_grads(mine, ref);
}

TEST_CASE("grad reducer: a grad defined on one rank only is an error naming it, on every rank") {
  const auto errors = run_ranks(3, [&](Communicator& c) {
    const auto mine = table(true);
    GradReducer red(c, mine, 64);
    micro_batch(mine, c.rank(), 0);
    red.begin(1.0);
    micro_batch(mine, c.rank(), 1);  // no hook: finish() hands every bucket over
    const std::vector<double> local = find(mine, "t0").grad().to_vector();
    try {
      red.finish();
    } catch (const Error&) {
      CHECK(find(mine, "t0").grad().to_vector() == local);  // no grad replaced by a mean
      throw;
    }
  });
  for (int r = 0; r < 3; ++r) {
    INFO("rank ", r, ": ", errors[size_t(r)]);
    CHECK(errors[size_t(r)].find("the grad of 'rank0_only' is defined on 1 of 3 ranks") != std::string::npos);
  }
  CHECK(errors[0].find("on rank 0: defined") != std::string::npos);
  CHECK(errors[2].find("on rank 2: undefined") != std::string::npos);
}

TEST_CASE("grad reducer: ranks whose tables differ are refused when it is built") {
  const auto errors = run_ranks(2, [&](Communicator& c) {
    std::vector<NamedParam> t = {param("a", {c.rank() == 0 ? 3 : 4}, DType::F32, 1)};
    GradReducer red(c, t);
  });
  for (const auto& e : errors) CHECK(e.find("the ranks' parameters differ") != std::string::npos);
  std::vector<NamedParam> h = {{"h", Var(Tensor::zeros({2}, DType::BF16), false, "h")}};
  h[0].var.impl()->requires_grad = true;  // a bf16 param that would get a grad
  SingleCommunicator one;
  CHECK_THROWS_WITH_AS(GradReducer(one, h), doctest::Contains("param 'h' is h: bf16[2]"), Error);
}
