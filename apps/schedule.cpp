// gridlock_schedule: prints a learning-rate schedule as CSV "step,lr[,phase]"
// without training, e.g. to plot it or to check a recipe's schedule:
//   gridlock_schedule --kind pythia_cosine --steps 0:143000:1000 --phase
// Every schedule parameter is a flag "--name value" (dashes or underscores);
// the kinds and their parameter tables come from optim/schedule.h, so this
// program's --help cannot drift from what the trainer accepts.
#include <algorithm>
#include <cstdio>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "apps/common.h"
#include "core/error.h"
#include "optim/schedule.h"

using namespace gl;
using namespace gl::apps;

namespace {

const char* kUsage =
    "usage: gridlock_schedule --kind KIND [--PARAM VALUE ...] [--steps A:B:S] [--phase]\n"
    "\n"
    "Prints the schedule as CSV: a header line, then \"step,lr\" (\"step,lr,phase\" with\n"
    "--phase) for steps A, A+S, ... <= B (default 0:total:max(1,total/100), or 0:1000:10\n"
    "when the kind has no total). Steps are the schedule's own steps: with --offset s\n"
    "its step k is global step s + k (a fork from a checkpoint at step s).\n"
    "exit status: 0 ok, 1 invalid schedule, 2 usage error\n"
    "\n"
    "kinds and parameters (* = required):\n";

struct Options {
  ScheduleSpec spec;
  int64_t first = 0, last = -1, stride = 0;
  bool phase = false;
};

// "min_ratio" -> "min-ratio": flags are written with dashes (both are accepted).
std::string flag_name(std::string name) {
  for (char& ch : name) ch = ch == '_' ? '-' : ch;
  return name;
}

std::string usage_text() {
  std::string s = kUsage;
  for (const auto& kind : schedule_kinds()) {
    s += "  " + kind + "\n";
    for (const auto& p : schedule_params(kind)) {
      char def[64];
      std::snprintf(def, sizeof def, "%g", p.default_value);
      s += "    --" + flag_name(p.name) + (p.required ? " *" : std::string(" (default ") + def + ")") + "  " +
           p.doc + "\n";
    }
    for (const auto& o : schedule_options(kind)) {
      s += "    --" + flag_name(o.name) + " {";
      for (size_t i = 0; i < o.values.size(); ++i) s += (i ? "|" : "") + o.values[i];
      s += "} (default " + o.values.front() + ")  " + o.doc + "\n";
    }
  }
  return s;
}

// "A:B:S" -> first, last, stride.
void parse_steps(const std::string& text, Options* o) {
  const size_t c1 = text.find(':'), c2 = c1 == std::string::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string::npos) throw UsageError("--steps expects A:B:S, got '" + text + "'");
  o->first = parse_int("--steps", text.substr(0, c1), 0);
  o->last = parse_int("--steps", text.substr(c1 + 1, c2 - c1 - 1), o->first);
  o->stride = parse_int("--steps", text.substr(c2 + 1), 1);
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::set<std::string> option_names;  // string-valued schedule options of any kind
  for (const auto& kind : schedule_kinds())
    for (const auto& opt : schedule_options(kind)) option_names.insert(opt.name);
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(usage_text().c_str(), stdout);
      std::exit(0);
    } else if (a == "--kind") o.spec.kind = args.value(a);
    else if (a == "--steps") parse_steps(args.value(a), &o);
    else if (a == "--phase") args.no_value(a), o.phase = true;
    else if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string name = a.substr(2);
      for (char& ch : name) ch = ch == '-' ? '_' : ch;
      if (option_names.count(name)) o.spec.options[name] = args.value(a);
      else o.spec.params[name] = parse_double(a, args.value(a));
    } else throw UsageError("unexpected argument '" + a + "'");
  }
  if (o.spec.kind.empty()) throw UsageError("missing --kind (see --help)");
  return o;
}

int run(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  const auto schedule = make_schedule(o.spec);  // gl::Error names the bad parameter
  if (o.stride == 0) {
    const auto& p = schedule->spec().params;
    const auto it = p.find("total");
    o.first = 0;
    o.last = it != p.end() ? int64_t(it->second) : 1000;
    o.stride = it != p.end() ? std::max<int64_t>(1, o.last / 100) : 10;
  }
  std::printf(o.phase ? "step,lr,phase\n" : "step,lr\n");
  for (int64_t s = o.first; s <= o.last; s += o.stride) {
    if (o.phase) std::printf("%lld,%.17g,%s\n", (long long)s, schedule->lr(s), schedule->phase(s).c_str());
    else std::printf("%lld,%.17g\n", (long long)s, schedule->lr(s));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("gridlock_schedule", [&] { return run(argc, argv); });
}
