#include "sim/prng.h"

#include "core/types.h"

namespace latchkey::sim {

namespace {
std::uint64_t Rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

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

std::uint64_t Prng::Next() {
  const std::uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

std::uint64_t Prng::Below(std::uint64_t n) {
  // Lemire: the high word of x * n is uniform once the low word's bias is rejected.
  unsigned __int128 m = static_cast<unsigned __int128>(Next()) * n;
  auto low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(Next()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

}  // namespace latchkey::sim
