// GPTQ (quant/gptq.h): the Hessian accumulator, the per-layer algorithm of
// gptq.py's fasterquant on Eigen f64 matrices, and the layer-sequential
// model driver over the models' activation hook.
#include "quant/gptq.h"

// GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized inside Eigen's
// GEMM (as for cpu/matmul.cpp, which CMakeLists.txt exempts by file).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <regex>

#include "models/layers.h"
#include "quant/qat.h"

namespace gl {

namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;  // column-major
using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A 2-D tensor as an f64 matrix (any dtype/device/strides).
Mat to_mat(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).to(DType::F64).contiguous();
  return Eigen::Map<const RowMat>(c.data<double>(), c.size(0), c.size(1));
}

Tensor from_mat_f32(const Mat& m) {
  Tensor t = Tensor::empty({m.rows(), m.cols()}, DType::F32);
  Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      t.data<float>(), m.rows(), m.cols()) = m.cast<float>();
  return t;
}

// Scales (and zeros) of one row-wise quantizer: [rows, 1] each, i.e. what
// gptq.py's quantizer holds after find_params(W[:, a:b], weight=True).
struct RowScales {
  QuantScales s;
};

// The quantizer applied per column: one scale per row (PER_CHANNEL on a
// [rows, 1] column, or on a [rows, g] group when finding the scales).
QuantSpec row_spec(const QuantSpec& spec) {
  QuantSpec r = spec;
  r.granularity = QuantGranularity::PER_CHANNEL;
  return r;
}

RowScales find_params(const Mat& W, int64_t c0, int64_t c1, const QuantSpec& spec) {
  RowScales out;
  if (spec.granularity == QuantGranularity::PER_TENSOR) {
    // One scale for the whole matrix, repeated per row.
    const QuantScales s = compute_scales(from_mat_f32(W), spec);
    const int64_t rows = W.rows();
    out.s.scale = s.scale.reshape({1, 1}).expand({rows, 1}).contiguous();
    if (s.zero.defined()) out.s.zero = s.zero.reshape({1, 1}).expand({rows, 1}).contiguous();
    return out;
  }
  out.s = compute_scales(from_mat_f32(W.middleCols(c0, c1 - c0)), row_spec(spec));
  return out;
}

// Dequantized column (f32 values, as f64) for the given row scales.
Eigen::VectorXd quantize_column(const Eigen::VectorXd& w, const RowScales& rs,
                                const QuantSpec& spec) {
  const Tensor col = from_mat_f32(w);  // [rows, 1]
  const Tensor deq = dequantize(quantize(col, row_spec(spec), rs.s));
  return Eigen::Map<const Eigen::VectorXf>(deq.data<float>(), w.size()).cast<double>();
}

void check_layer_inputs(const Tensor& W, const Tensor& H, const GptqOptions& o) {
  GL_CHECK(W.defined() && H.defined(), "gptq: undefined weight or Hessian");
  GL_CHECK(W.dim() == 2 && is_floating(W.dtype()), "gptq: weight must be a 2-D floating [rows, cols] ",
           "tensor, got ", W.describe());
  GL_CHECK(H.dim() == 2 && is_floating(H.dtype()) && H.size(0) == W.size(1) &&
               H.size(1) == W.size(1),
           "gptq: Hessian must be [cols, cols] = [", W.size(1), ", ", W.size(1),
           "] floating for weight ", W.describe(), ", got ", H.describe());
  GL_CHECK(std::isfinite(o.percdamp) && o.percdamp >= 0.0,
           "gptq: percdamp must be finite and >= 0, got ", o.percdamp);
  GL_CHECK(o.blocksize >= 1, "gptq: blocksize must be >= 1, got ", o.blocksize);
  GL_CHECK(o.spec.rounding != QuantRounding::STOCHASTIC, "gptq: quant spec '", o.spec.name,
           "' rounds stochastically; GPTQ needs a deterministic quantizer");
  validate_for_shape(o.spec, W.shape());
}

}  // namespace

GptqHessian::GptqHessian(int64_t cols) : H(Tensor::zeros({cols, cols}, DType::F64)) {
  GL_CHECK(cols >= 1, "GptqHessian: cols must be >= 1, got ", cols);
}

void GptqHessian::accumulate(const Tensor& x) {
  GL_CHECK(H.defined(), "GptqHessian::accumulate: not sized (construct with the column count)");
  const int64_t cols = H.size(0);
  GL_CHECK(x.defined() && is_floating(x.dtype()) && x.dim() >= 1 && x.size(-1) == cols,
           "GptqHessian::accumulate: input must be floating [..., ", cols, "], got ",
           x.defined() ? x.describe() : std::string("undefined"));
  const int64_t m = x.numel() / cols;
  if (m == 0) return;
  const Tensor xc = x.to(Device::cpu()).to(DType::F64).contiguous();
  Eigen::Map<const RowMat> X(xc.data<double>(), m, cols);
  Eigen::Map<RowMat> Hm(H.data<double>(), cols, cols);
  // gptq.py add_batch: H *= n / (n + m); n += m; H += (sqrt(2/n) X)^T (sqrt(2/n) X).
  Hm *= double(n) / double(n + m);
  n += m;
  Hm.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose(), 2.0 / double(n));
  Hm.triangularView<Eigen::StrictlyUpper>() = Hm.transpose();
}

double gptq_layer_error(const Tensor& W, const Tensor& Q, const Tensor& H) {
  GL_CHECK(W.defined() && Q.defined() && H.defined() && W.dim() == 2 && Q.shape() == W.shape() &&
               H.dim() == 2 && H.size(0) == W.size(1) && H.size(1) == W.size(1),
           "gptq_layer_error: need W [rows, cols], Q of W's shape and H [cols, cols], got ",
           W.describe(), ", ", Q.describe(), ", ", H.describe());
  const Mat D = to_mat(W) - to_mat(Q);
  return (D * to_mat(H)).cwiseProduct(D).sum();
}

GptqResult gptq_quantize(const Tensor& W_in, const Tensor& H_in, const GptqOptions& o) {
  check_layer_inputs(W_in, H_in, o);
  const QuantSpec& spec = o.spec;
  const int64_t rows = W_in.size(0), cols = W_in.size(1);
  Mat W = to_mat(W_in);
  Mat H = to_mat(H_in);
  GL_CHECK(W.allFinite() && H.allFinite(), "gptq: non-finite values in weight ", W_in.describe(),
           " or Hessian ", H_in.describe());
  const bool grouped = spec.granularity == QuantGranularity::PER_GROUP;
  const int64_t g = grouped ? spec.group_size : cols;

  // 1. Per-channel / per-tensor: scales on the input W (gptq.py finds them
  // before zeroing dead columns).
  RowScales whole;
  if (!grouped) whole = find_params(W, 0, cols, spec);
  // 2. Dead columns: no calibration input ever reached them.
  for (int64_t c = 0; c < cols; ++c)
    if (H(c, c) == 0.0) {
      H(c, c) = 1.0;
      W.col(c).setZero();
    }
  // 3. Static groups: scales of every group now, in the original order.
  std::vector<RowScales> static_scales;
  if (grouped && o.static_groups)
    for (int64_t c = 0; c < cols; c += g) static_scales.push_back(find_params(W, c, c + g, spec));
  // 4. act_order.
  std::vector<int64_t> perm;
  if (o.act_order) {
    perm.resize(size_t(cols));
    std::iota(perm.begin(), perm.end(), int64_t(0));
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
    Mat Wp(rows, cols), Hp(cols, cols);
    for (int64_t k = 0; k < cols; ++k) Wp.col(k) = W.col(perm[size_t(k)]);
    for (int64_t a = 0; a < cols; ++a)
      for (int64_t b = 0; b < cols; ++b) Hp(a, b) = H(perm[size_t(a)], perm[size_t(b)]);
    W = std::move(Wp);
    H = std::move(Hp);
  }
  // 5. Damping, then U = upper Cholesky factor of H^-1 (torch: cholesky,
  // cholesky_inverse, cholesky(upper=True)).
  H.diagonal().array() += o.percdamp * H.diagonal().mean();
  Eigen::LLT<Mat> llt(H);
  GL_CHECK(llt.info() == Eigen::Success, "gptq: the damped Hessian of weight ", W_in.describe(),
           " is not positive definite (percdamp ", o.percdamp, "); increase percdamp");
  const Mat Hinv = llt.solve(Mat::Identity(cols, cols));
  Eigen::LLT<Mat> llt_inv(Hinv);
  GL_CHECK(llt_inv.info() == Eigen::Success, "gptq: the inverse Hessian of weight ",
           W_in.describe(), " is not positive definite (percdamp ", o.percdamp,
           "); increase percdamp");
  const Mat U = llt_inv.matrixU();

  // 6. Columns in blocks of B with lazy batch updates.
  Mat Q = Mat::Zero(rows, cols);
  std::vector<RowScales> group_scales;  // dynamic groups, in (permuted) order
  double loss = 0.0;
  for (int64_t i1 = 0; i1 < cols; i1 += o.blocksize) {
    const int64_t i2 = std::min(i1 + o.blocksize, cols), count = i2 - i1;
    Mat W1 = W.middleCols(i1, count);
    Mat Err1 = Mat::Zero(rows, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t c = i1 + i;
      const RowScales* rs = &whole;
      if (grouped && !o.static_groups) {
        // On the global W (earlier blocks' lazy updates, not W1's), as gptq.py.
        if (c % g == 0) group_scales.push_back(find_params(W, c, std::min(c + g, cols), spec));
        rs = &group_scales.back();
      } else if (grouped) {
        const int64_t orig = o.act_order ? perm[size_t(c)] : c;
        rs = &static_scales[size_t(orig / g)];
      }
      const Eigen::VectorXd w = W1.col(i);
      const Eigen::VectorXd q = quantize_column(w, *rs, spec);
      Q.col(c) = q;
      const double d = U(c, c);
      loss += (w - q).squaredNorm() / (d * d) / 2.0;
      const Eigen::VectorXd err = (w - q) / d;
      // W1[:, i:] -= err U[i, i:] (row i of U, within the block).
      W1.rightCols(count - i).noalias() -= err * U.block(c, c, 1, count - i);
      Err1.col(i) = err;
    }
    // Lazy batch update of the columns after the block.
    if (i2 < cols) W.rightCols(cols - i2).noalias() -= Err1 * U.block(i1, i2, count, cols - i2);
  }

  // 7. Unpermute Q; gather the scales into quant_scales_shape.
  GptqResult res;
  if (o.act_order) {
    Mat Qo(rows, cols);
    for (int64_t k = 0; k < cols; ++k) Qo.col(perm[size_t(k)]) = Q.col(k);
    Q = std::move(Qo);
    res.perm = perm;
  }
  res.q_weight = from_mat_f32(Q);
  const std::vector<RowScales>& gs = !grouped ? std::vector<RowScales>{whole}
                                     : o.static_groups ? static_scales
                                                       : group_scales;
  const Shape sshape = quant_scales_shape(spec, W_in.shape());
  const int64_t ng = int64_t(gs.size());
  auto gather = [&](bool zero) {
    std::vector<float> v(size_t(rows * ng));
    for (int64_t k = 0; k < ng; ++k) {
      const std::vector<float> s = (zero ? gs[size_t(k)].s.zero : gs[size_t(k)].s.scale)
                                       .to_vector_as<float>();
      for (int64_t r = 0; r < rows; ++r) v[size_t(r * ng + k)] = s[size_t(r)];
    }
    // Per-tensor: every row holds the same value; keep one.
    if (spec.granularity == QuantGranularity::PER_TENSOR) v.resize(1);
    return Tensor::from_data<float>(v, sshape);
  };
  res.scales.scale = gather(false);
  if (!spec.symmetric()) res.scales.zero = gather(true);
  res.error = gptq_layer_error(W_in, res.q_weight, H_in);
  res.gptq_loss = loss;
  return res;
}

namespace {

// Transformer block of a weight use name ("...layers.3..." / "...h.3..."),
// or -1 for a name outside the blocks (the head).
int64_t block_of(const std::string& name) {
  static const std::regex re(R"(\.(?:layers|h)\.(\d+)\.)");
  std::smatch m;
  return std::regex_search(name, m, re) ? std::stoll(m[1].str()) : -1;
}

}  // namespace

std::vector<GptqLayerReport> gptq_quantize_model(LanguageModel& model,
                                                 const std::vector<Tensor>& calibration,
                                                 const GptqOptions& options,
                                                 const std::vector<std::string>& layers) {
  const ModelConfig& cfg = model.config();
  GL_CHECK(!calibration.empty(), "gptq_quantize_model: no calibration batches");
  for (const Tensor& ids : calibration)
    GL_CHECK(ids.defined() && ids.dim() == 2 &&
                 (ids.dtype() == DType::I32 || ids.dtype() == DType::I64),
             "gptq_quantize_model: calibration batches must be i32/i64 token ids [B, T], got ",
             ids.defined() ? ids.describe() : std::string("undefined"));
  GL_CHECK(options.spec.rounding != QuantRounding::STOCHASTIC, "gptq_quantize_model: quant spec '",
           options.spec.name, "' rounds stochastically; GPTQ needs a deterministic quantizer");
  // Resolve the patterns and check every selected weight before any work.
  const std::vector<std::string> names = resolve_layer_patterns(cfg, layers);
  std::map<std::string, WeightUse> use_of;
  for (const WeightUse& u : weight_uses(cfg)) use_of[u.name] = u;
  std::map<std::string, Var> params;
  for (const NamedParam& p : model.parameters()) params[p.name] = p.var;
  // Blocks in order, the head (block -1) last.
  std::map<int64_t, std::vector<std::string>> by_block;
  for (const std::string& name : names) {
    const WeightUse& u = use_of.at(name);
    GL_CHECK(u.role != WeightRole::EMBEDDING, "gptq_quantize_model: '", name,
             "' is an embedding lookup, not a linear layer; GPTQ quantizes attention, mlp and "
             "head weights");
    GL_CHECK(u.param == u.name, "gptq_quantize_model: '", name, "' is a head tied to '", u.param,
             "' (an embedding table); GPTQ cannot quantize it without changing the lookup");
    const Tensor& w = params.at(u.param).value();
    GL_CHECK(w.dim() == 2, "gptq_quantize_model: '", name, "' is not a matrix: ", w.describe());
    validate_for_shape(options.spec, u.transposed ? Shape{w.size(1), w.size(0)} : w.shape());
    by_block[block_of(name)].push_back(name);
  }
  std::vector<int64_t> order;
  for (const auto& kv : by_block)
    if (kv.first >= 0) order.push_back(kv.first);
  if (by_block.count(-1)) order.push_back(-1);

  // The capture hook, composed with any transform already installed.
  const LanguageModel::ActivationTransform previous = model.activation_transform();
  std::map<std::string, GptqHessian> hessians;
  model.set_activation_transform([&previous, &hessians](const std::string& name, const Var& x) {
    const Var y = previous ? previous(name, x) : x;
    auto it = hessians.find(name);
    if (it != hessians.end()) it->second.accumulate(y.value());
    return y;
  });
  std::vector<GptqLayerReport> reports;
  try {
    for (int64_t block : order) {
      hessians.clear();
      for (const std::string& name : by_block[block]) {
        const WeightUse& u = use_of.at(name);
        const Tensor& w = params.at(u.param).value();
        hessians.emplace(name, GptqHessian(u.transposed ? w.size(0) : w.size(1)));
      }
      {
        NoGradGuard no_grad;
        for (const Tensor& ids : calibration) (void)model.logits(ids);
      }
      for (const std::string& name : by_block[block]) {
        const WeightUse& u = use_of.at(name);
        Tensor w = params.at(u.param).value();
        const Tensor W = u.transposed ? w.transpose(0, 1).contiguous() : w;
        const GptqHessian& h = hessians.at(name);
        GL_CHECK(h.n > 0, "gptq_quantize_model: no input reached '", name,
                 "' during calibration (is the activation hook wired for it?)");
        const GptqResult r = gptq_quantize(W, h.H, options);
        GptqLayerReport rep;
        rep.name = name;
        rep.scales = r.scales;
        rep.perm = r.perm;
        rep.error = r.error;
        rep.rtn_error = gptq_layer_error(W, fake_quantize_reference(W, options.spec), h.H);
        rep.samples = h.n;
        // In place: the next block's calibration pass sees this block quantized.
        w.copy_(u.transposed ? r.q_weight.transpose(0, 1) : r.q_weight);
        reports.push_back(std::move(rep));
      }
    }
  } catch (...) {
    model.set_activation_transform(previous);
    throw;
  }
  model.set_activation_transform(previous);
  return reports;
}

}  // namespace gl
