// libFuzzer target: the GGUF reader (quant/gguf.h): magic, version, the
// key/value section (every type, nested arrays), tensor infos, alignment and
// data offsets; then every tensor of at most 1 MiB is dequantized.
#include "fuzz/fuzz_common.h"
#include "quant/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = gl::fuzz::scratch_path(".gguf");
  gl::fuzz::write_file(path, data, size);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::GgufReader r = gl::GgufReader::open(path);
    (void)r.metadata();
    for (const gl::GgufTensorInfo& t : r.tensors()) {
      if (t.nbytes > (uint64_t(1) << 20)) continue;
      gl::fuzz::expect_ok_or_error([&] { (void)r.dequantize(t); });
    }
  });
  return 0;
}
