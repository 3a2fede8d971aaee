// The fork experiment's statistics (trainer/stats.h) against independent,
// published references:
//   - Student t quantiles from printed tables (e.g. NIST/SEMATECH e-Handbook
//     of Statistical Methods, 1.3.6.7.2 "Critical values of the Student's t
//     distribution"; any textbook table gives the same 3-4 digits):
//     t_.975(8) = 2.306, t_.975(10) = 2.228, t_.995(5) = 4.032,
//     t_.95(20) = 1.725, t_.975(30) = 2.042. The table rounds t to 3 decimals,
//     so F(t_table) is checked against the exact value at that rounded t,
//     computed with mpmath 1.3 (30 digits):
//       python3 -c "import mpmath as m; m.mp.dps=30; v=8; t=2.306;
//         print(1 - m.betainc(v/2, .5, 0, v/(v+t*t), regularized=True)/2)"
//   - closed forms: v = 1 is the Cauchy CDF 1/2 + atan(t)/pi; v = 2 is
//     1/2 + t / (2 sqrt(2 + t^2)).
//   - the paired t-test on Student's sleep data (Cushny & Peebles 1905, R's
//     datasets::sleep; R: t.test(extra ~ group, data = sleep, paired = TRUE)
//     prints t = -4.0621, df = 9, p-value = 0.002833).
//   - Pearson r of Anscombe's quartet set I (Anscombe 1973, The American
//     Statistician 27(1)): r = 0.816 (0.81642 to 5 digits).
//   - spec.md 1.1's arithmetic: |t| = 5.46 on 8 dof gives p ~ 6.0e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "trainer/stats.h"

using namespace gl;

namespace {
constexpr double kPi = 3.14159265358979323846;
}

TEST_CASE("stats: regularized incomplete beta against mpmath") {
  // mpmath.betainc(a, b, 0, x, regularized=True), 30 digits.
  CHECK(regularized_incomplete_beta(2.5, 0.5, 0.3) == doctest::Approx(0.018927124071945652).epsilon(1e-12));
  CHECK(regularized_incomplete_beta(0.5, 7, 0.9) == doctest::Approx(0.99999997807021575).epsilon(1e-12));
  CHECK(regularized_incomplete_beta(50, 60, 0.45) == doctest::Approx(0.46423529143060363).epsilon(1e-12));
  CHECK(regularized_incomplete_beta(3, 4, 0) == 0);
  CHECK(regularized_incomplete_beta(3, 4, 1) == 1);
  // Symmetry I_x(a, b) = 1 - I_{1-x}(b, a) and I_x(1, 1) = x.
  CHECK(regularized_incomplete_beta(1, 1, 0.37) == doctest::Approx(0.37).epsilon(1e-14));
  CHECK(regularized_incomplete_beta(2, 5, 0.2) ==
        doctest::Approx(1 - regularized_incomplete_beta(5, 2, 0.8)).epsilon(1e-13));
  CHECK_THROWS_WITH_AS(regularized_incomplete_beta(0, 1, 0.5), doctest::Contains("a = 0"), Error);
  CHECK_THROWS_WITH_AS(regularized_incomplete_beta(1, 1, 1.5), doctest::Contains("outside [0, 1]"), Error);
}

TEST_CASE("stats: Student t CDF at published table quantiles") {
  struct Row {
    double t, dof, table_q, exact;  // exact: mpmath at the table's rounded t
  };
  const Row rows[] = {
      {2.306, 8, 0.975, 0.97499983861935789},  {2.228, 10, 0.975, 0.97499411409144432},
      {4.032, 5, 0.995, 0.99499929370320012},  {1.725, 20, 0.95, 0.95002587991744083},
      {2.042, 30, 0.975, 0.97498566467190105},
  };
  for (const Row& r : rows) {
    CAPTURE(r.t);
    CAPTURE(r.dof);
    CHECK(student_t_cdf(r.t, r.dof) == doctest::Approx(r.exact).epsilon(1e-12));
    CHECK(std::fabs(student_t_cdf(r.t, r.dof) - r.table_q) < 5e-5);  // the table's own rounding
    CHECK(student_t_cdf(-r.t, r.dof) == doctest::Approx(1 - r.exact).epsilon(1e-10));
  }
  // More points (mpmath): small t, heavy tails, large dof.
  CHECK(student_t_cdf(0.5, 3) == doctest::Approx(0.6742760175759245).epsilon(1e-12));
  CHECK(student_t_cdf(1e-3, 4) == doctest::Approx(0.50037499992187502).epsilon(1e-12));
  CHECK(student_t_cdf(40, 3) == doctest::Approx(0.99998280965960542).epsilon(1e-12));
  CHECK(student_t_two_sided_p(3.0, 100) == doctest::Approx(0.0034079153433294495).epsilon(1e-10));
  CHECK(student_t_cdf(0, 7) == doctest::Approx(0.5).epsilon(1e-15));
  // spec.md 1.1: the paper's t = -5.46 on 9 pairs (dof 8) is p ~ 6.0e-4, not < 1e-4.
  CHECK(student_t_two_sided_p(-5.46, 8) == doctest::Approx(0.00060153080502876308).epsilon(1e-9));
  CHECK_THROWS_WITH_AS(student_t_cdf(1, 0), doctest::Contains("dof = 0"), Error);
}

TEST_CASE("stats: Student t CDF closed forms for 1 and 2 degrees of freedom") {
  for (double t : {-30.0, -2.5, -0.3, 0.0, 0.7, 1.0, 6.314, 100.0}) {
    CAPTURE(t);
    CHECK(student_t_cdf(t, 1) == doctest::Approx(0.5 + std::atan(t) / kPi).epsilon(1e-12));
    CHECK(student_t_cdf(t, 2) == doctest::Approx(0.5 + t / (2 * std::sqrt(2 + t * t))).epsilon(1e-12));
  }
}

TEST_CASE("stats: paired t-test on Student's sleep data (R t.test paired)") {
  const std::vector<double> g1 = {0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0};
  const std::vector<double> g2 = {1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4};
  const TTestResult r = paired_t_test(g1, g2);
  CHECK(r.n == 10);
  CHECK(r.dof == 9);
  CHECK(r.mean_diff == doctest::Approx(-1.58).epsilon(1e-12));
  CHECK(r.t == doctest::Approx(-4.0621276833820365).epsilon(1e-10));  // R: -4.0621
  CHECK(r.p_two_sided == doctest::Approx(0.0028328901973842711).epsilon(1e-8));  // R: 0.002833
  // Swapping the samples flips t, keeps p.
  const TTestResult s = paired_t_test(g2, g1);
  CHECK(s.t == doctest::Approx(-r.t).epsilon(1e-12));
  CHECK(s.p_two_sided == doctest::Approx(r.p_two_sided).epsilon(1e-12));
  // Degenerate: constant differences, one pair.
  CHECK(std::isnan(paired_t_test({1, 2, 3}, {0, 1, 2}).t));
  CHECK(std::isnan(paired_t_test({1}, {0}).p_two_sided));
  CHECK_THROWS_WITH_AS(paired_t_test({1, 2}, {1}), doctest::Contains("different sizes (2 and 1)"), Error);
}

TEST_CASE("stats: Pearson r of Anscombe's quartet I, wins, means") {
  const std::vector<double> x = {10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5};
  const std::vector<double> y = {8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68};
  const PearsonResult p = pearson(x, y);
  CHECK(p.n == 11);
  CHECK(p.r == doctest::Approx(0.81642).epsilon(1e-5));
  CHECK(p.r == doctest::Approx(0.81642051634484).epsilon(1e-12));
  // p from t = r sqrt(9 / (1 - r^2)) on 9 dof (mpmath betainc: 0.00216962887307879).
  CHECK(p.p_two_sided == doctest::Approx(0.00216962887307879).epsilon(1e-9));
  CHECK(pearson({1, 2, 3}, {2, 4, 6}).r == doctest::Approx(1.0));
  CHECK(pearson({1, 2, 3}, {2, 4, 6}).p_two_sided == 0);
  CHECK(std::isnan(pearson({1, 1, 1}, {2, 4, 6}).r));

  const double nan = std::numeric_limits<double>::quiet_NaN();
  const WinCount w = count_wins({1, 5, 3, nan}, {2, 4, 3, 1});
  CHECK(w.wins == 1);
  CHECK(w.ties == 1);
  CHECK(w.pairs == 3);
  CHECK(stats_mean({1, 2, 6}) == 3);
  CHECK(stats_variance({1, 2, 6}) == doctest::Approx(7.0));
  CHECK(std::isnan(stats_variance({1})));
}
