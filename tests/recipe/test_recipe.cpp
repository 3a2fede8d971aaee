// Recipes (trainer/recipe.h): defaults, every error kind with its exact
// one-line message (file, line, key), base: chains and cycles, command-line
// overrides, schedule validation through make_schedule, recipes/tiny.yaml,
// the resolved dump round trip, and docs/recipes.md against the schema.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "trainer/recipe.h"
#include "trainer/recipe_doc.h"

using namespace gl;
namespace fs = std::filesystem;

namespace {

const std::string kName = "run:\n  name: x\n";

Recipe parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return Recipe::parse(text, "r.yaml", overrides);
}

// The error message of parsing `text`, or "" when it loads.
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse(text, overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string load_error(const std::string& path) {
  try {
    Recipe::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A fresh directory for files of one test case.
struct TempDir {
  fs::path dir;
  explicit TempDir(const std::string& name) {
    dir = fs::temp_directory_path() / ("gridlock_recipe_" + std::to_string(getpid()) + "_" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("recipe: defaults and origins") {
  const Recipe r = parse(kName);
  CHECK(r.get_string("run.name") == "x");
  CHECK(r.origin("run.name") == "r.yaml:2");
  CHECK(r.origin("optim.lr") == "default");
  CHECK(r.get_int("run.seed") == 1234);
  CHECK(r.get_string("run.device") == "cpu");
  CHECK(r.get_float("optim.lr") == 6e-4);
  CHECK(r.get_floats("optim.betas") == std::vector<double>{0.9, 0.95});
  CHECK(r.get_float("optim.eps") == 1e-8);
  CHECK(r.get_bool("optim.adaptive") == false);
  CHECK(r.get_strings("data.paths").empty());
  CHECK(r.get_int("train.steps") == 1000);
  CHECK(!r.has_averaging());
  // Schedule: cosine, peak from optim.lr, total from train.steps.
  const ScheduleSpec s = r.schedule_spec();
  CHECK(s.kind == "cosine");
  CHECK(s.params.at("peak") == 6e-4);
  CHECK(s.params.at("total") == 1000);
  CHECK(s.params.size() == 2);
  const ModelConfig c = r.model_config();
  CHECK(c.hidden_size == 128);  // pythia-14m
  // Every schema default is accepted by its own type rules (defaults() parses them).
  for (const auto& k : recipe_schema()) {
    if (k.required || k.type == RecipeType::MAP) continue;
    CHECK_MESSAGE(r.origin(k.path) == "default", k.path);
  }
}

TEST_CASE("recipe: typed accessors refuse the wrong type or key") {
  const Recipe r = parse(kName);
  CHECK_THROWS_WITH_AS(r.get_int("optim.lr"), doctest::Contains("recipe: optim.lr is a float, not an int"), Error);
  CHECK_THROWS_WITH_AS(r.get_float("optim.lrr"), doctest::Contains("recipe: unknown key 'optim.lrr'"), Error);
}

TEST_CASE("recipe: missing required key") {
  CHECK(error_of("optim:\n  lr: 0.1\n") ==
        "r.yaml: missing required key 'run.name' (run name; the run directory is out_dir/name)");
}

TEST_CASE("recipe: unknown keys with suggestions") {
  CHECK(error_of(kName + "optim:\n  lrr: 0.1\n") == "r.yaml:4: unknown key 'optim.lrr' (did you mean 'optim.lr'?)");
  CHECK(error_of(kName + "optm:\n  lr: 0.1\n") == "r.yaml:3: unknown key 'optm' (did you mean 'optim'?)");
  CHECK(error_of(kName + "zzz: 1\n") == "r.yaml:3: unknown key 'zzz'");
  CHECK(error_of(kName + "model:\n  warmup_steps: 3\n") == "r.yaml:4: unknown key 'model.warmup_steps'");
  CHECK(error_of(kName + "schedule:\n  warmup: 3\n") == "r.yaml:4: unknown key 'schedule.warmup'");
  CHECK(error_of(kName + "optim: 3\n") == "r.yaml:3: 'optim' is a section: expected a map of keys, got '3'");
  CHECK(error_of(kName + "optim:\n  lr: 0.1\n  lr: 0.2\n") == "r.yaml:5: duplicate key 'optim.lr'");
}

TEST_CASE("recipe: wrong types") {
  CHECK(error_of(kName + "optim:\n  lr: abc\n") == "r.yaml:4: optim.lr: expected a float, got 'abc'");
  CHECK(error_of(kName + "optim:\n  lr: [1]\n") == "r.yaml:4: optim.lr: expected a float, got 'a list'");
  CHECK(error_of(kName + "optim:\n  lr:\n") == "r.yaml:4: optim.lr: expected a float, got ''");
  CHECK(error_of(kName + "train:\n  steps: 1.5\n") == "r.yaml:4: train.steps: expected an int, got '1.5'");
  CHECK(error_of(kName + "optim:\n  adaptive: maybe\n") ==
        "r.yaml:4: optim.adaptive: expected a bool (true or false), got 'maybe'");
  CHECK(error_of(kName + "optim:\n  name: adam\n") ==
        "r.yaml:4: optim.name: expected one of adamw, sgd, sam, muon, got 'adam'");
  CHECK(error_of(kName + "optim:\n  betas: [0.9, x]\n") == "r.yaml:4: optim.betas[1]: expected a float, got 'x'");
  CHECK(error_of(kName + "optim:\n  betas: [0.9]\n") ==
        "r.yaml:4: optim.betas: expected 2 values (beta1, beta2), got 1");
  CHECK(error_of(kName + "data:\n  paths: {a: 1}\n") ==
        "r.yaml:4: data.paths: expected a list of strings, got 'a map'");
  CHECK(error_of(kName + "schedule:\n  params: 3\n") == "r.yaml:4: schedule.params: expected a map, got '3'");
}

TEST_CASE("recipe: out of range") {
  CHECK(error_of(kName + "optim:\n  lr: -1\n") == "r.yaml:4: optim.lr = -1 is out of range [0, inf)");
  CHECK(error_of(kName + "optim:\n  eps: 0\n") == "r.yaml:4: optim.eps = 0 is out of range (0, inf)");
  CHECK(error_of(kName + "averaging:\n  decay: 1\n") == "r.yaml:4: averaging.decay = 1 is out of range [0, 1)");
  CHECK(error_of(kName + "optim:\n  betas: [0.9, 1.5]\n") ==
        "r.yaml:4: optim.betas[1] = 1.5 is out of range [0, 1)");
  CHECK(error_of(kName + "train:\n  steps: 0\n") == "r.yaml:4: train.steps = 0 is out of range [1, inf)");
}

TEST_CASE("recipe: invalid YAML names the file and line") {
  const std::string e = error_of(kName + "optim:\n  lr: [1, 2\n");
  CHECK(e.rfind("r.yaml:", 0) == 0);
  CHECK(e.find("invalid YAML") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
  CHECK(error_of("- a\n- b\n") == "r.yaml:1: a recipe must be a map of sections");
}

TEST_CASE("recipe: cross-key checks") {
  CHECK(error_of(kName + "data:\n  kind: shards\n") == "r.yaml:4: data.paths: required when data.kind is shards");
  CHECK(parse(kName + "data:\n  kind: shards\n  paths: a.bin\n").get_strings("data.paths") ==
        std::vector<std::string>{"a.bin"});
  CHECK(error_of(kName + "model:\n  num_heads: 3\n") ==
        "r.yaml:4: model: hidden size 128 is not divisible by the number of heads 3");
  CHECK(error_of(kName + "model:\n  hf_dir: /m\n  num_layers: 2\n") ==
        "r.yaml:5: model.num_layers: size overrides need model.preset (model.hf_dir brings its own config.json)");
}

TEST_CASE("recipe: schedule validated by make_schedule") {
  // Kind is an enum of schedule_kinds().
  std::string kinds;
  for (const auto& k : schedule_kinds()) kinds += (kinds.empty() ? "" : ", ") + k;
  CHECK(error_of(kName + "schedule:\n  kind: cosin\n") ==
        "r.yaml:4: schedule.kind: expected one of " + kinds + ", got 'cosin'");
  // Missing parameter: reported at schedule.kind.
  CHECK(error_of(kName + "schedule:\n  kind: sgdr\n") ==
        "r.yaml:4: schedule sgdr: missing parameter t0 (length of the first cycle T_0, >= 1)");
  // Unknown parameter and non-integer: reported at the parameter's own line.
  const std::string unknown = error_of(kName + "schedule:\n  kind: cosine\n  params:\n    warmupp: 3\n");
  CHECK(unknown.rfind("r.yaml:6: schedule cosine: unknown parameter 'warmupp' (accepted: ", 0) == 0);
  CHECK(error_of(kName + "schedule:\n  params:\n    min_ratio: 0.5\n    warmup: 2.5\n") ==
        "r.yaml:6: schedule cosine: parameter warmup = 2.5 must be an integer");
  // Range checks of the schedule itself (peak comes from optim.lr).
  CHECK(error_of(kName + "optim:\n  lr: 0\n") == "r.yaml:4: schedule cosine: peak = 0 must be > 0");
  // String options.
  const Recipe w = parse(kName + "schedule:\n  kind: wsd\n  params:\n    decay_shape: 1-sqrt\n    warmup: 10\n");
  CHECK(w.schedule_spec().options.at("decay_shape") == "1-sqrt");
  CHECK(w.schedule_spec().params.at("total") == 1000);
  CHECK(make_schedule(w.schedule_spec())->lr(500) == doctest::Approx(6e-4));
  CHECK(error_of(kName + "schedule:\n  kind: wsd\n  params:\n    decay_shape: square\n") ==
        "r.yaml:6: schedule wsd: option decay_shape = 'square' is not one of linear, cosine, 1-sqrt");
  // An explicit peak wins over optim.lr.
  const Recipe p = parse(kName + "schedule:\n  kind: constant\n  params:\n    peak: 0.5\n");
  CHECK(p.schedule_spec().params.at("peak") == 0.5);
  // oli: the base kind's peak/total are filled too.
  const Recipe o = parse(kName + "schedule:\n  kind: oli\n  params:\n    base: cosine\n    amplitude: 0.5\n"
                                 "    period: 100\n    hot_fraction: 0.25\n");
  CHECK(o.schedule_spec().params.at("peak") == 6e-4);
  CHECK(o.schedule_spec().params.at("total") == 1000);
}

TEST_CASE("recipe: base chains, relative paths and overrides of the base") {
  TempDir t("chain");
  t.write("a.yaml", "run:\n  name: a\n  seed: 7\noptim:\n  lr: 0.1\nschedule:\n  kind: sgdr\n  params:\n"
                    "    t0: 10\n    eta_min: 0.001\n");
  t.write("b.yaml", "base: a.yaml\noptim:\n  lr: 0.2\nschedule:\n  params:\n    t0: 20\n");
  const std::string c = t.write("sub/c.yaml", "base: ../b.yaml\nrun:\n  name: c\ntrain:\n  steps: 20\n");
  const Recipe r = Recipe::load(c);
  CHECK(r.get_string("run.name") == "c");
  CHECK(r.get_int("run.seed") == 7);
  CHECK(r.get_float("optim.lr") == 0.2);
  CHECK(r.get_int("train.steps") == 20);
  CHECK(r.origin("run.seed") == (t.dir / "a.yaml").string() + ":3");
  CHECK(r.origin("optim.lr") == (t.dir / "b.yaml").string() + ":3");
  const ScheduleSpec s = r.schedule_spec();
  CHECK(s.kind == "sgdr");
  CHECK(s.params.at("t0") == 20);          // child overrides one param
  CHECK(s.params.at("eta_min") == 0.001);  // the rest is inherited

  // A child that changes the kind drops the params of the base's kind.
  const std::string d = t.write("d.yaml", "base: a.yaml\nschedule:\n  kind: cosine\n");
  const Recipe rd = Recipe::load(d);
  CHECK(rd.schedule_spec().params.count("t0") == 0);
  CHECK(rd.schedule_spec().params.at("total") == 1000);

  // Errors inside a base name the base file.
  const std::string e = t.write("e.yaml", "base: bad.yaml\n");
  t.write("bad.yaml", kName + "optim:\n  lr: abc\n");
  CHECK(load_error(e) == (t.dir / "bad.yaml").string() + ":4: optim.lr: expected a float, got 'abc'");
}

TEST_CASE("recipe: base cycles and missing files") {
  TempDir t("cycle");
  const std::string x = t.write("x.yaml", "base: y.yaml\n" + kName);
  t.write("y.yaml", "# y\nbase: x.yaml\n");
  const std::string X = (t.dir / "x.yaml").string(), Y = (t.dir / "y.yaml").string();
  CHECK(load_error(x) == Y + ":2: base: cycle " + X + " -> " + Y + " -> " + X);
  const std::string self = t.write("self.yaml", "base: self.yaml\n");
  CHECK(load_error(self) == self + ":1: base: cycle " + self + " -> " + self);
  const std::string m = t.write("m.yaml", kName + "base: nope.yaml\n");
  CHECK(load_error(m) == m + ":3: base: cannot open '" + (t.dir / "nope.yaml").string() + "'");
  CHECK(load_error((t.dir / "absent.yaml").string()) ==
        "cannot open recipe '" + (t.dir / "absent.yaml").string() + "'");
  CHECK(load_error(t.write("n.yaml", "base: [a]\n")) ==
        (t.dir / "n.yaml").string() + ":1: base: expected a file name, got 'a list'");
}

TEST_CASE("recipe: command-line overrides") {
  const Recipe r = parse(kName, {"train.steps=100", "optim.betas=0.8,0.9", "data.paths=[a.bin, b.bin]",
                                 "schedule.params.warmup=5", "run.name=y", "optim.adaptive=true"});
  CHECK(r.get_int("train.steps") == 100);
  CHECK(r.origin("train.steps") == "command line");
  CHECK(r.get_floats("optim.betas") == std::vector<double>{0.8, 0.9});
  CHECK(r.get_strings("data.paths") == std::vector<std::string>{"a.bin", "b.bin"});
  CHECK(r.get_string("run.name") == "y");
  CHECK(r.get_bool("optim.adaptive"));
  CHECK(r.schedule_spec().params.at("warmup") == 5);
  CHECK(r.schedule_spec().params.at("total") == 100);
  // An override can supply a required key.
  CHECK(parse("", {"run.name=z"}).get_string("run.name") == "z");
  // Kind change on the command line drops the file's params; params given with it stay.
  const Recipe k = parse(kName + "schedule:\n  kind: sgdr\n  params:\n    t0: 10\n",
                         {"schedule.kind=linear_warmup", "schedule.params.warmup=3"});
  CHECK(k.schedule_spec().params.count("t0") == 0);
  CHECK(k.schedule_spec().params.at("warmup") == 3);
  CHECK(parse(kName, {"schedule.params={warmup: 7}"}).schedule_spec().params.at("warmup") == 7);

  CHECK(error_of(kName, {"optim.lrr=1"}) == "command line: unknown key 'optim.lrr' (did you mean 'optim.lr'?)");
  CHECK(error_of(kName, {"optim.lr=abc"}) == "command line: optim.lr: expected a float, got 'abc'");
  CHECK(error_of(kName, {"optim.lr=-1"}) == "command line: optim.lr = -1 is out of range [0, inf)");
  CHECK(error_of(kName, {"steps"}) == "command line: 'steps' is not key.path=value");
  CHECK(error_of(kName, {"schedule.kind=sgdr"}) ==
        "command line: schedule sgdr: missing parameter t0 (length of the first cycle T_0, >= 1)");
  CHECK(error_of(kName, {"schedule.params.warmup=x"}) ==
        "command line: schedule cosine: unknown option 'warmup'");
}

TEST_CASE("recipe: resolved dump loads back to the same recipe") {
  const Recipe r = parse(kName + "data:\n  kind: shards\n  paths: [\"a b.bin\", 'q\"uote']\n"
                                 "schedule:\n  kind: wsd\n  params:\n    decay_shape: 1-sqrt\n",
                         {"optim.lr=3e-4", "averaging.kind=ema"});
  const std::string y = r.to_yaml();
  const Recipe back = Recipe::parse(y, "resolved.yaml");
  CHECK(back.to_yaml() == y);
  CHECK(back.get_float("optim.lr") == 3e-4);
  CHECK(back.get_strings("data.paths") == std::vector<std::string>{"a b.bin", "q\"uote"});
  CHECK(back.schedule_spec().options.at("decay_shape") == "1-sqrt");
  CHECK(back.averaging_spec().kind == "ema");
}

TEST_CASE("recipe: recipes/tiny.yaml loads") {
  const Recipe r = Recipe::load(std::string(GRIDLOCK_SOURCE_DIR) + "/recipes/tiny.yaml");
  const ModelConfig c = r.model_config();
  CHECK(c.num_layers == 4);
  CHECK(c.hidden_size == 256);
  CHECK(c.num_heads == 4);
  CHECK(c.vocab_size == 8192);
  CHECK(r.get_int("data.seq_len") == 256);
  CHECK(r.get_int("data.batch_size") == 8);
  CHECK(r.get_string("data.kind") == "corpus");
  CHECK(make_schedule(r.schedule_spec())->lr(0) == 0.0);  // warmup starts at 0
}

TEST_CASE("recipe: edit distance") {
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("optim.lrr", "optim.lr") == 1);
  CHECK(edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("recipe: docs/recipes.md is generated from the schema") {
  const std::string path = std::string(GRIDLOCK_SOURCE_DIR) + "/docs/recipes.md";
  const std::string md = render_recipes_md();
  for (const auto& k : recipe_schema()) CHECK_MESSAGE(md.find("`" + k.path + "`") != std::string::npos, k.path);
  for (const auto& k : schedule_kinds()) CHECK(md.find("### " + k + "\n") != std::string::npos);
  const bool same = read_file(path) == md;
  CHECK_MESSAGE(same, "docs/recipes.md is out of date; regenerate it from the source root with\n"
                      "  <build dir>/apps/gridlock_recipe_doc > docs/recipes.md");
}
