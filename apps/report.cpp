// gridlock_report: redraws RUN_DIR/report.html from RUN_DIR/metrics.jsonl,
// with the title, summary rows and figures the trainer saved in
// RUN_DIR/report_spec.json (defaults without it). Useful during a run (the
// trainer redraws only at evaluations) and after a crash.
// Rendering and file rules: trainer/report.h.
#include <cstdio>
#include <filesystem>
#include <string>

#include "apps/common.h"
#include "trainer/report.h"

using namespace gl;
using namespace gl::apps;

namespace {

const char* kUsage =
    "usage: gridlock_report RUN_DIR\n"
    "\n"
    "Redraws RUN_DIR/report.html (one self-contained HTML file with SVG plots)\n"
    "from RUN_DIR/metrics.jsonl, using the title, summary and figures recorded in\n"
    "RUN_DIR/report_spec.json when present. Both files are replaced atomically.\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

int run(int argc, char** argv) {
  std::string run_dir;
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    if (!run_dir.empty()) throw UsageError("expected one RUN_DIR, got '" + run_dir + "' and '" + a + "'");
    run_dir = a;
  }
  if (run_dir.empty()) throw UsageError("missing RUN_DIR");
  require_directory(run_dir, "run directory");
  regenerate_report(run_dir);
  std::printf("wrote %s\n", (std::filesystem::path(run_dir) / "report.html").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("gridlock_report", [&] { return run(argc, argv); });
}
