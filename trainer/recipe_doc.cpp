// Renders docs/recipes.md (see recipe_doc.h).
#include "trainer/recipe_doc.h"

#include <charconv>
#include <sstream>

#include "optim/schedule.h"
#include "trainer/recipe.h"

namespace gl {

namespace {

// Markdown table cells: a literal '|' would split the cell.
std::string cell(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

std::string code(const std::string& s) { return s.empty() ? "" : "`" + s + "`"; }

std::string num(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

std::string render_recipes_md() {
  std::ostringstream os;
  os << "# Recipes\n\n"
        "<!-- Generated from trainer/recipe.cpp (recipe_schema) and optim/schedule.cpp by\n"
        "     gridlock_recipe_doc; do not edit. Regenerate with:\n"
        "     build/apps/gridlock_recipe_doc > docs/recipes.md -->\n\n"
        "A recipe is a YAML file of sections (`run`, `model`, `data`, `optim`, `dist`,\n"
        "`schedule`, `train`, `averaging`, `quant`) holding the keys below. Every key has a\n"
        "default except those marked *required*. `./train RECIPE.yaml [key.path=value ...]`\n"
        "loads the recipe, applies the command-line overrides and validates everything\n"
        "before any work.\n\n"
        "- `base: other.yaml` (top level, relative to the including file) loads another recipe\n"
        "  first; the including file's keys override it. Chains are allowed, cycles are an error.\n"
        "- `key.path=value` on the command line overrides any key, with the same type rules;\n"
        "  lists are `a,b,c` or `[a, b, c]`; schedule parameters are `schedule.params.NAME=value`.\n"
        "- Errors are one line naming the file, the line and the key:\n"
        "  `r.yaml:7: unknown key 'optim.lrr' (did you mean 'optim.lr'?)`,\n"
        "  `r.yaml:7: optim.lr: expected a float, got 'abc'`,\n"
        "  `r.yaml:7: optim.lr = -1 is out of range [0, inf)`; overrides say `command line:`.\n"
        "- The resolved recipe (every key, defaults included) is written to the run directory\n"
        "  as `recipe.resolved.yaml`; it loads back to the same recipe.\n\n"
        "Ranges: `[a, b]` includes both ends, `(a, b)` excludes them.\n";
  std::string section;
  for (const auto& k : recipe_schema()) {
    const std::string sec = k.path.substr(0, k.path.find('.'));
    if (sec != section) {
      os << "\n## " << sec << "\n\n| key | type | default | range | description |\n|---|---|---|---|---|\n";
      section = sec;
    }
    os << "| `" << k.path << "` | " << cell(recipe_type_name(k)) << " | "
       << (k.required ? std::string("*required*") : code(cell(k.def))) << " | " << recipe_range_text(k) << " | "
       << cell(k.doc) << " |\n";
  }

  os << "\n## Schedule kinds\n\n"
        "`schedule.kind` picks one of these; `schedule.params` holds its parameters (numbers) and\n"
        "options (strings), checked by `make_schedule` (optim/schedule.h, which documents the\n"
        "formulas). `peak` defaults to `optim.lr` and `total` to `train.steps` when the kind has\n"
        "them. A recipe layer (a file, or the command line) that changes `schedule.kind` drops\n"
        "the schedule parameters inherited from its base. Every kind accepts `offset`.\n";
  for (const auto& kind : schedule_kinds()) {
    os << "\n### " << kind << "\n\n| parameter | type | default | description |\n|---|---|---|---|\n";
    for (const auto& p : schedule_params(kind))
      os << "| `" << p.name << "` | " << (p.integer ? "int" : "float") << " | "
         << (p.required ? std::string("*required*") : code(num(p.default_value))) << " | " << cell(p.doc) << " |\n";
    for (const auto& o : schedule_options(kind)) {
      std::string vals;
      for (const auto& v : o.values) vals += (vals.empty() ? "" : ", ") + v;
      os << "| `" << o.name << "` | one of: " << cell(vals) << " | " << code(o.values.front()) << " | "
         << cell(o.doc) << " |\n";
    }
  }
  return os.str();
}

}  // namespace gl
