// End to end: the gridlock_eval and gridlock_sample binaries run on the tiny
// random-weight Hugging Face fixture models of tests/reference/fixtures/
// models (no tokenizer.json there, so data are token files and prompts
// token ids).
//   eval: its mean NLL equals LanguageModel::loss computed here over the
//     same windows (f32 and f64), counts of windows and tokens, batching.
//   sample: greedy decoding with the KV cache gives the same tokens as the
//     full recomputation (--no-cache), its first token is the argmax of
//     the logits computed here; a seed reproduces sampled output; the
//     context limit stops generation.
//   text: with a small byte-level BPE tokenizer.json written here next to a
//     fixture model, eval of a text file equals eval of its token file, and
//     sample takes --prompt TEXT and prints text.
//   both: exit codes (2 usage, 1 runtime) and one-line error messages.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "models/model.h"

using namespace gl;

namespace {

const std::string kModels = std::string(GRIDLOCK_SOURCE_DIR) + "/tests/reference/fixtures/models/";

struct Result {
  int code = -1;
  std::string out, err;
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("gridlock_test_programs_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// Runs `binary args` through the shell; stdout captured, stderr to a file.
Result run(const std::string& binary, const std::string& args) {
  const std::string err_path = temp_path("stderr.txt");
  const std::string cmd = "'" + std::string(binary) + "' " + args + " 2>'" + err_path + "'";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = apps::read_text_file(err_path);
  std::filesystem::remove(err_path);
  return r;
}

Result eval(const std::string& args) { return run(GRIDLOCK_EVAL_BIN, args); }
Result sample(const std::string& args) { return run(GRIDLOCK_SAMPLE_BIN, args); }

// Deterministic pseudo-random ids in [0, vocab) as a .u16 file.
std::vector<int32_t> write_tokens(const std::string& path, int64_t n, int64_t vocab) {
  std::vector<int32_t> ids;
  std::ofstream out(path, std::ios::binary);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = int32_t((i * 7919 + i * i * 31 + 3) % vocab);
    ids.push_back(id);
    const unsigned char b[2] = {static_cast<unsigned char>(id & 0xff),
                                static_cast<unsigned char>(id >> 8)};
    out.write(reinterpret_cast<const char*>(b), 2);
  }
  return ids;
}

// Mean NLL over eval_windows(context), from LanguageModel::loss per window.
double reference_nll(const LanguageModel& model, const std::vector<int32_t>& ids,
                     int64_t context) {
  NoGradGuard no_grad;
  double sum = 0;
  int64_t count = 0;
  for (const apps::Window& w : apps::eval_windows(int64_t(ids.size()), context)) {
    const int64_t n = w.length - 1;
    std::vector<int64_t> x(ids.begin() + w.start, ids.begin() + w.start + n);
    std::vector<int64_t> y(ids.begin() + w.start + 1, ids.begin() + w.start + 1 + n);
    const Var loss = model.loss(Tensor::from_data(x, {1, n}), Tensor::from_data(y, {1, n}));
    sum += loss.value().item() * double(n);
    count += n;
  }
  return sum / double(count);
}

std::vector<int64_t> json_ids(const Json& j, const std::string& key) {
  std::vector<int64_t> out;
  for (const Json& v : j.at(key).as_array()) out.push_back(v.as_int());
  return out;
}

// UTF-8 of code point cp (< 0x800 suffices for byte-level symbols).
std::string utf8(uint32_t cp) {
  if (cp < 0x80) return std::string(1, char(cp));
  return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
}

// A model directory: the fixture's config.json and weights (symlinked) and
// a byte-level BPE tokenizer.json whose ASCII symbols have ids below the
// fixture's vocabulary of 203: '!'..'~' 0..93, 'Ġ' (space) 94, 'Ċ'
// (newline) 95, merges Ġt 96, he 97, Ġthe 98, <|endoftext|> 99, the other
// 160 byte symbols 100..259 in byte order (so "€" encodes past the model's
// vocabulary).
std::string make_text_model_dir(const std::string& fixture) {
  namespace fs = std::filesystem;
  const std::string dir = temp_path("textmodel_" + fixture);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::remove(dir + "/" + f);
    fs::create_symlink(kModels + fixture + "/" + f, dir + "/" + f);
  }
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
  // the other bytes, in order, to U+0100, U+0101, ...
  std::vector<std::string> symbol(256);
  std::vector<int> others;
  for (int b = 0, n = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    symbol[size_t(b)] = utf8(printable ? uint32_t(b) : uint32_t(256 + n++));
  }
  Json vocab = Json::object();
  int64_t id = 0;
  for (int b = 33; b <= 126; ++b) vocab.set(symbol[size_t(b)], id++);
  vocab.set(symbol[32], id++);
  vocab.set(symbol[10], id++);
  const std::string G = symbol[32];
  vocab.set(G + "t", id++);
  vocab.set("he", id++);
  vocab.set(G + "the", id++);
  vocab.set("<|endoftext|>", id++);
  for (int b = 0; b < 256; ++b)
    if (!((b >= 33 && b <= 126) || b == 32 || b == 10)) vocab.set(symbol[size_t(b)], id++);
  Json merges = Json::array();
  for (const std::string& m : {G + " t", std::string("h e"), G + "t he"}) merges.push_back(m);
  Json model = Json::object();
  model.set("type", "BPE");
  model.set("dropout", nullptr);
  model.set("unk_token", nullptr);
  model.set("vocab", vocab);
  model.set("merges", merges);
  Json byte_level = Json::object();
  byte_level.set("type", "ByteLevel");
  byte_level.set("add_prefix_space", false);
  byte_level.set("trim_offsets", true);
  byte_level.set("use_regex", true);
  Json eos = Json::object();
  eos.set("id", int64_t(99));
  eos.set("content", "<|endoftext|>");
  eos.set("single_word", false);
  eos.set("lstrip", false);
  eos.set("rstrip", false);
  eos.set("normalized", false);
  eos.set("special", true);
  Json added = Json::array();
  added.push_back(eos);
  Json tok = Json::object();
  tok.set("version", "1.0");
  tok.set("truncation", nullptr);
  tok.set("padding", nullptr);
  tok.set("added_tokens", added);
  tok.set("normalizer", nullptr);
  tok.set("pre_tokenizer", byte_level);
  tok.set("post_processor", byte_level);
  tok.set("decoder", byte_level);
  tok.set("model", model);
  std::ofstream(dir + "/tokenizer.json") << tok.dump(2);
  return dir;
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("eval: mean NLL equals the model's loss over the same windows") {
  for (const char* name : {"neox_parallel", "gpt2"}) {
    CAPTURE(name);
    const std::string dir = kModels + name, data = temp_path(std::string(name) + ".u16");
    const std::unique_ptr<LanguageModel> model = load_hf_model(dir);
    const int64_t ctx = model->config().max_positions;  // 64
    const std::vector<int32_t> ids = write_tokens(data, 150, model->config().vocab_size);
    // 150 tokens in windows of 64: 64 + 64 + 22, scoring 63 + 63 + 21.
    const Result r = eval("'" + dir + "' '" + data + "' --json --batch 2");
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const Json j = Json::parse(r.out, "eval output");
    CHECK(j.at("windows").as_int() == 3);
    CHECK(j.at("tokens").as_int() == 147);
    CHECK(j.at("context").as_int() == ctx);
    const double want = reference_nll(*model, ids, ctx), got = j.at("mean_nll").as_double();
    CHECK(got == doctest::Approx(want).epsilon(1e-5));
    CHECK(j.at("ppl").as_double() == doctest::Approx(std::exp(got)).epsilon(1e-12));

    // f64 end to end: batching and windowing are exact to rounding.
    const Result r64 = eval("'" + dir + "' '" + data + "' --json --dtype f64 --batch 3");
    REQUIRE_MESSAGE(r64.code == 0, r64.err);
    const std::unique_ptr<LanguageModel> model64 = load_hf_model(dir, DType::F64);
    CHECK(Json::parse(r64.out).at("mean_nll").as_double() ==
          doctest::Approx(reference_nll(*model64, ids, ctx)).epsilon(1e-12));

    // --context and --max-tokens: 40 tokens in windows of 16: 16 + 16 + 8.
    const Result rs = eval("'" + dir + "' '" + data + "' --json --context=16 --max-tokens 40");
    REQUIRE_MESSAGE(rs.code == 0, rs.err);
    const Json js = Json::parse(rs.out);
    CHECK(js.at("windows").as_int() == 3);
    CHECK(js.at("tokens").as_int() == 37);
    const std::vector<int32_t> first40(ids.begin(), ids.begin() + 40);
    CHECK(js.at("mean_nll").as_double() ==
          doctest::Approx(reference_nll(*model, first40, 16)).epsilon(1e-5));

    // The human-readable report names the figures.
    const Result text = eval("'" + dir + "' '" + data + "'");
    CHECK(text.code == 0);
    CHECK(text.out.find("mean NLL") != std::string::npos);
    CHECK(text.out.find("PPL") != std::string::npos);
    std::filesystem::remove(data);
  }
}

TEST_CASE("eval and sample on text, with a tokenizer.json") {
  const std::string dir = make_text_model_dir("neox_parallel");
  const Tokenizer tok = Tokenizer::from_json_file(dir + "/tokenizer.json");
  std::string text;
  for (int i = 0; i < 12; ++i) text += "the theme then: the other thesis, " + std::to_string(i) + "\n";
  const std::vector<int32_t> ids = tok.encode(text);
  REQUIRE(ids.size() > 130);  // three windows of 64
  for (int32_t id : ids) REQUIRE(id < 100);
  CHECK(std::count(ids.begin(), ids.end(), 98) == 12 * 4);  // " the" merged: "Ġthe"
  const std::string txt = temp_path("text.txt"), u32 = temp_path("text.u32");
  std::ofstream(txt, std::ios::binary) << text;
  {
    std::ofstream out(u32, std::ios::binary);
    for (int32_t id : ids) {
      const unsigned char b[4] = {static_cast<unsigned char>(id), 0, 0, 0};
      out.write(reinterpret_cast<const char*>(b), 4);
    }
  }
  const Result rt = eval("'" + dir + "' '" + txt + "' --json"),
               rk = eval("'" + dir + "' '" + u32 + "' --json");
  REQUIRE_MESSAGE(rt.code == 0, rt.err);
  REQUIRE_MESSAGE(rk.code == 0, rk.err);
  const Json jt = Json::parse(rt.out), jk = Json::parse(rk.out);
  CHECK(jt.at("tokens").as_int() == jk.at("tokens").as_int());
  CHECK(jt.at("mean_nll").as_double() == jk.at("mean_nll").as_double());

  // "€" is bytes E2 82 AC; E2's symbol has id 230 here, past 203.
  std::ofstream(txt, std::ios::binary) << "caf\xE2\x82\xAC au lait";
  const Result bad = eval("'" + dir + "' '" + txt + "'");
  CHECK(bad.code == 1);
  CHECK(bad.err.find("token 3 encodes to id 230") != std::string::npos);
  CHECK(bad.err.find("outside the model's vocabulary of 203") != std::string::npos);

  // sample --prompt: prints the prompt, then the continuation's text.
  const Result s = sample("'" + dir + "' --prompt 'the theme' --temperature 0 --ignore-eos "
                          "--max-new-tokens 8");
  REQUIRE_MESSAGE(s.code == 0, s.err);
  CHECK(s.out.rfind("the theme", 0) == 0);
  const Result sj = sample("'" + dir + "' --prompt 'the theme' --temperature 0 --ignore-eos "
                           "--max-new-tokens 8 --json");
  REQUIRE_MESSAGE(sj.code == 0, sj.err);
  const Json j = Json::parse(sj.out);
  CHECK(json_ids(j, "prompt_tokens") == std::vector<int64_t>{83, 97, 98, 76, 68});
  std::vector<int32_t> gen;
  for (int64_t t : json_ids(j, "tokens")) gen.push_back(int32_t(t));
  CHECK(gen.size() == 8);
  // The streamed text is exactly prompt + decode(tokens) (raw bytes).
  CHECK(s.out == "the theme" + tok.decode(gen) + "\n");
  std::filesystem::remove_all(dir);
  std::filesystem::remove(txt);
  std::filesystem::remove(u32);
}

TEST_CASE("eval: bad input gives one error line and the right exit code") {
  const std::string dir = kModels + "neox_parallel";
  const std::string good = temp_path("good.u16"), bad = temp_path("bad.u16"),
                    odd = temp_path("odd.u16"), text = temp_path("text.txt"),
                    bin = temp_path("tokens.bin");
  write_tokens(good, 20, 203);
  {
    std::ofstream(bad, std::ios::binary).write("\x01\x00\x02\x00\x2c\x01", 6);  // id 300 at token 2
    std::ofstream(odd, std::ios::binary).write("\x01\x00\x02", 3);
    std::ofstream(text) << "some text\n";
    std::ofstream(bin, std::ios::binary).write("\x01\x00\x02\x00", 4);
  }
  struct Case {
    std::string args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases{
      {"'" + dir + "_missing' '" + good + "'", 1, "no such directory"},
      {"'" + dir + "' '" + good + ".missing'", 1, "no such file"},
      {"'" + dir + "' '" + bad + "'", 1, bad + ": token id 300 at token 2 (byte offset 4)"},
      {"'" + dir + "' '" + odd + "'", 1, "not a whole number of 16-bit tokens"},
      {"'" + dir + "' '" + text + "'", 1, "tokenizer.json: no such file"},
      {"'" + dir + "' '" + bin + "'", 2, "needs --token-dtype"},
      {"'" + dir + "' '" + good + "' --batch 0", 2, "--batch must be >= 1"},
      {"'" + dir + "' '" + good + "' --context 65", 2, "exceeds the model's 64 positions"},
      {"'" + dir + "' '" + good + "' --context two", 2, "--context needs an integer"},
      {"'" + dir + "' '" + good + "' --device tpu", 2, "--device must be cpu, cuda"},
      {"'" + dir + "' '" + good + "' --frobnicate", 2, "unknown option '--frobnicate'"},
      {"'" + dir + "'", 2, "expected MODEL_DIR and DATA"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const Result r = eval(c.args);
    CHECK(r.code == c.code);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.err.rfind("eval: ", 0) == 0);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.out.empty());
  }
  // A .bin with its width given is read.
  const Result ok = eval("'" + dir + "' '" + bin + "' --token-dtype u16 --json");
  CHECK_MESSAGE(ok.code == 0, ok.err);
  CHECK(eval("--help").code == 0);
  for (const std::string& p : {good, bad, odd, text, bin}) std::filesystem::remove(p);
}

TEST_CASE("sample: greedy decoding with the KV cache equals full recomputation") {
  for (const char* name : {"neox_parallel", "neox_sequential", "gpt2"}) {
    CAPTURE(name);
    const std::string dir = kModels + name;
    const std::string args =
        "'" + dir + "' --prompt-tokens 5,17,42 --temperature 0 --max-new-tokens 24 "
        "--ignore-eos --json";
    const Result cached = sample(args), full = sample(args + " --no-cache");
    REQUIRE_MESSAGE(cached.code == 0, cached.err);
    REQUIRE_MESSAGE(full.code == 0, full.err);
    const Json jc = Json::parse(cached.out), jf = Json::parse(full.out);
    CHECK(json_ids(jc, "prompt_tokens") == std::vector<int64_t>{5, 17, 42});
    const std::vector<int64_t> tokens = json_ids(jc, "tokens");
    CHECK(tokens.size() == 24);
    CHECK(tokens == json_ids(jf, "tokens"));
    CHECK(jc.at("stop").as_string() == "max_new_tokens");
    // The first generated token is the argmax of the prompt's last logits.
    const std::unique_ptr<LanguageModel> model = load_hf_model(dir);
    NoGradGuard no_grad;
    const std::vector<double> row =
        model->logits(Tensor::from_data(std::vector<int64_t>{5, 17, 42}, {1, 3}))
            .value()
            .select(0, 0)
            .select(0, 2)
            .to_vector();
    CHECK(tokens[0] == int64_t(std::max_element(row.begin(), row.end()) - row.begin()));
  }
}

TEST_CASE("sample: a seed reproduces sampled output, and the context limit stops it") {
  const std::string dir = kModels + "neox_parallel";
  const std::string args = "'" + dir + "' --prompt-tokens 1,2,3 --temperature 0.9 --top-k 50 "
                           "--top-p 0.95 --max-new-tokens 20 --ignore-eos --json";
  const Result a = sample(args + " --seed 11"), b = sample(args + " --seed 11"),
               c = sample(args + " --seed 12"), nc = sample(args + " --seed 11 --no-cache");
  REQUIRE_MESSAGE(a.code == 0, a.err);
  const std::vector<int64_t> ta = json_ids(Json::parse(a.out), "tokens");
  CHECK(ta.size() == 20);
  CHECK(ta == json_ids(Json::parse(b.out), "tokens"));
  CHECK(ta != json_ids(Json::parse(c.out), "tokens"));
  // Same draws, (nearly) the same logits: the cache changes nothing here.
  CHECK(ta == json_ids(Json::parse(nc.out), "tokens"));

  // 60 prompt tokens in a 64-position context: 4 new tokens, then stop.
  std::string prompt = "1";
  for (int i = 1; i < 60; ++i) prompt += "," + std::to_string(i % 200);
  const Result full = sample("'" + dir + "' --prompt-tokens " + prompt +
                             " --temperature 0 --max-new-tokens 10 --ignore-eos --json");
  REQUIRE_MESSAGE(full.code == 0, full.err);
  const Json jf = Json::parse(full.out);
  CHECK(json_ids(jf, "tokens").size() == 4);
  CHECK(jf.at("stop").as_string() == "context");

  // Without --json and without a tokenizer: the ids, prompt first.
  const Result plain = sample("'" + dir + "' --prompt-tokens 1,2,3 --max-new-tokens 3 --seed 1");
  CHECK(plain.code == 0);
  CHECK(plain.out.rfind("1 2 3 ", 0) == 0);
}

TEST_CASE("sample: bad input gives one error line and the right exit code") {
  const std::string dir = kModels + "neox_parallel";
  struct Case {
    std::string args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases{
      {"'" + dir + "_missing' --prompt-tokens 1", 1, "no such directory"},
      {"'" + dir + "' --prompt hello", 1, "tokenizer.json: no such file"},
      {"'" + dir + "' --prompt-tokens 1,999", 1, "prompt token 1 is id 999"},
      {"'" + dir + "'", 2, "exactly one of --prompt"},
      {"'" + dir + "' --prompt-tokens 1,x", 2, "--prompt-tokens needs an integer"},
      {"'" + dir + "' --prompt-tokens 1 --top-p 0", 2, "--top-p must be in (0, 1]"},
      {"'" + dir + "' --prompt-tokens 1 --temperature -1", 2, "--temperature must be >= 0"},
      {"'" + dir + "' --prompt-tokens 1 --top-k -2", 2, "--top-k must be >= 0"},
      {"'" + dir + "' --prompt-tokens 1 --seed -3", 2, "--seed needs a non-negative integer"},
      {"'" + dir + "' --prompt-tokens 1 --no-cache=1", 2, "--no-cache takes no value"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args);
    const Result r = sample(c.args);
    CHECK(r.code == c.code);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.err.rfind("sample: ", 0) == 0);
    CHECK(count_lines(r.err) == 1);
  }
}
