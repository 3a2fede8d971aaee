// apps/common: evaluation windows (every token in exactly one window),
// token files (widths, little-endian, errors naming file and offset), the
// token-file detection, UTF-8 prefixes for streamed output, flag values.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/common.h"
#include "core/device_hooks.h"
#include "core/error.h"

using namespace gl;
using namespace gl::apps;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("gridlock_test_common_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

TEST_CASE("eval_windows: hand cases") {
  auto as_pairs = [](const std::vector<Window>& ws) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const Window& w : ws) out.emplace_back(w.start, w.length);
    return out;
  };
  using P = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(as_pairs(eval_windows(10, 4)) == P{{0, 4}, {4, 4}, {8, 2}});
  CHECK(as_pairs(eval_windows(9, 4)) == P{{0, 4}, {4, 4}});  // 1 left: predicts nothing
  CHECK(as_pairs(eval_windows(8, 4)) == P{{0, 4}, {4, 4}});
  CHECK(as_pairs(eval_windows(3, 4)) == P{{0, 3}});
  CHECK(as_pairs(eval_windows(1, 4)).empty());
  CHECK(as_pairs(eval_windows(0, 4)).empty());
  CHECK_THROWS_WITH_AS(eval_windows(10, 1), doctest::Contains("context must be >= 2"), Error);
}

TEST_CASE("eval_windows: every token in exactly one window, in order") {
  for (int64_t ctx = 2; ctx <= 9; ++ctx) {
    for (int64_t n = 0; n <= 40; ++n) {
      CAPTURE(ctx);
      CAPTURE(n);
      std::vector<int> seen(size_t(n), 0);
      int64_t next = 0, scored = 0;
      for (const Window& w : eval_windows(n, ctx)) {
        CHECK(w.start == next);  // consecutive, non-overlapping
        CHECK(w.length >= 2);
        CHECK(w.length <= ctx);
        for (int64_t i = w.start; i < w.start + w.length; ++i) ++seen[size_t(i)];
        next = w.start + w.length;
        scored += w.length - 1;
      }
      // Covered once, except a lone last token (n % ctx == 1), which a
      // window of its own could not score.
      const int64_t uncovered = (n % ctx == 1) ? 1 : 0;
      for (int64_t i = 0; i < n; ++i) CHECK(seen[size_t(i)] == (i < n - uncovered ? 1 : 0));
      // Tokens scored: n minus the first of each window (and the lone one).
      const int64_t windows = (n - uncovered + ctx - 1) / ctx;
      CHECK(scored == n - uncovered - windows);
    }
  }
}

TEST_CASE("token files: u16 and u32, little-endian, max_tokens") {
  const std::string p16 = temp_path("a.u16"), p32 = temp_path("a.u32");
  write_bytes(p16, {0x01, 0x00, 0x34, 0x12, 0xff, 0xff});
  write_bytes(p32, {0x01, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x02});
  CHECK(read_token_file(p16, TokenDType::U16, 70000) == std::vector<int32_t>{1, 0x1234, 0xffff});
  CHECK(read_token_file(p16, TokenDType::U16, 70000, 2) == std::vector<int32_t>{1, 0x1234});
  CHECK(read_token_file(p32, TokenDType::U32, 0x3000000) ==
        std::vector<int32_t>{1, 0x02345678});
  // An id at or past the vocabulary: the file, the token index and the byte offset.
  CHECK_THROWS_WITH_AS(read_token_file(p16, TokenDType::U16, 0x1234),
                       doctest::Contains((p16 + ": token id 4660 at token 1 (byte offset 2)").c_str()),
                       Error);
  CHECK_THROWS_WITH_AS(read_token_file(p32, TokenDType::U32, 1000),
                       doctest::Contains("at token 1 (byte offset 4)"), Error);
  // 6 bytes are not a whole number of u32 tokens.
  CHECK_THROWS_WITH_AS(read_token_file(p16, TokenDType::U32, 70000),
                       doctest::Contains("not a whole number of 32-bit tokens"), Error);
  CHECK_THROWS_WITH_AS(read_token_file(temp_path("missing.u16"), TokenDType::U16, 10),
                       doctest::Contains("cannot open"), Error);
  std::filesystem::remove(p16);
  std::filesystem::remove(p32);
}

TEST_CASE("token files: detection by extension or --token-dtype") {
  CHECK(token_file_dtype("x.u16", "") == TokenDType::U16);
  CHECK(token_file_dtype("dir/x.u32", "") == TokenDType::U32);
  CHECK(token_file_dtype("x.bin", "u32") == TokenDType::U32);
  CHECK(token_file_dtype("x.txt", "u16") == TokenDType::U16);
  CHECK_FALSE(token_file_dtype("x.txt", "").has_value());
  CHECK_FALSE(token_file_dtype("u16", "").has_value());
  CHECK_THROWS_AS(token_file_dtype("x.bin", ""), UsageError);
  CHECK_THROWS_AS(token_file_dtype("x.u16", "u8"), UsageError);
}

TEST_CASE("utf8_complete_prefix never ends inside a character") {
  CHECK(utf8_complete_prefix("") == 0);
  CHECK(utf8_complete_prefix("abc") == 3);
  CHECK(utf8_complete_prefix("a\xC3") == 1);          // 1 of 2 bytes of "é"
  CHECK(utf8_complete_prefix("a\xC3\xA9") == 3);
  CHECK(utf8_complete_prefix("\xE2\x82") == 0);       // 2 of 3 bytes of "€"
  CHECK(utf8_complete_prefix("x\xE2\x82\xAC") == 4);
  CHECK(utf8_complete_prefix("\xF0\x9F\x98") == 0);   // 3 of 4 bytes of an emoji
  CHECK(utf8_complete_prefix("\xF0\x9F\x98\x80") == 4);
  CHECK(utf8_complete_prefix("ab\x80") == 3);         // stray continuation: passed on
}

TEST_CASE("flag values: one-line usage errors") {
  CHECK(parse_int("--batch", "12", 1) == 12);
  CHECK_THROWS_WITH_AS(parse_int("--batch", "0", 1), doctest::Contains("--batch must be >= 1"),
                       UsageError);
  CHECK_THROWS_WITH_AS(parse_int("--batch", "3x", 1), doctest::Contains("needs an integer"),
                       UsageError);
  CHECK_THROWS_AS(parse_int("--batch", "", 1), UsageError);
  CHECK(parse_u64("--seed", "18446744073709551615") == 18446744073709551615ull);
  CHECK_THROWS_AS(parse_u64("--seed", "-1"), UsageError);
  CHECK(parse_double("--top-p", "0.9") == 0.9);
  CHECK_THROWS_AS(parse_double("--top-p", "nan"), UsageError);
  CHECK_THROWS_AS(parse_double("--top-p", "0.9.1"), UsageError);
  CHECK(parse_device("--device", "cpu").is_cpu());
  CHECK_THROWS_AS(parse_device("--device", "tpu"), UsageError);
  if (cuda_hooks::device_count() == 0)  // asked-for hardware that is absent: a runtime error
    CHECK_THROWS_AS(parse_device("--device", "cuda"), Error);
  CHECK(parse_float_dtype("--dtype", "f64") == DType::F64);
  CHECK_THROWS_AS(parse_float_dtype("--dtype", "f16"), UsageError);
}

TEST_CASE("ArgCursor: --flag value, --flag=value, positionals") {
  std::vector<std::string> words{"prog", "dir", "--context=8", "--batch", "2", "--json"};
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  ArgCursor args(int(argv.size()), argv.data());
  CHECK(args.next() == "dir");
  CHECK(args.next() == "--context");
  CHECK(args.value("--context") == "8");
  CHECK(args.next() == "--batch");
  CHECK(args.value("--batch") == "2");
  CHECK(args.next() == "--json");
  CHECK_THROWS_WITH_AS(args.value("--json"), doctest::Contains("missing value after --json"),
                       UsageError);
  CHECK(args.done());
}

TEST_CASE("run_program: exit 2 for usage errors, 1 for runtime errors") {
  CHECK(run_program("t", [] { return 0; }) == 0);
  CHECK(run_program("t", []() -> int { throw UsageError("bad flag"); }) == 2);
  CHECK(run_program("t", []() -> int {
          GL_CHECK(false, "broken file");
          return 0;
        }) == 1);
}
