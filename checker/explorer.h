// Explorer: a bounded exhaustive model checker that runs the real core.
//
// Where the simulator samples one interleaving per seed, the explorer visits
// every reachable state of a small world, breadth-first: every core (stores
// and process agents), every message in flight, every request thread's
// position in its program, and the global time. From each state it takes
// every enabled step: deliver any deliverable message, step any runnable
// thread, let time pass to the next deadline, and, within the fault budgets,
// lose or duplicate a message, crash a process, or restart a store. In every
// state it checks the checker's online invariants; on every step, that a
// thread told LockLost (its commit certainly did not apply) has no commit in
// the store's log; in every terminal state
// (nothing enabled, or time at its horizon) it checks that every request
// finished and that no acknowledged update was lost.
//
// Time: all nodes share one clock (no drift). Time advances only by the
// "time passes" step, to the earliest deadline of any node; every node due
// then ticks in the same step. Without the lease-expiry fault, time passes
// only when no message is in flight (the network is fast next to leases);
// with it, time may pass at any point, so messages can arrive after leases
// ran out.
//
// Visited set: 128-bit fingerprints of the canonical state (two 64-bit lanes
// with their own secrets) kept in one sorted array, 16 bytes per visited
// state, no empty slots, with a directory by the top bits to look them up.
// Each level's new states are deduplicated in a hash set, then merged in
// (delayed duplicate detection, as in external-memory BFS).
// Counterexamples are shortest: the search is breadth-first, and each level
// keeps a parent link per state (8 bytes) to rebuild the path.
//
// Thread-safety: Explore may run its own worker threads (`jobs`); it calls
// `progress` from the calling thread only.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/types.h"
#include "sim/config.h"

namespace latchkey::checker {

struct ExploreConfig {
  std::uint32_t stores = 1;
  std::uint32_t processes = 2;
  std::uint32_t threads = 2;  // per process
  std::uint32_t sessions = 1;
  std::uint32_t attributes = 2;
  std::uint32_t requests_per_thread = 2;
  // Faults: budgets per path (0 = off), and the two kinds that are modes.
  std::uint32_t crashes = 0;
  std::uint32_t losses = 0;
  std::uint32_t duplicates = 0;
  std::uint32_t store_restarts = 0;
  bool reorder = false;       // any in-flight message may arrive next (else FIFO per link)
  bool lease_expiry = false;  // time may pass while messages are in flight
  // Protocol timing (microseconds). Only their order matters to the search.
  core::Time lease_us = 1'000;
  core::Time recall_retry_us = 500;
  core::Time retry_us = 1'000;
  core::Time idle_release_us = 0;       // 0: release after every request (R8); kNever: keep (R6)
  bool release_when_contended = false;  // R8: a lock that was Queued for is given back at once
  core::Time expiry_margin_us = 10;
  core::Time horizon_us = 0;  // time stops here; 0: 3 leases
  // Bounds on the search.
  std::uint32_t max_depth = 0;  // 0: none
  std::uint64_t max_states = 50'000'000;
  unsigned jobs = 1;
  // Process symmetry reduction: states that differ only in how processes
  // are numbered count as one (every process runs the same program).
  bool symmetry = true;
  // For tests: also count the distinct states up to process numbering
  // (ExploreStats::classes), whatever `symmetry` says.
  bool count_classes = false;
};

// Strict JSON loading (unknown fields are errors naming the JSON path).
std::string LoadExploreConfig(const nlohmann::json& json, ExploreConfig& config);
// "crash,loss,dup,reorder,lease-expiry,store-restart" (budgets of 1 each).
std::string ApplyFaultList(const std::string& list, ExploreConfig& config);
nlohmann::json ExploreConfigToJson(const ExploreConfig& config);

struct ExploreViolation {
  std::string invariant;  // a checker invariant name (process_exclusion, ...)
  std::string message;
  std::vector<std::string> path;        // the steps from the initial state, in words
  std::string state;                    // the violating state, in words
  std::vector<sim::ScriptStep> script;  // the same path, as the simulator replays it
};

struct ExploreStats {
  std::uint64_t generated = 0;    // successor states produced
  std::uint64_t distinct = 0;     // distinct states visited
  std::uint64_t transitions = 0;  // steps taken (= generated)
  std::uint64_t terminal = 0;     // states with nothing enabled
  std::uint32_t depth = 0;        // levels completed
  bool complete = false;          // every reachable state was visited
  double wall_s = 0;
  std::uint64_t visited_bytes = 0;  // the fingerprint array and its directory
  std::uint64_t peak_rss_bytes = 0;
  bool symmetry = false;            // states equal up to process numbering counted once
  bool symmetry_abandoned = false;  // asked for, but a step broke the symmetry: searched without
  std::uint64_t classes = 0;        // with count_classes: distinct states up to process numbering
};

struct ExploreResult {
  ExploreStats stats;
  std::optional<ExploreViolation> violation;
};

struct ExploreProgress {
  std::uint32_t depth = 0;
  std::uint64_t frontier = 0;
  const ExploreStats* stats = nullptr;
};

// The simulator's configuration that replays `script` (a violation's path) in
// the same world: the same nodes, timers and thread programs, no drift, the
// script inside the fault phase, then a quiet phase long enough for the
// checker's liveness bound. "" or why it cannot (a lease the simulator does
// not accept).
std::string ReplayConfig(const ExploreConfig& config, const std::vector<sim::ScriptStep>& script,
                         sim::SimConfig& out);

ExploreResult Explore(const ExploreConfig& config,
                      const std::function<void(const ExploreProgress&)>& progress = {});

// For tests: the fingerprint of the state reached from the initial one by
// taking, at each step, the first successor whose description contains the
// given text; nullopt when none does.
std::optional<std::array<std::uint64_t, 2>> FingerprintAfter(const ExploreConfig& config,
                                                             const std::vector<std::string>& steps);

}  // namespace latchkey::checker
