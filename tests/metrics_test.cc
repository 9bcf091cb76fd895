// net/metrics: the Prometheus text exposition (histogram buckets are
// cumulative, label values escaped) and the endpoint's HTTP answers.
#include "net/metrics.h"

#include <gtest/gtest.h>

namespace latchkey::net {
namespace {

TEST(Metrics, HistogramBucketsAreCumulativeAndInfEqualsCount) {
  Histogram h({0.001, 0.01, 0.1});
  for (double v : {0.0005, 0.001, 0.005, 0.05, 0.5, 7.0}) h.Observe(v);
  std::string out;
  h.Render("lk_wait_seconds", "Waits.", &out);
  EXPECT_NE(out.find("# TYPE lk_wait_seconds histogram\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lk_wait_seconds_bucket{le=\"0.001\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lk_wait_seconds_bucket{le=\"0.01\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lk_wait_seconds_bucket{le=\"0.10000000000000001\"} 4\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("lk_wait_seconds_bucket{le=\"+Inf\"} 6\n"), std::string::npos) << out;
  EXPECT_NE(out.find("lk_wait_seconds_count 6\n"), std::string::npos) << out;
  EXPECT_DOUBLE_EQ(h.sum(), 0.0005 + 0.001 + 0.005 + 0.05 + 0.5 + 7.0);
}

TEST(Metrics, LabelValuesAreEscaped) {
  std::string out;
  RenderLabeled("lk_errors_total", "Errors.", "counter", "code", {{"a\"b\\c\nd", 3}}, &out);
  EXPECT_NE(out.find("lk_errors_total{code=\"a\\\"b\\\\c\\nd\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("# TYPE lk_errors_total counter\n"), std::string::npos);
}

TEST(Metrics, HttpAnswersOnlyGetMetrics) {
  std::string ok = MetricsHttpResponse("GET /metrics?x=1 HTTP/1.0\r\n\r\n", "body\n");
  EXPECT_EQ(ok.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(ok.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(ok.substr(ok.size() - 5), "body\n");
  EXPECT_EQ(MetricsHttpResponse("GET /other HTTP/1.1\r\n\r\n", "").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(MetricsHttpResponse("PUT /metrics HTTP/1.1\r\n\r\n", "").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(MetricsHttpResponse("\x01\x02 garbage", "").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(MetricsHttpResponse("", "").rfind("HTTP/1.1 400", 0), 0u);
}

}  // namespace
}  // namespace latchkey::net
