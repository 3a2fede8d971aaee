// Shape ops (autograd/ops/shape.h): finite-difference gradchecks in f64,
// view-vs-copy semantics (Tensor::shares_storage), hand-computed forward
// values, and error messages.
#include <doctest/doctest.h>

#include "autograd/ops/shape.h"
#include "tests/testing.h"

using namespace gl;
using namespace gl::testing;

using Values = std::vector<double>;

TEST_CASE("gradcheck: reshape, including -1 and a non-contiguous input") {
  const Tensor a = rand({2, 3, 4}, 1);
  CHECK(gradcheck("reshape", [](auto& v) { return reshape(v[0], {4, -1}); }, {a}));
  CHECK(gradcheck("reshape to 1-d", [](auto& v) { return reshape(v[0], {-1}); }, {a}));
  // permute makes the input strided, so reshape copies; the gradient must
  // still land on the right elements.
  CHECK(gradcheck("reshape of permuted",
                  [](auto& v) { return reshape(permute(v[0], {2, 0, 1}), {8, 3}); }, {a}));
}

TEST_CASE("gradcheck: permute and transpose, incl. negative dims") {
  const Tensor a = rand({2, 3, 5}, 2);
  CHECK(gradcheck("permute", [](auto& v) { return permute(v[0], {2, 0, 1}); }, {a}));
  CHECK(gradcheck("permute negative", [](auto& v) { return permute(v[0], {-1, -3, 1}); }, {a}));
  CHECK(gradcheck("transpose", [](auto& v) { return transpose(v[0], 0, -1); }, {a}));
  CHECK(gradcheck("transpose twice",
                  [](auto& v) { return transpose(transpose(v[0], 1, 2), 0, 1); }, {a}));
}

TEST_CASE("gradcheck: slice and narrow, incl. step > 1 and negative indices") {
  const Tensor a = rand({3, 7, 2}, 3);
  CHECK(gradcheck("slice step 2", [](auto& v) { return slice(v[0], 1, 1, 6, 2); }, {a}));
  CHECK(gradcheck("slice step 3 negative dim",
                  [](auto& v) { return slice(v[0], -2, 0, 7, 3); }, {a}));
  CHECK(gradcheck("slice negative start, clamped end",
                  [](auto& v) { return slice(v[0], 0, -2, 100); }, {a}));
  CHECK(gradcheck("narrow", [](auto& v) { return narrow(v[0], -1, 1, 1); }, {a}));
  // Two overlapping slices of one input: contributions must add up.
  CHECK(gradcheck("overlapping slices",
                  [](auto& v) { return add(slice(v[0], 1, 0, 4), slice(v[0], 1, 2, 6)); }, {a}));
}

TEST_CASE("gradcheck: concat along dim 0, a middle dim and a negative dim") {
  const Tensor a = rand({2, 3, 4}, 4), b = rand({1, 3, 4}, 5), c = rand({3, 3, 4}, 6);
  CHECK(gradcheck("concat dim 0", [](auto& v) { return concat({v[0], v[1], v[2]}, 0); },
                  {a, b, c}));
  const Tensor d = rand({2, 1, 4}, 7), e = rand({2, 5, 4}, 8);
  CHECK(gradcheck("concat dim 1", [](auto& v) { return concat({v[0], v[1], v[2]}, 1); },
                  {a, d, e}));
  const Tensor f = rand({2, 3, 3}, 9);
  CHECK(gradcheck("concat dim -1", [](auto& v) { return concat({v[0], v[1]}, -1); }, {a, f}));
  // The same Var twice: both blocks' gradients accumulate into it.
  CHECK(gradcheck("concat self", [](auto& v) { return concat({v[0], v[0]}, 1); }, {a}));
}

TEST_CASE("gradcheck: split with pieces used partially") {
  const Tensor a = rand({2, 6, 3}, 10);
  CHECK(gradcheck("split pieces 0 and 2",
                  [](auto& v) {
                    const std::vector<Var> p = split(v[0], {1, 3, 2}, 1);
                    return concat({p[2], p[0]}, 1);
                  },
                  {a}));
  CHECK(gradcheck("split middle piece only",
                  [](auto& v) { return split(v[0], {2, 1, 0}, -1)[1]; }, {a}));
  CHECK(gradcheck("split all pieces recombined",
                  [](auto& v) {
                    const std::vector<Var> p = split(v[0], {1, 1}, 0);
                    return mul(p[0], p[1]);
                  },
                  {a}));
}

TEST_CASE("gradcheck: zero-size pieces") {
  const Tensor a = rand({2, 3}, 12);
  CHECK(gradcheck("split with an empty piece used twice",
                  [](auto& v) {
                    const std::vector<Var> p = split(v[0], {3, 0}, 1);
                    return concat({p[1], p[0], p[1]}, 1);
                  },
                  {a}));
  CHECK(gradcheck("empty slice next to a full one",
                  [](auto& v) { return concat({slice(v[0], 0, 2, 2), v[0]}, 0); }, {a}));
}

TEST_CASE("gradcheck: contiguous") {
  const Tensor a = rand({3, 4}, 11);
  CHECK(gradcheck("contiguous of transpose",
                  [](auto& v) { return contiguous(transpose(v[0], 0, 1)); }, {a}));
  CHECK(gradcheck("contiguous of contiguous", [](auto& v) { return contiguous(v[0]); }, {a}));
}

TEST_CASE("shape ops: views share storage, copies do not") {
  const Var x(Tensor::arange(24, DType::F64).view({2, 3, 4}), true, "x");
  CHECK(reshape(x, {6, 4}).value().shares_storage(x.value()));
  CHECK(permute(x, {2, 0, 1}).value().shares_storage(x.value()));
  CHECK(transpose(x, 0, 2).value().shares_storage(x.value()));
  CHECK(slice(x, 2, 0, 4, 2).value().shares_storage(x.value()));
  CHECK(narrow(x, 1, 1, 2).value().shares_storage(x.value()));
  for (const Var& p : split(x, {1, 3}, 2)) CHECK(p.value().shares_storage(x.value()));
  CHECK(contiguous(x).value().shares_storage(x.value()));

  const Var t = transpose(x, 0, 1);
  CHECK_FALSE(t.value().is_contiguous());
  const Var tr = reshape(t, {-1});
  CHECK_FALSE(tr.value().shares_storage(x.value()));  // strided input: reshape copies
  CHECK(tr.value().is_contiguous());
  const Var tc = contiguous(t);
  CHECK_FALSE(tc.value().shares_storage(x.value()));
  CHECK(tc.value().to_vector() == tr.value().to_vector());
  CHECK_FALSE(concat({x, x}, 0).value().shares_storage(x.value()));
  clear_tape();
}

TEST_CASE("shape ops: forward values") {
  const Var x(Tensor::arange(12, DType::F64).view({3, 4}));
  CHECK(transpose(x, 0, 1).value().to_vector() == Values{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(slice(x, 1, 1, 4, 2).value().to_vector() == Values{1, 3, 5, 7, 9, 11});
  CHECK(slice(x, 0, -1, 3).value().to_vector() == Values{8, 9, 10, 11});
  CHECK(slice(x, 0, 5, 9).value().shape() == Shape{0, 4});  // clamped to empty
  CHECK(narrow(x, 0, 1, 1).value().to_vector() == Values{4, 5, 6, 7});
  CHECK(reshape(x, {2, -1}).value().shape() == Shape{2, 6});

  const Var y(Tensor::from_vector({100, 101, 102}, {3, 1}, DType::F64));
  const Var c = concat({x, y}, 1);
  CHECK(c.shape() == Shape{3, 5});
  CHECK(c.value().to_vector() == Values{0, 1, 2, 3, 100, 4, 5, 6, 7, 101, 8, 9, 10, 11, 102});
  CHECK(concat({x, slice(x, 0, 0, 1)}, 0).value().to_vector() ==
        Values{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3});
  // Concat of strided inputs (a transposed view) is written element by element.
  CHECK(concat({transpose(x, 0, 1), transpose(x, 0, 1)}, 1).value().to_vector() ==
        Values{0, 4, 8, 0, 4, 8, 1, 5, 9, 1, 5, 9, 2, 6, 10, 2, 6, 10, 3, 7, 11, 3, 7, 11});

  const std::vector<Var> p = split(x, {1, 0, 3}, -1);
  REQUIRE(p.size() == 3);
  CHECK(p[0].value().to_vector() == Values{0, 4, 8});
  CHECK(p[1].shape() == Shape{3, 0});
  CHECK(p[2].value().to_vector() == Values{1, 2, 3, 5, 6, 7, 9, 10, 11});
  CHECK(concat_tensor({x.value(), y.value()}, -1).to_vector() == c.value().to_vector());
}

TEST_CASE("split: unused pieces get zero gradient, used ones get dout") {
  const Var x(Tensor::arange(6, DType::F64).view({2, 3}), true, "x");
  const std::vector<Var> p = split(x, {2, 1}, 1);
  sum(scale(p[1], 3.0)).backward();
  CHECK(x.grad().to_vector() == Values{0, 0, 3, 0, 0, 3});
}

TEST_CASE("shape ops: no tape entry when no input requires grad") {
  clear_tape();
  const Var x(Tensor::zeros({2, 3}));
  (void)concat({x, x}, 0);
  (void)split(x, {1, 2}, 1);
  (void)reshape(slice(transpose(x, 0, 1), 0, 0, 2), {-1});
  CHECK(tape_size() == 0);
}

TEST_CASE("shape ops: errors name the op and the tensors") {
  const Var x(Tensor::zeros({2, 3}), false, "x");
  CHECK_THROWS_WITH_AS(permute(x, {0}), doctest::Contains("permute: 1 dims given for x: f32[2, 3]"),
                       Error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 0}), doctest::Contains("permute: dim 0 repeated"), Error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 2}),
                       doctest::Contains("permute: dim 2 out of range for x: f32[2, 3] cpu"), Error);
  CHECK_THROWS_WITH_AS(transpose(x, 0, -3), doctest::Contains("transpose: dim -3 out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(reshape(x, {4, -1}), doctest::Contains("cannot infer -1"), Error);
  CHECK_THROWS_WITH_AS(reshape(x, {5}), doctest::Contains("has 5 elements, tensor has 6"), Error);
  CHECK_THROWS_WITH_AS(slice(x, 2, 0, 1), doctest::Contains("slice: dim 2 out of range for x"),
                       Error);
  CHECK_THROWS_WITH_AS(slice(x, 1, 0, 1, 0), doctest::Contains("slice: step must be positive"),
                       Error);
  CHECK_THROWS_WITH_AS(narrow(x, 1, 2, 2),
                       doctest::Contains("narrow: [2, 4) out of range for dim 1 of x: f32[2, 3]"),
                       Error);
  CHECK_THROWS_WITH_AS(narrow(x, 0, -1, 1), doctest::Contains("narrow: [-1, 0) out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(split(x, {1, 1}, 1),
                       doctest::Contains("split: sizes [1, 1] sum to 2 but dim 1 of x: f32[2, 3] "
                                         "cpu has 3"),
                       Error);
  CHECK_THROWS_WITH_AS(split(x, {4, -1}, 1), doctest::Contains("split: negative size -1"), Error);
  CHECK_THROWS_WITH_AS(split(x, {3}, 5), doctest::Contains("split: dim 5 out of range"), Error);

  const Var y(Tensor::zeros({2, 4}), false, "y"), z(Tensor::zeros({2, 3}, DType::F64), false, "z");
  const Var w(Tensor::zeros({2, 3, 1}), false, "w");
  CHECK_THROWS_WITH_AS(concat({x, y}, 0),
                       doctest::Contains("concat along dim 0: xs[0] (x: f32[2, 3] cpu) and xs[1] "
                                         "(y: f32[2, 4] cpu) differ in dim 1"),
                       Error);
  CHECK_THROWS_WITH_AS(concat({x, z}, 0),
                       doctest::Contains("concat: dtype mismatch, xs[0] (x: f32[2, 3] cpu) vs "
                                         "xs[1] (z: f64[2, 3] cpu)"),
                       Error);
  CHECK_THROWS_WITH_AS(concat({x, w}, 0), doctest::Contains("concat: rank mismatch"), Error);
  CHECK_THROWS_WITH_AS(concat({}, 0), doctest::Contains("concat: no tensors given"), Error);
  CHECK_THROWS_WITH_AS(concat({x, y}, 2), doctest::Contains("concat: dim 2 out of range for xs[0]"),
                       Error);
  CHECK_THROWS_WITH_AS(concat_tensor({x.value(), y.value()}, 0),
                       doctest::Contains("xs[1] f32[2, 4] cpu differ in dim 1"), Error);
}
