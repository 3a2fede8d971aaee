// Audit and experiment files; see trainer/study_file.h.
#include "trainer/study_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "trainer/recipe.h"  // edit_distance (did-you-mean)

namespace gl {

namespace fs = std::filesystem;

namespace {

std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  std::stringstream ss;
  ss << n;
  return ss.str();
}

std::pair<std::string, std::string> split_key(const std::string& key) {
  const size_t dot = key.find('.');
  GL_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < key.size(),
           "study file: bad key '", key, "' (expected section.key)");
  return {key.substr(0, dot), key.substr(dot + 1)};
}

}  // namespace

StudyFile StudyFile::load(const std::string& path, const std::vector<std::string>& overrides) {
  StudyFile f;
  f.file_ = path;
  f.dir_ = fs::path(path).parent_path().string();
  std::ifstream in(path);
  GL_CHECK(in.good(), path, ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    f.root_ = YAML::Load(ss.str());
  } catch (const YAML::Exception& e) {
    GL_CHECK(false, path, ":", e.mark.line + 1, ": YAML syntax error: ", e.msg);
  }
  GL_CHECK(f.root_.IsMap(), path, ": expected a mapping of sections at the top level");
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    GL_CHECK(eq != std::string::npos && eq > 0, "command line: '", o,
             "' is not key.path=value");
    const std::string key = o.substr(0, eq);
    const auto [sec, k] = split_key(key);
    YAML::Node value;
    try {
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      GL_CHECK(false, "command line: ", key, ": cannot parse '", o.substr(eq + 1), "': ", e.msg);
    }
    if (!f.root_[sec] || !f.root_[sec].IsMap()) f.root_[sec] = YAML::Node(YAML::NodeType::Map);
    YAML::Node section = f.root_[sec];
    section[k] = value;
    f.overridden_.insert(key);
  }
  return f;
}

void StudyFile::check_keys(const std::vector<std::string>& known,
                           const std::set<std::string>& top_level) const {
  std::set<std::string> sections;
  for (const std::string& k : known) sections.insert(split_key(k).first);
  auto suggest = [&](const std::string& bad) {
    std::string best;
    size_t best_d = 4;
    for (const std::string& k : known) {
      const size_t d = edit_distance(bad, k);
      if (d < best_d) best_d = d, best = k;
    }
    return best.empty() ? std::string() : " (did you mean '" + best + "'?)";
  };
  for (const auto& top : root_) {
    const std::string name = top.first.Scalar();
    if (top_level.count(name)) continue;
    GL_CHECK(sections.count(name), where(top.first), ": unknown section '", name, "'");
    GL_CHECK(top.second.IsMap(), where(top.first), ": section '", name, "' must be a mapping");
    for (const auto& kv : top.second) {
      const std::string key = name + "." + kv.first.Scalar();
      bool ok = false;
      for (const std::string& k : known) ok = ok || k == key;
      GL_CHECK(ok, overridden_.count(key) ? "command line" : where(kv.first), ": unknown key '",
               key, "'", suggest(key));
    }
  }
}

YAML::Node StudyFile::node(const std::string& key) const {
  const auto [sec, k] = split_key(key);
  const YAML::Node s = root_[sec];
  if (!s || !s.IsMap()) return YAML::Node();
  const YAML::Node v = s[k];
  return v ? v : YAML::Node();
}

std::string StudyFile::where(const YAML::Node& n) const {
  if (n.Mark().is_null()) return file_;
  return file_ + ":" + std::to_string(n.Mark().line + 1);
}

std::string StudyFile::origin(const std::string& key) const {
  return overridden_.count(key) ? std::string("command line") : where(node(key));
}

bool StudyFile::has(const std::string& key) const {
  const YAML::Node n = node(key);
  return n && !n.IsNull();
}

YAML::Node StudyFile::top(const std::string& key) const {
  const YAML::Node n = root_[key];
  return n ? n : YAML::Node();
}

std::string StudyFile::str(const std::string& key, const std::string& def, bool required) const {
  if (!has(key)) {
    GL_CHECK(!required, file_, ": missing required key '", key, "'");
    return def;
  }
  const YAML::Node n = node(key);
  GL_CHECK(n.IsScalar(), origin(key), ": ", key, ": expected a string, got '", scalar_text(n), "'");
  return n.Scalar();
}

std::string StudyFile::resolve(const std::string& p) const {
  if (p.empty() || fs::path(p).is_absolute() || dir_.empty()) return p;
  return (fs::path(dir_) / p).lexically_normal().string();
}

int64_t StudyFile::integer(const std::string& key, int64_t def, int64_t min_value) const {
  if (!has(key)) return def;
  const YAML::Node n = node(key);
  const std::string text = scalar_text(n);
  int64_t v = 0;
  size_t used = 0;
  bool ok = n.IsScalar();
  try {
    if (ok) v = std::stoll(text, &used);
  } catch (...) {
    ok = false;
  }
  GL_CHECK(ok && used == text.size() && v >= min_value, origin(key), ": ", key,
           ": expected an integer >= ", min_value, ", got '", text, "'");
  return v;
}

bool StudyFile::boolean(const std::string& key, bool def) const {
  if (!has(key)) return def;
  const std::string text = scalar_text(node(key));
  if (text == "true" || text == "yes") return true;
  if (text == "false" || text == "no") return false;
  GL_CHECK(false, origin(key), ": ", key, ": expected true or false, got '", text, "'");
  return def;
}

std::vector<std::string> StudyFile::strings(const std::string& key,
                                            const std::vector<std::string>& def) const {
  if (!has(key)) return def;
  const YAML::Node n = node(key);
  std::vector<std::string> out;
  if (n.IsScalar()) return {n.Scalar()};
  GL_CHECK(n.IsSequence(), origin(key), ": ", key, ": expected a list, got '", scalar_text(n), "'");
  for (const YAML::Node& e : n) {
    GL_CHECK(e.IsScalar(), origin(key), ": ", key, ": expected a list of strings, got '",
             scalar_text(e), "'");
    out.push_back(e.Scalar());
  }
  return out;
}

std::vector<int64_t> StudyFile::integers(const std::string& key,
                                         const std::vector<int64_t>& def) const {
  if (!has(key)) return def;
  std::vector<int64_t> out;
  for (const std::string& s : strings(key)) {
    size_t used = 0;
    int64_t v = 0;
    bool ok = true;
    try {
      v = std::stoll(s, &used);
    } catch (...) {
      ok = false;
    }
    GL_CHECK(ok && used == s.size(), origin(key), ": ", key, ": expected integers, got '", s, "'");
    out.push_back(v);
  }
  return out;
}

}  // namespace gl
