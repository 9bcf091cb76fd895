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

  std::uint64_t Next();
  // Uniform in [0, n); n > 0. Unbiased (Lemire's multiply-and-reject).
  std::uint64_t Below(std::uint64_t n);
  // Uniform in [lo, hi], inclusive.
  std::uint64_t Range(std::uint64_t lo, std::uint64_t hi) { return lo + Below(hi - lo + 1); }
  // True with probability numerator / denominator.
  bool Chance(std::uint64_t numerator, std::uint64_t denominator) {
    return numerator != 0 && Below(denominator) < numerator;
  }
  // True with probability ppm / 1e6.
  bool ChancePpm(std::uint32_t ppm) { return Chance(ppm, 1'000'000); }

  bool operator==(const Prng&) const = default;

 private:
  std::uint64_t s_[4];
};

}  // namespace latchkey::sim
