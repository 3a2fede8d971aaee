// dist/zero.h: the whole-tensor partition, and ShardedOptimizer against the
// unsharded optimizer, bit for bit, on one rank and on 2 and 3 ranks
// simulated by threads (tests/dist/thread_ranks.h): weights after every
// step, the gathered state (names, order, dtypes, bytes), each rank holding
// only its share, a state moving between rank counts, and load_state's
// refusals reaching every rank. Under mpirun: tests/dist/mpi/dist_mpi_check.cpp
// and tests/trainer/e2e/train_mpi.sh.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "dist/zero.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sam.h"
#include "optim/sgd.h"
#include "tests/dist/thread_ranks.h"
#include "tests/testing.h"

using namespace gl;
using gl::testing::run_ranks;

namespace {

// A GPT-NeoX-like table: Muon's 2-D ".layers." weights (one f64), AdamW's
// embeddings, biases and norms, and "embed_in.weight", a suffix of
// "gpt_neox.embed_in.weight" (state keys must find the longer name).
std::vector<NamedParam> make_table() {
  struct Spec {
    const char* name;
    Shape shape;
    DType dt;
  };
  const Spec specs[] = {
      {"gpt_neox.embed_in.weight", {10, 4}, DType::F32},
      {"gpt_neox.layers.0.attention.query_key_value.weight", {12, 4}, DType::F32},
      {"gpt_neox.layers.0.attention.query_key_value.bias", {12}, DType::F32},
      {"gpt_neox.layers.0.mlp.dense_4h_to_h.weight", {4, 16}, DType::F64},
      {"gpt_neox.layers.0.mlp.dense_4h_to_h.bias", {4}, DType::F64},
      {"gpt_neox.final_layer_norm.weight", {4}, DType::F32},
      {"embed_in.weight", {6, 4}, DType::F32},
  };
  std::vector<NamedParam> ps;
  uint64_t seed = 1;
  for (const Spec& s : specs)
    ps.push_back({s.name, Var(testing::rand(s.shape, seed++).to(s.dt), true, s.name)});
  return ps;
}

// Step s's grads, the same on every rank (as after allreduce_mean_grads);
// at step 1 the third tensor has none, so its state must not advance.
void set_grads(std::vector<NamedParam>& ps, int64_t s) {
  for (size_t i = 0; i < ps.size(); ++i) {
    if (s == 1 && i == 2) continue;
    ps[i].var.impl()->grad = testing::rand(ps[i].var.shape(), 100 * uint64_t(s) + i).to(ps[i].var.dtype());
  }
}

std::unique_ptr<Optimizer> build(const std::string& kind, std::vector<ParamGroup> groups) {
  if (kind == "sgd") return std::make_unique<Sgd>(std::move(groups), SgdOptions{0.9, true});
  if (kind != "muon") return std::make_unique<AdamW>(std::move(groups));  // adamw, sam
  std::vector<NamedParam> ps;
  for (const ParamGroup& g : groups) ps.insert(ps.end(), g.params.begin(), g.params.end());
  MuonOptions m;
  m.weight_decay = 0.01;
  return std::make_unique<Muon>(ps, m);
}

// The unsharded optimizer's groups (Muon makes its own).
std::vector<ParamGroup> full_groups(const std::string& kind, const std::vector<NamedParam>& ps) {
  return build(kind, default_param_groups(ps, 0.1))->groups();
}

// Steps [first, last) of a run; "sam" runs SAM's two phases around the optimizer.
void train(const std::string& kind, Optimizer& opt, std::vector<NamedParam>& ps, int64_t first,
           int64_t last) {
  Sam sam(opt);
  for (int64_t s = first; s < last; ++s) {
    const double lr = 0.01 * double(s + 1);
    opt.zero_grad();
    set_grads(ps, s);
    if (kind == "sam") {
      sam.ascend(0.05);
      opt.zero_grad();
      set_grads(ps, 1000 + s);
      sam.descend_and_step(lr);
    } else {
      opt.step(lr);
    }
  }
}

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  const Tensor x = a.to(Device::cpu()).contiguous(), y = b.to(Device::cpu()).contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

// "" when equal (names, order, dtypes, shapes, bytes), else the first difference.
std::string state_diff(const NamedTensors& got, const NamedTensors& ref) {
  if (got.size() != ref.size()) return str(got.size(), " state tensors, expected ", ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    if (got[i].first != ref[i].first)
      return str("entry ", i, " is '", got[i].first, "', expected '", ref[i].first, "'");
    if (!same_bits(got[i].second, ref[i].second))
      return str("'", ref[i].first, "' differs: ", got[i].second.describe(), " vs ",
                 ref[i].second.describe());
  }
  return "";
}

std::vector<Tensor> values_of(const std::vector<NamedParam>& ps) {
  std::vector<Tensor> v;
  for (const NamedParam& p : ps) v.push_back(p.var.value().clone());
  return v;
}

std::vector<std::string> names_of(const std::vector<NamedParam>& ps) {
  std::vector<std::string> n;
  for (const NamedParam& p : ps) n.push_back(p.name);
  return n;
}

// What one simulated rank ends with.
struct RankResult {
  std::vector<Tensor> values;
  NamedTensors state;              // gathered
  NamedTensors own;                // its base optimizer's state
  std::vector<int> owners;         // of the sharded optimizer's params(), in its order
  std::vector<std::string> order;  // the names of those params()
};

// Checks each rank's result against the unsharded run; `label` names the case.
void check_ranks(const std::string& label, const std::vector<std::string>& errors,
                 const std::vector<RankResult>& got, const std::vector<Tensor>& ref_values,
                 const NamedTensors& ref_state, const std::vector<std::string>& names) {
  size_t own_total = 0;
  for (size_t r = 0; r < got.size(); ++r) {
    INFO(label, ", rank ", r);
    REQUIRE_MESSAGE(errors[r].empty(), errors[r]);
    for (size_t i = 0; i < ref_values.size(); ++i)
      CHECK_MESSAGE(same_bits(got[r].values[i], ref_values[i]), names[i], " differs from the unsharded run");
    const std::string d = state_diff(got[r].state, ref_state);
    CHECK_MESSAGE(d.empty(), d);
    // Each rank's optimizer holds the state of its own tensors only.
    for (const auto& entry : got[r].own) {
      const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture those
      const std::string name = key.substr(key.find('.') + 1);
      const auto& order = got[r].order;
      const auto it = std::find(order.begin(), order.end(), name);
      REQUIRE_MESSAGE(it != order.end(), key);
      CHECK_MESSAGE(got[r].owners[size_t(it - order.begin())] == int(r), key, " is held by rank ", r,
                    ", not its owner");
    }
    own_total += got[r].own.size();
  }
  CHECK(own_total == ref_state.size());
}

}  // namespace

TEST_CASE("zero: the partition sorts by size and fills the least loaded rank first") {
  // 10, 10, 5, 5, 5, 1 over 2 ranks: totals (10,0) (10,10) (15,10) (15,15) (20,15) (20,16).
  CHECK(zero_partition({10, 10, 5, 5, 5, 1}, 2) == std::vector<int>{0, 1, 0, 1, 0, 1});
  // Order in the table does not matter, sizes do: the largest goes first.
  CHECK(zero_partition({1, 5, 10, 5, 10, 5}, 2) == std::vector<int>{1, 0, 0, 1, 1, 0});
  CHECK(zero_partition({7, 3, 2}, 1) == std::vector<int>{0, 0, 0});
  // More ranks than tensors: one each, the rest own nothing.
  CHECK(zero_partition({3, 1}, 4) == std::vector<int>{0, 1});
  CHECK(zero_partition({}, 3).empty());
  CHECK_THROWS_WITH_AS(zero_partition({1}, 0), doctest::Contains("world_size must be >= 1"), Error);
}

TEST_CASE("zero: the partition gives every tensor one owner, balanced within the largest tensor") {
  Generator gen(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t n = 1 + trial * 7;
    std::vector<int64_t> numels;
    const Tensor u = Tensor::uniform({n}, gen, 1.0, 5000.0, DType::F64);
    for (double x : u.to_vector()) numels.push_back(int64_t(x));
    for (int w : {1, 2, 3, 8}) {
      const std::vector<int> owner = zero_partition(numels, w);
      REQUIRE(owner.size() == numels.size());
      CHECK(zero_partition(numels, w) == owner);  // deterministic
      std::vector<int64_t> total(size_t(w), 0);
      for (size_t i = 0; i < owner.size(); ++i) {
        REQUIRE((owner[i] >= 0 && owner[i] < w));
        total[size_t(owner[i])] += numels[i];
      }
      // Greedy largest-first: the spread is at most the largest tensor.
      const auto [lo, hi] = std::minmax_element(total.begin(), total.end());
      CHECK(*hi - *lo <= *std::max_element(numels.begin(), numels.end()));
    }
  }
}

TEST_CASE("zero: on one rank the sharded optimizer is its base optimizer, bit for bit") {
  for (const std::string kind : {"adamw", "sgd", "muon"}) {
    INFO(kind);
    std::vector<NamedParam> ref = make_table(), ps = make_table();
    const std::unique_ptr<Optimizer> full = build(kind, default_param_groups(ref, 0.1));
    train(kind, *full, ref, 0, 3);
    SingleCommunicator one;
    ShardedOptimizer z(one, full_groups(kind, ps), [&](std::vector<ParamGroup> g) { return build(kind, g); });
    train(kind, z, ps, 0, 3);
    CHECK(z.owners() == std::vector<int>(ps.size(), 0));
    for (size_t i = 0; i < ps.size(); ++i)
      CHECK_MESSAGE(same_bits(ps[i].var.value(), ref[i].var.value()), ps[i].name);
    const std::string d = state_diff(z.state(), full->state());
    CHECK_MESSAGE(d.empty(), d);
    CHECK(z.describe().find("rank 0 7 tensors") != std::string::npos);
  }
}

TEST_CASE("zero: 2 and 3 simulated ranks give the unsharded run's weights and state, bit for bit") {
  for (const std::string kind : {"adamw", "sgd", "muon", "sam"}) {
    std::vector<NamedParam> ref = make_table();
    const std::unique_ptr<Optimizer> full = build(kind, default_param_groups(ref, 0.1));
    train(kind, *full, ref, 0, 3);
    const NamedTensors ref_state = full->state();
    for (int n : {2, 3}) {
      std::vector<RankResult> got(static_cast<size_t>(n));
      const auto errors = run_ranks(n, [&](Communicator& c) {
        std::vector<NamedParam> ps = make_table();
        ShardedOptimizer z(c, full_groups(kind, ps),
                           [&](std::vector<ParamGroup> g) { return build(kind, g); });
        train(kind, z, ps, 0, 3);
        RankResult& r = got[size_t(c.rank())];
        r.values = values_of(ps);
        r.state = z.state();
        r.own = z.base().state();
        r.owners = z.owners();
        r.order = names_of(z.params());
      });
      check_ranks(kind + " on " + std::to_string(n) + " ranks", errors, got, values_of(ref), ref_state,
                  names_of(ref));
    }
  }
}

TEST_CASE("zero: an unsharded state resumes on 3 simulated ranks as if never interrupted") {
  for (const std::string kind : {"adamw", "muon"}) {
    std::vector<NamedParam> ref = make_table();
    const std::unique_ptr<Optimizer> full = build(kind, default_param_groups(ref, 0.1));
    train(kind, *full, ref, 0, 2);
    const std::vector<Tensor> at2 = values_of(ref);
    const NamedTensors state2 = full->state();
    train(kind, *full, ref, 2, 4);
    std::vector<RankResult> got(3);
    const auto errors = run_ranks(3, [&](Communicator& c) {
      std::vector<NamedParam> ps = make_table();
      for (size_t i = 0; i < ps.size(); ++i) Var(ps[i].var).mutable_value().copy_(at2[i]);
      ShardedOptimizer z(c, full_groups(kind, ps), [&](std::vector<ParamGroup> g) { return build(kind, g); });
      z.load_state(state2);
      train(kind, z, ps, 2, 4);
      RankResult& r = got[size_t(c.rank())];
      r.values = values_of(ps);
      r.state = z.state();
      r.own = z.base().state();
      r.owners = z.owners();
      r.order = names_of(z.params());
    });
    check_ranks(kind + " resumed on 3 ranks", errors, got, values_of(ref), full->state(), names_of(ref));
  }
}

TEST_CASE("zero: a state one rank refuses fails on every rank with that rank's message") {
  std::vector<NamedParam> ref = make_table();
  AdamW full(default_param_groups(ref, 0.1));
  train("adamw", full, ref, 0, 2);
  // Rank 1's first tensor gets a moment of the wrong shape.
  std::vector<int64_t> numels;
  for (const NamedParam& p : ref) numels.push_back(p.var.numel());
  const std::vector<int> owner = zero_partition(numels, 2);
  const size_t victim = size_t(std::find(owner.begin(), owner.end(), 1) - owner.begin());
  const std::string key = "exp_avg." + ref[victim].name;
  NamedTensors bad = full.state();
  for (auto& [k, t] : bad)
    if (k == key) t = Tensor::zeros({1});
  NamedTensors unknown = full.state();
  unknown.emplace_back("bogus", Tensor::zeros({1}));
  struct Case {
    const NamedTensors* state;
    std::string rank, names;  // the failing rank's prefix, what the message names
  };
  for (const Case& k : {Case{&bad, "rank 1: ", key}, Case{&unknown, "rank 0: ", "'bogus'"}}) {
    const auto errors = run_ranks(2, [&](Communicator& c) {
      std::vector<NamedParam> ps = make_table();
      ShardedOptimizer z(c, full_groups("adamw", ps),
                         [](std::vector<ParamGroup> g) { return build("adamw", g); });
      z.load_state(*k.state);
    });
    CHECK(errors[0] == errors[1]);
    CHECK_MESSAGE(errors[0].find(k.rank) == 0, errors[0]);
    CHECK_MESSAGE(errors[0].find(k.names) != std::string::npos, errors[0]);
  }
}
