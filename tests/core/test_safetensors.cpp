// core/safetensors + core/mmap: round trips of every dtype (strided, expanded,
// 0-d and empty inputs), dtype conversion on load, the files the Python
// safetensors library wrote (tests/reference/fixtures/safetensors, checked
// against its expected.json), sharded checkpoint directories, and one
// precise, one-line error naming the file for each kind of corruption.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "core/mmap.h"
#include "core/safetensors.h"
#include "tests/testing.h"

#ifndef GL_SAFETENSORS_FIXTURES
#error "GL_SAFETENSORS_FIXTURES (the fixture directory) is set by tests/CMakeLists.txt"
#endif

using namespace gl;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const std::string name = "gridlock_safetensors_" + std::to_string(::getpid()) + "_" +
                             std::to_string(counter++);
    path_ = fs::temp_directory_path() / name;
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }
  size_t count() const {
    return size_t(std::distance(fs::directory_iterator(path_), fs::directory_iterator()));
  }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A safetensors file: 8-byte little-endian length (the header's, unless
// `len` says otherwise), the header text, the data buffer.
std::string st_bytes(const std::string& header, const std::string& data,
                     uint64_t len = UINT64_MAX) {
  if (len == UINT64_MAX) len = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

// The error `fn` throws; checks it is one line naming `path`.
template <class Fn>
std::string error_naming(const std::string& path, Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK_MESSAGE(what.find(path) != std::string::npos, what);
    CHECK_MESSAGE(what.find('\n') == std::string::npos, what);
    return what;
  }
  FAIL_CHECK("no error for " << path);
  return "";
}

std::string open_error(const std::string& path) {
  return error_naming(path, [&] { SafetensorsFile::open(path); });
}

// Contiguous host bytes of a tensor.
std::string bytes_of(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

// doctest::Contains for a std::string.
doctest::Contains has(const std::string& part) { return doctest::Contains(part.c_str()); }

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// dtype, shape and exact values against a description written by
// tests/reference/safetensors_interop.py.
void check_described(const Tensor& t, const Json& desc, const std::string& label) {
  CAPTURE(label);
  CHECK(std::string(safetensors_dtype_name(t.dtype())) == desc.at("dtype").as_string());
  Shape shape;
  for (const Json& d : desc.at("shape").as_array()) shape.push_back(d.as_int());
  CHECK(shape_str(t.shape()) == shape_str(shape));
  const auto& values = desc.at("values").as_array();
  REQUIRE(int64_t(values.size()) == t.numel());
  if (t.dtype() == DType::I64 || t.dtype() == DType::I32) {
    const std::vector<int64_t> got = t.to_vector_as<int64_t>();
    for (size_t i = 0; i < values.size(); ++i) CHECK(got[i] == values[i].as_int());
  } else {
    const std::vector<double> got = t.to_vector();
    for (size_t i = 0; i < values.size(); ++i) CHECK(got[i] == values[i].as_double());
  }
}

}  // namespace

// --- mmap -----------------------------------------------------------------

TEST_CASE("mmap: maps a file read-only and reports errors with the path") {
  TempDir dir;
  const std::string path = dir.file("hello.bin");
  write_bytes(path, "hello");
  MappedFile m(path);
  REQUIRE(m.size() == 5);
  CHECK(std::string(m.data(), 5) == "hello");
  MappedFile moved(std::move(m));
  CHECK(moved.size() == 5);
  CHECK(std::string(moved.data(), 5) == "hello");
  CHECK(moved.path() == path);

  const std::string empty = dir.file("empty.bin");
  write_bytes(empty, "");
  MappedFile e(empty);
  CHECK(e.size() == 0);
  CHECK(e.data() == nullptr);

  const std::string missing = dir.file("missing.bin");
  CHECK_THROWS_WITH_AS(MappedFile{missing},
                       has(missing + ": cannot open for reading: No such file"), Error);
  CHECK_THROWS_WITH_AS(MappedFile{dir.str()},
                       has(dir.str() + ": is a directory, expected a file"), Error);
}

// --- round trips ----------------------------------------------------------

TEST_CASE("safetensors: round trip of every dtype, strided and special shapes") {
  TempDir dir;
  const std::string path = dir.file("all.safetensors");
  const Tensor base = testing::randn({3, 5}, 11, DType::F32);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32_t", base.transpose(0, 1)},  // strided
      {"f64", testing::randn({4, 3}, 12, DType::F64)},
      {"bf16_slice", base.to(DType::BF16).slice(1, 1, 5, 2)},  // strided columns
      {"f16", testing::randn({2, 3, 2}, 13, DType::F16)},
      {"i32", Tensor::from_data<int32_t>({-2147483647 - 1, -1, 0, 7, 2147483647}, {5})},
      {"i64", Tensor::from_data<int64_t>({INT64_MIN, (1LL << 53) + 1, -3, INT64_MAX}, {2, 2})},
      {"u16", Tensor::from_data<uint16_t>({0, 1, 65535}, {3})},
      {"expanded", Tensor::arange(3).expand({2, 3})},  // zero strides
      {"scalar", Tensor::full({}, 2.5)},
      {"empty", Tensor::zeros({0, 4}, DType::BF16)},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "143000"}};
  save_safetensors(path, tensors, meta);
  CHECK(dir.count() == 1);  // no temporary file left behind

  const SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.path() == path);
  CHECK(f.metadata() == meta);
  CHECK(f.unsupported().empty());
  REQUIRE(f.entries().size() == tensors.size());
  size_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    CAPTURE(name);
    const SafetensorsEntry& e = f.entries()[i];  // file order == given order
    CHECK(e.name == name);
    CHECK(e.dtype == t.dtype());
    CHECK(e.shape == t.shape());
    CHECK(e.begin == offset);  // contiguous layout
    CHECK(e.end - e.begin == t.nbytes());
    offset = e.end;
    REQUIRE(f.find(name) == &e);
    const Tensor back = f.load(name);
    CHECK(back.dtype() == t.dtype());
    CHECK(back.shape() == t.shape());
    CHECK(back.is_contiguous());
    CHECK(bytes_of(back) == bytes_of(t));  // bit-exact, incl. bf16/f16 and int64 extremes
  }
  CHECK(f.find("nope") == nullptr);

  // Layout: u64 header length, space-padded to a multiple of 8, metadata first.
  const std::string raw = read_bytes(path);
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(raw.size() == 8 + n + offset);
  CHECK(raw.compare(8, 17, "{\"__metadata__\":{") == 0);
  const std::string header = raw.substr(8, size_t(n));
  CHECK(header.substr(header.find_last_not_of(' ') + 1).find_first_not_of(' ') ==
        std::string::npos);
}

TEST_CASE("safetensors: save without tensors or metadata, and overwrite in place") {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  save_safetensors(path, {});
  CHECK(read_bytes(path) == st_bytes("{}      ", ""));
  const SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.entries().empty());
  CHECK(f.metadata().empty());
  // Saving again replaces the file (rename over it).
  save_safetensors(path, {{"x", Tensor::ones({2})}});
  CHECK(SafetensorsFile::open(path).load("x").to_vector() == std::vector<double>{1, 1});
  CHECK(f.entries().empty());  // the old mapping still shows the old file
  CHECK(dir.count() == 1);
}

TEST_CASE("safetensors: load converts dtype and moves device") {
  TempDir dir;
  const std::string path = dir.file("conv.safetensors");
  const Tensor f32 = Tensor::from_vector({1.0, 1.00390625, 3.14159265, -2.0e-3}, {2, 2});
  const Tensor bf16 = f32.to(DType::BF16);
  const Tensor f16 = f32.to(DType::F16);
  const Tensor i64 = Tensor::from_data<int64_t>({-5, 0, 123456}, {3});
  save_safetensors(path, {{"f32", f32}, {"bf16", bf16}, {"f16", f16}, {"i64", i64}});
  const SafetensorsFile f = SafetensorsFile::open(path);

  const Tensor as_bf16 = f.load("f32", DType::BF16);
  CHECK(as_bf16.dtype() == DType::BF16);
  CHECK(bytes_of(as_bf16) == bytes_of(bf16));  // same rounding as Tensor::to
  const Tensor widened = f.load("bf16", DType::F32);
  CHECK(widened.dtype() == DType::F32);
  CHECK(widened.to_vector() == bf16.to_vector());
  const Tensor f16_as_f64 = f.load("f16", DType::F64);
  CHECK(f16_as_f64.dtype() == DType::F64);
  CHECK(f16_as_f64.to_vector() == f16.to_vector());
  CHECK(f.load("i64", DType::F32).to_vector() == std::vector<double>{-5, 0, 123456});
  CHECK(f.load("f32", DType::F32).to_vector() == f32.to_vector());

  if (testing::have_cuda()) {
    const Tensor g = f.load("bf16", DType::F32, Device::cuda());
    CHECK(g.is_cuda());
    CHECK(g.to_vector() == bf16.to_vector());
    // Saving from the GPU writes the same bytes.
    const std::string path2 = dir.file("from_gpu.safetensors");
    save_safetensors(path2, {{"g", f32.to(Device::cuda()).transpose(0, 1)}});
    CHECK(bytes_of(SafetensorsFile::open(path2).load("g")) == bytes_of(f32.transpose(0, 1)));
  }
}

// --- files written by the Python safetensors library --------------------------

TEST_CASE("safetensors: reads the fixtures written by the Python library") {
  const std::string dir = GL_SAFETENSORS_FIXTURES;
  const Json expected = Json::parse_file(dir + "/expected.json");
  REQUIRE(expected.size() == 4);
  for (const auto& [key, exp] : expected.items()) {
    CAPTURE(key);
    std::vector<std::string> names;
    for (const Json& n : exp.at("names").as_array()) names.push_back(n.as_string());
    const auto& tensors = exp.at("tensors");
    REQUIRE(tensors.size() == names.size());
    if (key == "sharded") {
      const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(dir + "/" + key);
      CHECK(ck.names() == names);
      for (const std::string& n : names) {
        const SafetensorsEntry& e = ck.entry(n);
        check_described(ck.load(n, e.dtype), tensors.at(n), key + ": " + n);
      }
      continue;
    }
    const SafetensorsFile f = SafetensorsFile::open(dir + "/" + key);
    std::vector<std::string> got_names;
    for (const SafetensorsEntry& e : f.entries()) got_names.push_back(e.name);
    CHECK(got_names == names);
    for (const std::string& n : names) check_described(f.load(n), tensors.at(n), key + ": " + n);
    std::map<std::string, std::string> meta;
    for (const auto& [k, v] : exp.at("metadata").items()) meta[k] = v.as_string();
    CHECK(f.metadata() == meta);
    std::map<std::string, std::string> unsupported;
    for (const auto& [k, v] : exp.at("unsupported").items()) unsupported[k] = v.as_string();
    CHECK(f.unsupported() == unsupported);
    for (const auto& [name, dtype] : unsupported) {
      CHECK(f.find(name) == nullptr);
      CHECK_THROWS_WITH_AS(
          f.load(name),
          has("tensor '" + name + "' is stored as " + dtype + ", which gridlock cannot load"),
          Error);
    }
  }
}

// --- corrupted files --------------------------------------------------------

TEST_CASE("safetensors: truncated files and lying header lengths") {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"a", Tensor::ones({2, 3})}, {"b", Tensor::arange(4, DType::I64)}});
  const std::string bytes = read_bytes(good);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  const std::string p = dir.file("bad.safetensors");

  write_bytes(p, bytes.substr(0, 8 + size_t(n) / 2));  // cut in the header
  CHECK(contains(open_error(p), ": header length " + std::to_string(n) + " exceeds the " +
                                    std::to_string(n / 2) +
                                    " bytes after the length field (truncated file?)"));
  write_bytes(p, bytes.substr(0, bytes.size() - 3));  // cut in the data
  CHECK(contains(open_error(p), ": tensor 'b': data_offsets [24, 56] reach past the end of the "
                                "data buffer (53 bytes; truncated file?)"));
  write_bytes(p, bytes.substr(0, 5));
  CHECK(contains(open_error(p), ": file is 5 bytes, too short for a safetensors file"));
  write_bytes(p, "");
  CHECK(contains(open_error(p), ": file is 0 bytes, too short"));
  write_bytes(p, st_bytes("{}", "", 1000));
  CHECK(contains(open_error(p), ": header length 1000 exceeds the 2 bytes after the length field"));
  write_bytes(p, st_bytes("{}", "", uint64_t(1) << 40));
  CHECK(contains(open_error(p), ": header length 1099511627776 exceeds the 100 MB limit"));
  write_bytes(p, st_bytes("", ""));
  CHECK(contains(open_error(p), "(safetensors header): invalid JSON at line 1, column 1: "
                                "unexpected end of input"));

  const std::string missing = dir.file("missing.safetensors");
  CHECK(contains(open_error(missing), ": cannot open for reading: No such file or directory"));
  CHECK(contains(open_error(dir.str()), ": is a directory"));
}

TEST_CASE("safetensors: corrupt headers give one precise error each") {
  TempDir dir;
  const std::string p = dir.file("bad.safetensors");
  const std::string data8(8, '\0');
  struct Case {
    const char* header;
    std::string data;
    const char* message;
  };
  const Case cases[] = {
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8])", data8,
       " (safetensors header): invalid JSON at line 1, column 53: expected ',' or '}' in object"},
      {R"([1,2])", "", ": safetensors header is a JSON array, expected an object"},
      {R"({"a":5})", "", ": tensor 'a': expected an object, got integer"},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8,
       ": tensor 'a': data_offsets [0, 16] reach past the end of the data buffer (8 bytes"},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8,
       ": tensor 'a': data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12"},
      {R"({"a":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}})", data8,
       ": tensor 'a': data_offsets [0, 4] hold 4 bytes but BF16 [] needs 2"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", data8,
       ": tensor 'a': data_offsets [8, 4] are not an increasing pair of non-negative offsets"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", data8,
       ": tensor 'a': data_offsets [-4, 0] are not an increasing pair"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]}})",
       std::string(12, '\0'), ": tensors 'a' [0, 8) and 'b' [4, 12) overlap in the data buffer"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       data8, ": tensors 'a' [0, 8) and 'b' [0, 8) overlap"},
      {R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}})", data8,
       ": tensor 'a': unknown dtype 'Q4' (safetensors dtypes: BOOL"},
      {R"({"a":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,0]}})", data8,
       ": tensor 'a': negative dimension -2 at shape[1]"},
      {R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,0]}})", data8,
       ": tensor 'a': shape[0]: expected an integer, got number"},
      {R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,0]}})", data8,
       ": tensor 'a': shape: expected an array, got string"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}})", data8,
       ": tensor 'a': shape [4294967296, 4294967296, 4] is too large"},
      {R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", data8,
       ": tensor 'a': shape [0, 4611686018427387904, 4] is too large"},
      {R"({"a":{"dtype":"F32","shape":[2]}})", data8, ": tensor 'a': missing key 'data_offsets'"},
      {R"({"a":{"shape":[2],"data_offsets":[0,8]}})", data8, ": tensor 'a': missing key 'dtype'"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", data8,
       ": tensor 'a': data_offsets must be [begin, end], got 3 values"},
      {R"({"__metadata__":{"k":1}})", "", ": __metadata__['k']: expected a string, got integer"},
      {R"({"__metadata__":"x"})", "", ": __metadata__: expected an object, got string"},
      {R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
       R"("a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
       "", " (safetensors header): invalid JSON at line 1, column 58: duplicate key 'a'"},
  };
  for (const Case& c : cases) {
    const std::string header = c.header;
    CAPTURE(header);
    write_bytes(p, st_bytes(c.header, c.data));
    const std::string what = open_error(p);
    CHECK_MESSAGE(contains(what, p + c.message), what);
  }
}

TEST_CASE("safetensors: any corrupted byte gives a clean error or a valid file") {
  // Every byte of a small file replaced by a few values: open() and load()
  // must either succeed or throw gl::Error, never crash or read out of
  // bounds (run under the sanitizer build to see the latter).
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good, {{"a", Tensor::ones({2, 3})}, {"b", Tensor::arange(3, DType::I64)},
                          {"c", Tensor::zeros({0, 2}, DType::BF16)}},
                   {{"k", "v"}});
  const std::string bytes = read_bytes(good);
  const std::string p = dir.file("fuzz.safetensors");
  int opened = 0, rejected = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (const char c : {'\0', '9', '-', '"', '\xff'}) {
      std::string b = bytes;
      if (b[i] == c) continue;
      b[i] = c;
      write_bytes(p, b);
      try {
        const SafetensorsFile f = SafetensorsFile::open(p);
        for (const SafetensorsEntry& e : f.entries()) f.load(e.name, DType::F64);
        ++opened;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  CHECK(opened > 0);  // data bytes change values only
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: tensors of dtypes gridlock lacks are validated and reported") {
  TempDir dir;
  const std::string p = dir.file("bool.safetensors");
  // A Pythia-style bool mask next to a real parameter, and a gap (allowed).
  write_bytes(p, st_bytes(R"({"mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[0,4]},)"
                          R"("w":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          std::string(12, '\1')));
  const SafetensorsFile f = SafetensorsFile::open(p);
  REQUIRE(f.entries().size() == 1);
  CHECK(f.entries()[0].name == "w");
  CHECK(f.unsupported() == std::map<std::string, std::string>{{"mask", "BOOL"}});
  CHECK(f.find("mask") == nullptr);
  CHECK(contains(error_naming(p, [&] { f.load("mask", DType::F32); }),
                 ": tensor 'mask' is stored as BOOL, which gridlock cannot load"));
  CHECK(contains(error_naming(p, [&] { f.load("nope"); }),
                 ": no tensor 'nope' (the file holds 1 tensors)"));
  // ... but their sizes are still checked.
  write_bytes(p, st_bytes(R"({"mask":{"dtype":"U8","shape":[5],"data_offsets":[0,4]}})",
                          std::string(4, '\0')));
  CHECK(contains(open_error(p), ": tensor 'mask': data_offsets [0, 4] hold 4 bytes but U8 [5] "
                                "needs 5"));

  CHECK(safetensors_dtype_from_name("BF16", "x") == DType::BF16);
  CHECK(std::string(safetensors_dtype_name(DType::U16)) == "U16");
  CHECK_THROWS_WITH_AS(safetensors_dtype_from_name("I8", "model.safetensors: tensor 'q'"),
                       doctest::Contains("model.safetensors: tensor 'q': unsupported dtype 'I8' "
                                         "(gridlock reads F32, F64, BF16, F16, I32, I64, U16)"),
                       Error);
}

// --- writing errors ---------------------------------------------------------

TEST_CASE("safetensors: save errors name the path and leave no file behind") {
  TempDir dir;
  const std::string p = dir.file("out.safetensors");
  save_safetensors(p, {{"keep", Tensor::ones({2})}});
  const std::string before = read_bytes(p);
  const Tensor t = Tensor::zeros({3});

  CHECK(contains(error_naming(p, [&] { save_safetensors(p, {{"a", t}, {"b", t}, {"a", t}}); }),
                 "save_safetensors: " + p + ": tensor name 'a' given twice"));
  CHECK(contains(error_naming(p, [&] { save_safetensors(p, {{"__metadata__", t}}); }),
                 "'__metadata__' is reserved and cannot name a tensor"));
  CHECK(contains(error_naming(p, [&] { save_safetensors(p, {{"u", Tensor()}}); }),
                 "tensor 'u' is undefined"));
  const std::string nodir = dir.file("no/such/dir/out.safetensors");
  CHECK(contains(error_naming(nodir, [&] { save_safetensors(nodir, {{"a", t}}); }),
                 ": cannot create " + nodir + ".tmp." + std::to_string(::getpid()) +
                     ": No such file or directory"));

  // A full disk, simulated by a file size limit: write() fails with EFBIG
  // (SIGXFSZ ignored) part-way through the data.
  struct rlimit old_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string what =
      error_naming(p, [&] { save_safetensors(p, {{"big", Tensor::zeros({100000})}}); });
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  CHECK_MESSAGE(contains(what, "save_safetensors: " + p + ": write failed after 4096 bytes: "),
                what);

  // The previous file is untouched and no temporary file remains.
  CHECK(read_bytes(p) == before);
  CHECK(dir.count() == 1);
}

// --- checkpoint directories -------------------------------------------------

namespace {

const char* kShard1 = "model-00001-of-00002.safetensors";
const char* kShard2 = "model-00002-of-00002.safetensors";

void write_index(const TempDir& dir, const std::vector<std::pair<std::string, Json>>& map) {
  Json weight_map = Json::object();
  for (const auto& [k, v] : map) weight_map.set(k, v);
  Json index = Json::object();
  Json meta = Json::object();
  meta.set("total_size", Json(int64_t(64)));
  index.set("metadata", meta);
  index.set("weight_map", weight_map);
  write_bytes(dir.file("model.safetensors.index.json"), index.dump(2));
}

// Two shards: x.weight, x.bias in the first; y.weight in the second.
void write_shards(const TempDir& dir) {
  save_safetensors(dir.file(kShard1), {{"x.weight", Tensor::arange(6).view({2, 3})},
                                       {"x.bias", Tensor::full({2}, -1.0, DType::BF16)}});
  save_safetensors(dir.file(kShard2), {{"y.weight", Tensor::arange(4, DType::F16)}});
}

}  // namespace

TEST_CASE("safetensors: sharded checkpoint directory") {
  TempDir dir;
  write_shards(dir);
  write_index(dir, {{"x.bias", kShard1}, {"y.weight", kShard2}, {"x.weight", kShard1}});
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(dir.str());
  CHECK(ck.dir() == dir.str());
  CHECK(ck.names() == std::vector<std::string>{"x.weight", "x.bias", "y.weight"});
  CHECK(ck.entry("x.bias").dtype == DType::BF16);
  CHECK(ck.entry("y.weight").shape == Shape{4});
  const Tensor w = ck.load("x.weight", DType::F64);
  CHECK(w.dtype() == DType::F64);
  CHECK(w.shape() == Shape{2, 3});
  CHECK(w.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(ck.load("x.bias", DType::F32).to_vector() == std::vector<double>{-1, -1});
  CHECK(ck.load("y.weight", DType::F16).to_vector() == std::vector<double>{0, 1, 2, 3});
  CHECK(contains(error_naming(dir.str(), [&] { ck.entry("nope"); }),
                 ": no tensor 'nope' in the checkpoint"));
  CHECK(contains(error_naming(dir.str(), [&] { ck.load("nope", DType::F32); }),
                 ": no tensor 'nope' in the checkpoint"));

  // A single model.safetensors is preferred over an index, as in transformers.
  save_safetensors(dir.file("model.safetensors"), {{"only", Tensor::ones({1})}});
  CHECK(SafetensorsCheckpoint::open_dir(dir.str()).names() == std::vector<std::string>{"only"});
}

TEST_CASE("safetensors: checkpoint directory errors") {
  TempDir dir;
  const std::string d = dir.str();
  const std::string index = dir.file("model.safetensors.index.json");
  auto open_err = [&](const std::string& must_name) {
    return error_naming(must_name, [&] { SafetensorsCheckpoint::open_dir(d); });
  };
  CHECK(contains(open_err(d), d + ": no model.safetensors or model.safetensors.index.json found"));
  CHECK(contains(error_naming(d + "/nodir", [&] { SafetensorsCheckpoint::open_dir(d + "/nodir"); }),
                 "/nodir: not a directory"));

  write_shards(dir);
  write_index(dir, {{"x.weight", kShard1}, {"x.bias", kShard1}, {"y.weight", kShard2},
                    {"z", "model-00003-of-00003.safetensors"}});
  CHECK(contains(open_err(index), index + ": shard 'model-00003-of-00003.safetensors' (listed for "
                                          "tensor 'z') does not exist in " + d));
  write_index(dir, {{"x.weight", kShard1}, {"y.weight", kShard2}, {"z", kShard1}});
  CHECK(contains(open_err(index), ": tensor 'z' is listed in shard '" + std::string(kShard1) +
                                      "' but that shard has no such tensor"));
  write_index(dir, {{"x.weight", kShard1}, {"x.bias", kShard2}, {"y.weight", kShard2}});
  CHECK(contains(open_err(index), ": tensor 'x.bias' is listed in shard '" +
                                      std::string(kShard2) + "' but is stored in '" + kShard1 +
                                      "'"));
  write_index(dir, {{"x.weight", kShard1}, {"y.weight", Json(3)}});
  CHECK(contains(open_err(index), ": weight_map['y.weight']: expected a string, got integer"));
  write_index(dir, {{"x.weight", "../model.safetensors"}});
  CHECK(contains(open_err(index), ": weight_map['x.weight'] = '../model.safetensors' is not a file "
                                  "name inside the model directory"));
  write_index(dir, {{"x.weight", "/etc/passwd"}});
  CHECK(contains(open_err(index), "is not a file name inside the model directory"));
  write_bytes(index, "{\"weight_map\": {\"x.weight\": }");
  CHECK(contains(open_err(index), index + ": invalid JSON at line 1, column 29"));
  write_bytes(index, "{\"metadata\": {}}");
  CHECK(contains(open_err(index), index + ": missing key 'weight_map'"));

  // A tensor stored in two shards (whatever the index says).
  save_safetensors(dir.file(kShard2),
                   {{"y.weight", Tensor::ones({1})}, {"x.bias", Tensor::ones({2})}});
  write_index(dir, {{"x.weight", kShard1}, {"x.bias", kShard1}, {"y.weight", kShard2}});
  CHECK(contains(open_err(d), ": tensor 'x.bias' appears in two shards: '" + std::string(kShard1) +
                                  "' and '" + kShard2 + "'"));

  // A corrupt shard: the error names the shard file.
  write_bytes(dir.file(kShard2), st_bytes("{", ""));
  CHECK(contains(open_err(dir.file(kShard2)), "(safetensors header): invalid JSON"));

  // Tensors of unsupported dtypes are reported at checkpoint level too.
  TempDir single;
  write_bytes(single.file("model.safetensors"),
              st_bytes(R"({"m":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", "\1"));
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(single.str());
  CHECK(ck.names().empty());
  CHECK(contains(error_naming(single.str(), [&] { ck.entry("m"); }),
                 ": tensor 'm' is stored as BOOL in " + single.file("model.safetensors") +
                     ", which gridlock cannot load"));
}
