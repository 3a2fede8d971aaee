// GPTQ post-training quantization (issue 5 item 4; spec.md 5.3; Frantar et
// al., arXiv 2210.17323; IST-DASLab/gptq gptq.py fasterquant + quant.py).
//
// Per layer (W [rows = out, cols = in], H [cols, cols] from calibration
// inputs), exactly as fasterquant:
//   1. per-channel / per-tensor specs: scales found on the INPUT W (before
//      the dead columns are zeroed, as gptq.py calls find_params first)
//   2. dead = diag(H) == 0: H[d, d] = 1, W[:, d] = 0
//   3. static_groups: the group scales found now, on this W, original order
//   4. act_order: perm = argsort(diag(H), descending); W, H permuted (ties
//      keep the column order: std::stable_sort; torch.argsort is not
//      stable, so tied diagonals may be ordered differently there)
//   5. H += percdamp * mean(diag(H)) * I; U = chol(chol_inverse(chol(H)))
//      upper, i.e. the upper Cholesky factor of H^-1 (Eigen::LLT)
//   6. for blocks [i1, i2) of `blocksize` columns: W1 = W[:, i1:i2] (a
//      copy); for each column i: if a group starts at i1 + i (and not
//      static_groups), find the group's scales on W[:, i1+i : i1+i+g] --
//      the global W, which holds the lazy updates of earlier blocks but not
//      the within-block updates of W1 (gptq.py reads W there, not W1; the
//      two agree whenever groups start at block starts, e.g. g = B = 128);
//      q = quantize(W1[:, i]); err = (W1[:, i] - q) / U[i, i];
//      W1[:, i:] -= err U[i, i:]; then W[:, i2:] -= Err1 U[i1:i2, i2:]
//   7. act_order: Q unpermuted
// The group quantizer is quant/quantizer.h's compute_scales / quantize /
// dequantize on the group (one quantizer in the project); gptq_sym4 is
// quant.py's sym rule (s = 2a/15, zero 8), w4a16_g128 its asym rule.
// Stochastic rounding is refused (GPTQ is deterministic).
//
// Precision: the Hessian, the Cholesky factors and the error feedback are
// in f64 (gptq.py works in f32). Why: H of real activations is badly
// conditioned; in f32 the Cholesky of the damped H can fail or lose digits
// that the column-by-column error feedback then compounds, and f64 costs
// nothing at our sizes. The quantizer itself works in f32 (quantizer.h), so
// each column is rounded to f32 before its codes are found and Q holds
// exactly the f32 values dequantize() gives. The reference test runs
// gptq.py's algorithm in torch f64 (tests/reference/gptq_ref.py).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"
#include "quant/quantizer.h"

namespace gl {

struct GptqOptions {
  QuantSpec spec = quant_preset("gptq_sym4");
  double percdamp = 0.01;   // damping, relative to mean(diag(H))
  int64_t blocksize = 128;  // lazy-batch width B
  bool act_order = false;   // columns in order of decreasing diag(H)
  bool static_groups = false;  // group scales fixed before any error update
};

// H = (2 / n) sum_k x_k x_k^T over every input row seen, kept as gptq.py's
// running mean: H *= n / (n + m); n += m; H += (2 / n) X^T X. x: [..., cols]
// of any floating dtype/device; every leading index is one row (a token).
// gptq.py counts sequences rather than tokens for 3-D inputs; that only
// scales H by a constant, to which GPTQ is invariant (the damping is
// relative to mean(diag(H))).
struct GptqHessian {
  Tensor H;       // [cols, cols] f64 CPU
  int64_t n = 0;  // rows accumulated
  GptqHessian() = default;
  explicit GptqHessian(int64_t cols);
  void accumulate(const Tensor& x);
};

struct GptqResult {
  Tensor q_weight;     // f32 CPU, W's shape: the GPTQ-dequantized weights
  QuantScales scales;  // quant_scales_shape(spec, W's shape); see perm
  // act_order: the column permutation used (perm[k] = original column of
  // position k), else empty. With act_order and groups but not
  // static_groups, gptq.py's groups are runs of PERMUTED columns: scale
  // group j then covers original columns perm[j*g .. (j+1)*g).
  std::vector<int64_t> perm;
  double error = 0.0;      // tr((W - Q) H (W - Q)^T) with the given, undamped H
  double gptq_loss = 0.0;  // gptq.py's sum(Losses): sum over columns of |w - q|^2 / (2 U_ii^2)
};

// W: [rows, cols] floating, any device; H: [cols, cols] (e.g.
// GptqHessian::H). Checks the spec against W's shape before any work.
GptqResult gptq_quantize(const Tensor& W, const Tensor& H, const GptqOptions& options);

// tr((W - Q) H (W - Q)^T) in f64: the layer objective GPTQ minimises
// greedily (the change of the squared output error on the calibration set).
double gptq_layer_error(const Tensor& W, const Tensor& Q, const Tensor& H);

// The model driver, layer-sequential as opt.py: for each transformer block l
// in order (then the head, if selected), run the model over every
// calibration batch with blocks < l already quantized, capture the inputs of
// block l's selected linears through the activation hook (all of them in
// that one pass, block l still FP, as opt.py), then GPTQ-quantize them and
// write the dequantized weights into the parameters in place. Instead of
// opt.py's block-by-block propagation of the block outputs, the whole model
// is re-run per block: the same inputs, simpler, (blocks + 1) forwards per
// batch. An activation transform already installed (QAT) is kept and
// composed: GPTQ sees the inputs the linears actually receive.
// `calibration`: token ids [B, T] (i32/i64); `layers`: quant/qat.h
// patterns; embeddings and a tied head (a lookup table) are refused.
struct GptqLayerReport {
  std::string name;  // weight use name (Hugging Face)
  QuantScales scales;
  std::vector<int64_t> perm;
  double error = 0.0;       // GptqResult::error on this layer's H
  double rtn_error = 0.0;   // the same objective for round-to-nearest
  int64_t samples = 0;      // input rows behind H
};
std::vector<GptqLayerReport> gptq_quantize_model(LanguageModel& model,
                                                 const std::vector<Tensor>& calibration,
                                                 const GptqOptions& options,
                                                 const std::vector<std::string>& layers = {
                                                     "attention", "mlp"});

}  // namespace gl
