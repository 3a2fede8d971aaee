// A group of ranks simulated by threads, for the tests of dist/ (test_comm,
// test_zero): collectives as the MPI backend defines them, without mpirun.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/comm.h"

namespace gl::testing {

// Collectives as the MPI backend defines them: sums add the ranks' values in
// rank order (so every rank gets the same bits), a broadcast copies root's
// bytes. Every collective ends with a barrier so the shared slots are not
// overwritten by the next collective while a rank still reads them.
struct ThreadGroup {
  explicit ThreadGroup(int n) : n(n), f32(size_t(n)), f64(size_t(n)) {}
  int n;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<double>> f64;
  const void* root_data = nullptr;

  void barrier() {
    std::unique_lock<std::mutex> lock(m);
    const uint64_t g = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return;
    }
    // A rank that never arrives is a bug in the code under test (ranks in
    // different collectives): fail instead of hanging the test.
    GL_CHECK(cv.wait_for(lock, std::chrono::seconds(60), [&] { return generation != g; }),
             "thread group: barrier timed out");
  }
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_.n; }
  void allreduce_sum(float* data, size_t n) override { sum(g_.f32, data, n); }
  void allreduce_sum(double* data, size_t n) override { sum(g_.f64, data, n); }
  void broadcast(void* data, size_t bytes, int root) override {
    if (rank_ == root) g_.root_data = data;
    g_.barrier();
    if (rank_ != root) std::memcpy(data, g_.root_data, bytes);
    g_.barrier();
  }
  void barrier() override { g_.barrier(); }
  std::string backend() const override { return "threads"; }

 private:
  template <class T>
  void sum(std::vector<std::vector<T>>& slots, T* data, size_t n) {
    slots[size_t(rank_)].assign(data, data + n);
    g_.barrier();
    for (const auto& s : slots) GL_CHECK(s.size() == n, "thread group: mismatched sum sizes");
    for (size_t i = 0; i < n; ++i) {
      T acc = slots[0][i];
      for (size_t r = 1; r < slots.size(); ++r) acc += slots[r][i];
      data[i] = acc;
    }
    g_.barrier();
  }
  ThreadGroup& g_;
  int rank_;
};

// Runs fn(comm) on n threaded ranks; returns each rank's gl::Error message
// ("" when it returned normally).
inline std::vector<std::string> run_ranks(int n, const std::function<void(Communicator&)>& fn) {
  ThreadGroup group(n);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      ThreadCommunicator comm(group, r);
      try {
        fn(comm);
      } catch (const Error& e) {
        errors[size_t(r)] = e.what();
      } catch (const std::exception& e) {
        errors[size_t(r)] = std::string("not a gl::Error: ") + e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

}  // namespace gl::testing
