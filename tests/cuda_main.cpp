// Entry point of the CUDA parity tests: without a visible GPU (or in a
// build without CUDA) every case exits with 77, which ctest reports as
// skipped, so a machine without a GPU never counts these as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include "core/device_hooks.h"
#include "tests/testing.h"

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "list-test-cases") || std::strstr(argv[i], "-ltc")) listing = true;
  if (!listing && !gl::testing::have_cuda()) {
    std::printf("SKIPPED: no CUDA device visible%s\n",
                gl::cuda_hooks::built() ? "" : " (built without CUDA)");
    return 77;
  }
  return ctx.run();
}
