// libFuzzer target: the Megatron MMIDIDX reader (data/indexed_dataset.h).
// Input layout: a 4-byte little-endian length L, then L bytes of .idx, then
// the .bin's bytes (so the fuzzer mutates both and their consistency checks:
// sizes, pointers, document index against the .bin's length).
#include <cstring>

#include "data/indexed_dataset.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string prefix = gl::fuzz::scratch_path("_document");
  if (size < 4) return 0;
  uint32_t L = 0;
  std::memcpy(&L, data, 4);
  const size_t idx_len = L < size - 4 ? L : size - 4;
  gl::fuzz::write_file(prefix + ".idx", data + 4, idx_len);
  gl::fuzz::write_file(prefix + ".bin", data + 4 + idx_len, size - 4 - idx_len);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::IndexedDataset ds = gl::IndexedDataset::open(prefix);
    const size_t n = ds.size() < 64 ? ds.size() : 64;
    for (size_t i = 0; i < n; ++i) {
      if (ds.sequence_length(i) > (size_t(1) << 16)) continue;
      (void)ds.read_sequence(i);
    }
  });
  return 0;
}
