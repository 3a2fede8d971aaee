// Helpers shared by the programs in apps/ (eval, sample): flag parsing with
// one-line errors, the exit-code convention, a progress bar, token files and
// the evaluation windows.
//
// Exit codes: 0 success; 2 usage error (unknown flag, missing or bad value:
// UsageError); 1 runtime error (missing file, bad model or data, any
// gl::Error). Every error is one line on stderr: "<program>: <message>".
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace gl::apps {

// A command-line mistake: reported with a pointer to --help, exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `body`, printing any exception as one line "<program>: <message>" on
// stderr and returning the exit code above (body's own return otherwise).
int run_program(const char* program, const std::function<int()>& body);

// Walks argv: flags as "--name value" or "--name=value", positionals.
class ArgCursor {
 public:
  ArgCursor(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool done() const { return i_ >= argc_; }
  // The next argument; for "--name=value" returns "--name" and keeps value
  // for the value() call that must follow.
  std::string next();
  // The value of flag `flag` (just returned by next()); UsageError if absent.
  std::string value(const std::string& flag);
  // After a boolean flag: UsageError if it was written "--flag=value".
  void no_value(const std::string& flag);

 private:
  int argc_;
  char** argv_;
  int i_ = 1;
  std::optional<std::string> inline_value_;
};

// Typed flag values; each throws UsageError naming the flag and the text.
int64_t parse_int(const std::string& flag, const std::string& text, int64_t min_value);
uint64_t parse_u64(const std::string& flag, const std::string& text);
double parse_double(const std::string& flag, const std::string& text);
// "cpu", "cuda", "cuda:N": a bad name is a UsageError; a CUDA device that
// this build or machine lacks is a runtime error (gl::Error).
Device parse_device(const std::string& flag, const std::string& text);
// "f32" | "f64" (the model's compute dtype).
DType parse_float_dtype(const std::string& flag, const std::string& text);

// Throws gl::Error "<what> 'path': no such directory/file" unless it exists.
void require_directory(const std::string& path, const std::string& what);
void require_file(const std::string& path, const std::string& what);
bool file_exists(const std::string& path);
std::string read_text_file(const std::string& path);

// --- progress bar (stderr) ---------------------------------------------------
bool stderr_is_tty();

// "label [#######.......] 12/40 3.1s eta 7s <suffix>" redrawn in place on
// stderr (at most ~10 times a second); nothing at all when disabled.
class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled);
  void update(int64_t done, const std::string& suffix = "");
  void finish();  // final redraw and newline (once)
  ~ProgressBar();

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  void draw(int64_t done, const std::string& suffix);
};

// --- token files ------------------------------------------------------------
// Raw little-endian token ids, no header: .u16 (2 bytes each) or .u32
// (4 bytes each); .bin needs the width given with --token-dtype.
enum class TokenDType { U16, U32 };

// The token width for `path`: from `dtype_flag` ("u16" | "u32", UsageError
// otherwise) when not empty, else from the extension (.u16 / .u32; .bin
// without a flag is a UsageError). nullopt: not a token file (text).
std::optional<TokenDType> token_file_dtype(const std::string& path,
                                           const std::string& dtype_flag);

// Reads at most max_tokens (< 0: all) ids. Errors name the file: a size that
// is not a whole number of tokens, or an id >= vocab_size (with its token
// index and byte offset).
std::vector<int32_t> read_token_file(const std::string& path, TokenDType dtype,
                                     int64_t vocab_size, int64_t max_tokens = -1);

// --- evaluation windows -----------------------------------------------------
struct Window {
  int64_t start = 0, length = 0;  // tokens [start, start + length)
};

// Consecutive non-overlapping windows of `context` tokens from token 0; the
// last partial window is included when it has >= 2 tokens (one token
// predicts nothing). Each window scores its tokens 1..length-1.
std::vector<Window> eval_windows(int64_t n_tokens, int64_t context);

// --- text output ------------------------------------------------------------
// Length of the longest prefix of s that does not end inside a UTF-8
// sequence (so streamed output never splits a character).
size_t utf8_complete_prefix(const std::string& s);

}  // namespace gl::apps
