// gridlock_train: the program behind ./train.
//
//   ./train [RECIPE.yaml] [key.path=value ...] [--resume] [--print-recipe]
//
// With no recipe it runs the embedded default, recipes/tiny.yaml, compiled
// into the binary (default_recipe.h is generated from it by CMake, so the
// two cannot drift). The recipe is loaded and validated completely before
// any work (trainer/recipe.h); --print-recipe prints the resolved recipe
// and exits. --resume is train.resume=true. Under mpirun every process runs
// this same command (dist/comm.h); rank 0 prints and writes files.
//
// Exit codes: 0 the run finished; 1 an error (one line on stderr); 2 a
// usage error; 75 (EX_TEMPFAIL) stopped by SIGINT/SIGTERM after saving a
// checkpoint of the step in progress: rerun with --resume to continue.
// GRIDLOCK_FAULT injects faults for the reliability tests (trainer/trainer.h,
// docs/reliability.md).
#include <cstdio>
#include <string>
#include <vector>

#include "apps/common.h"
#include "default_recipe.h"
#include "dist/comm.h"
#include "trainer/trainer.h"

using namespace gl;

namespace {

const char* kUsage =
    "usage: ./train [RECIPE.yaml] [key.path=value ...] [--resume] [--print-recipe]\n"
    "  no RECIPE: the embedded default (recipes/tiny.yaml); keys: docs/recipes.md\n"
    "  exit codes: 0 done, 1 error, 2 usage, 75 stopped by SIGINT/SIGTERM (checkpoint saved; add --resume)";

int train_main(int argc, char** argv) {
  std::string recipe_path;
  std::vector<std::string> overrides;
  bool print_recipe = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf("%s\n", kUsage);
      return 0;
    } else if (a == "--resume") {
      overrides.push_back("train.resume=true");
    } else if (a == "--print-recipe") {
      print_recipe = true;
    } else if (a.rfind("--", 0) == 0) {
      throw apps::UsageError("unknown flag '" + a + "'");
    } else if (a.find('=') != std::string::npos) {
      overrides.push_back(a);
    } else if (recipe_path.empty()) {
      recipe_path = a;
    } else {
      throw apps::UsageError("more than one recipe given ('" + recipe_path + "' and '" + a + "')");
    }
  }
  const Recipe recipe = recipe_path.empty()
                            ? Recipe::parse(kDefaultRecipeYaml, "recipes/tiny.yaml (embedded default)", overrides)
                            : Recipe::load(recipe_path, overrides);
  if (print_recipe) {
    if (world().rank() == 0) std::printf("%s", recipe.to_yaml().c_str());
    return 0;
  }
  const TrainResult r = run_training(recipe);
  if (r.stop_signal) return 75;  // EX_TEMPFAIL: a checkpoint is saved, --resume continues
  return r.interrupted ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return apps::run_program("gridlock_train", [&] {
    if (launcher_world_size() <= 1) return train_main(argc, argv);
    // Several ranks: an error only this rank saw (a file it cannot write)
    // would leave the others waiting in a collective forever, so it ends
    // the whole job (dist/comm.h).
    try {
      return train_main(argc, argv);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gridlock_train: rank %d: %s\n", world().rank(), e.what());
      std::fflush(stderr);
      abort_world(1);
    }
  });
}
