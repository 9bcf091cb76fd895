// shop_server: an example application server on the Latchkey client library.
//
// A small HTTP/1.1 server whose request threads keep per-user session state
// (a shopping cart and a visit counter) in latchkeyd through net/client.h.
// Run several of them (each with its own --process-id) against the same
// store nodes: a user's session lock moves to whichever process serves the
// user's request, and the store recalls it from the previous one (R7).
//
//   GET    /u/<user>                  visit: +1 on the counter; the session as JSON
//   GET    /u/<user>/cart             the cart (shared lock on {"cart"})
//   POST   /u/<user>/cart?item=<name> add an item (exclusive lock on {"cart"})
//   DELETE /u/<user>/cart             empty the cart
//   POST   /u/<user>/logout           drop the whole session (Lock::Clear)
//   GET    /stats                     the client library's counters
//
// Threads: one I/O thread accepts connections and reads and writes HTTP
// (asynchronously, with an idle timeout); each parsed request goes to a fixed
// pool of worker threads, which block on the client library (Acquire, Commit)
// and hand the response back to the I/O thread.
#include <CLI/CLI.hpp>
#include <array>
#include <asio.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "net/auth.h"
#include "net/client.h"

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using latchkey::core::Mode;
using latchkey::core::Portion;
using latchkey::core::SessionId;
using latchkey::net::Client;
using latchkey::net::ClientOptions;
using latchkey::net::Lock;
using latchkey::net::LockError;
using latchkey::net::LockErrorName;
using latchkey::net::LockErrorOf;
using latchkey::net::Result;
using latchkey::net::Status;

constexpr std::size_t kMaxHeaderBytes = 8 * 1024;
constexpr std::size_t kMaxBodyBytes = 8 * 1024;  // no route needs a body; it is read and dropped
constexpr std::size_t kMaxItemBytes = 200;
// Keeps the cart attribute far below latchkeyd's value limit (256 KiB by
// default): a commit above it is refused, and resent, for good.
constexpr std::size_t kMaxCartItems = 200;
constexpr auto kLockTimeout = 2s;
constexpr auto kIdleTimeout = 15s;              // a connection with no request (or a slow one)
constexpr auto kLingerTimeout = 2s;             // draining a client's input before closing
const std::string kCartAttribute = "cart";      // a JSON array of strings
const std::string kVisitsAttribute = "visits";  // a decimal count

// ---- HTTP messages ----------------------------------------------------------

struct HttpRequest {
  std::string method;
  std::string path;
  std::string query;
  bool keep_alive = true;
};

struct HttpResponse {
  int status = 200;
  json body;
  std::string allow;   // the Allow header of a 405
  bool close = false;  // after a malformed request the byte stream cannot be trusted
};

HttpResponse ErrorResponse(int status, std::string_view error, std::string_view message) {
  return {status, json{{"error", std::string(error)}, {"message", std::string(message)}}, "",
          false};
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string Render(const HttpResponse& response, bool keep_alive) {
  // Items are raw bytes from URLs: replace invalid UTF-8 rather than throw.
  std::string body = response.body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " " +
                    std::string(ReasonPhrase(response.status)) + "\r\n";
  out += "Content-Type: application/json\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!response.allow.empty()) out += "Allow: " + response.allow + "\r\n";
  if (response.status == 503) out += "Retry-After: 1\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return out + body;
}

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool ParseDecimal(std::string_view text, std::uint64_t* out) {
  if (text.empty() || text.size() > 20) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;  // from_chars alone would accept a prefix
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

struct ParsedHeader {
  HttpRequest request;
  std::size_t content_length = 0;
};

// The request line and headers (up to and including the blank line), or the
// error response that explains what is wrong with them.
std::variant<ParsedHeader, HttpResponse> ParseHeader(std::string_view header) {
  auto bad = [](int status, std::string_view error, std::string_view message) {
    HttpResponse response = ErrorResponse(status, error, message);
    response.close = true;
    return response;
  };
  std::size_t line_end = header.find("\r\n");
  std::string_view request_line = header.substr(0, line_end);
  std::size_t first_space = request_line.find(' ');
  std::size_t last_space = request_line.rfind(' ');
  if (first_space == std::string_view::npos || first_space == last_space) {
    return bad(400, "bad_request_line", "expected: METHOD /path HTTP/1.1");
  }
  ParsedHeader parsed;
  HttpRequest& request = parsed.request;
  request.method = std::string(request_line.substr(0, first_space));
  std::string_view target = request_line.substr(first_space + 1, last_space - first_space - 1);
  std::string_view version = request_line.substr(last_space + 1);
  for (char c : request.method) {
    if (c < 'A' || c > 'Z')
      return bad(400, "bad_request_line", "the method must be uppercase letters");
  }
  if (request.method.empty() || target.empty() || target.front() != '/' ||
      target.find(' ') != std::string_view::npos) {
    return bad(400, "bad_request_line", "expected: METHOD /path HTTP/1.1");
  }
  if (version == "HTTP/1.1") {
    request.keep_alive = true;
  } else if (version == "HTTP/1.0") {
    request.keep_alive = false;  // no keep-alive negotiation for 1.0: simpler
  } else if (version.substr(0, 5) == "HTTP/") {
    return bad(505, "bad_version", "only HTTP/1.1 and HTTP/1.0 are served");
  } else {
    return bad(400, "bad_request_line", "expected: METHOD /path HTTP/1.1");
  }
  std::size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));

  std::optional<std::uint64_t> content_length;
  std::string_view rest = header.substr(line_end + 2);
  while (!rest.empty()) {
    std::size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    if (line.empty()) break;  // the blank line ending the header
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line.front() == ' ' ||
        line.front() == '\t' || line.substr(0, colon).find(' ') != std::string_view::npos) {
      return bad(400, "bad_header", "a header line is not 'Name: value'");
    }
    std::string name = Lowercase(line.substr(0, colon));
    std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-length") {
      std::uint64_t length = 0;
      if (!ParseDecimal(value, &length) || (content_length && *content_length != length)) {
        return bad(400, "bad_header", "Content-Length is not one decimal number");
      }
      if (length > kMaxBodyBytes) return bad(413, "body_too_large", "the body is above 8 KiB");
      content_length = length;
    } else if (name == "transfer-encoding") {
      return bad(501, "not_implemented",
                 "Transfer-Encoding is not supported; no route needs a body");
    } else if (name == "connection") {
      std::string tokens = Lowercase(value);
      if (tokens.find("close") != std::string::npos) request.keep_alive = false;
    }
  }
  parsed.content_length = content_length.value_or(0);
  return parsed;
}

// Decodes %XX escapes and '+' (a space in a query); nullopt on a bad escape.
std::optional<std::string> PercentDecode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size() || hex(text[i + 1]) < 0 || hex(text[i + 2]) < 0) {
        return std::nullopt;
      }
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// The query's parameters; nullopt if one is badly escaped.
std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    auto name = PercentDecode(pair.substr(0, eq));
    auto value = PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    params.emplace(std::move(*name), std::move(*value));  // the first of repeated names wins
  }
  return params;
}

std::vector<std::string_view> PathSegments(std::string_view path) {
  std::vector<std::string_view> segments;
  path.remove_prefix(1);  // the leading '/', checked by ParseHeader
  while (true) {
    std::size_t slash = path.find('/');
    segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segments;
}

// ---- The shop: routes over the client library -------------------------------

// Thrown by a handler to answer with an error; a Lock still held rolls back
// as the stack unwinds, so no half-done change is committed.
struct HttpError {
  HttpResponse response;
};

[[noreturn]] void Fail(int status, std::string_view error, std::string_view message) {
  throw HttpError{ErrorResponse(status, error, message)};
}

// What a failed lock operation means to the HTTP client.
HttpResponse LockFailure(const Status& status, SessionId user) {
  LockError error = LockErrorOf(status);
  int http = 500;
  switch (error) {
    case LockError::kTimeout:      // another request (here or in another process) held it
    case LockError::kUnavailable:  // the client is shutting down
    case LockError::kLockLost:     // the writes were discarded: retrying is safe
      http = 503;
      break;
    case LockError::kUnknownOutcome:  // it may have applied: a blind retry could apply it twice
      http = 409;
      break;
    case LockError::kBusy:  // refused for now (busy, queue full, store restarting)
      http = 503;
      break;
    case LockError::kRejected:
      // A latchkeyd limit (say, a value too large) or this server's bug (a
      // bad portion, an attribute outside it): retrying the same will not help.
      http = status.message().find("refused by latchkeyd") != std::string::npos ? 413 : 500;
      break;
    case LockError::kNone:
      break;
  }
  return {http,
          json{{"error", std::string(LockErrorName(error))},
               {"message", status.message()},
               {"user", user}},
          "", false};
}

void Expect(const Status& status, SessionId user) {
  if (!status.ok()) throw HttpError{LockFailure(status, user)};
}

template <class T>
T Expect(Result<T> result, SessionId user) {
  if (!result.ok()) throw HttpError{LockFailure(result.status(), user)};
  return std::move(result.value());
}

std::vector<std::string> DecodeCart(const std::optional<std::string>& stored) {
  if (!stored) return {};
  json cart = json::parse(*stored, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> items;
  if (!cart.is_array()) Fail(500, "corrupt_session", "the stored cart is not a JSON array");
  for (const json& item : cart) {
    if (!item.is_string()) Fail(500, "corrupt_session", "the stored cart holds a non-string");
    items.push_back(item.get<std::string>());
  }
  return items;
}

std::string EncodeCart(const std::vector<std::string>& items) {
  return json(items).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::uint64_t DecodeVisits(const std::optional<std::string>& stored) {
  std::uint64_t visits = 0;
  if (stored && !ParseDecimal(*stored, &visits)) {
    Fail(500, "corrupt_session", "the stored visit counter is not a number");
  }
  return visits;
}

class Shop {
 public:
  explicit Shop(Client& client) : client_(client) {}

  // Never throws: every failure becomes an error response.
  HttpResponse Handle(const HttpRequest& request) {
    try {
      return Route(request);
    } catch (const HttpError& error) {
      return error.response;
    } catch (const std::exception& e) {
      return ErrorResponse(500, "internal", e.what());
    }
  }

 private:
  HttpResponse Route(const HttpRequest& request) {
    std::vector<std::string_view> path = PathSegments(request.path);
    const std::string& method = request.method;
    auto only = [&](std::string_view allowed) {
      HttpResponse response = ErrorResponse(
          405, "method_not_allowed",
          method + " is not allowed on " + request.path + "; use " + std::string(allowed));
      response.allow = std::string(allowed);
      return response;
    };
    if (path.size() == 1 && path[0] == "stats") return method == "GET" ? Stats() : only("GET");
    if (path.size() >= 2 && path.size() <= 3 && path[0] == "u") {
      std::string_view tail = path.size() == 3 ? path[2] : "";
      if (path.size() == 3 && tail != "cart" && tail != "logout") return NoRoute(request);
      SessionId user = 0;
      if (!ParseDecimal(path[1], &user)) {
        Fail(400, "bad_user",
             "the user must be a session id: a decimal number below 2^64, not '" +
                 std::string(path[1]) + "'");
      }
      if (path.size() == 2) return method == "GET" ? Visit(user) : only("GET");
      if (tail == "logout") return method == "POST" ? Logout(user) : only("POST");
      if (method == "GET") return ShowCart(user);
      if (method == "POST") return AddToCart(user, request.query);
      if (method == "DELETE") return EmptyCart(user);
      return only("GET, POST, DELETE");
    }
    return NoRoute(request);
  }

  static HttpResponse NoRoute(const HttpRequest& request) {
    return ErrorResponse(404, "no_route",
                         "no route " + request.path +
                             "; routes: /u/<user>, /u/<user>/cart, /u/<user>/logout, /stats");
  }

  Lock LockSession(SessionId user, const Portion& portion) {
    Lock lock = client_.Acquire(user, portion, kLockTimeout);
    if (!lock.held()) throw HttpError{LockFailure(lock.status(), user)};
    return lock;
  }

  // One exclusive lock on the whole session: read, +1, commit.
  HttpResponse Visit(SessionId user) {
    Lock lock = LockSession(user, Portion::Whole(Mode::kExclusive));
    std::uint64_t visits = DecodeVisits(Expect(lock.Get(kVisitsAttribute), user)) + 1;
    std::vector<std::string> cart = DecodeCart(Expect(lock.Get(kCartAttribute), user));
    Expect(lock.Set(kVisitsAttribute, std::to_string(visits)), user);
    Expect(lock.Commit(), user);
    return {200, json{{"user", user}, {"visits", visits}, {"cart", cart}}, "", false};
  }

  HttpResponse ShowCart(SessionId user) {
    Lock lock = LockSession(user, Portion::Of({kCartAttribute}, Mode::kShared));
    std::vector<std::string> cart = DecodeCart(Expect(lock.Get(kCartAttribute), user));
    // Nothing to write; ending the lock still says whether it was lost meanwhile.
    Expect(lock.Rollback(), user);
    return {200, json{{"user", user}, {"cart", cart}}, "", false};
  }

  HttpResponse AddToCart(SessionId user, std::string_view query) {
    auto params = ParseQuery(query);
    if (!params) Fail(400, "bad_query", "the query has a bad %-escape");
    auto item = params->find("item");
    if (item == params->end() || item->second.empty()) {
      Fail(400, "missing_item", "add an item with POST /u/<user>/cart?item=<name>");
    }
    if (item->second.size() > kMaxItemBytes) {
      Fail(400, "bad_item", "an item name is at most " + std::to_string(kMaxItemBytes) + " bytes");
    }
    for (unsigned char c : item->second) {
      if (c < 0x20 || c == 0x7f) Fail(400, "bad_item", "an item name has no control characters");
    }
    Lock lock = LockSession(user, Portion::Of({kCartAttribute}, Mode::kExclusive));
    std::vector<std::string> cart = DecodeCart(Expect(lock.Get(kCartAttribute), user));
    if (cart.size() >= kMaxCartItems) {
      Fail(409, "cart_full", "a cart holds at most " + std::to_string(kMaxCartItems) + " items");
    }
    cart.push_back(item->second);
    Expect(lock.Set(kCartAttribute, EncodeCart(cart)), user);
    Expect(lock.Commit(), user);
    return {200, json{{"user", user}, {"cart", cart}}, "", false};
  }

  HttpResponse EmptyCart(SessionId user) {
    Lock lock = LockSession(user, Portion::Of({kCartAttribute}, Mode::kExclusive));
    Expect(lock.Erase(kCartAttribute), user);
    Expect(lock.Commit(), user);
    return {200, json{{"user", user}, {"cart", json::array()}}, "", false};
  }

  // Clear needs the whole session (B6): it drops attributes this server
  // never named, too.
  HttpResponse Logout(SessionId user) {
    Lock lock = LockSession(user, Portion::Whole(Mode::kExclusive));
    Expect(lock.Clear(), user);
    Expect(lock.Commit(), user);
    return {200, json{{"user", user}, {"logged_out", true}}, "", false};
  }

  HttpResponse Stats() {
    latchkey::net::ClientStats stats = client_.stats();
    return {200,
            json{{"process_id", client_.process_id()},
                 {"incarnation", client_.incarnation()},
                 {"acquires", stats.acquires},
                 {"grants", stats.grants},
                 {"recalls", stats.recalls},
                 {"commits", stats.commits},
                 {"reconnects", stats.reconnects},
                 {"server_errors", stats.server_errors}},
            "", false};
  }

  Client& client_;
};

// ---- HTTP connections ---------------------------------------------------------

// One client connection, one request at a time. Its members are touched only
// on the I/O thread; a worker sees only the parsed request.
class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  HttpConnection(asio::ip::tcp::socket socket, Shop& shop, asio::thread_pool& workers)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        shop_(shop),
        workers_(workers) {}

  void Start() { ReadHeader(); }

 private:
  void ReadHeader() {
    ArmTimer(kIdleTimeout);
    asio::async_read_until(socket_, asio::dynamic_buffer(buffer_, kMaxHeaderBytes), "\r\n\r\n",
                           [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                             self->OnHeader(ec, n);
                           });
  }

  void OnHeader(const asio::error_code& ec, std::size_t header_bytes) {
    if (ec == asio::error::not_found) {  // the buffer filled up before the blank line
      HttpResponse response = ErrorResponse(431, "header_too_large", "the header is above 8 KiB");
      return Reply(response, false);
    }
    if (ec) return Close();  // the client left, or the idle timer closed the socket
    auto parsed = ParseHeader(std::string_view(buffer_).substr(0, header_bytes));
    buffer_.erase(0, header_bytes);
    if (auto* error = std::get_if<HttpResponse>(&parsed)) return Reply(*error, false);
    ParsedHeader header = std::move(std::get<ParsedHeader>(parsed));
    if (buffer_.size() >= header.content_length) {
      buffer_.erase(0, header.content_length);  // no route uses a body
      return Dispatch(std::move(header.request));
    }
    std::size_t missing = header.content_length - buffer_.size();
    asio::async_read(socket_, asio::dynamic_buffer(buffer_, kMaxHeaderBytes + kMaxBodyBytes),
                     asio::transfer_exactly(missing),
                     [self = shared_from_this(), header = std::move(header)](
                         const asio::error_code& read_error, std::size_t) mutable {
                       if (read_error) return self->Close();
                       self->buffer_.erase(0, header.content_length);
                       self->Dispatch(std::move(header.request));
                     });
  }

  // The worker blocks on locks; the I/O thread goes on serving other sockets.
  void Dispatch(HttpRequest request) {
    timer_.cancel();  // the lock timeout bounds the wait now
    asio::post(workers_, [self = shared_from_this(), request = std::move(request),
                          io = socket_.get_executor()]() mutable {
      HttpResponse response = self->shop_.Handle(request);
      if (response.status == 409 || response.status >= 500) {
        std::fprintf(stderr, "shop_server: %d %s %s: %s\n", response.status, request.method.c_str(),
                     request.path.c_str(),
                     response.body.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
      }
      asio::post(io, [self, response = std::move(response), keep_alive = request.keep_alive] {
        self->Reply(response, keep_alive);
      });
    });
  }

  void Reply(const HttpResponse& response, bool keep_alive) {
    keep_alive = keep_alive && !response.close;
    reply_ = Render(response, keep_alive);
    ArmTimer(kIdleTimeout);
    asio::async_write(
        socket_, asio::buffer(reply_),
        [self = shared_from_this(), keep_alive](const asio::error_code& ec, std::size_t) {
          if (ec) return self->Close();
          if (keep_alive) return self->ReadHeader();
          self->LingeringClose();
        });
  }

  // Closing with unread input would reset the connection and could destroy
  // the error response before the client reads it: stop sending, read and
  // drop what the client still sends, then close.
  void LingeringClose() {
    asio::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    ArmTimer(kLingerTimeout);
    Drain();
  }

  void Drain() {
    socket_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  void ArmTimer(std::chrono::steady_clock::duration after) {
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->Close();
    });
  }

  void Close() {
    asio::error_code ignored;
    timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  Shop& shop_;
  asio::thread_pool& workers_;
  std::string buffer_;  // bytes read and not yet consumed (a pipelined request may follow)
  std::string reply_;
  std::array<char, 4096> scratch_;
};

class Listener {
 public:
  Listener(asio::io_context& io, asio::ip::tcp::acceptor& acceptor, Shop& shop,
           asio::thread_pool& workers)
      : io_(io), acceptor_(acceptor), backoff_(io), shop_(shop), workers_(workers) {}

  void Accept() {
    acceptor_.async_accept(io_, [this](const asio::error_code& ec, asio::ip::tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        // Out of file descriptors, say: wait a little instead of spinning.
        std::fprintf(stderr, "shop_server: accept: %s\n", ec.message().c_str());
        backoff_.expires_after(100ms);
        backoff_.async_wait([this](const asio::error_code& e) {
          if (!e) Accept();
        });
        return;
      }
      std::make_shared<HttpConnection>(std::move(socket), shop_, workers_)->Start();
      Accept();
    });
  }

 private:
  asio::io_context& io_;
  asio::ip::tcp::acceptor& acceptor_;
  asio::steady_timer backoff_;
  Shop& shop_;
  asio::thread_pool& workers_;
};

// ---- Command line -------------------------------------------------------------

bool SplitHostPort(const std::string& text, std::string* host, std::string* port) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  *host = text.substr(0, colon);
  *port = text.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);  // [::1]:8080
  }
  std::uint64_t number = 0;
  return ParseDecimal(*port, &number) && number <= 65535;
}

bool WritePortFile(const std::string& path, unsigned short port) {
  // Written whole, then renamed: a reader never sees half a number.
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "shop_server: an example HTTP application server keeping per-user sessions "
      "(a cart and a visit counter) in latchkeyd"};
  std::string listen = "127.0.0.1:8080";
  std::vector<std::string> stores;
  std::uint64_t process_id = 0;
  std::string secret_file;
  unsigned threads = 8;
  std::string port_file;
  std::uint64_t idle_release_ms = 10'000;
  app.add_option("--listen", listen, "host:port to serve HTTP on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--store", stores, "a latchkeyd host:port; repeat it for node 0, 1, ... in order")
      ->required()
      ->allow_extra_args(false);
  app.add_option("--process-id", process_id, "this process's id, unique among the shop servers")
      ->required()
      ->check(CLI::Range(std::uint64_t{1}, std::numeric_limits<std::uint64_t>::max()));
  app.add_option("--secret-file", secret_file, "the latchkeyd master secret")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--threads", threads, "worker threads serving requests")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  app.add_option("--port-file", port_file, "write the bound HTTP port here once listening");
  app.add_option("--idle-release-ms", idle_release_ms,
                 "give a user's session lock back after this long unused (R8)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string listen_host, listen_port;
  if (!SplitHostPort(listen, &listen_host, &listen_port)) {
    std::cerr << "error: --listen: expected host:port, got '" << listen << "'\n";
    return 2;
  }
  Result<std::string> secret = latchkey::net::ReadSecretFile(secret_file);
  if (!secret.ok()) {
    std::cerr << "error: " << secret.status().message() << "\n";
    return 2;
  }

  ClientOptions options;
  options.stores = stores;
  options.process_id = process_id;
  options.secret = secret.value();
  // Left to the default, the process keeps every session it ever touched until
  // another process asks for it, and latchkeyd refuses new ones past
  // --max-sessions-per-process (4096): new users would then only time out.
  options.idle_release = std::chrono::milliseconds(idle_release_ms);
  auto connected = Client::Connect(options);
  if (!connected.ok()) {
    std::cerr << "error: " << connected.status().message() << "\n";
    return 1;
  }
  std::unique_ptr<Client> client = std::move(connected.value());

  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io);
  try {
    asio::ip::tcp::resolver resolver(io);
    asio::ip::tcp::endpoint endpoint =
        resolver.resolve(listen_host, listen_port, asio::ip::resolver_base::passive)
            .begin()
            ->endpoint();
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen();
  } catch (const asio::system_error& e) {
    std::cerr << "error: cannot listen on " << listen << ": " << e.what() << "\n";
    return 1;
  }
  unsigned short port = acceptor.local_endpoint().port();
  if (!port_file.empty() && !WritePortFile(port_file, port)) {
    std::cerr << "error: cannot write --port-file " << port_file << "\n";
    return 1;
  }

  asio::thread_pool workers(threads);
  Shop shop(*client);
  Listener listener(io, acceptor, shop, workers);
  listener.Accept();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const asio::error_code& ec, int) {
    if (ec) return;
    asio::error_code ignored;
    acceptor.close(ignored);
    io.stop();
  });
  std::fprintf(
      stderr, "shop_server: process %llu serving http://%s:%u with %u threads, %zu store node(s)\n",
      static_cast<unsigned long long>(process_id), listen_host.c_str(), port, threads,
      stores.size());
  io.run();
  // Requests in progress finish (each waits at most the lock timeout); then
  // the client gives its cached locks back so other processes need not wait
  // for the lease to run out.
  auto joined = std::async(std::launch::async, [&] { workers.join(); });
  if (joined.wait_for(kLockTimeout + 3s) == std::future_status::timeout) {
    // A Commit has no deadline: one the store keeps refusing (a value above
    // its limit) blocks its worker for good. Leave without the client's
    // goodbye; the store reclaims this process's locks when its lease ends.
    std::fprintf(stderr, "shop_server: requests still blocked at shutdown; exiting anyway\n");
    std::_Exit(1);
  }
  client.reset();
  return 0;
}
