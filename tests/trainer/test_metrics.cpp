// metrics.jsonl (trainer/metrics.h): round trip with non-finite numbers
// (written as null, read back as NaN), torn last lines (tolerated on read,
// repaired on open), malformed lines (errors naming FILE:LINE),
// truncate_after, and the progress-line / duration / thousands formatting.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "trainer/metrics.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A fresh directory per test case, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() /
           ("gl_metrics_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
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

void spit(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Files in `dir` other than `keep` (catches leftover temporaries).
size_t other_files(const fs::path& dir, const std::string& keep) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename() != keep;
  return n;
}

}  // namespace

TEST_CASE("metrics: round trip keeps finite values exactly, non-finite -> null -> NaN") {
  TempDir d;
  const std::string path = d / "metrics.jsonl";
  {
    MetricsLog log(path);
    log.append(metrics_record("train", 0, {{"loss", 10.8125}, {"lr", 0.1 + 0.2}}));
    Json r = metrics_record("train", 1, {{"loss", kNaN}, {"lr", kInf}, {"grad_norm", -kInf}});
    r.set("tokens", int64_t(4096));
    Json per_layer = Json::array();
    per_layer.push_back(1.5);
    per_layer.push_back(kNaN);
    r.set("per_layer", per_layer);
    log.append(r);
    log.append(metrics_record("val", 1, {{"val_loss", 3.25}}));
  }
  const std::string text = slurp(path);
  CHECK(text.find("\"loss\":null") != std::string::npos);
  CHECK(text.find("\"lr\":null") != std::string::npos);
  CHECK(text.find("\"grad_norm\":null") != std::string::npos);
  CHECK(text.find("[1.5,null]") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);

  const std::vector<Json> recs = MetricsLog::read(path);
  REQUIRE(recs.size() == 3);
  CHECK(recs[0].at("kind").as_string() == "train");
  CHECK(recs[0].at("step").as_int() == 0);
  CHECK(recs[0].at("loss").as_double() == 10.8125);
  CHECK(recs[0].at("lr").as_double() == 0.1 + 0.2);  // %.17g round-trips bit-exactly
  CHECK(std::isnan(recs[1].at("loss").as_double()));
  CHECK(std::isnan(recs[1].at("lr").as_double()));  // inf is not preserved, by design
  CHECK(std::isnan(recs[1].at("grad_norm").as_double()));
  CHECK(recs[1].at("tokens").as_int() == 4096);
  CHECK(recs[1].at("per_layer")[0].as_double() == 1.5);
  CHECK(std::isnan(recs[1].at("per_layer")[1].as_double()));
  CHECK(recs[2].at("kind").as_string() == "val");
  CHECK(recs[2].at("val_loss").as_double() == 3.25);

  // Reopening appends after the existing lines.
  MetricsLog log(path);
  log.append(metrics_record("quant", 2, {{"rmse", 0.5}}));
  CHECK(MetricsLog::read(path).size() == 4);
}

TEST_CASE("metrics: append rejects records without kind or step, and a closed log") {
  TempDir d;
  MetricsLog log(d / "m.jsonl");
  CHECK_THROWS_WITH_AS(log.append(Json(1.0)), doctest::Contains("expected a JSON object"), Error);
  Json no_kind = Json::object();
  no_kind.set("step", 1);
  CHECK_THROWS_WITH_AS(log.append(no_kind), doctest::Contains("\"kind\""), Error);
  Json no_step = Json::object();
  no_step.set("kind", "train");
  CHECK_THROWS_WITH_AS(log.append(no_step), doctest::Contains("\"step\""), Error);
  Json float_step = metrics_record("train", 0, {});
  float_step.set("step", 1.5);
  CHECK_THROWS_WITH_AS(log.append(float_step), doctest::Contains("non-integer \"step\""), Error);
  CHECK_THROWS_WITH_AS(log.append(metrics_record("train", -1, {})),
                       doctest::Contains("negative \"step\""), Error);
  CHECK(slurp(d / "m.jsonl").empty());  // nothing half-written
  log.close();
  CHECK_THROWS_WITH_AS(log.append(metrics_record("train", 0, {})),
                       doctest::Contains("no file open"), Error);
}

TEST_CASE("metrics: a torn last line is skipped with a warning naming file:line") {
  TempDir d;
  const std::string path = d / "metrics.jsonl";
  spit(path, "{\"kind\":\"train\",\"step\":0,\"loss\":5.0}\n"
             "{\"kind\":\"train\",\"step\":1,\"loss\":4.0}\n"
             "{\"kind\":\"train\",\"st");
  std::vector<std::string> warnings;
  const std::vector<Json> recs = MetricsLog::read(path, &warnings);
  CHECK(recs.size() == 2);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find(path + ":3") != std::string::npos);
  CHECK(warnings[0].find("torn last line") != std::string::npos);

  // A complete record that only lacks its '\n' (edited by hand) is kept.
  spit(path, "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"val\",\"step\":0,\"val_loss\":2.5}");
  warnings.clear();
  CHECK(MetricsLog::read(path, &warnings).size() == 2);
  CHECK(warnings.empty());

  // Blank lines are not records and not errors.
  spit(path, "\n{\"kind\":\"train\",\"step\":0}\n\n   \n{\"kind\":\"train\",\"step\":1}\n");
  CHECK(MetricsLog::read(path).size() == 2);
}

TEST_CASE("metrics: a malformed line before the last is an error naming file:line") {
  TempDir d;
  const std::string path = d / "metrics.jsonl";
  spit(path, "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"train\",\"step\":1,\"loss\":}\n"
             "{\"kind\":\"train\",\"step\":2}\n");
  CHECK_THROWS_WITH_AS(MetricsLog::read(path), has(path + ":2"), Error);
  // A terminated last line was written whole: garbage there is not a tear.
  spit(path, "{\"kind\":\"train\",\"step\":0}\nnot json\n");
  CHECK_THROWS_WITH_AS(MetricsLog::read(path), has(path + ":2"), Error);
  // Valid JSON that is not a metrics record.
  spit(path, "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"train\"}\n{\"kind\":\"train\",\"step\":2}\n");
  CHECK_THROWS_WITH_AS(MetricsLog::read(path), has(path + ":2: missing or non-integer"),
                       Error);
  spit(path, "[1,2]\n");
  CHECK_THROWS_WITH_AS(MetricsLog::read(path), has(path + ":1: expected a JSON object"),
                       Error);
  CHECK_THROWS_WITH_AS(MetricsLog::read(d / "absent.jsonl"),
                       doctest::Contains("absent.jsonl: no such file"), Error);
}

TEST_CASE("metrics: open() repairs a torn tail so new lines stay readable") {
  TempDir d;
  const std::string path = d / "metrics.jsonl";
  spit(path, "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"tr");
  {
    MetricsLog log(path);  // drops the fragment (warning on stderr)
    log.append(metrics_record("train", 1, {{"loss", 2.0}}));
  }
  std::vector<std::string> warnings;
  std::vector<Json> recs = MetricsLog::read(path, &warnings);
  CHECK(warnings.empty());
  REQUIRE(recs.size() == 2);
  CHECK(recs[1].at("step").as_int() == 1);
  CHECK(slurp(path) == "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"train\",\"step\":1,\"loss\":2.0}\n");

  // A whole record without '\n' gets its newline instead of being dropped.
  spit(path, "{\"kind\":\"train\",\"step\":0}");
  {
    MetricsLog log(path);
    log.append(metrics_record("train", 1, {}));
  }
  CHECK(slurp(path) == "{\"kind\":\"train\",\"step\":0}\n{\"kind\":\"train\",\"step\":1}\n");

  // A torn file with no complete line at all becomes empty.
  spit(path, "{\"ki");
  MetricsLog(path).append(metrics_record("val", 3, {}));
  CHECK(slurp(path) == "{\"kind\":\"val\",\"step\":3}\n");
}

TEST_CASE("metrics: truncate_after keeps records with step <= N, byte for byte, atomically") {
  TempDir d;
  const std::string path = d / "metrics.jsonl";
  std::string expected;
  {
    MetricsLog log(path);
    for (int s = 0; s <= 6; ++s) {
      log.append(metrics_record("train", s, {{"loss", 10.0 / (s + 1)}}));
      if (s % 2 == 0) log.append(metrics_record("val", s, {{"val_loss", kNaN}}));
      if (s == 3) expected = slurp(path);
    }
  }
  const std::string before = slurp(path);
  spit(path, before + "{\"kind\":\"train\",\"step\":7,\"lo");  // torn tail too
  std::vector<std::string> warnings;
  MetricsLog::truncate_after(path, 3, &warnings);
  CHECK(warnings.size() == 1);
  CHECK(slurp(path) == expected);
  const std::vector<Json> recs = MetricsLog::read(path);
  REQUIRE(recs.size() == 6);  // train 0..3, val 0 and 2
  for (const Json& r : recs) CHECK(r.at("step").as_int() <= 3);
  CHECK(other_files(d.path, "metrics.jsonl") == 0);  // no temporary left

  MetricsLog::truncate_after(path, 100, &warnings);  // nothing to cut
  CHECK(slurp(path) == expected);
  MetricsLog::truncate_after(path, -1);  // resume from scratch: empty log
  CHECK(slurp(path).empty());
  MetricsLog::truncate_after(d / "absent.jsonl", 3);  // no log yet: nothing to do
  CHECK(!fs::exists(d / "absent.jsonl"));

  // A malformed middle line stops the rewrite instead of silently losing it.
  spit(path, "{\"kind\":\"train\",\"step\":0}\n{oops\n{\"kind\":\"train\",\"step\":5}\n");
  CHECK_THROWS_WITH_AS(MetricsLog::truncate_after(path, 1), has(path + ":2"), Error);
  CHECK(slurp(path) == "{\"kind\":\"train\",\"step\":0}\n{oops\n{\"kind\":\"train\",\"step\":5}\n");
}

TEST_CASE("write_file_atomic replaces the file and leaves no temporary") {
  TempDir d;
  const std::string path = d / "a.txt";
  write_file_atomic(path, "one");
  write_file_atomic(path, "two\n");
  CHECK(slurp(path) == "two\n");
  CHECK(other_files(d.path, "a.txt") == 0);
  CHECK_THROWS_WITH_AS(write_file_atomic(d / "no/such/dir/x.txt", "x"),
                       doctest::Contains("no/such/dir/x.txt"), Error);
}

TEST_CASE("format_duration: s, m+s, h+m with rounding to the shown unit") {
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(42.4) == "42s");
  CHECK(format_duration(59.4) == "59s");
  CHECK(format_duration(59.6) == "1m00s");  // rounds up into minutes
  CHECK(format_duration(192) == "3m12s");
  CHECK(format_duration(3599.4) == "59m59s");
  CHECK(format_duration(3599.6) == "1h00m");
  CHECK(format_duration(3725) == "1h02m");  // 62.08 min
  CHECK(format_duration(7530) == "2h06m");  // 125.5 min rounds to 126
  CHECK(format_duration(100 * 3600.0) == "100h00m");
  CHECK(format_duration(1e12) == ">99999h");
  CHECK(format_duration(-1) == "--");
  CHECK(format_duration(kNaN) == "--");
  CHECK(format_duration(kInf) == "--");
}

TEST_CASE("format_thousands") {
  CHECK(format_thousands(0) == "0");
  CHECK(format_thousands(999.4) == "999");
  CHECK(format_thousands(999.5) == "1,000");
  CHECK(format_thousands(5123.4) == "5,123");
  CHECK(format_thousands(123456) == "123,456");
  CHECK(format_thousands(1234567.5) == "1,234,568");
  CHECK(format_thousands(-1234) == "-1,234");
  CHECK(format_thousands(kNaN) == "--");
}

TEST_CASE("format_progress_line") {
  ProgressFields f;
  f.step = 120;
  f.total_steps = 1000;
  f.loss = 4.12344;
  f.lr = 6e-4;
  f.tokens_per_s = 5123.4;
  f.eta_s = 192;
  CHECK(format_progress_line(f) ==
        "step  120/1000 | loss 4.1234 | lr 6.00e-04 | 5,123 tok/s | ETA 3m12s");
  f.grad_norm = 0.81234;
  f.step = 1000;
  f.eta_s = 0;
  CHECK(format_progress_line(f) ==
        "step 1000/1000 | loss 4.1234 | lr 6.00e-04 | gnorm 0.812 | 5,123 tok/s | ETA 0s");
  // A diverged run shows it; unknown rate and ETA print as "--".
  f.loss = kNaN;
  f.grad_norm = kInf;
  f.tokens_per_s = kNaN;
  f.eta_s.reset();
  f.step = 7;
  CHECK(format_progress_line(f) ==
        "step    7/1000 | loss nan | lr 6.00e-04 | gnorm inf | -- tok/s | ETA --");
}
