// Status and Result<T>: errors at the boundaries of the TCP shell (frame
// decoding, the log reader, configuration), leveldb-style.
//
// A Status is ok or carries a message that names what was wrong and where
// (for decoders: the byte offset). Thread-safety: plain values.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace latchkey::net {

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }
  // With a machine-readable code (the client library: a core::Reason).
  static Status Error(std::string message, int code) {
    Status s(std::move(message));
    s.code_ = code;
    return s;
  }

  bool ok() const { return !message_.has_value(); }
  int code() const { return code_; }
  const std::string& message() const {
    static const std::string kOk = "ok";
    return message_ ? *message_ : kOk;
  }

 private:
  explicit Status(std::string message) : message_(std::move(message)) {}
  std::optional<std::string> message_;
  int code_ = 0;
};

// A value or the Status that explains why there is none.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit on purpose
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace latchkey::net
