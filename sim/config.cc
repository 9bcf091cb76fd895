#include "sim/config.h"

#include <set>
#include <string>

#include "sim/trace.h"

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

constexpr const char* kScriptNames[] = {"deliver", "lose",    "duplicate", "ask",
                                        "commit",  "advance", "crash",     "restart_store"};

// "p2" -> process index 1; "p2.t0" -> thread index (1 * threads + 0); "s0" -> 0.
bool ParseNodeName(const std::string& text, char prefix, std::uint32_t& out) {
  if (text.size() < 2 || text[0] != prefix) return false;
  std::uint64_t n = 0;
  for (std::size_t i = 1; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9' || n > 1'000'000) return false;
    n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
  }
  out = static_cast<std::uint32_t>(n);
  return true;
}

void LoadProgram(const json& j, const std::string& path, WorkloadConfig& w, std::string& error) {
  if (!j.is_array()) {
    error = path + ": expected an array (one list of requests per thread), found " + Describe(j);
    return;
  }
  w.program.clear();
  for (std::size_t t = 0; t < j.size() && error.empty(); ++t) {
    const std::string tpath = path + "/" + std::to_string(t);
    if (!j[t].is_array()) {
      error = tpath + ": expected an array of requests, found " + Describe(j[t]);
      return;
    }
    std::vector<ProgramRequest> requests;
    for (std::size_t k = 0; k < j[t].size() && error.empty(); ++k) {
      const std::string rpath = tpath + "/" + std::to_string(k);
      ProgramRequest r;
      ObjectReader o(j[t][k], rpath, error);
      o.Integer("session", r.session, 0, 1'000'000);
      if (const json* mode = o.Field("mode"); mode != nullptr) {
        if (*mode == "shared") {
          r.portion.mode = core::Mode::kShared;
        } else if (*mode != "exclusive") {
          error = rpath + "/mode: expected \"shared\" or \"exclusive\", found " + Describe(*mode);
        }
      }
      o.Bool("whole", r.portion.whole);
      std::vector<std::string> names;
      if (const json* attributes = o.Field("attributes"); attributes != nullptr) {
        bool ok = attributes->is_array() && !attributes->empty();
        for (const json& a : ok ? *attributes : json::array()) ok &= a.is_string();
        if (!ok) {
          error = rpath + "/attributes: expected a non-empty array of attribute names, found " +
                  Describe(*attributes);
        } else {
          names = attributes->get<std::vector<std::string>>();
        }
      }
      o.Finish();
      if (!error.empty()) return;
      if (r.portion.whole != names.empty()) {
        error = rpath + ": give either \"attributes\" or \"whole\": true";
        return;
      }
      if (!r.portion.whole) r.portion = core::Portion::Of(names, r.portion.mode);
      requests.push_back(std::move(r));
    }
    w.program.push_back(std::move(requests));
  }
}

// Thread names are resolved against `topology`, which LoadConfig reads first.
void LoadScript(const json& j, const SimConfig& topology, std::vector<ScriptStep>& script,
                std::string& error) {
  if (!j.is_array()) {
    error = "/script: expected an array of steps, found " + Describe(j);
    return;
  }
  script.clear();
  for (std::size_t i = 0; i < j.size() && error.empty(); ++i) {
    const std::string path = "/script/" + std::to_string(i);
    ScriptStep step;
    ObjectReader o(j[i], path, error);
    const json* kind = o.Field("step");
    bool known = false;
    for (int k = 0; kind != nullptr && kind->is_string() && k < 8; ++k) {
      if (*kind == kScriptNames[k]) {
        step.kind = static_cast<ScriptKind>(k);
        known = true;
      }
    }
    if (error.empty() && !known) {
      std::string names;
      for (const char* name : kScriptNames) names += std::string(names.empty() ? "" : ", ") + name;
      error = path + "/step: expected one of " + names + ", found " +
              (kind == nullptr ? std::string("nothing") : Describe(*kind));
      return;
    }
    auto named = [&](const char* field, char prefix, const char* example) {
      const json* v = o.Field(field);
      if (!error.empty()) return;
      if (v == nullptr || !v->is_string() ||
          !ParseNodeName(v->get<std::string>().substr(0, v->get<std::string>().find('.')), prefix,
                         step.target)) {
        error = path + "/" + field + ": expected a name like \"" + example + "\", found " +
                (v == nullptr ? std::string("nothing") : Describe(*v));
      }
    };
    switch (step.kind) {
      case ScriptKind::kDeliver:
      case ScriptKind::kLose:
      case ScriptKind::kDuplicate:
        if (const json* m = o.Field("message"); m != nullptr && m->is_object()) {
          step.message = *m;
        } else if (error.empty()) {
          error = path + "/message: expected the message as the trace writes it, found " +
                  (m == nullptr ? std::string("nothing") : Describe(*m));
        }
        break;
      case ScriptKind::kAsk:
      case ScriptKind::kCommit: {
        // "p2.t1": process 2's thread 1.
        const json* v = o.Field("thread");
        std::uint32_t process = 0, thread = 0;
        const std::string text = v != nullptr && v->is_string() ? v->get<std::string>() : "";
        const std::size_t dot = text.find(".t");
        if (error.empty() &&
            (dot == std::string::npos || !ParseNodeName(text.substr(0, dot), 'p', process) ||
             !ParseNodeName(text.substr(dot + 1), 't', thread) || process == 0)) {
          error = path + "/thread: expected a thread name like \"p1.t0\", found " +
                  (v == nullptr ? std::string("nothing") : Describe(*v));
        }
        if (!error.empty()) break;
        if (process > topology.processes() || thread >= topology.threads_per_process) {
          error = path + "/thread: " + text + " does not exist (" +
                  std::to_string(topology.processes()) + " processes x " +
                  std::to_string(topology.threads_per_process) + " threads)";
          break;
        }
        step.target = (process - 1) * topology.threads_per_process + thread;
        break;
      }
      case ScriptKind::kAdvance:
        o.Duration("to_us", step.to_us, 0, kHour, false);
        if (error.empty() && o.Field("to_us") == nullptr) error = path + "/to_us: missing";
        break;
      case ScriptKind::kCrash:
        named("process", 'p', "p1");
        if (error.empty() && step.target == 0) error = path + "/process: processes count from p1";
        step.target -= 1;
        break;
      case ScriptKind::kRestartStore:
        named("store", 's', "s0");
        break;
    }
    if (const json* note = o.Field("note"); note != nullptr) {
      if (note->is_string()) {
        step.note = note->get<std::string>();
      } else if (error.empty()) {
        error = path + "/note: expected a string, found " + Describe(*note);
      }
    }
    o.Finish();
    script.push_back(std::move(step));
  }
}

}  // namespace

std::string_view ScriptKindName(ScriptKind kind) { return kScriptNames[static_cast<int>(kind)]; }

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
    t.Bool("release_when_contended", c.release_when_contended);
    t.Duration("session_idle_us", c.session_idle_us, 1, kHour, true);
    t.Duration("retry_us", c.retry_us, 1, kHour, false);
    t.Duration("expiry_margin_us", c.expiry_margin_us, 0, kHour, false);
    t.Integer("drift_ppm", c.drift_ppm, 0, 100'000);
    t.Duration("heartbeat_us", c.heartbeat_us, 0, kHour, false);
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
    if (const json* program = o.Field("program"); program != nullptr && error.empty()) {
      LoadProgram(*program, "/workload/program", w, error);
    }
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
  if (const json* script = r.Field("script"); script != nullptr && error.empty()) {
    LoadScript(*script, c, c.script, error);
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
  if (!c.workload.program.empty()) {
    const auto& program = c.workload.program;
    if (program.size() != c.threads_per_process) {
      return "/workload/program: has " + std::to_string(program.size()) +
             " thread programs, but there are " + std::to_string(c.threads_per_process) +
             " threads per process";
    }
    for (std::size_t t = 0; t < program.size(); ++t) {
      const std::string path = "/workload/program/" + std::to_string(t);
      if (program[t].size() != c.workload.requests_per_thread) {
        return path + ": has " + std::to_string(program[t].size()) +
               " requests, but requests_per_thread is " +
               std::to_string(c.workload.requests_per_thread);
      }
      for (std::size_t k = 0; k < program[t].size(); ++k) {
        const ProgramRequest& r = program[t][k];
        const std::string rpath = path + "/" + std::to_string(k);
        if (r.session >= c.workload.sessions) {
          return rpath + "/session: " + std::to_string(r.session) + " is out of range (" +
                 std::to_string(c.workload.sessions) + " sessions)";
        }
        for (const std::string& name : r.portion.attributes) {
          bool known = false;
          for (std::uint32_t a = 0; a < c.workload.attributes; ++a)
            known |= name == "a" + std::to_string(a);
          if (!known) {
            return rpath + "/attributes: \"" + name + "\" is not one of a0..a" +
                   std::to_string(c.workload.attributes - 1);
          }
        }
      }
    }
  }
  if (!c.script.empty()) {
    // A script fixes every choice the simulator would draw: nothing random may remain.
    const char* random = nullptr;
    if (c.workload.program.empty()) random = "/workload/program: a script needs a program";
    if (c.drift_ppm != 0) random = "/timing/drift_ppm: must be 0 with a script";
    if (c.network.loss_ppm != 0 || c.network.duplicate_ppm != 0 || c.network.reorder_ppm != 0)
      random =
          "/network: loss, duplication and reordering must be 0 with a script (its steps "
          "lose, duplicate and order messages)";
    if (c.swarm) random = "/faults/swarm: must be false with a script";
    for (std::uint32_t ppm : c.faults.ppm) {
      if (ppm != 0) random = "/faults/rates_ppm: must be 0 with a script";
    }
    if (!c.schedule.empty()) random = "/faults/schedule: must be empty with a script";
    if (random != nullptr) return random;
    Time last = 0;
    for (std::size_t i = 0; i < c.script.size(); ++i) {
      const ScriptStep& step = c.script[i];
      const std::string path = "/script/" + std::to_string(i);
      std::uint64_t limit = UINT64_MAX;
      const char* field = "";
      switch (step.kind) {
        case ScriptKind::kAsk:
        case ScriptKind::kCommit:
          limit = c.threads();
          field = "/thread";
          break;
        case ScriptKind::kCrash:
          limit = c.processes();
          field = "/process";
          break;
        case ScriptKind::kRestartStore:
          limit = c.stores;
          field = "/store";
          break;
        case ScriptKind::kAdvance:
          if (step.to_us < last) {
            return path + "/to_us: " + std::to_string(step.to_us) +
                   " goes back in time (an earlier step advanced to " + std::to_string(last) + ")";
          }
          if (step.to_us >= c.fault_phase_us) {
            return path + "/to_us: " + std::to_string(step.to_us) +
                   " is not before the end of the fault phase (" +
                   std::to_string(c.fault_phase_us) + "); the script must end inside it";
          }
          last = step.to_us;
          break;
        default:
          break;
      }
      if (step.target >= limit) {
        return path + field + ": " + std::to_string(step.target) + " is out of range (there are " +
               std::to_string(limit) + ")";
      }
    }
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
  json out{
      {"topology",
       {{"stores", c.stores},
        {"servers", c.servers},
        {"processes_per_server", c.processes_per_server},
        {"threads_per_process", c.threads_per_process}}},
      {"timing",
       {{"lease_us", c.lease_us},
        {"recall_retry_us", c.recall_retry_us},
        {"idle_release_us", duration(c.idle_release_us)},
        {"release_when_contended", c.release_when_contended},
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
  // Written only when used, so that files without them stay as they were.
  if (c.heartbeat_us != 0) out["timing"]["heartbeat_us"] = c.heartbeat_us;
  if (!w.program.empty()) {
    json program = json::array();
    for (const std::vector<ProgramRequest>& thread : w.program) {
      json requests = json::array();
      for (const ProgramRequest& r : thread) {
        json request = PortionToJson(r.portion);
        request["session"] = r.session;
        requests.push_back(request);
      }
      program.push_back(requests);
    }
    out["workload"]["program"] = program;
  }
  if (!c.script.empty()) {
    json script = json::array();
    for (const ScriptStep& step : c.script) {
      json j{{"step", std::string(ScriptKindName(step.kind))}};
      switch (step.kind) {
        case ScriptKind::kDeliver:
        case ScriptKind::kLose:
        case ScriptKind::kDuplicate:
          j["message"] = step.message;
          break;
        case ScriptKind::kAsk:
        case ScriptKind::kCommit:
          j["thread"] = "p" + std::to_string(step.target / c.threads_per_process + 1) + ".t" +
                        std::to_string(step.target % c.threads_per_process);
          break;
        case ScriptKind::kAdvance:
          j["to_us"] = step.to_us;
          break;
        case ScriptKind::kCrash:
          j["process"] = "p" + std::to_string(step.target + 1);
          break;
        case ScriptKind::kRestartStore:
          j["store"] = "s" + std::to_string(step.target);
          break;
      }
      if (!step.note.empty()) j["note"] = step.note;
      script.push_back(j);
    }
    out["script"] = script;
  }
  return out;
}

}  // namespace latchkey::sim
