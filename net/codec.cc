#include "net/codec.h"

#include <cstring>
#include <type_traits>
#include <utility>

namespace latchkey::net {

namespace {

using core::AttributeMap;
using core::AttributeWrite;
using core::DataVersion;
using core::ProcessRef;
using core::Reason;

constexpr std::uint8_t kLastReason = static_cast<std::uint8_t>(Reason::kCancelled);
constexpr std::uint8_t kLastMessageKind = static_cast<std::uint8_t>(core::MessageKind::kRejected);
// Every encoded string costs its u32 length; every write also an erase flag.
constexpr std::size_t kMinWriteBytes = 4 + 4 + 1;
constexpr std::size_t kMinEntryBytes = 4 + 4;

// Appends little-endian fields. Used through Describe with const members.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}

  void operator()(const std::uint8_t& v, const char*) { out_->push_back(static_cast<char>(v)); }
  void operator()(const bool& v, const char*) { out_->push_back(v ? 1 : 0); }
  void operator()(const std::uint16_t& v, const char*) { Fixed(v); }
  void operator()(const std::uint32_t& v, const char*) { Fixed(v); }
  void operator()(const std::uint64_t& v, const char*) { Fixed(v); }
  void operator()(const Reason& v, const char* what) {
    (*this)(static_cast<std::uint8_t>(v), what);
  }
  void operator()(const std::string& v, const char* what) {
    (*this)(static_cast<std::uint32_t>(v.size()), what);
    out_->append(v);
  }
  template <std::size_t N>
  void operator()(const std::array<std::uint8_t, N>& v, const char*) {
    out_->append(reinterpret_cast<const char*>(v.data()), N);
  }
  void operator()(const DataVersion& v, const char*) {
    (*this)(v.token, "token");
    (*this)(v.seq, "seq");
  }
  void operator()(const ProcessRef& v, const char*) {
    (*this)(v.id, "id");
    (*this)(v.incarnation, "incarnation");
  }
  void operator()(const std::vector<AttributeWrite>& v, const char* what) {
    (*this)(static_cast<std::uint32_t>(v.size()), what);
    for (const AttributeWrite& w : v) {
      (*this)(w.name, "name");
      (*this)(w.value, "value");
      (*this)(w.erase, "erase");
    }
  }
  void operator()(const core::WriteSet& v, const char* what) { (*this)(v.list(), what); }
  void operator()(const AttributeMap& v, const char* what) {
    (*this)(static_cast<std::uint32_t>(v.size()), what);
    for (const auto& [name, value] : v) {
      (*this)(name, "name");
      (*this)(value, "value");
    }
  }
  // Range checks only matter when reading.
  void Range(const std::uint8_t&, std::uint8_t, const char*) {}

 private:
  template <class T>
  void Fixed(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      out_->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
  }
  std::string* out_;
};

// Reads little-endian fields. The first failure sticks; later reads do nothing.
class Reader {
 public:
  Reader(std::string_view in, std::size_t base) : in_(in), base_(base) {}

  void operator()(std::uint8_t& v, const char* what) {
    if (Need(1, what)) v = static_cast<std::uint8_t>(in_[pos_++]);
  }
  void operator()(bool& v, const char* what) {
    std::uint8_t b = 0;
    std::size_t at = pos_;
    (*this)(b, what);
    if (!ok()) return;
    if (b > 1) return Fail(at, std::string("bad boolean ") + std::to_string(b) + " in " + what);
    v = b == 1;
  }
  void operator()(std::uint16_t& v, const char* what) { Fixed(v, what); }
  void operator()(std::uint32_t& v, const char* what) { Fixed(v, what); }
  void operator()(std::uint64_t& v, const char* what) { Fixed(v, what); }
  void operator()(Reason& v, const char* what) {
    std::uint8_t b = 0;
    std::size_t at = pos_;
    (*this)(b, what);
    if (!ok()) return;
    if (b > kLastReason) return Fail(at, "unknown reason " + std::to_string(b) + " in " + what);
    v = static_cast<Reason>(b);
  }
  void operator()(std::string& v, const char* what) {
    std::uint32_t n = 0;
    std::size_t at = pos_;
    (*this)(n, what);
    if (!ok()) return;
    if (n > remaining()) {
      return Fail(at, std::string("length ") + std::to_string(n) + " of " + what + " exceeds the " +
                          std::to_string(remaining()) + " bytes left");
    }
    v.assign(in_.substr(pos_, n));
    pos_ += n;
  }
  template <std::size_t N>
  void operator()(std::array<std::uint8_t, N>& v, const char* what) {
    if (!Need(N, what)) return;
    std::memcpy(v.data(), in_.data() + pos_, N);
    pos_ += N;
  }
  void operator()(DataVersion& v, const char*) {
    (*this)(v.token, "version token");
    (*this)(v.seq, "version seq");
  }
  void operator()(ProcessRef& v, const char*) {
    (*this)(v.id, "process id");
    (*this)(v.incarnation, "process incarnation");
  }
  void operator()(std::vector<AttributeWrite>& v, const char* what) {
    std::uint32_t n = 0;
    if (!Count(n, kMinWriteBytes, what)) return;
    v.resize(n);
    for (AttributeWrite& w : v) {
      (*this)(w.name, "attribute name");
      (*this)(w.value, "attribute value");
      (*this)(w.erase, "erase flag");
      if (!ok()) return;
    }
  }
  void operator()(core::WriteSet& v, const char* what) {
    std::vector<AttributeWrite> list;
    (*this)(list, what);
    v = std::move(list);
  }
  void operator()(AttributeMap& v, const char* what) {
    std::uint32_t n = 0;
    if (!Count(n, kMinEntryBytes, what)) return;
    for (std::uint32_t i = 0; i < n && ok(); ++i) {
      std::size_t at = pos_;
      std::string name;
      std::string value;
      (*this)(name, "attribute name");
      (*this)(value, "attribute value");
      if (!ok()) return;
      // Names are sorted and unique, so every map has one encoding.
      if (!v.empty() && !(v.rbegin()->first < name)) {
        return Fail(at, "attribute names out of order or repeated in " + std::string(what));
      }
      v.emplace_hint(v.end(), std::move(name), std::move(value));
    }
  }
  void Range(const std::uint8_t& v, std::uint8_t last, const char* what) {
    if (ok() && v > last) {
      Fail(pos_ - 1, std::string("value ") + std::to_string(v) + " out of range in " + what);
    }
  }

  bool ok() const { return status_.ok(); }
  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return in_.size() - pos_; }
  void Fail(std::size_t at, const std::string& message) {
    if (ok()) status_ = Status::Error("at byte " + std::to_string(base_ + at) + ": " + message);
  }
  Status Finish() {
    if (ok() && pos_ != in_.size()) {
      Fail(pos_, std::to_string(in_.size() - pos_) + " trailing bytes");
    }
    return status_;
  }

 private:
  bool Need(std::size_t n, const char* what) {
    if (!ok()) return false;
    if (remaining() < n) {
      Fail(pos_, std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
                     std::to_string(remaining()) + " left");
      return false;
    }
    return true;
  }
  // Reads a list count and refuses counts the remaining bytes cannot hold, so
  // a hostile count never makes us allocate.
  bool Count(std::uint32_t& n, std::size_t min_element_bytes, const char* what) {
    std::size_t at = pos_;
    (*this)(n, what);
    if (!ok()) return false;
    if (static_cast<std::uint64_t>(n) * min_element_bytes > remaining()) {
      Fail(at, "count " + std::to_string(n) + " of " + what + " exceeds the " +
                   std::to_string(remaining()) + " bytes left");
      return false;
    }
    return true;
  }
  template <class T>
  void Fixed(T& v, const char* what) {
    if (!Need(sizeof(T), what)) return;
    T x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) {
      x |= static_cast<T>(static_cast<T>(static_cast<std::uint8_t>(in_[pos_ + i])) << (8 * i));
    }
    v = x;
    pos_ += sizeof(T);
  }

  std::string_view in_;
  std::size_t base_;
  std::size_t pos_ = 0;
  Status status_;
};

// One field list per type, shared by the writer and the reader so the two
// can never disagree. `M` is const when writing.
template <class IO, class M>
void Describe(IO& io, M& m) {
  using T = std::remove_const_t<M>;
  if constexpr (std::is_same_v<T, core::Acquire>) {
    io(m.session, "session");
    io(m.request_id, "request_id");
    io(m.cached, "cached");
    io(m.try_only, "try_only");
  } else if constexpr (std::is_same_v<T, core::Release> || std::is_same_v<T, core::Reclaim> ||
                       std::is_same_v<T, core::Recall> || std::is_same_v<T, core::ReleaseAck> ||
                       std::is_same_v<T, core::ReclaimAck>) {
    io(m.session, "session");
    io(m.token, "token");
  } else if constexpr (std::is_same_v<T, core::Commit> || std::is_same_v<T, core::CommitRecord>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.seq, "seq");
    io(m.clear_first, "clear_first");
    io(m.writes, "writes");
  } else if constexpr (std::is_same_v<T, core::Heartbeat> ||
                       std::is_same_v<T, core::HeartbeatAck>) {
    io(m.seq, "seq");
  } else if constexpr (std::is_same_v<T, core::Cancel> || std::is_same_v<T, core::Busy> ||
                       std::is_same_v<T, core::CancelAck>) {
    io(m.session, "session");
    io(m.request_id, "request_id");
  } else if constexpr (std::is_same_v<T, core::ForceRelease> ||
                       std::is_same_v<T, core::AdminInvalidate> ||
                       std::is_same_v<T, core::SessionDroppedRecord>) {
    io(m.session, "session");
  } else if constexpr (std::is_same_v<T, core::Granted>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.request_id, "request_id");
    io(m.version, "version");
    io(m.has_snapshot, "has_snapshot");
    io(m.snapshot, "snapshot");
  } else if constexpr (std::is_same_v<T, core::Queued>) {
    io(m.session, "session");
    io(m.request_id, "request_id");
    io(m.ahead, "ahead");
  } else if constexpr (std::is_same_v<T, core::CommitAck>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.seq, "seq");
  } else if constexpr (std::is_same_v<T, core::Revoked>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.reason, "reason");
  } else if constexpr (std::is_same_v<T, core::Rejected>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.seq, "seq");
    io(m.what, "what");
    io.Range(m.what, kLastMessageKind, "what");
    io(m.reason, "reason");
  } else if constexpr (std::is_same_v<T, core::StoreStartedRecord>) {
    io(m.epoch, "epoch");
  } else if constexpr (std::is_same_v<T, core::GrantRecord>) {
    io(m.session, "session");
    io(m.token, "token");
    io(m.holder, "holder");
    io(m.request_id, "request_id");
  } else if constexpr (std::is_same_v<T, core::TenureEndRecord>) {
    io(m.session, "session");
    io(m.token, "token");
  } else if constexpr (std::is_same_v<T, ChallengeFrame>) {
    io(m.protocol, "protocol");
    io(m.nonce, "nonce");
    io(m.node_id, "node_id");
  } else if constexpr (std::is_same_v<T, WelcomeFrame>) {
    io(m.node_id, "node_id");
    io(m.epoch, "epoch");
    io(m.max_frame_bytes, "max_frame_bytes");
    io(m.lease_us, "lease_us");
  } else {
    static_assert(sizeof(T) == 0, "no field list for this type");
  }
}

// Appends a tagged variant: u8 alternative index, then its fields.
template <class Variant>
void AppendTagged(const Variant& v, std::string* out) {
  Writer w(out);
  w(static_cast<std::uint8_t>(v.index()), "kind");
  std::visit([&](const auto& alt) { Describe(w, alt); }, v);
}

template <class Variant, std::size_t I = 0>
void DecodeAlternative(std::size_t index, Reader& r, Variant* out) {
  if constexpr (I < std::variant_size_v<Variant>) {
    if (index == I) {
      std::variant_alternative_t<I, Variant> alt;
      Describe(r, alt);
      *out = std::move(alt);
      return;
    }
    DecodeAlternative<Variant, I + 1>(index, r, out);
  }
}

template <class Variant>
Result<Variant> DecodeTagged(std::string_view bytes, std::size_t base, const char* what) {
  Reader r(bytes, base);
  std::uint8_t kind = 0;
  r(kind, what);
  if (r.ok() && kind >= std::variant_size_v<Variant>) {
    r.Fail(0, std::string("unknown ") + what + " " + std::to_string(kind));
  }
  Variant v;
  if (r.ok()) DecodeAlternative(kind, r, &v);
  Status s = r.Finish();
  if (!s.ok()) return s;
  return v;
}

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kMalformedFrame:
      return "malformed_frame";
    case ErrorCode::kFrameTooLarge:
      return "frame_too_large";
    case ErrorCode::kBadVersion:
      return "bad_version";
    case ErrorCode::kUnexpectedFrame:
      return "unexpected_frame";
    case ErrorCode::kAuthFailed:
      return "auth_failed";
    case ErrorCode::kTooManyConnections:
      return "too_many_connections";
    case ErrorCode::kTooManySessions:
      return "too_many_sessions";
    case ErrorCode::kTooManyAttributes:
      return "too_many_attributes";
    case ErrorCode::kAttributeTooLarge:
      return "attribute_too_large";
    case ErrorCode::kSuperseded:
      return "superseded";
    case ErrorCode::kNotPermitted:
      return "not_permitted";
    case ErrorCode::kShuttingDown:
      return "shutting_down";
    case ErrorCode::kAuthTimeout:
      return "auth_timeout";
    case ErrorCode::kTooManyWrites:
      return "too_many_writes";
  }
  return "unknown_error";
}

void AppendMessage(const core::Message& message, std::string* out) { AppendTagged(message, out); }
void AppendRecord(const core::Record& record, std::string* out) { AppendTagged(record, out); }

std::string EncodeMessage(const core::Message& message) {
  std::string out;
  AppendMessage(message, &out);
  return out;
}
std::string EncodeRecord(const core::Record& record) {
  std::string out;
  AppendRecord(record, &out);
  return out;
}

Result<core::Message> DecodeMessage(std::string_view bytes, std::size_t base_offset) {
  return DecodeTagged<core::Message>(bytes, base_offset, "message kind");
}
Result<core::Record> DecodeRecord(std::string_view bytes, std::size_t base_offset) {
  return DecodeTagged<core::Record>(bytes, base_offset, "record kind");
}

std::string EncodeFrame(const Frame& frame) {
  std::string out(kFrameHeaderBytes, '\0');
  Writer w(&out);
  std::visit(
      [&](const auto& f) {
        using T = std::decay_t<decltype(f)>;
        if constexpr (std::is_same_v<T, core::Message>) {
          AppendMessage(f, &out);
        } else if constexpr (std::is_same_v<T, HelloFrame>) {
          w(static_cast<std::uint8_t>(f.role), "role");
          w(f.id, "id");
          w(f.incarnation, "incarnation");
          w(f.mac, "mac");
        } else if constexpr (std::is_same_v<T, ErrorFrame>) {
          w(static_cast<std::uint16_t>(f.code), "code");
          w(f.fatal, "fatal");
          w(f.what, "what");
          w(f.session, "session");
          w(f.text, "text");
        } else {
          Describe(w, f);
        }
      },
      frame);
  std::uint32_t length = static_cast<std::uint32_t>(out.size() - 4);
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  out[4] = static_cast<char>(kProtocolVersion);
  out[5] = static_cast<char>(TypeOf(frame));
  return out;
}

Result<Frame> DecodeFramePayload(FrameType type, std::string_view payload,
                                 std::size_t base_offset) {
  Reader r(payload, base_offset);
  Frame frame;
  switch (type) {
    case FrameType::kChallenge: {
      ChallengeFrame f;
      Describe(r, f);
      frame = f;
      break;
    }
    case FrameType::kHello: {
      HelloFrame f;
      std::uint8_t role = 0;
      r(role, "role");
      if (r.ok() && role > static_cast<std::uint8_t>(Role::kAdmin)) {
        r.Fail(0, "unknown role " + std::to_string(role));
      }
      f.role = static_cast<Role>(role);
      r(f.id, "id");
      r(f.incarnation, "incarnation");
      r(f.mac, "mac");
      frame = f;
      break;
    }
    case FrameType::kWelcome: {
      WelcomeFrame f;
      Describe(r, f);
      frame = f;
      break;
    }
    case FrameType::kMessage: {
      Result<core::Message> m = DecodeMessage(payload, base_offset);
      if (!m.ok()) return m.status();
      return Frame(std::move(m.value()));
    }
    case FrameType::kError: {
      ErrorFrame f;
      std::uint16_t code = 0;
      r(code, "error code");
      f.code = static_cast<ErrorCode>(code);
      r(f.fatal, "fatal");
      r(f.what, "what");
      r(f.session, "session");
      r(f.text, "text");
      frame = std::move(f);
      break;
    }
    default:
      return Status::Error("at byte " + std::to_string(base_offset) + ": unknown frame type " +
                           std::to_string(static_cast<int>(type)));
  }
  Status s = r.Finish();
  if (!s.ok()) return s;
  return frame;
}

Result<std::optional<Frame>> FrameDecoder::Next() {
  if (failed_) return *failed_;
  auto fail = [&](std::size_t at, ErrorCode code, const std::string& message) {
    error_code_ = code;
    failed_ = Status::Error("at byte " + std::to_string(consumed_ + at) + ": " + message);
    return *failed_;
  };
  if (buffered() < 4) return std::optional<Frame>();
  const char* p = buffer_.data() + start_;
  std::uint32_t length = 0;
  for (int i = 0; i < 4; ++i) {
    length |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[i])) << (8 * i);
  }
  if (length > max_frame_bytes_) {
    return fail(0, ErrorCode::kFrameTooLarge,
                "frame length " + std::to_string(length) + " exceeds the maximum " +
                    std::to_string(max_frame_bytes_));
  }
  if (length < kFrameHeaderBytes - 4) {
    return fail(0, ErrorCode::kMalformedFrame,
                "frame length " + std::to_string(length) + " is shorter than its header");
  }
  // The version is judged as soon as its byte arrives, before the payload:
  // a peer of another protocol version learns so at once.
  if (buffered() < 5) return std::optional<Frame>();
  std::uint8_t version = static_cast<std::uint8_t>(p[4]);
  if (version != kProtocolVersion) {
    return fail(4, ErrorCode::kBadVersion,
                "unsupported protocol version " + std::to_string(version) +
                    " (this server speaks " + std::to_string(kProtocolVersion) + ")");
  }
  if (buffered() < 4 + static_cast<std::size_t>(length)) return std::optional<Frame>();
  auto type = static_cast<FrameType>(static_cast<std::uint8_t>(p[5]));
  std::string_view payload(p + kFrameHeaderBytes, length - 2);
  Result<Frame> frame = DecodeFramePayload(type, payload, consumed_ + kFrameHeaderBytes);
  if (!frame.ok()) {
    error_code_ = ErrorCode::kMalformedFrame;
    failed_ = frame.status();
    return *failed_;
  }
  start_ += 4 + length;
  consumed_ += 4 + length;
  // Compact once the decoded prefix dominates, so the buffer stays bounded.
  if (start_ > 4096 && start_ * 2 > buffer_.size()) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  return std::optional<Frame>(std::move(frame.value()));
}

}  // namespace latchkey::net
