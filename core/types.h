// Basic value types shared by the store, the process agent and their drivers.
//
// Everything here is a regular type (copyable, equality-comparable, hashable
// through core/hash.h) so that whole system states can be stored and compared
// by the model checker. Thread-safety: plain values, no shared state.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace latchkey::core {

// Microseconds, virtual (simulator) or monotonic (server). Time only ever
// reaches the core as an argument.
using Time = std::uint64_t;
inline constexpr Time kNever = std::numeric_limits<Time>::max();

// Saturating addition, so "now + kNever" stays kNever.
constexpr Time AddTime(Time a, Time b) { return a > kNever - b ? kNever : a + b; }

using SessionId = std::uint64_t;
using ThreadId = std::uint32_t;
// Lock tokens come from one counter per store node, so they strictly increase
// per session even when a session is deleted and created again (B2).
using Token = std::uint64_t;
inline constexpr Token kNoToken = 0;

// A process incarnation: a restarted process gets a higher incarnation and its
// predecessor's messages are never taken for its own (B4).
struct ProcessRef {
  std::uint64_t id = 0;
  std::uint64_t incarnation = 0;
  bool operator==(const ProcessRef&) const = default;
  auto operator<=>(const ProcessRef&) const = default;
};

// The version of a session's data: the tenure (token) and the per-tenure
// commit sequence number of the last write applied. Unique over a store's
// life because tokens are.
struct DataVersion {
  Token token = kNoToken;
  std::uint64_t seq = 0;
  bool operator==(const DataVersion&) const = default;
  auto operator<=>(const DataVersion&) const = default;
};

// R10: session data is a set of named attributes: name -> value, in name
// order. A sorted vector of pairs with the part of std::map's interface the
// code uses: a session has a handful of attributes, so a look-up is a short
// search of one block, a copy (a grant's snapshot) is one allocation instead
// of one per attribute, and setting an existing attribute allocates nothing.
// Iterates, compares and hashes (core/hash.h) as the std::map it replaces.
// Unlike std::map, an insert or an erase invalidates iterators and references
// to other entries, and a name must not be changed through an iterator.
class AttributeMap {
 public:
  using key_type = std::string;
  using mapped_type = std::string;
  using value_type = std::pair<std::string, std::string>;
  using Entries = std::vector<value_type>;
  using iterator = Entries::iterator;
  using const_iterator = Entries::const_iterator;
  using reverse_iterator = Entries::reverse_iterator;
  using const_reverse_iterator = Entries::const_reverse_iterator;
  using size_type = std::size_t;

  AttributeMap() = default;
  // As std::map: sorted by name; of repeated names, the first is kept.
  AttributeMap(std::initializer_list<value_type> entries);

  iterator begin() { return entries_.begin(); }
  iterator end() { return entries_.end(); }
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }
  const_iterator cbegin() const { return entries_.begin(); }
  const_iterator cend() const { return entries_.end(); }
  reverse_iterator rbegin() { return entries_.rbegin(); }
  reverse_iterator rend() { return entries_.rend(); }
  const_reverse_iterator rbegin() const { return entries_.rbegin(); }
  const_reverse_iterator rend() const { return entries_.rend(); }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  void clear() { entries_.clear(); }

  iterator find(std::string_view name) {
    auto it = LowerBound(name);
    return it != entries_.end() && it->first == name ? it : entries_.end();
  }
  const_iterator find(std::string_view name) const {
    return const_cast<AttributeMap*>(this)->find(name);
  }
  std::size_t count(std::string_view name) const { return find(name) != end() ? 1 : 0; }
  bool contains(std::string_view name) const { return find(name) != end(); }
  // Throws std::out_of_range when absent, as std::map::at.
  std::string& at(std::string_view name);
  const std::string& at(std::string_view name) const {
    return const_cast<AttributeMap*>(this)->at(name);
  }
  std::string& operator[](std::string_view name) {
    auto it = LowerBound(name);
    if (it == entries_.end() || it->first != name) {
      it = entries_.emplace(it, std::string(name), std::string());
    }
    return it->second;
  }
  template <class V>
  std::pair<iterator, bool> insert_or_assign(std::string_view name, V&& value) {
    auto it = LowerBound(name);
    if (it != entries_.end() && it->first == name) {
      it->second = std::forward<V>(value);
      return {it, false};
    }
    return {entries_.emplace(it, std::string(name), std::forward<V>(value)), true};
  }
  std::pair<iterator, bool> emplace(std::string name, std::string value) {
    auto it = LowerBound(name);
    if (it != entries_.end() && it->first == name) return {it, false};
    return {entries_.emplace(it, std::move(name), std::move(value)), true};
  }
  // The hint is only a hint: the entry goes where its name sorts.
  iterator emplace_hint(const_iterator hint, std::string name, std::string value) {
    if (hint == entries_.cend() && (entries_.empty() || entries_.back().first < name)) {
      entries_.emplace_back(std::move(name), std::move(value));
      return entries_.end() - 1;
    }
    return emplace(std::move(name), std::move(value)).first;
  }
  std::size_t erase(std::string_view name) {
    auto it = find(name);
    if (it == entries_.end()) return 0;
    entries_.erase(it);
    return 1;
  }
  iterator erase(const_iterator it) { return entries_.erase(it); }
  bool operator==(const AttributeMap&) const = default;

 private:
  iterator LowerBound(std::string_view name) {
    // latchkeyd allows up to 1024 attributes a session by default: a binary
    // search beyond a few.
    if (entries_.size() > 16) {
      return std::lower_bound(
          entries_.begin(), entries_.end(), name,
          [](const value_type& e, std::string_view n) { return std::string_view(e.first) < n; });
    }
    // Few entries: a linear walk, one three-way comparison each.
    auto it = entries_.begin();
    while (it != entries_.end() && std::string_view(it->first).compare(name) < 0) ++it;
    return it;
  }
  Entries entries_;  // sorted by name, unique
};

struct AttributeWrite {
  std::string name;
  std::string value;
  bool erase = false;  // remove the attribute instead of setting it
  bool operator==(const AttributeWrite&) const = default;
};

// A commit's writes, immutable and shared: the agent's pending commit, the
// Commit message (and its resends) and the store's CommitRecord hold the same
// list, allocated once when the thread finishes. A regular value all the
// same: == and hashing (core/hash.h) look at the writes, never at the
// pointer, so two equal lists built apart are equal. Immutable content with an
// atomic count: safe to share between threads.
class WriteSet {
 public:
  using List = std::vector<AttributeWrite>;
  WriteSet() = default;
  WriteSet(List writes)  // NOLINT: implicit, a list is a write set
      : list_(writes.empty() ? nullptr : std::make_shared<const List>(std::move(writes))) {}
  WriteSet(std::initializer_list<AttributeWrite> writes) : WriteSet(List(writes)) {}

  const List& list() const { return list_ ? *list_ : Empty(); }
  std::size_t size() const { return list_ ? list_->size() : 0; }
  bool empty() const { return size() == 0; }
  List::const_iterator begin() const { return list().begin(); }
  List::const_iterator end() const { return list().end(); }
  const AttributeWrite& operator[](std::size_t i) const { return list()[i]; }
  bool operator==(const WriteSet& other) const {
    return list_ == other.list_ || list() == other.list();
  }

 private:
  static const List& Empty() {
    static const List kEmpty;
    return kEmpty;
  }
  std::shared_ptr<const List> list_;  // null when empty
};

enum class Mode : std::uint8_t { kShared, kExclusive };

// R9: a portion of a session that one thread locks: a set of attributes, or
// the whole session (every attribute, including ones not yet created).
struct Portion {
  bool whole = false;
  std::vector<std::string> attributes;  // sorted, unique; ignored when whole
  Mode mode = Mode::kExclusive;
  bool operator==(const Portion&) const = default;

  static Portion Whole(Mode mode);
  static Portion Of(std::vector<std::string> attributes, Mode mode);
  bool Contains(std::string_view attribute) const;
  bool Overlaps(const Portion& other) const;
  // Two portions conflict if they overlap and either is exclusive.
  bool ConflictsWith(const Portion& other) const;
  bool Writable(std::string_view attribute) const {
    return mode == Mode::kExclusive && Contains(attribute);
  }
};

// Why something was refused, lost or failed. Errors that a peer or a thread
// can cause are values of this type, never exceptions or asserts.
enum class Reason : std::uint8_t {
  kNone,
  kStaleToken,            // the token is not the session's current one
  kNotHolder,             // the sender does not hold the session
  kStaleIncarnation,      // the message came from a process's predecessor
  kLeaseExpired,          // the holder's lease ran out (B1)
  kForceReleased,         // an administrator released the lock
  kInvalidated,           // an administrator invalidated the session (B6)
  kBusy,                  // try-lock: the session is held by someone else (B5)
  kTimeout,               // a wait ran past its deadline (B5)
  kLockLost,              // the process lost the lock under a thread (B5)
  kCommitOutcomeUnknown,  // lock lost after a commit was resent: it may have applied
  kBadPortion,            // an empty or malformed portion
  kNotInPortion,          // a thread touched an attribute outside its portion
  kNotLocked,             // a thread acted on a session it holds no portion of
  kAlreadyWaiting,        // a thread asked twice for the same session
  kNotPending,            // a cancel or reclaim that matches nothing
  kGracePeriod,           // store restarted: no new grants until holders reclaimed (B7)
  kProcessRestarted,      // the holder came back as a new incarnation
  kQueueFull,             // the session's queue reached its configured bound
  kCancelled,             // the thread withdrew its own request
};

std::string_view ReasonName(Reason reason);

// The splitmix64 finalizer: the mixer of every hash the simulator and model
// checker take, and of session placement (B8).
constexpr std::uint64_t Splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
// B8: the store node of a session, by jump consistent hashing (Lamping and
// Veach) of the session id's splitmix64: every node gets an equal share, and
// growing from n to n + 1 nodes moves only the sessions that go to the new
// node (about 1 / (n + 1) of them), none between old nodes. Deterministic on
// every platform (integer steps and one correctly rounded division).
inline std::uint32_t StoreForSession(SessionId session, std::uint32_t store_count) {
  // One node: the loop below would give 0 too, after a splitmix64 and a
  // division; the agent asks on nearly every input.
  if (store_count == 1) return 0;
  std::uint64_t key = Splitmix64(session);
  std::int64_t bucket = -1;
  std::int64_t next = 0;
  while (next < static_cast<std::int64_t>(store_count)) {
    bucket = next;
    key = key * 2862933555777941757ULL + 1;
    next = static_cast<std::int64_t>(
        static_cast<double>(bucket + 1) *
        (static_cast<double>(1LL << 31) / static_cast<double>((key >> 33) + 1)));
  }
  return static_cast<std::uint32_t>(bucket);
}

// A small ordered set kept as a sorted vector: the part of std::set's
// interface the core uses, without a node allocated and freed per insert
// and erase, or a walk through nodes spread over the heap. Its sets are
// small (a store's timed sessions, a process's held and queued sessions
// at a store, an agent's timed sessions), so inserting and erasing move
// few entries. Iterates, compares and hashes (core/hash.h) as std::set.
template <class T>
class FlatSet {
 public:
  using const_iterator = typename std::vector<T>::const_iterator;
  bool empty() const { return items_.empty(); }
  std::size_t size() const { return items_.size(); }
  const_iterator begin() const { return items_.begin(); }
  const_iterator end() const { return items_.end(); }
  std::size_t count(const T& x) const {
    return std::binary_search(items_.begin(), items_.end(), x) ? 1 : 0;
  }
  void insert(const T& x) {
    auto it = std::lower_bound(items_.begin(), items_.end(), x);
    if (it == items_.end() || *it != x) items_.insert(it, x);
  }
  std::size_t erase(const T& x) {
    auto it = std::lower_bound(items_.begin(), items_.end(), x);
    if (it == items_.end() || *it != x) return 0;
    items_.erase(it);
    return 1;
  }
  void clear() { items_.clear(); }
  bool operator==(const FlatSet&) const = default;

 private:
  std::vector<T> items_;  // sorted, unique
};

// The sessions' timers, earliest first (an agent's and a store's). A
// session's timer mostly moves to the far end (a retry or an idle expiry
// after now).
using SessionTimers = FlatSet<std::pair<Time, SessionId>>;

}  // namespace latchkey::core
