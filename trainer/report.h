// The run report: ONE self-contained HTML file (inline SVG line plots, inline
// CSS, no JavaScript, nothing fetched from the network) drawn from the records
// of metrics.jsonl (trainer/metrics.h).
//
// A figure plots series against the optimizer step; a series is "the records
// of kind K that carry field F" (so the quantization issue adds figures by
// naming its own kinds and fields, no code here changes). Within a series
// the points are sorted by step; a NaN value (a null in the file) breaks the
// line; a record without the field is simply not a point. Horizontal
// reference lines (e.g. the unigram entropy) are drawn dashed and included in
// the y range. With log_y, values <= 0 also break the line (as do values
// beyond 1e+-300, where no axis range stays finite).
//
// Axes use "nice" ticks (Heckbert, "Nice numbers for graph labels", Graphics
// Gems, 1990): steps of 1, 2 or 5 x 10^k and an axis that ends on ticks.
// Log axes tick at 1-2-5 (or 1..9, or whole decades) x 10^k. A figure with no
// plottable point says so in words instead of drawing an empty box. Every
// caller string (titles, labels, summary rows) is HTML-escaped. The output
// holds no timestamp, so the same records give byte-identical HTML.
//
// On disk (write_report): RUN_DIR/report.html, plus RUN_DIR/report_spec.json
// (title, the caller's summary rows, the figure list) so that
// `gridlock_report RUN_DIR` redraws the same report from newer metrics.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"

namespace gl {

struct ReportSeries {
  std::string label;  // legend text
  std::string kind;   // records of this "kind" ...
  std::string field;  // ... that hold this numeric field
};

struct ReportFigure {
  std::string title, y_label;
  bool log_y = false;
  // The x axis: the records' field x_field (default the optimizer step),
  // labelled x_label (default the field name). scatter: points only, no
  // lines (e.g. the probe's kurtosis vs INT4 gap across checkpoints). The
  // spec JSON stores these three only when they differ from the defaults.
  std::string x_field = "step", x_label;
  bool scatter = false;
  std::vector<ReportSeries> series;
  std::vector<std::pair<std::string, double>> hlines;  // {legend label, y}
};

using ReportSummary = std::vector<std::pair<std::string, std::string>>;

// Loss (train loss, val loss), learning rate, gradient norm (log y), tokens/s.
// Callers add reference lines, e.g. figures[0].hlines.push_back({"unigram
// entropy", h}).
std::vector<ReportFigure> default_report_figures();

// The whole HTML document: title, summary table (rows as given), an
// "Events" table when the records hold kind "event" (step, event, action,
// detail: bad steps and how the trainer handled them), one <svg> per figure,
// in order.
std::string render_report_html(const std::string& title, const ReportSummary& summary,
                               const std::vector<Json>& records,
                               const std::vector<ReportFigure>& figures);

// Rows computed from the metrics alone: last step, final train loss, final
// and best val loss (with its step), tokens, elapsed time; each only when
// the records hold it.
ReportSummary summarize_records(const std::vector<Json>& records);

// Reads RUN_DIR/metrics.jsonl (error naming it when missing) and writes
// RUN_DIR/report.html and RUN_DIR/report_spec.json atomically. The summary
// shown is `summary` followed by summarize_records(records), so pass only
// what the metrics do not hold (recipe, model size, entropy reference...).
void write_report(const std::string& run_dir, const std::string& title,
                  const ReportSummary& summary,
                  const std::vector<ReportFigure>& figures = default_report_figures());

// Redraws RUN_DIR/report.html from the current metrics with the title,
// summary and figures of RUN_DIR/report_spec.json; without that file: title
// "gridlock run <dir name>", no caller rows, default_report_figures().
void regenerate_report(const std::string& run_dir);

// report_spec.json <-> the arguments of write_report.
Json report_spec_to_json(const std::string& title, const ReportSummary& summary,
                         const std::vector<ReportFigure>& figures);
void report_spec_from_json(const Json& spec, const std::string& source, std::string& title,
                           ReportSummary& summary, std::vector<ReportFigure>& figures);

// --- building blocks (exposed for tests) -----------------------------------------

std::string html_escape(const std::string& s);

// An axis range ending on ticks, the tick values and their labels.
struct AxisTicks {
  double lo = 0, hi = 1;
  std::vector<double> ticks;
  std::vector<std::string> labels;
};

// About `target` intervals of 1, 2 or 5 x 10^k covering [lo, hi] (swapped if
// reversed; a zero-width range is widened). integer_steps: the step is >= 1
// (x axes count optimizer steps).
AxisTicks nice_ticks(double lo, double hi, int target = 5, bool integer_steps = false);
// Log axis over [lo, hi], both > 0: at most 10 ticks, ending on ticks.
AxisTicks log_ticks(double lo, double hi);

// SVG geometry in pixels. Data maps linearly (or log-linearly) from the axis
// range onto the plot area: x = lo -> kPlotLeft, x = hi -> kPlotRight;
// y = lo -> kPlotBottom, y = hi -> kPlotTop. The legend goes below the x
// axis, one entry per row (kLegendRow pixels each), so long labels never
// clip; the SVG is as tall as its legend needs. The 30 px right of the plot
// leave room for a centred 7-digit step label.
constexpr double kSvgWidth = 720;
constexpr double kPlotLeft = 80, kPlotRight = 690, kPlotTop = 40, kPlotBottom = 320;
constexpr double kLegendTop = kPlotBottom + 64, kLegendRow = 18;

// One figure as an <svg> element (a short "no data" <svg> when nothing plots).
std::string render_figure_svg(const ReportFigure& figure, const std::vector<Json>& records);

}  // namespace gl
