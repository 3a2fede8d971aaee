// models/sampling: greedy = argmax, temperature scaling, top-k and top-p
// against hand-computed cases (including the order top-k then top-p, ties
// at the k-th value, and the one-token minimum), the inverse-CDF choice,
// and the Philox draws (deterministic per seed, uniform).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "models/sampling.h"

using namespace gl;

namespace {

std::vector<double> log_of(const std::vector<double>& p) {
  std::vector<double> out;
  for (double x : p) out.push_back(std::log(x));
  return out;
}

void check_probs(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-12));
  }
}

SamplingParams params(double temperature, int64_t top_k = 0, double top_p = 1.0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  return p;
}

}  // namespace

TEST_CASE("sampling: temperature 0 is the argmax, first index on ties") {
  const std::vector<double> logits{0.1, 2.5, -1.0, 2.5, 0.0};
  CHECK(argmax_token(logits) == 1);
  for (double u : {0.0, 0.5, 0.999})
    CHECK(sample_token(logits, params(0.0, 2, 0.3), u) == 1);  // filters and u irrelevant
  CHECK(argmax_token({-INFINITY, -3.0}) == 1);
}

TEST_CASE("sampling: temperature scales the logits before the softmax") {
  // logits log(1), log(2), log(4): softmax = (1, 2, 4) / 7.
  const std::vector<double> logits = log_of({1, 2, 4});
  check_probs(sampling_probs(logits, params(1.0)), {1.0 / 7, 2.0 / 7, 4.0 / 7});
  // T = 2: softmax(logits / 2) = (1, sqrt 2, 2) / (3 + sqrt 2).
  const double z = 3 + std::sqrt(2.0);
  check_probs(sampling_probs(logits, params(2.0)), {1 / z, std::sqrt(2.0) / z, 2 / z});
  // T = 0.5: (1, 4, 16) / 21.
  check_probs(sampling_probs(logits, params(0.5)), {1.0 / 21, 4.0 / 21, 16.0 / 21});
}

TEST_CASE("sampling: top-k keeps the k largest, and every tie of the k-th") {
  const std::vector<double> logits{1.0, 3.0, 2.0, 0.0};
  const double e3 = std::exp(3.0), e2 = std::exp(2.0);
  check_probs(sampling_probs(logits, params(1.0, 2)), {0, e3 / (e3 + e2), e2 / (e3 + e2), 0});
  check_probs(sampling_probs(logits, params(1.0, 1)), {0, 1, 0, 0});
  // k >= V and k = 0 are no filter.
  check_probs(sampling_probs(logits, params(1.0, 4)), sampling_probs(logits, params(1.0, 0)));
  check_probs(sampling_probs(logits, params(1.0, 9)), sampling_probs(logits, params(1.0, 0)));
  // Sorted: 2, 1, 1, 0; the 2nd largest is 1, tied with another 1: HF's
  // `scores < kth` removal keeps both, so three tokens survive.
  const std::vector<double> tied = log_of({4, 2, 2, 1});
  check_probs(sampling_probs(tied, params(1.0, 2)), {0.5, 0.25, 0.25, 0});
}

TEST_CASE("sampling: top-p keeps the smallest most-probable set reaching p") {
  const std::vector<double> logits = log_of({0.3, 0.5, 0.05, 0.15});
  // 0.5 alone < 0.7, 0.5 + 0.3 = 0.8 >= 0.7: two tokens, renormalised.
  check_probs(sampling_probs(logits, params(1.0, 0, 0.7)), {0.375, 0.625, 0, 0});
  check_probs(sampling_probs(logits, params(1.0, 0, 0.79)), {0.375, 0.625, 0, 0});
  // 0.8 < 0.81: the 0.15 token joins.
  check_probs(sampling_probs(logits, params(1.0, 0, 0.81)),
              {0.3 / 0.95, 0.5 / 0.95, 0, 0.15 / 0.95});
  // 0.5 >= 0.45: the top token alone; a tiny p still keeps one token.
  check_probs(sampling_probs(logits, params(1.0, 0, 0.45)), {0, 1, 0, 0});
  check_probs(sampling_probs(logits, params(1.0, 0, 1e-9)), {0, 1, 0, 0});
  check_probs(sampling_probs(logits, params(1.0, 0, 1.0)), {0.3, 0.5, 0.05, 0.15});
}

TEST_CASE("sampling: top-k applies before top-p (Hugging Face's order)") {
  // After top-k 3: (0.5, 0.3, 0.15) / 0.95; the mass before the 0.15 token
  // is 0.8 / 0.95 = 0.842 >= 0.83, so top-p drops it. Top-p on the raw
  // probabilities would have kept it (0.8 < 0.83).
  const std::vector<double> logits = log_of({0.5, 0.3, 0.15, 0.05});
  check_probs(sampling_probs(logits, params(1.0, 3, 0.83)), {0.625, 0.375, 0, 0});
  check_probs(sampling_probs(logits, params(1.0, 0, 0.83)),
              {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
}

TEST_CASE("sampling: the inverse-CDF choice") {
  const std::vector<double> probs{0.2, 0.0, 0.5, 0.3};
  CHECK(choose_from_probs(probs, 0.0) == 0);
  CHECK(choose_from_probs(probs, 0.19) == 0);
  CHECK(choose_from_probs(probs, 0.21) == 2);  // token 1 has probability 0: skipped
  CHECK(choose_from_probs(probs, 0.69) == 2);
  CHECK(choose_from_probs(probs, 0.71) == 3);
  CHECK(choose_from_probs(probs, 0.9999999999) == 3);
  // A zero-probability tail is never returned, even for u next to 1.
  CHECK(choose_from_probs({0.5, 0.5 - 1e-15, 0.0}, 1.0 - 0x1p-53) == 1);
  // sample_token = filter, then choose: top-k 2 of (0.5, 0.3, 0.2) leaves
  // (0.625, 0.375); u = 0.7 falls in the second token's interval.
  const std::vector<double> logits = log_of({0.5, 0.3, 0.2});
  CHECK(sample_token(logits, params(1.0, 2), 0.7) == 1);
  CHECK(sample_token(logits, params(1.0, 2), 0.6) == 0);
  CHECK(sample_token(logits, params(1.0), 0.85) == 2);
}

TEST_CASE("sampling: Philox draws are fixed by the seed, uniform, and match frequencies") {
  Generator a(42), b(42), c(43);
  std::vector<double> da, db;
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    da.push_back(philox_uniform_double(a));
    db.push_back(philox_uniform_double(b));
    differs = differs || philox_uniform_double(c) != da.back();
    CHECK(da.back() >= 0.0);
    CHECK(da.back() < 1.0);
  }
  CHECK(da == db);
  CHECK(differs);
  CHECK(a.offset == 100);  // one counter block per draw
  // 40000 draws through sample_token reproduce the distribution (binomial
  // standard deviation <= 0.0025; 0.01 is four of them).
  const std::vector<double> logits = log_of({0.1, 0.6, 0.3});
  Generator g(7);
  std::vector<int> count(3, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i)
    ++count[size_t(sample_token(logits, params(1.0), philox_uniform_double(g)))];
  CHECK(double(count[0]) / n == doctest::Approx(0.1).epsilon(0.1));
  CHECK(double(count[1]) / n == doctest::Approx(0.6).epsilon(0.02));
  CHECK(double(count[2]) / n == doctest::Approx(0.3).epsilon(0.04));
}

TEST_CASE("sampling: errors") {
  CHECK_THROWS_WITH_AS(argmax_token({0.0, NAN}), doctest::Contains("logit 1 is NaN"), Error);
  CHECK_THROWS_WITH_AS(sampling_probs({-INFINITY, -INFINITY}, params(1.0)),
                       doctest::Contains("every logit is -inf"), Error);
  CHECK_THROWS_WITH_AS(sample_token({1.0}, params(-1.0), 0.5), doctest::Contains("temperature"),
                       Error);
  CHECK_THROWS_WITH_AS(sample_token({1.0}, params(1.0, -1), 0.5), doctest::Contains("top_k"),
                       Error);
  CHECK_THROWS_WITH_AS(sample_token({1.0}, params(1.0, 0, 0.0), 0.5), doctest::Contains("top_p"),
                       Error);
  CHECK_THROWS_WITH_AS(sample_token({1.0}, params(1.0, 0, 1.5), 0.5), doctest::Contains("top_p"),
                       Error);
  CHECK_THROWS_WITH_AS(choose_from_probs({0.5, 0.5}, 1.0), doctest::Contains("[0, 1)"), Error);
  CHECK_THROWS_WITH_AS(choose_from_probs({0.0, 0.0}, 0.5), doctest::Contains("zero"), Error);
}
