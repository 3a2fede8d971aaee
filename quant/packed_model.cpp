// The integer inference path of a model; see packed_model.h.
#include "quant/packed_model.h"

#include "core/error.h"
#include "models/layers.h"
#include "quant/qat.h"

namespace gl {

PackedModel::PackedModel(const LanguageModel& model, const QuantSpec& spec,
                         const std::vector<std::string>& layers) {
  const ModelConfig& cfg = model.config();
  GL_CHECK(cfg.arch == Arch::GPT_NEOX, "packed model: only GPT-NeoX models run the integer path");
  GL_CHECK(spec.bits == 4, "packed model: quant spec '", spec.name, "' has ", spec.bits,
           " bits; the integer path packs 4-bit weights");
  std::map<std::string, Var> by_name;
  for (const NamedParam& p : model.parameters()) by_name[p.name] = p.var;
  std::map<std::string, std::string> param_of;
  for (const WeightUse& u : weight_uses(cfg)) param_of[u.name] = u.param;
  const Device device = model.parameters().front().var.value().device();
  auto packed = std::make_shared<std::map<std::string, PackedWeight>>();
  for (const std::string& name : resolve_layer_patterns(cfg, layers)) {
    const auto it = param_of.find(name);
    GL_CHECK(it != param_of.end() && by_name.count(it->second), "packed model: no weight for ", name);
    GL_CHECK(name.find("embed_in") == std::string::npos,
             "packed model: ", name, " is an embedding (a lookup, not a matmul); select linear layers");
    const Tensor w = by_name.at(it->second).value().to(Device::cpu()).to(DType::F32);
    (*packed)[name] = PackedWeight::pack(w, spec).to(device);
  }
  packed_ = packed;
}

void PackedModel::attach(LanguageModel& model) const {
  auto packed = packed_;
  model.set_linear_override([packed](const std::string& name, const Var& x, const Var& bias) -> Var {
    const auto it = packed->find(name);
    if (it == packed->end()) return Var();
    GL_CHECK(!grad_enabled(), "packed model: ", name,
             " runs on packed 4-bit weights, which have no backward; evaluate under NoGradGuard");
    return Var(packed_linear(x.value(), it->second, bias.defined() ? bias.value() : Tensor()));
  });
}

void PackedModel::detach(LanguageModel& model) { model.set_linear_override(nullptr); }

std::vector<std::string> PackedModel::packed_names() const {
  std::vector<std::string> out;
  for (const auto& [name, w] : *packed_) out.push_back(name);
  return out;
}

size_t PackedModel::packed_bytes() const {
  size_t n = 0;
  for (const auto& [name, w] : *packed_) n += w.weight_bytes();
  return n;
}

}  // namespace gl
