// A blocking client speaking latchkeyd's wire protocol frame by frame (plain
// TCP or TLS), for tests that need raw frames: hostile input, admin messages,
// another process's token. Test-only: it reports surprises with ADD_FAILURE.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "net/auth.h"
#include "net/codec.h"
#include "tests/latchkeyd_harness.h"

namespace latchkey::net {

// A blocking test client speaking the protocol.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ssl_context_ != nullptr) SSL_CTX_free(ssl_context_);
    ::close(fd_);
  }

  // Switches the connection to TLS, trusting only `ca_file` and checking
  // that the server's certificate names `host`. False if the handshake or
  // the verification fails.
  bool StartTls(const std::string& ca_file, const std::string& host = "localhost") {
    ssl_context_ = SSL_CTX_new(TLS_client_method());
    if (SSL_CTX_load_verify_locations(ssl_context_, ca_file.c_str(), nullptr) != 1) return false;
    SSL_CTX_set_verify(ssl_context_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ssl_context_);
    SSL_set1_host(ssl_, host.c_str());
    SSL_set_fd(ssl_, fd_);
    return SSL_connect(ssl_) == 1;
  }

  bool SendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ssl_ != nullptr ? SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()))
                                  : ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool Send(const core::Message& m) { return SendRaw(EncodeFrame(Frame(m))); }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // The next frame, or nullopt on timeout or close (see closed()).
  std::optional<Frame> Recv(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto next = decoder_.Next();
      if (!next.ok()) return std::nullopt;
      if (next.value()) return std::move(*next.value());
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      bool buffered = ssl_ != nullptr && SSL_pending(ssl_) > 0;
      if (!buffered && ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char buf[65536];
      ssize_t n =
          ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof buf) : ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      decoder_.Feed(std::string_view(buf, static_cast<std::size_t>(n)));
    }
  }
  // The next core message; other frames (errors) fail the test.
  template <class M>
  std::optional<M> Expect(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
    auto f = Recv(timeout);
    if (!f) return std::nullopt;
    auto* m = std::get_if<core::Message>(&*f);
    if (m == nullptr || !std::holds_alternative<M>(*m)) {
      ADD_FAILURE() << "unexpected frame type " << f->index()
                    << (m ? " message kind " + std::string(core::MessageKindName(core::KindOf(*m)))
                          : std::string());
      return std::nullopt;
    }
    return std::get<M>(*m);
  }
  std::optional<ErrorFrame> ExpectError() {
    auto f = Recv();
    if (!f || !std::holds_alternative<ErrorFrame>(*f)) return std::nullopt;
    return std::get<ErrorFrame>(*f);
  }
  // True if the server closes the connection within the timeout.
  bool WaitClosed(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!closed_ && std::chrono::steady_clock::now() < deadline)
      Recv(std::chrono::milliseconds(100));
    return closed_;
  }

  // Answers the challenge as (role, id, incarnation), keyed by `secret`.
  std::optional<Frame> Authenticate(std::uint64_t id, std::uint64_t incarnation = 1,
                                    Role role = Role::kProcess, std::string_view secret = kSecret) {
    auto challenge = Recv();
    if (!challenge || !std::holds_alternative<ChallengeFrame>(*challenge)) return std::nullopt;
    Mac key = IdentityKey(secret, role, id);
    HelloFrame hello{
        role, id, incarnation,
        AuthAnswer(key, std::get<ChallengeFrame>(*challenge).nonce, role, id, incarnation)};
    SendRaw(EncodeFrame(Frame(hello)));
    return Recv();
  }
  // Everything the server sends until it closes the connection.
  std::string ReadAll(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000)) {
    std::string all;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      all.append(buf, static_cast<std::size_t>(n));
    }
    return all;
  }
  bool connected() const { return connected_; }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  SSL_CTX* ssl_context_ = nullptr;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
  bool closed_ = false;
  FrameDecoder decoder_{64u << 20};
};

}  // namespace latchkey::net
