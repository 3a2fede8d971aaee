// gridlock_recipe_doc: prints docs/recipes.md, rendered from the recipe schema
// (trainer/recipe_doc.h). Usage: gridlock_recipe_doc > docs/recipes.md
#include <cstdio>

#include "trainer/recipe_doc.h"

int main() {
  const std::string md = gl::render_recipes_md();
  std::fwrite(md.data(), 1, md.size(), stdout);
  return 0;
}
