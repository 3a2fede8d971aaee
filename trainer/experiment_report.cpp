// The fork experiment's statistics and report, and the audit's figures; see
// trainer/experiment_report.h.
#include "trainer/experiment_report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "trainer/metrics.h"
#include "trainer/stats.h"

namespace gl {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// JSON has no NaN: undefined statistics are written as null.
Json num(double v) { return std::isfinite(v) ? Json(v) : Json(); }

std::string fmt(double v, int prec = 4) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", prec, v);
  return buf;
}

double json_number(const Json& j, const std::string& key) {
  const Json* v = j.find(key);
  return v && v->is_number() ? v->as_double() : kNaN;
}

const ExperimentRun* find_run(const std::vector<ExperimentRun>& runs, const std::string& arm,
                              int64_t seed) {
  for (const ExperimentRun& r : runs)
    if (r.arm == arm && r.seed == seed) return &r;
  return nullptr;
}

struct RunSummary {
  double final_v = kNaN, mean_v = kNaN, max_v = kNaN, final_fp_ppl = kNaN;
  int64_t last_step = -1;
  size_t probes = 0;
};

RunSummary summarize_run(const ExperimentRun& r, const std::string& metric) {
  RunSummary s;
  const auto series = probe_series(r.records, metric);
  s.probes = series.size();
  if (series.empty()) return s;
  std::vector<double> v;
  for (const auto& [step, x] : series) v.push_back(x);
  s.final_v = v.back();
  s.last_step = series.back().first;
  s.mean_v = stats_mean(v);
  s.max_v = *std::max_element(v.begin(), v.end());
  const auto fp = probe_series(r.records, "fp_ppl");
  if (!fp.empty()) s.final_fp_ppl = fp.back().second;
  return s;
}

}  // namespace

std::string probe_phase(const Schedule* schedule, int64_t step) {
  if (!schedule || step <= 0) return "";
  const std::string last = schedule->phase(step - 1);
  if (last == "cool" && schedule->phase(step) != "cool") return "cool_end";
  return last;
}

bool phase_matches(const std::string& filter, const std::string& phase) {
  if (filter == "any") return true;
  if (filter == "cool") return phase == "cool" || phase == "cool_end";
  return phase == filter;
}

std::vector<std::pair<int64_t, double>> probe_series(const std::vector<Json>& records,
                                                     const std::string& metric) {
  std::map<int64_t, double> by_step;
  for (const Json& rec : records) {
    const Json* kind = rec.find("kind");
    if (!kind || !kind->is_string() || kind->as_string() != "quant") continue;
    const double v = json_number(rec, metric);
    const Json* step = rec.find("step");
    if (!step || !step->is_int() || !std::isfinite(v)) continue;
    by_step[step->as_int()] = v;
  }
  return {by_step.begin(), by_step.end()};
}

Json experiment_statistics(const ExperimentReportSpec& spec,
                           const std::vector<ExperimentRun>& runs) {
  Json out = Json::object();
  out.set("metric", spec.metric);

  Json jruns = Json::array();
  std::map<std::pair<std::string, int64_t>, RunSummary> sums;
  for (const ExperimentRun& r : runs) {
    const RunSummary s = summarize_run(r, spec.metric);
    sums[{r.arm, r.seed}] = s;
    Json j = Json::object();
    j.set("name", r.name);
    j.set("arm", r.arm);
    j.set("seed", r.seed);
    j.set("finished", r.finished);
    j.set("probes", int64_t(s.probes));
    j.set("last_step", s.last_step);
    j.set("final", num(s.final_v));
    j.set("mean", num(s.mean_v));
    j.set("max", num(s.max_v));
    j.set("final_fp_ppl", num(s.final_fp_ppl));
    jruns.push_back(j);
  }
  out.set("runs", jruns);

  // Per arm: final and mean metric over its seeds.
  auto arm_values = [&](const std::string& arm, bool final_v) {
    std::vector<double> v;
    for (int64_t seed : spec.seeds) {
      auto it = sums.find({arm, seed});
      if (it == sums.end()) {
        v.push_back(kNaN);
        continue;
      }
      v.push_back(final_v ? it->second.final_v : it->second.mean_v);
    }
    return v;
  };
  Json jarms = Json::array();
  for (const std::string& arm : spec.arms) {
    std::vector<double> fin, mean;
    for (double x : arm_values(arm, true))
      if (std::isfinite(x)) fin.push_back(x);
    for (double x : arm_values(arm, false))
      if (std::isfinite(x)) mean.push_back(x);
    Json j = Json::object();
    j.set("arm", arm);
    j.set("runs", int64_t(fin.size()));
    j.set("final_mean", num(stats_mean(fin)));
    j.set("final_sd", num(std::sqrt(stats_variance(fin))));
    j.set("mean_mean", num(stats_mean(mean)));
    jarms.push_back(j);
  }
  out.set("arms", jarms);

  // Pairwise wins, per seed, for every ordered pair of arms.
  Json jwins = Json::array();
  for (const std::string& a : spec.arms)
    for (const std::string& b : spec.arms) {
      if (a == b) continue;
      const WinCount wf = count_wins(arm_values(a, true), arm_values(b, true));
      const WinCount wm = count_wins(arm_values(a, false), arm_values(b, false));
      Json j = Json::object();
      j.set("arm", a);
      j.set("against", b);
      j.set("final_wins", int64_t(wf.wins));
      j.set("final_ties", int64_t(wf.ties));
      j.set("mean_wins", int64_t(wm.wins));
      j.set("mean_ties", int64_t(wm.ties));
      j.set("pairs", int64_t(wf.pairs));
      jwins.push_back(j);
    }
  out.set("wins", jwins);

  // Paired t-tests over (seed, probe step).
  Json jcmp = Json::array();
  for (const ExperimentComparison& c : spec.comparisons) {
    std::vector<double> xa, xb;
    for (int64_t seed : spec.seeds) {
      const ExperimentRun* ra = find_run(runs, c.arm, seed);
      const ExperimentRun* rb = find_run(runs, c.against, seed);
      if (!ra || !rb) continue;
      const auto sb = probe_series(rb->records, spec.metric);
      const std::map<int64_t, double> mb(sb.begin(), sb.end());
      for (const auto& [step, v] : probe_series(ra->records, spec.metric)) {
        auto it = mb.find(step);
        if (it == mb.end() || !phase_matches(c.phase, probe_phase(ra->schedule.get(), step)))
          continue;
        xa.push_back(v);
        xb.push_back(it->second);
      }
    }
    const TTestResult t = paired_t_test(xa, xb);
    const WinCount w = count_wins(xa, xb);
    Json j = Json::object();
    j.set("arm", c.arm);
    j.set("against", c.against);
    j.set("phase", c.phase);
    j.set("n", int64_t(t.n));
    j.set("wins", int64_t(w.wins));  // pairs where the arm's value is lower
    j.set("mean_arm", num(stats_mean(xa)));
    j.set("mean_against", num(stats_mean(xb)));
    j.set("mean_diff", num(t.n ? t.mean_diff : kNaN));
    j.set("sd_diff", num(t.sd_diff));
    j.set("t", num(t.t));
    j.set("dof", num(t.dof));
    j.set("p_two_sided", num(t.p_two_sided));
    jcmp.push_back(j);
  }
  out.set("comparisons", jcmp);
  return out;
}

std::string render_experiment_markdown(const ExperimentReportSpec& spec, const Json& stats,
                                       const std::vector<std::string>& figure_files) {
  auto d = [](const Json& j, const char* k) {
    const Json* v = j.find(k);
    return v && v->is_number() ? v->as_double() : kNaN;
  };
  auto i = [](const Json& j, const char* k) { return std::to_string(j.at(k).as_int()); };
  std::string s = "# " + spec.title + "\n\n";
  s += "Computed by gridlock_experiment from the runs' metrics.jsonl (\"quant\" records of the "
       "INT4/INT8 probe); metric `" + spec.metric + "` (lower is better). Regenerate with "
       "`./experiment FILE --report-only`.\n\n";

  s += "## Runs\n\n| run | arm | seed | finished | probes | last step | final | mean | max | "
       "final FP PPL |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Json& r : stats.at("runs").as_array())
    s += "| " + r.at("name").as_string() + " | " + r.at("arm").as_string() + " | " + i(r, "seed") +
         " | " + (r.at("finished").as_bool() ? "yes" : "**no**") + " | " + i(r, "probes") + " | " +
         i(r, "last_step") + " | " + fmt(d(r, "final")) + " | " + fmt(d(r, "mean")) + " | " +
         fmt(d(r, "max")) + " | " + fmt(d(r, "final_fp_ppl"), 5) + " |\n";

  s += "\n## Arms (over seeds)\n\n| arm | runs | final: mean | final: sd | mean over probes: "
       "mean |\n|---|---|---|---|---|\n";
  for (const Json& a : stats.at("arms").as_array())
    s += "| " + a.at("arm").as_string() + " | " + i(a, "runs") + " | " + fmt(d(a, "final_mean")) +
         " | " + fmt(d(a, "final_sd")) + " | " + fmt(d(a, "mean_mean")) + " |\n";

  s += "\n## Pairwise wins (per seed; a win = a lower metric)\n\n| arm | against | wins (final) "
       "| wins (mean) | ties (final) | seeds compared |\n|---|---|---|---|---|---|\n";
  for (const Json& w : stats.at("wins").as_array())
    s += "| " + w.at("arm").as_string() + " | " + w.at("against").as_string() + " | " +
         i(w, "final_wins") + "/" + i(w, "pairs") + " | " + i(w, "mean_wins") + "/" +
         i(w, "pairs") + " | " + i(w, "final_ties") + " | " + i(w, "pairs") + " |\n";

  if (!stats.at("comparisons").as_array().empty()) {
    s += "\n## Paired t-tests over (seed, probe step)\n\n| arm | against | phase of arm | pairs | "
         "arm lower | mean arm | mean against | mean diff | t | dof | p (two-sided) |\n"
         "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const Json& c : stats.at("comparisons").as_array())
      s += "| " + c.at("arm").as_string() + " | " + c.at("against").as_string() + " | " +
           c.at("phase").as_string() + " | " + i(c, "n") + " | " + i(c, "wins") + "/" + i(c, "n") +
           " | " + fmt(d(c, "mean_arm")) + " | " +
           fmt(d(c, "mean_against")) + " | " + fmt(d(c, "mean_diff")) + " | " + fmt(d(c, "t")) +
           " | " + fmt(d(c, "dof")) + " | " + fmt(d(c, "p_two_sided"), 3) + " |\n";
  }
  if (!figure_files.empty()) {
    s += "\n## Figures\n\n";
    for (const std::string& f : figure_files) s += "![" + f + "](" + f + ")\n\n";
  }
  return s;
}

void write_experiment_report(const std::string& dir, const ExperimentReportSpec& spec,
                             const std::vector<ExperimentRun>& runs) {
  fs::create_directories(dir);
  const Json stats = experiment_statistics(spec, runs);

  // Figure records: each run's probes and LRs under the run's name, and the
  // per-arm mean over seeds at each probed step.
  std::vector<Json> recs;
  std::vector<ReportFigure> figs(4);
  figs[0].title = spec.metric + " vs step, every run";
  figs[0].y_label = spec.metric;
  figs[1].title = spec.metric + " vs step, mean over seeds per arm";
  figs[1].y_label = spec.metric;
  figs[2].title = "Learning rate vs step (first seed of each arm)";
  figs[2].y_label = "lr";
  figs[3].title = "FP perplexity at the probes vs step";
  figs[3].y_label = "PPL";
  figs[3].log_y = true;
  std::set<std::string> lr_done;
  for (const ExperimentRun& r : runs) {
    const std::string label = r.arm + " seed " + std::to_string(r.seed);
    figs[0].series.push_back({label, "run:" + r.name, spec.metric});
    figs[3].series.push_back({label, "run:" + r.name, "fp_ppl"});
    for (const Json& rec : r.records) {
      const Json* kind = rec.find("kind");
      if (!kind || !kind->is_string()) continue;
      if (kind->as_string() == "quant") {
        Json c = rec;
        c.set("kind", "run:" + r.name);
        recs.push_back(c);
      } else if (kind->as_string() == "train" && !lr_done.count(r.arm)) {
        Json c = Json::object();
        c.set("kind", "lr:" + r.arm);
        c.set("step", rec.at("step"));
        c.set("lr", num(json_number(rec, "lr")));
        recs.push_back(c);
      }
    }
    if (!lr_done.count(r.arm)) figs[2].series.push_back({r.arm, "lr:" + r.arm, "lr"});
    lr_done.insert(r.arm);
  }
  for (const std::string& arm : spec.arms) {
    std::map<int64_t, std::vector<double>> at;
    for (const ExperimentRun& r : runs)
      if (r.arm == arm)
        for (const auto& [step, v] : probe_series(r.records, spec.metric)) at[step].push_back(v);
    for (const auto& [step, v] : at) {
      Json c = Json::object();
      c.set("kind", "arm:" + arm);
      c.set("step", step);
      c.set("mean", stats_mean(v));
      recs.push_back(c);
    }
    figs[1].series.push_back({arm, "arm:" + arm, "mean"});
  }
  const std::vector<std::string> files = write_svg_figures(dir, "fig_", figs, recs);
  write_file_atomic((fs::path(dir) / "stats.json").string(), stats.dump(2) + "\n");
  write_file_atomic((fs::path(dir) / "report.md").string(),
                    render_experiment_markdown(spec, stats, files));
}

std::vector<ReportFigure> audit_figures(const std::vector<std::string>& format_names,
                                        const std::string& kurtosis_title_suffix) {
  GL_CHECK(!format_names.empty(), "audit_figures: no formats");
  std::vector<ReportFigure> f(4);
  f[0].title = format_names[0] + " gap vs checkpoint step (the three phases)";
  f[0].y_label = "gap (% of FP PPL)";
  f[0].series = {{format_names[0], "probe", "gap_pct_" + format_names[0]}};
  f[1].title = "Gap of the other formats vs checkpoint step (INT8: flat)";
  f[1].y_label = "gap (% of FP PPL)";
  for (size_t i = 1; i < format_names.size(); ++i)
    f[1].series.push_back({format_names[i], "probe", "gap_pct_" + format_names[i]});
  f[2].title = "FP perplexity vs checkpoint step";
  f[2].y_label = "PPL";
  f[2].log_y = true;
  f[2].series = {{"FP", "probe", "fp_ppl"}};
  f[3].title = "Kurtosis vs " + format_names[0] + " gap" + kurtosis_title_suffix;
  f[3].y_label = "gap (% of FP PPL)";
  f[3].x_field = "mean_kurtosis";
  f[3].x_label = "mean excess kurtosis over the probed weights";
  f[3].scatter = true;
  f[3].series = {{format_names[0], "probe", "gap_pct_" + format_names[0]}};
  return f;
}

AuditLandmarks audit_landmarks(const std::vector<int64_t>& steps,
                               const std::vector<double>& fp_ppl, const std::vector<double>& gap,
                               double tolerance) {
  GL_CHECK(steps.size() == fp_ppl.size() && steps.size() == gap.size(),
           "audit_landmarks: ", steps.size(), " steps, ", fp_ppl.size(), " PPLs, ", gap.size(),
           " gaps");
  AuditLandmarks a;
  a.gap_at_converged = a.min_gap = a.final_gap = kNaN;
  const size_t n = steps.size();
  if (n == 0) return a;
  // suffix_min[i] = min FP PPL over checkpoints i..n-1.
  std::vector<double> suffix_min(n);
  double m = std::numeric_limits<double>::infinity();
  for (size_t i = n; i-- > 0;) suffix_min[i] = m = std::min(m, fp_ppl[i]);
  for (size_t i = 0; i < n; ++i)
    if (suffix_min[i] >= fp_ppl[i] * (1 - tolerance)) {
      a.fp_converged_step = steps[i];
      a.gap_at_converged = gap[i];
      break;
    }
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (gap[i] < gap[best]) best = i;
  a.min_gap_step = steps[best];
  a.min_gap = gap[best];
  a.final_gap = gap[n - 1];
  return a;
}

std::vector<std::string> write_svg_figures(const std::string& dir, const std::string& prefix,
                                           const std::vector<ReportFigure>& figures,
                                           const std::vector<Json>& records) {
  std::vector<std::string> names;
  for (size_t k = 0; k < figures.size(); ++k) {
    std::string slug;
    for (char c : figures[k].title) {
      if (c == '(') break;  // the name stays stable when a title carries numbers
      const bool ok = std::isalnum(static_cast<unsigned char>(c));
      if (ok) slug += char(std::tolower(static_cast<unsigned char>(c)));
      else if (!slug.empty() && slug.back() != '_') slug += '_';
      if (slug.size() >= 40) break;
    }
    while (!slug.empty() && slug.back() == '_') slug.pop_back();
    const std::string name = prefix + std::to_string(k + 1) + "_" + slug + ".svg";
    write_file_atomic((fs::path(dir) / name).string(),
                      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
                          render_figure_svg(figures[k], records) + "\n");
    names.push_back(name);
  }
  return names;
}

}  // namespace gl
