// Fault injection and stop signals: see faults.h.
#include "trainer/faults.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "core/error.h"

namespace gl {

FaultPlan FaultPlan::parse(const std::string& spec) {
  FaultPlan f;
  const std::pair<const char*, int64_t FaultPlan::*> names[] = {
      {"kill_during_save", &FaultPlan::kill_during_save}, {"kill_at_step", &FaultPlan::kill_at_step},
      {"sigterm_at_step", &FaultPlan::sigterm_at_step},   {"disk_full_save", &FaultPlan::disk_full_save},
      {"readonly_save", &FaultPlan::readonly_save},       {"nan_grad", &FaultPlan::nan_grad},
      {"nan_activation", &FaultPlan::nan_activation},     {"inf_loss", &FaultPlan::inf_loss},
      {"loss_spike", &FaultPlan::loss_spike},             {"truncate_data", &FaultPlan::truncate_data}};
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    const std::string name = item.substr(0, colon);
    const std::string num = colon == std::string::npos ? "" : item.substr(colon + 1);
    int64_t n = 0;
    bool ok = !num.empty() && num.size() < 18;
    for (char c : num) ok = ok && c >= '0' && c <= '9';
    if (ok) n = std::stoll(num);
    std::string known;
    int64_t FaultPlan::*field = nullptr;
    for (const auto& [k, m] : names) {
      known += std::string(known.empty() ? "" : ", ") + k;
      if (name == k) field = m;
    }
    GL_CHECK(field, "GRIDLOCK_FAULT: unknown fault '", name, "' (faults: ", known, "; docs/reliability.md)");
    GL_CHECK(ok && n >= 1, "GRIDLOCK_FAULT: '", item, "' needs a count >= 1, as NAME:N");
    f.*field = n;
  }
  return f;
}

FaultPlan FaultPlan::from_env() {
  const char* e = std::getenv("GRIDLOCK_FAULT");
  return parse(e ? e : "");
}

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal) {  // the user insisting: default action
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_stop_signal = sig;
}

}  // namespace

struct StopSignalScope::Saved {
  struct sigaction old_int {}, old_term {};
};

StopSignalScope::StopSignalScope() : saved_(new Saved) {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a write() interrupted mid-checkpoint resumes instead of failing
  sigaction(SIGINT, &sa, &saved_->old_int);
  sigaction(SIGTERM, &sa, &saved_->old_term);
}

StopSignalScope::~StopSignalScope() {
  sigaction(SIGINT, &saved_->old_int, nullptr);
  sigaction(SIGTERM, &saved_->old_term, nullptr);
  g_stop_signal = 0;
  delete saved_;
}

int pending_stop_signal() { return int(g_stop_signal); }

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

void kill_self() {
  std::fflush(stdout);
  std::fflush(stderr);
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

}  // namespace gl
