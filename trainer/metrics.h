// Run metrics as JSON lines (RUN_DIR/metrics.jsonl) and the one-line
// progress report the trainer prints.
//
// Format: one JSON object per line, each ending in '\n'. Every record has
//   "kind": string   what produced it: "train", "val", "quant", ... (open set)
//   "step": integer  the optimizer step it describes (>= 0)
// plus any fields, usually numbers (train: loss, lr, grad_norm, tokens,
// tokens_per_s, elapsed_s; val: val_loss, val_ppl). JSON has no NaN or
// infinity, so a non-finite number is written as null, and every null is read
// back as NaN (inf is not preserved: the report only needs "not a number").
// Metrics records therefore never hold a real null.
//
// Crash safety: append() writes a whole line with one write() on an O_APPEND
// descriptor, so a crash leaves at most the LAST line torn (no '\n', or
// garbage). read() skips such a line with a warning; any other malformed line
// is an error naming FILE:LINE. open() repairs a torn tail before appending,
// so new lines never glue onto it. truncate_after() rewrites the file
// atomically (temporary file, fsync, rename), so on --resume the log can be
// cut back to the checkpoint's step without a window where it is half-written.
//
// One writer per file is assumed (the trainer); readers may run concurrently
// and at worst see a torn last line.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"

namespace gl {

// {"kind": kind, "step": step, name: value, ...} in the given order.
Json metrics_record(const std::string& kind, int64_t step,
                    std::initializer_list<std::pair<const char*, double>> fields);

class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(const std::string& path) { open(path); }
  ~MetricsLog();
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Opens `path` for appending, creating it if absent. A torn last line (no
  // '\n') is dropped with a warning on stderr, or completed with '\n' when it
  // is a whole valid record (a file edited by hand).
  void open(const std::string& path);
  void close();
  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // Writes `record` (an object with string "kind" and integer "step") as one
  // line; non-finite numbers become null. The line is handed to the kernel
  // before returning (no user-space buffer: the single write() is the flush);
  // a failed or short write is undone and reported as an error.
  void append(const Json& record);

  // Every record of the file, in file order, with nulls turned into NaN.
  // A torn last line is skipped: its description goes to *warnings when given,
  // else to stderr as "warning: ...". Blank lines are ignored.
  static std::vector<Json> read(const std::string& path,
                                std::vector<std::string>* warnings = nullptr);

  // Rewrites `path` atomically keeping only the records with step <= step,
  // byte for byte (a torn last line is dropped). Missing file: nothing to do.
  static void truncate_after(const std::string& path, int64_t step,
                             std::vector<std::string>* warnings = nullptr);

 private:
  std::string path_;
  int fd_ = -1;
};

// Writes `data` to "<path>.tmp.<pid>", fsyncs it and renames it over `path`:
// readers see the old file or the new one, never a mix. Errors name `path`.
void write_file_atomic(const std::string& path, const std::string& data);

// --- progress line -------------------------------------------------------------
// "step  120/1000 | loss 4.1234 | lr 6.00e-04 | gnorm 0.812 | 5,123 tok/s | ETA 3m12s"
// The step is right-aligned to the width of total_steps so successive lines
// line up. Optional fields are left out when unset; a non-finite loss prints
// as "nan"/"inf" (a diverged run must show it), non-finite tok/s as "--".
struct ProgressFields {
  int64_t step = 0, total_steps = 0;
  double loss = 0, lr = 0;
  std::optional<double> grad_norm;
  double tokens_per_s = 0;
  std::optional<double> eta_s;  // unset or non-finite: "ETA --"
};
std::string format_progress_line(const ProgressFields& f);

// A duration for humans: "42s", "3m12s", "2h05m" (seconds are dropped from
// an hour up: noise at that scale). Rounded to the nearest shown unit;
// negative or non-finite: "--".
std::string format_duration(double seconds);

// 5123.4 -> "5,123" (rounded to an integer, thousands separated by ',').
std::string format_thousands(double value);

}  // namespace gl
