// gridlock_probe: the program behind ./probe. The calibration-free INT4/INT8
// probe (quant/probe.h) over one model or a sequence of checkpoints, with
// per-layer diagnostics (quant/diagnostics.h), bin flips between
// consecutive checkpoints, and the paper's figures (gap vs step, FP PPL vs
// step, kurtosis vs gap) drawn by trainer/report.h.
//
// Evaluation protocol: ./eval's (apps/eval.cpp): non-overlapping windows of
// --context tokens (apps/common.h eval_windows), each predicting its tokens
// 1..n-1 from the same window, so FP PPL here equals ./eval's on the same
// tokens. The same batches serve every checkpoint and format.
//
// The checkpoint audit (issue 7 item 1): `./probe AUDIT.yaml [audit.key=v
// ...]` reads the same options from an audit file (trainer/study_file.h;
// recipes/pythia160m_audit.yaml documents every key) and always resumes.
// Resuming (--resume, or an audit file): OUT/probe.jsonl gets one line per
// finished checkpoint, written with one write() and fsync'ed; a rerun reads
// it back (a torn last line from a kill is dropped and the file repaired),
// refuses if OUT/probe_config.json says the tokens, formats or layers
// differ, and evaluates only the steps not yet present, so no checkpoint is
// ever evaluated twice. Bin flips against a checkpoint evaluated by an
// earlier invocation load that checkpoint again (no evaluation pass), so a
// resumed audit writes the same numbers as an uninterrupted one. probe.csv,
// table.csv (one row per checkpoint: PPLs, gaps, mean kurtosis, grid
// alignment, bin flips) and the report are rewritten from all records after
// every checkpoint.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/json.h"
#include "data/token_shard.h"
#include "data/tokenizer.h"
#include "models/model.h"
#include "quant/probe.h"
#include "trainer/checkpoint.h"
#include "trainer/experiment_report.h"
#include "trainer/metrics.h"
#include "trainer/report.h"
#include "trainer/stats.h"
#include "trainer/study_file.h"

using namespace gl;
using namespace gl::apps;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: ./probe MODEL_DIR... --data FILE [options]\n"
    "       ./probe AUDIT.yaml [audit.key=value ...] [--max-models N] [--progress]\n"
    "\n"
    "Calibration-free weight quantization probe: for each model, the perplexity of the FP\n"
    "model and of the model with its weights round-to-nearest quantized under each format,\n"
    "on the same tokens; gap = (PPL_q - PPL_fp) / PPL_fp x 100. Plus per-layer diagnostics\n"
    "(excess kurtosis, absmax/std, grid alignment) and the share of codes that flip between\n"
    "consecutive checkpoints. One FP pass plus one pass per format per model.\n"
    "\n"
    "MODEL_DIR: a Hugging Face model directory, a training checkpoint (RUN/checkpoints/\n"
    "step-N), a run directory (all its checkpoints in step order), or a folder of model\n"
    "directories (e.g. Pythia's step1000 ...: sorted by the number in the name). The step\n"
    "of a model is its trainer_state.json step, else the number in its name, else its index.\n"
    "\n"
    "DATA (--data, required): a text file (tokenized with --tokenizer, default the model's\n"
    "tokenizer.json or the run's), a gridlock .gltok shard, or raw token ids (.u16, .u32,\n"
    "or .bin with --token-dtype). Windows as ./eval: non-overlapping, --context tokens.\n"
    "\n"
    "options:\n"
    "  --data FILE             evaluation tokens (see above)\n"
    "  --tokenizer FILE        tokenizer.json for a text DATA\n"
    "  --token-dtype u16|u32   read DATA as raw token ids of that width\n"
    "  --context N             window length (default: the first model's max_positions)\n"
    "  --batch B               windows per forward pass (default 1)\n"
    "  --max-tokens N          use only the first N tokens\n"
    "  --formats A,B,...       presets or quant spec strings (default int4_probe,int8_probe)\n"
    "  --layers P,Q,...        attention, mlp, embeddings, head, all or name substrings\n"
    "                          (default attention,mlp: the blocks' linear weights)\n"
    "  --sensitivity           per-layer gap: each layer quantized alone (1 pass per layer\n"
    "                          and format)\n"
    "  --out DIR               output directory (default probe_out): probe.jsonl,\n"
    "                          probe.csv, report.html\n"
    "  --device cpu|cuda[:N]   where to run (default cpu)\n"
    "  --dtype f32|f64         compute dtype (default f32)\n"
    "  --progress              progress lines even when stderr is not a terminal\n"
    "  --resume                keep OUT/probe.jsonl and evaluate only the steps not in it\n"
    "  --max-models N          evaluate at most N models in this invocation\n"
    "\n"
    "AUDIT.yaml (the checkpoint audit, e.g. recipes/pythia160m_audit.yaml): the options above\n"
    "as keys audit.checkpoints, audit.data, audit.out, ... (see that file); always resumes.\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

struct Options {
  std::vector<std::string> models;
  std::string data, tokenizer, token_dtype, out = "probe_out";
  Device device = Device::cpu();
  DType dtype = DType::F32;
  int64_t context = 0, batch = 1, max_tokens = -1;
  ProbeOptions probe;
  bool progress = false;
  bool resume = false, audit = false;
  int64_t max_models = -1;
  std::vector<int64_t> steps;  // audit.steps: only these (empty: all)
};

std::vector<std::string> split_commas(const std::string& flag, const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) throw UsageError(flag + " '" + text + "': empty item");
    out.push_back(item);
  }
  if (out.empty()) throw UsageError(flag + ": empty list");
  return out;
}

bool is_yaml_path(const std::string& a) {
  auto ends = [&](const std::string& x) {
    return a.size() > x.size() && a.compare(a.size() - x.size(), x.size(), x) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

// The audit file (recipes/pythia160m_audit.yaml) into the command-line
// options; errors name the file, line and key (trainer/study_file.h).
void read_audit_file(Options& o, std::vector<std::string>& formats, const std::string& path,
                     const std::vector<std::string>& overrides) {
  require_file(path, "audit file");
  const StudyFile f = StudyFile::load(path, overrides);
  f.check_keys({"audit.checkpoints", "audit.data", "audit.tokenizer", "audit.token_dtype",
                "audit.context", "audit.batch", "audit.max_tokens", "audit.formats",
                "audit.layers", "audit.sensitivity", "audit.out", "audit.device", "audit.dtype",
                "audit.steps"});
  // Paths are relative to the working directory, as in training recipes.
  o.models = f.strings("audit.checkpoints");
  GL_CHECK(!o.models.empty(), path, ": missing required key 'audit.checkpoints'");
  o.data = f.str("audit.data", "", true);
  o.tokenizer = f.str("audit.tokenizer");
  o.token_dtype = f.str("audit.token_dtype");
  o.context = f.integer("audit.context", 0, 0);
  o.batch = f.integer("audit.batch", 1, 1);
  o.max_tokens = f.integer("audit.max_tokens", -1, -1);
  formats = f.strings("audit.formats", formats);
  o.probe.layers = f.strings("audit.layers", o.probe.layers);
  o.probe.sensitivity = f.boolean("audit.sensitivity", false);
  o.out = f.str("audit.out", "runs/audit");
  o.device = parse_device("audit.device", f.str("audit.device", "cpu"));
  o.dtype = parse_float_dtype("audit.dtype", f.str("audit.dtype", "f32"));
  o.steps = f.integers("audit.steps");
  o.audit = o.resume = true;
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> formats = {"int4_probe", "int8_probe"};
  std::vector<std::string> positionals;
  std::string flag_used;  // a probe flag, refused next to an audit file
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
    const bool plain_flag =
        a != "--progress" && a != "--max-models" && a != "--resume" && a[0] == '-';
    if (plain_flag && flag_used.empty()) flag_used = a;
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--data") o.data = args.value(a);
    else if (a == "--tokenizer") o.tokenizer = args.value(a);
    else if (a == "--token-dtype") o.token_dtype = args.value(a);
    else if (a == "--context") o.context = parse_int(a, args.value(a), 2);
    else if (a == "--batch") o.batch = parse_int(a, args.value(a), 1);
    else if (a == "--max-tokens") o.max_tokens = parse_int(a, args.value(a), 2);
    else if (a == "--formats") formats = split_commas(a, args.value(a));
    else if (a == "--layers") o.probe.layers = split_commas(a, args.value(a));
    else if (a == "--sensitivity") args.no_value(a), o.probe.sensitivity = true;
    else if (a == "--out") o.out = args.value(a);
    else if (a == "--device") o.device = parse_device(a, args.value(a));
    else if (a == "--dtype") o.dtype = parse_float_dtype(a, args.value(a));
    else if (a == "--progress") args.no_value(a), o.progress = true;
    else if (a == "--resume") args.no_value(a), o.resume = true;
    else if (a == "--max-models") o.max_models = parse_int(a, args.value(a), 0);
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else positionals.push_back(a);
  }
  if (!positionals.empty() && is_yaml_path(positionals[0])) {
    if (!flag_used.empty())
      throw UsageError(flag_used + " with an audit file: set the audit.* key instead (audit.key=value)");
    std::vector<std::string> overrides(positionals.begin() + 1, positionals.end());
    for (const std::string& ov : overrides)
      if (ov.find('=') == std::string::npos)
        throw UsageError("unexpected argument '" + ov + "' after the audit file (overrides are audit.key=value)");
    read_audit_file(o, formats, positionals[0], overrides);
  } else {
    o.models = positionals;
  }
  if (o.models.empty()) throw UsageError("expected at least one MODEL_DIR");
  if (o.data.empty()) throw UsageError("missing --data FILE (the evaluation tokens)");
  (void)token_file_dtype(o.data, o.token_dtype);  // a bad --token-dtype: usage error
  // Formats are checked before any model is read (unknown names list the presets).
  o.probe.formats.clear();
  for (const std::string& f : formats) {
    QuantSpec s = quant_spec_from_string(f);
    validate(s);
    o.probe.formats.push_back(s);
  }
  return o;
}

// --- which models -------------------------------------------------------------

struct ModelEntry {
  std::string dir;
  int64_t step = -1;
  bool checkpoint = false;  // has trainer_state.json (tokenizer in ../../)
};

bool is_model_dir(const fs::path& d) {
  return fs::is_regular_file(d / "config.json") &&
         (fs::is_regular_file(d / "model.safetensors") ||
          fs::is_regular_file(d / "model.safetensors.index.json"));
}

// The last run of digits in a directory name ("step-00000500" -> 500,
// "step143000" -> 143000), or -1.
int64_t number_in_name(const std::string& name) {
  int64_t end = int64_t(name.size());
  while (end > 0 && !std::isdigit(static_cast<unsigned char>(name[size_t(end - 1)]))) --end;
  int64_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(name[size_t(begin - 1)]))) --begin;
  if (begin == end || end - begin > 18) return -1;
  return std::stoll(name.substr(size_t(begin), size_t(end - begin)));
}

ModelEntry model_entry(const fs::path& d) {
  ModelEntry e;
  e.dir = d.string();
  const fs::path state = d / "trainer_state.json";
  if (fs::is_regular_file(state)) {
    e.checkpoint = true;
    e.step = Json::parse_file(state.string()).at("step", state.string()).as_int(state.string() +
                                                                                ": step");
  } else {
    e.step = number_in_name(d.lexically_normal().filename().string());
  }
  return e;
}

std::vector<ModelEntry> expand_models(const std::vector<std::string>& args) {
  std::vector<ModelEntry> out;
  for (const std::string& a : args) {
    require_directory(a, "model directory");
    const fs::path d = fs::path(a).lexically_normal();
    if (is_model_dir(d)) {
      out.push_back(model_entry(d));
      continue;
    }
    std::vector<fs::path> subs;
    if (fs::is_directory(d / "checkpoints")) {  // a run directory
      for (const std::string& c : list_checkpoints(d.string())) subs.push_back(c);
      GL_CHECK(!subs.empty(), a, ": a run directory without complete checkpoints");
    } else {  // a folder of model directories, ordered by the number in the name
      for (const auto& e : fs::directory_iterator(d))
        if (e.is_directory() && is_model_dir(e.path())) subs.push_back(e.path());
      std::sort(subs.begin(), subs.end(), [](const fs::path& x, const fs::path& y) {
        const int64_t nx = number_in_name(x.filename().string()),
                      ny = number_in_name(y.filename().string());
        return nx != ny ? nx < ny : x.filename() < y.filename();
      });
      GL_CHECK(!subs.empty(), a, ": not a model directory (config.json + model.safetensors), ",
               "a run directory (checkpoints/) or a folder of model directories");
    }
    for (const fs::path& s : subs) out.push_back(model_entry(s));
  }
  // A model without any step gets its position, so every record has an x.
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].step < 0) out[i].step = int64_t(i);
  return out;
}

// --- which tokens -------------------------------------------------------------

bool is_token_shard(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  return f.gcount() == 8 && std::string(magic, 8) == "GLTOKENS";
}

std::string default_tokenizer(const Options& o, const ModelEntry& first) {
  if (!o.tokenizer.empty()) return o.tokenizer;
  const fs::path d(first.dir);
  if (fs::is_regular_file(d / "tokenizer.json")) return (d / "tokenizer.json").string();
  // A training checkpoint: the run directory (RUN/checkpoints/step-N/../..) holds it.
  const fs::path run = d.parent_path().parent_path() / "tokenizer.json";
  if (first.checkpoint && fs::is_regular_file(run)) return run.string();
  GL_CHECK(false, (d / "tokenizer.json").string(), ": no such file (needed to tokenize the text ",
           "file '", o.data, "'; ", o.audit ? "set audit.tokenizer=FILE" : "pass --tokenizer FILE",
           ", a .gltok shard or a token file)");
  return {};
}

std::vector<int32_t> load_tokens(const Options& o, const ModelEntry& first, int64_t vocab) {
  require_file(o.data, "data file");
  std::vector<int32_t> ids;
  if (const auto dt = token_file_dtype(o.data, o.token_dtype)) {
    return read_token_file(o.data, *dt, vocab, o.max_tokens);
  } else if (is_token_shard(o.data)) {
    const TokenShard shard = TokenShard::open(o.data);
    size_t n = shard.count();
    if (o.max_tokens >= 0) n = std::min(n, size_t(o.max_tokens));
    ids = shard.read(0, n);
  } else {
    const std::string tok_path = default_tokenizer(o, first);
    require_file(tok_path, "tokenizer");
    ids = Tokenizer::from_json_file(tok_path).encode(read_text_file(o.data));
    if (o.max_tokens >= 0 && int64_t(ids.size()) > o.max_tokens) ids.resize(size_t(o.max_tokens));
  }
  for (size_t i = 0; i < ids.size(); ++i)
    GL_CHECK(ids[i] >= 0 && ids[i] < vocab, o.data, ": token ", i, " is id ", ids[i],
             ", outside the model's vocabulary of ", vocab);
  return ids;
}

// Windows of equal length, `batch` at a time: ids = window[0 .. n-2],
// targets = window[1 .. n-1] (./eval's grouping).
std::vector<std::pair<Tensor, Tensor>> make_batches(const std::vector<int32_t>& tokens,
                                                    const std::vector<Window>& windows,
                                                    int64_t batch) {
  std::vector<std::pair<Tensor, Tensor>> out;
  for (size_t i = 0; i < windows.size();) {
    const int64_t len = windows[i].length;
    size_t j = i;
    while (j < windows.size() && int64_t(j - i) < batch && windows[j].length == len) ++j;
    const int64_t b = int64_t(j - i), n = len - 1;
    std::vector<int32_t> ids(size_t(b * n)), targets(size_t(b * n));
    for (int64_t w = 0; w < b; ++w) {
      const int32_t* src = tokens.data() + windows[i + size_t(w)].start;
      std::copy(src, src + n, ids.begin() + w * n);
      std::copy(src + 1, src + 1 + n, targets.begin() + w * n);
    }
    out.push_back({Tensor::from_data(ids, {b, n}), Tensor::from_data(targets, {b, n})});
    i = j;
  }
  return out;
}

// --- outputs ------------------------------------------------------------------

std::string fmt_double(double v, int prec = 6) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", prec, v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::vector<ReportFigure> probe_figures(const std::vector<QuantSpec>& formats) {
  std::vector<ReportFigure> f(3);
  f[0].title = "Quantization gap vs step";
  f[0].y_label = "gap (% of FP PPL)";
  f[1].title = "FP perplexity vs step";
  f[1].y_label = "PPL";
  f[1].series = {{"FP", "probe", "fp_ppl"}};
  f[2].title = "Mean excess kurtosis vs gap (one point per checkpoint)";
  f[2].y_label = "gap (% of FP PPL)";
  f[2].x_field = "mean_kurtosis";
  f[2].x_label = "mean excess kurtosis over the probed weights";
  f[2].scatter = true;
  for (const QuantSpec& s : formats) {
    f[0].series.push_back({s.name, "probe", "gap_pct_" + s.name});
    f[2].series.push_back({s.name, "probe", "gap_pct_" + s.name});
  }
  return f;
}

// Fault injection for the resume tests (tests/trainer/e2e/audit_cli.sh), as
// the trainer's GRIDLOCK_FAULT: GRIDLOCK_PROBE_FAULT=torn_record:N makes the
// N-th record of this invocation a torn half line, then SIGKILLs the
// process (a kill in the middle of the write); kill_after:N SIGKILLs it
// right after the N-th record is on disk. Unset: nothing.
struct ProbeFault {
  int64_t torn_record = -1, kill_after = -1;
  static ProbeFault from_env() {
    ProbeFault f;
    const char* env = std::getenv("GRIDLOCK_PROBE_FAULT");
    if (!env || !*env) return f;
    const std::string s = env;
    const size_t colon = s.find(':');
    GL_CHECK(colon != std::string::npos, "GRIDLOCK_PROBE_FAULT='", s, "': expected NAME:N");
    const std::string name = s.substr(0, colon);
    const int64_t n = parse_int("GRIDLOCK_PROBE_FAULT", s.substr(colon + 1), 1);
    if (name == "torn_record") f.torn_record = n;
    else if (name == "kill_after") f.kill_after = n;
    else GL_CHECK(false, "GRIDLOCK_PROBE_FAULT: unknown fault '", name, "' (torn_record, kill_after)");
    return f;
  }
};

// One record line, appended with a single write() and fsync'ed before the
// next checkpoint starts: a kill loses at most the checkpoint in progress.
void append_line_durably(const std::string& path, const std::string& line, bool torn = false) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GL_CHECK(fd >= 0, path, ": cannot open for appending: ", std::strerror(errno));
  if (torn) {  // fault injection: half the line reaches the disk, then the process dies
    (void)!::write(fd, line.data(), line.size() / 2);
    ::fsync(fd);
    ::raise(SIGKILL);
  }
  const ssize_t n = ::write(fd, line.data(), line.size());
  const bool ok = n == ssize_t(line.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  GL_CHECK(ok, path, ": cannot append a record: ", std::strerror(err));
}

double rec_number(const Json& r, const std::string& key) {
  const Json* v = r.find(key);
  return v && v->is_number() ? v->as_double() : std::nan("");
}

// probe.csv: one row per model and format (the original layout).
std::string probe_csv(const std::vector<Json>& records, const std::vector<QuantSpec>& formats) {
  std::string s = "step,model,format,fp_nll,fp_ppl,nll,ppl,gap_pct,mean_kurtosis,bin_flips\n";
  for (const Json& r : records)
    for (const QuantSpec& f : formats) {
      const std::string& n = f.name;
      s += std::to_string(r.at("step").as_int()) + "," + csv_field(r.at("model").as_string()) +
           "," + csv_field(n) + "," + fmt_double(rec_number(r, "fp_nll"), 9) + "," +
           fmt_double(rec_number(r, "fp_ppl"), 9) + "," + fmt_double(rec_number(r, "nll_" + n), 9) +
           "," + fmt_double(rec_number(r, "ppl_" + n), 9) + "," +
           fmt_double(rec_number(r, "gap_pct_" + n), 9) + "," +
           fmt_double(rec_number(r, "mean_kurtosis"), 9) + "," +
           fmt_double(rec_number(r, "bin_flips_" + n), 9) + "\n";
    }
  return s;
}

// table.csv: the audit table, one row per checkpoint (spec.md 1.1: step, FP
// PPL, INT4 / INT8 PPL and gap, mean kurtosis, grid alignment, bin flips).
std::string audit_table_csv(const std::vector<Json>& records,
                            const std::vector<QuantSpec>& formats) {
  std::string s = "step,model,fp_ppl";
  for (const QuantSpec& f : formats) s += ",ppl_" + csv_field(f.name);
  for (const QuantSpec& f : formats) s += ",gap_pct_" + csv_field(f.name);
  s += ",mean_kurtosis";
  for (const QuantSpec& f : formats) s += ",grid_dist_" + csv_field(f.name);
  for (const QuantSpec& f : formats) s += ",bin_flips_" + csv_field(f.name);
  s += "\n";
  for (const Json& r : records) {
    s += std::to_string(r.at("step").as_int()) + "," + csv_field(r.at("model").as_string()) + "," +
         fmt_double(rec_number(r, "fp_ppl"), 9);
    for (const char* k : {"ppl_", "gap_pct_"})
      for (const QuantSpec& f : formats) s += "," + fmt_double(rec_number(r, k + f.name), 9);
    s += "," + fmt_double(rec_number(r, "mean_kurtosis"), 9);
    for (const char* k : {"grid_dist_", "bin_flips_"})
      for (const QuantSpec& f : formats) s += "," + fmt_double(rec_number(r, k + f.name), 9);
    s += "\n";
  }
  return s;
}

// Numel-weighted means over the probed weights of each format's grid
// alignment (quant/diagnostics.h), as flat record fields.
void add_grid_alignment(Json& rec, const ProbeResult& r) {
  for (size_t f = 0; f < r.formats.size(); ++f) {
    double dist = 0, near = 0, n = 0;
    for (const LayerDiagnostics& l : r.layers) {
      if (f >= l.formats.size()) continue;
      dist += double(l.numel) * l.formats[f].grid_dist;
      near += double(l.numel) * l.formats[f].near_boundary;
      n += double(l.numel);
    }
    if (n > 0) {
      rec.set("grid_dist_" + r.formats[f].name, dist / n);
      rec.set("near_boundary_" + r.formats[f].name, near / n);
    }
  }
}

// What the records of OUT/probe.jsonl depend on; a resume must match it.
Json probe_config(const Options& o, size_t n_tokens, int64_t context, size_t n_windows) {
  Json c = Json::object();
  c.set("data", o.data);
  c.set("tokens", int64_t(n_tokens));
  c.set("context", context);
  c.set("windows", int64_t(n_windows));
  c.set("batch", o.batch);
  c.set("dtype", std::string(o.dtype == DType::F64 ? "f64" : "f32"));
  Json f = Json::array(), l = Json::array();
  for (const QuantSpec& s : o.probe.formats) f.push_back(to_string(s));
  for (const std::string& x : o.probe.layers) l.push_back(x);
  c.set("formats", f);
  c.set("layers", l);
  c.set("sensitivity", o.probe.sensitivity);
  return c;
}

std::vector<Json> sorted_by_step(std::vector<Json> records) {
  std::stable_sort(records.begin(), records.end(), [](const Json& a, const Json& b) {
    return a.at("step").as_int() < b.at("step").as_int();
  });
  return records;
}

// report.html (+ the audit's SVG figures and summary) from all records.
void write_outputs(const Options& o, const std::vector<Json>& unsorted,
                   const ReportSummary& base_summary) {
  const std::vector<Json> records = sorted_by_step(unsorted);
  write_file_atomic((fs::path(o.out) / "probe.csv").string(), probe_csv(records, o.probe.formats));
  write_file_atomic((fs::path(o.out) / "table.csv").string(),
                    audit_table_csv(records, o.probe.formats));
  ReportSummary summary = base_summary;
  summary.push_back({"models probed", std::to_string(records.size())});
  std::vector<ReportFigure> figures = probe_figures(o.probe.formats);
  if (o.audit) {
    // Pearson r of mean kurtosis against the first format's gap, over checkpoints.
    const std::string gap = "gap_pct_" + o.probe.formats[0].name;
    std::vector<double> xs, ys;
    for (const Json& r : records) {
      const double x = rec_number(r, "mean_kurtosis"), y = rec_number(r, gap);
      if (std::isfinite(x) && std::isfinite(y)) xs.push_back(x), ys.push_back(y);
    }
    const PearsonResult p = pearson(xs, ys);
    std::vector<int64_t> steps;
    std::vector<double> fps, gaps;
    for (const Json& r : records) {
      const double fp = rec_number(r, "fp_ppl"), g = rec_number(r, gap);
      if (std::isfinite(fp) && std::isfinite(g))
        steps.push_back(r.at("step").as_int()), fps.push_back(fp), gaps.push_back(g);
    }
    const AuditLandmarks lm = audit_landmarks(steps, fps, gaps);
    const std::string stat = "r = " + (std::isfinite(p.r) ? fmt_double(p.r, 3) : "n/a") +
                             ", p = " + (std::isfinite(p.p_two_sided) ? fmt_double(p.p_two_sided, 3) : "n/a") +
                             ", n = " + std::to_string(p.n);
    const std::string suffix = " (" + stat + ")";
    summary.push_back({"Pearson r: mean kurtosis vs " + o.probe.formats[0].name + " gap", stat});
    if (lm.min_gap_step >= 0) {
      summary.push_back({"smallest " + o.probe.formats[0].name + " gap",
                         fmt_double(lm.min_gap, 4) + "% at step " + std::to_string(lm.min_gap_step)});
      summary.push_back({"FP PPL converged (within 1% of every later checkpoint)",
                         "step " + std::to_string(lm.fp_converged_step) + ", gap there " +
                             fmt_double(lm.gap_at_converged, 4) + "%, final gap " +
                             fmt_double(lm.final_gap, 4) + "%"});
    }
    std::vector<std::string> names;
    for (const QuantSpec& s : o.probe.formats) names.push_back(s.name);
    figures = audit_figures(names, suffix);
    write_svg_figures(o.out, "fig_", figures, records);
    Json js = Json::object();
    js.set("checkpoints", int64_t(records.size()));
    js.set("kurtosis_gap_format", o.probe.formats[0].name);
    js.set("kurtosis_gap_pearson_r", std::isfinite(p.r) ? Json(p.r) : Json());
    js.set("kurtosis_gap_pearson_p", std::isfinite(p.p_two_sided) ? Json(p.p_two_sided) : Json());
    js.set("kurtosis_gap_n", int64_t(p.n));
    auto num = [](double v) { return std::isfinite(v) ? Json(v) : Json(); };
    js.set("fp_converged_step", lm.fp_converged_step);
    js.set("gap_at_fp_converged", num(lm.gap_at_converged));
    js.set("min_gap_step", lm.min_gap_step);
    js.set("min_gap", num(lm.min_gap));
    js.set("final_gap", num(lm.final_gap));
    write_file_atomic((fs::path(o.out) / "audit_summary.json").string(), js.dump(2) + "\n");
  }
  write_file_atomic((fs::path(o.out) / "report.html").string(),
                    render_report_html(o.audit ? "gridlock checkpoint audit" : "gridlock probe",
                                       summary, records, figures));
}

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  std::vector<ModelEntry> models = expand_models(o.models);
  if (!o.steps.empty()) {  // audit.steps: a subset
    const std::set<int64_t> want(o.steps.begin(), o.steps.end());
    std::vector<ModelEntry> kept;
    for (const ModelEntry& m : models)
      if (want.count(m.step)) kept.push_back(m);
    GL_CHECK(!kept.empty(), "audit.steps: none of the listed steps is among the ", models.size(),
             " checkpoints found");
    models = kept;
  }
  const bool progress = o.progress || stderr_is_tty();

  // Tokens and batches once, from the first model's configuration.
  std::unique_ptr<LanguageModel> model = load_hf_model(models[0].dir, o.dtype, o.device);
  const int64_t vocab = model->config().vocab_size;
  const int64_t context = o.context > 0 ? o.context : model->config().max_positions;
  const std::vector<int32_t> tokens = load_tokens(o, models[0], vocab);
  const std::vector<Window> windows = eval_windows(int64_t(tokens.size()), context);
  GL_CHECK(!windows.empty(), o.data, ": ", tokens.size(),
           " token(s), need at least 2 to score anything");
  const auto batches = make_batches(tokens, windows, o.batch);
  // Pattern and format errors before any pass (run_probe checks again per model).
  (void)check_probe_options(*model, o.probe);

  fs::create_directories(o.out);
  const std::string jsonl_path = (fs::path(o.out) / "probe.jsonl").string();
  const std::string config_path = (fs::path(o.out) / "probe_config.json").string();
  const Json config = probe_config(o, tokens.size(), context, windows.size());

  // Records already made (resume) and the steps they cover.
  std::vector<Json> records;
  std::set<int64_t> done;
  if (o.resume && fs::exists(jsonl_path)) {
    std::vector<std::string> warnings;
    records = MetricsLog::read(jsonl_path, &warnings);
    for (const std::string& w : warnings) std::fprintf(stderr, "probe: %s\n", w.c_str());
    if (!records.empty()) {
      GL_CHECK(fs::exists(config_path), jsonl_path, " holds ", records.size(),
               " record(s) but ", config_path, " is missing: cannot tell how they were made ",
               "(use another output directory)");
      const Json old = Json::parse_file(config_path);
      GL_CHECK(old.dump() == config.dump(), o.out, ": its records were made with other settings (",
               old.dump(), ", now ", config.dump(), "); use another output directory");
    }
    std::string text;
    for (const Json& r : records) {
      done.insert(r.at("step", jsonl_path).as_int(jsonl_path + ": step"));
      text += r.dump() + "\n";
    }
    write_file_atomic(jsonl_path, text);  // drops a torn last line for good
  } else {
    write_file_atomic(jsonl_path, "");
  }
  write_file_atomic(config_path, config.dump(2) + "\n");

  ReportSummary base = {{"models", std::to_string(models.size())},
                        {"data", o.data + " (" + std::to_string(tokens.size()) + " tokens, " +
                                     std::to_string(windows.size()) + " windows of " +
                                     std::to_string(context) + ")"}};
  std::string fmts, layers;
  for (const QuantSpec& s : o.probe.formats) fmts += (fmts.empty() ? "" : ", ") + to_string(s);
  for (const std::string& l : o.probe.layers) layers += (layers.empty() ? "" : ", ") + l;
  base.push_back({"formats", fmts});
  base.push_back({"layers", layers});

  const ProbeFault fault = ProbeFault::from_env();
  size_t skipped = 0, evaluated = 0;
  std::unique_ptr<LanguageModel> previous;  // the model at index m - 1, when loaded
  for (size_t m = 0; m < models.size(); ++m) {
    if (done.count(models[m].step)) {
      ++skipped;
      previous.reset();
      continue;
    }
    if (o.max_models >= 0 && int64_t(evaluated) >= o.max_models) break;
    if (m > 0 || !model) model = load_hf_model(models[m].dir, o.dtype, o.device);
    const ModelConfig& cfg = model->config();
    GL_CHECK(cfg.vocab_size == vocab && context <= cfg.max_positions, models[m].dir,
             ": vocabulary ", cfg.vocab_size, " / ", cfg.max_positions,
             " positions do not fit the tokens of ", models[0].dir, " (vocabulary ", vocab,
             ", context ", context, ")");
    ProbeResult r = run_probe(*model, batches, o.probe);
    // Bin flips against the previous model in the list, reloaded when an
    // earlier invocation evaluated it.
    if (m > 0 && !previous) previous = load_hf_model(models[m - 1].dir, o.dtype, o.device);
    if (previous) fill_bin_flips(r, *previous, *model, o.probe);

    Json rec = r.to_json();
    rec.set("kind", "probe");
    rec.set("step", models[m].step);
    rec.set("model", models[m].dir);
    add_grid_alignment(rec, r);
    append_line_durably(jsonl_path, rec.dump() + "\n", fault.torn_record == int64_t(evaluated) + 1);
    records.push_back(rec);
    ++evaluated;
    if (fault.kill_after == int64_t(evaluated)) ::raise(SIGKILL);

    std::string line = "FP ppl " + fmt_double(r.fp_ppl, 5);
    for (size_t f = 0; f < r.formats.size(); ++f) {
      const ProbeResult::Fmt& x = r.formats[f];
      line += ", " + x.name + " ppl " + fmt_double(x.ppl, 5) + " gap " +
              fmt_double(x.gap_pct, 4) + "%";
      const double flips = r.mean_bin_flips(f);
      if (std::isfinite(flips)) line += " flips " + fmt_double(100 * flips, 3) + "%";
    }
    line += ", kurtosis " + fmt_double(r.mean_kurtosis(), 4);
    std::printf("[%zu/%zu] step %lld %s: %s\n", m + 1, models.size(),
                static_cast<long long>(models[m].step), models[m].dir.c_str(), line.c_str());
    if (progress) std::fflush(stdout);
    write_outputs(o, records, base);
    previous = std::move(model);
  }
  if (evaluated == 0) write_outputs(o, records, base);
  if (skipped > 0)
    std::printf("skipped %zu model(s) already in %s (resume)\n", skipped, jsonl_path.c_str());
  const size_t left = models.size() - skipped - evaluated;
  if (left > 0)
    std::printf("%zu model(s) not evaluated yet (--max-models); rerun to continue\n", left);
  std::printf("wrote %s, %s, %s, %s\n", jsonl_path.c_str(),
              (fs::path(o.out) / "probe.csv").string().c_str(),
              (fs::path(o.out) / "table.csv").string().c_str(),
              (fs::path(o.out) / "report.html").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("probe", [&] { return run(argc, argv); });
}
