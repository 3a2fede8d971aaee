// The paper reproduction's reports (issue 7): the fork experiment's
// statistics, tables and figures (gridlock_experiment, apps/experiment.cpp),
// and the checkpoint audit's figures (./probe on an audit file,
// apps/probe.cpp). Numbers come only from the runs' own metrics files:
// nothing here is typed in by hand.
//
// Fork experiment (spec.md 1.1): arms (schedules, QAT on/off) x seeds, each
// run a ./train process whose metrics.jsonl holds "quant" records (the
// INT4/INT8 probe every quant.probe_every steps; trainer/trainer.cpp). With
// `metric` the probe field compared (default gap_pct_int4_probe):
//   final            the metric at the run's last probe
//   mean             the mean of the metric over all its probes
//   pairwise wins    for arms A, B and each seed both ran: A wins when its
//                    final (or mean) metric is lower (a smaller gap)
//   comparisons      paired t-tests (trainer/stats.h) of arm against
//                    `against`: pairs are (seed, probe step) where both runs
//                    probed at that step, filtered by the phase of `arm`'s
//                    schedule at the probe (phase "any", "hot", "cool",
//                    "cool_end"; see probe_phase). So "OLI cool-phase gaps
//                    against cosine" is {arm: oli, against: cosine, phase:
//                    cool}; mean_diff < 0 means the arm's gap is lower;
//                    "wins" counts the pairs where the arm's value is lower.
// A probe at step s follows s completed updates; its phase is the phase of
// the last update, schedule.phase(s - 1) (optim/schedule.h); "cool_end" is a
// cool probe whose next update is no longer cool (the settled end of a cool
// phase).
//
// Outputs of write_experiment_report(DIR): DIR/report.md (tables in
// markdown, figures linked), DIR/stats.json (every number of the tables),
// DIR/fig_*.svg (render_figure_svg of trainer/report.h). Deterministic:
// the same metrics give byte-identical files.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "optim/schedule.h"
#include "trainer/report.h"

namespace gl {

struct ExperimentRun {
  std::string arm, name, run_dir;
  int64_t seed = 0;
  bool finished = false;                      // the process exited 0
  std::vector<Json> records;                  // its metrics.jsonl
  std::shared_ptr<const Schedule> schedule;   // for phase tags (null: phase "any" only)
};

struct ExperimentComparison {
  std::string arm, against, phase = "any";
};

struct ExperimentReportSpec {
  std::string title;
  std::string metric = "gap_pct_int4_probe";
  std::vector<std::string> arms;  // table order
  std::vector<int64_t> seeds;
  std::vector<ExperimentComparison> comparisons;
};

// "hot", "cool", "cool_end", or the schedule's own label at the probe
// after `step` updates ("" at step 0 or without a schedule).
std::string probe_phase(const Schedule* schedule, int64_t step);
// Whether `phase` (as probe_phase returns) passes the filter "any", "hot",
// "cool" (cool and cool_end) or "cool_end".
bool phase_matches(const std::string& filter, const std::string& phase);

// {step, value} of every "quant" record holding `metric` (finite), in step
// order (a later record of the same step replaces an earlier one).
std::vector<std::pair<int64_t, double>> probe_series(const std::vector<Json>& records,
                                                     const std::string& metric);

// All the numbers: {"runs": [...], "arms": [...], "wins": [...],
// "comparisons": [...]}; see the header comment.
Json experiment_statistics(const ExperimentReportSpec& spec,
                           const std::vector<ExperimentRun>& runs);
// report.md from the statistics (figures linked by file name).
std::string render_experiment_markdown(const ExperimentReportSpec& spec, const Json& stats,
                                       const std::vector<std::string>& figure_files);
// Writes DIR/report.md, DIR/stats.json, DIR/fig_*.svg.
void write_experiment_report(const std::string& dir, const ExperimentReportSpec& spec,
                             const std::vector<ExperimentRun>& runs);

// --- checkpoint audit (apps/probe.cpp with an audit file) -------------------------

// The audit's figures over "probe" records: the INT4 gap vs step (the three
// phases), the INT8 (every other format's) gap vs step, FP PPL vs step (log
// y), and mean excess kurtosis vs the first format's gap (scatter) whose
// title carries Pearson r (`kurtosis_title_suffix`, e.g. " (r = 0.12,
// p = 0.6, n = 20)").
std::vector<ReportFigure> audit_figures(const std::vector<std::string>& format_names,
                                        const std::string& kurtosis_title_suffix);

// Landmarks of the audit's curves (the paper: divergence begins "precisely
// when FP32 perplexity converges"). Over checkpoints in step order:
//   fp_converged_step  the first step s whose FP PPL is within `tolerance`
//                      (relative) of every later one's minimum, i.e. after s
//                      FP PPL never improves by more than tolerance again
//   min_gap_step       the step of the smallest gap (the plateau's floor)
//   gap_at_converged, min_gap, final_gap  the gaps there and at the end
// -1 / NaN when there are no checkpoints. A heuristic for reading the
// figures, documented as such; the table holds the raw numbers.
struct AuditLandmarks {
  int64_t fp_converged_step = -1, min_gap_step = -1;
  double gap_at_converged = 0, min_gap = 0, final_gap = 0;
};
AuditLandmarks audit_landmarks(const std::vector<int64_t>& steps,
                               const std::vector<double>& fp_ppl, const std::vector<double>& gap,
                               double tolerance = 0.01);

// Writes each figure to DIR/PREFIX<k>_<slug>.svg (slug: the title up to its
// first '(', lower case, at most 40 characters); returns the file names.
std::vector<std::string> write_svg_figures(const std::string& dir, const std::string& prefix,
                                           const std::vector<ReportFigure>& figures,
                                           const std::vector<Json>& records);

}  // namespace gl
