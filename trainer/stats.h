// The statistics of the paper's fork experiment (issue 7; spec.md 1.1):
// pairwise wins between schedules, the paired t-test of OLI cool-phase gaps
// against cosine, and the Pearson correlation of kurtosis with the gap in the
// checkpoint audit. Plain functions of vectors of doubles, no model code.
//
// Definitions (textbook; each test cites the published values it checks):
//   mean, sample variance  s^2 = sum (x - mean)^2 / (n - 1)
//   Student t CDF          F(t; v) = 1 - I_x(v/2, 1/2) / 2 for t >= 0, with
//                          x = v / (v + t^2), and F(-t) = 1 - F(t)
//                          (Abramowitz & Stegun 26.7.1 with 26.5.27)
//   I_x(a, b)              the regularized incomplete beta function, by the
//                          continued fraction of A&S 26.5.8 evaluated with
//                          the modified Lentz method (Numerical Recipes 6.4),
//                          using I_x(a, b) = 1 - I_{1-x}(b, a) where the
//                          fraction converges slowly (x > (a+1)/(a+b+2))
//   paired t-test          d_i = a_i - b_i, t = mean(d) / (s_d / sqrt(n)),
//                          dof = n - 1, two-sided p = I_{v/(v+t^2)}(v/2, 1/2)
//                          (= scipy.stats.ttest_rel, R t.test(paired=TRUE))
//   Pearson r              sum (x-mx)(y-my) / sqrt(sum (x-mx)^2 sum (y-my)^2),
//                          its two-sided p from t = r sqrt((n-2)/(1-r^2)),
//                          dof n - 2 (scipy.stats.pearsonr)
// Undefined results (too few points, zero variance) are NaN, never UB; a
// size mismatch between paired samples is an Error naming both sizes.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace gl {

double stats_mean(const std::vector<double>& x);      // NaN when empty
double stats_variance(const std::vector<double>& x);  // sample (n - 1); NaN when n < 2

// Regularized incomplete beta I_x(a, b) for a, b > 0 and x in [0, 1]
// (else Error naming the argument); relative accuracy ~1e-14.
double regularized_incomplete_beta(double a, double b, double x);

// Student t distribution with dof > 0 degrees of freedom (Error otherwise).
double student_t_cdf(double t, double dof);
// Two-sided tail probability P(|T| >= |t|).
double student_t_two_sided_p(double t, double dof);

struct TTestResult {
  size_t n = 0;            // pairs
  double mean_diff = 0;    // mean of a_i - b_i
  double sd_diff = 0;      // sample standard deviation of the differences
  double t = 0, dof = 0;   // NaN t (and p) when n < 2 or all differences equal
  double p_two_sided = 0;
};
// Paired t-test of a against b (a_i paired with b_i).
TTestResult paired_t_test(const std::vector<double>& a, const std::vector<double>& b);

struct PearsonResult {
  size_t n = 0;
  double r = 0;            // NaN when n < 2 or either sample is constant
  double p_two_sided = 0;  // NaN when n < 3
};
PearsonResult pearson(const std::vector<double>& x, const std::vector<double>& y);

// Pairwise wins: the number of i with a_i < b_i (lower is better, e.g. the
// INT4 gap), of ties, and of pairs compared (NaN pairs are skipped).
struct WinCount {
  size_t wins = 0, ties = 0, pairs = 0;
};
WinCount count_wins(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace gl
