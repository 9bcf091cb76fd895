// SimConfig: everything a simulation run depends on besides its seed.
//
// A run is a pure function of (SimConfig, seed): same inputs, same trace hash.
// Loaded from JSON strictly: an unknown field, a wrong type or an out-of-range
// value is an error that names the JSON path, what was expected and what was
// found.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/types.h"

namespace latchkey::sim {

using core::Time;

// A scripted run (a model checker's counterexample replayed): the simulator
// takes these steps in order instead of drawing latencies, think times and
// faults, then runs freely (from the script's end on) to judge liveness.
enum class ScriptKind : std::uint8_t {
  kDeliver,       // the oldest message in flight equal to `message` arrives
  kLose,          // ... is lost
  kDuplicate,     // ... is copied (the copy is the newest in flight)
  kAsk,           // thread `target` (index over all threads) asks its next request
  kCommit,        // thread `target` writes and commits
  kAdvance,       // time passes to `to_us`; every node due by then ticks
  kCrash,         // process `target` crashes and restarts at once (B4)
  kRestartStore,  // store `target` crashes and recovers from its log at once
};
std::string_view ScriptKindName(ScriptKind kind);

struct ScriptStep {
  ScriptKind kind = ScriptKind::kAdvance;
  std::uint32_t target = 0;
  Time to_us = 0;
  nlohmann::json message;  // the envelope as the trace writes it
  std::string note;        // optional words for people reading the script
};

// One request of a thread's fixed program (instead of a drawn one).
struct ProgramRequest {
  core::SessionId session = 0;
  core::Portion portion;
};

struct NetworkConfig {
  Time latency_min_us = 200;
  Time latency_max_us = 1'000;
  std::uint32_t loss_ppm = 0;       // each message lost with this probability
  std::uint32_t duplicate_ppm = 0;  // each message delivered twice
  std::uint32_t reorder_ppm = 0;    // each message delayed by up to reorder_max_us extra
  Time reorder_max_us = 5'000;
};

struct WorkloadConfig {
  std::uint32_t sessions = 8;
  std::uint32_t attributes = 4;  // a0 is the counter; a1.. are plain
  std::uint32_t requests_per_thread = 20;
  Time think_us = 2'000;                 // between requests, drawn in [0, think_us]
  Time hold_us = 500;                    // inside the critical section, in [0, hold_us]
  std::uint32_t affinity_ppm = 900'000;  // requests whose session is homed at the process
  bool zipf = false;                     // session popularity: uniform or Zipf
  double zipf_s = 0.99;
  std::uint32_t shared_ppm = 200'000;  // read-only requests (shared portions)
  std::uint32_t whole_ppm = 100'000;   // requests that lock the whole session
  std::uint32_t portion_max = 2;       // attributes besides the counter in a portion
  Time wait_timeout_us = 30'000'000;   // B5: a thread's wait deadline
  std::uint32_t try_ppm = 0;           // B5: requests made as try-locks (busy, never wait)
  // Optional: program[t] is the fixed list of requests of thread t of every
  // process (requests_per_thread long), used instead of drawn requests.
  std::vector<std::vector<ProgramRequest>> program;
};

enum class FaultKind : std::uint8_t {
  kProcessCrash,  // one process crashes, restarts as a new incarnation
  kServerCrash,   // every process of one application server
  kStoreCrash,    // a store node crashes, recovers from its persisted log
  kPartition,     // symmetric split, one-way cut, or one node isolated; heals
  kClog,          // one link delays everything for a while
  kPause,         // stop-the-world of one process
  kDriftBeyond,   // one process's clock drifts past the configured bound
  kInvalidate,    // an administrator invalidates one session (B6 logout); scheduled only
};
inline constexpr int kFaultKinds = 8;
// The kinds that can also be drawn at random (the first ones of FaultKind).
inline constexpr int kRandomFaultKinds = 7;
std::string_view FaultKindName(FaultKind kind);

// A fault at a fixed time (scenarios). `target` is a process index, a server
// index or a store index depending on the kind (for partitions: a node index
// where stores come first, then processes); `duration_us` is the downtime,
// pause, clog or partition length.
struct ScheduledFault {
  Time at_us = 0;
  FaultKind kind = FaultKind::kProcessCrash;
  std::uint32_t target = 0;
  Time duration_us = 100'000;
  std::uint32_t variant = 0;  // partitions: 0 symmetric halves, 1 one-way, 2 isolate target
};

struct FaultRates {
  Time check_every_us = 10'000;  // a chance for each kind this often
  std::uint32_t ppm[kRandomFaultKinds] = {0, 0, 0, 0, 0, 0, 0};  // per check, per kind
  Time max_duration_us = 500'000;                                // durations drawn in [1 ms, this]
};

struct SimConfig {
  std::uint32_t stores = 1;
  std::uint32_t servers = 2;
  std::uint32_t processes_per_server = 2;
  std::uint32_t threads_per_process = 2;

  Time lease_us = 1'000'000;
  Time recall_retry_us = 100'000;
  Time idle_release_us = core::kNever;
  bool release_when_contended = false;  // R8: give back at once a lock that was Queued for
  Time session_idle_us = core::kNever;
  Time retry_us = 50'000;
  Time expiry_margin_us = 10'000;
  std::uint32_t drift_ppm = 200;  // bound on the clock-rate difference of any two nodes
  Time heartbeat_us = 0;          // the agents' lease renewal period; 0: lease_us / 4

  NetworkConfig network;
  WorkloadConfig workload;
  FaultRates faults;
  std::vector<ScheduledFault> schedule;
  bool swarm = false;  // each seed also draws which fault kinds are on, and their rates
  std::vector<ScriptStep>
      script;  // non-empty: a scripted run (needs a program, no drift or faults)

  Time fault_phase_us = 2'000'000;  // faults happen only before this
  Time quiet_phase_us = 8'000'000;  // then this long without faults, for liveness

  std::uint32_t processes() const { return servers * processes_per_server; }
  std::uint32_t threads() const { return processes() * threads_per_process; }
  Time end_us() const { return fault_phase_us + quiet_phase_us; }
};

// Fills `config` from JSON, or returns an error message naming the JSON path
// (e.g. "/network/loss_ppm: expected an integer in [0, 1000000], found -3").
// Fields absent from the JSON keep their current values.
// `also_known` names top-level fields the caller reads itself (a scenario's
// seed and expectation), which are therefore not unknown.
std::string LoadConfig(const nlohmann::json& json, SimConfig& config,
                       std::initializer_list<const char*> also_known = {});
// Checks cross-field constraints; returns "" or the error.
std::string ValidateConfig(const SimConfig& config);
nlohmann::json ConfigToJson(const SimConfig& config);
// A JSON value for an error message: its type and (shortened) text.
std::string DescribeJson(const nlohmann::json& value);

}  // namespace latchkey::sim
