#include "net/metrics.h"

#include <cmath>
#include <cstdio>

namespace latchkey::net {

namespace {

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[64];
  // Integers print exactly (counters); others with enough digits to round-trip.
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.17g", v);
  }
  return buf;
}

void Header(std::string_view name, std::string_view help, std::string_view type, std::string* out) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

Histogram Histogram::Exponential(double start, double factor, int count) {
  std::vector<double> bounds;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return Histogram(std::move(bounds));
}

void Histogram::Observe(double value) {
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  ++count_;
  sum_ += value;
}

void Histogram::Render(std::string_view name, std::string_view help, std::string* out) const {
  Header(name, help, "histogram", out);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    std::string le = i < bounds_.size() ? Number(bounds_[i]) : "+Inf";
    out->append(name).append("_bucket{le=\"").append(le).append("\"} ");
    out->append(Number(static_cast<double>(cumulative))).append("\n");
  }
  out->append(name).append("_sum ").append(Number(sum_)).append("\n");
  out->append(name).append("_count ").append(Number(static_cast<double>(count_))).append("\n");
}

void RenderCounter(std::string_view name, std::string_view help, double value, std::string* out) {
  Header(name, help, "counter", out);
  out->append(name).append(" ").append(Number(value)).append("\n");
}

void RenderGauge(std::string_view name, std::string_view help, double value, std::string* out) {
  Header(name, help, "gauge", out);
  out->append(name).append(" ").append(Number(value)).append("\n");
}

void RenderLabeled(std::string_view name, std::string_view help, std::string_view type,
                   std::string_view label,
                   const std::vector<std::pair<std::string, double>>& values, std::string* out) {
  Header(name, help, type, out);
  for (const auto& [label_value, value] : values) {
    out->append(name).append("{").append(label).append("=\"");
    out->append(EscapeLabelValue(label_value)).append("\"} ").append(Number(value)).append("\n");
  }
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string MetricsHttpResponse(std::string_view request, const std::string& body) {
  auto respond = [](std::string_view status, std::string_view content_type,
                    const std::string& content) {
    std::string r = "HTTP/1.1 ";
    r.append(status).append("\r\nContent-Type: ").append(content_type);
    r.append("\r\nContent-Length: ").append(std::to_string(content.size()));
    r.append("\r\nConnection: close\r\n\r\n").append(content);
    return r;
  };
  std::string_view line = request.substr(0, request.find("\r\n"));
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    return respond("400 Bad Request", "text/plain", "not an HTTP/1.x request line\n");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view path = target.substr(0, target.find('?'));
  if (method != "GET") return respond("405 Method Not Allowed", "text/plain", "GET only\n");
  if (path != "/metrics") return respond("404 Not Found", "text/plain", "try /metrics\n");
  return respond("200 OK", "text/plain; version=0.0.4; charset=utf-8", body);
}

}  // namespace latchkey::net
