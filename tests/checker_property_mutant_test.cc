// The whole-configuration property of tests/checker_property_test.cc can
// fail: run against the mutant core with a planted bug (the store grants a
// session while another process holds it), RapidCheck finds a configuration
// that the checker rejects, and shrinks it to a small one, which this test
// prints.
//
// Built only with LATCHKEY_MUTANTS, linked against latchkey_sim_mutants,
// together with checker_property_test.cc (whose clean-core test is left out
// of this build).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdio>
#include <string>

#include "core/mutants.h"
#include "tests/rc_support.h"

namespace latchkey::checker::property {
// Defined in tests/checker_property_test.cc.
void NoViolationOnAnyConfiguration();
}  // namespace latchkey::checker::property

namespace {

using latchkey::core::Mutant;

// Activates a planted bug for its scope; the core is unchanged afterwards,
// whatever the test's outcome.
class ScopedMutant {
 public:
  explicit ScopedMutant(Mutant mutant) { latchkey::core::SetMutant(mutant); }
  ~ScopedMutant() { latchkey::core::SetMutant(Mutant::kNone); }
  ScopedMutant(const ScopedMutant&) = delete;
  ScopedMutant& operator=(const ScopedMutant&) = delete;
};

// RapidCheck's default number of cases; most find the bug, so failing to
// find it in all of them is not a matter of luck.
constexpr int kCases = 100;

TEST(CheckerPropertyMutant, FindsAndShrinksAPlantedGrantWhileHeld) {
  const std::string id = "CheckerPropertyMutant/FindsAndShrinksAPlantedGrantWhileHeld";
  const rc::detail::TestResult result = [&] {
    ScopedMutant mutant(Mutant::kGrantWhileHeld);
    return latchkey::testing::RunProperty(
        id, [] { latchkey::checker::property::NoViolationOnAnyConfiguration(); }, kCases, 100);
  }();
  EXPECT_EQ(latchkey::core::ActiveMutant(), Mutant::kNone);
  ASSERT_TRUE(result.is<rc::detail::FailureResult>())
      << "the property held on a core with a planted bug:\n"
      << latchkey::testing::Describe(id, result);
  const rc::detail::FailureResult& failure = result.get<rc::detail::FailureResult>();
  EXPECT_NE(failure.description.find("VIOLATION"), std::string::npos) << failure.description;
  // The shrunk counterexample, for a person (and to show that it shrinks).
  std::printf("%s\n", latchkey::testing::Describe(id, result).c_str());
}

}  // namespace
