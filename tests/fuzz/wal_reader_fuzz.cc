// libFuzzer target: net/wal's log reader (the recovery path) on hostile file
// contents. Never a crash or a sanitizer report; what it recovers is a
// prefix of the file whose records re-encode to exactly those bytes, each
// under a header with its true length and CRC32; and it
// names a reason whenever it stops early.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "net/codec.h"
#include "net/wal.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "wal reader: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using latchkey::net::kRecordHeaderBytes;
  using latchkey::net::kWalHeaderBytes;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto log = latchkey::net::Wal::Parse(bytes, "fuzz-input");
  if (!log.ok()) {
    if (log.status().message().find("fuzz-input") == std::string::npos) Fail("unnamed error");
    return 0;
  }
  const latchkey::net::RecoveredLog& r = log.value();
  if (r.valid_bytes + r.dropped_bytes + r.zero_tail_bytes != size) {
    Fail("valid + dropped + zero tail != size");
  }
  if (r.zero_tail_bytes > 0 &&
      (r.dropped_bytes > 0 ||
       bytes.substr(r.valid_bytes).find_first_not_of('\0') != std::string_view::npos)) {
    Fail("a zero tail that is not all zeros after the records");
  }
  if (r.valid_bytes < kWalHeaderBytes) Fail("valid prefix shorter than the header");
  if ((r.dropped_bytes > 0) == r.tail_problem.empty()) Fail("dropped bytes without a reason");
  if (r.valid_record_after_problem != 0 &&
      (r.dropped_bytes == 0 || r.valid_record_after_problem <= r.valid_bytes)) {
    Fail("a later valid record outside the dropped part");
  }
  std::size_t pos = kWalHeaderBytes;
  for (const latchkey::core::Record& record : r.records) {
    std::string payload = latchkey::net::EncodeRecord(record);
    if (bytes.substr(pos + kRecordHeaderBytes, payload.size()) != payload) {
      Fail("a recovered record does not re-encode to its bytes");
    }
    // Its header announces exactly that length and that payload's CRC32.
    auto le32 = [&](std::size_t at) {
      std::uint32_t v = 0;
      for (int i = 0; i < 4; ++i) v |= std::uint32_t{data[at + i]} << (8 * i);
      return v;
    };
    auto crc = static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(payload.data()),
                                                static_cast<uInt>(payload.size())));
    if (le32(pos) != payload.size() || le32(pos + 4) != crc) {
      Fail("a recovered record's header does not match its payload");
    }
    pos += kRecordHeaderBytes + payload.size();
  }
  if (pos != r.valid_bytes) Fail("records do not cover the valid prefix");
  return 0;
}
