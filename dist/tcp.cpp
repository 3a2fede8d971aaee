// The "tcp" backend: a star over TCP sockets; the contract is in dist/tcp.h.
#include "dist/tcp.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"

namespace gl {

namespace {

constexpr uint32_t kHello = 0x676c7463;  // "gltc"
constexpr size_t kChunkBytes = size_t(4) << 20;

int env_int(const char* name, int lo, int hi) {
  const char* v = std::getenv(name);
  GL_CHECK(v != nullptr, "tcp backend: ", name, " is not set (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, ",
           "MASTER_ADDR and MASTER_PORT; so does scripts/launch_local.sh)");
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  GL_CHECK(end != v && *end == '\0' && n >= lo && n <= hi, "tcp backend: ", name, "='", v,
           "' is not an integer in [", lo, ", ", hi, "]");
  return int(n);
}

void send_all(int fd, const void* data, size_t n, int peer) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::send(fd, p, std::min(n, kChunkBytes), MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    GL_CHECK(k > 0, "tcp backend: sending to rank ", peer, " failed: ", std::strerror(errno),
             " (it stopped or failed)");
    p += k;
    n -= size_t(k);
  }
}

void recv_all(int fd, void* data, size_t n, int peer) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, std::min(n, kChunkBytes), 0);
    if (k < 0 && errno == EINTR) continue;
    GL_CHECK(k >= 0, "tcp backend: receiving from rank ", peer, " failed: ", std::strerror(errno));
    GL_CHECK(k > 0, "tcp backend: rank ", peer, " closed the connection (it stopped or failed)");
    p += k;
    n -= size_t(k);
  }
}

struct Hello {
  uint32_t magic;
  int32_t rank, size;
};

class TcpCommunicator final : public Communicator {
 public:
  TcpCommunicator(const TcpLaunch& l, double timeout_s) : rank_(l.rank), size_(l.world_size) {
    GL_CHECK(size_ >= 1 && rank_ >= 0 && rank_ < size_, "tcp backend: rank ", rank_, " out of range for ",
             size_, " ranks");
    fds_.assign(size_t(size_), -1);
    if (size_ == 1) return;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    try {
      if (rank_ == 0) accept_all(l, deadline);
      else connect_to_root(l, deadline);
    } catch (...) {
      close_all();
      throw;
    }
  }
  ~TcpCommunicator() override { close_all(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, size_t n) override { sum(data, n); }
  void allreduce_sum(double* data, size_t n) override { sum(data, n); }
  void broadcast(void* data, size_t bytes, int root) override {
    GL_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " out of range for ", size_, " ranks");
    if (size_ == 1) return;
    // Through rank 0: root's bytes reach it first, then everyone else.
    if (root != 0) {
      if (rank_ == root) send_all(fds_[0], data, bytes, 0);
      if (rank_ == 0) recv_all(fds_[size_t(root)], data, bytes, root);
    }
    if (rank_ == 0) {
      for (int r = 1; r < size_; ++r)
        if (r != root) send_all(fds_[size_t(r)], data, bytes, r);
    } else if (rank_ != root) {
      recv_all(fds_[0], data, bytes, 0);
    }
  }
  void barrier() override {
    double x = 0;
    sum(&x, 1);
  }
  std::string backend() const override { return "tcp"; }

 private:
  // Rank 0 adds the ranks' data in rank order, ((x0 + x1) + x2) + ...,
  // then sends its bits to everyone. It reads one rank's whole message
  // before the next, and sends only after reading all: a sender blocked on
  // a full socket is always one rank 0 will read.
  template <class T>
  void sum(T* data, size_t n) {
    if (size_ == 1 || n == 0) return;
    if (rank_ != 0) {
      send_all(fds_[0], data, n * sizeof(T), 0);
      recv_all(fds_[0], data, n * sizeof(T), 0);
      return;
    }
    std::vector<T> part(std::min(n, kChunkBytes / sizeof(T)));
    for (int r = 1; r < size_; ++r)
      for (size_t done = 0; done < n; done += part.size()) {
        const size_t m = std::min(part.size(), n - done);
        recv_all(fds_[size_t(r)], part.data(), m * sizeof(T), r);
        for (size_t i = 0; i < m; ++i) data[done + i] += part[i];
      }
    for (int r = 1; r < size_; ++r) send_all(fds_[size_t(r)], data, n * sizeof(T), r);
  }

  static void set_recv_timeout(int fd, int seconds) {
    timeval tv{};
    tv.tv_sec = seconds;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  static void no_delay(int fd) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small collectives: no Nagle wait
  }

  void accept_all(const TcpLaunch& l, std::chrono::steady_clock::time_point deadline) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    GL_CHECK(listen_fd_ >= 0, "tcp backend: socket() failed: ", std::strerror(errno));
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(uint16_t(l.master_port));
    GL_CHECK(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "tcp backend: rank 0 cannot ",
             "listen on MASTER_PORT=", l.master_port, ": ", std::strerror(errno));
    GL_CHECK(::listen(listen_fd_, size_) == 0, "tcp backend: listen() failed: ", std::strerror(errno));
    for (int joined = 1; joined < size_;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{listen_fd_, POLLIN, 0};
      const int ready = left.count() > 0 ? ::poll(&p, 1, int(std::min<int64_t>(left.count(), 1000))) : 0;
      if (ready < 0 && errno == EINTR) continue;
      GL_CHECK(left.count() > 0, "tcp backend: rank 0 waited in vain for ", size_ - joined, " of ", size_ - 1,
               " ranks to connect to port ", l.master_port, " (GRIDLOCK_TCP_TIMEOUT)");
      if (ready <= 0) continue;
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      no_delay(fd);
      Hello h{};
      try {
        // A stranger that connects and says nothing must not hold rank 0.
        set_recv_timeout(fd, 10);
        recv_all(fd, &h, sizeof h, -1);
        set_recv_timeout(fd, 0);
      } catch (...) {
        ::close(fd);
        continue;  // not one of ours
      }
      if (h.magic != kHello) {
        ::close(fd);
        continue;
      }
      // Kept before the checks, so a refused rank's socket closes with the
      // others and it hears of the failure.
      if (h.rank >= 1 && h.rank < size_ && fds_[size_t(h.rank)] < 0) fds_[size_t(h.rank)] = fd;
      else stray_fds_.push_back(fd);
      GL_CHECK(h.size == size_, "tcp backend: rank ", h.rank, " was started with WORLD_SIZE=", h.size,
               ", rank 0 with ", size_);
      GL_CHECK(h.rank >= 1 && h.rank < size_ && fds_[size_t(h.rank)] == fd, "tcp backend: rank ", h.rank,
               " connected twice or is out of range for ", size_, " ranks (two launches on one port?)");
      ++joined;
    }
    // Everyone is in: tell them (a rank starts its work only in a full group).
    const Hello ok{kHello, 0, size_};
    for (int r = 1; r < size_; ++r) send_all(fds_[size_t(r)], &ok, sizeof ok, r);
  }

  void connect_to_root(const TcpLaunch& l, std::chrono::steady_clock::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(l.master_port);
    const int rc = ::getaddrinfo(l.master_addr.c_str(), port.c_str(), &hints, &res);
    GL_CHECK(rc == 0 && res, "tcp backend: MASTER_ADDR='", l.master_addr, "' does not resolve: ",
             ::gai_strerror(rc));
    std::string why;
    for (;;) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        fds_[0] = fd;
        break;
      }
      why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      if (std::chrono::steady_clock::now() > deadline) {
        ::freeaddrinfo(res);
        GL_CHECK(false, "tcp backend: rank ", rank_, " could not reach rank 0 at ", l.master_addr, ":",
                 l.master_port, " (", why, ") within GRIDLOCK_TCP_TIMEOUT");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // rank 0 may not listen yet
    }
    ::freeaddrinfo(res);
    no_delay(fds_[0]);
    const Hello h{kHello, rank_, size_};
    send_all(fds_[0], &h, sizeof h, 0);
    Hello ok{};
    recv_all(fds_[0], &ok, sizeof ok, 0);
    GL_CHECK(ok.magic == kHello && ok.size == size_, "tcp backend: rank 0 at ", l.master_addr, ":",
             l.master_port, " is not a gridlock group of ", size_, " ranks");
  }

  void close_all() {
    for (int& fd : fds_)
      if (fd >= 0) ::close(fd), fd = -1;
    for (int fd : stray_fds_) ::close(fd);
    stray_fds_.clear();
    if (listen_fd_ >= 0) ::close(listen_fd_), listen_fd_ = -1;
  }

  int rank_ = 0, size_ = 1;
  std::vector<int> fds_;  // rank 0: fds_[r] talks to rank r; other ranks: fds_[0] to rank 0
  int listen_fd_ = -1;
  std::vector<int> stray_fds_;  // connections refused during set-up
};

}  // namespace

TcpLaunch tcp_launch_from_env() {
  TcpLaunch l;
  if (!std::getenv("WORLD_SIZE") && !std::getenv("RANK")) return l;  // not launched that way
  l.world_size = env_int("WORLD_SIZE", 1, 1 << 20);
  l.rank = env_int("RANK", 0, l.world_size - 1);
  l.local_rank = std::getenv("LOCAL_RANK") ? env_int("LOCAL_RANK", 0, 1 << 20) : l.rank;
  if (l.world_size > 1) {
    const char* addr = std::getenv("MASTER_ADDR");
    GL_CHECK(addr && *addr, "tcp backend: MASTER_ADDR is not set (rank 0's host name or address)");
    l.master_addr = addr;
    l.master_port = env_int("MASTER_PORT", 1, 65535);
  }
  return l;
}

std::unique_ptr<Communicator> make_tcp_communicator(const TcpLaunch& launch, double timeout_s) {
  return std::make_unique<TcpCommunicator>(launch, timeout_s);
}

}  // namespace gl
