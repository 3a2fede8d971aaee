// quant/gguf (the container) and quant/export_gguf (GPT-NeoX -> llama.cpp
// gptneox). The container: every metadata value type round-trips bit for bit
// at alignments 32 and 64, tensor data lands on aligned offsets, and every
// truncation or corruption of a file is refused with an error naming the
// file and field. The export: tensor names, dims, types (the type policy),
// QKV re-ordering on a hand-built case, metadata and tokenizer keys, and the
// read-back (exact for f32; for Q8_0/Q4_0 equal to ggml_dequantize of the
// blocks ggml_quantize makes from the re-ordered rows).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "models/model.h"
#include "quant/export_gguf.h"
#include "quant/ggml_blocks.h"
#include "quant/gguf.h"

using namespace gl;

namespace {

std::string tmp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gridlock_test_gguf_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

const std::string kTokenizer =
    std::string(GRIDLOCK_SOURCE_DIR) + "/tests/reference/fixtures/tokenizer/neox/tokenizer.json";

// Every value type, with edge values, plus empty arrays.
std::vector<GgufKV> all_types_metadata(uint32_t alignment) {
  std::vector<GgufKV> kv;
  kv.push_back({"general.architecture", GgufValue::str("test")});
  kv.push_back({"general.alignment", GgufValue::u32(alignment)});
  kv.push_back({"t.u8", GgufValue::u8(255)});
  kv.push_back({"t.i8", GgufValue::i8(-128)});
  kv.push_back({"t.u16", GgufValue::u16(65535)});
  kv.push_back({"t.i16", GgufValue::i16(-32768)});
  kv.push_back({"t.u32", GgufValue::u32(4294967295u)});
  kv.push_back({"t.i32", GgufValue::i32(std::numeric_limits<int32_t>::min())});
  kv.push_back({"t.f32", GgufValue::f32(-0.0f)});
  kv.push_back({"t.f32_tiny", GgufValue::f32(1e-40f)});  // subnormal
  kv.push_back({"t.bool", GgufValue::boolean(true)});
  kv.push_back({"t.str", GgufValue::str(std::string("a\0b \xc3\xa9", 6))});
  kv.push_back({"t.str_empty", GgufValue::str("")});
  kv.push_back({"t.u64", GgufValue::u64(std::numeric_limits<uint64_t>::max())});
  kv.push_back({"t.i64", GgufValue::i64(std::numeric_limits<int64_t>::min())});
  kv.push_back({"t.f64", GgufValue::f64(3.141592653589793)});
  kv.push_back({"a.u8", GgufValue::int_array(GgufType::UINT8, {0, 1, 255})});
  kv.push_back({"a.i8", GgufValue::int_array(GgufType::INT8, {-128, 0, 127})});
  kv.push_back({"a.u16", GgufValue::int_array(GgufType::UINT16, {65535, 7})});
  kv.push_back({"a.i16", GgufValue::int_array(GgufType::INT16, {-32768, 32767})});
  kv.push_back({"a.u32", GgufValue::int_array(GgufType::UINT32, {4294967295ll, 0})});
  kv.push_back({"a.i32", GgufValue::int_array(GgufType::INT32, {-1, 2, -3})});
  kv.push_back({"a.u64", GgufValue::int_array(GgufType::UINT64, {0, 1ll << 62})});
  kv.push_back({"a.i64", GgufValue::int_array(GgufType::INT64, {-(1ll << 62), 5})});
  kv.push_back({"a.bool", GgufValue::int_array(GgufType::BOOL, {1, 0, 1})});
  kv.push_back({"a.f32", GgufValue::float_array(GgufType::FLOAT32, {1.5, -2.25, 1e30})});
  kv.push_back({"a.f64", GgufValue::float_array(GgufType::FLOAT64, {1e-300, -0.1})});
  kv.push_back({"a.str", GgufValue::str_array({"Ġthe", "", "<|endoftext|>", "a b"})});
  kv.push_back({"a.empty_i32", GgufValue::int_array(GgufType::INT32, {})});
  kv.push_back({"a.empty_str", GgufValue::str_array({})});
  return kv;
}

std::vector<GgufTensor> small_tensors() {
  std::vector<GgufTensor> t;
  std::vector<float> a(15), b(7), q(64);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.5f - 3.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(i) / 3.0f;
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(float(i));
  t.push_back({"odd.f32", GgmlType::F32, {5, 3}, f32_bytes(a)});
  t.push_back({"odd.f16", GgmlType::F16, {7}, ggml_quantize(GgmlType::F16, b.data(), 7)});
  t.push_back({"blocks.q8_0", GgmlType::Q8_0, {32, 2},
               ggml_quantize(GgmlType::Q8_0, q.data(), 64)});
  t.push_back({"blocks.q4_0", GgmlType::Q4_0, {32, 2},
               ggml_quantize(GgmlType::Q4_0, q.data(), 64)});
  return t;
}

// A hand-assembled GGUF: header, KVs and one tensor info, for corruptions
// the writer would never produce.
struct Builder {
  std::string b;
  void u32(uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
  void u64(uint64_t v) { b.append(reinterpret_cast<const char*>(&v), 8); }
  void str(const std::string& s) { u64(s.size()); b += s; }
  void pad(size_t a) { while (b.size() % a) b.push_back('\0'); }
};

struct Spec {
  uint32_t magic = 0x46554747, version = 3;
  uint64_t n_tensors = 1, n_kv = 1;
  uint64_t str_len = 4;          // length field of the KV value string
  uint32_t value_type = 8;       // string
  uint32_t n_dims = 2, ggml_type = 0;
  uint64_t offset = 0;
  bool second_kv_duplicate = false;
};

std::string build(const Spec& s) {
  Builder w;
  w.u32(s.magic);
  w.u32(s.version);
  w.u64(s.n_tensors);
  w.u64(s.n_kv + (s.second_kv_duplicate ? 1 : 0));
  for (int k = 0; k < (s.second_kv_duplicate ? 2 : 1); ++k) {
    w.str("general.architecture");
    w.u32(s.value_type);
    w.u64(s.str_len);
    w.b += "test";
  }
  w.str("w");
  w.u32(s.n_dims);
  for (uint32_t d = 0; d < s.n_dims; ++d) w.u64(d == 0 ? 4 : 2);
  w.u32(s.ggml_type);
  w.u64(s.offset);
  w.pad(32);
  w.b.append(32, '\x01');  // 8 f32 values
  return w.b;
}

void check_refused(const std::string& bytes, const std::string& needle) {
  const std::string p = tmp_path("bad.gguf");
  write_bytes(p, bytes);
  CHECK_THROWS_WITH_AS(GgufReader::open(p), doctest::Contains(needle.c_str()), Error);
}

ModelConfig tiny_neox() {
  ModelConfig c;
  c.arch = Arch::GPT_NEOX;
  c.vocab_size = 2048;  // the fixture tokenizer has 2025 ids: 23 [PAD] rows
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.intermediate_size = 128;
  c.max_positions = 64;
  c.rotary_pct = 0.25;
  return c;
}

// A random model whose biases and norms are not trivial either (zeros would
// hide a wrong bias re-ordering).
std::unique_ptr<LanguageModel> random_model(const ModelConfig& c, uint64_t seed) {
  Generator gen(seed);
  auto m = make_model(c, gen);
  for (auto p : m->parameters())
    p.var.mutable_value().copy_(Tensor::normal(p.var.value().shape(), gen, 0.0, 0.3));
  return m;
}

std::map<std::string, Tensor> by_name(const std::vector<std::pair<std::string, Tensor>>& v) {
  return std::map<std::string, Tensor>(v.begin(), v.end());
}

std::vector<float> values(const Tensor& t) {
  return t.to(DType::F32).contiguous().to_vector_as<float>();
}

}  // namespace

TEST_CASE("gguf: every metadata type and tensor round-trips, alignment 32 and 64") {
  for (uint32_t alignment : {32u, 64u}) {
    CAPTURE(alignment);
    const std::string p = tmp_path("rt.gguf");
    const auto kv = all_types_metadata(alignment);
    const auto tensors = small_tensors();
    write_gguf(p, kv, tensors);
    const GgufReader r = GgufReader::open(p);
    CHECK(r.version() == 3);
    CHECK(r.alignment() == alignment);
    CHECK(r.data_offset() % alignment == 0);
    REQUIRE(r.metadata().size() == kv.size());
    for (size_t i = 0; i < kv.size(); ++i) {
      CAPTURE(kv[i].key);
      CHECK(r.metadata()[i].key == kv[i].key);
      CHECK(r.metadata()[i].value == kv[i].value);
    }
    CHECK(r.at("t.i8").as_int("t.i8") == -128);
    CHECK(r.at("t.u64").as_u64("t.u64") == std::numeric_limits<uint64_t>::max());
    CHECK(std::signbit(r.at("t.f32").as_double("t.f32")));
    CHECK(r.at("t.str").as_string("t.str") == std::string("a\0b \xc3\xa9", 6));
    CHECK(r.at("a.i16").int_elems("a.i16") == std::vector<int64_t>{-32768, 32767});
    CHECK(r.at("a.str").str_elems("a.str")[0] == "Ġthe");
    CHECK(r.at("a.empty_str").size() == 0);
    CHECK(r.at("a.empty_i32").elem_type() == GgufType::INT32);
    REQUIRE(r.tensors().size() == tensors.size());
    uint64_t expect_offset = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = r.tensors()[i];
      CAPTURE(t.name);
      CHECK(t.name == tensors[i].name);
      CHECK(t.type == tensors[i].type);
      CHECK(t.ne == tensors[i].ne);
      CHECK(t.offset == expect_offset);  // packed, each padded to the alignment
      CHECK(t.offset % alignment == 0);
      REQUIRE(t.nbytes == tensors[i].data.size());
      CHECK(std::memcmp(r.data(t), tensors[i].data.data(), t.nbytes) == 0);
      expect_offset += (t.nbytes + alignment - 1) / alignment * alignment;
    }
    CHECK(std::filesystem::file_size(p) == r.data_offset() + expect_offset);
    const std::string raw = read_bytes(p);
    CHECK(raw.substr(0, 4) == "GGUF");
    // The f32 tensor decodes to itself; the q8_0 one to ggml_dequantize.
    const auto a = r.dequantize(r.tensor("odd.f32"));
    CHECK(a[14] == 4.0f);
    CHECK(a[0] == -3.0f);
    std::vector<float> q8(64);
    ggml_dequantize(GgmlType::Q8_0, tensors[2].data.data(), 64, q8.data());
    CHECK(r.dequantize(r.tensor("blocks.q8_0")) == q8);
    std::filesystem::remove(p);
  }
}

TEST_CASE("gguf: a file without tensors or metadata") {
  const std::string p = tmp_path("empty.gguf");
  write_gguf(p, {}, {});
  const GgufReader r = GgufReader::open(p);
  CHECK(r.metadata().empty());
  CHECK(r.tensors().empty());
  CHECK(r.alignment() == 32);
}

TEST_CASE("gguf: every truncation of a file is refused") {
  const std::string full_path = tmp_path("full.gguf");
  write_gguf(full_path, all_types_metadata(32), small_tensors());
  const std::string full = read_bytes(full_path);
  const GgufReader r = GgufReader::open(full_path);
  const auto& last = r.tensors().back();
  const size_t needed = size_t(r.data_offset() + last.offset + last.nbytes);
  const std::string p = tmp_path("cut.gguf");
  int refused = 0;
  for (size_t n = 0; n < needed; ++n) {
    write_bytes(p, full.substr(0, n));
    try {
      GgufReader::open(p);
    } catch (const Error& e) {
      ++refused;
      // The file is always named.
      if (std::string(e.what()).find(p) == std::string::npos) FAIL_CHECK("unnamed: " << e.what());
    }
  }
  CHECK(refused == int(needed));
  // Only the last tensor's zero padding may go.
  write_bytes(p, full.substr(0, needed));
  CHECK_NOTHROW(GgufReader::open(p));
}

TEST_CASE("gguf: corrupted files are refused, naming the field") {
  const std::string good = build(Spec{});
  {
    const std::string p = tmp_path("good.gguf");
    write_bytes(p, good);
    const GgufReader r = GgufReader::open(p);
    CHECK(r.tensor("w").ne == std::vector<int64_t>{4, 2});
  }
  Spec s;
  s.magic = 0x46554746;
  check_refused(build(s), "not a GGUF file");
  s = {};
  s.version = 2;
  check_refused(build(s), "GGUF version 2 is not supported");
  s = {};
  s.n_kv = uint64_t(1) << 60;
  check_refused(build(s), "metadata_kv_count");
  s = {};
  s.n_tensors = uint64_t(1) << 40;
  check_refused(build(s), "tensor_count");
  s = {};
  s.str_len = uint64_t(1) << 50;
  check_refused(build(s), "value of 'general.architecture'");
  s = {};
  s.value_type = 13;
  check_refused(build(s), "unknown value type 13");
  s = {};
  s.ggml_type = 12;  // Q4_K: valid ggml, not supported here
  check_refused(build(s), "tensor 'w' has ggml type 12");
  s = {};
  s.n_dims = 5;
  check_refused(build(s), "n_dims = 5");
  s = {};
  s.n_dims = 0;
  check_refused(build(s), "n_dims = 0");
  s = {};
  s.offset = 4;
  check_refused(build(s), "is not a multiple of the alignment 32");
  s = {};
  s.offset = 64;
  check_refused(build(s), "lies outside");
  s = {};
  s.ggml_type = 2;  // Q4_0 with ne0 = 4
  check_refused(build(s), "not a multiple of 32");
  s = {};
  s.second_kv_duplicate = true;
  check_refused(build(s), "appears twice");
  // A bool byte other than 0/1, and a non-uint32 alignment.
  {
    Builder w;
    w.u32(0x46554747), w.u32(3), w.u64(0), w.u64(1);
    w.str("x");
    w.u32(7);
    w.b.push_back('\x02');
    check_refused(w.b, "bool byte is 2");
    Builder a;
    a.u32(0x46554747), a.u32(3), a.u64(0), a.u64(1);
    a.str("general.alignment");
    a.u32(10), a.u64(32);
    check_refused(a.b, "general.alignment must be a uint32");
    Builder n;
    n.u32(0x46554747), n.u32(3), n.u64(0), n.u64(1);
    n.str("general.alignment");
    n.u32(4), n.u32(48);
    check_refused(n.b, "power of two");
  }
  check_refused("", "truncated file: magic");
  CHECK_THROWS_WITH_AS(GgufReader::open(tmp_path("does_not_exist.gguf")),
                       doctest::Contains("does_not_exist.gguf"), Error);
}

TEST_CASE("gguf: the writer refuses bad input before creating the file") {
  const std::string p = tmp_path("w.gguf");
  std::filesystem::remove(p);
  std::vector<GgufTensor> t = {{"a", GgmlType::F32, {4}, std::vector<uint8_t>(12)}};
  CHECK_THROWS_WITH_AS(write_gguf(p, {}, t), doctest::Contains("has 12 bytes of data"), Error);
  t = {{std::string(64, 'n'), GgmlType::F32, {1}, std::vector<uint8_t>(4)}};
  CHECK_THROWS_WITH_AS(write_gguf(p, {}, t), doctest::Contains("1..63 bytes"), Error);
  t = {{"a", GgmlType::F32, {1}, std::vector<uint8_t>(4)},
       {"a", GgmlType::F32, {1}, std::vector<uint8_t>(4)}};
  CHECK_THROWS_WITH_AS(write_gguf(p, {}, t), doctest::Contains("tensor 'a' given twice"), Error);
  t = {{"q", GgmlType::Q4_0, {48}, std::vector<uint8_t>(27)}};
  CHECK_THROWS_WITH_AS(write_gguf(p, {}, t), doctest::Contains("not a multiple of 32"), Error);
  CHECK_THROWS_WITH_AS(write_gguf(p, {{"general.alignment", GgufValue::u32(24)}}, {}),
                       doctest::Contains("power of two"), Error);
  CHECK_THROWS_WITH_AS(write_gguf(p, {{"k", GgufValue::u8(1)}, {"k", GgufValue::u8(2)}}, {}),
                       doctest::Contains("'k' given twice"), Error);
  CHECK_THROWS_WITH_AS(GgufValue::int_array(GgufType::INT8, {128}),
                       doctest::Contains("does not fit in int8"), Error);
  CHECK_FALSE(std::filesystem::exists(p));
  CHECK_THROWS_WITH_AS(GgufValue::u8(1).as_string("k"), doctest::Contains("'k' is a uint8"), Error);
}

TEST_CASE("export: QKV rows go from HF [heads, 3, hs] to GGUF [3, heads, hs]") {
  // 2 heads of size 2, 1 column: HF row r holds the value r.
  // HF rows: h0q0 h0q1 h0k0 h0k1 h0v0 h0v1 h1q0 h1q1 h1k0 h1k1 h1v0 h1v1
  std::vector<float> w(12);
  for (int i = 0; i < 12; ++i) w[size_t(i)] = float(i);
  const auto g = neox_qkv_to_gguf(w, 2, 2, 1);
  CHECK(g == std::vector<float>{0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11});
  CHECK(neox_qkv_from_gguf(g, 2, 2, 1) == w);
  // With 3 columns whole rows move.
  std::vector<float> w3(36);
  for (int i = 0; i < 36; ++i) w3[size_t(i)] = float(i);
  const auto g3 = neox_qkv_to_gguf(w3, 2, 2, 3);
  CHECK(std::vector<float>(g3.begin() + 6, g3.begin() + 9) == std::vector<float>{18, 19, 20});
  CHECK(neox_qkv_from_gguf(g3, 2, 2, 3) == w3);
}

TEST_CASE("export: f32 GGUF of a tiny GPT-NeoX reads back exactly, with llama.cpp's metadata") {
  const auto model = random_model(tiny_neox(), 7);
  const std::string p = tmp_path("tiny_f32.gguf");
  GgufExportOptions opt;
  opt.name = "tiny";
  export_gguf(*model, kTokenizer, p, opt);
  const GgufReader r = GgufReader::open(p);
  CHECK(r.at("general.architecture").as_string("") == "gptneox");
  CHECK(r.at("general.name").as_string("") == "tiny");
  CHECK(r.at("general.file_type").as_int("") == 0);
  CHECK(r.at("gptneox.context_length").as_int("") == 64);
  CHECK(r.at("gptneox.embedding_length").as_int("") == 64);
  CHECK(r.at("gptneox.block_count").as_int("") == 2);
  CHECK(r.at("gptneox.feed_forward_length").as_int("") == 128);
  CHECK(r.at("gptneox.rope.dimension_count").as_int("") == 4);  // int(16 * 0.25)
  CHECK(r.at("gptneox.attention.head_count").as_int("") == 4);
  CHECK(r.at("gptneox.use_parallel_residual").as_bool(""));
  CHECK(r.at("gptneox.attention.layer_norm_epsilon").as_double("") == doctest::Approx(1e-5));
  CHECK(r.at("gptneox.attention.layer_norm_epsilon").type() == GgufType::FLOAT32);
  CHECK(r.at("general.quantization_version").as_int("") == 2);
  CHECK(r.at("tokenizer.ggml.model").as_string("") == "gpt2");
  const auto& tokens = r.at("tokenizer.ggml.tokens").str_elems("");
  const auto types = r.at("tokenizer.ggml.token_type").int_elems("");
  REQUIRE(tokens.size() == 2048);  // one per embedding row
  REQUIRE(types.size() == 2048);
  CHECK(tokens[0] == "<|endoftext|>");
  CHECK(types[0] == 3);   // CONTROL
  CHECK(tokens[2022] == "  ");
  CHECK(types[2022] == 4);  // USER_DEFINED: NeoX's added runs of spaces
  CHECK(types[100] == 1);   // NORMAL
  CHECK(tokens[2030] == "[PAD2030]");
  CHECK(types[2030] == 5);  // UNUSED
  const auto& merges = r.at("tokenizer.ggml.merges").str_elems("");
  CHECK(merges.size() == 1742);
  CHECK(merges[0] == "Ġ Ġ");
  CHECK(r.at("tokenizer.ggml.eos_token_id").as_int("") == 0);
  CHECK(r.at("tokenizer.ggml.bos_token_id").as_int("") == 0);

  CHECK(r.tensors().front().name == "token_embd.weight");
  CHECK(r.tensor("token_embd.weight").ne == std::vector<int64_t>{64, 2048});
  CHECK(r.tensor("blk.1.attn_qkv.weight").ne == std::vector<int64_t>{64, 192});
  CHECK(r.tensor("blk.0.ffn_up.weight").ne == std::vector<int64_t>{64, 128});
  CHECK(r.tensor("blk.0.ffn_down.weight").ne == std::vector<int64_t>{128, 64});
  CHECK(r.tensor("output.weight").ne == std::vector<int64_t>{64, 2048});
  CHECK(r.tensor("output_norm.bias").type == GgmlType::F32);
  CHECK(r.tensors().size() == model->parameters().size());

  // Read back: same names, shapes and values as the model.
  const auto back = by_name(read_gguf_state_dict(p));
  for (const auto& prm : model->parameters()) {
    CAPTURE(prm.name);
    REQUIRE(back.count(prm.name) == 1);
    const Tensor& t = back.at(prm.name);
    CHECK(t.shape() == prm.var.value().shape());
    CHECK(values(t) == values(prm.var.value()));
  }
  // The qkv bias in the file is re-ordered: GGUF row 16 (K of head 0) is HF row 16 + ... :
  // HF [h, 3, hs]: K of head 0 starts at HF row 16; in GGUF, all Q rows (64) come first.
  const auto bias = r.dequantize(r.tensor("blk.0.attn_qkv.bias"));
  const auto hf_bias = values(back.at("gpt_neox.layers.0.attention.query_key_value.bias"));
  CHECK(bias[64] == hf_bias[16]);   // K, head 0, d 0
  CHECK(bias[16] == hf_bias[48]);   // Q, head 1, d 0
}

TEST_CASE("export: q8_0 and q4_0 tensors are ggml's blocks of the re-ordered rows") {
  const auto model = random_model(tiny_neox(), 11);
  const auto params = model->parameters();
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    for (bool pure : {false, true}) {
      CAPTURE(ggml_type_name(type));
      CAPTURE(pure);
      const std::string p = tmp_path("tiny_q.gguf");
      GgufExportOptions opt;
      opt.type = type;
      opt.pure = pure;
      export_gguf(*model, kTokenizer, p, opt);
      const GgufReader r = GgufReader::open(p);
      CHECK(r.at("general.file_type").as_int("") == (type == GgmlType::Q8_0 ? 7 : 2));
      CHECK(r.tensor("blk.0.attn_norm.weight").type == GgmlType::F32);
      CHECK(r.tensor("blk.0.attn_qkv.bias").type == GgmlType::F32);
      CHECK(r.tensor("blk.0.attn_qkv.weight").type == type);
      CHECK(r.tensor("token_embd.weight").type == type);
      CHECK(r.tensor("output.weight").type == (pure ? type : GgmlType::Q8_0));
      const auto back = by_name(read_gguf_state_dict(p));
      for (const auto& prm : params) {
        CAPTURE(prm.name);
        const Tensor& w = prm.var.value();
        if (w.dim() != 2) {
          CHECK(values(back.at(prm.name)) == values(w));
          continue;
        }
        std::vector<float> rows = values(w);
        const bool qkv = prm.name.find("query_key_value") != std::string::npos;
        if (qkv) rows = neox_qkv_to_gguf(rows, 4, 16, w.size(1));
        const GgmlType tt = prm.name == "embed_out.weight" && !pure ? GgmlType::Q8_0 : type;
        const auto blocks = ggml_quantize(tt, rows.data(), int64_t(rows.size()));
        const std::string gname =
            prm.name == "embed_out.weight" ? "output.weight"
            : prm.name == "gpt_neox.embed_in.weight" ? "token_embd.weight"
            : "";
        if (!gname.empty() || qkv) {
          // "gpt_neox.layers.N...": N is character 16 (layers < 10 here).
          const std::string layer(1, prm.name[16]);
          const auto& info = r.tensor(qkv ? "blk." + layer + ".attn_qkv.weight" : gname);
          REQUIRE(info.nbytes == blocks.size());
          CHECK(std::memcmp(r.data(info), blocks.data(), blocks.size()) == 0);
        }
        std::vector<float> deq(rows.size());
        ggml_dequantize(tt, blocks.data(), int64_t(rows.size()), deq.data());
        if (qkv) deq = neox_qkv_from_gguf(deq, 4, 16, w.size(1));
        CHECK(values(back.at(prm.name)) == deq);
      }
    }
  }
}

TEST_CASE("export: shapes that do not divide by 32 are refused for quantized types") {
  ModelConfig c = tiny_neox();
  c.hidden_size = 48;
  c.num_heads = 2;
  c.intermediate_size = 96;
  const auto model = random_model(c, 3);
  GgufExportOptions opt;
  opt.type = GgmlType::Q4_0;
  CHECK_THROWS_WITH_AS(gguf_from_model(*model, kTokenizer, opt),
                       doctest::Contains("tensor 'token_embd.weight'"), Error);
  opt.type = GgmlType::F16;
  CHECK_NOTHROW(gguf_from_model(*model, kTokenizer, opt));
}

TEST_CASE("export: a QAT scheme that differs from the export type is refused unless forced") {
  CHECK(ggml_type_for_preset("q4_0") == GgmlType::Q4_0);
  CHECK(ggml_type_for_preset("q8_0") == GgmlType::Q8_0);
  CHECK(ggml_type_for_preset("q4_1") == GgmlType::Q4_1);
  CHECK_FALSE(ggml_type_for_preset("int4_g128").has_value());
  CHECK_NOTHROW(check_qat_scheme("", GgmlType::Q4_0, false));
  CHECK_NOTHROW(check_qat_scheme("q4_0", GgmlType::Q4_0, false));
  CHECK_THROWS_WITH_AS(check_qat_scheme("q8_0", GgmlType::Q4_0, false),
                       doctest::Contains("QAT only pays off when deployment uses the same scheme"),
                       Error);
  CHECK_THROWS_WITH_AS(check_qat_scheme("int4_g128", GgmlType::Q4_0, false),
                       doctest::Contains("no GGUF equivalent"), Error);
  CHECK_THROWS_WITH_AS(check_qat_scheme("q4_0", GgmlType::F16, false),
                       doctest::Contains("--type q4_0"), Error);
  CHECK_NOTHROW(check_qat_scheme("q8_0", GgmlType::Q4_0, true));
  const auto model = random_model(tiny_neox(), 5);
  GgufExportOptions opt;
  opt.type = GgmlType::Q4_0;
  opt.qat_scheme = "q8_0";
  CHECK_THROWS_WITH_AS(gguf_from_model(*model, kTokenizer, opt), doctest::Contains("--force"),
                       Error);
  opt.force = true;
  CHECK_NOTHROW(gguf_from_model(*model, kTokenizer, opt));
  CHECK_THROWS_WITH_AS(parse_export_type("q5_0"), doctest::Contains("unknown export type 'q5_0'"),
                       Error);
}
