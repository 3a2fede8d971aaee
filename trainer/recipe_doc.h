// docs/recipes.md, rendered from the recipe schema (trainer/recipe.h) and the
// schedule tables (optim/schedule.h), so the documentation cannot drift from
// the code: tests/recipe checks the committed file against this text.
// Regenerate: build/apps/gridlock_recipe_doc > docs/recipes.md
#pragma once
#include <string>

namespace gl {

std::string render_recipes_md();

}  // namespace gl
