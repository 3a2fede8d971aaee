// Statistics for the paper reproduction; see trainer/stats.h for the
// definitions and references.
#include "trainer/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace gl {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Continued fraction of A&S 26.5.8 for I_x(a, b), modified Lentz (Numerical
// Recipes 2nd ed. 6.4 betacf): converges fast for x < (a + 1) / (a + b + 2).
double beta_continued_fraction(double a, double b, double x) {
  constexpr int kMaxIter = 10000;
  constexpr double kEps = 1e-16, kTiny = 1e-300;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= kMaxIter; ++m) {
    const double m2 = 2.0 * m;
    // Even step: d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m)).
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    // Odd step: d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < kEps) return h;
  }
  GL_CHECK(false, "regularized_incomplete_beta(a=", a, ", b=", b, ", x=", x,
           "): continued fraction did not converge");
  return kNaN;
}

}  // namespace

double stats_mean(const std::vector<double>& x) {
  if (x.empty()) return kNaN;
  double s = 0;
  for (double v : x) s += v;
  return s / double(x.size());
}

double stats_variance(const std::vector<double>& x) {
  if (x.size() < 2) return kNaN;
  const double m = stats_mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return s / double(x.size() - 1);
}

double regularized_incomplete_beta(double a, double b, double x) {
  GL_CHECK(a > 0 && std::isfinite(a), "regularized_incomplete_beta: a = ", a, " must be > 0");
  GL_CHECK(b > 0 && std::isfinite(b), "regularized_incomplete_beta: b = ", b, " must be > 0");
  GL_CHECK(x >= 0 && x <= 1, "regularized_incomplete_beta: x = ", x, " is outside [0, 1]");
  if (x == 0) return 0;
  if (x == 1) return 1;
  // Front factor x^a (1-x)^b / (a B(a, b)), in logs to avoid overflow.
  const double ln_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) +
                          b * std::log1p(-x);
  const double front = std::exp(ln_front);
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

double student_t_two_sided_p(double t, double dof) {
  GL_CHECK(dof > 0 && std::isfinite(dof), "student_t: dof = ", dof, " must be > 0");
  if (std::isnan(t)) return kNaN;
  if (std::isinf(t)) return 0;
  // P(|T| >= |t|) = I_{v/(v+t^2)}(v/2, 1/2) (A&S 26.7.1 / 26.5.27).
  return regularized_incomplete_beta(dof / 2, 0.5, dof / (dof + t * t));
}

double student_t_cdf(double t, double dof) {
  const double tail = student_t_two_sided_p(t, dof) / 2;  // P(T >= |t|)
  if (std::isnan(tail)) return kNaN;
  return t >= 0 ? 1 - tail : tail;
}

TTestResult paired_t_test(const std::vector<double>& a, const std::vector<double>& b) {
  GL_CHECK(a.size() == b.size(), "paired_t_test: samples of different sizes (", a.size(),
           " and ", b.size(), ")");
  TTestResult r;
  r.n = a.size();
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  r.mean_diff = stats_mean(d);
  r.sd_diff = std::sqrt(stats_variance(d));
  r.dof = r.n >= 1 ? double(r.n) - 1 : kNaN;
  if (r.n < 2 || !(r.sd_diff > 0)) {
    r.t = r.p_two_sided = kNaN;
    return r;
  }
  r.t = r.mean_diff / (r.sd_diff / std::sqrt(double(r.n)));
  r.p_two_sided = student_t_two_sided_p(r.t, r.dof);
  return r;
}

PearsonResult pearson(const std::vector<double>& x, const std::vector<double>& y) {
  GL_CHECK(x.size() == y.size(), "pearson: samples of different sizes (", x.size(), " and ",
           y.size(), ")");
  PearsonResult r;
  r.n = x.size();
  r.r = r.p_two_sided = kNaN;
  if (r.n < 2) return r;
  const double mx = stats_mean(x), my = stats_mean(y);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (!(sxx > 0) || !(syy > 0)) return r;
  r.r = std::max(-1.0, std::min(1.0, sxy / std::sqrt(sxx * syy)));
  if (r.n < 3) return r;
  if (std::fabs(r.r) == 1) {
    r.p_two_sided = 0;
    return r;
  }
  const double dof = double(r.n) - 2;
  r.p_two_sided = student_t_two_sided_p(r.r * std::sqrt(dof / (1 - r.r * r.r)), dof);
  return r;
}

WinCount count_wins(const std::vector<double>& a, const std::vector<double>& b) {
  GL_CHECK(a.size() == b.size(), "count_wins: samples of different sizes (", a.size(), " and ",
           b.size(), ")");
  WinCount w;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) continue;
    ++w.pairs;
    if (a[i] < b[i]) ++w.wins;
    else if (a[i] == b[i]) ++w.ties;
  }
  return w;
}

}  // namespace gl
