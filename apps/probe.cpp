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
#include <algorithm>
#include <cctype>
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
#include "trainer/metrics.h"
#include "trainer/report.h"

using namespace gl;
using namespace gl::apps;
namespace fs = std::filesystem;

namespace {

const char* kUsage =
    "usage: ./probe MODEL_DIR... --data FILE [options]\n"
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
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

struct Options {
  std::vector<std::string> models;
  std::string data, tokenizer, token_dtype, out = "probe_out";
  Device device = Device::cpu();
  DType dtype = DType::F32;
  int64_t context = 0, batch = 1, max_tokens = -1;
  ProbeOptions probe;
  bool progress = false;
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

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> formats = {"int4_probe", "int8_probe"};
  ArgCursor args(argc, argv);
  while (!args.done()) {
    const std::string a = args.next();
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
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option '" + a + "'");
    else o.models.push_back(a);
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
           "file '", o.data, "'; pass --tokenizer FILE, a .gltok shard or a token file)");
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

int run(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  const std::vector<ModelEntry> models = expand_models(o.models);
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
  const std::string csv_path = (fs::path(o.out) / "probe.csv").string();
  // Each record is appended and flushed as soon as its checkpoint is done, so
  // a long sweep (154 Pythia checkpoints) keeps what it measured if stopped.
  std::ofstream jsonl(jsonl_path, std::ios::trunc);
  std::ofstream csv(csv_path, std::ios::trunc);
  GL_CHECK(jsonl && csv, o.out, ": cannot write probe.jsonl / probe.csv");
  csv << "step,model,format,fp_nll,fp_ppl,nll,ppl,gap_pct,mean_kurtosis,bin_flips\n";

  std::vector<Json> records;
  ReportSummary table;
  std::unique_ptr<LanguageModel> previous;
  for (size_t m = 0; m < models.size(); ++m) {
    if (m > 0) model = load_hf_model(models[m].dir, o.dtype, o.device);
    const ModelConfig& cfg = model->config();
    GL_CHECK(cfg.vocab_size == vocab && context <= cfg.max_positions, models[m].dir,
             ": vocabulary ", cfg.vocab_size, " / ", cfg.max_positions,
             " positions do not fit the tokens of ", models[0].dir, " (vocabulary ", vocab,
             ", context ", context, ")");
    ProbeResult r = run_probe(*model, batches, o.probe);
    if (previous) fill_bin_flips(r, *previous, *model, o.probe);

    Json rec = r.to_json();
    rec.set("kind", "probe");
    rec.set("step", models[m].step);
    rec.set("model", models[m].dir);
    records.push_back(rec);
    jsonl << rec.dump() << "\n" << std::flush;

    std::string line = "FP ppl " + fmt_double(r.fp_ppl, 5);
    for (size_t f = 0; f < r.formats.size(); ++f) {
      const ProbeResult::Fmt& x = r.formats[f];
      csv << models[m].step << "," << csv_field(models[m].dir) << "," << csv_field(x.name) << ","
          << fmt_double(r.fp_nll, 9) << "," << fmt_double(r.fp_ppl, 9) << ","
          << fmt_double(x.nll, 9) << "," << fmt_double(x.ppl, 9) << ","
          << fmt_double(x.gap_pct, 9) << "," << fmt_double(r.mean_kurtosis(), 9) << ","
          << fmt_double(r.mean_bin_flips(f), 9) << "\n";
      line += ", " + x.name + " ppl " + fmt_double(x.ppl, 5) + " gap " +
              fmt_double(x.gap_pct, 4) + "%";
      const double flips = r.mean_bin_flips(f);
      if (std::isfinite(flips)) line += " flips " + fmt_double(100 * flips, 3) + "%";
    }
    csv << std::flush;
    line += ", kurtosis " + fmt_double(r.mean_kurtosis(), 4);
    table.push_back({"step " + std::to_string(models[m].step), line});
    std::printf("[%zu/%zu] step %lld %s: %s\n", m + 1, models.size(),
                static_cast<long long>(models[m].step), models[m].dir.c_str(), line.c_str());
    if (progress) std::fflush(stdout);
    previous = std::move(model);
  }

  ReportSummary summary = {{"models", std::to_string(models.size())},
                           {"data", o.data + " (" + std::to_string(tokens.size()) + " tokens, " +
                                        std::to_string(windows.size()) + " windows of " +
                                        std::to_string(context) + ")"}};
  std::string fmts, layers;
  for (const QuantSpec& s : o.probe.formats) fmts += (fmts.empty() ? "" : ", ") + to_string(s);
  for (const std::string& l : o.probe.layers) layers += (layers.empty() ? "" : ", ") + l;
  summary.push_back({"formats", fmts});
  summary.push_back({"layers", layers});
  for (auto& row : table) summary.push_back(std::move(row));
  write_file_atomic((fs::path(o.out) / "report.html").string(),
                    render_report_html("gridlock probe", summary, records,
                                       probe_figures(o.probe.formats)));
  std::printf("wrote %s, %s, %s\n", jsonl_path.c_str(), csv_path.c_str(),
              (fs::path(o.out) / "report.html").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_program("probe", [&] { return run(argc, argv); });
}
