// libFuzzer target: the safetensors reader (core/safetensors.h): header
// length, JSON header, dtypes, shapes and data offsets; then every tensor of
// at most 1 MiB is loaded as stored and as f32.
#include "core/safetensors.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = gl::fuzz::scratch_path(".safetensors");
  gl::fuzz::write_file(path, data, size);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::SafetensorsFile f = gl::SafetensorsFile::open(path);
    (void)f.metadata();
    for (const gl::SafetensorsEntry& e : f.entries()) {
      if (e.end - e.begin > (size_t(1) << 20)) continue;
      gl::fuzz::expect_ok_or_error([&] { (void)f.load(e.name); });
      gl::fuzz::expect_ok_or_error([&] { (void)f.load(e.name, gl::DType::F32); });
    }
  });
  return 0;
}
