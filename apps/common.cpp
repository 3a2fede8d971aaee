// Shared program helpers; see apps/common.h.
#include "apps/common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/device_hooks.h"
#include "core/error.h"

namespace gl::apps {

int run_program(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}

// --- flags -------------------------------------------------------------------

std::string ArgCursor::next() {
  if (inline_value_) throw UsageError("unexpected value '" + *inline_value_ + "'");
  std::string arg = argv_[i_++];
  const size_t eq = arg.find('=');
  if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
    inline_value_ = arg.substr(eq + 1);
    arg.resize(eq);
  }
  return arg;
}

std::string ArgCursor::value(const std::string& flag) {
  if (inline_value_) {
    std::string v = *inline_value_;
    inline_value_.reset();
    return v;
  }
  if (i_ >= argc_) throw UsageError("missing value after " + flag);
  return argv_[i_++];
}

void ArgCursor::no_value(const std::string& flag) {
  if (inline_value_) throw UsageError(flag + " takes no value");
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min_value) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError(flag + " needs an integer, got '" + text + "'");
  if (v < min_value)
    throw UsageError(flag + " must be >= " + std::to_string(min_value) + ", got " + text);
  return int64_t(v);
}

uint64_t parse_u64(const std::string& flag, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  // strtoull accepts "-1" (wrapping it): reject any sign explicitly.
  if (text.empty() || text[0] == '-' || text[0] == '+' || *end != '\0' || errno == ERANGE)
    throw UsageError(flag + " needs a non-negative integer, got '" + text + "'");
  return uint64_t(v);
}

double parse_double(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw UsageError(flag + " needs a finite number, got '" + text + "'");
  return v;
}

Device parse_device(const std::string& flag, const std::string& text) {
  Device d;
  try {
    d = device_from_name(text);
  } catch (const Error&) {
    throw UsageError(flag + " must be cpu, cuda or cuda:N, got '" + text + "'");
  }
  if (d.is_cuda()) {
    const int n = cuda_hooks::device_count();
    GL_CHECK(cuda_hooks::built(), flag, " ", text, ": this build has no CUDA backend");
    GL_CHECK(d.index < n, flag, " ", text, ": ", n, " CUDA device(s) visible");
  }
  return d;
}

DType parse_float_dtype(const std::string& flag, const std::string& text) {
  if (text == "f32") return DType::F32;
  if (text == "f64") return DType::F64;
  throw UsageError(flag + " must be f32 or f64, got '" + text + "'");
}

// --- files -------------------------------------------------------------------

static bool stat_kind(const std::string& path, bool want_dir) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

bool file_exists(const std::string& path) { return stat_kind(path, false); }

void require_directory(const std::string& path, const std::string& what) {
  GL_CHECK(stat_kind(path, true), what, " '", path, "': no such directory");
}

void require_file(const std::string& path, const std::string& what) {
  GL_CHECK(stat_kind(path, false), what, " '", path, "': no such file");
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GL_CHECK(in, path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream os;
  os << in.rdbuf();
  GL_CHECK(!in.bad(), path, ": read error");
  return os.str();
}

// --- progress bar ------------------------------------------------------------

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (enabled_) draw(0, "");
}

ProgressBar::~ProgressBar() {
  if (enabled_ && !finished_) std::fputc('\n', stderr);  // leave the line on an error
}

void ProgressBar::update(int64_t done, const std::string& suffix) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(done, suffix);
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::fputc('\n', stderr);
}

void ProgressBar::draw(int64_t done, const std::string& suffix) {
  constexpr int kWidth = 30;
  const double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  const int fill = int(frac * kWidth);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string bar(size_t(fill), '#');
  bar.resize(kWidth, '.');
  char eta[32] = "";
  if (done > 0 && done < total_)
    std::snprintf(eta, sizeof eta, " eta %.0fs", secs * double(total_ - done) / double(done));
  // \r + clear to end of line: redraw in place.
  std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.1fs%s%s%s", label_.c_str(), bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total_), secs, eta,
               suffix.empty() ? "" : " ", suffix.c_str());
  std::fflush(stderr);
}

// --- token files ---------------------------------------------------------------

static bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::optional<TokenDType> token_file_dtype(const std::string& path,
                                           const std::string& dtype_flag) {
  if (dtype_flag == "u16") return TokenDType::U16;
  if (dtype_flag == "u32") return TokenDType::U32;
  if (!dtype_flag.empty())
    throw UsageError("--token-dtype must be u16 or u32, got '" + dtype_flag + "'");
  if (ends_with(path, ".u16")) return TokenDType::U16;
  if (ends_with(path, ".u32")) return TokenDType::U32;
  if (ends_with(path, ".bin"))
    throw UsageError("'" + path + "': a .bin token file needs --token-dtype u16|u32");
  return std::nullopt;
}

std::vector<int32_t> read_token_file(const std::string& path, TokenDType dtype,
                                     int64_t vocab_size, int64_t max_tokens) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  GL_CHECK(in, path, ": cannot open (", std::strerror(errno), ")");
  const size_t size = size_t(in.tellg()), width = dtype == TokenDType::U16 ? 2 : 4;
  GL_CHECK(size % width == 0, path, ": size ", size, " bytes is not a whole number of ",
           width * 8, "-bit tokens");
  int64_t n = int64_t(size / width);
  if (max_tokens >= 0 && n > max_tokens) n = max_tokens;  // read only what is used
  std::string bytes(size_t(n) * width, '\0');
  in.seekg(0);
  in.read(bytes.data(), std::streamsize(bytes.size()));
  GL_CHECK(in.gcount() == std::streamsize(bytes.size()), path, ": read error");
  std::vector<int32_t> ids(static_cast<size_t>(n));
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (int64_t i = 0; i < n; ++i) {
    // Little-endian by construction, whatever the host's byte order.
    uint64_t v = 0;
    for (size_t b = width; b-- > 0;) v = (v << 8) | p[size_t(i) * width + b];
    GL_CHECK(int64_t(v) < vocab_size, path, ": token id ", v, " at token ", i, " (byte offset ",
             size_t(i) * width, ") is outside the model's vocabulary of ", vocab_size);
    ids[size_t(i)] = int32_t(v);
  }
  return ids;
}

// --- windows -------------------------------------------------------------------

std::vector<Window> eval_windows(int64_t n_tokens, int64_t context) {
  GL_CHECK(context >= 2, "eval_windows: context must be >= 2, got ", context);
  std::vector<Window> out;
  for (int64_t start = 0; start < n_tokens; start += context) {
    const int64_t len = std::min(context, n_tokens - start);
    if (len >= 2) out.push_back({start, len});
  }
  return out;
}

// --- text ------------------------------------------------------------------------

size_t utf8_complete_prefix(const std::string& s) {
  // Look back over at most 3 continuation bytes for the last lead byte.
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i == 0) return back == 0 ? 0 : s.size();  // only continuation bytes: not UTF-8, pass on
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 1;  // bytes the sequence starting at the lead byte should have
  if (lead >= 0xF0) need = 4;
  else if (lead >= 0xE0) need = 3;
  else if (lead >= 0xC0) need = 2;
  else return s.size();  // ASCII lead: complete (stray continuations pass through)
  return back + 1 >= need ? s.size() : i - 1;
}

}  // namespace gl::apps
