// Hashing of the core's state types, so that a model checker can keep whole
// system states in a visited set. The hash is deterministic (no per-process
// seed) and depends only on the values, in container iteration order, which
// is deterministic for every container the core uses.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/agent.h"
#include "core/effects.h"
#include "core/messages.h"
#include "core/store.h"
#include "core/types.h"

namespace latchkey::core {

// Anything that takes a stream of 64-bit words: the HashValue functions
// below feed every value to one as the same word sequence.
template <class H>
concept WordHasher = requires(H& h, std::uint64_t word) {
  h.Mix(word);
};

// A 64-bit streaming hasher: each word is mixed with the splitmix64 finalizer.
class Hasher {
 public:
  Hasher() = default;
  // A differently seeded hasher: two of them give a 128-bit fingerprint.
  explicit Hasher(std::uint64_t seed) : state_(seed) {}
  void Mix(std::uint64_t word) { state_ = Splitmix64(state_ ^ word) + 0x9E3779B97F4A7C15ULL; }
  std::uint64_t value() const { return state_; }

 private:
  std::uint64_t state_ = 0x6C61746368ULL;  // "latch"
};

// A cheaper hasher for a long word stream that is then folded into a
// Hasher (the simulator hashes each event this way, then folds the event
// into the trace hash). Two lanes take the words in turn, so a word does not
// wait for the previous word's multiply; each step (xor, multiply by an odd
// constant, xorshift, swap lanes) is a bijection of the 128-bit state, so no
// word is lost before Digest mixes both lanes fully.
class LaneHasher {
 public:
  void Mix(std::uint64_t word) {
    std::uint64_t x = (a_ ^ word) * 0xD6E8FEB86659FD93ULL;
    a_ = b_;
    b_ = x ^ (x >> 32);
  }
  // Both lanes, fully mixed.
  std::uint64_t Digest() const { return Splitmix64(Splitmix64(a_) ^ b_); }

 private:
  std::uint64_t a_ = 0x6C61746368ULL;  // "latch"
  std::uint64_t b_ = 0x6B6579ULL;      // "key"
};

template <WordHasher H, class T>
requires std::is_integral_v<T> || std::is_enum_v<T>
void HashValue(H& h, T v) { h.Mix(static_cast<std::uint64_t>(v)); }
// A string is its length, then its bytes eight to a word, big-endian (the
// first byte in the top bits), the last word holding what is left over in its
// low bytes. Read eight bytes at a time, the leftover too (as the end of the
// last eight bytes, or from a buffer at least eight long): the same words as
// a byte-at-a-time loop, with no branch per leftover piece.
inline std::uint64_t LoadBigEndian(const unsigned char* p) {
  std::uint64_t word;
  std::memcpy(&word, p, 8);
  if constexpr (std::endian::native == std::endian::little) word = __builtin_bswap64(word);
  return word;
}
template <WordHasher H>
void HashValue(H& h, const std::string& s) {
  const std::size_t size = s.size();
  h.Mix(size);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
  if (size < 8) {
    if (size == 0) return;
    if (s.capacity() >= 7) {
      // data()[0, capacity()] is the string's storage: eight bytes can be
      // read; those past the end are shifted out.
      h.Mix(LoadBigEndian(p) >> (64 - 8 * size));
      return;
    }
    std::uint64_t word = 0;
    for (std::size_t i = 0; i < size; ++i) word = (word << 8) | p[i];
    h.Mix(word);
    return;
  }
  std::size_t left = size;
  for (; left >= 8; left -= 8, p += 8) h.Mix(LoadBigEndian(p));
  // The last 1-7 bytes are the low bytes of the string's last eight.
  if (left != 0) h.Mix(LoadBigEndian(p + left - 8) & ((std::uint64_t{1} << (8 * left)) - 1));
}
template <WordHasher H, class A, class B>
void HashValue(H& h, const std::pair<A, B>& p);
template <WordHasher H, class T>
void HashValue(H& h, const std::optional<T>& o);
template <WordHasher H, class T>
void HashValue(H& h, const std::vector<T>& v);
template <WordHasher H, class T>
void HashValue(H& h, const std::deque<T>& v);
template <WordHasher H, class T>
void HashValue(H& h, const std::set<T>& v);
template <WordHasher H, class T>
void HashValue(H& h, const FlatSet<T>& v);
template <WordHasher H, class K, class V>
void HashValue(H& h, const std::map<K, V>& m);
template <WordHasher H, class... Ts>
void HashValue(H& h, const std::variant<Ts...>& v);
template <WordHasher H>
void HashValue(H& h, const AttributeMap& m);

template <WordHasher H, class... Ts>
void HashFields(H& h, const Ts&... fields) {
  (HashValue(h, fields), ...);
}

template <WordHasher H>
void HashValue(H& h, const ProcessRef& v) {
  HashFields(h, v.id, v.incarnation);
}
template <WordHasher H>
void HashValue(H& h, const DataVersion& v) {
  HashFields(h, v.token, v.seq);
}
template <WordHasher H>
void HashValue(H& h, const AttributeWrite& v) {
  HashFields(h, v.name, v.value, v.erase);
}
// The same words as the list itself (a WriteSet was a std::vector).
template <WordHasher H>
void HashValue(H& h, const WriteSet& v) {
  HashValue(h, v.list());
}
template <WordHasher H>
void HashValue(H& h, const Portion& v) {
  HashFields(h, v.whole, v.attributes, v.mode);
}
template <WordHasher H>
void HashValue(H& h, const Address& v) {
  HashFields(h, v.kind, v.id, v.incarnation);
}

// Messages.
template <WordHasher H>
void HashValue(H& h, const Acquire& m) {
  HashFields(h, m.session, m.request_id, m.cached, m.try_only);
}
template <WordHasher H>
void HashValue(H& h, const Release& m) {
  HashFields(h, m.session, m.token);
}
template <WordHasher H>
void HashValue(H& h, const Commit& m) {
  HashFields(h, m.session, m.token, m.seq, m.clear_first, m.writes);
}
template <WordHasher H>
void HashValue(H& h, const Heartbeat& m) {
  HashFields(h, m.seq);
}
template <WordHasher H>
void HashValue(H& h, const Reclaim& m) {
  HashFields(h, m.session, m.token);
}
template <WordHasher H>
void HashValue(H& h, const Cancel& m) {
  HashFields(h, m.session, m.request_id);
}
template <WordHasher H>
void HashValue(H& h, const ForceRelease& m) {
  HashFields(h, m.session);
}
template <WordHasher H>
void HashValue(H& h, const AdminInvalidate& m) {
  HashFields(h, m.session);
}
template <WordHasher H>
void HashValue(H& h, const Granted& m) {
  HashFields(h, m.session, m.token, m.request_id, m.version, m.has_snapshot, m.snapshot);
}
template <WordHasher H>
void HashValue(H& h, const Queued& m) {
  HashFields(h, m.session, m.request_id, m.ahead);
}
template <WordHasher H>
void HashValue(H& h, const Busy& m) {
  HashFields(h, m.session, m.request_id);
}
template <WordHasher H>
void HashValue(H& h, const Recall& m) {
  HashFields(h, m.session, m.token);
}
template <WordHasher H>
void HashValue(H& h, const ReleaseAck& m) {
  HashFields(h, m.session, m.token);
}
template <WordHasher H>
void HashValue(H& h, const CommitAck& m) {
  HashFields(h, m.session, m.token, m.seq);
}
template <WordHasher H>
void HashValue(H& h, const HeartbeatAck& m) {
  HashFields(h, m.seq);
}
template <WordHasher H>
void HashValue(H& h, const ReclaimAck& m) {
  HashFields(h, m.session, m.token);
}
template <WordHasher H>
void HashValue(H& h, const CancelAck& m) {
  HashFields(h, m.session, m.request_id);
}
template <WordHasher H>
void HashValue(H& h, const Revoked& m) {
  HashFields(h, m.session, m.token, m.reason);
}
template <WordHasher H>
void HashValue(H& h, const Rejected& m) {
  HashFields(h, m.session, m.token, m.seq, m.what, m.reason);
}
template <WordHasher H>
void HashValue(H& h, const Envelope& e) {
  HashFields(h, e.from, e.to, e.message);
}

// Records and thread events.
template <WordHasher H>
void HashValue(H& h, const StoreStartedRecord& r) {
  HashFields(h, r.epoch);
}
template <WordHasher H>
void HashValue(H& h, const GrantRecord& r) {
  HashFields(h, r.session, r.token, r.holder, r.request_id);
}
template <WordHasher H>
void HashValue(H& h, const TenureEndRecord& r) {
  HashFields(h, r.session, r.token);
}
template <WordHasher H>
void HashValue(H& h, const CommitRecord& r) {
  HashFields(h, r.session, r.token, r.seq, r.clear_first, r.writes);
}
template <WordHasher H>
void HashValue(H& h, const SessionDroppedRecord& r) {
  HashFields(h, r.session);
}
template <WordHasher H>
void HashValue(H& h, const ThreadEvent& e) {
  HashFields(h, e.thread, e.session, e.kind, e.reason);
}

// Store state.
template <WordHasher H>
void HashValue(H& h, const Tenure& t) {
  HashFields(h, t.holder, t.token, t.request_id, t.granted_at, t.last_seq, t.recalled,
             t.recall_retry_at, t.reclaimed, t.revoked);
}
template <WordHasher H>
void HashValue(H& h, const Waiter& w) {
  HashFields(h, w.process, w.request_id, w.buffered_at, w.cached);
}
template <WordHasher H>
void HashValue(H& h, const RequestMark& m) {
  HashFields(h, m.incarnation, m.request_id, m.finished);
}
template <WordHasher H>
void HashValue(H& h, const SessionState& s) {
  HashFields(h, s.attributes, s.version, s.tenure, s.queue, s.last_request, s.last_used, s.timer);
}
template <WordHasher H>
void HashValue(H& h, const ProcessEntry& p) {
  HashFields(h, p.incarnation, p.lease_until, p.held, p.queued);
}
template <WordHasher H>
void HashValue(H& h, const StoreState& s) {
  // `timers` is derived from the sessions' timers, so it adds nothing.
  HashFields(h, s.epoch, s.last_token, s.grace_until, s.in_grace, s.sessions, s.processes);
}

// Agent state.
template <WordHasher H>
void HashValue(H& h, const ThreadHold& t) {
  HashFields(h, t.thread, t.portion, t.clear_first, t.writes, t.committing);
}
template <WordHasher H>
void HashValue(H& h, const ThreadWait& w) {
  HashFields(h, w.thread, w.portion, w.deadline, w.try_only, w.entitled);
}
template <WordHasher H>
void HashValue(H& h, const PendingCommit& c) {
  HashFields(h, c.thread, c.seq, c.clear_first, c.writes, c.resent);
}
template <WordHasher H>
void HashValue(H& h, const AgentSession& s) {
  HashFields(h, s.request_lapses, s.revoked_seen);
  HashFields(h, s.state, s.request_id, s.try_request, s.queued, s.request_sent_at, s.token,
             s.recalled, s.recall_seen, s.reclaiming, s.reclaim_sent_at, s.reclaim_trust_until,
             s.cache, s.cache_version, s.holders, s.waiters, s.commits, s.next_seq, s.retry_at,
             s.idle_release_at, s.contended);
  // Hashed only when set, so states without it keep their hashes.
  if (s.pipelined != PipelinedRelease::kNone) HashFields(h, s.pipelined);
}
template <WordHasher H>
void HashValue(H& h, const StoreLink& l) {
  HashFields(h, l.lapses, l.lapsed, l.gap_closed_at);
  HashFields(h, l.epoch, l.trusted_until, l.heartbeat_seq, l.heartbeat_sent_at,
             l.heartbeat_outstanding, l.next_heartbeat_at, l.engaged, l.held);
}
template <WordHasher H>
void HashValue(H& h, const AgentState& s) {
  HashFields(h, s.last_request_id, s.sessions, s.stores);
}

template <WordHasher H, class A, class B>
void HashValue(H& h, const std::pair<A, B>& p) {
  HashFields(h, p.first, p.second);
}
template <WordHasher H, class T>
void HashValue(H& h, const std::optional<T>& o) {
  h.Mix(o.has_value());
  if (o) HashValue(h, *o);
}
template <WordHasher H, class T>
void HashValue(H& h, const std::vector<T>& v) {
  h.Mix(v.size());
  for (const T& x : v) HashValue(h, x);
}
template <WordHasher H, class T>
void HashValue(H& h, const std::deque<T>& v) {
  h.Mix(v.size());
  for (const T& x : v) HashValue(h, x);
}
template <WordHasher H, class T>
void HashValue(H& h, const std::set<T>& v) {
  h.Mix(v.size());
  for (const T& x : v) HashValue(h, x);
}
// The same words as the std::set it was.
template <WordHasher H, class T>
void HashValue(H& h, const FlatSet<T>& v) {
  h.Mix(v.size());
  for (const T& x : v) HashValue(h, x);
}
template <WordHasher H, class K, class V>
void HashValue(H& h, const std::map<K, V>& m) {
  h.Mix(m.size());
  for (const auto& [k, v] : m) HashFields(h, k, v);
}
// The same words as the std::map<std::string, std::string> it was.
template <WordHasher H>
void HashValue(H& h, const AttributeMap& m) {
  h.Mix(m.size());
  for (const auto& [k, v] : m) HashFields(h, k, v);
}
// Calls `f` with the variant's alternative, by a switch, not std::visit:
// std::visit calls through a table of function pointers, which no inliner
// can see through, so every message, record and effect hashed would cost a
// call and its hash functions' calls.
template <class F, class... Ts>
void VisitBySwitch(const std::variant<Ts...>& v, F&& f) {
  static_assert(sizeof...(Ts) <= 24, "add cases below");
  switch (v.index()) {
#define LK_VISIT_ALTERNATIVE(I)                              \
  case I:                                                    \
    if constexpr (I < sizeof...(Ts)) f(*std::get_if<I>(&v)); \
    return;
    LK_VISIT_ALTERNATIVE(0)
    LK_VISIT_ALTERNATIVE(1)
    LK_VISIT_ALTERNATIVE(2)
    LK_VISIT_ALTERNATIVE(3)
    LK_VISIT_ALTERNATIVE(4)
    LK_VISIT_ALTERNATIVE(5)
    LK_VISIT_ALTERNATIVE(6)
    LK_VISIT_ALTERNATIVE(7)
    LK_VISIT_ALTERNATIVE(8)
    LK_VISIT_ALTERNATIVE(9)
    LK_VISIT_ALTERNATIVE(10)
    LK_VISIT_ALTERNATIVE(11)
    LK_VISIT_ALTERNATIVE(12)
    LK_VISIT_ALTERNATIVE(13)
    LK_VISIT_ALTERNATIVE(14)
    LK_VISIT_ALTERNATIVE(15)
    LK_VISIT_ALTERNATIVE(16)
    LK_VISIT_ALTERNATIVE(17)
    LK_VISIT_ALTERNATIVE(18)
    LK_VISIT_ALTERNATIVE(19)
    LK_VISIT_ALTERNATIVE(20)
    LK_VISIT_ALTERNATIVE(21)
    LK_VISIT_ALTERNATIVE(22)
    LK_VISIT_ALTERNATIVE(23)
#undef LK_VISIT_ALTERNATIVE
    default:
      return;  // valueless (an exception interrupted an assignment)
  }
}
// The alternative's index, then its fields.
template <WordHasher H, class... Ts>
void HashValue(H& h, const std::variant<Ts...>& v) {
  h.Mix(v.index());
  VisitBySwitch(v, [&h](const auto& alternative) { HashValue(h, alternative); });
}

template <class T>
std::uint64_t HashOf(const T& value) {
  Hasher h;
  HashValue(h, value);
  return h.value();
}

}  // namespace latchkey::core

// std::hash, so the state types work in unordered containers.
template <>
struct std::hash<latchkey::core::StoreState> {
  std::size_t operator()(const latchkey::core::StoreState& s) const {
    return latchkey::core::HashOf(s);
  }
};
template <>
struct std::hash<latchkey::core::AgentState> {
  std::size_t operator()(const latchkey::core::AgentState& s) const {
    return latchkey::core::HashOf(s);
  }
};
template <>
struct std::hash<latchkey::core::Envelope> {
  std::size_t operator()(const latchkey::core::Envelope& e) const {
    return latchkey::core::HashOf(e);
  }
};
