// The HTML/SVG run report (trainer/report.h): nice ticks on hand-checked
// ranges, data -> pixel mapping on a hand-checked figure (linear and log),
// gaps at NaN, the "no data" message, HTML escaping, one <svg> per figure,
// the summary rows, report_spec.json round trip, and the gridlock_report
// program end to end.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "trainer/metrics.h"
#include "trainer/report.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("gl_report_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// doctest::Contains takes a doctest::String, which converts from const char*.
doctest::Contains has(const std::string& s) { return doctest::Contains(s.c_str()); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1))
    ++n;
  return n;
}

// Records of `kind` with `field` = ys[i] at step xs[i].
std::vector<Json> series(const std::string& kind, const std::string& field,
                         const std::vector<int64_t>& xs, const std::vector<double>& ys) {
  std::vector<Json> out;
  for (size_t i = 0; i < xs.size(); ++i) out.push_back(metrics_record(kind, xs[i], {{field.c_str(), ys[i]}}));
  return out;
}

ReportFigure loss_figure(bool log_y = false) {
  ReportFigure f;
  f.title = "Loss";
  f.y_label = "loss";
  f.log_y = log_y;
  f.series = {{"train loss", "train", "loss"}};
  return f;
}

// The points="..." of every polyline, in order.
std::vector<std::string> polylines(const std::string& svg) {
  std::vector<std::string> out;
  const std::string key = "<polyline points=\"";
  for (size_t p = svg.find(key); p != std::string::npos; p = svg.find(key, p + 1)) {
    const size_t b = p + key.size();
    out.push_back(svg.substr(b, svg.find('"', b) - b));
  }
  return out;
}

int run_status(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("nice_ticks: 1-2-5 steps, axis ends on ticks, labels with the needed decimals") {
  AxisTicks t = nice_ticks(0, 10);
  CHECK(t.ticks == std::vector<double>{0, 2, 4, 6, 8, 10});
  CHECK(t.labels == std::vector<std::string>{"0", "2", "4", "6", "8", "10"});
  CHECK(t.lo == 0);
  CHECK(t.hi == 10);

  t = nice_ticks(0, 1);
  CHECK(t.ticks == std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0});
  CHECK(t.labels == std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1.0"});

  // A loss curve: 7.9 / 5 = 1.58 rounds to a step of 2; the axis widens to 2..12.
  t = nice_ticks(2.9, 10.8);
  CHECK(t.ticks == std::vector<double>{2, 4, 6, 8, 10, 12});

  // 0.08 -> step 0.1; 0.6 / 0.1 must not add a tick at 0.5 through rounding.
  t = nice_ticks(0.6, 1.0);
  CHECK(t.ticks == std::vector<double>{0.6, 0.7, 0.8, 0.9, 1.0});
  CHECK(t.labels == std::vector<std::string>{"0.6", "0.7", "0.8", "0.9", "1.0"});

  t = nice_ticks(-3, 7);
  CHECK(t.ticks == std::vector<double>{-4, -2, 0, 2, 4, 6, 8});

  // A learning rate: tiny values get scientific labels.
  t = nice_ticks(0, 6e-4);
  CHECK(t.ticks.size() == 7);
  CHECK(t.ticks[3] == 3e-4);
  CHECK(t.labels == std::vector<std::string>{"0", "1e-4", "2e-4", "3e-4", "4e-4", "5e-4", "6e-4"});
  t = nice_ticks(0, 2.4e-4);  // step 5e-5: one mantissa decimal for every label
  CHECK(t.labels == std::vector<std::string>{"0", "5.0e-5", "1.0e-4", "1.5e-4", "2.0e-4", "2.5e-4"});

  t = nice_ticks(0, 2e6);
  CHECK(t.ticks == std::vector<double>{0, 5e5, 1e6, 1.5e6, 2e6});
  CHECK(t.labels == std::vector<std::string>{"0", "5.0e5", "1.0e6", "1.5e6", "2.0e6"});

  // Steps on the x axis are integers: 0..3 ticks every 1, not every 0.5.
  t = nice_ticks(0, 3, 6, true);
  CHECK(t.ticks == std::vector<double>{0, 1, 2, 3});
  t = nice_ticks(0, 1000, 6, true);
  CHECK(t.ticks == std::vector<double>{0, 200, 400, 600, 800, 1000});

  // Zero-width ranges widen (10% of the value, or +-1 around 0); reversed swaps.
  t = nice_ticks(5, 5);
  CHECK(t.lo < 5);
  CHECK(t.hi > 5);
  t = nice_ticks(0, 0, 6, true);
  CHECK(t.ticks == std::vector<double>{-1, 0, 1});
  CHECK(nice_ticks(10, 0).ticks == nice_ticks(0, 10).ticks);
}

TEST_CASE("log_ticks: 1-2-5 per decade, denser within a decade, sparser over many") {
  AxisTicks t = log_ticks(1, 100);
  CHECK(t.ticks == std::vector<double>{1, 2, 5, 10, 20, 50, 100});
  CHECK(t.labels == std::vector<std::string>{"1", "2", "5", "10", "20", "50", "100"});

  t = log_ticks(2.5, 11);  // ends on 2 and 20
  CHECK(t.ticks == std::vector<double>{2, 5, 10, 20});

  t = log_ticks(3.2, 3.9);  // inside a decade: 1..9 mantissas
  CHECK(t.ticks == std::vector<double>{3, 4});

  t = log_ticks(2e-6, 50);  // 8 decades: whole decades only
  CHECK(t.ticks == std::vector<double>{1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100});
  CHECK(t.labels ==
        std::vector<std::string>{"1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1", "10", "100"});

  t = log_ticks(1e-12, 1e12);  // 24 decades: every 5th decade
  CHECK(t.ticks == std::vector<double>{1e-15, 1e-10, 1e-5, 1, 1e5, 1e10, 1e15});

  CHECK_THROWS_WITH_AS(log_ticks(0, 1), doctest::Contains("log_ticks"), Error);
}

TEST_CASE("report figure: points map to the hand-computed pixels") {
  // x: steps 0..10 -> ticks 0..10 step 2 -> px = 80 + 61 x.
  // y: 0..1 -> ticks 0..1 step 0.2 -> py = 320 - 280 y.
  ReportFigure f = loss_figure();
  f.hlines = {{"entropy", 0.25}};
  const std::string svg = render_figure_svg(f, series("train", "loss", {0, 5, 10}, {0, 0.5, 1}));
  CHECK(polylines(svg) == std::vector<std::string>{"80,320 385,180 690,40"});
  // The reference line at 0.25 -> py 250, across the plot, dashed, in the legend.
  CHECK(svg.find("<line x1=\"80\" y1=\"250\" x2=\"690\" y2=\"250\"") != std::string::npos);
  CHECK(svg.find("stroke-dasharray") != std::string::npos);
  CHECK(svg.find(">entropy (0.25)</text>") != std::string::npos);
  CHECK(svg.find(">train loss</text>") != std::string::npos);
  // Tick labels and the axis titles.
  CHECK(svg.find(">0.6</text>") != std::string::npos);
  CHECK(svg.find(">10</text>") != std::string::npos);
  CHECK(svg.find(">step</text>") != std::string::npos);
  CHECK(svg.find(">loss</text>") != std::string::npos);

  // Log y: 1, 10, 100 over ticks 1..100 -> py 320, 180, 40.
  const std::string log_svg =
      render_figure_svg(loss_figure(true), series("train", "loss", {0, 5, 10}, {1, 10, 100}));
  CHECK(polylines(log_svg) == std::vector<std::string>{"80,320 385,180 690,40"});
  CHECK(log_svg.find("(log scale)") != std::string::npos);

  // Points are sorted by step whatever the record order.
  CHECK(polylines(render_figure_svg(f, series("train", "loss", {10, 0, 5}, {1, 0, 0.5}))) ==
        std::vector<std::string>{"80,320 385,180 690,40"});
}

TEST_CASE("report figure: NaN (and <= 0 on log axes) breaks the line") {
  const ReportFigure f = loss_figure();
  std::string svg = render_figure_svg(f, series("train", "loss", {0, 1, 2, 3, 4}, {1, 2, kNaN, 4, 5}));
  CHECK(polylines(svg).size() == 2);
  // An isolated point between gaps is a dot, not dropped.
  svg = render_figure_svg(f, series("train", "loss", {0, 1, 2, 3, 4, 5}, {1, kNaN, 3, kNaN, 5, 6}));
  CHECK(polylines(svg).size() == 1);
  CHECK(count(svg, "<circle") == 2);
  // Records of other kinds, and records without the field, are not points.
  std::vector<Json> recs = series("train", "loss", {0, 1}, {1, 2});
  recs.push_back(metrics_record("val", 1, {{"loss", 100}}));
  recs.push_back(metrics_record("train", 2, {{"lr", 1e-3}}));
  CHECK(polylines(render_figure_svg(f, recs)) == std::vector<std::string>{"80,320 690,40"});

  svg = render_figure_svg(loss_figure(true), series("train", "loss", {0, 1, 2, 3}, {1, 10, 0, 100}));
  CHECK(polylines(svg).size() == 1);
  CHECK(count(svg, "<circle") == 1);

  // Values at the limits of double neither break the axes nor leak nan/inf.
  for (bool log_y : {false, true}) {
    svg = render_figure_svg(loss_figure(log_y),
                            series("train", "loss", {0, 1, 2, 3}, {1, 1e308, 2, 4e-320}));
    CHECK(svg.find("nan") == std::string::npos);
    CHECK(svg.find("inf") == std::string::npos);
    CHECK(polylines(svg).size() == (log_y ? 0u : 1u));
  }
  AxisTicks t = nice_ticks(0, 1e-320);
  CHECK(t.ticks.size() == 2);
  t = log_ticks(1e-320, 1e308);
  for (double v : t.ticks) CHECK((std::isfinite(v) && v > 0));
}

TEST_CASE("report figure: no plottable data says so instead of drawing axes") {
  ReportFigure f;
  f.title = "Quantization error";
  f.series = {{"rmse", "quant", "rmse"}};
  f.hlines = {{"ref", 1.0}};
  std::string svg = render_figure_svg(f, series("train", "loss", {0, 1}, {1, 2}));
  CHECK(count(svg, "<svg") == 1);
  CHECK(svg.find(">No data to plot.</text>") != std::string::npos);
  CHECK(svg.find(">rmse (quant.rmse): no records</text>") != std::string::npos);
  CHECK(svg.find("<rect") == std::string::npos);
  CHECK(svg.find("<polyline") == std::string::npos);

  svg = render_figure_svg(loss_figure(), series("train", "loss", {0, 1}, {kNaN, kNaN}));
  CHECK(svg.find(">train loss (train.loss): no finite values</text>") != std::string::npos);
  svg = render_figure_svg(loss_figure(true), series("train", "loss", {0, 1}, {0, -1}));
  CHECK(svg.find("no positive finite values") != std::string::npos);
}

TEST_CASE("report figure: a long run is thinned per pixel column, keeping spikes and ends") {
  std::vector<int64_t> xs;
  std::vector<double> ys;
  for (int64_t i = 0; i < 10000; ++i) xs.push_back(i), ys.push_back(i == 5000 ? 1.0 : 0.0);
  const auto lines = polylines(render_figure_svg(loss_figure(), series("train", "loss", xs, ys)));
  REQUIRE(lines.size() == 1);
  const size_t n_points = count(lines[0], ",");
  CHECK(n_points <= 4 * 610);
  CHECK(n_points >= 610);
  // x ticks 0..10000 (step 2000): px = 80 + 0.061 step. The spike (step 5000)
  // is at (385, 40); the first and last points survive.
  CHECK(lines[0].find("385,40") != std::string::npos);
  CHECK(lines[0].rfind("80,320", 0) == 0);
  const std::string last = "689.9,320";  // step 9999: 689.939
  CHECK(lines[0].compare(lines[0].size() - last.size(), last.size(), last) == 0);
}

TEST_CASE("report html: one <svg> per figure, everything escaped, deterministic") {
  std::vector<Json> recs = series("train", "loss", {0, 10, 20}, {10, 6, 4});
  for (Json& r : recs) r.set("lr", 1e-3), r.set("tokens_per_s", 5000.0);
  recs.push_back(metrics_record("val", 20, {{"val_loss", 4.5}}));
  std::vector<ReportFigure> figs = default_report_figures();
  REQUIRE(figs.size() == 4);
  figs[0].title = "Loss <b>&</b> \"x\"";
  figs[0].series[0].label = "train <loss>";
  figs[0].hlines.push_back({"unigram <H>", 7.5});
  ReportFigure quant = loss_figure();  // a figure with no data still gets its <svg>
  quant.series = {{"rmse", "quant", "rmse"}};
  figs.push_back(quant);

  const std::string html =
      render_report_html("run <1>", {{"recipe", "tiny.yaml"}, {"model <size>", "1.2M & more"}}, recs, figs);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(count(html, "<svg") == figs.size());
  CHECK(count(html, "</svg>") == figs.size());
  CHECK(html.find("<title>run &lt;1&gt;</title>") != std::string::npos);
  CHECK(html.find("<h1>run &lt;1&gt;</h1>") != std::string::npos);
  CHECK(html.find("Loss &lt;b&gt;&amp;&lt;/b&gt; &quot;x&quot;") != std::string::npos);
  CHECK(html.find("train &lt;loss&gt;") != std::string::npos);
  CHECK(html.find("unigram &lt;H&gt;") != std::string::npos);
  CHECK(html.find("<th>model &lt;size&gt;</th><td>1.2M &amp; more</td>") != std::string::npos);
  for (const char* raw : {"<1>", "<b>", "<loss>", "<H>", "<size>"}) CHECK(html.find(raw) == std::string::npos);
  // Self-contained: no script, nothing fetched.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("href=") == std::string::npos);
  // Grad norm (not in the records) says so; the others plot.
  CHECK(count(html, "No data to plot") == 2);
  CHECK(html == render_report_html("run <1>", {{"recipe", "tiny.yaml"}, {"model <size>", "1.2M & more"}},
                                   recs, figs));
  CHECK(html_escape("a'b") == "a&#39;b");
}

TEST_CASE("summarize_records: latest finite values, best val loss, tokens, elapsed") {
  std::vector<Json> recs;
  recs.push_back(metrics_record("train", 0, {{"loss", 10.0}, {"tokens", 4096}, {"elapsed_s", 1}}));
  recs.push_back(metrics_record("val", 0, {{"val_loss", 9.5}}));
  recs.push_back(metrics_record("train", 100, {{"loss", 3.21234}, {"tokens", 409600}, {"elapsed_s", 192}}));
  recs.push_back(metrics_record("val", 50, {{"val_loss", 3.0}}));
  recs.push_back(metrics_record("val", 100, {{"val_loss", 3.5}}));
  recs.push_back(metrics_record("train", 101, {{"loss", kNaN}}));  // diverged: not "final"
  const ReportSummary rows = summarize_records(recs);
  const ReportSummary expected = {{"last step", "101"},
                                  {"final train loss", "3.2123 (step 100)"},
                                  {"final val loss", "3.5000 (step 100)"},
                                  {"best val loss", "3.0000 (step 50)"},
                                  {"tokens", "409,600"},
                                  {"elapsed", "3m12s"}};
  CHECK(rows == expected);
  CHECK(summarize_records({}).empty());
}

TEST_CASE("write_report: report.html + report_spec.json, regenerate reproduces it") {
  TempDir d;
  {
    MetricsLog log(d / "metrics.jsonl");
    for (int s = 0; s <= 20; s += 5)
      log.append(metrics_record("train", s, {{"loss", 8.0 - 0.2 * s}, {"lr", 1e-3}, {"grad_norm", 1.0}}));
    log.append(metrics_record("quant", 20, {{"rmse", 0.01}}));
  }
  std::vector<ReportFigure> figs = default_report_figures();
  figs[0].hlines.push_back({"unigram entropy", 7.25});
  ReportFigure q;
  q.title = "Quant RMSE";
  q.y_label = "rmse";
  q.log_y = true;
  q.series = {{"rmse", "quant", "rmse"}};
  figs.push_back(q);
  write_report(d.path.string(), "tiny run", {{"recipe", "recipes/tiny.yaml"}}, figs);
  const std::string html = slurp(d / "report.html");
  CHECK(count(html, "<svg") == 5);
  CHECK(html.find("<th>recipe</th><td>recipes/tiny.yaml</td>") != std::string::npos);
  CHECK(html.find("<th>final train loss</th><td>4.0000 (step 20)</td>") != std::string::npos);
  CHECK(fs::exists(d / "report_spec.json"));
  for (const auto& e : fs::directory_iterator(d.path))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);

  // The spec round-trips, and regenerating redraws the same bytes.
  std::string title;
  ReportSummary summary;
  std::vector<ReportFigure> back;
  report_spec_from_json(Json::parse_file(d / "report_spec.json"), "spec", title, summary, back);
  CHECK(title == "tiny run");
  CHECK(summary == ReportSummary{{"recipe", "recipes/tiny.yaml"}});
  REQUIRE(back.size() == figs.size());
  CHECK(back[0].hlines == figs[0].hlines);
  CHECK(back[4].log_y);
  CHECK(back[4].series[0].kind == "quant");
  fs::remove(d / "report.html");
  regenerate_report(d.path.string());
  CHECK(slurp(d / "report.html") == html);

  Json bad = Json::parse(R"({"title":"t","summary":[["only key"]],"figures":[]})");
  CHECK_THROWS_WITH_AS(report_spec_from_json(bad, "x.json", title, summary, back),
                       doctest::Contains("x.json: summary rows are [key, value] pairs"), Error);

  TempDir empty;
  CHECK_THROWS_WITH_AS(write_report(empty.path.string(), "t", {}),
                       has(empty / "metrics.jsonl"), Error);
}

TEST_CASE("gridlock_report RUN_DIR redraws report.html and errors name the file") {
  TempDir d;
  MetricsLog(d / "metrics.jsonl").append(metrics_record("train", 0, {{"loss", 5.0}}));
  const std::string bin = GRIDLOCK_REPORT_BIN;
  const std::string err = d / "stderr.txt";
  CHECK(run_status(bin + " " + d.path.string() + " > /dev/null 2> " + err) == 0);
  const std::string html = slurp(d / "report.html");
  CHECK(html.find("<h1>gridlock run " + d.path.filename().string() + "</h1>") != std::string::npos);
  CHECK(count(html, "<svg") == 4);

  TempDir empty;
  CHECK(run_status(bin + " " + empty.path.string() + " 2> " + err) == 1);
  CHECK(slurp(err).find(empty / "metrics.jsonl") != std::string::npos);
  CHECK(run_status(bin + " 2> " + err) == 2);
  CHECK(slurp(err).find("missing RUN_DIR") != std::string::npos);
  CHECK(run_status(bin + " " + d / "nope" + " 2> " + err) == 1);
}
