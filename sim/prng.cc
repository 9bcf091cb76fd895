#include "sim/prng.h"

#include "core/types.h"

namespace latchkey::sim {

Prng::Prng(std::uint64_t seed) {
  std::uint64_t x = seed;
  for (std::uint64_t& word : s_) {
    x += 0x9E3779B97F4A7C15ULL;
    word = core::Splitmix64(x);
  }
  if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;  // never the all-zero state
}

Prng Prng::Stream(std::uint64_t seed, std::string_view purpose, std::uint64_t index) {
  // FNV-1a of the purpose, mixed with the seed and the index.
  std::uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : purpose) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  return Prng(core::Splitmix64(seed ^ core::Splitmix64(h + index)));
}

}  // namespace latchkey::sim
