// Entry point of every test binary.
//
// ctest runs each case alone (--test-case=NAME). A name the filter fails to
// match would run zero cases and "pass", so a run in which no case passed
// the filters fails instead.
//
// test_cuda is built from this file with GRIDLOCK_TEST_NEEDS_GPU=1: without
// a visible GPU (or in a build without CUDA) it exits 77, which ctest
// reports as skipped, so a machine without a GPU never counts those tests
// as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include "core/device_hooks.h"

namespace {

unsigned g_cases_run = 0;

struct CountListener : doctest::IReporter {
  explicit CountListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    g_cases_run = s.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("count", 1, CountListener);

bool listing_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strstr(argv[i], "list-test-cases") || std::strstr(argv[i], "-ltc")) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
#if GRIDLOCK_TEST_NEEDS_GPU
  if (!listing_only(argc, argv) && gl::cuda_hooks::device_count() == 0) {
    std::printf("SKIPPED: no CUDA device visible%s\n",
                gl::cuda_hooks::built() ? "" : " (built without CUDA)");
    return 77;
  }
#else
  (void)listing_only;
#endif
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit()) return rc;  // --list-test-cases, --help, ...
  if (rc == 0 && g_cases_run == 0) {
    std::fprintf(stderr, "no test case matched the filter: nothing was tested\n");
    return 1;
  }
  return rc;
}
