// gridlock_schedule end to end: CSV output for a Pythia schedule, phase
// column, one-line errors and exit codes for bad flags and bad parameters.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace {

struct Result {
  int code;
  std::string out;  // stdout and stderr together
};

Result run_schedule(const std::string& args) {
  const std::string cmd = std::string(GRIDLOCK_SCHEDULE_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_CASE("gridlock_schedule prints step,lr[,phase] CSV") {
  const Result r = run_schedule("--kind pythia_cosine --steps 0:143000:71500 --phase");
  CHECK(r.code == 0);
  CHECK(r.out ==
        "step,lr,phase\n"
        "0,0,warmup\n"
        "71500,0.00030942322772343838,cosine\n"
        "143000,6.0000000000000002e-05,floor\n");
  const Result c = run_schedule("--kind cosine --peak 6e-4 --warmup 1430 --total 143000 --min-ratio 0.1 "
                                "--steps 0:2860:1430");
  CHECK(c.code == 0);
  CHECK(c.out.rfind("step,lr\n0,0\n1430,0.00059999999999999984\n2860,", 0) == 0);
  // A fork: its step 0 is global step 1000.
  const Result f = run_schedule("--kind pythia_cosine --offset 1000 --steps 430:430:1");
  CHECK(f.out == "step,lr\n430,0.00059999999999999995\n");
}

TEST_CASE("gridlock_schedule errors: one line, exit 2 for usage, 1 for a bad schedule") {
  const Result a = run_schedule("--kind cosine --peak abc");
  CHECK(a.code == 2);
  CHECK(a.out == "gridlock_schedule: --peak needs a finite number, got 'abc' (see --help)\n");
  const Result b = run_schedule("--peak 1");
  CHECK(b.code == 2);
  CHECK(b.out.find("missing --kind") != std::string::npos);
  const Result c = run_schedule("--kind cosine --peak 1e-3");
  CHECK(c.code == 1);
  CHECK(c.out.find("schedule cosine: missing parameter total") != std::string::npos);
  CHECK(c.out.find('\n') == c.out.size() - 1);
  const Result d = run_schedule("--kind wsd --peak 1 --total 10 --decay-shape sqrt");
  CHECK(d.code == 1);
  CHECK(d.out.find("decay_shape = 'sqrt'") != std::string::npos);
}
