// The HTML/SVG run report; what is drawn and the rules for gaps, ticks and
// escaping are in trainer/report.h. SVG reference: https://www.w3.org/TR/SVG11/
// (only <line>, <polyline>, <circle>, <rect>, <text>, <g>, <title> are used,
// so any browser or image viewer renders it).
#include "trainer/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "trainer/metrics.h"

namespace gl {

namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Okabe-Ito colours (distinguishable with colour-blindness), minus yellow,
// which vanishes on white.
const char* const kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                "#E69F00", "#56B4E9", "#000000", "#999999"};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

// 10^|e| exactly for |e| <= 22 (all powers of ten up to 1e22 are doubles).
double pow10_exact(int e) {
  double p = 1;
  for (int i = 0; i < std::abs(e); ++i) p *= 10;
  return p;
}

// m x 10^e correctly rounded: dividing by 10^-e, not multiplying by the
// inexact 10^e, so 3 x 0.2 prints as 0.6 and not 0.6000000000000001.
double scaled(double m, int e) { return e >= 0 ? m * pow10_exact(e) : m / pow10_exact(-e); }

// "1.5e-04" -> "1.5e-4", "2e+06" -> "2e6": exponents as people write them.
std::string tidy_exponent(const std::string& s) {
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  const bool neg = !exp.empty() && exp[0] == '-';
  if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) exp.erase(0, 1);
  exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
  return mant + "e" + (neg ? "-" : "") + exp;
}

std::string printf_double(const char* fmt, int precision, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, precision, v);
  return buf;
}

// Pixel coordinates with 0.1 px resolution, "320" rather than "320.0".
std::string px(double v) {
  std::string s = printf_double("%.*f", 1, v);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  if (s == "-0") s = "0";
  return s;
}

// A log-axis label: plain from 0.001 to 999999, else "2e-5".
std::string compact_number(double v) {
  if (v >= 1e-3 && v < 1e6) return printf_double("%.*g", 6, v);
  return tidy_exponent(printf_double("%.*e", 0, v));
}

// The axis runs from the largest candidate <= lo to the smallest >= hi (or
// from lo / to hi itself where none is), with a relative tolerance so a
// value equal to a tick up to rounding ends on it. Candidates ascend.
AxisTicks ticks_between(const std::vector<double>& cand, double lo, double hi) {
  AxisTicks t;
  t.lo = lo;
  t.hi = hi;
  for (double c : cand)
    if (c <= lo * (1 + 1e-9)) t.lo = c;
  for (size_t i = cand.size(); i-- > 0;)
    if (cand[i] >= hi * (1 - 1e-9)) t.hi = cand[i];
  for (double c : cand)
    if (c >= t.lo && c <= t.hi) t.ticks.push_back(c);
  return t;
}

// Candidate log ticks m x 10^d for d a multiple of `stride` around [d0, d1],
// within the decades where every m x 10^d is a normal double.
std::vector<double> log_candidates(const std::vector<int>& mantissas, int stride, int d0,
                                   int d1) {
  std::vector<double> c;
  const int first = int(std::floor(double(d0) / stride)) * stride - stride;
  for (int d = first; d <= d1 + stride; d += stride)
    if (std::abs(d) <= 300)
      for (int m : mantissas) c.push_back(scaled(m, d));
  return c;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// --- ticks ---------------------------------------------------------------------------

AxisTicks nice_ticks(double lo, double hi, int target, bool integer_steps) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  // Heckbert's rounding of the raw step (range / target) to 1, 2, 5 or 10.
  const double raw = (hi - lo) / std::max(target, 1);
  int e = int(std::floor(std::log10(raw)));
  const double norm = raw / std::pow(10.0, e);
  int m = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  if (m == 10) m = 1, ++e;
  if (integer_steps && e < 0) m = 1, e = 0;
  const double step = scaled(m, e);
  AxisTicks t;
  if (!(step > 0) || !std::isfinite(step) || (hi - lo) / step > 1000) {
    // Only for ranges near the limits of double (denormal steps): plain ends.
    t.lo = lo, t.hi = hi;
    t.ticks = {lo, hi};
    t.labels = {printf_double("%.*g", 6, lo), printf_double("%.*g", 6, hi)};
    return t;
  }
  // The tolerance keeps 0.6 / 0.2 = 2.9999999999999996 from adding a tick.
  const int64_t k0 = int64_t(std::floor(lo / step + 1e-9));
  const int64_t k1 = int64_t(std::ceil(hi / step - 1e-9));
  for (int64_t k = k0; k <= k1; ++k) t.ticks.push_back(scaled(double(k * m), e));
  t.lo = t.ticks.front();
  t.hi = t.ticks.back();

  // Labels: fixed with as many decimals as the step needs, or scientific
  // with a common mantissa precision when the values are tiny or huge.
  const double big = std::max(std::fabs(t.lo), std::fabs(t.hi));
  const bool sci = big >= 1e6 || big < 1e-3;
  const int sci_decimals = std::max(0, int(std::floor(std::log10(big))) - e);
  for (double v : t.ticks) {
    if (v == 0) t.labels.push_back("0");
    else if (sci) t.labels.push_back(tidy_exponent(printf_double("%.*e", sci_decimals, v)));
    else t.labels.push_back(printf_double("%.*f", std::max(0, -e), v));
  }
  return t;
}

AxisTicks log_ticks(double lo, double hi) {
  GL_CHECK(lo > 0 && hi > 0 && std::isfinite(lo) && std::isfinite(hi),
           "log_ticks: the range must be finite and positive, got [", lo, ", ", hi, "]");
  if (hi < lo) std::swap(lo, hi);
  // Keep every candidate 10^d finite and nonzero (10^+-309 is not a double).
  lo = std::clamp(lo, 1e-300, 1e300), hi = std::clamp(hi, 1e-300, 1e300);
  if (hi == lo) lo /= 2, hi *= 2;
  const int d0 = int(std::floor(std::log10(lo))), d1 = int(std::ceil(std::log10(hi)));
  AxisTicks t = ticks_between(log_candidates({1, 2, 5}, 1, d0, d1), lo, hi);
  if (t.ticks.size() < 4) {
    // Less than about a decade: 1..9 per decade reads better than 2 ticks.
    AxisTicks dense = ticks_between(log_candidates({1, 2, 3, 4, 5, 6, 7, 8, 9}, 1, d0, d1), lo, hi);
    if (dense.ticks.size() <= 10) t = dense;
  }
  // Many decades: whole decades, then every 2nd, 5th, 10th... decade.
  for (int stride = 1; t.ticks.size() > 10; stride = stride == 1 ? 2 : stride == 2 ? 5 : stride * 2)
    t = ticks_between(log_candidates({1}, stride, d0, d1), lo, hi);
  for (double v : t.ticks) t.labels.push_back(compact_number(v));
  return t;
}

// --- one figure ------------------------------------------------------------------------

namespace {

struct Point {
  double x, y;
};

// The series' points sorted by x (the step unless the figure names another
// field); NaN y where the value is not finite.
std::vector<Point> series_points(const ReportSeries& s, const std::vector<Json>& records,
                                 const std::string& x_field) {
  std::vector<Point> pts;
  for (const Json& r : records) {
    if (!r.is_object()) continue;
    const Json* kind = r.find("kind");
    const Json* step = r.find(x_field);
    const Json* value = r.find(s.field);
    if (!kind || !kind->is_string() || kind->as_string() != s.kind) continue;
    if (!step || !step->is_number() || !value) continue;
    if (value->is_number()) pts.push_back({step->as_double(), value->as_double()});
    else if (value->is_null()) pts.push_back({step->as_double(), kNaN});  // not via read()
  }
  std::stable_sort(pts.begin(), pts.end(),
                   [](const Point& a, const Point& b) { return a.x < b.x; });
  return pts;
}

// Long segments keep, per pixel column, the first, lowest, highest and last
// point: the drawn line is unchanged and a 100k-step run stays a small file.
std::vector<Point> thin_to_pixels(const std::vector<Point>& seg) {
  if (seg.size() <= size_t(4 * (kPlotRight - kPlotLeft))) return seg;
  std::vector<Point> out;
  for (size_t i = 0; i < seg.size();) {
    const double column = std::floor(seg[i].x);
    size_t j = i, lo = i, hi = i;
    for (; j < seg.size() && std::floor(seg[j].x) == column; ++j) {
      if (seg[j].y < seg[lo].y) lo = j;
      if (seg[j].y > seg[hi].y) hi = j;
    }
    std::vector<size_t> keep = {i, lo, hi, j - 1};
    std::sort(keep.begin(), keep.end());
    keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
    for (size_t k : keep) out.push_back(seg[k]);
    i = j;
  }
  return out;
}

std::string svg_open(double height, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + px(kSvgWidth) + "\" height=\"" +
         px(height) + "\" viewBox=\"0 0 " + px(kSvgWidth) + " " + px(height) +
         "\" role=\"img\" aria-label=\"" + html_escape(title) + "\">\n<title>" +
         html_escape(title) + "</title>\n";
}

std::string text_el(double x, double y, const std::string& text, const std::string& attrs) {
  return "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" " + attrs + ">" + html_escape(text) +
         "</text>\n";
}

std::string line_el(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" +
         px(y2) + "\" " + attrs + "/>\n";
}

// The title, then "No data to plot." and one line per reason (per series).
std::string no_data_svg(const ReportFigure& fig, const std::vector<std::string>& why) {
  std::string s = svg_open(56 + kLegendRow * double(why.size()), fig.title);
  s += text_el(kPlotLeft, 22, fig.title, "font-size=\"15\" font-weight=\"bold\"");
  s += text_el(kPlotLeft, 46, "No data to plot.", "font-size=\"13\" fill=\"#a00\"");
  for (size_t i = 0; i < why.size(); ++i)
    s += text_el(kPlotLeft + 12, 46 + kLegendRow * double(i + 1), why[i],
                 "font-size=\"12\" fill=\"#a00\"");
  return s + "</svg>\n";
}

}  // namespace

std::string render_figure_svg(const ReportFigure& fig, const std::vector<Json>& records) {
  // Beyond +-1e300 no axis range (or log10 candidate) stays finite; such
  // values are as broken as NaN, so they break the line too.
  auto plottable = [&](double y) {
    return std::isfinite(y) && std::fabs(y) <= 1e300 && (!fig.log_y || y >= 1e-300);
  };

  std::vector<std::vector<Point>> points;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  std::vector<std::string> why;  // used only when nothing plots
  for (const ReportSeries& s : fig.series) {
    points.push_back(series_points(s, records, fig.x_field));
    // A scatter's x is a measured value: drop points whose x cannot be drawn.
    if (fig.scatter)
      points.back().erase(std::remove_if(points.back().begin(), points.back().end(),
                                         [](const Point& p) {
                                           return !std::isfinite(p.x) || std::fabs(p.x) > 1e300;
                                         }),
                          points.back().end());
    for (const Point& p : points.back()) {
      xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
      if (!plottable(p.y)) continue;
      ymin = std::min(ymin, p.y), ymax = std::max(ymax, p.y);
    }
    why.push_back(s.label + " (" + s.kind + "." + s.field + "): " +
                  (points.back().empty() ? std::string("no records")
                   : fig.log_y           ? "no positive finite values"
                                         : "no finite values"));
  }
  if (fig.series.empty()) why = {"the figure has no series"};
  if (ymin > ymax) return no_data_svg(fig, why);
  for (const auto& [label, y] : fig.hlines)
    if (plottable(y)) ymin = std::min(ymin, y), ymax = std::max(ymax, y);

  const bool x_is_step = fig.x_field == "step";
  const AxisTicks xt = nice_ticks(xmin, xmax, 6, x_is_step);
  const AxisTicks yt = fig.log_y ? log_ticks(ymin, ymax) : nice_ticks(ymin, ymax, 5);
  const double w = kPlotRight - kPlotLeft, h = kPlotBottom - kPlotTop;
  auto map_x = [&](double x) { return kPlotLeft + (x - xt.lo) / (xt.hi - xt.lo) * w; };
  auto map_y = [&](double y) {
    const double f = fig.log_y ? (std::log10(y) - std::log10(yt.lo)) /
                                     (std::log10(yt.hi) - std::log10(yt.lo))
                               : (y - yt.lo) / (yt.hi - yt.lo);
    return kPlotBottom - f * h;
  };

  size_t legend_rows = fig.series.size();
  for (const auto& hl : fig.hlines) legend_rows += plottable(hl.second);
  std::string s = svg_open(kLegendTop + kLegendRow * double(legend_rows), fig.title);
  s += text_el(kPlotLeft, 24, fig.title, "font-size=\"15\" font-weight=\"bold\"");
  // Grid and ticks first, so data is drawn over them.
  s += "<g font-size=\"11\" fill=\"#333\">\n";
  for (size_t i = 0; i < yt.ticks.size(); ++i) {
    const double y = map_y(yt.ticks[i]);
    s += line_el(kPlotLeft, y, kPlotRight, y, "stroke=\"#e3e3e3\"");
    s += text_el(kPlotLeft - 6, y + 4, yt.labels[i], "text-anchor=\"end\"");
  }
  for (size_t i = 0; i < xt.ticks.size(); ++i) {
    const double x = map_x(xt.ticks[i]);
    s += line_el(x, kPlotTop, x, kPlotBottom, "stroke=\"#e3e3e3\"");
    s += text_el(x, kPlotBottom + 16, xt.labels[i], "text-anchor=\"middle\"");
  }
  s += "</g>\n<rect x=\"" + px(kPlotLeft) + "\" y=\"" + px(kPlotTop) + "\" width=\"" + px(w) +
       "\" height=\"" + px(h) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  s += text_el((kPlotLeft + kPlotRight) / 2, kPlotBottom + 40,
               fig.x_label.empty() ? fig.x_field : fig.x_label,
               "font-size=\"12\" text-anchor=\"middle\"");
  const double ymid = (kPlotTop + kPlotBottom) / 2;
  s += text_el(18, ymid, fig.y_label + (fig.log_y ? " (log scale)" : ""),
               "font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 18 " + px(ymid) +
                   ")\"");

  // Reference lines, then the series; the legend lists both in that order.
  std::string legend;
  size_t row = 0;
  auto legend_row = [&](const std::string& colour, const std::string& dash,
                        const std::string& label) {
    const double y = kLegendTop - 6 + kLegendRow * double(row++);
    legend += line_el(kPlotLeft, y, kPlotLeft + 24, y,
                      "stroke=\"" + colour + "\" stroke-width=\"2\"" + dash);
    legend += text_el(kPlotLeft + 30, y + 4, label, "font-size=\"12\"");
  };
  const std::string dashed = " stroke-dasharray=\"6 4\"";
  for (size_t i = 0; i < fig.hlines.size(); ++i) {
    const auto& [label, y] = fig.hlines[i];
    const char* colour = kPalette[(fig.series.size() + i) % kPaletteSize];
    if (!plottable(y)) continue;
    s += line_el(kPlotLeft, map_y(y), kPlotRight, map_y(y),
                 std::string("stroke=\"") + colour + "\" stroke-width=\"1.5\"" + dashed);
    legend_row(colour, dashed, label + " (" + compact_number(y) + ")");
  }
  for (size_t i = 0; i < fig.series.size(); ++i) {
    const std::string colour = kPalette[i % kPaletteSize];
    s += "<g stroke=\"" + colour + "\" fill=\"none\" stroke-width=\"1.5\" "
         "stroke-linejoin=\"round\">\n";
    // Non-plottable values end the current segment: a gap, never a bridge.
    std::vector<Point> seg;
    auto flush = [&] {
      if (seg.size() == 1) {
        s += "<circle cx=\"" + px(seg[0].x) + "\" cy=\"" + px(seg[0].y) + "\" r=\"2\" fill=\"" +
             colour + "\"/>\n";
      } else if (seg.size() > 1) {
        s += "<polyline points=\"";
        const std::vector<Point> thin = thin_to_pixels(seg);
        for (size_t k = 0; k < thin.size(); ++k)
          s += (k ? " " : "") + px(thin[k].x) + "," + px(thin[k].y);
        s += "\"/>\n";
      }
      seg.clear();
    };
    for (const Point& p : points[i]) {
      if (plottable(p.y)) seg.push_back({map_x(p.x), map_y(p.y)});
      if (fig.scatter || !plottable(p.y)) flush();  // scatter: every point alone
    }
    flush();
    s += "</g>\n";
    legend_row(colour, "", fig.series[i].label + (points[i].empty() ? " (no data)" : ""));
  }
  return s + legend + "</svg>\n";
}

// --- the document ----------------------------------------------------------------------

std::vector<ReportFigure> default_report_figures() {
  std::vector<ReportFigure> f(4);
  f[0].title = "Loss";
  f[0].y_label = "loss (nats/token)";
  f[0].series = {{"train loss", "train", "loss"}, {"val loss", "val", "val_loss"}};
  f[1].title = "Learning rate";
  f[1].y_label = "learning rate";
  f[1].series = {{"lr", "train", "lr"}};
  // Gradient norms span decades (spikes): log scale keeps both visible.
  f[2].title = "Gradient norm";
  f[2].y_label = "global grad norm";
  f[2].log_y = true;
  f[2].series = {{"grad norm", "train", "grad_norm"}};
  f[3].title = "Throughput";
  f[3].y_label = "tokens / s";
  f[3].series = {{"tokens/s", "train", "tokens_per_s"}};
  return f;
}

std::string render_report_html(const std::string& title, const ReportSummary& summary,
                               const std::vector<Json>& records,
                               const std::vector<ReportFigure>& figures) {
  std::string s =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
      html_escape(title) +
      "</title>\n<style>\n"
      "body{font-family:system-ui,-apple-system,\"Segoe UI\",Helvetica,Arial,sans-serif;"
      "color:#222;max-width:760px;margin:24px auto;padding:0 12px}\n"
      "table.summary{border-collapse:collapse;margin:12px 0 20px}\n"
      "table.summary th{text-align:left;font-weight:600;color:#555;padding:2px 18px 2px 0;"
      "vertical-align:top}\n"
      "table.summary td{padding:2px 0;font-variant-numeric:tabular-nums}\n"
      "figure{margin:18px 0}\nsvg{max-width:100%;height:auto}\nsvg text{font-family:inherit}\n"
      "footer{color:#777;font-size:12px;margin-top:24px}\n"
      "table.events{border-collapse:collapse;margin:8px 0 20px;font-size:14px}\n"
      "table.events th,table.events td{text-align:left;padding:2px 12px 2px 0;vertical-align:top}\n"
      "</style>\n</head>\n<body>\n<h1>" +
      html_escape(title) + "</h1>\n";
  if (!summary.empty()) {
    s += "<table class=\"summary\">\n";
    for (const auto& [key, value] : summary)
      s += "<tr><th>" + html_escape(key) + "</th><td>" + html_escape(value) + "</td></tr>\n";
    s += "</table>\n";
  }
  // Events (kind "event": bad steps and what the trainer did about them,
  // trainer/trainer.h): a table, in file order, before the plots.
  std::string events;
  size_t n_events = 0;
  auto text_of = [](const Json& r, const char* key) {
    const Json* v = r.find(key);
    if (!v) return std::string();
    if (v->is_string()) return v->as_string();
    if (v->is_number()) return printf_double("%.*g", 6, v->as_double());
    return v->dump();
  };
  for (const Json& r : records) {
    if (r.at("kind").as_string() != "event") continue;
    ++n_events;
    events += "<tr><td>" + std::to_string(r.at("step").as_int()) + "</td><td>" + html_escape(text_of(r, "event")) +
              "</td><td>" + html_escape(text_of(r, "action")) + "</td><td>" + html_escape(text_of(r, "detail")) +
              "</td></tr>\n";
  }
  if (n_events > 0)
    s += "<h2>Events</h2>\n<table class=\"events\">\n<tr><th>step</th><th>event</th><th>action</th>"
         "<th>detail</th></tr>\n" + events + "</table>\n";
  for (const ReportFigure& fig : figures)
    s += "<figure>\n" + render_figure_svg(fig, records) + "</figure>\n";
  s += "<footer>gridlock run report: " + std::to_string(records.size()) +
       " metrics records.</footer>\n</body>\n</html>\n";
  return s;
}

ReportSummary summarize_records(const std::vector<Json>& records) {
  auto finite_field = [](const Json& r, const std::string& kind, const std::string& field) {
    const Json* v = r.find(field);
    return r.at("kind").as_string() == kind && v && v->is_number() && std::isfinite(v->as_double());
  };
  // The latest record (by step, then file order) of `kind` whose `field` is finite.
  auto last = [&](const std::string& kind, const std::string& field) -> const Json* {
    const Json* best = nullptr;
    for (const Json& r : records)
      if (finite_field(r, kind, field) &&
          (!best || r.at("step").as_int() >= best->at("step").as_int()))
        best = &r;
    return best;
  };
  // "3.2123 (step 100)"
  auto loss_at = [](const Json& r, const std::string& field) {
    return printf_double("%.*f", 4, r.at(field).as_double()) + " (step " +
           std::to_string(r.at("step").as_int()) + ")";
  };
  ReportSummary rows;
  int64_t last_step = -1;
  for (const Json& r : records) last_step = std::max(last_step, r.at("step").as_int());
  if (last_step >= 0) rows.push_back({"last step", std::to_string(last_step)});
  if (const Json* r = last("train", "loss")) rows.push_back({"final train loss", loss_at(*r, "loss")});
  if (const Json* r = last("val", "val_loss"))
    rows.push_back({"final val loss", loss_at(*r, "val_loss")});
  const Json* best = nullptr;
  for (const Json& r : records)
    if (finite_field(r, "val", "val_loss") &&
        (!best || r.at("val_loss").as_double() < best->at("val_loss").as_double()))
      best = &r;
  if (best) rows.push_back({"best val loss", loss_at(*best, "val_loss")});
  if (const Json* r = last("train", "tokens"))
    rows.push_back({"tokens", format_thousands(r->at("tokens").as_double())});
  if (const Json* r = last("train", "elapsed_s"))
    rows.push_back({"elapsed", format_duration(r->at("elapsed_s").as_double())});
  return rows;
}

// --- on disk ----------------------------------------------------------------------------

Json report_spec_to_json(const std::string& title, const ReportSummary& summary,
                         const std::vector<ReportFigure>& figures) {
  Json spec = Json::object();
  spec.set("title", title);
  Json rows = Json::array();
  for (const auto& [k, v] : summary) {
    Json row = Json::array();
    row.push_back(k);
    row.push_back(v);
    rows.push_back(row);
  }
  spec.set("summary", rows);
  Json figs = Json::array();
  for (const ReportFigure& f : figures) {
    Json fj = Json::object();
    fj.set("title", f.title);
    fj.set("y_label", f.y_label);
    fj.set("log_y", f.log_y);
    // Only when not the defaults: older report_spec.json files stay as they were.
    if (f.x_field != "step") fj.set("x_field", f.x_field);
    if (!f.x_label.empty()) fj.set("x_label", f.x_label);
    if (f.scatter) fj.set("scatter", true);
    Json series = Json::array();
    for (const ReportSeries& s : f.series) {
      Json sj = Json::object();
      sj.set("label", s.label);
      sj.set("kind", s.kind);
      sj.set("field", s.field);
      series.push_back(sj);
    }
    fj.set("series", series);
    Json hlines = Json::array();
    for (const auto& [label, y] : f.hlines) {
      if (!std::isfinite(y)) continue;  // never drawn; JSON cannot hold it
      Json hl = Json::array();
      hl.push_back(label);
      hl.push_back(y);
      hlines.push_back(hl);
    }
    fj.set("hlines", hlines);
    figs.push_back(fj);
  }
  spec.set("figures", figs);
  return spec;
}

void report_spec_from_json(const Json& spec, const std::string& source, std::string& title,
                           ReportSummary& summary, std::vector<ReportFigure>& figures) {
  title = spec.at("title", source).as_string(source + ": title");
  summary.clear();
  for (const Json& row : spec.at("summary", source).as_array(source + ": summary")) {
    const auto& kv = row.as_array(source + ": summary row");
    GL_CHECK(kv.size() == 2, source, ": summary rows are [key, value] pairs, got ", row.dump());
    summary.push_back({kv[0].as_string(source + ": summary key"),
                       kv[1].as_string(source + ": summary value")});
  }
  figures.clear();
  for (const Json& fj : spec.at("figures", source).as_array(source + ": figures")) {
    const std::string what = source + ": figure";
    ReportFigure f;
    f.title = fj.at("title", what).as_string(what + ".title");
    f.y_label = fj.at("y_label", what).as_string(what + ".y_label");
    f.log_y = fj.at("log_y", what).as_bool(what + ".log_y");
    if (const Json* x = fj.find("x_field")) f.x_field = x->as_string(what + ".x_field");
    if (const Json* x = fj.find("x_label")) f.x_label = x->as_string(what + ".x_label");
    if (const Json* x = fj.find("scatter")) f.scatter = x->as_bool(what + ".scatter");
    for (const Json& sj : fj.at("series", what).as_array(what + ".series"))
      f.series.push_back({sj.at("label", what).as_string(what + ".series.label"),
                          sj.at("kind", what).as_string(what + ".series.kind"),
                          sj.at("field", what).as_string(what + ".series.field")});
    for (const Json& hl : fj.at("hlines", what).as_array(what + ".hlines")) {
      const auto& pair = hl.as_array(what + ".hlines");
      GL_CHECK(pair.size() == 2, what, ".hlines entries are [label, y] pairs, got ", hl.dump());
      f.hlines.push_back({pair[0].as_string(what + ".hlines label"),
                          pair[1].as_double(what + ".hlines y")});
    }
    figures.push_back(std::move(f));
  }
}

void write_report(const std::string& run_dir, const std::string& title,
                  const ReportSummary& summary, const std::vector<ReportFigure>& figures) {
  const std::string metrics = (fs::path(run_dir) / "metrics.jsonl").string();
  GL_CHECK(fs::is_regular_file(metrics), "report: ", metrics,
           ": no such file (is ", run_dir, " a gridlock run directory?)");
  const std::vector<Json> records = MetricsLog::read(metrics);
  ReportSummary rows = summary;
  for (auto& row : summarize_records(records)) rows.push_back(std::move(row));
  write_file_atomic((fs::path(run_dir) / "report.html").string(),
                    render_report_html(title, rows, records, figures));
  write_file_atomic((fs::path(run_dir) / "report_spec.json").string(),
                    report_spec_to_json(title, summary, figures).dump(2) + "\n");
}

void regenerate_report(const std::string& run_dir) {
  const std::string spec_path = (fs::path(run_dir) / "report_spec.json").string();
  std::string title;
  ReportSummary summary;
  std::vector<ReportFigure> figures;
  if (fs::exists(spec_path)) {
    report_spec_from_json(Json::parse_file(spec_path), spec_path, title, summary, figures);
  } else {
    fs::path dir = fs::path(run_dir).lexically_normal();
    if (dir.filename().empty()) dir = dir.parent_path();  // "runs/x/" -> "runs/x"
    title = "gridlock run " + dir.filename().string();
    figures = default_report_figures();
  }
  write_report(run_dir, title, summary, figures);
}

}  // namespace gl
