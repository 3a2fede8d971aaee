// gridlock_experiment: the program behind ./experiment (issue 7 item 2).
// Runs the paper's fork experiment (arms = schedules, QAT on/off; x seeds),
// one ./train process per run, N at a time, then computes the statistics
// and writes the report (trainer/experiment_report.h).
//
//   ./experiment EXPERIMENT.yaml [section.key=value ...] [--parallel N]
//                [--max-runs N] [--report-only] [--dry-run]
//
// Layout: EXP = experiment.out_dir/experiment.name;
//   EXP/runs/ARM_sSEED/   the run directory (the trainer's; run.out_dir and
//                         run.name are set by the runner, last, so nothing
//                         in the file can move them)
//   EXP/logs/ARM_sSEED.log  the run's stdout+stderr (appended; the command
//                         line is its first line per launch)
//   EXP/report.md, stats.json, fig_*.svg
// Resumable: a run that exited 0 leaves RUN/experiment_done.json (written
// atomically) and is never launched again. An unfinished run with a
// checkpoint is relaunched with train.resume=true (the trainer cuts its
// metrics back to the checkpoint, so no probe is counted twice); one
// without a checkpoint is removed and started afresh (the trainer would
// otherwise pick a new name-2 directory). SIGINT/SIGTERM are passed to the
// runs (the trainer saves a checkpoint and exits 75), then the runner stops.
//
// Exit codes: 0 every run finished (or --max-runs stopped launching); 1 a
// run failed or an error (one line); 2 usage; 130 interrupted.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/error.h"
#include "core/json.h"
#include "trainer/checkpoint.h"
#include "trainer/experiment_report.h"
#include "trainer/metrics.h"
#include "trainer/recipe.h"
#include "trainer/study_file.h"

using namespace gl;
using namespace gl::apps;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: ./experiment EXPERIMENT.yaml [section.key=value ...] [options]\n"
    "\n"
    "Runs every arm x seed of an experiment file as its own ./train process, N at a time,\n"
    "skipping runs that already finished (rerun the same command to continue an interrupted\n"
    "sweep), then writes OUT/report.md, OUT/stats.json and OUT/fig_*.svg: per-run INT4 gaps,\n"
    "pairwise wins between arms per seed, paired t-tests (e.g. OLI cool-phase gaps against\n"
    "cosine). OUT = experiment.out_dir/experiment.name. File format: docs/reproduction.md.\n"
    "\n"
    "options:\n"
    "  --parallel N    runs at a time (default experiment.parallel, else 1)\n"
    "  --max-runs N    launch at most N runs in this invocation\n"
    "  --report-only   launch nothing; report on the runs present\n"
    "  --dry-run       print the ./train command of every pending run and exit\n"
    "  --train BIN     the gridlock_train binary (default: next to this program)\n"
    "  --set KEY=VALUE a ./train override for every run, after the file's (repeatable;\n"
    "                  e.g. --set train.init_from=/ckpt/step100000 --set data.paths=/pile/document)\n"
    "exit status: 0 ok, 1 a run failed or an error, 2 usage error, 130 interrupted\n";

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int sig) { g_stop = sig; }

struct Arm {
  std::string name, recipe;
  std::vector<std::string> overrides;
};

struct Plan {
  std::string name, exp_dir, train_bin;
  int64_t parallel = 1, threads = 0;
  std::vector<int64_t> seeds;
  std::vector<std::string> overrides;
  std::vector<Arm> arms;
  ExperimentReportSpec report;
};

struct RunJob {
  std::string arm, name, run_dir, log;
  int64_t seed = 0, seed_index = 0;
  std::vector<std::string> argv;  // without the resume flag
};

// "{seed}", "{seed_index}", "{seed_index*N}", "{arm}" in an override.
std::string substitute(const std::string& text, const std::string& arm, int64_t seed,
                       int64_t seed_index, const std::string& where) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '{') {
      out += text[i++];
      continue;
    }
    const size_t close = text.find('}', i);
    GL_CHECK(close != std::string::npos, where, ": unclosed '{' in override '", text, "'");
    const std::string name = text.substr(i + 1, close - i - 1);
    if (name == "seed") out += std::to_string(seed);
    else if (name == "seed_index") out += std::to_string(seed_index);
    else if (name == "arm") out += arm;
    else if (name.rfind("seed_index*", 0) == 0) {
      const std::string k = name.substr(11);
      size_t used = 0;
      int64_t mult = 0;
      try {
        mult = std::stoll(k, &used);
      } catch (...) {
        used = 0;
      }
      GL_CHECK(used == k.size() && !k.empty(), where, ": bad multiplier in '{", name, "}'");
      out += std::to_string(seed_index * mult);
    } else {
      GL_CHECK(false, where, ": unknown placeholder '{", name, "}' in override '", text,
               "' (known: {seed}, {seed_index}, {seed_index*N}, {arm})");
    }
    i = close + 1;
  }
  return out;
}

Plan load_plan(const std::string& path, const std::vector<std::string>& overrides,
               const std::vector<std::string>& sets, const std::string& train_flag,
               const char* argv0) {
  require_file(path, "experiment file");
  const StudyFile f = StudyFile::load(path, overrides);
  f.check_keys({"experiment.name", "experiment.out_dir", "experiment.parallel",
                "experiment.threads_per_run", "experiment.seeds", "experiment.overrides",
                "experiment.metric", "experiment.title", "experiment.train"},
               {"arms", "comparisons"});
  Plan p;
  p.name = f.str("experiment.name", "", true);
  p.exp_dir = (fs::path(f.str("experiment.out_dir", "runs/experiments")) / p.name).string();
  p.parallel = f.integer("experiment.parallel", 1, 1);
  p.threads = f.integer("experiment.threads_per_run", 0, 0);
  p.seeds = f.integers("experiment.seeds");
  GL_CHECK(!p.seeds.empty(), path, ": experiment.seeds: at least one seed is needed");
  p.overrides = f.strings("experiment.overrides");
  p.overrides.insert(p.overrides.end(), sets.begin(), sets.end());
  p.report.metric = f.str("experiment.metric", "gap_pct_int4_probe");
  p.report.title = f.str("experiment.title", "Experiment " + p.name);
  p.report.seeds = p.seeds;
  p.train_bin = train_flag.empty() ? f.str("experiment.train") : train_flag;
  if (p.train_bin.empty()) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) self = fs::path(argv0);
    p.train_bin = (self.parent_path() / "gridlock_train").string();
  }

  const YAML::Node arms = f.top("arms");
  GL_CHECK(arms && arms.IsSequence() && arms.size() > 0, path,
           ": 'arms' must be a list of {name, recipe, overrides}");
  std::set<std::string> names;
  for (const YAML::Node& a : arms) {
    const std::string w = f.where(a);
    GL_CHECK(a.IsMap(), w, ": an arm must be a mapping {name, recipe, overrides}");
    for (const auto& kv : a) {
      const std::string k = kv.first.Scalar();
      GL_CHECK(k == "name" || k == "recipe" || k == "overrides", f.where(kv.first),
               ": unknown arm key '", k, "' (known: name, recipe, overrides)");
    }
    GL_CHECK(a["name"] && a["name"].IsScalar(), w, ": arm without a name");
    GL_CHECK(a["recipe"] && a["recipe"].IsScalar(), w, ": arm '", a["name"].Scalar(),
             "' without a recipe");
    Arm arm;
    arm.name = a["name"].Scalar();
    for (char c : arm.name)
      GL_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-', w,
               ": arm name '", arm.name, "' may hold only letters, digits, '_' and '-'");
    GL_CHECK(names.insert(arm.name).second, w, ": two arms named '", arm.name, "'");
    arm.recipe = f.resolve(a["recipe"].Scalar());
    require_file(arm.recipe, w + ": arm '" + arm.name + "' recipe");
    if (a["overrides"]) {
      GL_CHECK(a["overrides"].IsSequence(), w, ": arm '", arm.name, "': overrides must be a list");
      for (const YAML::Node& o : a["overrides"]) arm.overrides.push_back(o.Scalar());
    }
    p.arms.push_back(arm);
    p.report.arms.push_back(arm.name);
  }
  const YAML::Node cmps = f.top("comparisons");
  if (cmps) {
    GL_CHECK(cmps.IsSequence(), path, ": 'comparisons' must be a list of {arm, against, phase}");
    for (const YAML::Node& c : cmps) {
      const std::string w = f.where(c);
      GL_CHECK(c.IsMap() && c["arm"] && c["against"], w,
               ": a comparison needs 'arm' and 'against'");
      ExperimentComparison x{c["arm"].Scalar(), c["against"].Scalar(),
                             c["phase"] ? c["phase"].Scalar() : "any"};
      GL_CHECK(names.count(x.arm) && names.count(x.against), w, ": comparison of unknown arm '",
               names.count(x.arm) ? x.against : x.arm, "'");
      GL_CHECK(x.phase == "any" || x.phase == "hot" || x.phase == "cool" || x.phase == "cool_end",
               w, ": phase '", x.phase, "' is not one of any, hot, cool, cool_end");
      p.report.comparisons.push_back(x);
    }
  }
  return p;
}

std::vector<RunJob> make_jobs(const Plan& p) {
  std::vector<RunJob> jobs;
  for (const Arm& arm : p.arms)
    for (size_t si = 0; si < p.seeds.size(); ++si) {
      RunJob j;
      j.arm = arm.name;
      j.seed = p.seeds[si];
      j.seed_index = int64_t(si);
      j.name = arm.name + "_s" + std::to_string(j.seed);
      j.run_dir = (fs::path(p.exp_dir) / "runs" / j.name).string();
      j.log = (fs::path(p.exp_dir) / "logs" / (j.name + ".log")).string();
      j.argv = {p.train_bin, arm.recipe, "run.seed=" + std::to_string(j.seed)};
      if (p.threads > 0) j.argv.push_back("train.threads=" + std::to_string(p.threads));
      // Arm overrides before the experiment's, so --set (appended to the
      // latter) has the last word.
      for (const std::string& o : arm.overrides)
        j.argv.push_back(substitute(o, arm.name, j.seed, j.seed_index, "arm " + arm.name));
      for (const std::string& o : p.overrides)
        j.argv.push_back(substitute(o, arm.name, j.seed, j.seed_index, "experiment.overrides"));
      j.argv.push_back("run.out_dir=" + (fs::path(p.exp_dir) / "runs").string());
      j.argv.push_back("run.name=" + j.name);
      jobs.push_back(j);
    }
  return jobs;
}

std::string done_marker(const RunJob& j) { return (fs::path(j.run_dir) / "experiment_done.json").string(); }

// The run's ./train arguments without the binary (which may move).
Json job_args(const RunJob& j) {
  Json a = Json::array();
  for (size_t i = 1; i < j.argv.size(); ++i) a.push_back(j.argv[i]);
  return a;
}

// A finished run is reused only when it was made by the same arguments:
// otherwise the report would silently mix settings.
bool finished_run(const RunJob& j) {
  const std::string marker = done_marker(j);
  if (!fs::exists(marker)) return false;
  const Json done = Json::parse_file(marker);
  const Json* args = done.find("args");
  GL_CHECK(args && args->dump() == job_args(j).dump(), j.run_dir,
           ": finished with other ./train arguments (", args ? args->dump() : "none", "; now ",
           job_args(j).dump(), "); use another experiment.name or remove that run");
  return true;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) {
    const bool plain = a.find_first_of(" \t\"'\\$`;&|<>(){}*?[]") == std::string::npos && !a.empty();
    s += (s.empty() ? "" : " ") + (plain ? a : "'" + a + "'");
  }
  return s;
}

// The argv for this launch: resume when the run has a checkpoint, else a
// fresh start in an emptied directory.
std::vector<std::string> launch_argv(const RunJob& j) {
  std::vector<std::string> argv = j.argv;
  if (fs::exists(j.run_dir)) {
    if (latest_checkpoint(j.run_dir)) argv.push_back("train.resume=true");
    else fs::remove_all(j.run_dir);
  }
  return argv;
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  fs::create_directories(fs::path(log).parent_path());
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GL_CHECK(fd >= 0, log, ": cannot open the run log: ", std::strerror(errno));
  const std::string header = "$ " + shell_join(argv) + "\n";
  (void)!::write(fd, header.data(), header.size());
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    ::execv(cargv[0], cargv.data());
    std::fprintf(stderr, "experiment: cannot run %s: %s\n", cargv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fd);
  GL_CHECK(pid > 0, "fork failed: ", std::strerror(errno));
  return pid;
}

// ": <the log's last line>" (the trainer's one-line error), or "".
std::string last_line(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  if (last.size() > 300) last = last.substr(0, 300) + "...";
  return last.empty() ? "" : ": " + last;
}

ExperimentRun collect_run(const RunJob& j) {
  ExperimentRun r;
  r.arm = j.arm;
  r.name = j.name;
  r.seed = j.seed;
  r.run_dir = j.run_dir;
  r.finished = fs::exists(done_marker(j));
  const std::string metrics = (fs::path(j.run_dir) / "metrics.jsonl").string();
  if (fs::exists(metrics)) {
    std::vector<std::string> warnings;
    r.records = MetricsLog::read(metrics, &warnings);
  }
  const std::string resolved = (fs::path(j.run_dir) / "recipe.resolved.yaml").string();
  if (fs::exists(resolved)) {
    try {
      r.schedule = make_schedule(Recipe::load(resolved).schedule_spec());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "experiment: warning: %s: no schedule phases (%s)\n", resolved.c_str(),
                   e.what());
    }
  }
  return r;
}

int run(int argc, char** argv) {
  std::string file, train_flag;
  std::vector<std::string> overrides, sets;
  int64_t parallel = 0, max_runs = -1;
  bool report_only = false, dry_run = false;
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--parallel") parallel = parse_int(a, args.value(a), 1);
    else if (a == "--max-runs") max_runs = parse_int(a, args.value(a), 0);
    else if (a == "--report-only") args.no_value(a), report_only = true;
    else if (a == "--dry-run") args.no_value(a), dry_run = true;
    else if (a == "--train") train_flag = args.value(a);
    else if (a == "--set") {
      sets.push_back(args.value(a));
      if (sets.back().find('=') == std::string::npos)
        throw UsageError("--set '" + sets.back() + "': expected KEY=VALUE");
    }
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else if (file.empty()) file = a;
    else if (a.find('=') != std::string::npos) overrides.push_back(a);
    else throw UsageError("unexpected argument '" + a + "' (overrides are section.key=value)");
  }
  if (file.empty()) throw UsageError("expected an EXPERIMENT.yaml file");

  const Plan plan = load_plan(file, overrides, sets, train_flag, argv[0]);
  const std::vector<RunJob> jobs = make_jobs(plan);
  std::vector<const RunJob*> pending;
  for (const RunJob& j : jobs)
    if (!finished_run(j)) pending.push_back(&j);

  if (dry_run) {
    for (const RunJob* j : pending) std::printf("%s\n", shell_join(j->argv).c_str());
    return 0;
  }
  std::printf("experiment %s: %zu runs, %zu finished, %zu to run; output %s\n", plan.name.c_str(),
              jobs.size(), jobs.size() - pending.size(), pending.size(), plan.exp_dir.c_str());
  std::fflush(stdout);

  int failed = 0;
  if (!report_only && !pending.empty()) {
    require_file(plan.train_bin, "gridlock_train binary (--train or experiment.train)");
    const int64_t width = parallel > 0 ? parallel : plan.parallel;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);

    std::map<pid_t, std::pair<const RunJob*, std::chrono::steady_clock::time_point>> running;
    size_t next = 0;
    int64_t launched = 0;
    bool forwarded = false;
    while (true) {
      while (!g_stop && int64_t(running.size()) < width && next < pending.size() &&
             (max_runs < 0 || launched < max_runs)) {
        const RunJob* j = pending[next++];
        const std::vector<std::string> a = launch_argv(*j);
        const bool resume = a.size() > j->argv.size();
        running[spawn(a, j->log)] = {j, std::chrono::steady_clock::now()};
        ++launched;
        std::printf("start %s%s (log %s)\n", j->name.c_str(), resume ? " (resuming)" : "",
                    j->log.c_str());
        std::fflush(stdout);
      }
      if (running.empty()) break;
      if (g_stop && !forwarded) {
        for (const auto& [pid, job] : running) ::kill(pid, SIGTERM);
        forwarded = true;
      }
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) {
        if (errno == EINTR) continue;
        GL_CHECK(false, "waitpid: ", std::strerror(errno));
      }
      auto it = running.find(pid);
      if (it == running.end()) continue;
      const RunJob* j = it->second.first;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                        it->second.second).count();
      running.erase(it);
      const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (rc == 0) {
        Json done = Json::object();
        done.set("run", j->name);
        done.set("arm", j->arm);
        done.set("seed", j->seed);
        done.set("seconds", secs);
        done.set("args", job_args(*j));
        write_file_atomic(done_marker(*j), done.dump() + "\n");
        std::printf("done  %s in %.1fs\n", j->name.c_str(), secs);
      } else {
        if (!g_stop) ++failed;
        std::printf("%s %s: exit %d after %.1fs (log %s)%s\n", g_stop ? "stopped" : "FAILED",
                    j->name.c_str(), rc, secs, j->log.c_str(), last_line(j->log).c_str());
      }
      std::fflush(stdout);
    }
  }

  std::vector<ExperimentRun> runs;
  size_t finished = 0;
  for (const RunJob& j : jobs) {
    if (!fs::exists(j.run_dir)) continue;
    runs.push_back(collect_run(j));
    finished += runs.back().finished;
  }
  write_experiment_report(plan.exp_dir, plan.report, runs);
  std::printf("%zu/%zu runs finished; report %s\n", finished, jobs.size(),
              (fs::path(plan.exp_dir) / "report.md").string().c_str());
  if (g_stop) {
    std::printf("interrupted: rerun the same command to continue\n");
    return 130;
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("experiment", [&] { return run(argc, argv); });
}
