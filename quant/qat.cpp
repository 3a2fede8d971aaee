// QatPlan: pattern resolution, per-weight quantizer choice (fused op,
// exact reference + straight-through, or LSQ), and the model hooks. See
// quant/qat.h for what each path computes and why.
#include "quant/qat.h"

#include <cmath>
#include <regex>
#include <set>

#include "autograd/ops/fake_quant.h"
#include "models/layers.h"

#if GRIDLOCK_CUDA
#include "cuda/fake_quant.h"
#endif

namespace gl {

namespace {

enum class Path : uint8_t { FUSED, EXACT, LSQ };

// One quantized weight use.
struct Entry {
  std::string name;
  bool transposed = false;  // GPT-2 Conv1D: quantize w^T so groups run along `in`
  Path path = Path::FUSED;
  FakeQuantConfig fq;       // FUSED and LSQ
  int64_t rows = 0, groups = 0;  // the fused op's 2-D scale shape
  Var lsq_scale;            // LSQ: quant_scales_shape of the [out, in] weight
};

// True when fake_quantize(x, s, z) computes exactly what the reference
// quantizer does: x / s in the tensor's dtype, round, clamp, (q - z) * s,
// with f32 scales and a rounding both implement alike. ggml's unsigned-
// domain HALF_UP (symmetric), its m offset (ASYM_MIN), the reciprocal step,
// signed maxima (negative scales) and f16 scales are the reference's alone.
bool fused_expresses(const QuantSpec& s) {
  return s.scale_dtype == DType::F32 && !s.signed_max && !s.reciprocal &&
         s.zero_point != QuantZeroPoint::ASYM_MIN &&
         !(s.symmetric() && s.rounding == QuantRounding::HALF_UP);
}

const char* role_keyword(WeightRole r) {
  switch (r) {
    case WeightRole::ATTENTION: return "attention";
    case WeightRole::MLP: return "mlp";
    case WeightRole::EMBEDDING: return "embeddings";
    case WeightRole::HEAD: return "head";
  }
  return "?";
}

// "gpt_neox.layers.N.mlp.dense_h_to_4h.weight" etc.: the names once per
// layer-independent form, for error messages that stay short.
std::string valid_names(const std::vector<WeightUse>& uses) {
  static const std::regex layer_index(R"(\.\d+\.)");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const WeightUse& u : uses) {
    const std::string n = std::regex_replace(u.name, layer_index, ".N.");
    if (seen.insert(n).second) out.push_back(n);
  }
  std::string s;
  for (const std::string& n : out) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// Elementwise 0/1 mask (f32, CPU) passing the elements the clamp did not
// move: the reference rounds to the nearest level (half a step away at
// most; f16-stored scales add at most |q| * 2^-11 steps, below the 2^-7
// margin), while a clamped element lies at least a whole step away.
Tensor within_half_step(const Tensor& w, const Tensor& w_hat, const Tensor& step, int64_t G) {
  const std::vector<float> a = w.to(DType::F32).contiguous().to_vector_as<float>();
  const std::vector<float> b = w_hat.to_vector_as<float>();
  const std::vector<float> s = step.to_vector_as<float>();
  std::vector<double> m(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const float half = 0.5f * std::fabs(s[i / size_t(G)]) * (1.0f + 1.0f / 64.0f);
    m[i] = std::fabs(a[i] - b[i]) <= half ? 1.0 : 0.0;
  }
  return Tensor::from_vector(m, w.shape(), DType::F32);
}

}  // namespace

struct QatPlan::State {
  QatOptions opt;
  bool enabled = true;
  std::vector<Entry> entries;  // model order
  std::map<std::string, size_t> index;

  const Entry* find(const std::string& name) const {
    if (!enabled) return nullptr;
    const auto it = index.find(name);
    return it == index.end() ? nullptr : &entries[it->second];
  }

  // w_hat of x [out, in] (contiguous or not) for one entry.
  Var quantize_2d(const Entry& e, const Var& x) const {
    const QuantSpec& spec = opt.spec;
    switch (e.path) {
      case Path::LSQ: {
        // An optimizer step can push a small learned scale through zero,
        // where the quantizer is undefined; like torch's
        // _LearnableFakeQuantize (scale.data.clamp_(min=eps) before every
        // forward), clamp it in place to the f32 epsilon. NaN is left alone
        // so the trainer's non-finite check still sees it.
        const double eps = 1.1920928955078125e-07;
        Tensor& sv = Var(e.lsq_scale).mutable_value();
        std::vector<double> v = sv.to_vector();
        bool clamped = false;
        for (double& s : v)
          if (s < eps) s = eps, clamped = true;
        if (clamped) sv.copy_(Tensor::from_vector(v, sv.shape(), sv.dtype(), sv.device()));
        return fake_quantize(x, reshape(e.lsq_scale, {e.rows, e.groups}), Tensor(), e.fq);
      }
      case Path::FUSED: {
        // Recomputed from the current weight and detached (spec 4.3): a
        // plain Var, not an input of the recorded op.
        const QuantScales sc = qat_fused_scales(x.value(), spec);
        const Shape shape2d = {e.rows, e.groups};
        const Tensor zero = sc.zero.defined() ? sc.zero.reshape(shape2d) : Tensor();
        return fake_quantize(x, Var(sc.scale.reshape(shape2d)), zero, e.fq);
      }
      case Path::EXACT: {
        const Tensor w = x.value().contiguous();
        const Tensor ref = fake_quantize_reference(w, spec);  // f32 CPU
        Tensor mask;
        if (opt.ste != SteKind::PLAIN) {
          const QuantScales sc = compute_scales(w, spec);
          mask = within_half_step(w, ref, sc.scale, quant_group_length(spec, w.shape()))
                     .to(x.dtype())
                     .to(x.device());
        }
        return straight_through(x, ref.to(x.dtype()).to(x.device()), mask);
      }
    }
    GL_CHECK(false, "QAT: unknown quantizer path for ", e.name);
  }

  Var weight(const std::string& name, const Var& w) const {
    const Entry* e = find(name);
    if (!e) return w;
    if (!e->transposed) return quantize_2d(*e, w);
    return transpose(quantize_2d(*e, contiguous(transpose(w, 0, 1))), 0, 1);
  }

  Var activation(const std::string& name, const Var& x) const {
    if (opt.act_bits == 0) return x;
    if (!find(name)) return x;
    // A per-token scale is computed, not learned: LSQ acts as CLIPPED here.
    const SteKind ste = opt.ste == SteKind::LSQ ? SteKind::CLIPPED : opt.ste;
    const QuantRounding r = opt.spec.rounding == QuantRounding::STOCHASTIC
                                ? QuantRounding::NEAREST_EVEN
                                : opt.spec.rounding;
    return fake_quantize_per_token(x, opt.act_bits, /*symmetric=*/true, r, ste);
  }
};

std::vector<std::string> resolve_layer_patterns(const ModelConfig& cfg,
                                                const std::vector<std::string>& patterns) {
  const std::vector<WeightUse> uses = weight_uses(cfg);
  GL_CHECK(!patterns.empty(), "QAT: no layer patterns given (attention, mlp, embeddings, head, ",
           "all, or a regex over: ", valid_names(uses), ")");
  std::vector<bool> chosen(uses.size(), false);
  for (const std::string& pat : patterns) {
    const bool keyword = pat == "attention" || pat == "mlp" || pat == "embeddings" ||
                         pat == "head" || pat == "all";
    std::regex re;
    if (!keyword) {
      try {
        re = std::regex(pat);
      } catch (const std::regex_error& err) {
        GL_CHECK(false, "QAT: layer pattern '", pat, "' is not a valid regex (", err.what(), ")");
      }
    }
    size_t hits = 0;
    for (size_t i = 0; i < uses.size(); ++i) {
      const bool hit = keyword ? (pat == "all" || pat == role_keyword(uses[i].role))
                               : std::regex_search(uses[i].name, re);
      if (hit) {
        chosen[i] = true;
        ++hits;
      }
    }
    GL_CHECK(hits > 0, "QAT: layer pattern '", pat,
             "' matches no weight (use attention, mlp, embeddings, head, all, or a regex over: ",
             valid_names(uses), ")");
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < uses.size(); ++i)
    if (chosen[i]) names.push_back(uses[i].name);
  return names;
}

QatPlan::QatPlan(const LanguageModel& model, QatOptions options)
    : state_(std::make_shared<State>()) {
  State& st = *state_;
  st.opt = std::move(options);
  const QatOptions& opt = st.opt;
  const QuantSpec& spec = opt.spec;
  validate(spec);
  GL_CHECK(opt.act_bits == 0 || opt.act_bits == 4 || opt.act_bits == 8,
           "QAT: act_bits must be 0 (weights only), 4 or 8, got ", opt.act_bits);
  GL_CHECK(spec.rounding != QuantRounding::STOCHASTIC, "QAT: quant spec '", spec.name,
           "' rounds stochastically, which QAT weights do not support (use even, away or half_up)");
  const bool learned = spec.scale_rule == QuantScaleRule::LEARNED;
  GL_CHECK(!learned || opt.ste == SteKind::LSQ, "QAT: quant spec '", spec.name,
           "' has learned (lsq) scales, which only the LSQ estimator trains (ste is not lsq)");
  if (opt.ste == SteKind::LSQ) {
    GL_CHECK(spec.symmetric(), "QAT: LSQ needs a symmetric quant spec, '", spec.name,
             "' has a zero point");
    QuantSpec as_fused = spec;
    as_fused.scale_rule = QuantScaleRule::ABSMAX;
    GL_CHECK(fused_expresses(as_fused), "QAT: LSQ learns f32 scales with the division step; quant ",
             "spec '", spec.name, "' needs f16 scales, a signed max, a reciprocal or ggml's ",
             "half_up (its exact format cannot hold a learned scale)");
  }
  st.enabled = opt.start_step <= 0;

  const ModelConfig& cfg = model.config();
  const std::vector<std::string> names = resolve_layer_patterns(cfg, opt.layers);
  const std::set<std::string> wanted(names.begin(), names.end());
  const std::vector<NamedParam> params = model.parameters();
  auto param = [&](const std::string& n) -> const Var& {
    for (const NamedParam& p : params)
      if (p.name == n) return p.var;
    GL_CHECK(false, "QAT: the model has no parameter ", n);
  };
  for (const WeightUse& u : weight_uses(cfg)) {
    if (!wanted.count(u.name)) continue;
    const Var& w = param(u.param);
    GL_CHECK(w.dim() == 2, "QAT: weight ", u.name, " must be 2-D, got ", w.describe());
    Entry e;
    e.name = u.name;
    e.transposed = u.transposed;
    // The [out, in] shape the quantizer sees (groups along in).
    const Shape shape = u.transposed ? Shape{w.size(1), w.size(0)} : w.shape();
    try {
      validate_for_shape(spec, shape);
    } catch (const Error& err) {
      GL_CHECK(false, "QAT: weight ", u.name, " [out, in] = ", shape_str(shape), ": ", err.what());
    }
    const int64_t G = quant_group_length(spec, shape);
    const int64_t K = shape[1];
    e.rows = spec.granularity == QuantGranularity::PER_TENSOR ? 1 : shape[0];
    e.groups = spec.granularity == QuantGranularity::PER_GROUP ? K / G : 1;
    e.fq.qmin = spec.qmin();
    e.fq.qmax = spec.qmax();
    e.fq.group_size = spec.granularity == QuantGranularity::PER_GROUP ? G : K;
    e.fq.rounding = spec.rounding;
    e.fq.ste = opt.ste;
    if (opt.ste == SteKind::LSQ) {
      e.path = Path::LSQ;
      // Esser et al.: gradient scale 1 / sqrt(N_W * Q_P), N_W weights per scale.
      e.fq.lsq_grad_scale = 1.0 / std::sqrt(double(G) * double(spec.qmax()));
      QuantSpec init = spec;
      init.scale_rule = QuantScaleRule::LEARNED;  // s = 2 mean|w| / sqrt(Q_P), spec 4.3
      const Tensor wq = u.transposed ? w.value().transpose(0, 1).contiguous() : w.value();
      Tensor s = compute_scales(wq, init).scale;
      // A zero init (an all-zero group) would stall LSQ at an invalid scale.
      std::vector<double> sv = s.to_vector();
      for (double& v : sv)
        if (!(v > 0.0)) v = 1.0;
      e.lsq_scale = Var(Tensor::from_vector(sv, s.shape(), w.dtype(), w.device()), true,
                        u.name + ".lsq_scale");
    } else {
      e.path = fused_expresses(spec) ? Path::FUSED : Path::EXACT;
    }
    st.index[e.name] = st.entries.size();
    st.entries.push_back(std::move(e));
  }
}

void QatPlan::attach(LanguageModel& model) const {
  std::shared_ptr<const State> st = state_;
  for (const Entry& e : st->entries) {
    bool known = false;
    for (const WeightUse& u : weight_uses(model.config())) known = known || u.name == e.name;
    GL_CHECK(known, "QAT: attach: the model has no weight ", e.name,
             " (the plan was made for another architecture)");
  }
  model.set_weight_transform(
      [st](const std::string& name, const Var& w) { return st->weight(name, w); });
  if (st->opt.act_bits > 0)
    model.set_activation_transform(
        [st](const std::string& name, const Var& x) { return st->activation(name, x); });
  else
    model.set_activation_transform(nullptr);
}

void QatPlan::detach(LanguageModel& model) {
  model.set_weight_transform(nullptr);
  model.set_activation_transform(nullptr);
}

void QatPlan::set_enabled(bool enabled) { state_->enabled = enabled; }
bool QatPlan::enabled() const { return state_->enabled; }
const QatOptions& QatPlan::options() const { return state_->opt; }

std::vector<NamedParam> QatPlan::extra_parameters() const {
  std::vector<NamedParam> out;
  for (const Entry& e : state_->entries)
    if (e.path == Path::LSQ) out.push_back({e.name + ".lsq_scale", e.lsq_scale});
  return out;
}

std::vector<std::string> QatPlan::quantized_names() const {
  std::vector<std::string> out;
  for (const Entry& e : state_->entries) out.push_back(e.name);
  return out;
}

Var QatPlan::transform_weight(const std::string& name, const Var& w) const {
  return state_->weight(name, w);
}

Var QatPlan::transform_activation(const std::string& name, const Var& x) const {
  return state_->activation(name, x);
}

QuantScales qat_fused_scales(const Tensor& w, const QuantSpec& spec) {
  const Shape sshape = quant_scales_shape(spec, w.shape());
#if GRIDLOCK_CUDA
  // f32 weights on the GPU with the ABSMAX rule: one kernel, no host round
  // trip (the QAT step's cost was dominated by copying every weight to the
  // host for compute_scales). Same f32 arithmetic: bit-identical scales.
  // Unlike compute_scales it does not reject non-finite weights; they give
  // non-finite scales, hence a non-finite loss the trainer stops on.
  if (w.is_cuda() && w.dtype() == DType::F32 && spec.scale_rule == QuantScaleRule::ABSMAX &&
      !spec.signed_max && spec.scale_dtype == DType::F32 &&
      spec.zero_point != QuantZeroPoint::ASYM_MIN) {
    validate_for_shape(spec, w.shape());
    const Tensor wc = w.contiguous();
    const int64_t G = quant_group_length(spec, w.shape());
    const bool asym = spec.zero_point == QuantZeroPoint::ASYM_ZERO;
    QuantScales out;
    out.scale = Tensor::empty(sshape, DType::F32, w.device());
    if (asym) out.zero = Tensor::empty(sshape, DType::F32, w.device());
    cuda::group_absmax_scales(out.scale.data<float>(), asym ? out.zero.data<float>() : nullptr,
                              wc.data<float>(), wc.numel() / G, G, spec.divisor(), asym);
    return out;
  }
#endif
  const QuantScales sc = compute_scales(w, spec);
  std::vector<double> s = sc.scale.to_vector();
  std::vector<double> z = sc.zero.defined() ? sc.zero.to_vector() : std::vector<double>();
  // An all-zero group has s = 0 (dequantizes to 0); the fused op needs
  // s > 0, and s = 1 with z = 0 maps those zeros to 0 just the same.
  for (size_t k = 0; k < s.size(); ++k)
    if (s[k] == 0.0) {
      s[k] = 1.0;
      if (!z.empty()) z[k] = 0.0;
    }
  QuantScales out;
  out.scale = Tensor::from_vector(s, sshape, w.dtype(), w.device());
  if (!z.empty()) out.zero = Tensor::from_vector(z, sshape, w.dtype(), w.device());
  return out;
}

}  // namespace gl
