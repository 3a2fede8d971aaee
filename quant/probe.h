// The calibration-free INT4/INT8 probe (issue 5 item 3; spec.md 0 and 1):
// quantize a model's weights round-to-nearest with a preset, evaluate on the
// same tokens as the FP model, report the gap
//
//   gap_pct = (PPL_q - PPL_fp) / PPL_fp x 100,  PPL = exp(sum NLL / tokens)
//
// with NLL summed over every scored target of the batches (targets equal to
// -100 are ignored, as in LanguageModel::loss), so batches of different
// sizes weigh by their tokens and the result equals ./eval's on the same
// windows.
//
// Cost: one FP pass plus one pass per format. Each format quantizes the
// selected weights IN PLACE (w <- dequantize(quantize(w)), the CPU f32
// reference fake_quantize_reference, copied back into the parameter's dtype
// and device), evaluates, and restores the saved originals bit-exactly
// (copy_ of a clone of the same dtype and device; also when evaluation
// throws). With sensitivity, each selected layer is then quantized alone
// (one more pass per layer and format): that is its share of the gap.
//
// Which weights (ProbeOptions::layers, the recipe vocabulary of quant.layers):
//   attention   the attention projections of every block
//               (GPT-NeoX query_key_value, dense; GPT-2 c_attn, c_proj)
//   mlp         the MLP projections (dense_h_to_4h, dense_4h_to_h; c_fc, c_proj)
//   embeddings  the input embeddings (embed_in; wte, wpe)
//   head        the LM head (embed_out; lm_head, or wte when tied)
//   all         every 2-D parameter
//   other text  a substring of the parameter name (2-D parameters only)
// Default {attention, mlp}: "all linear layers" of the blocks, i.e. spec.md
// 0's four block Linear weights per layer; embeddings, head, biases and norms
// stay FP (add "head" to quantize the LM head too, as some PTQ pipelines do).
// Only 2-D weights are ever quantized; a pattern that selects none is an
// error listing the model's 2-D weights.
//
// Groups run along the input dimension (quant/quantizer.h): weights stored
// [out, in] (torch Linear, embeddings, heads) are quantized as stored;
// GPT-2's Conv1D weights are stored [in, out] and are quantized transposed.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "models/model.h"
#include "quant/diagnostics.h"
#include "quant/quantizer.h"

namespace gl {

// {int4_probe, int8_probe}
std::vector<QuantSpec> default_probe_formats();

struct ProbeOptions {
  std::vector<QuantSpec> formats = default_probe_formats();
  std::vector<std::string> layers = {"attention", "mlp"};
  bool sensitivity = false;  // per-layer gap: one extra pass per layer and format
  bool diagnostics = true;   // per-layer moments and grid alignment (no passes)
};

struct ProbeResult {
  double fp_nll = 0, fp_ppl = 0;  // mean NLL (nats/token) and exp of it
  int64_t tokens = 0;             // targets scored per pass
  int64_t passes = 0;             // evaluation passes over the batches made
  struct Fmt {
    std::string name;
    double nll = 0, ppl = 0, gap_pct = 0;
  };
  std::vector<Fmt> formats;               // ProbeOptions::formats order
  std::vector<LayerDiagnostics> layers;   // selected weights, parameter order
  double mean_kurtosis() const;           // mean excess kurtosis over layers (NaN if none)
  // Numel-weighted mean bin-flip share over layers for format index f (NaN
  // while no flips were filled in).
  double mean_bin_flips(size_t f) const;
  // {fp_nll, fp_ppl, tokens, passes, mean_kurtosis, and per format F:
  //  nll_F, ppl_F, gap_pct_F, bin_flips_F (when known); "formats": [...],
  //  "layers": [LayerDiagnostics::to_json ...]}. Flat fields so that report
  // figures (trainer/report.h) can plot them.
  Json to_json() const;
};

// The selected parameter names, in parameter order; errors as above.
std::vector<std::string> select_probe_layers(const LanguageModel& model,
                                             const std::vector<std::string>& patterns);

// The weight as quantized (GPT-2 Conv1D transposed to [out, in]), and the
// round-to-nearest fake-quantized value in the stored layout/dtype/device.
Tensor probe_view(const LanguageModel& model, const std::string& name, const Tensor& w);
Tensor probe_fake_quantize(const LanguageModel& model, const std::string& name, const Tensor& w,
                           const QuantSpec& spec);

// Sum of NLL over the scored targets of all batches ({ids, targets}, each
// [B, T]) without gradients, and the number of scored targets.
struct NllSum {
  double nll = 0;
  int64_t tokens = 0;
};
NllSum evaluate_nll(const LanguageModel& model,
                    const std::vector<std::pair<Tensor, Tensor>>& batches);

// gap_pct as defined above.
double quant_gap_pct(double ppl_q, double ppl_fp);

// The checks run_probe makes before its first pass (patterns match, each
// format valid for each selected weight's shape); returns the selection.
std::vector<std::string> check_probe_options(const LanguageModel& model,
                                             const ProbeOptions& options);

// The probe. Checks the options (formats valid for every selected weight's
// shape, patterns matching) before the first pass. The model's weights are
// the same bits afterwards.
ProbeResult run_probe(const LanguageModel& model,
                      const std::vector<std::pair<Tensor, Tensor>>& batches,
                      const ProbeOptions& options);

// Fills layers[i].formats[f].bin_flips of `result` (made by run_probe on
// `current`) against the same weights of `previous` (same names and
// shapes, else an error naming the weight).
void fill_bin_flips(ProbeResult& result, const LanguageModel& previous,
                    const LanguageModel& current, const ProbeOptions& options);

}  // namespace gl
