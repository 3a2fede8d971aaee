// libFuzzer target: gridlock's flat token shard reader (data/token_shard.h):
// header, dtype, vocab size and count against the file length; then the id
// range check and reads of the first tokens.
#include "data/token_shard.h"
#include "fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = gl::fuzz::scratch_path(".gltok");
  gl::fuzz::write_file(path, data, size);
  gl::fuzz::expect_ok_or_error([&] {
    const gl::TokenShard s = gl::TokenShard::open(path);
    gl::fuzz::expect_ok_or_error([&] { s.check_ids(); });
    const size_t n = s.count() < 1024 ? s.count() : 1024;
    if (n) (void)s.read(0, n);
    if (s.count()) (void)s.token(s.count() - 1);
  });
  return 0;
}
