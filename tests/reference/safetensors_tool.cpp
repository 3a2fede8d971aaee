// The C++ side of tests/reference/safetensors_interop.py: lets the Python
// safetensors library check what gridlock writes, and lets the Python test
// of tools/convert_pytorch_bin.py check that gridlock reads what it writes.
//
//   safetensors_tool write EXPECTED_JSON KEY OUT
//       builds the tensors described by EXPECTED_JSON[KEY] ({"metadata": {},
//       "tensors": {name: {"dtype", "shape", "values"}}}) and saves them to
//       OUT with save_safetensors; 2-D tensors are passed as transposed
//       (strided) views and floating ones are routed through f64 on purpose,
//       so the writer's contiguous() and dtype handling are exercised.
//   safetensors_tool dump PATH
//       prints {"names": [...], "metadata": {...}, "tensors": {name: {"dtype",
//       "shape", "values"}}} for a .safetensors file or a model directory.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <string>

#include "core/safetensors.h"

using namespace gl;

namespace {

Tensor build(const Json& desc, const std::string& name) {
  const DType dt = safetensors_dtype_from_name(desc.at("dtype", name).as_string(), name);
  Shape shape;
  for (const Json& d : desc.at("shape", name).as_array()) shape.push_back(d.as_int());
  const auto& values = desc.at("values", name).as_array();
  Tensor t;
  if (dt == DType::I64) {  // exact: int64 values beyond 2^53 must survive
    std::vector<int64_t> v;
    for (const Json& x : values) v.push_back(x.as_int());
    t = Tensor::from_data(v, shape);
  } else {
    std::vector<double> v;
    for (const Json& x : values) v.push_back(x.as_double());
    t = Tensor::from_vector(v, shape, dt == DType::I32 ? DType::I32 : DType::F64);
    // f64 -> f16/bf16 rounds once; the expected values are representable.
    t = t.to(dt);
  }
  if (shape.size() == 2) {
    // Same values, but as a transposed view of a [cols, rows] tensor.
    Tensor tt = t.transpose(0, 1).contiguous();
    t = tt.transpose(0, 1);
  }
  return t;
}

int write_mode(const std::string& expected_path, const std::string& key, const std::string& out) {
  const Json expected = Json::parse_file(expected_path);
  const Json& set = expected.at(key, expected_path);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [name, desc] : set.at("tensors", key).items())
    tensors.emplace_back(name, build(desc, name));
  std::map<std::string, std::string> meta;
  if (const Json* m = set.find("metadata"))
    for (const auto& [k, v] : m->items()) meta[k] = v.as_string();
  save_safetensors(out, tensors, meta);
  return 0;
}

Json describe(const SafetensorsEntry& e, const Tensor& t) {
  Json d = Json::object();
  d.set("dtype", Json(safetensors_dtype_name(e.dtype)));
  Json shape = Json::array();
  for (int64_t s : e.shape) shape.push_back(Json(s));
  d.set("shape", shape);
  Json values = Json::array();
  if (e.dtype == DType::I64 || e.dtype == DType::I32) {
    for (int64_t v : t.to_vector_as<int64_t>()) values.push_back(Json(v));
  } else {
    for (double v : t.to_vector()) values.push_back(Json(v));
  }
  d.set("values", values);
  return d;
}

int dump_mode(const std::string& path) {
  Json out = Json::object();
  Json names = Json::array(), tensors = Json::object(), meta = Json::object();
  if (std::filesystem::is_directory(path)) {
    const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(path);
    for (const std::string& n : ck.names()) {
      const SafetensorsEntry& e = ck.entry(n);
      names.push_back(Json(n));
      tensors.set(n, describe(e, ck.load(n, e.dtype)));
    }
  } else {
    const SafetensorsFile f = SafetensorsFile::open(path);
    for (const SafetensorsEntry& e : f.entries()) {
      names.push_back(Json(e.name));
      tensors.set(e.name, describe(e, f.load(e.name)));
    }
    for (const auto& [k, v] : f.metadata()) meta.set(k, Json(v));
  }
  out.set("names", names);
  out.set("metadata", meta);
  out.set("tensors", tensors);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "write" && argc == 5) return write_mode(argv[2], argv[3], argv[4]);
    if (mode == "dump" && argc == 3) return dump_mode(argv[2]);
    std::fprintf(stderr,
                 "usage: safetensors_tool write EXPECTED_JSON KEY OUT\n"
                 "       safetensors_tool dump FILE_OR_MODEL_DIR\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "safetensors_tool: %s\n", e.what());
    return 1;
  }
}
