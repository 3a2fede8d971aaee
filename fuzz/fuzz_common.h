// Shared by the libFuzzer targets (fuzz/fuzz_*.cpp): the parsers under test
// read files (most mmap them), so each input is written to a scratch file
// first. What counts as a finding: a crash, an ASan/UBSan report, a leak, a
// hang, or any exception other than gl::Error (a bad file must end in a
// one-line gl::Error naming the file and what is wrong, never in another
// exception type or undefined behaviour).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace gl::fuzz {

// A per-process scratch path in $TMPDIR (or /tmp) ending in `suffix`.
inline std::string scratch_path(const std::string& suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/gl_fuzz_" + std::to_string(::getpid()) + suffix;
}

// Writes bytes to `path`, replacing it.
inline void write_file(const std::string& path, const uint8_t* data, size_t n) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();  // the harness itself failing is not a finding about the parser
  if (n && std::fwrite(data, 1, n, f) != n) std::abort();
  std::fclose(f);
}

// Runs fn, accepting gl::Error (the documented way to reject a bad input).
template <class Fn>
void expect_ok_or_error(Fn&& fn) {
  try {
    fn();
  } catch (const gl::Error&) {
  }
}

}  // namespace gl::fuzz
