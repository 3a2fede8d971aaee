// quant/diagnostics.h against hand-computed values: excess kurtosis and
// absmax/std (spec.md 3.8, recomputed here by the direct formula on the same
// numbers in f64), grid alignment on tensors whose scale is known exactly,
// bin flips between hand-made tensors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "quant/diagnostics.h"
#include "quant/quantizer.h"
#include "tests/testing.h"

using namespace gl;

TEST_CASE("diagnostics: kurtosis and absmax/std of {1,2,3,4} by hand") {
  // mean 2.5, deviations +-1.5, +-0.5: m2 = 1.25, m4 = (2 * 5.0625 + 2 * 0.0625) / 4 = 2.5625
  const WeightMoments m = weight_moments(Tensor::from_data<double>({1, 2, 3, 4}, {2, 2}));
  CHECK(m.mean == doctest::Approx(2.5).epsilon(1e-15));
  CHECK(m.std == doctest::Approx(std::sqrt(1.25)).epsilon(1e-15));
  CHECK(m.excess_kurtosis == doctest::Approx(2.5625 / (1.25 * 1.25) - 3.0).epsilon(1e-14));
  CHECK(m.absmax == 4.0);
  const LayerDiagnostics d =
      layer_diagnostics("w", Tensor::from_data<double>({1, 2, 3, 4}, {2, 2}), {});
  CHECK(d.absmax_over_std == doctest::Approx(4.0 / std::sqrt(1.25)).epsilon(1e-14));
  CHECK(d.numel == 4);
}

TEST_CASE("diagnostics: kurtosis of a random sample equals the direct formula (f32 and f64)") {
  for (DType dt : {DType::F64, DType::F32}) {
    const Tensor w = testing::randn({37, 29}, 5, dt);
    const std::vector<double> x = w.to_vector();
    double mean = 0;
    for (double v : x) mean += v;
    mean /= double(x.size());
    double m2 = 0, m4 = 0;
    for (double v : x) m2 += (v - mean) * (v - mean), m4 += std::pow(v - mean, 4);
    m2 /= double(x.size()), m4 /= double(x.size());
    const WeightMoments m = weight_moments(w);
    CHECK(m.excess_kurtosis == doctest::Approx(m4 / (m2 * m2) - 3.0).epsilon(1e-12));
    // A Gaussian sample of 1073 values: excess kurtosis near 0 (its standard
    // error is about sqrt(24 / n) = 0.15).
    CHECK(std::fabs(m.excess_kurtosis) < 0.6);
  }
  // A heavy tail (one outlier among zeros-and-ones) gives a large positive value.
  std::vector<double> v(100, 0.0);
  for (size_t i = 0; i < v.size(); i += 2) v[i] = 1.0;
  v[7] = 50.0;
  CHECK(weight_moments(Tensor::from_data(v, {100})).excess_kurtosis > 50);
  // Constant: m2 = 0, defined as 0 rather than NaN.
  CHECK(weight_moments(Tensor::full({3}, 2.0)).excess_kurtosis == 0.0);
}

TEST_CASE("diagnostics: grid alignment with an exact per-tensor scale") {
  // int4 per tensor, absmax 7 -> s = 7 / 7 = 1, so v = w: distances
  // 0, 0.5, 0.2, 0.47, 0; |frac - 0.5| < 0.05 for 3.5 (0) and -0.47 (frac 0.53).
  const QuantSpec spec = quant_spec_from_string("int4:tensor");
  const GridAlignment g =
      grid_alignment(Tensor::from_data<float>({7.f, 3.5f, 1.2f, -0.47f, 0.f}, {5}), spec);
  CHECK(g.grid_dist == doctest::Approx((0 + 0.5 + 0.2 + 0.47 + 0) / 5).epsilon(1e-6));
  CHECK(g.near_boundary == doctest::Approx(2.0 / 5));
}

TEST_CASE("diagnostics: grid alignment uses each group's own scale") {
  // g2: group 0 {1, 0.5} s = 1/7 -> v = 7, 3.5; group 1 {10, 2.5} s = 10/7 -> v = 7, 1.75.
  const QuantSpec spec = quant_spec_from_string("int4:g2");
  const GridAlignment g = grid_alignment(Tensor::from_data<float>({1.f, 0.5f, 10.f, 2.5f}, {1, 4}), spec);
  CHECK(g.grid_dist == doctest::Approx((0 + 0.5 + 0 + 0.25) / 4).epsilon(1e-5));
  CHECK(g.near_boundary == doctest::Approx(0.25));
  // An all-zero tensor: zero scale, v = 0, on the grid.
  const GridAlignment z = grid_alignment(Tensor::zeros({2, 4}), spec);
  CHECK(z.grid_dist == 0.0);
  CHECK(z.near_boundary == 0.0);
  // Weights on the grid: distance 0 whatever the bits.
  const GridAlignment on = grid_alignment(
      Tensor::from_data<float>({-127.f, 3.f, 64.f, 127.f}, {4}), quant_spec_from_string("int8:tensor"));
  CHECK(on.grid_dist == doctest::Approx(0.0).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(grid_alignment(Tensor::zeros({2, 3}), spec), doctest::Contains("int4:g2"),
                       Error);
}

TEST_CASE("diagnostics: bin flips between hand-made tensors") {
  const QuantSpec spec = quant_spec_from_string("int4:tensor");
  // s = 1 for both: codes a = 7, 3, 1, 0; b = 7, 4, 1, -1 -> 2 of 4 differ.
  const Tensor a = Tensor::from_data<float>({7.f, 3.f, 1.f, 0.f}, {4});
  const Tensor b = Tensor::from_data<float>({7.f, 3.6f, 1.2f, -1.f}, {4});
  CHECK(bin_flip_share(a, b, spec) == doctest::Approx(0.5));
  CHECK(bin_flip_share(a, a, spec) == 0.0);
  // A changed scale flips codes of weights that did not move: b2 doubles the
  // absmax (s = 2) so 3 -> 1.5 -> 2 (even), 1 -> 0.5 -> 0, 7 stays 7/2 -> 4 (even).
  const Tensor b2 = Tensor::from_data<float>({7.f, 3.f, 1.f, 14.f}, {4});
  CHECK(bin_flip_share(a, b2, spec) == doctest::Approx(1.0));
  CHECK_THROWS_WITH_AS(bin_flip_share(a, Tensor::zeros({5}), spec),
                       doctest::Contains("shapes differ"), Error);
  CHECK_THROWS_WITH_AS(bin_flip_share(a, b, quant_spec_from_string("int4:tensor:stochastic")),
                       doctest::Contains("stochastic"), Error);
}

TEST_CASE("diagnostics: layer_diagnostics per format and its JSON") {
  const std::vector<QuantSpec> specs = {quant_spec_from_string("int4:tensor"),
                                        quant_spec_from_string("int8:tensor")};
  LayerDiagnostics d =
      layer_diagnostics("x.weight", Tensor::from_data<float>({7.f, 3.5f, 1.2f, -0.47f, 0.f}, {5}), specs);
  REQUIRE(d.formats.size() == 2);
  CHECK(d.formats[0].format == specs[0].name);
  CHECK(d.formats[0].grid_dist == doctest::Approx(0.234).epsilon(1e-6));
  CHECK(std::isnan(d.formats[0].bin_flips));
  Json j = d.to_json();
  CHECK(j.at("name").as_string() == "x.weight");
  CHECK(j.at("formats").at(specs[0].name).contains("grid_dist"));
  CHECK(!j.at("formats").at(specs[0].name).contains("bin_flips"));  // NaN: left out
  d.formats[1].bin_flips = 0.25;
  CHECK(d.to_json().at("formats").at(specs[1].name).at("bin_flips").as_double() == 0.25);
}
