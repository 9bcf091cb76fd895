// `latchkey timeline`: one self-contained HTML page that draws a simulation
// trace (the JSON lines of `sim --trace` / `replay --trace`) as a timeline.
//
// The trace is read into a model of lanes (one per store node, process and
// request thread), bars (lock tenures as the store and the process see them,
// the portions threads hold, queued and waiting requests), arrows (messages
// from send to delivery, lost ones marked) and marks (recalls, lease expiries,
// revocations, crashes, restarts, partitions, pauses, clogs, drift, failures).
// A trace may end with one {"ev":"violation",...} line (replay writes it when
// the checker found one): the page then shows the invariant, its message and
// the events that led to it. The page embeds the model and the raw trace
// lines (for the details shown on hover) and renders them on a <canvas> with
// its own hit-testing, zoom and pan; it loads nothing from the network.
//
// Thread-safety: the functions are pure apart from the file they write.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checker/checker.h"

namespace latchkey::cli {

struct TimelineLane {
  std::string name;  // "s0", "p2", "p2.t1"
  std::string kind;  // "store", "process", "thread"
  int parent = -1;   // a thread's process lane
  int slots = 1;     // rows needed for the bars that overlap in time
};

enum class BarKind : std::uint8_t {
  kStoreTenure,    // the store granted a token until it persisted the tenure's end
  kProcessTenure,  // the process received the grant until it released or lost it
  kThreadExclusive,
  kThreadShared,
  kQueued,   // the process was told it is buffered, until granted or refused
  kWaiting,  // a thread asked, until it got its portion or failed
};

struct TimelineBar {
  int lane = 0;
  int slot = 0;
  std::uint64_t t0 = 0, t1 = 0;
  std::int64_t session = -1;
  std::uint64_t token = 0;
  BarKind kind = BarKind::kStoreTenure;
  std::int64_t ev = -1, ev_end = -1;  // the events that began and ended it
  bool open = false;                  // still running when the trace ended
  std::string label;
};

enum class ArrowFate : std::uint8_t {
  kDelivered,
  kLost,         // the network lost it when it was sent (loss or partition)
  kDroppedDown,  // it arrived at a node that was down
  kDroppedPartition,
  kInFlight,   // not delivered before the trace ended
  kDuplicate,  // a second delivery of one send
};

struct TimelineArrow {
  int from = 0, to = -1;
  std::uint64_t t0 = 0, t1 = 0;
  std::int64_t session = -1;
  std::string kind;  // the message kind, e.g. "Granted"
  ArrowFate fate = ArrowFate::kDelivered;
  std::int64_t ev = -1, ev_end = -1;
};

struct TimelineMark {
  int lane = -1;  // -1: the whole world (partition halves, the quiet phase)
  std::uint64_t t0 = 0, t1 = 0;
  std::string kind;  // "recall", "lease_expiry", "crash", "restart", "partition", ...
  std::int64_t session = -1;
  std::int64_t ev = -1;
  std::string label;
};

struct TimelineViolation {
  std::string invariant, message, state;
  std::uint64_t time = 0;
  std::int64_t recent_from = 0;  // the first of the events that led to it
};

struct TimelineModel {
  std::vector<TimelineLane> lanes;
  std::vector<TimelineBar> bars;
  std::vector<TimelineArrow> arrows;
  std::vector<TimelineMark> marks;
  std::vector<std::int64_t> sessions;  // sorted
  std::uint64_t t_end = 0;
  std::int64_t events = 0;
  std::optional<TimelineViolation> violation;

  int LaneIndex(const std::string& name) const;  // -1 if none
  nlohmann::json ToJson(const std::vector<std::string>& lines) const;
};

// Builds the model from the trace's lines. Returns "" or an error naming the
// line (1-based) that is not a JSON object.
std::string BuildTimeline(const std::vector<std::string>& lines, TimelineModel& model);

// The whole page for the trace's lines.
std::string TimelineHtml(const TimelineModel& model, const std::vector<std::string>& lines,
                         const std::string& title);

// The last trace line of a run that ended in a violation.
std::string ViolationTraceLine(const checker::Violation& violation);

// Splits a trace (text) into its non-empty lines.
std::vector<std::string> SplitTraceLines(const std::string& text);

// Reads, builds and writes: returns "" or an error message.
std::string WriteTimelineFile(const std::vector<std::string>& lines, const std::string& html_path,
                              const std::string& title);

struct TimelineOptions {
  std::string trace_path;
  std::string out_path;  // default: the trace's name with .html
  std::string title;     // default: the trace's file name
};
// `latchkey timeline`: exit 0 written, 2 bad input.
int TimelineCommand(const TimelineOptions& options);

}  // namespace latchkey::cli
