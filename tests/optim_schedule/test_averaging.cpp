// Weight averaging (optim/averaging.h): EMA and running average on tiny
// tensors against hand-computed values (chosen to be exact in binary), swap
// in/out restoring the raw weights bit-exactly, state round trip, errors.
#include <doctest/doctest.h>

#include <cstring>

#include "core/error.h"
#include "optim/averaging.h"
#include "tests/testing.h"

using namespace gl;

namespace {

std::vector<NamedParam> make_params(const std::vector<std::vector<double>>& values, DType dt) {
  std::vector<NamedParam> ps;
  for (size_t i = 0; i < values.size(); ++i)
    ps.push_back({"w" + std::to_string(i),
                  Var(Tensor::from_vector(values[i], {int64_t(values[i].size())}, dt), true)});
  return ps;
}

// Overwrites parameter i's values (as an optimizer step would, in place).
void set(const std::vector<NamedParam>& ps, size_t i, const std::vector<double>& v) {
  Tensor w = ps[i].var.value();
  w.copy_(Tensor::from_vector(v, {int64_t(v.size())}, w.dtype()));
}

bool bits_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

}  // namespace

TEST_CASE("averaging ema: first update copies, then ema + (1 - d)(w - ema)") {
  for (DType dt : {DType::F32, DType::F64}) {
    auto ps = make_params({{1, 2}, {-4}}, dt);
    WeightAverager ema(AveragingSpec{"ema", 0.5, 0});
    CHECK(ema.update(ps, 0));
    CHECK(ema.average("w0").to_vector() == std::vector<double>{1, 2});
    set(ps, 0, {3, 6});
    set(ps, 1, {4});
    ema.update(ps, 1);  // 1 + 0.5 (3 - 1) = 2, 2 + 0.5 (6 - 2) = 4; -4 + 0.5 * 8 = 0
    CHECK(ema.average("w0").to_vector() == std::vector<double>{2, 4});
    CHECK(ema.average("w1").to_vector() == std::vector<double>{0});
    set(ps, 0, {5, 10});
    ema.update(ps, 2);  // 2 + 0.5 * 3 = 3.5, 4 + 0.5 * 6 = 7
    CHECK(ema.average("w0").to_vector() == std::vector<double>{3.5, 7});
    CHECK(ema.num_averaged() == 3);
    CHECK(ema.average("w0").dtype() == dt);
  }
  // decay 0.75 in f64: d * ema + (1 - d) * w, equal to the lerp form up to rounding.
  auto ps = make_params({{0.0}}, DType::F64);
  WeightAverager ema(AveragingSpec{"ema", 0.75, 0});
  double ref = 0.0;
  ema.update(ps, 0);
  for (int k = 1; k <= 20; ++k) {
    set(ps, 0, {double(k)});
    ema.update(ps, k);
    ref = 0.75 * ref + 0.25 * k;
  }
  CHECK(ema.average("w0").item() == doctest::Approx(ref).epsilon(1e-14));
}

TEST_CASE("averaging running: equal weights from start_step") {
  auto ps = make_params({{100, -100}}, DType::F64);
  WeightAverager avg(AveragingSpec{"running", 0.999, 2});
  CHECK_FALSE(avg.update(ps, 0));  // before start_step: ignored
  CHECK_FALSE(avg.update(ps, 1));
  CHECK(avg.num_averaged() == 0);
  set(ps, 0, {1, 10});
  CHECK(avg.update(ps, 2));
  set(ps, 0, {4, 20});
  avg.update(ps, 3);
  CHECK(avg.average("w0").to_vector() == std::vector<double>{2.5, 15});
  set(ps, 0, {7, 60});
  avg.update(ps, 4);  // (1 + 4 + 7) / 3 = 4, (10 + 20 + 60) / 3 = 30
  CHECK(avg.average("w0").to_vector() == std::vector<double>{4, 30});
  // Many updates: the running mean of 0..99 in f64.
  auto q = make_params({{0}}, DType::F64);
  WeightAverager m(AveragingSpec{"running", 0, 0});
  for (int k = 0; k < 100; ++k) set(q, 0, {double(k)}), m.update(q, k);
  CHECK(m.average("w0").item() == doctest::Approx(49.5).epsilon(1e-14));
}

TEST_CASE("averaging swap_in / swap_out: evaluate the average, restore raw bit-exactly") {
  std::vector<NamedParam> ps;
  ps.push_back({"a.weight", Var(testing::rand({3, 5}, 1, DType::F32), true)});
  ps.push_back({"a.bias", Var(testing::rand({5}, 2, DType::F32), true)});
  WeightAverager ema(AveragingSpec{"ema", 0.9, 0});
  for (int k = 0; k < 4; ++k) {
    set(ps, 1, testing::rand({5}, 10 + k, DType::F64).to_vector());
    Tensor w = ps[0].var.value();
    w.copy_(testing::rand({3, 5}, 20 + k, DType::F32));
    ema.update(ps, k);
  }
  const Tensor raw0 = ps[0].var.value().clone(), raw1 = ps[1].var.value().clone();
  void* const data_before = ps[0].var.value().data_ptr();
  ema.swap_in(ps);
  CHECK(ema.swapped_in());
  CHECK(ps[0].var.value().data_ptr() == data_before);  // same storage, values replaced in place
  CHECK(bits_equal(ps[0].var.value(), ema.average("a.weight")));
  CHECK(bits_equal(ps[1].var.value(), ema.average("a.bias")));
  CHECK_FALSE(bits_equal(ps[0].var.value(), raw0));
  CHECK_THROWS_WITH_AS(ema.update(ps, 9), doctest::Contains("swap_out first"), Error);
  CHECK_THROWS_WITH_AS(ema.swap_in(ps), doctest::Contains("already swapped in"), Error);
  ema.swap_out(ps);
  CHECK_FALSE(ema.swapped_in());
  CHECK(bits_equal(ps[0].var.value(), raw0));
  CHECK(bits_equal(ps[1].var.value(), raw1));
  CHECK_THROWS_WITH_AS(ema.swap_out(ps), doctest::Contains("not swapped in"), Error);
  ema.copy_to(ps);
  CHECK(bits_equal(ps[0].var.value(), ema.average("a.weight")));
}

TEST_CASE("averaging state round trip continues identically") {
  auto ps = make_params({{1, 2, 3}, {4}}, DType::F32);
  WeightAverager a(AveragingSpec{"running", 0, 0});
  a.update(ps, 0);
  set(ps, 0, {2, 2, 2});
  a.update(ps, 1);
  WeightAverager b(AveragingSpec{"running", 0, 0});
  b.load_state(a.state());
  CHECK(b.num_averaged() == 2);
  CHECK(a.state().count("avg.num_averaged") == 1);
  CHECK(a.state().count("avg.w0") == 1);
  set(ps, 0, {9, 8, 7});
  set(ps, 1, {1});
  a.update(ps, 2);
  b.update(ps, 2);
  CHECK(bits_equal(a.average("w0"), b.average("w0")));
  CHECK(bits_equal(a.average("w1"), b.average("w1")));
  // Parameters passed in another order are matched by name.
  std::vector<NamedParam> reversed = {ps[1], ps[0]};
  b.update(reversed, 3);
  a.update(ps, 3);
  CHECK(bits_equal(a.average("w0"), b.average("w0")));
}

TEST_CASE("averaging errors") {
  CHECK_THROWS_WITH_AS(WeightAverager(AveragingSpec{"swa", 0.9, 0}),
                       doctest::Contains("averaging: unknown kind 'swa'"), Error);
  CHECK_THROWS_WITH_AS(WeightAverager(AveragingSpec{"ema", 1.0, 0}),
                       doctest::Contains("averaging ema: decay = 1 must be in [0, 1)"), Error);
  CHECK_THROWS_WITH_AS(WeightAverager(AveragingSpec{"running", 0.9, -1}),
                       doctest::Contains("start_step = -1 must be >= 0"), Error);
  auto ps = make_params({{1, 2}}, DType::F32);
  WeightAverager ema(AveragingSpec{"ema", 0.9, 0});
  CHECK_THROWS_WITH_AS(ema.swap_in(ps), doctest::Contains("nothing averaged yet"), Error);
  ema.update(ps, 0);
  auto other = make_params({{1, 2, 3}}, DType::F32);
  CHECK_THROWS_WITH_AS(ema.update(other, 1), doctest::Contains("does not match its average"), Error);
  auto renamed = ps;
  renamed[0].name = "zz";
  CHECK_THROWS_WITH_AS(ema.update(renamed, 1), doctest::Contains("no average for parameter 'zz'"), Error);
  auto two = make_params({{1, 2}, {3}}, DType::F32);
  CHECK_THROWS_WITH_AS(ema.update(two, 1), doctest::Contains("2 parameters, the average holds 1"), Error);
}
