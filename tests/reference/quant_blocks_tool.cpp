// The C++ side of tests/reference/quant_blocks_ref.py: encodes and decodes
// raw little-endian f32 files with gridlock's ggml codecs and presets, so
// the Python gguf package (llama.cpp's gguf-py) can compare bytes.
//
//   quant_blocks_tool quantize TYPE IN.f32 OUT.bin
//       ggml_quantize(TYPE, all values of IN) -> OUT (TYPE: F32 F16 BF16
//       Q4_0 Q4_1 Q8_0)
//   quant_blocks_tool dequantize TYPE N IN.bin OUT.f32
//       ggml_dequantize of N values
//   quant_blocks_tool fake PRESET ROWS COLS IN.f32 OUT.f32
//       fake_quantize_reference(IN as [ROWS, COLS], quant_preset(PRESET))
// Exit status 1 with a one-line message on any error.
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "quant/ggml_blocks.h"
#include "quant/quantizer.h"

using namespace gl;

namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GL_CHECK(f.good(), "cannot open ", path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> read_f32(const std::string& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  GL_CHECK(b.size() % 4 == 0, path, ": ", b.size(), " bytes is not a whole number of f32");
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

void write_bytes(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data), std::streamsize(n));
  GL_CHECK(f.good(), "cannot write ", path);
}

GgmlType type_from_name(const std::string& name) {
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0,
                     GgmlType::Q4_1, GgmlType::Q8_0})
    if (name == ggml_type_name(t)) return t;
  GL_CHECK(false, "unknown ggml type '", name, "' (expected F32 F16 BF16 Q4_0 Q4_1 Q8_0)");
}

int run(const std::vector<std::string>& a) {
  if (a.size() == 4 && a[0] == "quantize") {
    const std::vector<float> x = read_f32(a[2]);
    const std::vector<uint8_t> b = ggml_quantize(type_from_name(a[1]), x.data(), int64_t(x.size()));
    write_bytes(a[3], b.data(), b.size());
    return 0;
  }
  if (a.size() == 5 && a[0] == "dequantize") {
    const GgmlType t = type_from_name(a[1]);
    const int64_t n = std::stoll(a[2]);
    const std::vector<uint8_t> b = read_bytes(a[3]);
    GL_CHECK(b.size() == ggml_row_bytes(t, n), a[3], ": ", b.size(), " bytes, expected ",
             ggml_row_bytes(t, n));
    std::vector<float> y(static_cast<size_t>(n));
    ggml_dequantize(t, b.data(), n, y.data());
    write_bytes(a[4], y.data(), y.size() * 4);
    return 0;
  }
  if (a.size() == 6 && a[0] == "fake") {
    const int64_t rows = std::stoll(a[2]), cols = std::stoll(a[3]);
    const std::vector<float> x = read_f32(a[4]);
    const Tensor y = fake_quantize_reference(Tensor::from_data<float>(x, {rows, cols}),
                                             quant_preset(a[1]));
    write_bytes(a[5], y.data<float>(), size_t(y.numel()) * 4);
    return 0;
  }
  std::fprintf(stderr,
               "usage: quant_blocks_tool quantize TYPE IN.f32 OUT.bin | dequantize TYPE N IN.bin "
               "OUT.f32 | fake PRESET ROWS COLS IN.f32 OUT.f32\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quant_blocks_tool: %s\n", e.what());
    return 1;
  }
}
