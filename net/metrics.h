// Metrics of latchkeyd in the Prometheus text exposition format (0.0.4):
// counters, gauges and histograms with fixed buckets, rendered on request by
// the server's metrics endpoint (`--metrics-listen`).
//
// Thread-safety: none; the server's loop thread owns every instance.
//
// Invariants:
//   - a Histogram's bucket counts are cumulative when rendered and the
//     `+Inf` bucket equals `_count`;
//   - names and label values are rendered escaped, so any reason or code
//     text yields a valid exposition.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace latchkey::net {

class Histogram {
 public:
  // `bounds`: the upper bounds of the buckets, increasing.
  explicit Histogram(std::vector<double> bounds);
  // `start`, start*factor, ... (`count` bounds).
  static Histogram Exponential(double start, double factor, int count);

  void Observe(double value);
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

  // `# HELP`, `# TYPE` and the _bucket, _sum and _count lines.
  void Render(std::string_view name, std::string_view help, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket, not cumulative
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// One metric family with no labels.
void RenderCounter(std::string_view name, std::string_view help, double value, std::string* out);
void RenderGauge(std::string_view name, std::string_view help, double value, std::string* out);
// One family with one label; `type` is "counter" or "gauge".
void RenderLabeled(std::string_view name, std::string_view help, std::string_view type,
                   std::string_view label,
                   const std::vector<std::pair<std::string, double>>& values, std::string* out);

// A label value with `\`, `"` and newlines escaped.
std::string EscapeLabelValue(std::string_view value);

// Parses the request line of an HTTP request and builds the response for the
// metrics endpoint: 200 with `body` for `GET /metrics`, 404 for another path,
// 405 for another method, 400 for a line that is not HTTP.
std::string MetricsHttpResponse(std::string_view request, const std::string& body);

}  // namespace latchkey::net
