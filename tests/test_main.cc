// GoogleTest main that routes core assertion failures to the test runner.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/assert.h"

namespace {
void FailOnCoreAssert(const char* expression, const char* file, int line) {
  std::fprintf(stderr, "core invariant broken: %s at %s:%d\n", expression, file, line);
  std::fflush(stderr);
}
}  // namespace

int main(int argc, char** argv) {
  latchkey::core::SetAssertHandler(FailOnCoreAssert);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
