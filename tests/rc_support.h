// Running RapidCheck properties from GoogleTest with a fixed number of cases,
// quietly, and reporting a failure with the RC_PARAMS line that replays it.
// Shared by the store and agent stateful property tests.
#pragma once

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>

namespace latchkey::testing {

class QuietListener : public rc::detail::TestListener {
 public:
  void onTestCaseFinished(const rc::detail::CaseDescription&) override {}
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}
};

// Runs `property` with `cases` cases of size up to `max_size`, unless RC_PARAMS
// is set (then it rules, e.g. to reproduce a failure). Prints nothing.
template <class Property>
rc::detail::TestResult RunProperty(const std::string& id, Property&& property, int cases,
                                   int max_size) {
  const rc::detail::Configuration& config = rc::detail::configuration();
  rc::detail::TestParams params = config.testParams;
  if (std::getenv("RC_PARAMS") == nullptr) {
    params.maxSuccess = cases;
    params.maxSize = max_size;
    // The same cases on every run, so that CI is reproducible; RC_PARAMS
    // with another seed (or a long campaign) explores further.
    params.seed = 0x6C61746368ULL;
  }
  rc::detail::TestMetadata metadata;
  metadata.id = id;
  metadata.description = id;
  QuietListener listener;
  return rc::detail::checkProperty(rc::detail::toProperty(std::forward<Property>(property)),
                                   metadata, params, listener, config.reproduce);
}

inline std::string Describe(const std::string& id, const rc::detail::TestResult& result) {
  std::ostringstream os;
  rc::detail::printResultMessage(result, os);
  if (result.is<rc::detail::FailureResult>()) {
    rc::detail::Configuration repro;
    repro.reproduce[id] = result.get<rc::detail::FailureResult>().reproduce;
    os << "\nReproduce with RC_PARAMS=\"" << rc::detail::configToMinimalString(repro) << "\"";
  }
  return os.str();
}

template <class Property>
void ExpectHolds(const std::string& id, Property&& property, int cases, int max_size) {
  rc::detail::TestResult result =
      RunProperty(id, std::forward<Property>(property), cases, max_size);
  if (!result.is<rc::detail::SuccessResult>()) ADD_FAILURE() << Describe(id, result);
}

}  // namespace latchkey::testing
