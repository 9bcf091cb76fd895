#include "sim/config.h"

#include <set>
#include <string>

namespace latchkey::sim {

namespace {

using nlohmann::json;

std::string Describe(const json& j) { return DescribeJson(j); }

// Reads the fields of one JSON object into C++ values, recording the first
// error (with its JSON path) and rejecting fields nobody asked for.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string path, std::string& error)
      : json_(j), path_(std::move(path)), error_(error) {
    if (error_.empty() && !json_.is_object()) {
      error_ = Path() + ": expected an object, found " + Describe(json_);
    }
  }

  template <class Int>
  void Integer(const char* name, Int& out, std::uint64_t lo, std::uint64_t hi) {
    const json* v = Field(name);
    if (v == nullptr) return;
    if (!v->is_number_unsigned() || v->get<std::uint64_t>() < lo || v->get<std::uint64_t>() > hi) {
      Fail(name, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", *v);
      return;
    }
    out = static_cast<Int>(v->get<std::uint64_t>());
  }
  // A duration in microseconds, or the string "never".
  void Duration(const char* name, Time& out, Time lo, Time hi, bool never_allowed) {
    const json* v = Field(name);
    if (v == nullptr) return;
    if (never_allowed && v->is_string() && v->get<std::string>() == "never") {
      out = core::kNever;
      return;
    }
    if (!v->is_number_unsigned() || v->get<std::uint64_t>() < lo || v->get<std::uint64_t>() > hi) {
      Fail(name,
           "microseconds in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" +
               (never_allowed ? " or \"never\"" : ""),
           *v);
      return;
    }
    out = v->get<std::uint64_t>();
  }
  void Bool(const char* name, bool& out) {
    const json* v = Field(name);
    if (v == nullptr) return;
    if (!v->is_boolean()) return Fail(name, "true or false", *v);
    out = v->get<bool>();
  }
  void Real(const char* name, double& out, double lo, double hi) {
    const json* v = Field(name);
    if (v == nullptr) return;
    if (!v->is_number() || v->get<double>() < lo || v->get<double>() > hi) {
      return Fail(name, "a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", *v);
    }
    out = v->get<double>();
  }
  const json* Field(const char* name) {
    seen_.insert(name);
    if (!error_.empty() || !json_.is_object()) return nullptr;
    auto it = json_.find(name);
    return it == json_.end() ? nullptr : &*it;
  }
  std::string Child(const char* name) const { return path_ + "/" + name; }
  // Unknown fields are errors: a typo must not be silently ignored.
  void Finish() {
    if (!error_.empty() || !json_.is_object()) return;
    for (auto it = json_.begin(); it != json_.end(); ++it) {
      if (seen_.count(it.key()) == 0) {
        error_ = path_ + "/" + it.key() + ": unknown field";
        return;
      }
    }
  }

 private:
  std::string Path() const { return path_.empty() ? "/" : path_; }
  void Fail(const char* name, const std::string& expected, const json& found) {
    if (error_.empty())
      error_ = Child(name) + ": expected " + expected + ", found " + Describe(found);
  }

  const json& json_;
  std::string path_;
  std::string& error_;
  std::set<std::string> seen_;
};

constexpr std::uint64_t kMillion = 1'000'000;
constexpr Time kHour = 3'600'000'000ULL;

bool ParseFaultKind(const std::string& name, FaultKind& out) {
  for (int i = 0; i < kFaultKinds; ++i) {
    if (FaultKindName(static_cast<FaultKind>(i)) == name) {
      out = static_cast<FaultKind>(i);
      return true;
    }
  }
  return false;
}

std::string FaultKindList() {
  std::string out;
  for (int i = 0; i < kFaultKinds; ++i) {
    if (i != 0) out += ", ";
    out += FaultKindName(static_cast<FaultKind>(i));
  }
  return out;
}

}  // namespace

std::string DescribeJson(const json& j) {
  std::string text = j.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(j.type_name()) + " " + text;
}

std::string_view FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kProcessCrash:
      return "process_crash";
    case FaultKind::kServerCrash:
      return "server_crash";
    case FaultKind::kStoreCrash:
      return "store_crash";
    case FaultKind::kPartition:
      return "partition";
    case FaultKind::kClog:
      return "clog";
    case FaultKind::kPause:
      return "pause";
    case FaultKind::kDriftBeyond:
      return "drift_beyond";
    case FaultKind::kInvalidate:
      return "invalidate";
  }
  return "unknown";
}

std::string LoadConfig(const json& j, SimConfig& c, std::initializer_list<const char*> also_known) {
  std::string error;
  ObjectReader r(j, "", error);
  for (const char* name : also_known) r.Field(name);  // the caller's own fields
  if (r.Field("topology") != nullptr) {
    ObjectReader t(j.at("topology"), r.Child("topology"), error);
    t.Integer("stores", c.stores, 1, 64);
    t.Integer("servers", c.servers, 1, 256);
    t.Integer("processes_per_server", c.processes_per_server, 1, 64);
    t.Integer("threads_per_process", c.threads_per_process, 1, 256);
    t.Finish();
  }
  if (r.Field("timing") != nullptr) {
    ObjectReader t(j.at("timing"), r.Child("timing"), error);
    t.Duration("lease_us", c.lease_us, 1'000, kHour, false);
    t.Duration("recall_retry_us", c.recall_retry_us, 1, kHour, false);
    t.Duration("idle_release_us", c.idle_release_us, 0, kHour, true);
    t.Duration("session_idle_us", c.session_idle_us, 1, kHour, true);
    t.Duration("retry_us", c.retry_us, 1, kHour, false);
    t.Duration("expiry_margin_us", c.expiry_margin_us, 0, kHour, false);
    t.Integer("drift_ppm", c.drift_ppm, 0, 100'000);
    t.Duration("fault_phase_us", c.fault_phase_us, 0, kHour, false);
    t.Duration("quiet_phase_us", c.quiet_phase_us, 0, kHour, false);
    t.Finish();
  }
  if (r.Field("network") != nullptr) {
    ObjectReader n(j.at("network"), r.Child("network"), error);
    n.Duration("latency_min_us", c.network.latency_min_us, 0, kHour, false);
    n.Duration("latency_max_us", c.network.latency_max_us, 0, kHour, false);
    n.Integer("loss_ppm", c.network.loss_ppm, 0, kMillion);
    n.Integer("duplicate_ppm", c.network.duplicate_ppm, 0, kMillion);
    n.Integer("reorder_ppm", c.network.reorder_ppm, 0, kMillion);
    n.Duration("reorder_max_us", c.network.reorder_max_us, 0, kHour, false);
    n.Finish();
  }
  if (r.Field("workload") != nullptr) {
    WorkloadConfig& w = c.workload;
    ObjectReader o(j.at("workload"), r.Child("workload"), error);
    o.Integer("sessions", w.sessions, 1, 1'000'000);
    o.Integer("attributes", w.attributes, 1, 64);
    o.Integer("requests_per_thread", w.requests_per_thread, 0, 10'000'000);
    o.Duration("think_us", w.think_us, 0, kHour, false);
    o.Duration("hold_us", w.hold_us, 0, kHour, false);
    o.Integer("affinity_ppm", w.affinity_ppm, 0, kMillion);
    o.Bool("zipf", w.zipf);
    o.Real("zipf_s", w.zipf_s, 0.0, 10.0);
    o.Integer("shared_ppm", w.shared_ppm, 0, kMillion);
    o.Integer("whole_ppm", w.whole_ppm, 0, kMillion);
    o.Integer("portion_max", w.portion_max, 0, 64);
    o.Duration("wait_timeout_us", w.wait_timeout_us, 1, kHour, true);
    o.Integer("try_ppm", w.try_ppm, 0, kMillion);
    o.Finish();
  }
  if (r.Field("faults") != nullptr) {
    const json& fj = j.at("faults");
    ObjectReader f(fj, r.Child("faults"), error);
    f.Bool("swarm", c.swarm);
    f.Duration("check_every_us", c.faults.check_every_us, 1, kHour, false);
    f.Duration("max_duration_us", c.faults.max_duration_us, 1'000, kHour, false);
    if (f.Field("rates_ppm") != nullptr) {
      ObjectReader rates(fj.at("rates_ppm"), f.Child("rates_ppm"), error);
      for (int k = 0; k < kRandomFaultKinds; ++k) {
        std::string name(FaultKindName(static_cast<FaultKind>(k)));
        rates.Integer(name.c_str(), c.faults.ppm[k], 0, kMillion);
      }
      rates.Finish();
    }
    if (const json* s = f.Field("schedule"); s != nullptr && error.empty()) {
      if (!s->is_array()) {
        error = "/faults/schedule: expected an array of faults, found " + Describe(*s);
      } else {
        c.schedule.clear();
        for (std::size_t i = 0; i < s->size() && error.empty(); ++i) {
          std::string path = "/faults/schedule/" + std::to_string(i);
          ScheduledFault fault;
          ObjectReader e((*s)[i], path, error);
          e.Duration("at_us", fault.at_us, 0, kHour, false);
          if (const json* kind = e.Field("kind"); kind != nullptr) {
            if (!kind->is_string() || !ParseFaultKind(kind->get<std::string>(), fault.kind)) {
              error =
                  path + "/kind: expected one of " + FaultKindList() + ", found " + Describe(*kind);
            }
          } else if (error.empty()) {
            error = path + "/kind: missing (every scheduled fault needs a kind)";
          }
          e.Integer("target", fault.target, 0, 1'000'000);
          e.Duration("duration_us", fault.duration_us, 0, kHour, false);
          e.Integer("variant", fault.variant, 0, 2);
          e.Finish();
          c.schedule.push_back(fault);
        }
      }
    }
    f.Finish();
  }
  r.Finish();
  if (error.empty()) error = ValidateConfig(c);
  return error;
}

std::string ValidateConfig(const SimConfig& c) {
  if (c.network.latency_min_us > c.network.latency_max_us) {
    return "/network/latency_min_us: must not exceed latency_max_us (" +
           std::to_string(c.network.latency_min_us) + " > " +
           std::to_string(c.network.latency_max_us) + ")";
  }
  // The agent trusts its lease for lease - 2 x drift x lease - margin.
  std::uint64_t drift_allowance = c.lease_us / kMillion * 2 * c.drift_ppm +
                                  (c.lease_us % kMillion) * 2 * c.drift_ppm / kMillion;
  if (drift_allowance + c.expiry_margin_us >= c.lease_us) {
    return "/timing/lease_us: " + std::to_string(c.lease_us) +
           " us leaves no usable lease after the drift allowance (2 x drift_ppm x lease = " +
           std::to_string(drift_allowance) + " us) and expiry_margin_us (" +
           std::to_string(c.expiry_margin_us) + " us)";
  }
  for (std::size_t i = 0; i < c.schedule.size(); ++i) {
    const ScheduledFault& f = c.schedule[i];
    std::string path = "/faults/schedule/" + std::to_string(i) + "/target";
    std::uint64_t limit = 0;
    switch (f.kind) {
      case FaultKind::kProcessCrash:
      case FaultKind::kPause:
      case FaultKind::kDriftBeyond:
        limit = c.processes();
        break;
      case FaultKind::kServerCrash:
        limit = c.servers;
        break;
      case FaultKind::kStoreCrash:
        limit = c.stores;
        break;
      case FaultKind::kPartition:
      case FaultKind::kClog:
        limit = c.stores + c.processes();
        break;
      case FaultKind::kInvalidate:
        limit = c.workload.sessions;
        break;
    }
    if (f.target >= limit) {
      return path + ": " + std::to_string(f.target) + " is out of range for " +
             std::string(FaultKindName(f.kind)) + " (there are " + std::to_string(limit) +
             " targets)";
    }
  }
  return "";
}

nlohmann::json ConfigToJson(const SimConfig& c) {
  auto duration = [](Time t) { return t == core::kNever ? json("never") : json(t); };
  json rates = json::object();
  for (int k = 0; k < kRandomFaultKinds; ++k) {
    rates[std::string(FaultKindName(static_cast<FaultKind>(k)))] = c.faults.ppm[k];
  }
  json schedule = json::array();
  for (const ScheduledFault& f : c.schedule) {
    schedule.push_back({{"at_us", f.at_us},
                        {"kind", std::string(FaultKindName(f.kind))},
                        {"target", f.target},
                        {"duration_us", f.duration_us},
                        {"variant", f.variant}});
  }
  const WorkloadConfig& w = c.workload;
  return json{
      {"topology",
       {{"stores", c.stores},
        {"servers", c.servers},
        {"processes_per_server", c.processes_per_server},
        {"threads_per_process", c.threads_per_process}}},
      {"timing",
       {{"lease_us", c.lease_us},
        {"recall_retry_us", c.recall_retry_us},
        {"idle_release_us", duration(c.idle_release_us)},
        {"session_idle_us", duration(c.session_idle_us)},
        {"retry_us", c.retry_us},
        {"expiry_margin_us", c.expiry_margin_us},
        {"drift_ppm", c.drift_ppm},
        {"fault_phase_us", c.fault_phase_us},
        {"quiet_phase_us", c.quiet_phase_us}}},
      {"network",
       {{"latency_min_us", c.network.latency_min_us},
        {"latency_max_us", c.network.latency_max_us},
        {"loss_ppm", c.network.loss_ppm},
        {"duplicate_ppm", c.network.duplicate_ppm},
        {"reorder_ppm", c.network.reorder_ppm},
        {"reorder_max_us", c.network.reorder_max_us}}},
      {"workload",
       {{"sessions", w.sessions},
        {"attributes", w.attributes},
        {"requests_per_thread", w.requests_per_thread},
        {"think_us", w.think_us},
        {"hold_us", w.hold_us},
        {"affinity_ppm", w.affinity_ppm},
        {"zipf", w.zipf},
        {"zipf_s", w.zipf_s},
        {"shared_ppm", w.shared_ppm},
        {"whole_ppm", w.whole_ppm},
        {"portion_max", w.portion_max},
        {"wait_timeout_us", duration(w.wait_timeout_us)},
        {"try_ppm", w.try_ppm}}},
      {"faults",
       {{"swarm", c.swarm},
        {"check_every_us", c.faults.check_every_us},
        {"max_duration_us", c.faults.max_duration_us},
        {"rates_ppm", rates},
        {"schedule", schedule}}},
  };
}

}  // namespace latchkey::sim
