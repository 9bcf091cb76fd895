// The wire and log encoding of Latchkey: every core::Message and core::Record,
// and the frames of the TCP protocol (documented in net/PROTOCOL.md).
//
// Little-endian, explicit field widths, length-prefixed strings and lists.
// Decoders take hostile bytes: they never crash, never allocate more than the
// input can justify, and return a Status naming the field and byte offset
// that was wrong.
//
// Thread-safety: free functions are pure; a FrameDecoder belongs to one
// connection.
//
// Invariants:
//   - Decode(Encode(x)) == x for every message, record and frame;
//   - a decoder consumes its whole input or fails (no trailing bytes);
//   - FrameDecoder never buffers more than one maximum frame plus one read.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/effects.h"
#include "core/messages.h"
#include "net/status.h"

namespace latchkey::net {

inline constexpr std::uint8_t kProtocolVersion = 1;
// u32 length (bytes after it) + u8 version + u8 frame type.
inline constexpr std::size_t kFrameHeaderBytes = 6;
inline constexpr std::uint32_t kDefaultMaxFrameBytes = 1u << 20;
inline constexpr std::uint32_t kMinMaxFrameBytes = 256;
inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMacBytes = 32;

enum class FrameType : std::uint8_t {
  kChallenge = 1,  // server -> client, first frame of a connection
  kHello = 2,      // client -> server, the authentication answer
  kWelcome = 3,    // server -> client, authentication accepted
  kMessage = 4,    // either way, one core::Message
  kError = 5,      // server -> client, a refusal (fatal ones close the connection)
};

enum class Role : std::uint8_t { kProcess = 0, kAdmin = 1 };

// Every error a server reports in an Error frame. Stable numbers: the wire
// carries them.
enum class ErrorCode : std::uint16_t {
  kMalformedFrame = 1,      // fatal: the frame could not be decoded
  kFrameTooLarge = 2,       // fatal: the length prefix is above the maximum
  kBadVersion = 3,          // fatal: unknown protocol version
  kUnexpectedFrame = 4,     // fatal: a frame type not allowed in this state
  kAuthFailed = 5,          // fatal: wrong MAC, role or identity
  kTooManyConnections = 6,  // fatal: the server's connection limit is reached
  kTooManySessions = 7,     // the process holds or waits for too many sessions
  kTooManyAttributes = 8,   // the commit would leave the session with too many attributes
  kAttributeTooLarge = 9,   // an attribute name or value is above its limit
  kSuperseded = 10,         // fatal: a newer connection authenticated as this process
  kNotPermitted = 11,       // the message kind is not one this role may send
  kShuttingDown = 12,       // fatal: the server is stopping
  kAuthTimeout = 13,        // fatal: no Hello within the authentication timeout
  kTooManyWrites = 14,      // a commit carries more writes than allowed
};
std::string_view ErrorCodeName(ErrorCode code);

using Nonce = std::array<std::uint8_t, kNonceBytes>;
using Mac = std::array<std::uint8_t, kMacBytes>;

struct ChallengeFrame {
  std::uint16_t protocol = kProtocolVersion;
  Nonce nonce{};
  std::uint64_t node_id = 0;
  bool operator==(const ChallengeFrame&) const = default;
};
struct HelloFrame {
  Role role = Role::kProcess;
  std::uint64_t id = 0;
  std::uint64_t incarnation = 0;
  Mac mac{};
  bool operator==(const HelloFrame&) const = default;
};
struct WelcomeFrame {
  std::uint64_t node_id = 0;
  std::uint64_t epoch = 0;
  std::uint32_t max_frame_bytes = 0;
  std::uint64_t lease_us = 0;
  bool operator==(const WelcomeFrame&) const = default;
};
struct ErrorFrame {
  ErrorCode code = ErrorCode::kMalformedFrame;
  bool fatal = false;
  std::uint8_t what = 0xff;  // MessageKind of the refused message, 0xff if none
  core::SessionId session = 0;
  std::string text;
  bool operator==(const ErrorFrame&) const = default;
};

// The alternative's index + 1 is its FrameType.
using Frame = std::variant<ChallengeFrame, HelloFrame, WelcomeFrame, core::Message, ErrorFrame>;
inline FrameType TypeOf(const Frame& f) { return static_cast<FrameType>(f.index() + 1); }

// ---- bodies ----------------------------------------------------------------

void AppendMessage(const core::Message& message, std::string* out);
void AppendRecord(const core::Record& record, std::string* out);
std::string EncodeMessage(const core::Message& message);
std::string EncodeRecord(const core::Record& record);

// `base_offset` is added to the offsets named in errors (the position of
// `bytes` in its stream or file).
Result<core::Message> DecodeMessage(std::string_view bytes, std::size_t base_offset = 0);
Result<core::Record> DecodeRecord(std::string_view bytes, std::size_t base_offset = 0);

// ---- frames ----------------------------------------------------------------

// A complete frame: header and payload.
std::string EncodeFrame(const Frame& frame);
Result<Frame> DecodeFramePayload(FrameType type, std::string_view payload,
                                 std::size_t base_offset = 0);

// Splits a byte stream into frames. Feed it what the socket read, then call
// Next until it returns no frame. After an error the decoder stays failed.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  void Feed(std::string_view bytes) { buffer_.append(bytes); }
  // A frame, nothing yet (ok Result holding nullopt), or the decode error.
  Result<std::optional<Frame>> Next();
  // Bytes received but not yet returned as frames.
  std::size_t buffered() const { return buffer_.size() - start_; }
  // Stream offset of the next undecoded byte.
  std::size_t consumed() const { return consumed_; }
  // After a failed Next: which error code the peer should be told
  // (kFrameTooLarge, kBadVersion or kMalformedFrame).
  ErrorCode error_code() const { return error_code_; }

 private:
  std::uint32_t max_frame_bytes_;
  std::string buffer_;
  std::size_t start_ = 0;
  std::size_t consumed_ = 0;
  std::optional<Status> failed_;
  ErrorCode error_code_ = ErrorCode::kMalformedFrame;
};

}  // namespace latchkey::net
