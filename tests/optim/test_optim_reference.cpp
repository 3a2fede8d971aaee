// gridlock's AdamW, SGD and Newton-Schulz against torch: the trajectories in
// tests/reference/fixtures/optim/optim_fixtures.json, written by
// tests/reference/make_optim_fixtures.py (its docstring lists the cases).
// Tolerances: f32 rel 1e-6 for AdamW/SGD (torch's vectorised kernels use FMA and a
// different order of scalar operations, so bit equality is not expected),
// f64 rel 1e-12 (AdamW/SGD). Newton-Schulz (15 chained matmuls whose BLAS
// summation order differs): f32 abs 4e-6 + rel 1e-5, f64 rel 1e-10.

#include <doctest/doctest.h>

#include "core/json.h"
#include "optim/adamw.h"
#include "optim/muon.h"
#include "optim/sgd.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

namespace {

const Json& fixtures() {
  static const Json j = Json::parse_file(std::string(GRIDLOCK_SOURCE_DIR) +
                                         "/tests/reference/fixtures/optim/optim_fixtures.json");
  return j;
}

std::vector<double> doubles(const Json& a) {
  std::vector<double> v;
  for (const Json& x : a.as_array()) v.push_back(x.as_double());
  return v;
}
Shape shape_of(const Json& a) {
  Shape s;
  for (const Json& x : a.as_array()) s.push_back(x.as_int());
  return s;
}
Tensor tensor_of(const Json& values, const Json& shape, DType dt) {
  return Tensor::from_vector(doubles(values), shape_of(shape), dt);
}

void run_trajectory(const std::string& kind, DType dt) {
  const std::string key = kind + (dt == DType::F32 ? "_f32" : "_f64");
  const Json& fx = fixtures().at(key);
  const Json& hyper = fx.at("hyper");
  const double rtol = dt == DType::F32 ? 1e-6 : 1e-12, atol = dt == DType::F32 ? 1e-7 : 1e-14;
  NamedParam w{"w", Var(tensor_of(fx.at("w0"), fx.at("w_shape"), dt), true, "w")};
  NamedParam b{"b", Var(tensor_of(fx.at("b0"), fx.at("b_shape"), dt), true, "b")};
  const double wd = hyper.at("weight_decay_w").as_double();
  std::vector<ParamGroup> groups = {{{w}, 1.0, wd}, {{b}, 1.0, 0.0}};
  std::unique_ptr<Optimizer> opt;
  if (kind == "adamw")
    opt = std::make_unique<AdamW>(groups, AdamWOptions{hyper.at("beta1").as_double(),
                                                       hyper.at("beta2").as_double(),
                                                       hyper.at("eps").as_double()});
  else
    opt = std::make_unique<Sgd>(groups, SgdOptions{hyper.at("momentum").as_double(),
                                                   hyper.at("nesterov").as_bool()});
  const auto lrs = doubles(fx.at("lrs"));
  for (size_t t = 0; t < lrs.size(); ++t) {
    w.var.impl()->grad = tensor_of(fx.at("grads_w")[t], fx.at("w_shape"), dt);
    b.var.impl()->grad = tensor_of(fx.at("grads_b")[t], fx.at("b_shape"), dt);
    opt->step(lrs[t]);
    const Json& ref = fx.at("steps")[t];
    const std::string label = key + " step " + std::to_string(t + 1);
    CHECK(check_close(label + " w", w.var.value(), tensor_of(ref.at("w"), fx.at("w_shape"), dt),
                      atol, rtol, t + 1 == lrs.size()));
    CHECK(check_close(label + " b", b.var.value(), tensor_of(ref.at("b"), fx.at("b_shape"), dt),
                      atol, rtol, t + 1 == lrs.size()));
  }
  for (const auto& kv : opt->state()) {
    const std::string ref_key = kv.first == "exp_avg.w" ? "exp_avg_w"
                              : kv.first == "exp_avg_sq.w" ? "exp_avg_sq_w"
                              : kv.first == "momentum_buffer.w" ? "momentum_buffer_w" : "";
    if (ref_key.empty()) continue;
    CHECK(check_close(key + " " + kv.first, kv.second,
                      tensor_of(fx.at(ref_key), fx.at("w_shape"), dt), atol, rtol));
  }
}

}  // namespace

TEST_CASE("reference: torch.optim.AdamW trajectory, decay and no-decay groups, f32 and f64") {
  run_trajectory("adamw", DType::F32);
  run_trajectory("adamw", DType::F64);
}

TEST_CASE("reference: torch.optim.SGD momentum 0.9 nesterov trajectory, f32 and f64") {
  run_trajectory("sgd", DType::F32);
  run_trajectory("sgd", DType::F64);
}

TEST_CASE("reference: Muon's zeropower_via_newtonschulz5 on 8x5 and 5x8, f32 and f64") {
  for (const char* name : {"ns_8x5_f32", "ns_5x8_f32", "ns_8x5_f64", "ns_5x8_f64"}) {
    const Json& fx = fixtures().at(name);
    const DType dt = std::string(name).substr(7) == "f32" ? DType::F32 : DType::F64;
    const Tensor g = tensor_of(fx.at("g"), fx.at("shape"), dt);
    const Tensor out = zeropower_via_newtonschulz5(g, 5);
    // f32: 15 chained matmuls; torch and we each sit ~1e-6 (abs) from the f64
    // result, in different directions, so allow a few f32 ulps of O(1) values.
    const double rtol = dt == DType::F32 ? 1e-5 : 1e-10, atol = dt == DType::F32 ? 4e-6 : 1e-12;
    CHECK(check_close(name, out, tensor_of(fx.at("out"), fx.at("shape"), dt), atol, rtol, true));
  }
}
