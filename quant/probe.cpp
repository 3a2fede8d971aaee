// The INT4/INT8 probe: FP pass, one pass per format with the selected
// weights fake-quantized in place, bit-exact restore. Definitions, layer
// vocabulary and cost in quant/probe.h.
#include "quant/probe.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "autograd/ops.h"
#include "core/error.h"

namespace gl {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// The named groups of quant.layers (see probe.h), by HF parameter name.
bool in_group(const ModelConfig& cfg, const std::string& name, const std::string& group) {
  if (group == "all") return true;
  if (group == "attention") return contains(name, ".attention.") || contains(name, ".attn.");
  if (group == "mlp") return contains(name, ".mlp.");
  if (group == "embeddings")
    return contains(name, "embed_in.") || contains(name, ".wte.") || contains(name, ".wpe.");
  if (group == "head")
    return contains(name, "embed_out.") || contains(name, "lm_head.") ||
           (cfg.tie_embeddings && contains(name, ".wte."));
  return contains(name, group.c_str());  // a parameter-name substring
}

// HF GPT-2 Conv1D weights are [in, out] (x . W); everything else is [out, in].
bool stored_in_out(const ModelConfig& cfg, const std::string& name) {
  return cfg.arch == Arch::GPT2 && (contains(name, ".attn.c_") || contains(name, ".mlp.c_"));
}

// The selected parameters' value tensors, by name (parameters() order).
std::vector<std::pair<std::string, Tensor>> selected_weights(const LanguageModel& model,
                                                             const std::vector<std::string>& names) {
  std::map<std::string, Tensor> by_name;
  for (const NamedParam& p : model.parameters()) by_name[p.name] = p.var.value();
  std::vector<std::pair<std::string, Tensor>> out;
  for (const std::string& n : names) {
    const auto it = by_name.find(n);
    GL_CHECK(it != by_name.end(), "probe: the model has no parameter '", n, "'");
    out.push_back({n, it->second});
  }
  return out;
}

// Saves clones of weights and puts them back (bit-exact: same dtype and
// device, a plain copy). The destructor restores too, so an exception in
// the middle of a quantized pass never leaves a quantized model behind.
class WeightBackup {
 public:
  explicit WeightBackup(const std::vector<std::pair<std::string, Tensor>>& weights) {
    for (const auto& [name, w] : weights) saved_.push_back({w, w.clone()});
  }
  void restore() {
    for (auto& [target, copy] : saved_) target.copy_(copy);
  }
  ~WeightBackup() {
    try {
      restore();
    } catch (...) {  // never throw from a destructor; the error is already in flight
    }
  }
  WeightBackup(const WeightBackup&) = delete;
  WeightBackup& operator=(const WeightBackup&) = delete;

 private:
  std::vector<std::pair<Tensor, Tensor>> saved_;
};

double ppl_of(const NllSum& s) { return std::exp(s.nll / double(s.tokens)); }

}  // namespace

std::vector<QuantSpec> default_probe_formats() {
  return {quant_preset("int4_probe"), quant_preset("int8_probe")};
}

double quant_gap_pct(double ppl_q, double ppl_fp) { return (ppl_q - ppl_fp) / ppl_fp * 100.0; }

std::vector<std::string> select_probe_layers(const LanguageModel& model,
                                             const std::vector<std::string>& patterns) {
  GL_CHECK(!patterns.empty(), "probe: no layer patterns given (e.g. attention, mlp)");
  const std::vector<NamedParam> params = model.parameters();
  std::vector<bool> take(params.size(), false);
  for (const std::string& pat : patterns) {
    GL_CHECK(!pat.empty(), "probe: empty layer pattern");
    bool any = false;
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].var.dim() == 2 && in_group(model.config(), params[i].name, pat))
        take[i] = true, any = true;
    if (!any) {
      std::string names;
      for (const NamedParam& p : params)
        if (p.var.dim() == 2) names += (names.empty() ? "" : ", ") + p.name;
      GL_CHECK(false, "probe: layer pattern '", pat, "' matches no 2-D weight (groups: attention, mlp, ",
               "embeddings, head, all; or a substring of one of: ", names, ")");
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < params.size(); ++i)
    if (take[i]) out.push_back(params[i].name);
  return out;
}

Tensor probe_view(const LanguageModel& model, const std::string& name, const Tensor& w) {
  return stored_in_out(model.config(), name) ? w.transpose(0, 1).contiguous() : w;
}

Tensor probe_fake_quantize(const LanguageModel& model, const std::string& name, const Tensor& w,
                           const QuantSpec& spec) {
  Tensor q = fake_quantize_reference(probe_view(model, name, w), spec);
  if (stored_in_out(model.config(), name)) q = q.transpose(0, 1).contiguous();
  return q;  // f32 CPU; copy_ converts to the parameter's dtype and device
}

NllSum evaluate_nll(const LanguageModel& model,
                    const std::vector<std::pair<Tensor, Tensor>>& batches) {
  NoGradGuard no_grad;
  NllSum s;
  for (const auto& [ids, targets] : batches) {
    // loss() is the mean over targets != -100; times their count gives the sum.
    int64_t n = 0;
    for (int64_t t : targets.to_vector_as<int64_t>()) n += t != -100;
    if (n == 0) continue;
    s.nll += model.loss(ids, targets).value().item() * double(n);
    s.tokens += n;
  }
  GL_CHECK(s.tokens > 0, "probe: the batches score no token (", batches.size(),
           " batch(es), all targets ignored or none given)");
  return s;
}

std::vector<std::string> check_probe_options(const LanguageModel& model,
                                             const ProbeOptions& options) {
  // Patterns first, then each format on each shape.
  GL_CHECK(!options.formats.empty(), "probe: no formats given (e.g. int4_probe, int8_probe)");
  const std::vector<std::string> names = select_probe_layers(model, options.layers);
  for (const QuantSpec& spec : options.formats)
    for (const auto& [name, w] : selected_weights(model, names)) {
      try {
        validate_for_shape(spec, probe_view(model, name, w).shape());
      } catch (const Error& e) {
        GL_CHECK(false, "probe: format '", spec.name, "' cannot quantize ", name, ": ", e.what());
      }
    }
  return names;
}

ProbeResult run_probe(const LanguageModel& model,
                      const std::vector<std::pair<Tensor, Tensor>>& batches,
                      const ProbeOptions& options) {
  GL_CHECK(!batches.empty(), "probe: no evaluation batches");
  const auto weights = selected_weights(model, check_probe_options(model, options));

  ProbeResult r;
  if (options.diagnostics)
    for (const auto& [name, w] : weights)
      r.layers.push_back(layer_diagnostics(name, probe_view(model, name, w), options.formats));

  const NllSum fp = evaluate_nll(model, batches);
  r.passes = 1;
  r.tokens = fp.tokens;
  r.fp_nll = fp.nll / double(fp.tokens);
  r.fp_ppl = ppl_of(fp);

  WeightBackup backup(weights);
  // Quantize `which` (indices into weights) under spec, evaluate, restore.
  auto quantized_pass = [&](const QuantSpec& spec, const std::vector<size_t>& which) {
    for (size_t i : which) {
      Tensor target = weights[i].second;
      target.copy_(probe_fake_quantize(model, weights[i].first, target, spec));
    }
    const NllSum q = evaluate_nll(model, batches);
    backup.restore();
    ++r.passes;
    return q;
  };
  std::vector<size_t> all(weights.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (const QuantSpec& spec : options.formats) {
    const NllSum q = quantized_pass(spec, all);
    ProbeResult::Fmt f;
    f.name = spec.name;
    f.nll = q.nll / double(q.tokens);
    f.ppl = ppl_of(q);
    f.gap_pct = quant_gap_pct(f.ppl, r.fp_ppl);
    r.formats.push_back(f);
  }
  if (options.sensitivity) {
    if (r.layers.empty())  // sensitivity lives in the per-layer records
      for (const auto& [name, w] : weights) {
        LayerDiagnostics d;
        d.name = name;
        d.shape = probe_view(model, name, w).shape();
        d.numel = w.numel();
        d.excess_kurtosis = d.absmax_over_std = kNaN;
        for (const QuantSpec& spec : options.formats) d.formats.push_back({spec.name});
        r.layers.push_back(d);
      }
    for (size_t i = 0; i < weights.size(); ++i)
      for (size_t f = 0; f < options.formats.size(); ++f)
        r.layers[i].formats[f].sensitivity_gap_pct =
            quant_gap_pct(ppl_of(quantized_pass(options.formats[f], {i})), r.fp_ppl);
  }
  return r;
}

void fill_bin_flips(ProbeResult& result, const LanguageModel& previous,
                    const LanguageModel& current, const ProbeOptions& options) {
  std::map<std::string, Tensor> prev;
  for (const NamedParam& p : previous.parameters()) prev[p.name] = p.var.value();
  std::map<std::string, Tensor> cur;
  for (const NamedParam& p : current.parameters()) cur[p.name] = p.var.value();
  for (LayerDiagnostics& d : result.layers) {
    const auto a = prev.find(d.name), b = cur.find(d.name);
    GL_CHECK(a != prev.end(), "probe: bin flips: the previous model has no weight '", d.name, "'");
    GL_CHECK(b != cur.end(), "probe: bin flips: the current model has no weight '", d.name, "'");
    GL_CHECK(a->second.shape() == b->second.shape(), "probe: bin flips: ", d.name,
             " changed shape: ", a->second.describe(), " vs ", b->second.describe());
    GL_CHECK(d.formats.size() == options.formats.size(), "probe: bin flips: ", d.name, " has ",
             d.formats.size(), " format records, the options name ", options.formats.size());
    for (size_t f = 0; f < options.formats.size(); ++f)
      d.formats[f].bin_flips = bin_flip_share(probe_view(previous, d.name, a->second),
                                              probe_view(current, d.name, b->second),
                                              options.formats[f]);
  }
}

double ProbeResult::mean_kurtosis() const {
  double s = 0;
  int64_t n = 0;
  for (const LayerDiagnostics& d : layers)
    if (std::isfinite(d.excess_kurtosis)) s += d.excess_kurtosis, ++n;
  return n ? s / double(n) : kNaN;
}

double ProbeResult::mean_bin_flips(size_t f) const {
  double s = 0, n = 0;
  for (const LayerDiagnostics& d : layers) {
    if (f >= d.formats.size() || std::isnan(d.formats[f].bin_flips)) return kNaN;
    s += d.formats[f].bin_flips * double(d.numel);
    n += double(d.numel);
  }
  return n > 0 ? s / n : kNaN;
}

Json ProbeResult::to_json() const {
  Json j = Json::object();
  j.set("fp_nll", fp_nll);
  j.set("fp_ppl", fp_ppl);
  j.set("tokens", tokens);
  j.set("passes", passes);
  const double mk = mean_kurtosis();
  if (std::isfinite(mk)) j.set("mean_kurtosis", mk);
  Json fmts = Json::array();
  for (size_t f = 0; f < formats.size(); ++f) {
    const Fmt& x = formats[f];
    j.set("nll_" + x.name, x.nll);
    j.set("ppl_" + x.name, x.ppl);
    j.set("gap_pct_" + x.name, x.gap_pct);
    const double flips = mean_bin_flips(f);
    if (std::isfinite(flips)) j.set("bin_flips_" + x.name, flips);
    Json fj = Json::object();
    fj.set("name", x.name);
    fj.set("nll", x.nll);
    fj.set("ppl", x.ppl);
    fj.set("gap_pct", x.gap_pct);
    fmts.push_back(fj);
  }
  j.set("formats", fmts);
  Json ls = Json::array();
  for (const LayerDiagnostics& d : layers) ls.push_back(d.to_json());
  j.set("layers", ls);
  return j;
}

}  // namespace gl
