// Tensor views, copies and broadcasting (core/tensor.h): which operations
// share storage, the strides and offsets they produce, the values read
// through them, python-like slice clamping, strided and overlapping
// copy_, fill_ on strided views, and broadcast_shapes edge cases.
#include <doctest/doctest.h>

#include <limits>

#include "tests/testing.h"

using namespace gl;

using Values = std::vector<double>;

namespace {
// 0, 1, ..., n-1 in the given shape (f32, contiguous).
Tensor iota(const Shape& shape) { return Tensor::arange(shape_numel(shape)).view(shape); }
}  // namespace

TEST_CASE("shape helpers") {
  CHECK(shape_str({}) == "[]");
  CHECK(shape_str({2, 3}) == "[2, 3]");
  CHECK(shape_numel({}) == 1);
  CHECK(shape_numel({2, 0, 3}) == 0);
  CHECK(contiguous_strides({2, 3, 4}) == Shape{12, 4, 1});
  CHECK(contiguous_strides({}) == Shape{});
  // Zero-size dims count as 1 so strides stay positive and distinct.
  CHECK(contiguous_strides({2, 0, 3}) == Shape{3, 3, 1});
}

TEST_CASE("factories and metadata") {
  const Tensor t = Tensor::full({2, 3}, 2.5, DType::F64);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.dim() == 2);
  CHECK(t.size(-1) == 3);
  CHECK(t.numel() == 6);
  CHECK(t.nbytes() == 48);
  CHECK(t.offset() == 0);
  CHECK(t.is_contiguous());
  CHECK(t.describe() == "f64[2, 3] cpu");
  CHECK(t.to_vector() == Values(6, 2.5));
  CHECK(Tensor::zeros({3}).to_vector() == Values{0, 0, 0});
  CHECK(Tensor::ones({2}, DType::I32).to_vector() == Values{1, 1});
  CHECK(Tensor::arange(4, DType::I64).to_vector() == Values{0, 1, 2, 3});
  CHECK(Tensor::from_data<int32_t>({5, -6}, {2}).to_vector() == Values{5, -6});
  CHECK_FALSE(Tensor().defined());
  const Tensor scalar = Tensor::full({}, 7.0);
  CHECK(scalar.dim() == 0);
  CHECK(scalar.numel() == 1);
  CHECK(scalar.item() == 7.0);
  const Tensor empty = Tensor::empty({0, 3});
  CHECK(empty.numel() == 0);
  CHECK(empty.to_vector().empty());
  CHECK(empty.contiguous().numel() == 0);
}

TEST_CASE("views share storage: view, reshape, permute, transpose") {
  const Tensor t = iota({2, 3, 4});

  const Tensor v = t.view({4, -1});
  CHECK(v.shares_storage(t));
  CHECK(v.shape() == Shape{4, 6});
  CHECK(v.strides() == Shape{6, 1});
  CHECK(v.to_vector() == t.to_vector());

  const Tensor r = t.reshape({6, 4});
  CHECK(r.shares_storage(t));  // contiguous input: a view
  CHECK(r.strides() == Shape{4, 1});

  const Tensor p = t.permute({2, 0, 1});
  CHECK(p.shares_storage(t));
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK_FALSE(p.is_contiguous());
  // p[k][i][j] = t[i][j][k] = 12 i + 4 j + k
  CHECK(p.contiguous().to_vector() ==
        Values{0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23});
  CHECK(t.permute({-1, 0, 1}).strides() == p.strides());

  const Tensor tr = t.transpose(0, -1);
  CHECK(tr.shares_storage(t));
  CHECK(tr.shape() == Shape{4, 3, 2});
  CHECK(tr.strides() == Shape{1, 4, 12});
}

TEST_CASE("views share storage: slice, narrow, select") {
  const Tensor t = iota({2, 3, 4});

  const Tensor s = t.slice(2, 1, 4, 2);
  CHECK(s.shares_storage(t));
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.strides() == Shape{12, 4, 2});
  CHECK(s.offset() == 1);
  CHECK(s.to_vector() == Values{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23});

  const Tensor n = t.narrow(1, 1, 2);
  CHECK(n.shares_storage(t));
  CHECK(n.shape() == Shape{2, 2, 4});
  CHECK(n.offset() == 4);
  CHECK(n.to_vector() == Values{4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23});

  const Tensor sel = t.select(1, -1);
  CHECK(sel.shares_storage(t));
  CHECK(sel.shape() == Shape{2, 4});
  CHECK(sel.strides() == Shape{12, 1});
  CHECK(sel.offset() == 8);
  CHECK(sel.to_vector() == Values{8, 9, 10, 11, 20, 21, 22, 23});
  // Views of views compose offsets and strides.
  const Tensor vv = t.transpose(0, 2).select(0, 3).slice(0, 1, 3);
  CHECK(vv.shares_storage(t));
  CHECK(vv.to_vector() == Values{7, 19, 11, 23});
}

TEST_CASE("views share storage: unsqueeze, squeeze, expand") {
  const Tensor t = iota({2, 3});
  const Tensor u0 = t.unsqueeze(0), u1 = t.unsqueeze(1), ul = t.unsqueeze(-1);
  CHECK(u0.shares_storage(t));
  CHECK(u0.shape() == Shape{1, 2, 3});
  CHECK(u1.shape() == Shape{2, 1, 3});
  CHECK(u1.strides() == Shape{3, 3, 1});
  CHECK(ul.shape() == Shape{2, 3, 1});
  CHECK(u0.is_contiguous());
  CHECK(u1.is_contiguous());
  CHECK(ul.is_contiguous());
  CHECK(u1.squeeze(1).shape() == Shape{2, 3});
  CHECK(u1.squeeze(-2).strides() == Shape{3, 1});
  CHECK(u1.squeeze(1).shares_storage(t));

  const Tensor col = Tensor::from_vector({1, 2, 3}, {3, 1});
  const Tensor e = col.expand({2, 3, 4});
  CHECK(e.shares_storage(col));
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK_FALSE(e.is_contiguous());
  CHECK(e.to_vector() == Values{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
                                1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  CHECK(col.expand({3, 1}).strides() == col.strides());

  // 0-d tensors: select down to one, unsqueeze back up.
  const Tensor s0 = t.select(0, 1).select(0, 2);
  CHECK(s0.dim() == 0);
  CHECK(s0.item() == 5);
  CHECK(s0.unsqueeze(0).shape() == Shape{1});
  CHECK(s0.unsqueeze(-1).expand({2, 3}).to_vector() == Values(6, 5.0));
}

TEST_CASE("contiguous() copies only when needed, reshape of a strided tensor copies") {
  const Tensor t = iota({3, 4});
  const Tensor c = t.contiguous();
  CHECK(c.shares_storage(t));
  CHECK(c.data_ptr() == t.data_ptr());
  // Size-1 dims may have any stride and the tensor is still contiguous.
  CHECK(t.unsqueeze(1).contiguous().shares_storage(t));
  // A row range is contiguous (just offset); a column range is not.
  CHECK(t.narrow(0, 1, 2).is_contiguous());
  CHECK(t.narrow(0, 1, 2).contiguous().shares_storage(t));
  CHECK_FALSE(t.narrow(1, 1, 2).is_contiguous());

  const Tensor tt = t.transpose(0, 1);
  const Tensor tc = tt.contiguous();
  CHECK_FALSE(tc.shares_storage(t));
  CHECK(tc.is_contiguous());
  CHECK(tc.to_vector() == Values{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});

  const Tensor rs = tt.reshape({-1});
  CHECK_FALSE(rs.shares_storage(t));
  CHECK(rs.to_vector() == tc.to_vector());
  const Tensor ex = Tensor::ones({1, 3}).expand({2, 3});
  CHECK_FALSE(ex.contiguous().shares_storage(ex));
  CHECK(ex.reshape({6}).to_vector() == Values(6, 1.0));

  // clone always copies, and the copy is independent.
  Tensor cl = t.clone();
  CHECK_FALSE(cl.shares_storage(t));
  cl.fill_(-1);
  CHECK(t.to_vector()[0] == 0);
  // Same-device / same-dtype conversions are no-ops that share storage.
  CHECK(t.to(Device::cpu()).shares_storage(t));
  CHECK(t.to(DType::F32).shares_storage(t));
  CHECK_FALSE(t.to(DType::F64).shares_storage(t));
}

TEST_CASE("slice clamps like python slicing") {
  const Tensor t = Tensor::arange(5);
  auto s = [&](int64_t start, int64_t end, int64_t step = 1) {
    return t.slice(0, start, end, step).to_vector();
  };
  CHECK(s(1, 3) == Values{1, 2});          // x[1:3]
  CHECK(s(-2, 100) == Values{3, 4});       // x[-2:100]
  CHECK(s(-100, 2) == Values{0, 1});       // x[-100:2]
  CHECK(s(3, 1).empty());                  // x[3:1]
  CHECK(s(5, 7).empty());                  // x[5:7]
  CHECK(s(-1, -1).empty());                // x[-1:-1]
  CHECK(s(0, -1) == Values{0, 1, 2, 3});   // x[0:-1]
  CHECK(s(0, 5, 2) == Values{0, 2, 4});    // x[::2]
  CHECK(s(1, 5, 3) == Values{1, 4});       // x[1::3]
  CHECK(s(0, 5, 7) == Values{0});          // x[::7]
  CHECK(s(-3, 100, 2) == Values{2, 4});    // x[-3::2]
  CHECK(t.slice(0, 3, 1).shape() == Shape{0});
  CHECK(t.slice(0, 7, 9).shape() == Shape{0});
  CHECK_THROWS_WITH_AS(t.slice(0, 0, 5, 0), doctest::Contains("slice: step must be positive"),
                       Error);
  CHECK_THROWS_WITH_AS(t.slice(0, 0, 5, -1), doctest::Contains("step must be positive, got -1"),
                       Error);
}

TEST_CASE("narrow checks its bounds") {
  const Tensor t = iota({5, 2});
  CHECK(t.narrow(0, 3, 2).to_vector() == Values{6, 7, 8, 9});
  CHECK(t.narrow(0, 5, 0).numel() == 0);
  CHECK(t.narrow(-1, 1, 1).to_vector() == Values{1, 3, 5, 7, 9});
  CHECK_THROWS_WITH_AS(t.narrow(0, 3, 3),
                       doctest::Contains("narrow: [3, 6) out of range for dim 0 of f32[5, 2] cpu"),
                       Error);
  CHECK_THROWS_WITH_AS(t.narrow(0, -1, 1), doctest::Contains("narrow: [-1, 0) out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(t.narrow(1, 0, -1), doctest::Contains("narrow: [0, -1) out of range"),
                       Error);
  CHECK_THROWS_WITH_AS(t.narrow(2, 0, 1), doctest::Contains("dim 2 out of range for f32[5, 2]"),
                       Error);
}

TEST_CASE("copy_ into strided destinations") {
  // Into a transposed view: dst^T = src, so dst = src^T.
  Tensor dst = Tensor::zeros({3, 2});
  dst.transpose(0, 1).copy_(iota({2, 3}));
  CHECK(dst.to_vector() == Values{0, 3, 1, 4, 2, 5});

  // Into a step-2 slice: the odd positions stay untouched.
  Tensor line = Tensor::full({7}, -1.0);
  line.slice(0, 0, 7, 2).copy_(Tensor::from_vector({10, 20, 30, 40}, {4}));
  CHECK(line.to_vector() == Values{10, -1, 20, -1, 30, -1, 40});

  // Strided source and destination, with a dtype conversion on the way.
  Tensor m = Tensor::zeros({4, 4}, DType::F64);
  m.slice(1, 1, 4, 2).copy_(iota({2, 4}).transpose(0, 1));
  CHECK(m.to_vector() == Values{0, 0, 0, 4, 0, 1, 0, 5, 0, 2, 0, 6, 0, 3, 0, 7});

  // From a broadcast (zero-stride) source.
  Tensor b = Tensor::zeros({2, 3});
  b.copy_(Tensor::from_vector({1, 2, 3}, {3}).expand({2, 3}));
  CHECK(b.to_vector() == Values{1, 2, 3, 1, 2, 3});

  CHECK_THROWS_WITH_AS(b.copy_(Tensor::zeros({3, 2})),
                       doctest::Contains("copy_: source f32[3, 2] cpu does not match f32[2, 3] cpu"),
                       Error);
}

TEST_CASE("copy_ between overlapping views of one storage reads before writing") {
  // Shift right by one: a naive forward copy would smear element 0.
  Tensor a = Tensor::arange(6);
  a.slice(0, 1, 6).copy_(a.slice(0, 0, 5));
  CHECK(a.to_vector() == Values{0, 0, 1, 2, 3, 4});
  // Shift left by one.
  Tensor b = Tensor::arange(6);
  b.slice(0, 0, 5).copy_(b.slice(0, 1, 6));
  CHECK(b.to_vector() == Values{1, 2, 3, 4, 5, 5});
  // In-place transpose of a square matrix.
  Tensor m = iota({3, 3});
  m.copy_(m.transpose(0, 1));
  CHECK(m.to_vector() == Values{0, 3, 6, 1, 4, 7, 2, 5, 8});
  // The same in-place transpose with 8-byte elements, through views of a flat buffer.
  Tensor h = Tensor::arange(4, DType::I64);
  h.view({2, 2}).copy_(h.view({2, 2}).slice(0, 0, 2).transpose(0, 1));
  CHECK(h.to_vector() == Values{0, 2, 1, 3});
}

TEST_CASE("fill_ on non-contiguous views") {
  Tensor m = Tensor::zeros({3, 4});
  m.slice(1, 0, 4, 2).fill_(7);
  CHECK(m.to_vector() == Values{7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0});
  m.transpose(0, 1).select(0, 3).fill_(-2);  // column 3
  CHECK(m.to_vector() == Values{7, 0, 7, -2, 7, 0, 7, -2, 7, 0, 7, -2});
  m.narrow(0, 1, 1).zero_();
  CHECK(m.to_vector() == Values{7, 0, 7, -2, 0, 0, 0, 0, 7, 0, 7, -2});
  Tensor i = Tensor::zeros({2, 3}, DType::I32);
  i.transpose(0, 1).slice(0, 1, 3).fill_(9);
  CHECK(i.to_vector() == Values{0, 9, 9, 0, 9, 9});
}

TEST_CASE("broadcast_shapes: scalars, leading 1s, zero-size dims") {
  CHECK(broadcast_shapes({}, {}, "t") == Shape{});
  CHECK(broadcast_shapes({}, {2, 3}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes({2, 3}, {}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes({1, 1, 3}, {3}, "t") == Shape{1, 1, 3});
  CHECK(broadcast_shapes({2, 1}, {1, 3}, "t") == Shape{2, 3});
  CHECK(broadcast_shapes({4, 1, 5}, {3, 1}, "t") == Shape{4, 3, 5});
  CHECK(broadcast_shapes({0}, {1}, "t") == Shape{0});
  CHECK(broadcast_shapes({1}, {0}, "t") == Shape{0});
  CHECK(broadcast_shapes({0, 3}, {1, 3}, "t") == Shape{0, 3});
  CHECK(broadcast_shapes({5, 0}, {5, 1}, "t") == Shape{5, 0});
  CHECK(broadcast_shapes({0}, {}, "t") == Shape{0});
  CHECK(broadcast_shapes({2, 0}, {0}, "t") == Shape{2, 0});
  CHECK_THROWS_WITH_AS(broadcast_shapes({0}, {2}, "myop"),
                       doctest::Contains("myop: shapes [0] and [2] cannot be broadcast (dim 0: 0 vs 2)"),
                       Error);
  CHECK_THROWS_WITH_AS(broadcast_shapes({2, 3}, {4, 1, 2}, "add"),
                       doctest::Contains("add: shapes [2, 3] and [4, 1, 2] cannot be broadcast (dim 2: "
                                         "3 vs 2)"),
                       Error);
}

TEST_CASE("zero-size tensors are contiguous, fillable and viewable") {
  // A zero-size dim after the first once made is_contiguous() false, and
  // fill_ then recursed through copy_(full(...)) until the stack overflowed.
  const Tensor z = Tensor::zeros({3, 0});
  CHECK(z.is_contiguous());
  CHECK(z.numel() == 0);
  CHECK(z.view({0, 5}).shape() == Shape{0, 5});
  const Tensor o = Tensor::ones({2, 0, 4}, DType::F64);
  CHECK(o.contiguous().shares_storage(o));
  CHECK(Tensor::full({4, 0}, 1.0).transpose(0, 1).is_contiguous());
  Tensor e = Tensor::zeros({2, 3}).slice(1, 3, 3);  // strided and empty
  e.fill_(5);
  e.copy_(Tensor::empty({2, 0}));
  CHECK(e.contiguous().shape() == Shape{2, 0});
  CHECK(Tensor::zeros({0, 3}).expand({2, 0, 3}).numel() == 0);
}

TEST_CASE("slice with a huge step does not overflow") {
  const Tensor t = Tensor::arange(5);
  const int64_t big = std::numeric_limits<int64_t>::max();
  CHECK(t.slice(0, 0, 5, big).to_vector() == Values{0});
  CHECK(t.slice(0, 2, big, big).to_vector() == Values{2});
  CHECK(t.slice(0, -big, big).to_vector() == Values{0, 1, 2, 3, 4});
  CHECK(iota({3, 4}).slice(1, 1, 4, big).to_vector() == Values{1, 5, 9});
}

TEST_CASE("typed host access") {
  const Tensor t = Tensor::from_data<int64_t>({std::numeric_limits<int64_t>::max(), -3}, {2});
  CHECK(t.dtype() == DType::I64);
  CHECK(t.data<int64_t>()[0] == std::numeric_limits<int64_t>::max());
  CHECK(t.to_vector_as<int64_t>() == std::vector<int64_t>{std::numeric_limits<int64_t>::max(), -3});
  // to_vector_as converts and gathers strided views.
  CHECK(iota({2, 2}).transpose(0, 1).to_vector_as<int32_t>() == std::vector<int32_t>{0, 2, 1, 3});
}
