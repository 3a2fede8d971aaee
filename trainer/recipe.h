// Training recipes: YAML files validated against ONE schema table.
//
// recipe_schema() is the single source of truth: loading, type and range
// checks, defaults, the resolved dump (to_yaml) and docs/recipes.md
// (trainer/recipe_doc.h) all iterate it. The LR schedule is the exception
// that proves the rule: schedule.kind and schedule.params are checked by
// make_schedule() itself (optim/schedule.h), so schedule parameters have one
// source of truth too.
//
// Loading (Recipe::load): every file is parsed with yaml-cpp; a top-level
// `base: other.yaml` (relative to the including file) is loaded first and the
// file's own keys override it; chains are allowed, cycles are an error.
// Command-line overrides `key.path=value` come last. All checks run before
// the caller does any work, and every failure is a gl::Error with ONE line:
//   FILE:LINE: unknown key 'optim.lrr' (did you mean 'optim.lr'?)
//   FILE:LINE: optim.lr: expected a float, got 'abc'
//   FILE:LINE: optim.lr = -1 is out of range [0, inf)
//   command line: ...            (for an override)
// LINE is 1-based, the line of the offending key.
//
// Schedule params merge key by key across base/child/overrides, except that
// a layer (one file, or the whole command line) that changes schedule.kind
// drops the params inherited from earlier layers (they belong to the old kind).
// schedule.params.peak defaults to optim.lr when the kind accepts a peak.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "models/model.h"
#include "optim/averaging.h"
#include "optim/schedule.h"

namespace gl {

enum class RecipeType { INT, FLOAT, BOOL, STRING, ENUM, STRINGS, FLOATS, MAP };

// One row of the schema. `def` is the default written as YAML text and read
// with the same parser as a file (so defaults obey the same type rules).
struct RecipeKey {
  std::string path;  // "optim.lr": section.key
  RecipeType type;
  std::string def;   // YAML text; ignored when required
  bool required = false;
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false, max_open = false;  // exclusive bounds
  std::vector<std::string> values;          // ENUM: allowed values
  std::string doc;                          // one line
};

const std::vector<RecipeKey>& recipe_schema();
std::vector<std::string> recipe_sections();  // in table order
std::string recipe_type_name(const RecipeKey& k);   // "float", "one of a|b"
std::string recipe_range_text(const RecipeKey& k);  // "(0, inf)" or "" when unbounded

// A typed value plus where it came from ("FILE:LINE", "command line", "default").
struct RecipeValue {
  RecipeType type = RecipeType::STRING;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;                  // STRING and ENUM
  std::vector<std::string> strs;  // STRINGS
  std::vector<double> floats;     // FLOATS
  std::string origin;
};

// One schedule parameter: a number (-> ScheduleSpec::params) or a string
// (-> ScheduleSpec::options).
struct RecipeScheduleParam {
  bool is_number = true;
  double number = 0;
  std::string text;
  std::string origin;
  std::string layer;  // which file / "command line" set it
};

class Recipe {
 public:
  // Loads `path` (with its base chain), applies `overrides` ("key=value"), validates.
  static Recipe load(const std::string& path, const std::vector<std::string>& overrides = {});
  // The same from YAML text; `file` names it in errors and anchors relative base: paths.
  static Recipe parse(const std::string& yaml, const std::string& file,
                      const std::vector<std::string>& overrides = {});

  // Typed access; the key must be in the schema with that type (else Error).
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;  // STRING and ENUM
  const std::vector<std::string>& get_strings(const std::string& key) const;
  const std::vector<double>& get_floats(const std::string& key) const;
  const std::string& origin(const std::string& key) const;

  // The derived specs (already validated by load/parse).
  ScheduleSpec schedule_spec() const;    // peak filled from optim.lr when absent
  AveragingSpec averaging_spec() const;  // kind "none" -> use has_averaging()
  bool has_averaging() const { return get_string("averaging.kind") != "none"; }
  // preset + size overrides + norm; for hf_dir recipes the trainer reads config.json instead.
  ModelConfig model_config() const;
  const std::map<std::string, RecipeScheduleParam>& schedule_params() const { return sched_; }

  // Every key (defaults included) as YAML that loads back to the same recipe
  // (recipe.resolved.yaml in run directories).
  std::string to_yaml() const;
  const std::string& file() const { return file_; }

 private:
  friend struct RecipeLoader;
  const RecipeValue& at(const std::string& key, RecipeType t) const;
  void validate() const;

  std::string file_;
  std::map<std::string, RecipeValue> values_;
  std::map<std::string, RecipeScheduleParam> sched_;
};

// Levenshtein distance (for "did you mean" suggestions).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace gl
