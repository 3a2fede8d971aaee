// Test helpers shared by every test binary.
//
// check_close: compares two tensors elementwise with |got - ref| <= atol +
// rtol * |ref| (non-finite reference values must match exactly), and prints
// evidence (the first elements marked OK / NOT OK, max abs and rel diff,
// the worst index), as llm.c's check_tensor does.
//
// gradcheck: the analytic gradient of L = sum(fn(inputs) * R), with R a
// fixed random tensor, against central finite differences of L computed in
// f64 by forward passes only. Every element of every floating input is
// perturbed, so inputs must be tiny.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"

namespace gl::testing {

bool check_close(const std::string& label, const Tensor& got, const Tensor& ref, double atol,
                 double rtol, bool verbose = false);

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-7;
  double rtol = 1e-5;
  uint64_t seed = 1234;
};

using VarFn = std::function<Var(const std::vector<Var>&)>;

// Inputs are converted to f64 on the CPU; floating inputs require grad,
// integer inputs (indices) are passed as constants.
bool gradcheck(const std::string& label, const VarFn& fn, const std::vector<Tensor>& inputs,
               const GradcheckOptions& opt = {});

// Random f64 tensor in [-1, 1) (or normal with `normal`), fixed per seed.
Tensor rand(const Shape& shape, uint64_t seed, DType dtype = DType::F64);
Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::F64);

// True when a CUDA device is visible (parity tests run only then).
bool have_cuda();

}  // namespace gl::testing
