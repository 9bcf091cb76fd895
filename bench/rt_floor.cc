// The machine's ceiling for the session-requests workload's shape: P
// processes of T threads, each thread in a closed loop sending a small
// message over loopback TCP and blocking until a trivial server (one thread,
// epoll, no work: it echoes) answers. No locking, no data, no fsync. Any
// design in which each worker waits for at least one round trip to a store
// per request (every design that satisfies ../shared/WORKLOAD.md, since a
// request completes only once its write is applied by the store) cannot
// beat this on the same machine; bench/vs_redis.sh prints it next to the
// Latchkey and Redis figures.
//
//   ./build/bench/rt_floor [--procs 4] [--threads 8] [--duration 10]
//                          [--bytes 100] [--port 7497]
//
// Prints one JSON line, with the same keys and percentile rule (nearest
// rank) as session_bench and the Redis peer's sessbench.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int procs = 4;
  int threads = 8;
  double duration_s = 10;
  int bytes = 100;
  int port = 7497;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rt_floor: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(2);
}

void NoDelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) Die("TCP_NODELAY");
}

// Echoes whatever each connection sends, one epoll thread, until killed.
[[noreturn]] void RunEchoServer(int listener) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0) Die("epoll_ctl");
  std::vector<char> buffer(64 * 1024);
  epoll_event ready[64];
  for (;;) {
    int n = epoll_wait(ep, ready, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) Die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      int fd = ready[i].data.fd;
      if (fd == listener) {
        int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        NoDelay(c);
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        continue;
      }
      ssize_t got = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        close(fd);
        continue;
      }
      // Small answers to a blocked client: the send completes at once.
      if (send(fd, buffer.data(), static_cast<std::size_t>(got), MSG_NOSIGNAL) < 0) close(fd);
    }
  }
}

bool WriteAll(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool ReadAll(int fd, void* data, std::size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// One client process: `threads` workers, each with its own connection, in a
// closed loop from `start` for the duration. Writes its latencies (µs) to
// `out` as a count followed by the values.
[[noreturn]] void RunClientProcess(const Options& o, const sockaddr_in& server, int out, int go) {
  std::vector<int> fds;
  for (int t = 0; t < o.threads; ++t) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) Die("socket");
    if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
      Die("connect");
    }
    NoDelay(fd);
    fds.push_back(fd);
  }
  char start_signal;
  if (!ReadAll(go, &start_signal, 1)) Die("start signal");
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(o.threads));
  std::atomic<bool> failed{false};
  auto start = Clock::now();
  auto end = start + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(o.duration_s));
  std::vector<std::thread> workers;
  for (int t = 0; t < o.threads; ++t) {
    workers.emplace_back([&, t] {
      int fd = fds[static_cast<std::size_t>(t)];
      std::vector<char> message(static_cast<std::size_t>(o.bytes), 'x');
      auto& mine = latencies[static_cast<std::size_t>(t)];
      mine.reserve(1 << 18);
      while (Clock::now() < end) {
        auto t0 = Clock::now();
        if (!WriteAll(fd, message.data(), message.size()) ||
            !ReadAll(fd, message.data(), message.size())) {
          failed = true;
          return;
        }
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed) {
    std::fprintf(stderr, "rt_floor: a connection to the echo server failed\n");
    std::_Exit(3);
  }
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::uint64_t count = all.size();
  if (!WriteAll(out, &count, sizeof count) ||
      !WriteAll(out, all.data(), all.size() * sizeof(double))) {
    Die("reporting to the parent");
  }
  std::_Exit(0);
}

double NearestRank(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(k, 1)) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"rt_floor: closed-loop round trips over loopback TCP against a do-nothing server"};
  app.add_option("--procs", o.procs, "client processes")->check(CLI::Range(1, 64));
  app.add_option("--threads", o.threads, "worker threads per process")->check(CLI::Range(1, 256));
  app.add_option("--duration", o.duration_s, "seconds")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--bytes", o.bytes, "message size")->check(CLI::Range(1, 65536));
  app.add_option("--port", o.port, "loopback port for the echo server")
      ->check(CLI::Range(1, 65535));
  CLI11_PARSE(app, argc, argv);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) Die("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(o.port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    Die("bind 127.0.0.1:" + std::to_string(o.port));
  }
  if (listen(listener, 1024) != 0) Die("listen");
  pid_t server = fork();
  if (server < 0) Die("fork");
  if (server == 0) RunEchoServer(listener);
  close(listener);

  int go[2];
  if (pipe(go) != 0) Die("pipe");
  std::vector<pid_t> clients;
  std::vector<int> reports;
  for (int p = 0; p < o.procs; ++p) {
    int report[2];
    if (pipe(report) != 0) Die("pipe");
    pid_t child = fork();
    if (child < 0) Die("fork");
    if (child == 0) {
      close(report[0]);
      close(go[1]);
      RunClientProcess(o, address, report[1], go[0]);
    }
    close(report[1]);
    clients.push_back(child);
    reports.push_back(report[0]);
  }
  close(go[0]);
  // All processes start together, after every connection is up.
  std::string start(static_cast<std::size_t>(o.procs), 'g');
  auto started = Clock::now();
  if (!WriteAll(go[1], start.data(), start.size())) Die("starting the clients");

  std::vector<double> all;
  bool ok = true;
  for (int fd : reports) {
    std::uint64_t count = 0;
    if (!ReadAll(fd, &count, sizeof count)) {
      ok = false;
      continue;
    }
    std::vector<double> values(count);
    if (!ReadAll(fd, values.data(), count * sizeof(double))) ok = false;
    all.insert(all.end(), values.begin(), values.end());
    close(fd);
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  for (pid_t c : clients) {
    int status = 0;
    waitpid(c, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = false;
  }
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  if (!ok || all.empty()) {
    std::fprintf(stderr, "rt_floor: a client process failed; no result\n");
    return 3;
  }
  std::sort(all.begin(), all.end());
  std::printf(
      "{\"peer\":\"floor\",\"variant\":\"echo-1rt\",\"procs\":%d,\"threads\":%d,\"bytes\":%d,"
      "\"duration_s\":%.3f,\"requests\":%zu,\"rps\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
      "\"p999_us\":%.1f,\"max_us\":%.1f}\n",
      o.procs, o.threads, o.bytes, elapsed, all.size(), static_cast<double>(all.size()) / elapsed,
      NearestRank(all, 0.5), NearestRank(all, 0.99), NearestRank(all, 0.999), all.back());
  return 0;
}
