// Prng: the simulator's only source of randomness.
//
// A fixed algorithm (xoshiro256**, seeded through splitmix64) and integer-only
// derivations (Below, Chance), so a seed gives the same numbers with every
// standard library, compiler and optimisation level; std:: distributions
// would not. Independent streams are derived from (seed, purpose) so that a
// knob that draws more numbers from one stream does not reshuffle the others.
//
// Thread-safety: a value type; one owner at a time.
#pragma once

#include <cstdint>
#include <string_view>

namespace latchkey::sim {

class Prng {
 public:
  explicit Prng(std::uint64_t seed);
  // A stream for one purpose ("network", "faults", "thread/3", ...).
  static Prng Stream(std::uint64_t seed, std::string_view purpose, std::uint64_t index = 0);

  // xoshiro256**. Inline, with Below: the simulator draws a few per event.
  [[gnu::always_inline]] std::uint64_t Next() {
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
  // Uniform in [0, n); n > 0. Unbiased (Lemire's multiply-and-reject).
  [[gnu::always_inline]] std::uint64_t Below(std::uint64_t n) {
    // The high word of x * n is uniform once the low word's bias is rejected.
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
  // Uniform in [lo, hi], inclusive.
  [[gnu::always_inline]] std::uint64_t Range(std::uint64_t lo, std::uint64_t hi) {
    return lo + Below(hi - lo + 1);
  }
  // True with probability numerator / denominator.
  [[gnu::always_inline]] bool Chance(std::uint64_t numerator, std::uint64_t denominator) {
    return numerator != 0 && Below(denominator) < numerator;
  }
  // True with probability ppm / 1e6.
  [[gnu::always_inline]] bool ChancePpm(std::uint32_t ppm) { return Chance(ppm, 1'000'000); }

  bool operator==(const Prng&) const = default;

 private:
  static std::uint64_t Rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  std::uint64_t s_[4];
};

}  // namespace latchkey::sim
