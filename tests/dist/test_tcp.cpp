// The "tcp" backend (dist/tcp.h) with real sockets, its ranks as threads of
// this process on 127.0.0.1: sums in rank order with the same bits on every
// rank (a message larger than one chunk too), broadcasts from every root,
// the gradient all-reduce on top, torchrun's variables and their errors, a
// world-size mismatch and a rank that goes away. ./train on 2 processes
// with it is tests/trainer/e2e/train_tcp.sh.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "dist/tcp.h"
#include "tests/testing.h"

using namespace gl;

namespace {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs body(comm) on `n` ranks, one thread each; returns each rank's error
// message ("" when it finished).
std::vector<std::string> run_tcp(int n, const std::function<void(Communicator&)>& body, int size_of_rank1 = 0,
                                 double timeout_s = 20) {
  const int port = free_port();
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> ts;
  for (int r = 0; r < n; ++r)
    ts.emplace_back([&, r] {
      try {
        TcpLaunch l;
        l.rank = r;
        l.world_size = r == 1 && size_of_rank1 ? size_of_rank1 : n;
        l.master_addr = "127.0.0.1";
        l.master_port = port;
        const std::unique_ptr<Communicator> c = make_tcp_communicator(l, timeout_s);
        body(*c);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (std::thread& t : ts) t.join();
  return errors;
}

class EnvGuard {
 public:
  EnvGuard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    set(value);
  }
  ~EnvGuard() { set(old_); }

 private:
  void set(const std::optional<std::string>& v) {
    if (v) setenv(name_, v->c_str(), 1);
    else unsetenv(name_);
  }
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("tcp backend: sums in rank order, the same bits on every rank, and broadcasts from any root") {
  constexpr int n = 3;
  // Values whose sum depends on the order: ((x0 + x1) + x2) is what MPI's
  // reduce at rank 0 gives for 2 ranks and what a reader would write.
  auto value = [](int r, size_t i) { return r == 0 ? 1.0f : r == 1 ? 1e-8f * float(i + 1) : -1.0f; };
  const size_t big = (size_t(6) << 20) / sizeof(float) + 12345;  // more than one 4 MiB chunk
  std::mutex mu;
  std::vector<std::vector<float>> got(n);
  std::vector<std::vector<double>> got64(n);
  std::vector<std::vector<int>> bcast(n);
  const std::vector<std::string> err = run_tcp(n, [&](Communicator& c) {
    CHECK(c.backend() == "tcp");
    std::vector<float> x(big);
    for (size_t i = 0; i < big; ++i) x[i] = value(c.rank(), i);
    c.allreduce_sum(x.data(), x.size());
    std::vector<double> y = {double(c.rank()) + 0.1, 1e300, -2.5};
    c.allreduce_sum(y.data(), y.size());
    std::vector<int> b;
    for (int root = 0; root < n; ++root) {
      int v = c.rank() == root ? 100 + root : -1;
      c.broadcast(&v, sizeof v, root);
      b.push_back(v);
    }
    c.barrier();
    std::lock_guard<std::mutex> lock(mu);
    got[size_t(c.rank())] = x;
    got64[size_t(c.rank())] = y;
    bcast[size_t(c.rank())] = b;
  });
  for (const std::string& e : err) CHECK(e == "");
  for (int r = 0; r < n; ++r) {
    REQUIRE(got[size_t(r)].size() == big);
    CHECK(std::memcmp(got[size_t(r)].data(), got[0].data(), big * sizeof(float)) == 0);  // identical bits
    CHECK(got64[size_t(r)] == std::vector<double>{(0.1 + 1.1) + 2.1, 3e300, -7.5});
    CHECK(bcast[size_t(r)] == std::vector<int>{100, 101, 102});
  }
  for (size_t i : {size_t(0), size_t(7), big / 2, big - 1}) {
    CAPTURE(i);
    CHECK(got[0][i] == (value(0, i) + value(1, i)) + value(2, i));
  }
}

TEST_CASE("tcp backend: allreduce_mean_grads gives every rank the mean") {
  std::mutex mu;
  std::vector<std::vector<float>> grads(2);
  const std::vector<std::string> err = run_tcp(2, [&](Communicator& c) {
    std::vector<NamedParam> ps = {{"w", Var(Tensor::zeros({3, 5}), true, "w")}};
    ps[0].var.impl()->grad = testing::rand({3, 5}, 7 + uint64_t(c.rank()), DType::F32);
    allreduce_mean_grads(c, ps);
    std::lock_guard<std::mutex> lock(mu);
    grads[size_t(c.rank())] = ps[0].var.grad().to_vector_as<float>();
  });
  CHECK(err == std::vector<std::string>{"", ""});
  const std::vector<float> a = testing::rand({3, 5}, 7, DType::F32).to_vector_as<float>();
  const std::vector<float> b = testing::rand({3, 5}, 8, DType::F32).to_vector_as<float>();
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(grads[0][i] == (a[i] + b[i]) / 2.0f);
    CHECK(grads[1][i] == grads[0][i]);
  }
}

TEST_CASE("tcp backend: a world-size mismatch and a rank that goes away are errors naming them") {
  {
    const std::vector<std::string> err = run_tcp(2, [](Communicator&) {}, /*size_of_rank1=*/3, 5);
    CHECK(err[0].find("rank 1 was started with WORLD_SIZE=3, rank 0 with 2") != std::string::npos);
    CHECK(err[1] != "");
  }
  {
    const std::vector<std::string> err = run_tcp(2, [](Communicator& c) {
      if (c.rank() == 1) return;  // leaves the group: its communicator closes
      float x = 1;
      c.allreduce_sum(&x, 1);
    });
    CHECK(err[0].find("rank 1 closed the connection") != std::string::npos);
    CHECK(err[1] == "");
  }
}

TEST_CASE("tcp backend: torchrun's variables, and errors naming the bad one") {
  const EnvGuard a("RANK", std::nullopt), b("WORLD_SIZE", std::nullopt), c("LOCAL_RANK", std::nullopt),
      d("MASTER_ADDR", std::nullopt), e("MASTER_PORT", std::nullopt);
  CHECK(tcp_launch_from_env().world_size == 0);  // not launched that way
  setenv("RANK", "1", 1);
  setenv("WORLD_SIZE", "2", 1);
  CHECK_THROWS_WITH_AS(tcp_launch_from_env(), doctest::Contains("MASTER_ADDR is not set"), Error);
  setenv("MASTER_ADDR", "10.0.0.1", 1);
  CHECK_THROWS_WITH_AS(tcp_launch_from_env(), doctest::Contains("MASTER_PORT is not set"), Error);
  setenv("MASTER_PORT", "29500", 1);
  TcpLaunch l = tcp_launch_from_env();
  CHECK(l.rank == 1);
  CHECK(l.world_size == 2);
  CHECK(l.local_rank == 1);
  CHECK(l.master_addr == "10.0.0.1");
  CHECK(l.master_port == 29500);
  setenv("LOCAL_RANK", "0", 1);
  CHECK(tcp_launch_from_env().local_rank == 0);
  CHECK(launcher_local_rank() == 0);
  setenv("RANK", "2", 1);
  CHECK_THROWS_WITH_AS(tcp_launch_from_env(), doctest::Contains("RANK='2' is not an integer in [0, 1]"), Error);
  setenv("RANK", "1", 1);
  setenv("MASTER_PORT", "http", 1);
  CHECK_THROWS_WITH_AS(tcp_launch_from_env(), doctest::Contains("MASTER_PORT='http'"), Error);
}
