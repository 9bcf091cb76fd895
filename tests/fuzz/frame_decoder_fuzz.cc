// libFuzzer target: net/codec's FrameDecoder on hostile bytes, fed in
// chunks whose sizes the input chooses. Never a crash or a sanitizer report;
// and every frame it accepts re-encodes to exactly the bytes it came from
// (the encoding is canonical), so nothing is accepted loosely.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "net/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the chunk size (1..256), so frames split across
  // reads at every offset get explored.
  std::size_t chunk = static_cast<std::size_t>(data[0]) + 1;
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  latchkey::net::FrameDecoder decoder(4096);
  std::size_t fed = 0;
  std::size_t frame_start = 0;
  while (fed < bytes.size()) {
    std::size_t n = std::min(chunk, bytes.size() - fed);
    decoder.Feed(bytes.substr(fed, n));
    fed += n;
    for (;;) {
      auto next = decoder.Next();
      if (!next.ok()) {
        if (next.status().message().find("at byte") == std::string::npos) {
          std::fprintf(stderr, "error without a position: %s\n", next.status().message().c_str());
          std::abort();
        }
        return 0;
      }
      if (!next.value()) break;
      std::string again = latchkey::net::EncodeFrame(*next.value());
      if (bytes.substr(frame_start, again.size()) != again) {
        std::fprintf(stderr, "accepted frame at %zu does not re-encode to its bytes\n",
                     frame_start);
        std::abort();
      }
      frame_start += again.size();
      if (decoder.consumed() != frame_start) {
        std::fprintf(stderr, "consumed() %zu != %zu\n", decoder.consumed(), frame_start);
        std::abort();
      }
    }
  }
  return 0;
}
