// QuantSpec: validation, the named presets, and the spec-string / key-value
// parsers (grammar in quant/quantizer.h). Every error names the spec (its
// name and canonical string) so a recipe author sees which scheme is wrong.
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "quant/quantizer.h"

namespace gl {

int QuantSpec::qmin() const {
  if (!symmetric()) return 0;
  return range == QuantRange::RESTRICTED ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1));
}

int QuantSpec::qmax() const {
  return symmetric() ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
}

double QuantSpec::divisor() const {
  if (scale_divisor != 0.0) return scale_divisor;
  return symmetric() ? double((1 << (bits - 1)) - 1) : double((1 << bits) - 1);
}

static const char* granularity_token(const QuantSpec& s) {
  return s.granularity == QuantGranularity::PER_TENSOR ? "tensor" : "channel";
}
static const char* zero_point_token(QuantZeroPoint z) {
  switch (z) {
    case QuantZeroPoint::SYMMETRIC: return "sym";
    case QuantZeroPoint::ASYM_ZERO: return "asym";
    case QuantZeroPoint::ASYM_MIN: return "asym_min";
  }
  return "?";
}
static const char* scale_rule_token(QuantScaleRule r) {
  switch (r) {
    case QuantScaleRule::ABSMAX: return "absmax";
    case QuantScaleRule::MSE: return "mse";
    case QuantScaleRule::LEARNED: return "lsq";
  }
  return "?";
}
static const char* rounding_token(QuantRounding r) {
  switch (r) {
    case QuantRounding::NEAREST_EVEN: return "even";
    case QuantRounding::NEAREST_AWAY: return "away";
    case QuantRounding::HALF_UP: return "half_up";
    case QuantRounding::STOCHASTIC: return "stochastic";
  }
  return "?";
}

std::string to_string(const QuantSpec& s) {
  std::ostringstream os;
  os << "int" << s.bits << ':';
  if (s.granularity == QuantGranularity::PER_GROUP) os << 'g' << s.group_size;
  else os << granularity_token(s);
  os << ':' << zero_point_token(s.zero_point) << ':'
     << (s.range == QuantRange::RESTRICTED ? "restricted" : "full") << ':'
     << scale_rule_token(s.scale_rule);
  if (s.scale_divisor != 0.0) {
    os.precision(17);
    os << ":div=" << s.scale_divisor;
  }
  if (s.signed_max) os << ":signed_max";
  os << ':' << rounding_token(s.rounding) << ':' << (s.scale_dtype == DType::F16 ? "f16" : "f32");
  if (s.reciprocal) os << ":recip";
  return os.str();
}

// "quant spec 'q4_0' (int4:g32:...)": how every error names a spec.
static std::string spec_label(const QuantSpec& s) {
  return "quant spec '" + s.name + "' (" + to_string(s) + ")";
}

void validate(const QuantSpec& s) {
  const std::string who = spec_label(s);
  GL_CHECK(s.bits >= 2 && s.bits <= 8, who, ": bits = ", s.bits, " is outside 2..8");
  GL_CHECK(s.granularity != QuantGranularity::PER_GROUP || s.group_size >= 1, who,
           ": group size ", s.group_size, " must be >= 1");
  GL_CHECK(s.symmetric() || s.range == QuantRange::FULL, who,
           ": the restricted range is symmetric only (asymmetric codes use all of [0, 2^b-1])");
  GL_CHECK(std::isfinite(s.scale_divisor), who, ": scale divisor ", s.scale_divisor,
           " is not finite");
  GL_CHECK(s.signed_max || s.scale_divisor >= 0.0, who, ": a negative scale divisor (",
           s.scale_divisor, ") needs signed_max (ggml Q4_0: s = max / -8)");
  GL_CHECK(!s.signed_max || s.symmetric(), who, ": signed_max applies to symmetric specs only");
  GL_CHECK(!s.signed_max || s.scale_rule != QuantScaleRule::LEARNED, who,
           ": signed_max has no meaning for a learned (LSQ) scale");
  GL_CHECK(s.scale_rule != QuantScaleRule::LEARNED || s.symmetric(), who,
           ": the learned (LSQ) scale rule is symmetric only");
  GL_CHECK(s.scale_dtype == DType::F32 || s.scale_dtype == DType::F16, who,
           ": scale storage must be f32 or f16, not ", dtype_name(s.scale_dtype));
}

void validate_for_shape(const QuantSpec& s, const Shape& shape) {
  validate(s);
  const std::string who = spec_label(s);
  GL_CHECK(!shape.empty(), who, ": cannot quantize a 0-d tensor ", shape_str(shape));
  GL_CHECK(shape_numel(shape) > 0, who, ": cannot quantize an empty tensor ", shape_str(shape));
  GL_CHECK(s.granularity != QuantGranularity::PER_GROUP || shape.back() % s.group_size == 0, who,
           ": group size ", s.group_size, " does not divide the last (input) dimension ",
           shape.back(), " of ", shape_str(shape));
}

int64_t quant_group_length(const QuantSpec& s, const Shape& shape) {
  validate_for_shape(s, shape);
  switch (s.granularity) {
    case QuantGranularity::PER_TENSOR: return shape_numel(shape);
    case QuantGranularity::PER_CHANNEL: return shape.back();
    case QuantGranularity::PER_GROUP: return s.group_size;
  }
  return 0;
}

Shape quant_scales_shape(const QuantSpec& s, const Shape& shape) {
  const int64_t g = quant_group_length(s, shape);
  if (s.granularity == QuantGranularity::PER_TENSOR) return {1};
  Shape out(shape.begin(), shape.end() - 1);
  out.push_back(shape.back() / g);
  return out;
}

// --- presets ----------------------------------------------------------------

static QuantSpec make_sym(const std::string& name, int bits, int64_t g, QuantRange range,
                          double divisor) {
  QuantSpec s;
  s.name = name;
  s.bits = bits;
  s.group_size = g;
  s.range = range;
  s.scale_divisor = divisor;
  return s;
}

static std::vector<QuantSpec> all_presets() {
  std::vector<QuantSpec> p;
  // ggml: g = 32, f16 d, multiply by id = 1/d (spec.md 4.1).
  QuantSpec q40 = make_sym("q4_0", 4, 32, QuantRange::FULL, -8.0);
  q40.signed_max = true;
  q40.rounding = QuantRounding::HALF_UP;
  q40.scale_dtype = DType::F16;
  q40.reciprocal = true;
  p.push_back(q40);
  QuantSpec q41 = make_sym("q4_1", 4, 32, QuantRange::FULL, 15.0);
  q41.zero_point = QuantZeroPoint::ASYM_MIN;
  q41.rounding = QuantRounding::HALF_UP;
  q41.scale_dtype = DType::F16;
  q41.reciprocal = true;
  p.push_back(q41);
  QuantSpec q80 = make_sym("q8_0", 8, 32, QuantRange::RESTRICTED, 127.0);
  q80.rounding = QuantRounding::NEAREST_AWAY;  // roundf
  q80.scale_dtype = DType::F16;
  q80.reciprocal = true;
  p.push_back(q80);
  // The probe (spec.md 0): SYM-7 with the [-8, 7] clamp, and a/127 for INT8.
  for (const char* n : {"int4_probe", "paper_int4"})
    p.push_back(make_sym(n, 4, 128, QuantRange::FULL, 7.0));
  for (const char* n : {"int8_probe", "paper_int8"})
    p.push_back(make_sym(n, 8, 128, QuantRange::RESTRICTED, 127.0));
  // The other spec.md 4.4 conventions, so the probe can be rerun under each.
  p.push_back(make_sym("sym7_g128", 4, 128, QuantRange::RESTRICTED, 7.0));
  p.push_back(make_sym("sym8_g128", 4, 128, QuantRange::FULL, 8.0));
  p.push_back(make_sym("gptq_sym4", 4, 128, QuantRange::FULL, 7.5));  // s = 2a/15, zero 8
  QuantSpec w4 = make_sym("w4a16_g128", 4, 128, QuantRange::FULL, 15.0);
  w4.zero_point = QuantZeroPoint::ASYM_ZERO;
  p.push_back(w4);
  return p;
}

std::vector<std::string> quant_preset_names() {
  std::vector<std::string> names;
  for (const QuantSpec& s : all_presets()) names.push_back(s.name);
  return names;
}

static std::string joined_preset_names() {
  std::string out;
  for (const std::string& n : quant_preset_names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

static bool find_preset(const std::string& name, QuantSpec* out) {
  for (const QuantSpec& s : all_presets()) {
    if (s.name == name) {
      *out = s;
      return true;
    }
  }
  return false;
}

QuantSpec quant_preset(const std::string& name) {
  QuantSpec s;
  GL_CHECK(find_preset(name, &s), "unknown quantization preset '", name, "' (valid: ",
           joined_preset_names(), ")");
  return s;
}

// --- parsing -------------------------------------------------------------------

static bool parse_int(const std::string& t, int64_t* out) {
  if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 12)
    return false;
  *out = std::stoll(t);
  return true;
}

static bool parse_number(const std::string& t, double* out) {
  if (t.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}

// Applies one override token; false if the token is not in the grammar.
static bool apply_token(QuantSpec& s, const std::string& t) {
  int64_t n = 0;
  double x = 0.0;
  if (t == "tensor") s.granularity = QuantGranularity::PER_TENSOR;
  else if (t == "channel") s.granularity = QuantGranularity::PER_CHANNEL;
  else if (t.size() > 1 && t[0] == 'g' && parse_int(t.substr(1), &n)) {
    s.granularity = QuantGranularity::PER_GROUP;
    s.group_size = n;
  } else if (t == "sym") s.zero_point = QuantZeroPoint::SYMMETRIC;
  else if (t == "asym") s.zero_point = QuantZeroPoint::ASYM_ZERO;
  else if (t == "asym_min") s.zero_point = QuantZeroPoint::ASYM_MIN;
  else if (t == "full") s.range = QuantRange::FULL;
  else if (t == "restricted") s.range = QuantRange::RESTRICTED;
  else if (t == "absmax") s.scale_rule = QuantScaleRule::ABSMAX;
  else if (t == "mse") s.scale_rule = QuantScaleRule::MSE;
  else if (t == "lsq") s.scale_rule = QuantScaleRule::LEARNED;
  else if (t.rfind("div=", 0) == 0 && parse_number(t.substr(4), &x)) s.scale_divisor = x;
  else if (t == "signed_max") s.signed_max = true;
  else if (t == "even") s.rounding = QuantRounding::NEAREST_EVEN;
  else if (t == "away") s.rounding = QuantRounding::NEAREST_AWAY;
  else if (t == "half_up") s.rounding = QuantRounding::HALF_UP;
  else if (t == "stochastic") s.rounding = QuantRounding::STOCHASTIC;
  else if (t == "f32") s.scale_dtype = DType::F32;
  else if (t == "f16") s.scale_dtype = DType::F16;
  else if (t == "recip") s.reciprocal = true;
  else return false;
  return true;
}

// "int<b>" -> the documented defaults with that bit width.
static bool parse_base(const std::string& t, QuantSpec* out) {
  if (find_preset(t, out)) return true;
  int64_t b = 0;
  if (t.rfind("int", 0) != 0 || !parse_int(t.substr(3), &b)) return false;
  *out = QuantSpec{};
  out->bits = int(b);
  return true;
}

QuantSpec quant_spec_from_string(const std::string& text) {
  std::vector<std::string> tokens;
  std::stringstream ss(text);
  for (std::string t; std::getline(ss, t, ':');) tokens.push_back(t);
  GL_CHECK(!tokens.empty() && !tokens[0].empty(), "quant spec '", text,
           "': empty (expected a preset name or int<bits>, then :options)");
  QuantSpec s;
  GL_CHECK(parse_base(tokens[0], &s), "quant spec '", text, "': '", tokens[0],
           "' is neither int<bits> (bits 2..8) nor a preset (", joined_preset_names(), ")");
  for (size_t i = 1; i < tokens.size(); ++i) {
    GL_CHECK(apply_token(s, tokens[i]), "quant spec '", text, "': unknown option '", tokens[i],
             "' (expected tensor|channel|g<N>, sym|asym|asym_min, full|restricted, "
             "absmax|mse|lsq, div=<x>, signed_max, even|away|half_up|stochastic, f32|f16, recip)");
  }
  s.name = text;
  validate(s);
  return s;
}

static bool parse_bool(const std::string& v, bool* out) {
  if (v == "true" || v == "1" || v == "yes") *out = true;
  else if (v == "false" || v == "0" || v == "no") *out = false;
  else return false;
  return true;
}

QuantSpec quant_spec_from_kv(const std::map<std::string, std::string>& kv) {
  QuantSpec s;
  auto it = kv.find("preset");
  if (it != kv.end()) s = quant_preset(it->second);
  std::string label = it != kv.end() ? it->second : "custom";
  for (const auto& [key, value] : kv) {
    const std::string where = "quant spec key '" + key + "' = '" + value + "'";
    int64_t n = 0;
    double x = 0.0;
    bool b = false;
    if (key == "preset") continue;
    label += ":" + key + "=" + value;
    if (key == "bits") {
      GL_CHECK(parse_int(value, &n), where, ": expected an integer 2..8");
      s.bits = int(n);
    } else if (key == "granularity") {
      if (value == "group") s.granularity = QuantGranularity::PER_GROUP;
      else GL_CHECK((value == "tensor" || value == "channel") && apply_token(s, value), where,
                    ": expected tensor, channel or group");
    } else if (key == "group_size") {
      GL_CHECK(parse_int(value, &n) && n >= 1, where, ": expected a positive integer");
      s.group_size = n;
    } else if (key == "zero_point") {
      GL_CHECK((value == "sym" || value == "asym" || value == "asym_min") && apply_token(s, value),
               where, ": expected sym, asym or asym_min");
    } else if (key == "range") {
      GL_CHECK((value == "full" || value == "restricted") && apply_token(s, value), where,
               ": expected full or restricted");
    } else if (key == "scale_rule") {
      GL_CHECK((value == "absmax" || value == "mse" || value == "lsq") && apply_token(s, value),
               where, ": expected absmax, mse or lsq");
    } else if (key == "scale_divisor") {
      GL_CHECK(parse_number(value, &x), where, ": expected a number");
      s.scale_divisor = x;
    } else if (key == "signed_max") {
      GL_CHECK(parse_bool(value, &b), where, ": expected true or false");
      s.signed_max = b;
    } else if (key == "rounding") {
      GL_CHECK((value == "even" || value == "away" || value == "half_up" ||
                value == "stochastic") && apply_token(s, value),
               where, ": expected even, away, half_up or stochastic");
    } else if (key == "scale_dtype") {
      GL_CHECK((value == "f32" || value == "f16") && apply_token(s, value), where,
               ": expected f32 or f16");
    } else if (key == "reciprocal") {
      GL_CHECK(parse_bool(value, &b), where, ": expected true or false");
      s.reciprocal = b;
    } else {
      GL_CHECK(false, "unknown quant spec key '", key, "' (valid: preset, bits, granularity, "
               "group_size, zero_point, range, scale_rule, scale_divisor, signed_max, rounding, "
               "scale_dtype, reciprocal)");
    }
  }
  s.name = label;
  validate(s);
  return s;
}

}  // namespace gl
