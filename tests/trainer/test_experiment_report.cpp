// The fork experiment's report (trainer/experiment_report.h) on hand-made
// metrics: probe phases of an OLI schedule, probe series, wins and the
// paired t-test assembled over (seed, step) pairs; and the audit/experiment
// file reader (trainer/study_file.h) with its one-line errors.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "trainer/experiment_report.h"
#include "trainer/stats.h"
#include "trainer/study_file.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

Json quant(int64_t step, double gap) {
  Json r = Json::object();
  r.set("kind", "quant");
  r.set("step", step);
  r.set("gap_pct_int4_probe", gap);
  r.set("fp_ppl", 10.0);
  return r;
}

std::shared_ptr<const Schedule> oli_schedule() {
  // Constant base 1e-3, period 4, hot for t mod 4 < 2.
  ScheduleSpec s;
  s.kind = "oli";
  s.params = {{"amplitude", 1}, {"period", 4}, {"hot_fraction", 0.5}, {"peak", 1e-3}};
  s.options = {{"base", "constant"}};
  return make_schedule(s);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("gl_test_study_" + std::to_string(::getpid()) + name);
  std::ofstream(p) << text;
  return p.string();
}

}  // namespace

TEST_CASE("experiment report: probe phases of an OLI schedule") {
  const auto oli = oli_schedule();
  // Updates t = 0, 1 hot; 2, 3 cool. The probe at step s follows update s - 1.
  CHECK(probe_phase(oli.get(), 0) == "");
  CHECK(probe_phase(oli.get(), 1) == "hot");
  CHECK(probe_phase(oli.get(), 2) == "hot");
  CHECK(probe_phase(oli.get(), 3) == "cool");
  CHECK(probe_phase(oli.get(), 4) == "cool_end");  // the next update (t = 4) is hot
  CHECK(probe_phase(nullptr, 4) == "");
  CHECK(phase_matches("cool", "cool_end"));
  CHECK(phase_matches("cool", "cool"));
  CHECK(!phase_matches("cool_end", "cool"));
  CHECK(phase_matches("any", ""));
  CHECK(!phase_matches("hot", "cool"));
}

TEST_CASE("experiment report: statistics over seeds and probe steps") {
  const auto oli = oli_schedule();
  std::vector<ExperimentRun> runs;
  // cosine gaps g, oli gaps g + delta (delta only at cool probes 4, 8).
  const double cos_gap[2][4] = {{1.0, 2.0, 3.0, 4.0}, {1.5, 2.5, 3.5, 4.5}};
  const double delta[2][4] = {{0.3, -1.0, 0.2, -2.0}, {0.1, -1.5, 0.4, -1.0}};
  for (int s = 0; s < 2; ++s) {
    ExperimentRun c, o;
    c.arm = "cosine", o.arm = "oli";
    c.seed = o.seed = 10 + s;
    c.name = "cosine_s" + std::to_string(c.seed);
    o.name = "oli_s" + std::to_string(o.seed);
    c.finished = o.finished = true;
    o.schedule = oli;
    for (int k = 0; k < 4; ++k) {
      const int64_t step = 2 * (k + 1);  // 2 (hot), 4 (cool_end), 6 (hot), 8 (cool_end)
      c.records.push_back(quant(step, cos_gap[s][k]));
      o.records.push_back(quant(step, cos_gap[s][k] + delta[s][k]));
    }
    // A later record of the same step replaces the earlier (a resumed run).
    c.records.push_back(quant(8, cos_gap[s][3]));
    runs.push_back(c);
    runs.push_back(o);
  }
  ExperimentReportSpec spec;
  spec.title = "t";
  spec.arms = {"cosine", "oli"};
  spec.seeds = {10, 11};
  spec.comparisons = {{"oli", "cosine", "cool"}, {"oli", "cosine", "any"}};
  CHECK(probe_series(runs[0].records, "gap_pct_int4_probe").size() == 4);

  const Json st = experiment_statistics(spec, runs);
  const Json& cool = st.at("comparisons")[0];
  CHECK(cool.at("n").as_int() == 4);  // steps 4 and 8 of 2 seeds
  CHECK(cool.at("wins").as_int() == 4);
  const TTestResult want = paired_t_test({2.0 - 1.0, 4.0 - 2.0, 2.5 - 1.5, 4.5 - 1.0},
                                         {2.0, 4.0, 2.5, 4.5});
  CHECK(cool.at("t").as_double() == doctest::Approx(want.t).epsilon(1e-12));
  CHECK(cool.at("mean_diff").as_double() == doctest::Approx(-1.375).epsilon(1e-12));
  CHECK(st.at("comparisons")[1].at("n").as_int() == 8);
  // Final gaps (step 8): oli lower on both seeds; means: oli lower on both.
  for (const Json& w : st.at("wins").as_array()) {
    const bool oli_first = w.at("arm").as_string() == "oli";
    CHECK(w.at("pairs").as_int() == 2);
    CHECK(w.at("final_wins").as_int() == (oli_first ? 2 : 0));
    CHECK(w.at("mean_wins").as_int() == (oli_first ? 2 : 0));
  }
  const Json& arm0 = st.at("arms")[0];
  CHECK(arm0.at("final_mean").as_double() == doctest::Approx(4.25));
  const std::string md = render_experiment_markdown(spec, st, {"fig_1.svg"});
  CHECK(md.find("| oli | cosine | cool | 4 | 4/4 |") != std::string::npos);
  CHECK(md.find("![fig_1.svg](fig_1.svg)") != std::string::npos);
  // A missing run: its pairs are skipped, the statistics stay defined.
  runs.pop_back();
  const Json st2 = experiment_statistics(spec, runs);
  CHECK(st2.at("comparisons")[0].at("n").as_int() == 2);
}

TEST_CASE("audit landmarks: FP convergence and the smallest gap") {
  // FP PPL 100, 50, 30, 29.9, 30.1, 29.95: within 1% of every later one from
  // step 4 (index 2: later minimum 29.9 >= 0.99 x 30). Gap: floor at step 8.
  const AuditLandmarks a = audit_landmarks({1, 2, 4, 8, 16, 32}, {100, 50, 30, 29.9, 30.1, 29.95},
                                           {20, 11, 9, 8, 40, 500});
  CHECK(a.fp_converged_step == 4);
  CHECK(a.gap_at_converged == 9);
  CHECK(a.min_gap_step == 8);
  CHECK(a.min_gap == 8);
  CHECK(a.final_gap == 500);
  // A strict tolerance moves convergence to the last checkpoints.
  CHECK(audit_landmarks({1, 2, 4, 8, 16, 32}, {100, 50, 30, 29.9, 30.1, 29.95}, {1, 1, 1, 1, 1, 1}, 0)
            .fp_converged_step == 8);
  CHECK(audit_landmarks({}, {}, {}).min_gap_step == -1);
  CHECK_THROWS_WITH_AS(audit_landmarks({1}, {1, 2}, {1}), doctest::Contains("1 steps, 2 PPLs"), Error);
}

TEST_CASE("study file: keys, overrides, one-line errors") {
  const std::string p = write_temp("a.yaml",
                                   "audit:\n  data: x.txt\n  batch: 4\n  formats: [a, b]\n"
                                   "arms:\n  - {name: c}\n");
  const StudyFile f = StudyFile::load(p, {"audit.batch=8"});
  const std::vector<std::string> known = {"audit.data", "audit.batch", "audit.formats"};
  f.check_keys(known, {"arms"});
  CHECK(f.str("audit.data") == "x.txt");
  CHECK(f.integer("audit.batch", 1, 1) == 8);
  CHECK(f.strings("audit.formats") == std::vector<std::string>{"a", "b"});
  CHECK(f.strings("audit.missing", {"d"}) == std::vector<std::string>{"d"});
  CHECK(f.top("arms").size() == 1);
  CHECK_THROWS_WITH_AS(f.check_keys({"audit.data", "audit.batch"}, {"arms"}),
                       doctest::Contains((p + ":4: unknown key 'audit.formats'").c_str()), Error);
  CHECK_THROWS_WITH_AS(f.check_keys(known), doctest::Contains((p + ":5: unknown section 'arms'").c_str()), Error);
  const StudyFile g = StudyFile::load(p, {"audit.batch=0", "audit.dta=y"});
  CHECK_THROWS_WITH_AS(g.integer("audit.batch", 1, 1),
                       doctest::Contains("command line: audit.batch: expected an integer >= 1, got '0'"),
                       Error);
  CHECK_THROWS_WITH_AS(g.check_keys(known, {"arms"}),
                       doctest::Contains("command line: unknown key 'audit.dta' (did you mean 'audit.data'?)"),
                       Error);
  CHECK_THROWS_WITH_AS(f.str("audit.nothing", "", true), doctest::Contains("missing required key 'audit.nothing'"),
                       Error);
  CHECK_THROWS_WITH_AS(StudyFile::load(p, {"nodot=1"}), doctest::Contains("bad key 'nodot'"), Error);
  fs::remove(p);
  const std::string bad = write_temp("b.yaml", "audit: [1, 2\n");
  CHECK_THROWS_WITH_AS(StudyFile::load(bad), doctest::Contains("YAML syntax error"), Error);
  fs::remove(bad);
}
