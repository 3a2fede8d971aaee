// Recipe schema, loading, validation and the resolved dump (see recipe.h).
#include "trainer/recipe.h"

#include <yaml-cpp/yaml.h>

#include "quant/quantizer.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace gl {

namespace {

namespace fs = std::filesystem;
using T = RecipeType;
constexpr double kInf = std::numeric_limits<double>::infinity();

RecipeKey key(std::string path, T type, std::string def, std::string doc) {
  RecipeKey k;
  k.path = std::move(path);
  k.type = type;
  k.def = std::move(def);
  k.doc = std::move(doc);
  return k;
}
RecipeKey ranged(RecipeKey k, double lo, double hi, bool lo_open = false, bool hi_open = false) {
  k.min = lo;
  k.max = hi;
  k.min_open = lo_open;
  k.max_open = hi_open;
  return k;
}
RecipeKey choice(std::string path, std::vector<std::string> values, std::string doc) {
  RecipeKey k = key(std::move(path), T::ENUM, values.front(), std::move(doc));
  k.values = std::move(values);
  return k;
}
RecipeKey required(RecipeKey k) {
  k.required = true;
  k.def.clear();
  return k;
}

std::vector<RecipeKey> build_schema() {
  const std::string size_doc = "overrides the preset's value (0: keep the preset's)";
  std::vector<std::string> kinds = schedule_kinds();
  auto sched_kind = choice("schedule.kind", kinds, "LR schedule (see the schedule kinds below)");
  sched_kind.def = "cosine";
  return {
      required(key("run.name", T::STRING, "", "run name; the run directory is out_dir/name")),
      ranged(key("run.seed", T::INT, "1234", "seed of initialisation and data order"), 0, kInf),
      key("run.out_dir", T::STRING, "runs", "parent directory of run directories"),
      choice("run.device", {"cpu", "cuda"}, "where the model trains"),
      key("run.tf32", T::BOOL, "false",
          "cuda: f32 matrix products on the tensor cores in TF32 (~3e-4 relative error; off: exact f32)"),
      choice("run.precision", {"f32", "bf16", "f16"},
             "matrix products (matmul, linear; forward and backward) round both operands to bf16/f16 and "
             "accumulate in f32, as torch.autocast; weights, gradients, optimizer state and all other ops stay "
             "f32. f16 adds dynamic loss scaling. cuda: tensor cores through cuBLASLt; cpu: the same rounding "
             "emulated (same numbers, not faster)"),
      ranged(key("run.loss_scale_init", T::FLOAT, "65536",
                 "run.precision f16: the initial dynamic loss scale (torch GradScaler's 2^16)"),
             1, kInf),
      ranged(key("run.loss_scale_growth_interval", T::INT, "2000",
                 "run.precision f16: finite steps in a row before the loss scale doubles"),
             1, kInf),

      choice("model.preset",
             {"pythia-14m", "pythia-31m", "pythia-70m", "pythia-160m", "pythia-410m", "pythia-1b", "gpt2"},
             "architecture and sizes to start from (Hugging Face config.json values)"),
      key("model.hf_dir", T::STRING, "",
          "a Hugging Face model directory whose config.json replaces the preset (empty: use the preset)"),
      choice("model.dtype", {"f32", "f64"}, "parameter and activation dtype"),
      choice("model.norm", {"layernorm", "rmsnorm", "ssnorm"}, "normalisation layers (ssnorm: single-scale RMSNorm)"),
      ranged(key("model.hidden_size", T::INT, "0", size_doc), 0, kInf),
      ranged(key("model.num_layers", T::INT, "0", size_doc), 0, kInf),
      ranged(key("model.num_heads", T::INT, "0", size_doc), 0, kInf),
      ranged(key("model.intermediate_size", T::INT, "0", size_doc), 0, kInf),
      ranged(key("model.vocab_size", T::INT, "0", size_doc), 0, kInf),
      ranged(key("model.max_positions", T::INT, "0", size_doc), 0, kInf),

      choice("data.kind", {"corpus", "shards", "megatron"},
             "corpus: the Debian English corpus; shards: our token shards; megatron: .bin/.idx"),
      key("data.paths", T::STRINGS, "[]", "input files (shards: the shard files; megatron: the path prefix)"),
      ranged(key("data.seq_len", T::INT, "256", "tokens per sequence (T)"), 1, kInf),
      ranged(key("data.batch_size", T::INT, "8", "sequences per micro-batch (B)"), 1, kInf),
      ranged(key("data.grad_accum", T::INT, "1", "micro-batches per optimizer step"), 1, kInf),
      key("data.val_paths", T::STRINGS, "[]",
          "validation input (shards: shard files; megatron: a prefix, default data.paths); corpus: unused"),
      key("data.cache_dir", T::STRING, "cache", "corpus: where the tokenizer and token shards are cached"),
      ranged(key("data.fork_step", T::INT, "0",
                 "megatron: the Pythia step continued from; training reads sequences from fork_step x 1024"),
             0, kInf),
      ranged(key("data.fork_offset", T::INT, "0", "megatron: extra sequences skipped (one offset per seed)"), 0,
             kInf),
      ranged(key("data.val_start", T::INT, "146432000",
                 "megatron: first validation sequence (default 143000 x 1024, past Pythia's training)"),
             0, kInf),

      choice("optim.name", {"adamw", "sgd", "sam", "muon"}, "optimizer (sam wraps optim.sam_base)"),
      choice("optim.sam_base", {"adamw", "sgd"}, "the optimizer SAM wraps"),
      ranged(key("optim.lr", T::FLOAT, "0.0006", "peak learning rate (the schedule's peak unless it sets one)"),
             0, kInf),
      ranged(key("optim.betas", T::FLOATS, "[0.9, 0.95]", "AdamW (beta1, beta2), each in [0, 1)"), 0, 1, false,
             true),
      ranged(key("optim.eps", T::FLOAT, "1e-08", "AdamW epsilon (added to sqrt(v))"), 0, kInf, true),
      ranged(key("optim.weight_decay", T::FLOAT, "0.1", "decoupled weight decay (not on norms and biases)"), 0,
             kInf),
      ranged(key("optim.momentum", T::FLOAT, "0.9", "SGD and Muon momentum"), 0, 1, false, true),
      ranged(key("optim.rho", T::FLOAT, "0.05", "SAM neighbourhood radius"), 0, kInf, true),
      key("optim.adaptive", T::BOOL, "false", "adaptive SAM (ASAM): scale the ascent by |w|"),
      ranged(key("optim.clip_grad_norm", T::FLOAT, "1", "global gradient-norm clip (0: off)"), 0, kInf),
      ranged(key("optim.zero_stage", T::INT, "0",
                 "1: shard the optimizer state over the data-parallel ranks (ZeRO-1, dist/zero.h): "
                 "its memory / ranks, the same results and checkpoints as 0"),
             0, 1),

      key("dist.overlap_grad_reduce", T::BOOL, "true",
          "data parallel: all-reduce the gradients in buckets while backward runs (dist/grad_reducer.h); "
          "false: one all-reduce after backward. Bit-identical results either way"),
      ranged(key("dist.grad_bucket_mb", T::FLOAT, "25",
                 "data parallel, overlap on: MiB of gradients per all-reduce bucket (torch DDP's 25)"),
             0, 4096, true, false),

      sched_kind,
      key("schedule.params", T::MAP, "{}",
          "the kind's parameters and options; peak defaults to optim.lr and total to train.steps"),

      ranged(key("train.steps", T::INT, "1000", "optimizer steps"), 1, kInf),
      ranged(key("train.log_every", T::INT, "10", "steps between metrics lines"), 1, kInf),
      ranged(key("train.eval_every", T::INT, "100", "steps between validation evaluations (0: only at the end)"),
             0, kInf),
      ranged(key("train.eval_batches", T::INT, "20", "validation batches per evaluation"), 1, kInf),
      ranged(key("train.save_every", T::INT, "500", "steps between checkpoints (0: only at the end)"), 0, kInf),
      ranged(key("train.keep_last", T::INT, "2", "checkpoints kept (0: all)"), 0, kInf),
      ranged(key("train.threads", T::INT, "0", "CPU threads (OpenMP; 0: OMP_NUM_THREADS or all cores)"), 0,
             kInf),
      key("train.resume", T::BOOL, "false", "continue from the newest checkpoint in the run directory"),
      key("train.init_from", T::STRING, "", "Hugging Face model directory to start from (empty: random init)"),
      choice("train.sync_free", {"auto", "true", "false"},
             "decide each step's clipping and non-finite check on the device and read the loss one step "
             "late, so the host queues the next step instead of waiting for this one (optim/step_gate.h; the same numbers). auto: on "
             "for run.device cuda when the run allows it (adamw/sgd/muon, no f16 loss scaling or weight "
             "averaging, no spike detector on several processes) unless GRIDLOCK_SYNC_FREE=0"),
      choice("train.on_nonfinite", {"stop", "skip", "rollback"},
             "a non-finite loss or gradient: stop naming the step, skip that step, or roll back to the last "
             "checkpoint and lower the learning rate (event in metrics.jsonl and the report)"),
      ranged(key("train.spike_factor", T::FLOAT, "0",
                 "loss-spike detector: a loss above this x the mean of the last spike_window accepted "
                 "losses is a spike (0: off)"),
             0, kInf),
      ranged(key("train.spike_window", T::INT, "20", "steps in the spike detector's running mean"), 1, kInf),
      choice("train.on_spike", {"skip", "stop", "rollback"}, "a loss spike: as train.on_nonfinite"),
      ranged(key("train.rollback_lr_factor", T::FLOAT, "0.5",
                 "rollback: the learning rate (schedule x this, per rollback) from then on"),
             0, 1, true, false),
      ranged(key("train.max_rollbacks", T::INT, "3", "rollback: more rollbacks than this in a run stop it"), 0,
             kInf),

      choice("averaging.kind", {"none", "ema", "running"}, "weight averaging evaluated next to the raw weights"),
      ranged(key("averaging.decay", T::FLOAT, "0.999", "EMA decay"), 0, 1, false, true),
      ranged(key("averaging.start_step", T::INT, "0", "first step folded into the average"), 0, kInf),

      key("quant.scheme", T::STRING, "",
          "QAT: fake-quantize weights with this preset or spec string (quant/quantizer.h; empty: no QAT)"),
      key("quant.layers", T::STRINGS, "[attention, mlp]",
          "QAT: weights to quantize: attention, mlp, embeddings, head, all, or parameter-name patterns"),
      choice("quant.ste", {"plain", "clipped", "lsq"}, "QAT straight-through estimator (lsq: learned scales)"),
      ranged(key("quant.act_bits", T::INT, "0", "QAT: per-token activation fake quantization bits (0: off)"), 0, 8),
      ranged(key("quant.start_step", T::INT, "0", "QAT: first step trained with fake quantization"), 0, kInf),
      ranged(key("quant.probe_every", T::INT, "0",
                 "steps between INT4/INT8 probes on the validation batches (0: only at the end; -1: never)"),
             -1, kInf),
      key("quant.probe_formats", T::STRINGS, "[int4_probe, int8_probe]", "formats the probe evaluates"),
      ranged(key("quant.gptq_init", T::INT, "0",
                 "QAT: before step 1 of a fresh run, GPTQ-quantize quant.layers with quant.scheme on this many "
                 "training micro-batches (0: off)"),
             0, kInf),
      ranged(key("quant.distill", T::FLOAT, "0",
                 "knowledge distillation weight a: loss = a KL(teacher || model) + (1 - a) CE (0: off)"),
             0, 1),
      ranged(key("quant.distill_temperature", T::FLOAT, "1", "distillation temperature tau"), 0, kInf, true),
      key("quant.teacher", T::STRING, "",
          "the frozen teacher, a Hugging Face model directory (empty: train.init_from)"),
  };
}

const RecipeKey* find_key(const std::string& path) {
  for (const auto& k : recipe_schema())
    if (k.path == path) return &k;
  return nullptr;
}

bool is_section(const std::string& path) {
  const auto s = recipe_sections();
  return std::find(s.begin(), s.end(), path) != s.end();
}

[[noreturn]] void fail(const std::string& where, const std::string& msg) { throw Error(where + ": " + msg); }

std::string fmt_num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// GL_CHECK messages end with " [folder/file.cpp:123]"; recipe errors carry
// the recipe's location instead.
std::string strip_location(const std::string& msg) {
  const size_t open = msg.rfind(" [");
  if (open == std::string::npos || msg.empty() || msg.back() != ']') return msg;
  const std::string loc = msg.substr(open + 2, msg.size() - open - 3);
  const size_t colon = loc.rfind(':');
  if (colon == std::string::npos || colon + 1 >= loc.size()) return msg;
  for (size_t i = colon + 1; i < loc.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(loc[i]))) return msg;
  return msg.substr(0, open);
}

bool parse_int(const std::string& s, int64_t& out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+' && (b + 1 == e || b[1] != '-')) ++b;  // from_chars takes no '+'
  auto r = std::from_chars(b, e, out);
  return b != e && r.ec == std::errc() && r.ptr == e;
}

bool parse_float(const std::string& s, double& out) {
  if (s == "inf" || s == ".inf" || s == ".Inf" || s == "+inf" || s == "+.inf") return out = kInf, true;
  if (s == "-inf" || s == "-.inf" || s == "-.Inf") return out = -kInf, true;
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+' && (b + 1 == e || b[1] != '-')) ++b;  // from_chars takes no '+'
  auto r = std::from_chars(b, e, out);
  return b != e && r.ec == std::errc() && r.ptr == e && std::isfinite(out);
}

std::string node_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  if (n.IsNull()) return "";
  if (n.IsSequence()) return "a list";
  return "a map";
}

const char* type_word(T t) {
  switch (t) {
    case T::INT: return "an int";
    case T::FLOAT: return "a float";
    case T::BOOL: return "a bool (true or false)";
    case T::STRING: return "a string";
    case T::ENUM: return "a string";
    case T::STRINGS: return "a list of strings";
    case T::FLOATS: return "a list of floats";
    case T::MAP: return "a map";
  }
  return "?";
}

bool in_range(const RecipeKey& k, double v) {
  const bool lo = k.min_open ? v > k.min : v >= k.min;
  const bool hi = k.max_open ? v < k.max : v <= k.max;
  return lo && hi;
}

// A scalar of type t (INT/FLOAT/BOOL/STRING/ENUM) into v, with type and range checks.
void parse_scalar(const RecipeKey& k, const std::string& label, const YAML::Node& n, const std::string& where,
                  RecipeValue& v) {
  auto bad = [&]() { fail(where, str(label, ": expected ", type_word(k.type), ", got '", node_text(n), "'")); };
  if (n.IsNull() && k.type == T::STRING) return void(v.s.clear());  // `init_from:` is ""
  if (!n.IsScalar()) bad();
  const std::string& s = n.Scalar();
  auto range = [&](double x) {
    if (!in_range(k, x)) fail(where, str(label, " = ", s, " is out of range ", recipe_range_text(k)));
  };
  switch (k.type) {
    case T::INT:
      if (!parse_int(s, v.i)) bad();
      range(double(v.i));
      break;
    case T::FLOAT:
    case T::FLOATS: {
      double x;
      if (!parse_float(s, x)) {
        if (k.type == T::FLOAT) bad();
        fail(where, str(label, ": expected a float, got '", s, "'"));
      }
      range(x);
      if (k.type == T::FLOAT) v.f = x;
      else v.floats.push_back(x);
      break;
    }
    case T::BOOL:
      if (s == "true" || s == "True") v.b = true;
      else if (s == "false" || s == "False") v.b = false;
      else bad();
      break;
    case T::STRING:
    case T::STRINGS:
      if (k.type == T::STRING) v.s = s;
      else v.strs.push_back(s);
      break;
    case T::ENUM: {
      if (std::find(k.values.begin(), k.values.end(), s) == k.values.end()) {
        std::string all;
        for (const auto& a : k.values) all += (all.empty() ? "" : ", ") + a;
        fail(where, str(label, ": expected one of ", all, ", got '", s, "'"));
      }
      v.s = s;
      break;
    }
    case T::MAP: bad();
  }
}

std::string suggestion(const std::string& unknown) {
  std::vector<std::string> cands = recipe_sections();
  for (const auto& k : recipe_schema()) cands.push_back(k.path);
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : cands) {
    const size_t d = edit_distance(unknown, c);
    if (d < best_d) best_d = d, best = c;
  }
  if (best_d <= std::max<size_t>(2, unknown.size() / 4)) return " (did you mean '" + best + "'?)";
  // Same leaf name in another section ("optim.steps" -> "train.steps").
  const std::string leaf = unknown.substr(unknown.rfind('.') + 1);
  for (const auto& k : recipe_schema())
    if (k.path.substr(k.path.find('.') + 1) == leaf) return " (did you mean '" + k.path + "'?)";
  return "";
}

}  // namespace

const std::vector<RecipeKey>& recipe_schema() {
  static const std::vector<RecipeKey> schema = build_schema();
  return schema;
}

std::vector<std::string> recipe_sections() {
  std::vector<std::string> out;
  for (const auto& k : recipe_schema()) {
    const std::string s = k.path.substr(0, k.path.find('.'));
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

std::string recipe_type_name(const RecipeKey& k) {
  if (k.type == T::ENUM) {
    std::string all;
    for (const auto& a : k.values) all += (all.empty() ? "" : ", ") + a;
    return "one of: " + all;
  }
  static const char* names[] = {"int", "float", "bool", "string", "enum", "list of strings", "list of floats", "map"};
  return names[int(k.type)];
}

std::string recipe_range_text(const RecipeKey& k) {
  if (std::isinf(k.min) && std::isinf(k.max)) return "";
  return str(k.min_open || std::isinf(k.min) ? "(" : "[", fmt_num(k.min), ", ", fmt_num(k.max),
             k.max_open || std::isinf(k.max) ? ")" : "]");
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Builds a Recipe layer by layer: defaults, the base chain, the file, overrides.
struct RecipeLoader {
  Recipe r;

  // Sets schema key k from node n (any shape the key accepts).
  void set(const RecipeKey& k, const YAML::Node& n, const std::string& where, const std::string& layer) {
    if (k.type == T::MAP) return set_params(n, where, layer);
    RecipeValue v;
    v.type = k.type;
    v.origin = where;
    if (k.type == T::STRINGS || k.type == T::FLOATS) {
      if (n.IsNull()) {  // `paths:` is []
      } else if (n.IsScalar()) {  // a single value is a one-element list
        parse_scalar(k, k.path, n, where, v);
      } else if (n.IsSequence()) {
        for (size_t i = 0; i < n.size(); ++i) parse_scalar(k, str(k.path, "[", i, "]"), n[i], where, v);
      } else {
        fail(where, str(k.path, ": expected ", type_word(k.type), ", got '", node_text(n), "'"));
      }
    } else {
      parse_scalar(k, k.path, n, where, v);
    }
    if (k.path == "schedule.kind") {
      auto old = r.values_.find(k.path);
      if (old != r.values_.end() && old->second.s != v.s) {
        // The inherited params belong to the old kind.
        for (auto it = r.sched_.begin(); it != r.sched_.end();)
          it = it->second.layer != layer ? r.sched_.erase(it) : std::next(it);
      }
    }
    r.values_[k.path] = v;
  }

  void set_param(const std::string& name, const YAML::Node& n, const std::string& where, const std::string& layer) {
    if (!n.IsScalar())
      fail(where, str("schedule.params.", name, ": expected a number or a string, got '", node_text(n), "'"));
    RecipeScheduleParam p;
    p.text = n.Scalar();
    p.is_number = parse_float(p.text, p.number);
    p.origin = where;
    p.layer = layer;
    r.sched_[name] = p;
  }

  void set_params(const YAML::Node& n, const std::string& where, const std::string& layer) {
    if (n.IsNull()) return;
    if (!n.IsMap()) fail(where, str("schedule.params: expected a map, got '", node_text(n), "'"));
    for (auto it = n.begin(); it != n.end(); ++it) {
      const bool in_file = layer != "default" && layer != "command line";
      const std::string w = in_file ? line_of(where, it->first) : where;
      set_param(it->first.as<std::string>(), it->second, w, layer);
    }
  }

  // "FILE:LINE" for a node of the file whose "FILE:LINE" of some node is `where`.
  static std::string line_of(const std::string& where, const YAML::Node& n) {
    const std::string file = where.substr(0, where.rfind(':'));
    return str(file, ":", n.Mark().line + 1);
  }

  void defaults() {
    for (const auto& k : recipe_schema())
      if (!k.required) set(k, YAML::Load(k.def), "default", "default");
  }

  // Applies map node `m` under `prefix` ("" = top level) from `file`.
  void apply_map(const YAML::Node& m, const std::string& prefix, const std::string& file) {
    std::set<std::string> seen;
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string where = str(file, ":", it->first.Mark().line + 1);
      if (!it->first.IsScalar()) fail(where, "keys must be plain names");
      const std::string name = it->first.Scalar();
      const std::string path = prefix.empty() ? name : prefix + "." + name;
      if (!seen.insert(name).second) fail(where, "duplicate key '" + path + "'");
      if (prefix.empty() && name == "base") continue;  // handled by load_text
      if (const RecipeKey* k = find_key(path)) {
        set(*k, it->second, where, file);
      } else if (is_section(path)) {
        if (!it->second.IsMap() && !it->second.IsNull())
          fail(where, str("'", path, "' is a section: expected a map of keys, got '", node_text(it->second), "'"));
        if (it->second.IsMap()) apply_map(it->second, path, file);
      } else {
        fail(where, "unknown key '" + path + "'" + suggestion(path));
      }
    }
  }

  // One recipe file's text; `stack` holds the canonical paths being loaded (cycles).
  void load_text(const std::string& text, const std::string& file, std::vector<std::string>& stack,
                 std::vector<std::string>& names) {
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      fail(str(file, ":", e.mark.line + 1), "invalid YAML: " + e.msg);
    }
    if (root.IsNull()) return;
    if (!root.IsMap()) fail(file + ":1", "a recipe must be a map of sections");
    for (auto it = root.begin(); it != root.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar() != "base") continue;
      const std::string where = str(file, ":", it->first.Mark().line + 1);
      if (!it->second.IsScalar()) fail(where, "base: expected a file name, got '" + node_text(it->second) + "'");
      const fs::path rel = it->second.Scalar();
      const std::string base = (rel.is_absolute() ? rel : fs::path(file).parent_path() / rel).lexically_normal().string();
      load_file(base, where, stack, names);
    }
    apply_map(root, "", file);
  }

  void load_file(const std::string& file, const std::string& from, std::vector<std::string>& stack,
                 std::vector<std::string>& names) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      if (from.empty()) throw Error("cannot open recipe '" + file + "'");
      fail(from, "base: cannot open '" + file + "'");
    }
    std::error_code ec;
    const std::string canon = fs::weakly_canonical(file, ec).string();
    for (size_t i = 0; i < stack.size(); ++i) {
      if (stack[i] != canon) continue;
      std::string chain;
      for (size_t j = i; j < names.size(); ++j) chain += names[j] + " -> ";
      fail(from, "base: cycle " + chain + file);
    }
    std::stringstream ss;
    ss << in.rdbuf();
    stack.push_back(canon);
    names.push_back(file);
    load_text(ss.str(), file, stack, names);
    stack.pop_back();
    names.pop_back();
  }

  void override_one(const std::string& arg) {
    const std::string where = "command line";
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) fail(where, "'" + arg + "' is not key.path=value");
    const std::string path = arg.substr(0, eq), value = arg.substr(eq + 1);
    const std::string pp = "schedule.params.";
    if (path.compare(0, pp.size(), pp) == 0 && path.size() > pp.size() &&
        path.find('.', pp.size()) == std::string::npos) {
      return set_param(path.substr(pp.size()), YAML::Node(value), where, where);
    }
    const RecipeKey* k = find_key(path);
    if (!k) fail(where, "unknown key '" + path + "'" + suggestion(path));
    YAML::Node n(value);
    const bool flow = !value.empty() && (value[0] == '[' || value[0] == '{');
    if (k->type == T::MAP || ((k->type == T::STRINGS || k->type == T::FLOATS) && flow)) {
      try {
        n = YAML::Load(value);
      } catch (const YAML::Exception& e) {
        fail(where, path + ": invalid YAML '" + value + "': " + e.msg);
      }
    } else if (k->type == T::STRINGS || k->type == T::FLOATS) {
      n = YAML::Node(YAML::NodeType::Sequence);  // a,b,c
      std::stringstream ss(value);
      for (std::string item; std::getline(ss, item, ',');) n.push_back(item);
    }
    set(*k, n, where, where);
  }

  Recipe finish(const std::string& file, const std::vector<std::string>& overrides) {
    for (const auto& o : overrides) override_one(o);
    for (const auto& k : recipe_schema())
      if (k.required && !r.values_.count(k.path))
        fail(file, "missing required key '" + k.path + "' (" + k.doc + ")");
    r.file_ = file;
    r.validate();
    return r;
  }
};

Recipe Recipe::load(const std::string& path, const std::vector<std::string>& overrides) {
  RecipeLoader l;
  l.defaults();
  std::vector<std::string> stack, names;
  l.load_file(path, "", stack, names);
  return l.finish(path, overrides);
}

Recipe Recipe::parse(const std::string& yaml, const std::string& file, const std::vector<std::string>& overrides) {
  RecipeLoader l;
  l.defaults();
  std::error_code ec;
  std::vector<std::string> stack = {fs::weakly_canonical(file, ec).string()}, names = {file};
  l.load_text(yaml, file, stack, names);
  return l.finish(file, overrides);
}

const RecipeValue& Recipe::at(const std::string& key, RecipeType t) const {
  auto it = values_.find(key);
  GL_CHECK(it != values_.end(), "recipe: unknown key '", key, "'");
  const bool ok = it->second.type == t || (t == T::STRING && it->second.type == T::ENUM);
  GL_CHECK(ok, "recipe: ", key, " is ", type_word(it->second.type), ", not ", type_word(t));
  return it->second;
}

int64_t Recipe::get_int(const std::string& key) const { return at(key, T::INT).i; }
double Recipe::get_float(const std::string& key) const { return at(key, T::FLOAT).f; }
bool Recipe::get_bool(const std::string& key) const { return at(key, T::BOOL).b; }
const std::string& Recipe::get_string(const std::string& key) const { return at(key, T::STRING).s; }
const std::vector<std::string>& Recipe::get_strings(const std::string& key) const {
  return at(key, T::STRINGS).strs;
}
const std::vector<double>& Recipe::get_floats(const std::string& key) const { return at(key, T::FLOATS).floats; }
const std::string& Recipe::origin(const std::string& key) const {
  auto it = values_.find(key);
  GL_CHECK(it != values_.end(), "recipe: unknown key '", key, "'");
  return it->second.origin;
}

ScheduleSpec Recipe::schedule_spec() const {
  ScheduleSpec s;
  s.kind = get_string("schedule.kind");
  for (const auto& [name, p] : sched_) {
    if (p.is_number) s.params[name] = p.number;
    else s.options[name] = p.text;
  }
  // peak <- optim.lr and total <- train.steps where the kind (or oli's base) has them.
  std::vector<ScheduleParam> table = gl::schedule_params(s.kind);
  if (s.kind == "oli") {
    auto b = s.options.find("base");
    const std::string base = b != s.options.end() ? b->second : schedule_options("oli").front().values.front();
    if (base != "oli" && std::find(schedule_kinds().begin(), schedule_kinds().end(), base) != schedule_kinds().end()) {
      const auto more = gl::schedule_params(base);
      table.insert(table.end(), more.begin(), more.end());
    }
  }
  for (const auto& p : table) {
    if (p.name == "peak" && !s.params.count("peak")) s.params["peak"] = get_float("optim.lr");
    if (p.name == "total" && !s.params.count("total")) s.params["total"] = double(get_int("train.steps"));
  }
  return s;
}

AveragingSpec Recipe::averaging_spec() const {
  AveragingSpec a;
  a.kind = get_string("averaging.kind");
  a.decay = get_float("averaging.decay");
  a.start_step = get_int("averaging.start_step");
  return a;
}

ModelConfig Recipe::model_config() const {
  ModelConfig c = ModelConfig::preset(get_string("model.preset"));
  auto size = [&](const char* k, int64_t& field) {
    if (get_int(k) > 0) field = get_int(k);
  };
  size("model.hidden_size", c.hidden_size);
  size("model.num_layers", c.num_layers);
  size("model.num_heads", c.num_heads);
  size("model.intermediate_size", c.intermediate_size);
  size("model.vocab_size", c.vocab_size);
  size("model.max_positions", c.max_positions);
  const std::string& n = get_string("model.norm");
  c.norm = n == "rmsnorm" ? NormKind::RMSNORM : n == "ssnorm" ? NormKind::SSNORM : NormKind::LAYERNORM;
  return c;
}

// Cross-key checks; each error names the location of the key that set the value.
void Recipe::validate() const {
  const std::string& precision = get_string("run.precision");
  if (precision != "f32" && get_string("model.dtype") != "f32")
    fail(origin("run.precision"), str("run.precision: ", precision, " needs model.dtype: f32 (the master ",
                                      "weights are f32; f64 products are never rounded), got ",
                                      get_string("model.dtype")));
  // Compared with the defaults, not by origin: a resolved recipe sets every key.
  if (precision != "f16" && (get_float("run.loss_scale_init") != 65536.0 ||
                             get_int("run.loss_scale_growth_interval") != 2000)) {
    const char* k = get_float("run.loss_scale_init") != 65536.0 ? "run.loss_scale_init"
                                                                 : "run.loss_scale_growth_interval";
    fail(origin(k), str(k, ": loss scaling applies only with run.precision: f16 (this recipe has ", precision,
                        ")"));
  }
  if (get_floats("optim.betas").size() != 2)
    fail(origin("optim.betas"), str("optim.betas: expected 2 values (beta1, beta2), got ",
                                    get_floats("optim.betas").size()));
  if (get_string("data.kind") != "corpus" && get_strings("data.paths").empty())
    fail(origin("data.kind"), "data.paths: required when data.kind is " + get_string("data.kind"));

  static const char* sizes[] = {"model.hidden_size", "model.num_layers", "model.num_heads",
                                "model.intermediate_size", "model.vocab_size", "model.max_positions"};
  std::string model_where = origin("model.preset");
  for (const char* k : sizes) {
    if (get_int(k) == 0) continue;
    if (!get_string("model.hf_dir").empty())
      fail(origin(k), str(k, ": size overrides need model.preset (model.hf_dir brings its own config.json)"));
    if (model_where == "default") model_where = origin(k);
  }
  if (get_string("model.hf_dir").empty()) {
    try {
      model_config().validate("model");
    } catch (const Error& e) {
      fail(model_where, strip_location(e.what()));
    }
  }

  try {
    make_schedule(schedule_spec());
  } catch (const Error& e) {
    const std::string msg = strip_location(e.what());
    // Point at the parameter the message names ('x' or " x "), else at the kind.
    auto names = [&](const std::string& n) {
      return msg.find("'" + n + "'") != std::string::npos || msg.find(" " + n + " ") != std::string::npos;
    };
    std::string where = origin("schedule.kind");
    for (const auto& [name, p] : sched_)
      if (names(name)) where = p.origin;
    if (!sched_.count("peak") && names("peak")) where = origin("optim.lr");
    if (!sched_.count("total") && names("total")) where = origin("train.steps");
    fail(where, msg);
  }

  // Quantization schemes are checked by the parser that will build them.
  auto check_scheme = [&](const std::string& key, const std::string& text) {
    try {
      gl::validate(quant_spec_from_string(text));
    } catch (const Error& e) {
      fail(origin(key), key + ": " + strip_location(e.what()));
    }
  };
  if (!get_string("quant.scheme").empty()) check_scheme("quant.scheme", get_string("quant.scheme"));
  for (const std::string& f : get_strings("quant.probe_formats")) check_scheme("quant.probe_formats", f);
  if (get_float("quant.distill") > 0 && get_string("quant.teacher").empty() &&
      get_string("train.init_from").empty())
    fail(origin("quant.distill"),
         "quant.distill needs a teacher: quant.teacher, or train.init_from (whose model is the teacher)");
  if (get_int("quant.gptq_init") > 0 && get_string("quant.scheme").empty())
    fail(origin("quant.gptq_init"), "quant.gptq_init needs quant.scheme (the scheme GPTQ quantizes to)");
  const int64_t ab = get_int("quant.act_bits");
  if (ab != 0 && (ab < 2 || ab > 8))
    fail(origin("quant.act_bits"), str("quant.act_bits = ", ab, ": expected 0 (off) or 2..8"));
  if (get_string("quant.scheme").empty() && (ab != 0 || get_string("quant.ste") == "lsq"))
    fail(origin(ab != 0 ? "quant.act_bits" : "quant.ste"),
         "quant.act_bits and quant.ste=lsq need quant.scheme (the weights' QAT scheme)");
}

std::string Recipe::to_yaml() const {
  std::ostringstream os;
  os << "# resolved recipe: every key, defaults included (docs/recipes.md)\n";
  std::string section;
  for (const auto& k : recipe_schema()) {
    const std::string sec = k.path.substr(0, k.path.find('.')), name = k.path.substr(sec.size() + 1);
    if (sec != section) os << sec << ":\n", section = sec;
    os << "  " << name << ":";
    if (k.type == T::MAP) {
      if (sched_.empty()) os << " {}";
      for (const auto& [pn, p] : sched_) os << "\n    " << pn << ": " << (p.is_number ? fmt_num(p.number) : quote(p.text));
      os << "\n";
      continue;
    }
    const RecipeValue& v = values_.at(k.path);
    os << " ";
    switch (k.type) {
      case T::INT: os << v.i; break;
      case T::FLOAT: os << fmt_num(v.f); break;
      case T::BOOL: os << (v.b ? "true" : "false"); break;
      case T::STRING:
      case T::ENUM: os << quote(v.s); break;
      case T::STRINGS:
      case T::FLOATS: {
        os << "[";
        const size_t n = k.type == T::STRINGS ? v.strs.size() : v.floats.size();
        for (size_t i = 0; i < n; ++i)
          os << (i ? ", " : "") << (k.type == T::STRINGS ? quote(v.strs[i]) : fmt_num(v.floats[i]));
        os << "]";
        break;
      }
      case T::MAP: break;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace gl
