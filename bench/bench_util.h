// Small helpers shared by the benchmark programs: a monotonic clock,
// best/median of a list of timings, and the machine-readable output format
// (one JSON object per line, so results can be grepped or loaded with
// `pandas.read_json(..., lines=True)`).
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace gl::bench {

inline double now_seconds() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

struct Stats {
  double best = 0, median = 0;
};

// Seconds per run -> best (minimum) and median. The best is the figure least
// disturbed by other processes; the median says how typical it is.
inline Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.best = v.front();
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return s;
}

// Keeps the compiler from discarding a computation whose result is unused.
template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

}  // namespace gl::bench
