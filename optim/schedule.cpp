// LR schedules (see schedule.h for the formulas, the step convention and the
// references). Each kind is a small class with lr_at/phase_at on the global
// step; its parameters come from one table (kind_table) that drives
// validation, defaults and the documentation printed by gridlock_schedule.
#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "core/error.h"

namespace gl {

namespace {

constexpr double kPi = 3.14159265358979323846;

// --- parameter tables ---------------------------------------------------------

struct KindTable {
  std::vector<ScheduleParam> params;
  std::vector<ScheduleOption> options;
};

ScheduleParam req(const std::string& n, bool integer, const std::string& doc) {
  return {n, integer, true, 0.0, doc};
}
ScheduleParam opt(const std::string& n, bool integer, double def, const std::string& doc) {
  return {n, integer, false, def, doc};
}

const std::vector<std::string>& kinds() {
  static const std::vector<std::string> k = {"constant", "linear_warmup", "cosine", "pythia_cosine",
                                             "sgdr", "oli", "one_cycle", "wsd"};
  return k;
}

KindTable own_table(const std::string& kind) {
  const ScheduleParam peak = req("peak", false, "peak (maximum) learning rate, > 0");
  if (kind == "constant") return {{peak}, {}};
  if (kind == "linear_warmup")
    return {{peak, req("warmup", true, "steps of linear warmup from 0 to peak, >= 0")}, {}};
  if (kind == "cosine")
    return {{peak, opt("warmup", true, 0, "steps of linear warmup, >= 0"),
             req("total", true, "step where the cosine reaches min, > warmup"),
             opt("min_ratio", false, 0.0, "min lr / peak, in [0, 1]")},
            {}};
  if (kind == "pythia_cosine")
    return {{opt("peak", false, 6e-4, "lr_max (Pythia-160m: 6e-4)"),
             opt("warmup", true, 1430, "warmup steps W (Pythia: 0.01 * 143000)"),
             opt("total", true, 143000, "lr-decay-iters E, > warmup"),
             opt("min_lr", false, 6e-5, "lr_min, the clamp (absolute, as GPT-NeoX's min_lr), in [0, peak]")},
            {}};
  if (kind == "sgdr")
    return {{peak, req("t0", true, "length of the first cycle T_0, >= 1"),
             opt("t_mult", true, 1, "cycle length factor T_mult, >= 1"),
             opt("eta_min", false, 0.0, "absolute minimum lr, in [0, peak)"),
             opt("restart_decay", false, 1.0, "amplitude factor per restart, in (0, 1]")},
            {}};
  if (kind == "oli")
    return {{req("amplitude", false, "A: hot-phase peak is base * (1 + A), >= 0"),
             req("period", true, "P: steps per hot+cool period, >= 1"),
             req("hot_fraction", false, "h: fraction of the period that is hot, in (0, 1]")},
            {{"base", {"pythia_cosine", "cosine", "constant", "linear_warmup", "wsd", "one_cycle", "sgdr"},
              "base schedule (its parameters are accepted too)"}}};
  if (kind == "one_cycle")
    return {{peak, req("total", true, "total_steps, >= 2"),
             opt("pct_start", false, 0.3, "fraction of steps increasing, in (0, 1)"),
             opt("div_factor", false, 25.0, "initial lr = peak / div_factor, > 0"),
             opt("final_div_factor", false, 1e4, "final lr = initial / final_div_factor, > 0")},
            {}};
  if (kind == "wsd")
    return {{peak, opt("warmup", true, 0, "steps of linear warmup, >= 0"),
             req("total", true, "step where the decay ends, >= warmup + decay steps"),
             opt("decay_fraction", false, 0.2, "decay steps = round(decay_fraction * total), in [0, 1]"),
             opt("min_ratio", false, 0.0, "final lr / peak, in [0, 1]")},
            {{"decay_shape", {"linear", "cosine", "1-sqrt"}, "shape of the decay"}}};
  std::string all;
  for (const auto& k : kinds()) all += (all.empty() ? "" : ", ") + k;
  GL_CHECK(false, "schedule: unknown kind '", kind, "' (kinds: ", all, ")");
  return {};
}

const ScheduleParam kOffset = {"offset", true, false, 0.0,
                               "global step of this schedule's step 0 (continuation), >= 0"};

// Own table + offset, and for oli the base kind's parameters and options.
KindTable full_table(const std::string& kind, const std::string& base_kind) {
  KindTable t = own_table(kind);
  if (kind == "oli") {
    const KindTable b = own_table(base_kind);
    t.params.insert(t.params.end(), b.params.begin(), b.params.end());
    t.options.insert(t.options.end(), b.options.begin(), b.options.end());
  }
  t.params.push_back(kOffset);
  return t;
}

std::string oli_base_kind(const ScheduleSpec& spec) {
  auto it = spec.options.find("base");
  return it == spec.options.end() ? std::string("pythia_cosine") : it->second;
}

// Checks names, types and presence; returns the spec with defaults filled in.
ScheduleSpec resolve(const ScheduleSpec& spec) {
  const std::string& k = spec.kind;
  const std::string base = k == "oli" ? oli_base_kind(spec) : "";
  GL_CHECK(base != "oli", "schedule oli: option base cannot be oli");
  const KindTable table = full_table(k, base);
  ScheduleSpec out{k, {}, {}};
  std::set<std::string> known;
  std::string names;
  for (const auto& p : table.params) {
    known.insert(p.name);
    names += (names.empty() ? "" : ", ") + p.name;
  }
  for (const auto& [name, value] : spec.params) {
    GL_CHECK(known.count(name), "schedule ", k, ": unknown parameter '", name, "' (accepted: ", names,
             ")");
    GL_CHECK(std::isfinite(value), "schedule ", k, ": parameter ", name, " = ", value,
             " is not finite");
  }
  for (const auto& p : table.params) {
    auto it = spec.params.find(p.name);
    GL_CHECK(it != spec.params.end() || !p.required, "schedule ", k, ": missing parameter ", p.name,
             " (", p.doc, ")");
    const double v = it != spec.params.end() ? it->second : p.default_value;
    // Integers travel as doubles (YAML, flags); exact up to 2^53, far above any step count.
    GL_CHECK(!p.integer || (v == std::floor(v) && std::fabs(v) < 9.0e15), "schedule ", k,
             ": parameter ", p.name, " = ", v, " must be an integer");
    out.params[p.name] = v;
  }
  for (const auto& [name, value] : spec.options) {
    const ScheduleOption* o = nullptr;
    for (const auto& cand : table.options)
      if (cand.name == name) o = &cand;
    GL_CHECK(o != nullptr, "schedule ", k, ": unknown option '", name, "'");
    std::string vals;
    for (const auto& v : o->values) vals += (vals.empty() ? "" : ", ") + v;
    GL_CHECK(std::find(o->values.begin(), o->values.end(), value) != o->values.end(), "schedule ", k,
             ": option ", name, " = '", value, "' is not one of ", vals);
  }
  for (const auto& o : table.options) {
    auto it = spec.options.find(o.name);
    out.options[o.name] = it != spec.options.end() ? it->second : o.values.front();
  }
  GL_CHECK(out.params.at("offset") >= 0, "schedule ", k, ": offset must be >= 0, got ",
           out.params.at("offset"));
  return out;
}

// Range check helper: `ok` or "schedule <kind>: <name> = <v> must be <what>".
void check_range(bool ok, const ScheduleSpec& s, const std::string& name, const std::string& what) {
  GL_CHECK(ok, "schedule ", s.kind, ": ", name, " = ", s.params.at(name), " must be ", what);
}

void check_peak(const ScheduleSpec& s) { check_range(s.params.at("peak") > 0, s, "peak", "> 0"); }

// GPT-NeoX warmup: peak * t / W for t < W (so lr(0) = 0).
double warmup_lr(double peak, int64_t t, int64_t warmup) { return peak * double(t) / double(warmup); }

// --- kinds --------------------------------------------------------------------

class ConstantSchedule : public Schedule {
 public:
  explicit ConstantSchedule(ScheduleSpec s) : Schedule(std::move(s)) { check_peak(spec()); }
  double lr_at(int64_t) const override { return param("peak"); }
  std::string phase_at(int64_t) const override { return "constant"; }
};

class LinearWarmupSchedule : public Schedule {
 public:
  explicit LinearWarmupSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("warmup") >= 0, spec(), "warmup", ">= 0");
  }
  double lr_at(int64_t t) const override {
    return t < iparam("warmup") ? warmup_lr(param("peak"), t, iparam("warmup")) : param("peak");
  }
  std::string phase_at(int64_t t) const override {
    return t < iparam("warmup") ? "warmup" : "constant";
  }
};

class CosineSchedule : public Schedule {
 public:
  explicit CosineSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("warmup") >= 0, spec(), "warmup", ">= 0");
    check_range(iparam("total") > iparam("warmup"), spec(), "total", "> warmup");
    const double r = param("min_ratio");
    check_range(r >= 0 && r <= 1, spec(), "min_ratio", "in [0, 1]");
  }
  double lr_at(int64_t t) const override {
    const double peak = param("peak"), lo = peak * param("min_ratio");
    const int64_t w = iparam("warmup"), e = iparam("total");
    if (t < w) return warmup_lr(peak, t, w);
    if (t >= e) return lo;
    const double p = double(t - w) / double(e - w);
    return lo + (peak - lo) * 0.5 * (1.0 + std::cos(kPi * p));
  }
  std::string phase_at(int64_t t) const override {
    return t < iparam("warmup") ? "warmup" : t < iparam("total") ? "cosine" : "min";
  }
};

// Exactly spec 2.3 / GPT-NeoX v1.0 AnnealingLR.get_lr (decay style cosine).
class PythiaCosineSchedule : public Schedule {
 public:
  explicit PythiaCosineSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("warmup") >= 0, spec(), "warmup", ">= 0");
    check_range(iparam("total") > iparam("warmup"), spec(), "total", "> warmup");
    const double lo = param("min_lr");
    check_range(lo >= 0 && lo <= param("peak"), spec(), "min_lr", "in [0, peak]");
  }
  double unclamped(int64_t t, bool* in_warmup) const {
    const double peak = param("peak");
    const int64_t w = iparam("warmup"), e = iparam("total");
    const int64_t n = std::min(t, e - w);
    // NeoX tests `warmup_iter > 0 and num_iters <= warmup_iter`: no 0/0 when W = 0.
    *in_warmup = w > 0 && t <= w;
    if (*in_warmup) return peak * double(n) / double(w);
    return peak / 2.0 * (std::cos(kPi * double(n - w) / double(e)) + 1.0);
  }
  double lr_at(int64_t t) const override {
    bool warm = false;
    const double lr = unclamped(t, &warm);
    return warm ? lr : std::max(lr, param("min_lr"));
  }
  std::string phase_at(int64_t t) const override {
    bool warm = false;
    const double lr = unclamped(t, &warm);
    if (warm) return "warmup";
    return lr < param("min_lr") ? "floor" : "cosine";
  }
};

class SgdrSchedule : public Schedule {
 public:
  explicit SgdrSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("t0") >= 1, spec(), "t0", ">= 1");
    check_range(iparam("t_mult") >= 1, spec(), "t_mult", ">= 1");
    const double em = param("eta_min"), d = param("restart_decay");
    check_range(em >= 0 && em < param("peak"), spec(), "eta_min", "in [0, peak)");
    check_range(d > 0 && d <= 1, spec(), "restart_decay", "in (0, 1]");
  }
  // Cycle k, position T_cur and length T_k at step t (integer arithmetic, the
  // closed form torch uses with logs, without its rounding).
  void locate(int64_t t, int64_t* k, int64_t* cur, int64_t* len) const {
    const int64_t t0 = iparam("t0"), m = iparam("t_mult");
    if (m == 1) {
      *k = t / t0, *cur = t % t0, *len = t0;
      return;
    }
    *k = 0, *cur = t, *len = t0;
    // Cycle lengths grow geometrically, so this runs O(log t) times.
    while (*cur >= *len) *cur -= *len, *len *= m, ++*k;
  }
  double lr_at(int64_t t) const override {
    int64_t k, cur, len;
    locate(t, &k, &cur, &len);
    const double em = param("eta_min");
    const double amp = (param("peak") - em) * std::pow(param("restart_decay"), double(k));
    return em + amp * 0.5 * (1.0 + std::cos(kPi * double(cur) / double(len)));
  }
  std::string phase_at(int64_t t) const override {
    int64_t k, cur, len;
    locate(t, &k, &cur, &len);
    return "restart " + std::to_string(k);
  }
};

class OliSchedule : public Schedule {
 public:
  OliSchedule(ScheduleSpec s, std::unique_ptr<Schedule> base)
      : Schedule(std::move(s)), base_(std::move(base)) {
    check_range(param("amplitude") >= 0, spec(), "amplitude", ">= 0");
    check_range(iparam("period") >= 1, spec(), "period", ">= 1");
    const double h = param("hot_fraction");
    check_range(h > 0 && h <= 1, spec(), "hot_fraction", "in (0, 1]");
  }
  double lr_at(int64_t t) const override {
    const double hot_len = param("hot_fraction") * double(iparam("period"));
    const double pos = double(t % iparam("period"));
    const double wave = pos < hot_len ? 0.5 * (1.0 - std::cos(2.0 * kPi * pos / hot_len)) : 0.0;
    return base_->lr(t) * (1.0 + param("amplitude") * wave);
  }
  std::string phase_at(int64_t t) const override {
    const double hot_len = param("hot_fraction") * double(iparam("period"));
    return double(t % iparam("period")) < hot_len ? "hot" : "cool";
  }

 private:
  std::unique_ptr<Schedule> base_;  // offset 0: evaluated at the global step
};

// torch.optim.lr_scheduler.OneCycleLR, three_phase=False, anneal 'cos'.
class OneCycleSchedule : public Schedule {
 public:
  explicit OneCycleSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("total") >= 2, spec(), "total", ">= 2");
    const double ps = param("pct_start");
    check_range(ps > 0 && ps < 1, spec(), "pct_start", "in (0, 1)");
    check_range(param("div_factor") > 0, spec(), "div_factor", "> 0");
    check_range(param("final_div_factor") > 0, spec(), "final_div_factor", "> 0");
    // torch divides by step_up and by (total - 1 - step_up): both must be > 0.
    GL_CHECK(step_up() > 0 && double(iparam("total") - 1) - step_up() > 0, "schedule one_cycle: ",
             "pct_start * total - 1 = ", step_up(), " must lie in (0, total - 1)");
  }
  double step_up() const { return param("pct_start") * double(iparam("total")) - 1.0; }
  static double anneal_cos(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
  }
  double lr_at(int64_t t) const override {
    const double peak = param("peak"), initial = peak / param("div_factor");
    const double final_lr = initial / param("final_div_factor");
    const double up = step_up(), last = double(iparam("total") - 1);
    const double x = std::min(double(t), last);
    if (x <= up) return anneal_cos(initial, peak, x / up);
    return anneal_cos(peak, final_lr, (x - up) / (last - up));
  }
  std::string phase_at(int64_t t) const override { return double(t) <= step_up() ? "up" : "down"; }
};

class WsdSchedule : public Schedule {
 public:
  explicit WsdSchedule(ScheduleSpec s) : Schedule(std::move(s)) {
    check_peak(spec());
    check_range(iparam("warmup") >= 0, spec(), "warmup", ">= 0");
    const double f = param("decay_fraction"), r = param("min_ratio");
    check_range(f >= 0 && f <= 1, spec(), "decay_fraction", "in [0, 1]");
    check_range(r >= 0 && r <= 1, spec(), "min_ratio", "in [0, 1]");
    check_range(iparam("total") >= 1, spec(), "total", ">= 1");
    decay_ = int64_t(std::llround(f * double(iparam("total"))));
    GL_CHECK(iparam("warmup") + decay_ <= iparam("total"), "schedule wsd: warmup (",
             iparam("warmup"), ") + decay steps (", decay_, ") exceed total (", iparam("total"), ")");
  }
  double lr_at(int64_t t) const override {
    const double peak = param("peak"), lo = peak * param("min_ratio");
    const int64_t w = iparam("warmup"), e = iparam("total"), d0 = e - decay_;
    if (t < w) return warmup_lr(peak, t, w);
    if (t < d0) return peak;
    if (t >= e) return lo;
    const double p = double(t - d0) / double(decay_);
    const std::string& shape = spec().options.at("decay_shape");
    const double f = shape == "linear"   ? 1.0 - p
                     : shape == "cosine" ? 0.5 * (1.0 + std::cos(kPi * p))
                                         : 1.0 - std::sqrt(p);
    return lo + (peak - lo) * f;
  }
  std::string phase_at(int64_t t) const override {
    const int64_t e = iparam("total");
    return t < iparam("warmup") ? "warmup" : t < e - decay_ ? "stable" : t < e ? "decay" : "min";
  }

 private:
  int64_t decay_ = 0;  // decay steps
};

}  // namespace

// --- Schedule -----------------------------------------------------------------

Schedule::Schedule(ScheduleSpec resolved)
    : spec_(std::move(resolved)), offset_(int64_t(spec_.params.at("offset"))) {}

double Schedule::lr(int64_t step) const {
  GL_CHECK(step >= 0, "schedule ", spec_.kind, ": lr at negative step ", step);
  return lr_at(step + offset_);
}

std::string Schedule::phase(int64_t step) const {
  GL_CHECK(step >= 0, "schedule ", spec_.kind, ": phase at negative step ", step);
  return phase_at(step + offset_);
}

std::string Schedule::describe() const {
  std::ostringstream os;
  os.precision(17);
  os << spec_.kind << "(";
  bool first = true;
  for (const auto& [name, value] : spec_.params) os << (first ? "" : ", ") << name << "=" << value, first = false;
  for (const auto& [name, value] : spec_.options) os << (first ? "" : ", ") << name << "=" << value, first = false;
  os << ")";
  return os.str();
}

std::unique_ptr<Schedule> make_schedule(const ScheduleSpec& spec) {
  ScheduleSpec s = resolve(spec);
  const std::string& k = s.kind;
  if (k == "constant") return std::make_unique<ConstantSchedule>(s);
  if (k == "linear_warmup") return std::make_unique<LinearWarmupSchedule>(s);
  if (k == "cosine") return std::make_unique<CosineSchedule>(s);
  if (k == "pythia_cosine") return std::make_unique<PythiaCosineSchedule>(s);
  if (k == "sgdr") return std::make_unique<SgdrSchedule>(s);
  if (k == "one_cycle") return std::make_unique<OneCycleSchedule>(s);
  if (k == "wsd") return std::make_unique<WsdSchedule>(s);
  GL_CHECK(k == "oli", "schedule: unknown kind '", k, "'");
  // The base gets its own parameters and options, offset 0 (OLI applies the offset).
  ScheduleSpec b{s.options.at("base"), {}, {}};
  for (const auto& p : own_table(b.kind).params) b.params[p.name] = s.params.at(p.name);
  for (const auto& o : own_table(b.kind).options) b.options[o.name] = s.options.at(o.name);
  return std::make_unique<OliSchedule>(s, make_schedule(b));
}

std::vector<std::string> schedule_kinds() { return kinds(); }

std::vector<ScheduleParam> schedule_params(const std::string& kind) {
  return full_table(kind, "pythia_cosine").params;
}

std::vector<ScheduleOption> schedule_options(const std::string& kind) {
  return full_table(kind, "pythia_cosine").options;
}

}  // namespace gl
