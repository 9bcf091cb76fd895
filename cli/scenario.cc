#include "cli/scenario.h"

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "checker/checker.h"
#include "core/mutants.h"

namespace latchkey::cli {

namespace {

using nlohmann::json;

// The reasons a thread's request can fail with, as metric suffixes.
std::vector<std::string> ReasonNames() {
  std::vector<std::string> out;
  for (int r = 1; r < 64; ++r) {
    std::string_view name = core::ReasonName(static_cast<core::Reason>(r));
    if (name == "unknown" || name.empty()) break;
    out.emplace_back(name);
  }
  return out;
}

bool IsRequirementId(const std::string& id) {
  if (id.size() < 2 || (id[0] != 'R' && id[0] != 'B')) return false;
  int n = 0;
  for (std::size_t i = 1; i < id.size(); ++i) {
    if (id[i] < '0' || id[i] > '9' || (i == 1 && id[i] == '0')) return false;
    n = n * 10 + (id[i] - '0');
  }
  return n >= 1 && n <= (id[0] == 'R' ? 11 : 10);
}

std::string Seed(const json& j, const std::string& path, std::uint64_t& out) {
  if (!j.is_number_unsigned()) {
    return path + ": expected a non-negative integer seed, found " + sim::DescribeJson(j);
  }
  out = j.get<std::uint64_t>();
  return "";
}

std::string LoadBounds(const json& j, const std::string& path,
                       std::map<std::string, std::uint64_t>& out) {
  if (!j.is_object()) {
    return path + ": expected an object of metric bounds, found " + sim::DescribeJson(j);
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!IsMetric(it.key())) {
      return path + "/" + it.key() +
             ": unknown metric (see scenarios/README.md for the list, e.g. recalls, "
             "lease_expiries, failed_timeout, faults_store_crash)";
    }
    if (!it->is_number_unsigned()) {
      return path + "/" + it.key() + ": expected a non-negative integer, found " +
             sim::DescribeJson(*it);
    }
    out[it.key()] = it->get<std::uint64_t>();
  }
  return "";
}

std::string LoadExpectation(const json& j, Expectation& e) {
  if (!j.is_object()) return "/expect: expected an object, found " + sim::DescribeJson(j);
  e = Expectation{};
  e.present = true;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key != "outcome" && key != "invariant" && key != "at_least" && key != "at_most" &&
        key != "trace_hash") {
      return "/expect/" + key + ": unknown field";
    }
  }
  auto outcome = j.find("outcome");
  if (outcome == j.end()) return "/expect/outcome: missing (\"pass\" or \"violation\")";
  if (*outcome == "pass") {
    e.violation = false;
  } else if (*outcome == "violation") {
    e.violation = true;
  } else {
    return "/expect/outcome: expected \"pass\" or \"violation\", found " +
           sim::DescribeJson(*outcome);
  }
  auto invariant = j.find("invariant");
  if (invariant != j.end()) {
    if (!e.violation) return "/expect/invariant: only an expected violation names an invariant";
    bool known = false;
    std::string list;
    for (int i = 0; i < checker::kInvariantCount; ++i) {
      std::string name(checker::InvariantName(static_cast<checker::Invariant>(i)));
      list += (i == 0 ? "" : ", ") + name;
      if (invariant->is_string() && invariant->get<std::string>() == name) known = true;
    }
    if (!known) {
      return "/expect/invariant: expected one of " + list + ", found " +
             sim::DescribeJson(*invariant);
    }
    e.invariant = invariant->get<std::string>();
  } else if (e.violation) {
    return "/expect/invariant: missing (an expected violation names the invariant it breaks)";
  }
  if (auto it = j.find("at_least"); it != j.end()) {
    if (std::string error = LoadBounds(*it, "/expect/at_least", e.at_least); !error.empty())
      return error;
  }
  if (auto it = j.find("at_most"); it != j.end()) {
    if (std::string error = LoadBounds(*it, "/expect/at_most", e.at_most); !error.empty())
      return error;
  }
  if (auto it = j.find("trace_hash"); it != j.end()) {
    // Hex text: JSON numbers lose 64-bit precision in many tools.
    std::uint64_t value = 0;
    bool ok =
        it->is_string() && !it->get<std::string>().empty() && it->get<std::string>().size() <= 16;
    if (ok) {
      for (char ch : it->get<std::string>()) {
        int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (digit < 0) ok = false;
        value = value * 16 + static_cast<std::uint64_t>(digit < 0 ? 0 : digit);
      }
    }
    if (!ok) {
      return "/expect/trace_hash: expected up to 16 lower-case hex digits, found " +
             sim::DescribeJson(*it);
    }
    e.trace_hash = value;
  }
  return "";
}

}  // namespace

std::string LoadScenario(const json& j, Scenario& s) {
  if (!j.is_object()) return "/: expected a scenario object, found " + sim::DescribeJson(j);
  std::string error = sim::LoadConfig(
      j, s.config, {"description", "requirements", "seed", "seeds", "mutant", "expect"});
  if (!error.empty()) return error;
  if (auto it = j.find("description"); it != j.end()) {
    if (!it->is_string() || it->get<std::string>().empty()) {
      return "/description: expected a non-empty string saying what the scenario shows, found " +
             sim::DescribeJson(*it);
    }
    s.description = it->get<std::string>();
  }
  if (auto it = j.find("requirements"); it != j.end()) {
    if (!it->is_array()) {
      return "/requirements: expected an array of requirement ids, found " + sim::DescribeJson(*it);
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      const json& id = (*it)[i];
      if (!id.is_string() || !IsRequirementId(id.get<std::string>())) {
        return "/requirements/" + std::to_string(i) +
               ": expected a requirement id R1..R11 or B1..B10, found " + sim::DescribeJson(id);
      }
      s.requirements.push_back(id.get<std::string>());
    }
  }
  auto seed = j.find("seed");
  auto seeds = j.find("seeds");
  if (seed != j.end() && seeds != j.end()) {
    return "/seeds: give either seed or seeds, not both";
  }
  if (seed != j.end()) {
    if (error = Seed(*seed, "/seed", s.first_seed); !error.empty()) return error;
    s.seed_count = 1;
    s.seed_range = false;
  }
  if (seeds != j.end()) {
    if (!seeds->is_object()) {
      return "/seeds: expected {\"first\": N, \"count\": N}, found " + sim::DescribeJson(*seeds);
    }
    for (auto it = seeds->begin(); it != seeds->end(); ++it) {
      if (it.key() != "first" && it.key() != "count")
        return "/seeds/" + it.key() + ": unknown field";
    }
    if (auto first = seeds->find("first"); first != seeds->end()) {
      if (error = Seed(*first, "/seeds/first", s.first_seed); !error.empty()) return error;
    }
    auto count = seeds->find("count");
    if (count == seeds->end()) return "/seeds/count: missing (how many seeds to run)";
    if (!count->is_number_unsigned() || count->get<std::uint64_t>() < 1 ||
        count->get<std::uint64_t>() > 100'000'000) {
      return "/seeds/count: expected an integer in [1, 100000000], found " +
             sim::DescribeJson(*count);
    }
    s.seed_count = count->get<std::uint64_t>();
    s.seed_range = true;
  }
  if (auto it = j.find("mutant"); it != j.end()) {
    std::string list;
    for (int m = 1; m < core::kMutantCount; ++m) {
      list += (m == 1 ? "" : ", ") + std::string(core::MutantName(static_cast<core::Mutant>(m)));
    }
    if (!it->is_string() || core::MutantFromName(it->get<std::string>()) == core::Mutant::kNone) {
      return "/mutant: expected one of " + list + ", found " + sim::DescribeJson(*it);
    }
    s.mutant = it->get<std::string>();
  }
  if (auto it = j.find("expect"); it != j.end()) {
    if (error = LoadExpectation(*it, s.expect); !error.empty()) return error;
    if (s.expect.trace_hash && s.seed_count != 1) {
      return "/expect/trace_hash: only a single-seed scenario can name its trace hash";
    }
  }
  return "";
}

std::string LoadScenarioFile(const std::string& path, Scenario& s) {
  std::ifstream in(path);
  if (!in) return path + ": cannot open";
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    // e.what() names the line and column of the syntax error.
    return path + ": not valid JSON: " + e.what();
  }
  s = Scenario{};
  s.path = path;
  std::string error = LoadScenario(j, s);
  return error.empty() ? "" : path + ": " + error;
}

json ScenarioToJson(const Scenario& s) {
  json j;
  if (!s.description.empty()) j["description"] = s.description;
  if (!s.requirements.empty()) j["requirements"] = s.requirements;
  if (s.seed_range || s.seed_count != 1) {
    j["seeds"] = {{"first", s.first_seed}, {"count", s.seed_count}};
  } else {
    j["seed"] = s.first_seed;
  }
  if (!s.mutant.empty()) j["mutant"] = s.mutant;
  json world = sim::ConfigToJson(s.config);
  for (auto it = world.begin(); it != world.end(); ++it) j[it.key()] = *it;
  if (s.expect.present) {
    json e = {{"outcome", s.expect.violation ? "violation" : "pass"}};
    if (s.expect.violation) e["invariant"] = s.expect.invariant;
    if (!s.expect.at_least.empty()) e["at_least"] = s.expect.at_least;
    if (!s.expect.at_most.empty()) e["at_most"] = s.expect.at_most;
    if (s.expect.trace_hash) {
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx",
                    static_cast<unsigned long long>(*s.expect.trace_hash));
      e["trace_hash"] = hex;
    }
    j["expect"] = e;
  }
  return j;
}

std::string WriteScenarioFile(const std::string& path, const Scenario& s) {
  std::ofstream out(path);
  if (!out) return path + ": cannot write";
  out << ScenarioToJson(s).dump(2) << "\n";
  out.close();
  if (!out) return path + ": write failed";
  return "";
}

std::map<std::string, std::uint64_t> Metrics(const sim::SimSummary& s) {
  std::map<std::string, std::uint64_t> m;
  std::uint64_t failed = 0, faults = 0;
  for (const std::string& reason : ReasonNames()) m["failed_" + reason] = 0;
  for (const auto& [reason, n] : s.failed_by_reason) {
    m["failed_" + reason] = n;
    failed += n;
  }
  for (int k = 0; k < sim::kFaultKinds; ++k) {
    m["faults_" + std::string(sim::FaultKindName(static_cast<sim::FaultKind>(k)))] = s.faults[k];
    faults += s.faults[k];
  }
  m["requests_completed"] = s.requests_completed;
  m["failed"] = failed;
  m["requests_cut_by_crash"] = s.requests_cut_by_crash;
  m["unfinished_threads"] = s.unfinished_threads;
  m["grants"] = s.grants;
  m["queued"] = s.queued;
  m["recalls"] = s.recalls;
  m["releases"] = s.releases;
  m["lease_expiries"] = s.lease_expiries;
  m["agent_lease_expiries"] = s.agent_lease_expiries;
  m["commits"] = s.commits;
  m["store_rejects"] = s.store_rejects;
  m["faults"] = faults;
  m["messages_sent"] = s.messages_sent;
  m["messages_lost"] = s.messages_lost;
  m["messages_duplicated"] = s.messages_duplicated;
  m["events"] = s.events;
  m["acknowledged_increments"] = s.acknowledged_increments;
  m["unknown_increments"] = s.unknown_increments;
  m["wait_p99_us"] = s.wait_p99_us;
  m["simulated_us"] = s.simulated_us;
  return m;
}

bool IsMetric(const std::string& name) {
  // Metrics() names every metric, each reason and fault kind included.
  static const std::map<std::string, std::uint64_t> known = Metrics(sim::SimSummary{});
  return known.count(name) != 0;
}

void AddMetrics(std::map<std::string, std::uint64_t>& total,
                const std::map<std::string, std::uint64_t>& one) {
  for (const auto& [name, value] : one) {
    std::uint64_t& t = total[name];
    t = name == "wait_p99_us" ? std::max(t, value) : t + value;
  }
}

}  // namespace latchkey::cli
