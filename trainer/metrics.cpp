// metrics.jsonl writer/reader and the progress line; format, crash-safety
// and null <-> NaN rules in trainer/metrics.h.
#include "trainer/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace gl {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Non-finite numbers -> null, recursively (Json::dump refuses them).
Json nulls_for_non_finite(const Json& j) {
  switch (j.type()) {
    case Json::Type::DOUBLE:
      return std::isfinite(j.as_double()) ? j : Json();
    case Json::Type::ARRAY: {
      Json out = Json::array();
      for (const Json& v : j.as_array()) out.push_back(nulls_for_non_finite(v));
      return out;
    }
    case Json::Type::OBJECT: {
      Json out = Json::object();
      for (const auto& [k, v] : j.items()) out.set(k, nulls_for_non_finite(v));
      return out;
    }
    default:
      return j;
  }
}

// The inverse on read: every null was a non-finite number.
Json nan_for_nulls(const Json& j) {
  switch (j.type()) {
    case Json::Type::NUL:
      return Json(kNaN);
    case Json::Type::ARRAY: {
      Json out = Json::array();
      for (const Json& v : j.as_array()) out.push_back(nan_for_nulls(v));
      return out;
    }
    case Json::Type::OBJECT: {
      Json out = Json::object();
      for (const auto& [k, v] : j.items()) out.set(k, nan_for_nulls(v));
      return out;
    }
    default:
      return j;
  }
}

// "" when `record` is a valid metrics record, else what is wrong with it.
std::string record_problem(const Json& record) {
  if (!record.is_object()) return std::string("expected a JSON object, got ") + record.type_name();
  const Json* kind = record.find("kind");
  if (!kind || !kind->is_string() || kind->as_string().empty())
    return "missing or non-string \"kind\"";
  const Json* step = record.find("step");
  if (!step || !step->is_int()) return "missing or non-integer \"step\"";
  if (step->as_int() < 0) return "negative \"step\" " + std::to_string(step->as_int());
  return "";
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GL_CHECK(in.good(), "metrics: cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  GL_CHECK(!in.bad(), "metrics: error reading ", path);
  return ss.str();
}

bool is_blank(const std::string& s) {
  return s.find_first_not_of(" \t\r") == std::string::npos;
}

// Parses one line; nullopt-like empty Json plus the message on failure.
bool try_parse_record(const std::string& text, const std::string& source, Json& out,
                      std::string& problem) {
  try {
    out = Json::parse(text, source);
  } catch (const Error& e) {
    problem = e.what();
    return false;
  }
  problem = record_problem(out);
  if (!problem.empty()) problem = source + ": " + problem;
  return problem.empty();
}

struct ParsedLine {
  std::string text;  // without the '\n'
  Json record;       // as parsed (nulls kept)
};

// Every record line of `content` (from `path`). The last line is torn when
// it has no '\n' and does not parse as a record: it is reported to `warn`
// and skipped. Any other bad line throws naming path:line.
std::vector<ParsedLine> parse_lines(const std::string& path, const std::string& content,
                                    std::vector<std::string>* warnings) {
  std::vector<ParsedLine> lines;
  size_t begin = 0;
  int64_t line_no = 0;
  while (begin < content.size()) {
    ++line_no;
    const size_t nl = content.find('\n', begin);
    const bool terminated = nl != std::string::npos;
    std::string text = content.substr(begin, terminated ? nl - begin : std::string::npos);
    begin = terminated ? nl + 1 : content.size();
    if (is_blank(text)) continue;
    const std::string source = path + ":" + std::to_string(line_no);
    Json record;
    std::string problem;
    if (try_parse_record(text, source, record, problem)) {
      lines.push_back({std::move(text), std::move(record)});
      continue;
    }
    // Only an unterminated last line can be the remains of an interrupted
    // append: one write() puts the '\n' last, so a complete line has it.
    if (!terminated) {
      const std::string msg = "warning: " + source + ": ignoring torn last line (" +
                              std::to_string(text.size()) + " bytes, likely an interrupted write)";
      if (warnings) warnings->push_back(msg);
      else std::fprintf(stderr, "%s\n", msg.c_str());
      break;
    }
    GL_CHECK(false, "metrics: malformed line: ", problem);
  }
  return lines;
}

}  // namespace

Json metrics_record(const std::string& kind, int64_t step,
                    std::initializer_list<std::pair<const char*, double>> fields) {
  Json r = Json::object();
  r.set("kind", kind);
  r.set("step", step);
  for (const auto& [name, value] : fields) r.set(name, value);
  return r;
}

// --- MetricsLog ------------------------------------------------------------------

MetricsLog::~MetricsLog() { close(); }

MetricsLog::MetricsLog(MetricsLog&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_) {
  other.fd_ = -1;
}

MetricsLog& MetricsLog::operator=(MetricsLog&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void MetricsLog::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void MetricsLog::open(const std::string& path) {
  close();
  path_ = path;
  do {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  } while (fd_ < 0 && errno == EINTR);
  GL_CHECK(fd_ >= 0, "MetricsLog: cannot open ", path, " for appending: ", std::strerror(errno));

  // Repair a torn tail, else the next line would be glued onto it and turn a
  // tolerated torn LAST line into a malformed MIDDLE one.
  const std::string content = read_whole_file(path);
  if (content.empty() || content.back() == '\n') return;
  const size_t last_nl = content.rfind('\n');
  const size_t tail_begin = last_nl == std::string::npos ? 0 : last_nl + 1;
  Json record;
  std::string problem;
  if (try_parse_record(content.substr(tail_begin), path, record, problem)) {
    const ssize_t w = ::write(fd_, "\n", 1);
    GL_CHECK(w == 1, "MetricsLog: ", path, ": cannot terminate the last line: ",
             std::strerror(errno));
    return;
  }
  std::fprintf(stderr, "warning: %s: dropping torn last line (%zu bytes) before appending\n",
               path.c_str(), content.size() - tail_begin);
  GL_CHECK(::ftruncate(fd_, off_t(tail_begin)) == 0, "MetricsLog: ", path,
           ": cannot drop the torn last line: ", std::strerror(errno));
}

void MetricsLog::append(const Json& record) {
  GL_CHECK(fd_ >= 0, "MetricsLog::append: no file open");
  const std::string problem = record_problem(record);
  GL_CHECK(problem.empty(), "MetricsLog::append(", path_, "): ", problem, " in ", record.dump());
  const std::string line = nulls_for_non_finite(record).dump() + "\n";
  ssize_t w;
  do {
    w = ::write(fd_, line.data(), line.size());
  } while (w < 0 && errno == EINTR);
  if (w == ssize_t(line.size())) return;
  const int err = errno;
  // A short write (disk full) left part of a line: cut it off so the file
  // stays a sequence of whole lines, then report.
  if (w > 0) {
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    if (end >= off_t(w)) (void)!::ftruncate(fd_, end - off_t(w));
  }
  GL_CHECK(false, "MetricsLog: ", path_, ": write failed (", w < 0 ? 0 : w, " of ", line.size(),
           " bytes): ", w < 0 ? std::strerror(err) : "short write");
}

std::vector<Json> MetricsLog::read(const std::string& path, std::vector<std::string>* warnings) {
  GL_CHECK(std::filesystem::exists(path), "metrics: ", path, ": no such file");
  std::vector<Json> records;
  for (const ParsedLine& l : parse_lines(path, read_whole_file(path), warnings))
    records.push_back(nan_for_nulls(l.record));
  return records;
}

void MetricsLog::truncate_after(const std::string& path, int64_t step,
                                std::vector<std::string>* warnings) {
  if (!std::filesystem::exists(path)) return;
  std::string kept;
  for (const ParsedLine& l : parse_lines(path, read_whole_file(path), warnings))
    if (l.record.at("step").as_int() <= step) kept += l.text + "\n";
  write_file_atomic(path, kept);
}

// --- atomic file write ------------------------------------------------------------

void write_file_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd;
  do {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  GL_CHECK(fd >= 0, "write_file_atomic: ", path, ": cannot create ", tmp, ": ",
           std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      GL_CHECK(false, "write_file_atomic: ", path, ": write failed after ", done, " bytes: ",
               w < 0 ? std::strerror(err) : "short write");
    }
    done += size_t(w);
  }
  // fsync before rename: otherwise a crash soon after could leave the name
  // pointing at a file whose data never reached the disk.
  const bool synced = ::fsync(fd) == 0;
  const int sync_err = errno;
  const bool closed = ::close(fd) == 0;
  if (!synced || !closed) {
    ::unlink(tmp.c_str());
    GL_CHECK(false, "write_file_atomic: ", path, ": ", synced ? "close" : "fsync",
             " failed: ", std::strerror(synced ? errno : sync_err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    GL_CHECK(false, "write_file_atomic: cannot rename ", tmp, " to ", path, ": ",
             std::strerror(err));
  }
  // Make the rename itself durable; failure here loses nothing written.
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// --- progress line ------------------------------------------------------------------

namespace {

// printf("%.*f") but "nan"/"inf"/"-inf" spelled the same on every libc.
std::string fixed(double v, int decimals) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string sci(double v, int decimals) {
  if (!std::isfinite(v)) return fixed(v, 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", decimals, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  // Beyond this llround could overflow; an ETA of 11 years means "never".
  if (seconds >= 3.6e8) return ">99999h";
  char buf[64];
  const long long s = std::llround(seconds);
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    const long long m = std::llround(seconds / 60);
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", m / 60, m % 60);
  }
  return buf;
}

std::string format_thousands(double value) {
  if (!std::isfinite(value) || std::fabs(value) >= 9e18) return "--";
  const long long v = std::llround(value);
  const std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string format_progress_line(const ProgressFields& f) {
  const int width = int(std::to_string(f.total_steps).size());
  char head[96];
  std::snprintf(head, sizeof head, "step %*" PRId64 "/%" PRId64, width, f.step, f.total_steps);
  std::string line = head;
  line += " | loss " + fixed(f.loss, 4);
  line += " | lr " + sci(f.lr, 2);
  if (f.grad_norm) line += " | gnorm " + fixed(*f.grad_norm, 3);
  line += " | " + format_thousands(f.tokens_per_s) + " tok/s";
  line += " | ETA " + (f.eta_s ? format_duration(*f.eta_s) : std::string("--"));
  return line;
}

}  // namespace gl
