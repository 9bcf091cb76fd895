// net/codec: round trips of every message, record and frame; hostile bytes.
#include "net/codec.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "tests/net_gen.h"

namespace latchkey::net {
namespace {

using latchkey::testing::AnyMessage;
using latchkey::testing::AnyRecord;

RC_GTEST_PROP(CodecProperty, MessageRoundTrip, ()) {
  core::Message m = AnyMessage();
  Result<core::Message> back = DecodeMessage(EncodeMessage(m));
  RC_ASSERT(back.ok());
  RC_ASSERT(back.value() == m);
}

RC_GTEST_PROP(CodecProperty, RecordRoundTrip, ()) {
  core::Record r = AnyRecord();
  Result<core::Record> back = DecodeRecord(EncodeRecord(r));
  RC_ASSERT(back.ok());
  RC_ASSERT(back.value() == r);
}

RC_GTEST_PROP(CodecProperty, FrameRoundTripThroughDecoderInPieces, ()) {
  core::Message m = AnyMessage();
  std::string bytes = EncodeFrame(Frame(m)) +
                      EncodeFrame(Frame(ErrorFrame{ErrorCode::kTooManySessions, true, 3, 9, "x"}));
  FrameDecoder decoder;
  std::vector<Frame> frames;
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::size_t n = *rc::gen::inRange<std::size_t>(1, bytes.size() - at + 1);
    decoder.Feed(std::string_view(bytes).substr(at, n));
    at += n;
    for (;;) {
      auto next = decoder.Next();
      RC_ASSERT(next.ok());
      if (!next.value()) break;
      frames.push_back(std::move(*next.value()));
    }
  }
  RC_ASSERT(frames.size() == 2u);
  RC_ASSERT(std::get<core::Message>(frames[0]) == m);
  RC_ASSERT(decoder.buffered() == 0u);
}

// Every strict prefix of an encoding is refused with a "truncated" error,
// never read past its end (ASan checks the "never").
RC_GTEST_PROP(CodecProperty, EveryTruncationIsAnError, ()) {
  std::string bytes = EncodeMessage(AnyMessage());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    Result<core::Message> r = DecodeMessage(std::string_view(bytes).substr(0, n));
    RC_ASSERT(!r.ok());
  }
  std::string rec = EncodeRecord(AnyRecord());
  for (std::size_t n = 0; n < rec.size(); ++n) {
    RC_ASSERT(!DecodeRecord(std::string_view(rec).substr(0, n)).ok());
  }
}

// Random bytes either decode to something that re-encodes identically or are
// refused; they never crash.
RC_GTEST_PROP(CodecProperty, GarbageNeverCrashes, (const std::string& garbage)) {
  Result<core::Message> m = DecodeMessage(garbage);
  if (m.ok()) RC_ASSERT(EncodeMessage(m.value()) == garbage);
  Result<core::Record> r = DecodeRecord(garbage);
  if (r.ok()) RC_ASSERT(EncodeRecord(r.value()) == garbage);
  FrameDecoder decoder(4096);
  decoder.Feed(garbage);
  for (int i = 0; i < 100; ++i) {
    auto next = decoder.Next();
    if (!next.ok() || !next.value()) break;
  }
}

TEST(Codec, AllFrameTypesRoundTrip) {
  Nonce nonce{};
  nonce[0] = 7;
  nonce[31] = 9;
  Mac mac{};
  mac[5] = 1;
  std::vector<Frame> frames = {
      ChallengeFrame{kProtocolVersion, nonce, 42},
      HelloFrame{Role::kAdmin, 3, 4, mac},
      WelcomeFrame{1, 2, 65536, 2'000'000},
      core::Message(core::Heartbeat{5}),
      ErrorFrame{ErrorCode::kAuthFailed, true, 0xff, 0, "bad mac"},
  };
  for (const Frame& f : frames) {
    std::string bytes = EncodeFrame(f);
    FrameDecoder decoder;
    decoder.Feed(bytes);
    auto next = decoder.Next();
    ASSERT_TRUE(next.ok()) << next.status().message();
    ASSERT_TRUE(next.value().has_value());
    EXPECT_EQ(*next.value(), f);
  }
}

TEST(Codec, KnownEncodingIsLittleEndian) {
  // Release{session=0x0102, token=3}: kind 1, then two u64 fields.
  std::string bytes = EncodeMessage(core::Release{0x0102, 3});
  ASSERT_EQ(bytes.size(), 17u);
  EXPECT_EQ(bytes[0], 1);
  EXPECT_EQ(bytes[1], 0x02);
  EXPECT_EQ(bytes[2], 0x01);
  EXPECT_EQ(bytes[9], 3);
}

TEST(Codec, OversizedFrameIsRefusedFromItsHeader) {
  FrameDecoder decoder(1024);
  std::string header = {static_cast<char>(0x01), static_cast<char>(0x04), 0, 0};  // 1025
  decoder.Feed(header);
  auto next = decoder.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("exceeds the maximum 1024"), std::string::npos)
      << next.status().message();
  EXPECT_NE(next.status().message().find("at byte 0"), std::string::npos);
  // The decoder stays failed.
  decoder.Feed(EncodeFrame(Frame(core::Message(core::Heartbeat{1}))));
  EXPECT_FALSE(decoder.Next().ok());
}

TEST(Codec, ErrorsNameTheByteOffsetInTheStream) {
  std::string good = EncodeFrame(Frame(core::Message(core::Heartbeat{1})));
  std::string bad = EncodeFrame(Frame(core::Message(core::Revoked{1, 2, core::Reason::kNone})));
  bad.back() = static_cast<char>(200);  // reason out of range
  FrameDecoder decoder;
  decoder.Feed(good + bad);
  ASSERT_TRUE(decoder.Next().ok());
  auto next = decoder.Next();
  ASSERT_FALSE(next.ok());
  std::size_t offset = good.size() + bad.size() - 1;
  EXPECT_NE(next.status().message().find("at byte " + std::to_string(offset)), std::string::npos)
      << next.status().message();
  EXPECT_NE(next.status().message().find("reason"), std::string::npos);
}

TEST(Codec, RefusesBadVersionUnknownTypeAndKind) {
  std::string frame = EncodeFrame(Frame(core::Message(core::Heartbeat{1})));
  {
    std::string f = frame;
    f[4] = 9;
    FrameDecoder d;
    d.Feed(f);
    auto n = d.Next();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(n.status().message().find("version 9"), std::string::npos);
    EXPECT_EQ(d.error_code(), ErrorCode::kBadVersion);
  }
  {
    // Judged from the header alone: the peer is told before its payload arrives.
    std::string f = frame.substr(0, 5);
    f[4] = 2;
    FrameDecoder d;
    d.Feed(f);
    ASSERT_FALSE(d.Next().ok());
    EXPECT_EQ(d.error_code(), ErrorCode::kBadVersion);
  }
  {
    std::string f = frame;
    f[5] = 77;
    FrameDecoder d;
    d.Feed(f);
    EXPECT_FALSE(d.Next().ok());
  }
  {
    std::string f = frame;
    f[6] = 19;  // message kind past kRejected
    FrameDecoder d;
    d.Feed(f);
    auto n = d.Next();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(n.status().message().find("unknown message kind 19"), std::string::npos);
  }
}

TEST(Codec, HostileCountDoesNotAllocate) {
  // A Commit claiming 2^32-1 writes in a 30-byte body.
  std::string bytes = EncodeMessage(core::Commit{1, 2, 3, false, {}});
  bytes[bytes.size() - 4] = static_cast<char>(0xff);
  bytes[bytes.size() - 3] = static_cast<char>(0xff);
  bytes[bytes.size() - 2] = static_cast<char>(0xff);
  bytes[bytes.size() - 1] = static_cast<char>(0xff);
  auto r = DecodeMessage(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("count 4294967295 of writes"), std::string::npos)
      << r.status().message();
}

TEST(Codec, RefusesBadBooleanTrailingBytesAndUnsortedMaps) {
  std::string acquire = EncodeMessage(core::Acquire{1, 2, {}, true});
  acquire.back() = 2;
  EXPECT_FALSE(DecodeMessage(acquire).ok());
  std::string trailing = EncodeMessage(core::Heartbeat{1}) + "x";
  auto r = DecodeMessage(trailing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos);
  // Granted with snapshot {"b": "", "a": ""}: names out of order.
  core::Granted g{1, 2, 3, {}, true, {{"a", ""}, {"b", ""}}};
  std::string bytes = EncodeMessage(g);
  std::size_t a = bytes.find('a');
  std::size_t b = bytes.find('b', a);
  std::swap(bytes[a], bytes[b]);
  auto back = DecodeMessage(bytes);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("out of order"), std::string::npos);
}

}  // namespace
}  // namespace latchkey::net
