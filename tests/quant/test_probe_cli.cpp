// ./probe end to end (gridlock_probe): tiny GPT-NeoX models made here with
// make_model + save_hf_model, the neox tokenizer fixture, a text file; a
// folder of step checkpoints (sorted by the number in the name, bin flips
// between them), a training run directory (trainer_state.json step, the
// run's tokenizer.json), the outputs (probe.jsonl, probe.csv, report.html),
// and the errors: unknown format (lists the presets), a layer pattern that
// matches nothing, missing data. GRIDLOCK_PROBE_BIN comes from
// tests/CMakeLists.txt (the probe block).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <algorithm>
#include <sstream>
#include "core/json.h"
#include "models/model.h"

#ifdef GRIDLOCK_PROBE_BIN

using namespace gl;
namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(GRIDLOCK_SOURCE_DIR) + "/tests/reference/fixtures/tokenizer/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Result {
  int code = -1;
  std::string out, err;
};

Result probe(const std::string& work, const std::string& args) {
  const std::string err_path = work + "/stderr.txt";
  const std::string cmd =
      "'" + std::string(GRIDLOCK_PROBE_BIN) + "' " + args + " 2>'" + err_path + "'";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_file(err_path);
  return r;
}

// A tiny GPT-NeoX whose vocabulary covers the fixture tokenizer (2025 ids).
void save_tiny(const std::string& dir, uint64_t seed, bool with_tokenizer) {
  ModelConfig c = ModelConfig::preset("pythia-14m");
  c.vocab_size = 2048;
  c.hidden_size = 16;
  c.num_heads = 2;
  c.num_layers = 2;
  c.intermediate_size = 32;
  c.max_positions = 16;
  Generator gen(seed);
  auto m = make_model(c, gen);
  fs::create_directories(dir);
  save_hf_model(*m, dir);
  if (with_tokenizer) fs::copy_file(kFixtures + "neox/tokenizer.json", dir + "/tokenizer.json");
}

std::vector<Json> read_jsonl(const std::string& path) {
  std::vector<Json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(Json::parse(line, path));
  return out;
}

std::string setup(const std::string& name) {
  const std::string work = (fs::temp_directory_path() /
                            ("gridlock_probe_cli_" + std::to_string(::getpid()) + "_" + name))
                               .string();
  fs::remove_all(work);
  fs::create_directories(work);
  // A short text: 6000 characters of the fixture text (--max-tokens cuts it).
  const std::string text = read_file(kFixtures + "text.txt").substr(2000, 6000);
  std::ofstream(work + "/text.txt") << text;
  return work;
}

const std::string kFormats = " --formats int4_probe:g8,int8_probe:g8 --context 16 --max-tokens 120";

}  // namespace

TEST_CASE("probe cli: a folder of step checkpoints, outputs and report") {
  const std::string work = setup("folder");
  // Created out of order: the probe sorts by the number in the name.
  save_tiny(work + "/pythia/step2000", 2, true);
  save_tiny(work + "/pythia/step500", 1, true);
  const Result r = probe(work, "'" + work + "/pythia' --data '" + work + "/text.txt'" + kFormats +
                                   " --out '" + work + "/out'");
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto recs = read_jsonl(work + "/out/probe.jsonl");
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].at("step").as_int() == 500);
  CHECK(recs[1].at("step").as_int() == 2000);
  CHECK(recs[0].at("kind").as_string() == "probe");
  CHECK(recs[0].at("passes").as_int() == 3);
  CHECK(recs[0].at("tokens").as_int() == 7 * 15 + 7);  // 120 tokens: 7 windows of 16, one of 8
  CHECK(recs[0].contains("gap_pct_int4_probe:g8"));
  CHECK(recs[0].contains("mean_kurtosis"));
  CHECK(recs[0].at("layers").size() == 8);
  CHECK(!recs[0].contains("bin_flips_int4_probe:g8"));  // no previous checkpoint
  // Two independent random models: about as many codes flip as not.
  CHECK(recs[1].at("bin_flips_int4_probe:g8").as_double() > 0.5);
  const double fp = recs[1].at("fp_ppl").as_double(), q = recs[1].at("ppl_int4_probe:g8").as_double();
  CHECK(recs[1].at("gap_pct_int4_probe:g8").as_double() ==
        doctest::Approx((q - fp) / fp * 100).epsilon(1e-12));
  // CSV: header + one row per checkpoint x format.
  std::ifstream csv(work + "/out/probe.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  CHECK(lines == 1 + 2 * 2);
  const std::string html = read_file(work + "/out/report.html");
  CHECK(html.find("Quantization gap vs step") != std::string::npos);
  CHECK(html.find("mean excess kurtosis") != std::string::npos);
  CHECK(html.find("<circle") != std::string::npos);  // the scatter's points
  CHECK(html.find("No data to plot") == std::string::npos);
  fs::remove_all(work);
}

TEST_CASE("probe cli: a training run directory and its tokenizer") {
  const std::string work = setup("run");
  const std::string ck = work + "/run/checkpoints/step-00000010";
  save_tiny(ck, 3, false);
  std::ofstream(ck + "/trainer_state.json") << "{\"step\": 10}\n";
  fs::copy_file(kFixtures + "neox/tokenizer.json", work + "/run/tokenizer.json");
  const Result r = probe(work, "'" + work + "/run' --data '" + work + "/text.txt'" + kFormats +
                                   " --layers attention,head --out '" + work + "/out'");
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const auto recs = read_jsonl(work + "/out/probe.jsonl");
  REQUIRE(recs.size() == 1);
  CHECK(recs[0].at("step").as_int() == 10);
  CHECK(recs[0].at("layers").size() == 5);  // 2 x 2 attention + embed_out
  fs::remove_all(work);
}

TEST_CASE("probe cli: errors, one line each, before any work") {
  const std::string work = setup("errors");
  save_tiny(work + "/m", 1, true);
  fs::create_directories(work + "/empty");
  const std::string m = "'" + work + "/m'", data = " --data '" + work + "/text.txt'";
  struct Case {
    std::string args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {m + data + " --formats int4_probe:g8,int5_probe", 1, "'int5_probe' is neither int<bits>"},
      {m + data + " --formats int5_probe", 1, "int8_probe"},  // the list of presets
      {m + data + kFormats + " --layers attention,nothing", 1,
       "layer pattern 'nothing' matches no 2-D weight"},
      {m + kFormats, 2, "missing --data"},
      {m + " --data '" + work + "/absent.txt'" + kFormats, 1, "absent.txt"},
      {"'" + work + "/empty' --data '" + work + "/text.txt'" + kFormats, 1, "not a model directory"},
      {m + data, 1, "cannot quantize"},  // g128 presets on a 16-wide model
      {m + data + " --bogus", 2, "unknown option '--bogus'"},
  };
  for (const Case& c : cases) {
    const Result r = probe(work, c.args + " --out '" + work + "/out'");
    INFO(c.args, " -> ", r.err);
    CHECK(r.code == c.code);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
  CHECK(!fs::exists(work + "/out/probe.jsonl"));  // every error came before any output
  fs::remove_all(work);
}

#endif  // GRIDLOCK_PROBE_BIN
