// LR schedules (optim/schedule.h): every kind against its closed form,
// recomputed here independently with plain doubles at chosen steps; the
// Pythia values that spec.md 2.3 states; phase labels; continuity and
// monotonicity where they hold; continuation (offset) = the base schedule
// shifted; validation errors naming the schedule and the parameter.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "optim/schedule.h"

using namespace gl;

namespace {

const double kPi = 3.14159265358979323846;

std::unique_ptr<Schedule> sched(const std::string& kind, std::map<std::string, double> params,
                                std::map<std::string, std::string> options = {}) {
  return make_schedule(ScheduleSpec{kind, std::move(params), std::move(options)});
}

}  // namespace

TEST_CASE("schedule constant and linear_warmup") {
  auto c = sched("constant", {{"peak", 3e-4}});
  CHECK(c->lr(0) == 3e-4);
  CHECK(c->lr(123456) == 3e-4);
  CHECK(c->phase(7) == "constant");

  auto w = sched("linear_warmup", {{"peak", 1e-3}, {"warmup", 100}});
  CHECK(w->lr(0) == 0.0);
  CHECK(w->lr(25) == doctest::Approx(2.5e-4).epsilon(1e-15));
  CHECK(w->lr(99) == doctest::Approx(9.9e-4).epsilon(1e-15));
  CHECK(w->lr(100) == 1e-3);
  CHECK(w->lr(5000) == 1e-3);
  CHECK(w->phase(99) == "warmup");
  CHECK(w->phase(100) == "constant");

  auto w0 = sched("linear_warmup", {{"peak", 1e-3}, {"warmup", 0}});
  CHECK(w0->lr(0) == 1e-3);
}

TEST_CASE("schedule cosine: warmup then textbook cosine to min_ratio") {
  const double peak = 6e-4, lo = 6e-5;
  auto s = sched("cosine", {{"peak", peak}, {"warmup", 1430}, {"total", 143000}, {"min_ratio", 0.1}});
  auto expect = [&](int64_t t) {
    if (t < 1430) return peak * double(t) / 1430.0;
    if (t >= 143000) return lo;
    const double p = double(t - 1430) / double(143000 - 1430);
    return lo + (peak - lo) * 0.5 * (1 + std::cos(kPi * p));
  };
  for (int64_t t : {0, 1, 715, 1429, 1430, 1431, 50000, 72215, 100000, 142999, 143000, 200000})
    CHECK_MESSAGE(s->lr(t) == doctest::Approx(expect(t)).epsilon(1e-14), "step ", t);
  CHECK(s->lr(1430) == doctest::Approx(peak).epsilon(1e-15));
  // Halfway through the decay the LR is the midpoint of peak and min.
  CHECK(s->lr(1430 + (143000 - 1430) / 2) == doctest::Approx((peak + lo) / 2).epsilon(1e-12));
  CHECK(s->lr(143000) == doctest::Approx(lo).epsilon(1e-15));
  CHECK(s->phase(0) == "warmup");
  CHECK(s->phase(1430) == "cosine");
  CHECK(s->phase(143000) == "min");
  // Non-increasing after warmup; non-decreasing during warmup; no jumps.
  double prev = s->lr(1430);
  for (int64_t t = 1431; t <= 143100; t += 7) {
    const double cur = s->lr(t);
    CHECK(cur <= prev);
    CHECK(prev - cur < 1e-7);
    prev = cur;
  }
}

TEST_CASE("schedule pythia_cosine: the GPT-NeoX v1.0 formula and the values of spec 2.3") {
  auto s = sched("pythia_cosine", {});  // the defaults are Pythia-160m's
  // spec.md 2.3 table, as printed there (4 significant digits, 3 for the last two).
  const struct { int64_t step; double lr, tol; } table[] = {
      {10000, 5.947e-4, 5e-8}, {20000, 5.754e-4, 5e-8}, {30000, 5.428e-4, 5e-8},
      {40000, 4.986e-4, 5e-8}, {50000, 4.448e-4, 5e-8}, {60000, 3.841e-4, 5e-8},
      {70000, 3.193e-4, 5e-8}, {80000, 2.536e-4, 5e-8}, {90000, 1.901e-4, 5e-8},
      {100000, 1.319e-4, 5e-8}, {110000, 8.18e-5, 5e-8}, {115000, 6.06e-5, 5e-7}};
  for (const auto& e : table)
    CHECK_MESSAGE(std::fabs(s->lr(e.step) - e.lr) <= e.tol, "step ", e.step, " lr ", s->lr(e.step));
  // The formula itself, written out again: n = min(t, E - W), cosine over E.
  auto expect = [](int64_t t) {
    const double n = double(std::min<int64_t>(t, 143000 - 1430));
    if (t <= 1430) return 6e-4 * n / 1430.0;
    return std::max(6e-4 / 2 * (std::cos(kPi * (n - 1430) / 143000.0) + 1), 6e-5);
  };
  for (int64_t t : {0, 1, 100, 1429, 1430, 1431, 2000, 77777, 115138, 115139, 141570, 143000, 150000})
    CHECK_MESSAGE(s->lr(t) == doctest::Approx(expect(t)).epsilon(1e-14), "step ", t);
  CHECK(s->lr(0) == 0.0);  // v1.0's first update used LR 0 (spec 2.3, off-by-one)
  CHECK(s->lr(1430) == doctest::Approx(6e-4).epsilon(1e-15));
  // "From step 115,139 to 143,000 the LR is flat at 6e-5."
  CHECK(s->lr(115138) > 6e-5);
  CHECK(s->phase(115138) == "cosine");
  for (int64_t t : {115139, 120000, 141570, 143000, 160000}) {
    CHECK(s->lr(t) == 6e-5);  // exactly the clamp value, as NeoX's max(lr, min_lr)
    CHECK(s->phase(t) == "floor");
  }
  CHECK(s->phase(1430) == "warmup");
  CHECK(s->phase(1431) == "cosine");
}

TEST_CASE("schedule sgdr: torch CosineAnnealingWarmRestarts closed form, restart decay") {
  // torch (lr_scheduler.py, CosineAnnealingWarmRestarts.step(epoch)):
  //   T_mult == 1: T_cur = t mod T_0, T_i = T_0
  //   else: n = int(log(t / T_0 * (T_mult - 1) + 1, T_mult)),
  //         T_cur = t - T_0 (T_mult^n - 1) / (T_mult - 1), T_i = T_0 T_mult^n
  //   lr = eta_min + (eta_max - eta_min) (1 + cos(pi T_cur / T_i)) / 2
  // torch's float log lands just below an integer at some exact restart steps
  // (e.g. t = 121, T_0 = 1, T_mult = 3 gives n = 4, not 5); the 1e-9 nudge
  // takes the mathematically exact cycle, which gridlock computes with integers.
  auto torch_lr = [](int64_t t, int64_t t0, int64_t m, double peak, double eta_min, double decay) {
    double cur, len;
    int64_t n;
    if (m == 1) {
      n = t / t0, cur = double(t % t0), len = double(t0);
    } else {
      n = int64_t(std::floor(std::log(double(t) / t0 * (m - 1) + 1) / std::log(double(m)) + 1e-9));
      cur = double(t) - t0 * (std::pow(m, n) - 1) / (m - 1);
      len = t0 * std::pow(m, n);
    }
    return eta_min + (peak - eta_min) * std::pow(decay, n) * (1 + std::cos(kPi * cur / len)) / 2;
  };
  const struct { int64_t t0, m; double eta_min, decay; } cases[] = {
      {10, 1, 0.0, 1.0}, {10, 2, 1e-5, 1.0}, {1, 3, 0.0, 1.0}, {7, 2, 2e-5, 0.5}, {3, 3, 0.0, 0.8}};
  for (const auto& c : cases) {
    auto s = sched("sgdr", {{"peak", 1e-3}, {"t0", double(c.t0)}, {"t_mult", double(c.m)},
                            {"eta_min", c.eta_min}, {"restart_decay", c.decay}});
    for (int64_t t = 0; t < 2000; ++t)
      REQUIRE_MESSAGE(s->lr(t) == doctest::Approx(torch_lr(t, c.t0, c.m, 1e-3, c.eta_min, c.decay))
                                      .epsilon(1e-12),
                      "t0 ", c.t0, " t_mult ", c.m, " step ", t);
  }
  // Restarts of T_0 = 10, T_mult = 2 at 10, 30, 70: back to the (decayed) peak.
  auto s = sched("sgdr", {{"peak", 1e-3}, {"t0", 10}, {"t_mult", 2}, {"restart_decay", 0.5}});
  CHECK(s->lr(0) == 1e-3);
  CHECK(s->lr(10) == doctest::Approx(5e-4).epsilon(1e-15));
  CHECK(s->lr(30) == doctest::Approx(2.5e-4).epsilon(1e-15));
  CHECK(s->lr(20) == doctest::Approx(2.5e-4).epsilon(1e-12));  // halfway through cycle 1
  CHECK(s->phase(9) == "restart 0");
  CHECK(s->phase(10) == "restart 1");
  CHECK(s->phase(29) == "restart 1");
  CHECK(s->phase(70) == "restart 3");
}

TEST_CASE("schedule oli: base * (1 + A s(t)), hot and cool phases") {
  auto wave = [](int64_t t, int64_t period, double h) {
    const double pos = double(t % period), hot = h * period;
    return pos < hot ? 0.5 * (1 - std::cos(2 * kPi * pos / hot)) : 0.0;
  };
  auto s = sched("oli", {{"amplitude", 1.0}, {"period", 100}, {"hot_fraction", 0.25}, {"peak", 1e-3}},
                 {{"base", "constant"}});
  CHECK(s->lr(0) == 1e-3);
  CHECK(s->lr(12) == doctest::Approx(1e-3 * (1 + wave(12, 100, 0.25))).epsilon(1e-14));
  CHECK(s->lr(112) == s->lr(12));  // periodic over a constant base
  CHECK(s->lr(50) == 1e-3);        // cool: exactly the base
  CHECK(s->phase(0) == "hot");
  CHECK(s->phase(24) == "hot");
  CHECK(s->phase(25) == "cool");
  CHECK(s->phase(99) == "cool");
  CHECK(s->phase(100) == "hot");
  // Over the Pythia cosine (the default base), at a fork-like region.
  auto base = sched("pythia_cosine", {});
  auto o = sched("oli", {{"amplitude", 0.5}, {"period", 500}, {"hot_fraction", 0.5}});
  for (int64_t t : {0, 1000, 1125, 1249, 1250, 1499, 50000, 50125, 120000, 120100})
    CHECK_MESSAGE(o->lr(t) == doctest::Approx(base->lr(t) * (1 + 0.5 * wave(t, 500, 0.5))).epsilon(1e-14),
                  "step ", t);
  // Mid-hot: s = 1, the peak of the oscillation is base * (1 + A).
  CHECK(o->lr(50125) == doctest::Approx(base->lr(50125) * 1.5).epsilon(1e-14));
  // A = 0 is the base schedule.
  auto flat = sched("oli", {{"amplitude", 0.0}, {"period", 200}, {"hot_fraction", 0.25}});
  for (int64_t t : {0, 999, 1430, 70000, 143000}) CHECK(flat->lr(t) == base->lr(t));
  // The base's own options pass through (wsd decay_shape).
  auto ow = sched("oli", {{"amplitude", 1.0}, {"period", 10}, {"hot_fraction", 0.5}, {"peak", 1.0},
                          {"total", 100}, {"decay_fraction", 0.5}},
                  {{"base", "wsd"}, {"decay_shape", "1-sqrt"}});
  CHECK(ow->lr(76) == doctest::Approx(1 - std::sqrt(0.52)).epsilon(1e-14));  // cool, in the decay
}

TEST_CASE("schedule one_cycle: torch OneCycleLR defaults, cos annealing") {
  // torch: initial = max / div_factor, min = initial / final_div_factor,
  // phase ends at pct_start * total - 1 and total - 1; annealing_cos(s, e, p) =
  // e + (s - e) / 2 (cos(pi p) + 1).
  auto cos_anneal = [](double a, double b, double p) { return b + (a - b) / 2 * (std::cos(kPi * p) + 1); };
  const double peak = 0.1, init = peak / 25, fin = init / 1e4;
  auto s = sched("one_cycle", {{"peak", peak}, {"total", 100}});
  const double up = 0.3 * 100 - 1;  // 29
  for (int64_t t : {0, 1, 10, 28, 29, 30, 50, 98, 99}) {
    const double e = t <= up ? cos_anneal(init, peak, t / up) : cos_anneal(peak, fin, (t - up) / (99 - up));
    CHECK_MESSAGE(s->lr(t) == doctest::Approx(e).epsilon(1e-14), "step ", t);
  }
  CHECK(s->lr(0) == doctest::Approx(0.004).epsilon(1e-15));
  CHECK(s->lr(29) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(s->lr(99) == doctest::Approx(4e-7).epsilon(1e-12));
  CHECK(s->lr(500) == s->lr(99));  // held at the final LR past the end
  CHECK(s->phase(29) == "up");
  CHECK(s->phase(30) == "down");
  auto s2 = sched("one_cycle", {{"peak", 1.0}, {"total", 10}, {"pct_start", 0.5}, {"div_factor", 10},
                                {"final_div_factor", 100}});
  CHECK(s2->lr(0) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(s2->lr(4) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(s2->lr(9) == doctest::Approx(0.001).epsilon(1e-12));
  CHECK(s2->lr(2) == doctest::Approx(cos_anneal(0.1, 1.0, 0.5)).epsilon(1e-14));
}

TEST_CASE("schedule wsd: warmup, stable, decay shapes") {
  for (const std::string shape : {"linear", "cosine", "1-sqrt"}) {
    auto s = sched("wsd", {{"peak", 2e-3}, {"warmup", 10}, {"total", 100}, {"decay_fraction", 0.2},
                           {"min_ratio", 0.1}},
                   {{"decay_shape", shape}});
    auto f = [&](double p) {
      return shape == "linear" ? 1 - p : shape == "cosine" ? 0.5 * (1 + std::cos(kPi * p)) : 1 - std::sqrt(p);
    };
    CHECK(s->lr(0) == 0.0);
    CHECK(s->lr(5) == doctest::Approx(1e-3).epsilon(1e-15));
    CHECK(s->lr(10) == 2e-3);
    CHECK(s->lr(79) == 2e-3);
    for (int64_t t : {80, 81, 85, 90, 99, 100}) {
      const double p = (t - 80) / 20.0;
      CHECK_MESSAGE(s->lr(t) == doctest::Approx(2e-4 + (2e-3 - 2e-4) * f(p)).epsilon(1e-14), shape, " ", t);
    }
    CHECK(s->lr(100) == doctest::Approx(2e-4).epsilon(1e-15));
    CHECK(s->lr(1000) == doctest::Approx(2e-4).epsilon(1e-15));
    CHECK(s->phase(9) == "warmup");
    CHECK(s->phase(10) == "stable");
    CHECK(s->phase(80) == "decay");
    CHECK(s->phase(100) == "min");
    double prev = s->lr(10);
    for (int64_t t = 11; t <= 110; ++t) {
      CHECK(s->lr(t) <= prev);
      prev = s->lr(t);
    }
  }
  // Default shape is linear; decay_fraction 0 means no decay before total.
  auto d = sched("wsd", {{"peak", 1.0}, {"total", 50}, {"decay_fraction", 0}});
  CHECK(d->spec().options.at("decay_shape") == "linear");
  CHECK(d->lr(49) == 1.0);
  CHECK(d->lr(50) == 0.0);
}

TEST_CASE("schedule continuation: offset s equals the base schedule shifted by s") {
  const ScheduleSpec specs[] = {
      {"constant", {{"peak", 1e-3}}, {}},
      {"linear_warmup", {{"peak", 1e-3}, {"warmup", 50}}, {}},
      {"cosine", {{"peak", 1e-3}, {"warmup", 20}, {"total", 300}, {"min_ratio", 0.1}}, {}},
      {"pythia_cosine", {}, {}},
      {"sgdr", {{"peak", 1e-3}, {"t0", 7}, {"t_mult", 2}, {"restart_decay", 0.7}}, {}},
      {"oli", {{"amplitude", 2}, {"period", 30}, {"hot_fraction", 0.25}}, {}},
      {"one_cycle", {{"peak", 1e-2}, {"total", 200}}, {}},
      {"wsd", {{"peak", 1e-3}, {"warmup", 10}, {"total", 300}}, {{"decay_shape", "cosine"}}},
  };
  for (const auto& spec : specs) {
    auto base = make_schedule(spec);
    for (int64_t s : {int64_t(1), int64_t(37), int64_t(143), int64_t(115000)}) {
      ScheduleSpec fork = spec;
      fork.params["offset"] = double(s);
      auto f = make_schedule(fork);
      CHECK(f->offset() == s);
      for (int64_t k : {0, 1, 2, 13, 100, 257}) {
        REQUIRE_MESSAGE(f->lr(k) == base->lr(k + s), spec.kind, " offset ", s, " step ", k);
        REQUIRE(f->phase(k) == base->phase(k + s));
      }
    }
  }
  // Resuming needs nothing at all: the schedule is a pure function of the step.
  auto a = make_schedule(specs[4]);
  auto b = make_schedule(specs[4]);
  for (int64_t t = 0; t < 100; ++t) CHECK(a->lr(t) == b->lr(t));
}

TEST_CASE("schedule validation: errors name the schedule and the parameter") {
  auto throws = [](const ScheduleSpec& s, const std::string& what) {
    CHECK_THROWS_WITH_AS(make_schedule(s), doctest::Contains(what.c_str()), Error);
  };
  throws({"cosinus", {}, {}}, "schedule: unknown kind 'cosinus'");
  throws({"cosine", {{"peak", 1e-3}}, {}}, "schedule cosine: missing parameter total");
  throws({"cosine", {{"peak", 1e-3}, {"total", 10}, {"warmpu", 1}}, {}},
         "schedule cosine: unknown parameter 'warmpu'");
  throws({"cosine", {{"peak", 1e-3}, {"total", 10.5}}, {}}, "schedule cosine: parameter total = 10.5 must be an integer");
  throws({"cosine", {{"peak", 1e-3}, {"total", 10}, {"warmup", 10}}, {}}, "schedule cosine: total = 10 must be > warmup");
  throws({"cosine", {{"peak", 1e-3}, {"total", 10}, {"min_ratio", 1.5}}, {}}, "schedule cosine: min_ratio = 1.5");
  throws({"constant", {{"peak", 0}}, {}}, "schedule constant: peak = 0 must be > 0");
  throws({"constant", {{"peak", NAN}}, {}}, "schedule constant: parameter peak = nan is not finite");
  throws({"constant", {{"peak", 1}, {"offset", -3}}, {}}, "schedule constant: offset must be >= 0");
  throws({"sgdr", {{"peak", 1e-3}, {"t0", 0}}, {}}, "schedule sgdr: t0 = 0 must be >= 1");
  throws({"sgdr", {{"peak", 1e-3}, {"t0", 5}, {"eta_min", 1e-3}}, {}}, "schedule sgdr: eta_min = 0.001");
  throws({"sgdr", {{"peak", 1e-3}, {"t0", 5}, {"restart_decay", 0}}, {}}, "schedule sgdr: restart_decay = 0");
  throws({"oli", {{"amplitude", 1}, {"period", 10}, {"hot_fraction", 0}}, {}}, "schedule oli: hot_fraction = 0");
  throws({"oli", {{"amplitude", -1}, {"period", 10}, {"hot_fraction", 0.5}}, {}}, "schedule oli: amplitude = -1");
  throws({"oli", {{"amplitude", 1}, {"period", 10}, {"hot_fraction", 0.5}}, {{"base", "oli"}}},
         "schedule oli: option base cannot be oli");
  throws({"oli", {{"amplitude", 1}, {"period", 10}, {"hot_fraction", 0.5}}, {{"base", "constant"}}},
         "schedule oli: missing parameter peak");
  throws({"one_cycle", {{"peak", 1}, {"total", 2}}, {}}, "schedule one_cycle: pct_start * total - 1");
  throws({"one_cycle", {{"peak", 1}, {"total", 100}, {"pct_start", 1}}, {}}, "schedule one_cycle: pct_start = 1");
  throws({"wsd", {{"peak", 1}, {"total", 10}, {"warmup", 9}, {"decay_fraction", 0.5}}, {}},
         "schedule wsd: warmup (9) + decay steps (5) exceed total (10)");
  throws({"wsd", {{"peak", 1}, {"total", 10}}, {{"decay_shape", "sqrt"}}},
         "schedule wsd: option decay_shape = 'sqrt' is not one of linear, cosine, 1-sqrt");
  throws({"cosine", {{"peak", 1}, {"total", 10}}, {{"decay_shape", "linear"}}},
         "schedule cosine: unknown option 'decay_shape'");
  auto s = sched("constant", {{"peak", 1}});
  CHECK_THROWS_WITH_AS(s->lr(-1), doctest::Contains("schedule constant: lr at negative step -1"), Error);
}

TEST_CASE("schedule tables: every kind documents its parameters, and describe") {
  for (const auto& k : schedule_kinds()) {
    const auto params = schedule_params(k);
    CHECK(!params.empty());
    CHECK(params.back().name == "offset");
    for (const auto& p : params) CHECK_MESSAGE(!p.doc.empty(), k, ".", p.name);
  }
  auto s = sched("pythia_cosine", {});
  CHECK(s->describe() ==
        "pythia_cosine(min_lr=6.0000000000000002e-05, offset=0, peak=0.00059999999999999995, total=143000, "
        "warmup=1430)");
}
