#include "tests/testing.h"

#include <cmath>
#include <cstdio>

#include "core/device_hooks.h"

namespace gl::testing {

bool check_close(const std::string& label, const Tensor& got, const Tensor& ref, double atol,
                 double rtol, bool verbose) {
  if (got.shape() != ref.shape()) {
    std::printf("%s: shape mismatch %s vs %s: NOT OK\n", label.c_str(), got.describe().c_str(),
                ref.describe().c_str());
    return false;
  }
  const std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double max_abs = 0, max_rel = 0;
  size_t worst = 0, bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool ok;
    double diff = 0;
    if (!std::isfinite(r[i])) {
      ok = (std::isnan(r[i]) && std::isnan(g[i])) || g[i] == r[i];
    } else {
      diff = std::fabs(g[i] - r[i]);
      ok = diff <= atol + rtol * std::fabs(r[i]);
      if (diff > max_abs) {
        max_abs = diff;
        worst = i;
      }
      if (r[i] != 0) max_rel = std::max(max_rel, diff / std::fabs(r[i]));
    }
    if (!ok) ++bad;
    if ((verbose || !ok) && (i < 4 || (!ok && bad <= 4)))
      std::printf("  %s[%zu]: got %.10g ref %.10g %s\n", label.c_str(), i, g[i], r[i],
                  ok ? "OK" : "NOT OK");
  }
  if (bad || verbose)
    std::printf("%s: %zu/%zu mismatches, max abs diff %.3g (at %zu), max rel diff %.3g "
                "(atol %.3g, rtol %.3g): %s\n",
                label.c_str(), bad, g.size(), max_abs, worst, max_rel, atol, rtol,
                bad ? "NOT OK" : "OK");
  return bad == 0;
}

Tensor rand(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  return Tensor::uniform(shape, gen, -1.0, 1.0, dtype);
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype) {
  Generator gen(seed);
  return Tensor::normal(shape, gen, 0.0, 1.0, dtype);
}

bool have_cuda() { return cuda_hooks::device_count() > 0; }

// L(inputs) = sum(fn(inputs) * R), forward only.
static double weighted_sum(const VarFn& fn, const std::vector<Var>& vars, const Tensor& R) {
  NoGradGuard no_grad;
  const Tensor out = fn(vars).value();
  return sum_tensor(binary(out, R, BinaryOp::MUL), {}, false).item();
}

bool gradcheck(const std::string& label, const VarFn& fn, const std::vector<Tensor>& inputs,
               const GradcheckOptions& opt) {
  std::vector<Var> vars;
  for (const Tensor& t : inputs) {
    const bool floating = is_floating(t.dtype());
    Tensor v = t.to(Device::cpu());
    v = floating ? v.to(DType::F64).clone() : v.clone();
    vars.emplace_back(v, floating);
  }
  // Analytic gradients through the tape.
  const Var out = fn(vars);
  const Tensor R = randn(out.shape(), opt.seed);
  const Var loss = sum(mul(out, Var(R)));
  loss.backward();

  bool all_ok = true;
  for (size_t k = 0; k < vars.size(); ++k) {
    if (!vars[k].requires_grad()) continue;
    Tensor& x = vars[k].mutable_value();
    double* p = x.data<double>();
    std::vector<double> fd(size_t(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double saved = p[i];
      p[i] = saved + opt.eps;
      const double lp = weighted_sum(fn, vars, R);
      p[i] = saved - opt.eps;
      const double lm = weighted_sum(fn, vars, R);
      p[i] = saved;
      fd[size_t(i)] = (lp - lm) / (2 * opt.eps);
    }
    const Tensor numeric = Tensor::from_vector(fd, x.shape(), DType::F64);
    const Tensor analytic = vars[k].grad().defined() ? vars[k].grad() : Tensor::zeros_like(x);
    const std::string name = label + " d(input " + std::to_string(k) + ")";
    all_ok = check_close(name, analytic, numeric, opt.atol, opt.rtol) && all_ok;
  }
  return all_ok;
}

}  // namespace gl::testing
