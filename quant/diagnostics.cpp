// Per-layer weight statistics under a quantizer: kurtosis, absmax/std, grid
// alignment, bin flips. Definitions and references in quant/diagnostics.h.
// Everything runs on the CPU in double: these are read once per checkpoint,
// and exactness matters more than speed (the tests recompute them by hand).
#include "quant/diagnostics.h"

#include <cmath>

#include "core/error.h"

namespace gl {

namespace {

std::vector<double> as_doubles(const Tensor& w) {
  return w.to(Device::cpu()).to(DType::F64).contiguous().to_vector_as<double>();
}

Json shape_json(const Shape& s) {
  Json a = Json::array();
  for (int64_t d : s) a.push_back(d);
  return a;
}

}  // namespace

WeightMoments weight_moments(const Tensor& w) {
  GL_CHECK(w.defined() && w.numel() > 0, "weight_moments: empty or undefined tensor ",
           w.defined() ? w.describe() : std::string("(undefined)"));
  GL_CHECK(is_floating(w.dtype()), "weight_moments: needs a floating tensor, got ", w.describe());
  const std::vector<double> x = as_doubles(w);
  WeightMoments m;
  m.n = int64_t(x.size());
  // Two passes: the mean first, then central moments (a one-pass raw-moment
  // formula loses everything to cancellation when |mean| >> std).
  double sum = 0;
  for (double v : x) sum += v;
  m.mean = sum / double(m.n);
  double m2 = 0, m4 = 0;
  for (double v : x) {
    const double d = v - m.mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
    m.absmax = std::max(m.absmax, std::fabs(v));
  }
  m2 /= double(m.n);
  m4 /= double(m.n);
  m.std = std::sqrt(m2);
  m.excess_kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3.0 : 0.0;
  return m;
}

GridAlignment grid_alignment(const Tensor& w, const QuantSpec& spec) {
  validate_for_shape(spec, w.shape());
  const QuantScales sc = compute_scales(w, spec);
  const std::vector<double> x = as_doubles(w);
  const std::vector<double> s = as_doubles(sc.scale);
  const bool min_offset = spec.zero_point == QuantZeroPoint::ASYM_MIN;
  const std::vector<double> m = min_offset ? as_doubles(sc.zero) : std::vector<double>{};
  const int64_t G = quant_group_length(spec, w.shape());
  GridAlignment g;
  int64_t near = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const size_t k = i / size_t(G);
    // ASYM_ZERO adds an integer zero point after the division: it moves v
    // by a whole number, so the distance to the grid is that of w / s.
    const double v = s[k] == 0 ? 0.0 : (min_offset ? (x[i] - m[k]) / s[k] : x[i] / s[k]);
    g.grid_dist += std::fabs(v - std::nearbyint(v));
    near += std::fabs(v - std::floor(v) - 0.5) < kNearBoundary;
  }
  g.grid_dist /= double(x.size());
  g.near_boundary = double(near) / double(x.size());
  return g;
}

double bin_flip_share(const Tensor& a, const Tensor& b, const QuantSpec& spec) {
  GL_CHECK(a.shape() == b.shape(), "bin_flip_share: shapes differ: ", a.describe(), " vs ",
           b.describe());
  GL_CHECK(spec.rounding != QuantRounding::STOCHASTIC, "bin_flip_share: quant spec '", spec.name,
           "' rounds stochastically; its codes differ by chance, so flips mean nothing");
  const std::vector<int32_t> qa = quantize(a, spec).codes.to_vector_as<int32_t>();
  const std::vector<int32_t> qb = quantize(b, spec).codes.to_vector_as<int32_t>();
  int64_t diff = 0;
  for (size_t i = 0; i < qa.size(); ++i) diff += qa[i] != qb[i];
  return qa.empty() ? 0.0 : double(diff) / double(qa.size());
}

LayerDiagnostics layer_diagnostics(const std::string& name, const Tensor& w,
                                   const std::vector<QuantSpec>& specs) {
  LayerDiagnostics d;
  d.name = name;
  d.shape = w.shape();
  d.numel = w.numel();
  const WeightMoments m = weight_moments(w);
  d.excess_kurtosis = m.excess_kurtosis;
  d.absmax = m.absmax;
  d.std = m.std;
  d.absmax_over_std = m.std > 0 ? m.absmax / m.std : 0.0;
  for (const QuantSpec& spec : specs) {
    const GridAlignment g = grid_alignment(w, spec);
    LayerDiagnostics::Fmt f;
    f.format = spec.name;
    f.grid_dist = g.grid_dist;
    f.near_boundary = g.near_boundary;
    d.formats.push_back(f);
  }
  return d;
}

Json LayerDiagnostics::to_json() const {
  Json j = Json::object();
  j.set("name", name);
  j.set("shape", shape_json(shape));
  j.set("numel", numel);
  // Non-finite (not computed) statistics are left out: JSON has no NaN.
  auto set_finite = [&](const char* key, double v) {
    if (std::isfinite(v)) j.set(key, v);
  };
  set_finite("excess_kurtosis", excess_kurtosis);
  set_finite("absmax", absmax);
  set_finite("std", std);
  set_finite("absmax_over_std", absmax_over_std);
  Json fmts = Json::object();
  for (const Fmt& f : formats) {
    Json fj = Json::object();
    fj.set("grid_dist", f.grid_dist);
    fj.set("near_boundary", f.near_boundary);
    if (!std::isnan(f.bin_flips)) fj.set("bin_flips", f.bin_flips);
    if (!std::isnan(f.sensitivity_gap_pct)) fj.set("sensitivity_gap_pct", f.sensitivity_gap_pct);
    fmts.set(f.format, fj);
  }
  j.set("formats", fmts);
  return j;
}

}  // namespace gl
