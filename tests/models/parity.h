// Parity of gridlock's models with Hugging Face transformers on one
// committed fixture (tests/reference/make_model_fixtures.py): the checkpoint
// is loaded with load_hf_model on `device`, and logits, loss and the
// gradient of the loss for every parameter are compared with what
// transformers computed in f32. Shared by tests/models (CPU) and
// tests/cuda/test_parity_models.cpp (GPU).
//
// Tolerances: "relative" is relative to the tensor's scale. Each element
// must satisfy |got - ref| <= rtol * max(|ref|, max_j |ref_j|), i.e.
// check_close with rtol and atol = rtol * max|ref|:
//   logits, loss: rtol 1e-5;   gradients (each parameter's tensor): rtol 1e-4.
// Why the scale and not each element's own magnitude: both sides compute in
// f32 with different summation orders (Eigen vs torch's BLAS) and every
// output is a long chain of dot products, so each element carries an
// absolute rounding error of a few ulps of the tensor's scale (measured:
// gridlock f32 and transformers f32 are each ~2-5e-6 away from an f64
// evaluation of the same weights, on logits of magnitude ~6). Elements that
// happen to cancel to ~1e-2 then show an elementwise relative difference of
// ~1e-4 that says nothing about the implementation; gridlock's f64 forward
// matches transformers' f32 output to transformers' own rounding.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/safetensors.h"
#include "models/model.h"
#include "tests/models/model_testing.h"
#include "tests/testing.h"

namespace gl::testing {

struct ParityStats {
  double logits_rel = 0, loss_rel = 0, grad_rel = 0;  // max |diff| / max |ref|
  std::string worst_grad;
};

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

// max_i |got_i - ref_i| / max_i |ref_i|: the relative error the checks bound.
inline double scaled_diff(const Tensor& got, const Tensor& ref) {
  const std::vector<double> g = got.to_vector(), r = ref.to_vector();
  double d = 0;
  for (size_t i = 0; i < r.size(); ++i) d = std::max(d, std::fabs(g[i] - r[i]));
  const double scale = max_abs(ref);
  return scale > 0 ? d / scale : d;
}

// The check described above.
inline bool check_scaled(const std::string& label, const Tensor& got, const Tensor& ref,
                         double rtol) {
  return check_close(label, got, ref, rtol * max_abs(ref), rtol);
}

inline ParityStats check_model_parity(const std::string& name, Device device) {
  const std::string dir = model_fixture_dir(name);
  const SafetensorsFile fx = SafetensorsFile::open(dir + "/fixture.safetensors");
  const std::unique_ptr<LanguageModel> model = load_hf_model(dir, DType::F32, device);
  const Tensor ids = fx.load("input_ids", device), targets = fx.load("targets", device);
  const Tensor ref_logits = fx.load("logits"), ref_loss = fx.load("loss");

  const Var logits = model->logits(ids);
  const Var loss = cross_entropy(logits, targets);  // = LanguageModel::loss (checked below)
  ParityStats st;
  const std::string where = name + " on " + device.name();
  CHECK(check_scaled(where + " logits", logits.value(), ref_logits, 1e-5));
  CHECK(check_scaled(where + " loss", loss.value().reshape({1}), ref_loss, 1e-5));
  st.logits_rel = scaled_diff(logits.value(), ref_logits);
  st.loss_rel = scaled_diff(loss.value().reshape({1}), ref_loss);

  // model->loss is what training calls: on the CPU the same ops, so the same
  // number; on CUDA the head fused with the loss (linear_cross_entropy),
  // whose chunked products may round differently. Its gradients are
  // checked against the fixture at the end.
  {
    NoGradGuard no_grad;
    const double fused = model->loss(ids, targets).value().item();
    if (device.is_cpu()) CHECK(fused == loss.value().item());
    else CHECK(fused == doctest::Approx(loss.value().item()).epsilon(1e-6));
  }

  loss.backward();
  size_t n_checked = 0;
  for (const NamedParam& p : model->parameters()) {
    INFO("parameter ", p.name);
    const std::string key = "grad." + p.name;
    REQUIRE(fx.find(key) != nullptr);
    REQUIRE(p.var.grad().defined());
    const Tensor ref = fx.load(key);
    CHECK(check_scaled(where + " " + key, p.var.grad(), ref, 1e-4));
    const double rel = scaled_diff(p.var.grad(), ref);
    if (rel >= st.grad_rel) {
      st.grad_rel = rel;
      st.worst_grad = p.name;
    }
    ++n_checked;
  }
  // Every gradient of the fixture was compared (no parameter left out).
  size_t n_fixture = 0;
  for (const SafetensorsEntry& e : fx.entries()) n_fixture += e.name.rfind("grad.", 0) == 0;
  CHECK(n_checked == n_fixture);
  // The training path's gradients (model->loss) against the fixture too.
  for (const NamedParam& p : model->parameters()) Var(p.var).zero_grad();
  model->loss(ids, targets).backward();
  for (const NamedParam& p : model->parameters())
    CHECK(check_scaled(where + " model->loss grad." + p.name, p.var.grad(), fx.load("grad." + p.name), 1e-4));
  std::printf("parity %s: logits max rel %.2e, loss rel %.2e, %zu gradients max rel %.2e (%s)\n",
              where.c_str(), st.logits_rel, st.loss_rel, n_checked, st.grad_rel,
              st.worst_grad.c_str());
  return st;
}

}  // namespace gl::testing
