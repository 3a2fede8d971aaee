// The small YAML files of the paper reproduction (issue 7): audit files
// (./probe AUDIT.yaml) and experiment files (./experiment EXPERIMENT.yaml).
// They are not training recipes (trainer/recipe.h): each program declares
// the keys it reads, and this class gives them the recipe's error style,
// one line naming the file, the line and the key:
//   a.yaml:4: unknown key 'audit.dta' (did you mean 'audit.data'?)
//   a.yaml:6: audit.batch: expected an integer >= 1, got 'x'
//   command line: audit.batch: expected an integer >= 1, got '0'
// Keys are dotted paths "section.key" into top-level mappings; command-line
// overrides "section.key=value" (value parsed as YAML, so lists are
// [a, b]) replace the file's value. Paths are the caller's business:
// resolve() anchors one at the file's directory (as recipes' base:).
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace gl {

class StudyFile {
 public:
  // Parses `path` and applies `overrides`; errors as above.
  static StudyFile load(const std::string& path, const std::vector<std::string>& overrides = {});

  // Errors on any "section.key" not in `known`, and on a top-level key that
  // is neither a known section nor in `top_level` (e.g. "arms").
  void check_keys(const std::vector<std::string>& known,
                  const std::set<std::string>& top_level = {}) const;

  bool has(const std::string& key) const;
  std::string str(const std::string& key, const std::string& def = "", bool required = false) const;
  int64_t integer(const std::string& key, int64_t def, int64_t min_value) const;
  bool boolean(const std::string& key, bool def) const;
  // A list of scalars (a single scalar is a list of one).
  std::vector<std::string> strings(const std::string& key,
                                   const std::vector<std::string>& def = {}) const;
  std::vector<int64_t> integers(const std::string& key, const std::vector<int64_t>& def = {}) const;

  // The raw node of a top-level key (e.g. "arms"), null if absent, and
  // "FILE:LINE" of a node for the caller's own errors.
  YAML::Node top(const std::string& key) const;
  std::string where(const YAML::Node& n) const;
  // Resolves a path written in the file (relative: against its directory).
  std::string resolve(const std::string& p) const;
  const std::string& file() const { return file_; }

 private:
  std::string file_, dir_;
  YAML::Node root_;
  std::set<std::string> overridden_;
  YAML::Node node(const std::string& key) const;  // null if absent
  std::string origin(const std::string& key) const;
};

}  // namespace gl
