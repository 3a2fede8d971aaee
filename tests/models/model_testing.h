// Helpers for the model tests: where the committed Hugging Face fixtures
// are (tests/reference/fixtures/models/<name>/, written by
// tests/reference/make_model_fixtures.py) and a self-removing temp dir.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace gl::testing {

// The three fixture models: rotary_pct 0.25 + parallel residual (vocab 203),
// sequential residual + rotary_pct 0.5 + eps 1e-3 (vocab 101), GPT-2.
inline const char* const kModelFixtures[] = {"neox_parallel", "neox_sequential", "gpt2"};

inline std::string model_fixture_dir(const std::string& name) {
  // GRIDLOCK_MODELS_FIXTURES lets the reference check point at another copy.
  const char* env = std::getenv("GRIDLOCK_MODELS_FIXTURES");
  const std::string root =
      env && *env ? env : std::string(GRIDLOCK_SOURCE_DIR) + "/tests/reference/fixtures/models";
  return root + "/" + name;
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("gridlock_models_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace gl::testing
