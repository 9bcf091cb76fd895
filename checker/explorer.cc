#include "checker/explorer.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "core/agent.h"
#include "core/assert.h"
#include "core/hash.h"
#include "core/store.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace latchkey::checker {

namespace {

using core::Time;
using nlohmann::json;

enum class Phase : std::uint8_t { kIdle, kWaiting, kHolding, kCommitting, kDone };

struct McThread {
  Phase phase = Phase::kIdle;
  bool entitled = false;    // waiting when its process was granted the session (R7)
  std::uint16_t pc = 0;     // requests finished (the program counter)
  std::uint32_t asked = 0;  // order of the current ask among all asks (bypass check)
  bool operator==(const McThread&) const = default;
};

// The checker's own view, part of the state because later checks depend on it.
struct SessionView {
  core::Token max_token = core::kNoToken;
  core::Token tenure = core::kNoToken;  // current tenure's token, kNoToken when none
  std::uint32_t acked = 0;              // acknowledged counter increments
  std::uint32_t unknown = 0;            // increments whose outcome a thread could not know
  bool operator==(const SessionView&) const = default;
};

// Not zeroed unless value-initialized (Fingerprint{}): scratch arrays of them
// are filled as used.
struct Fingerprint {
  std::uint64_t hi, lo;
  auto operator<=>(const Fingerprint&) const = default;
};

struct FingerprintHash {
  std::size_t operator()(const Fingerprint& f) const { return f.lo; }
};

// Whether nodes may be shared by several threads now (an Explore with more
// than one job is running): their counts of holders are then changed
// atomically. Nodes of one Explore are never seen by another, and a
// one-job Explore's nodes by one thread only, so counting without atomic
// read-modify-writes there is safe whatever other Explores run.
std::atomic<int> parallel_explores{0};

// A value shared by copies until one of them changes it (Mut), with slots
// for what is derived from it: its hash, an extra summary, and up to
// `Keyed` hashes that depend on a key (a store's hash under a renaming of
// the process ids). Safe across the expanding threads: a node is changed
// only through a World that alone holds it; its hash and extra are filled in
// by the thread that made it, before the World is shared (every state is
// fingerprinted before it joins a frontier); the keyed slots are claimed
// with an atomic flag, so two threads may fill them at once. The holders
// are counted in the node (a state is copied for every successor: no
// shared_ptr control block, and no locked instruction with one job).
template <class T, class Extra = std::monostate, std::size_t Keyed = 0>
class Cow {
 public:
  // A Cow may be moved by copying its bytes (see InlineVec).
  static constexpr bool kRelocatable = true;
  // A borrowed Cow names a node without counting itself among its holders:
  // a successor under construction borrows its parent's nodes (the parent
  // outlives it), so that the many successors that are dropped as seen
  // before never touch the counts of nodes that other jobs share. A copy of
  // a borrowed Cow is an ordinary one; Adopt makes a kept successor's own.
  struct BorrowTag {};
  Cow() = default;
  Cow(T value) : bits_(Bits(new Node(std::move(value)))) {}  // NOLINT: wraps the value
  Cow(const Cow& other, BorrowTag) : bits_(other.bits_ | kBorrowed) {}
  Cow(const Cow& other) : bits_(Bits(other.node())) { Ref(node()); }
  Cow(Cow&& other) noexcept : bits_(std::exchange(other.bits_, 0)) {}
  Cow& operator=(const Cow& other) {
    Node* keep = other.node();
    Ref(keep);
    Release();
    bits_ = Bits(keep);
    return *this;
  }
  Cow& operator=(Cow&& other) noexcept {
    if (this != &other) {
      Release();
      bits_ = std::exchange(other.bits_, 0);
    }
    return *this;
  }
  ~Cow() { Release(); }
  void Adopt() {
    if ((bits_ & kBorrowed) == 0) return;
    bits_ &= ~kBorrowed;
    Ref(node());
  }
  const T& operator*() const { return node()->value; }
  const T* operator->() const { return &node()->value; }
  operator const T&() const { return node()->value; }  // NOLINT: reads as the value
  T& Mut() {
    if ((bits_ & kBorrowed) != 0 || node()->refs.load(std::memory_order_acquire) != 1) {
      Node* copy = new Node(node()->value);
      Release();
      bits_ = Bits(copy);
    } else {
      node()->Forget();
    }
    return node()->value;
  }
  // Which node this is: equal ids, equal values.
  const void* Id() const { return node(); }
  template <class F>
  const Fingerprint& HashOnce(F&& hash) const {
    if (!node()->hashed) {
      node()->hash = hash(node()->value);
      node()->hashed = true;
    }
    return node()->hash;
  }
  template <class F>
  const Extra& ExtraOnce(F&& make) const {
    if (!node()->extra_done) {
      node()->extra = make(node()->value);
      node()->extra_done = true;
    }
    return node()->extra;
  }
  template <class F>
  Fingerprint HashKeyed(std::uint64_t key, F&& hash) const {
    for (Slot& slot : node()->slots) {
      if (slot.state.load(std::memory_order_acquire) == kFull && slot.key == key) return slot.value;
    }
    const Fingerprint value = hash(node()->value);
    for (Slot& slot : node()->slots) {
      std::uint8_t empty = kEmpty;
      if (slot.state.compare_exchange_strong(empty, kFilling, std::memory_order_acq_rel)) {
        slot.key = key;
        slot.value = value;
        slot.state.store(kFull, std::memory_order_release);
        break;
      }
    }
    return value;
  }

 private:
  static constexpr std::uint8_t kEmpty = 0, kFilling = 1, kFull = 2;
  struct Slot {
    std::atomic<std::uint8_t> state{kEmpty};
    std::uint64_t key = 0;
    Fingerprint value{};
  };
  struct Node {
    explicit Node(T v) : value(std::move(v)) {}
    void Forget() {
      hashed = false;
      extra_done = false;
      for (Slot& slot : slots) slot.state.store(kEmpty, std::memory_order_relaxed);
    }
    T value;
    Fingerprint hash{};
    bool hashed = false;
    bool extra_done = false;
    std::atomic<std::uint32_t> refs{1};
    Extra extra{};
    std::array<Slot, Keyed> slots;
  };
  static void Ref(Node* node) {
    if (node == nullptr) return;
    if (parallel_explores.load(std::memory_order_relaxed) != 0) {
      node->refs.fetch_add(1, std::memory_order_relaxed);
    } else {
      node->refs.store(node->refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }
  static void Unref(Node* node) {
    if (node == nullptr) return;
    if (parallel_explores.load(std::memory_order_relaxed) != 0) {
      if (node->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete node;
      return;
    }
    const std::uint32_t refs = node->refs.load(std::memory_order_relaxed);
    if (refs == 1) {
      delete node;
    } else {
      node->refs.store(refs - 1, std::memory_order_relaxed);
    }
  }
  static constexpr std::uintptr_t kBorrowed = 1;  // nodes are aligned: bit 0 is free
  static std::uintptr_t Bits(Node* node) { return reinterpret_cast<std::uintptr_t>(node); }
  Node* node() const { return reinterpret_cast<Node*>(bits_ & ~kBorrowed); }
  void Release() {
    if ((bits_ & kBorrowed) == 0) Unref(node());
  }
  std::uintptr_t bits_ = 0;
};

using MessageNode = Cow<core::Envelope>;

// A vector of at most N elements, kept inline: a World is copied for every
// successor, and its fixed-size parts then cost no allocation.
template <class T, std::size_t N>
class InlineVec {
 public:
  InlineVec() = default;
  InlineVec(const InlineVec& other) { CopyFrom(other); }
  InlineVec& operator=(const InlineVec& other) {
    if (this != &other) {
      clear();
      CopyFrom(other);
    }
    return *this;
  }
  InlineVec(InlineVec&& other) noexcept { MoveFrom(other); }
  InlineVec& operator=(InlineVec&& other) noexcept {
    if (this != &other) {
      clear();
      MoveFrom(other);
    }
    return *this;
  }
  ~InlineVec() { clear(); }
  // For Cow elements: borrows `other`'s nodes, or makes borrowed ones own.
  void BorrowFrom(const InlineVec& other) {
    clear();
    for (const T& item : other)
      new (storage_ + size_++ * sizeof(T)) T(item, typename T::BorrowTag{});
  }
  void Adopt() {
    for (T& item : *this) item.Adopt();
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return begin()[i]; }
  const T& operator[](std::size_t i) const { return begin()[i]; }
  T* begin() { return std::launder(reinterpret_cast<T*>(storage_)); }
  T* end() { return begin() + size_; }
  const T* begin() const { return std::launder(reinterpret_cast<const T*>(storage_)); }
  const T* end() const { return begin() + size_; }
  void push_back(T value) {
    LK_ASSERT(size_ < N);
    new (storage_ + size_ * sizeof(T)) T(std::move(value));
    ++size_;
  }
  template <class... Args>
  void emplace_back(Args&&... args) {
    push_back(T(std::forward<Args>(args)...));
  }
  void assign(std::size_t n, const T& value) {
    clear();
    for (std::size_t i = 0; i < n; ++i) push_back(value);
  }
  void clear() {
    std::destroy(begin(), end());
    size_ = 0;
  }
  void erase(std::size_t i) {
    std::move(begin() + i + 1, end(), begin() + i);
    std::destroy_at(end() - 1);
    --size_;
  }

 private:
  // Values that may move by their bytes: trivially copyable ones, and
  // Cow (a pointer to a counted node).
  static constexpr bool kRelocatable = std::is_trivially_copyable_v<T> || requires {
    requires T::kRelocatable;
  };
  // Whole buffers are copied (a fixed size: a few vector moves, no call).
  void CopyFrom(const InlineVec& other) {
    if constexpr (std::is_trivially_copyable_v<T>) {
      std::memcpy(storage_, other.storage_, sizeof(storage_));
    } else {
      std::uninitialized_copy(other.begin(), other.end(), begin());
    }
    size_ = other.size_;
  }
  void MoveFrom(InlineVec& other) {
    if constexpr (kRelocatable) {
      std::memcpy(storage_, other.storage_, sizeof(storage_));
      size_ = std::exchange(other.size_, 0);
    } else {
      for (T& item : other) push_back(std::move(item));
      other.clear();
    }
  }
  alignas(T) unsigned char storage_[N * sizeof(T)];
  std::uint32_t size_ = 0;
};

// A vector kept inline while it has at most N elements (a state is copied
// for every successor), in a heap vector beyond that.
template <class T, std::size_t N>
class SmallVec {
 public:
  std::size_t size() const { return big_ ? heap_.size() : small_.size(); }
  bool empty() const { return size() == 0; }
  T* begin() { return big_ ? heap_.data() : small_.begin(); }
  T* end() { return begin() + size(); }
  const T* begin() const { return big_ ? heap_.data() : small_.begin(); }
  const T* end() const { return begin() + size(); }
  T& operator[](std::size_t i) { return begin()[i]; }
  const T& operator[](std::size_t i) const { return begin()[i]; }
  void BorrowFrom(const SmallVec& other) {
    if (other.big_) {
      *this = other;  // rare: an ordinary copy
    } else {
      heap_.clear();
      big_ = false;
      small_.BorrowFrom(other.small_);
    }
  }
  void Adopt() {
    for (T& item : *this) item.Adopt();
  }
  void push_back(T m) {  // by value: it may be one of ours
    if (!big_ && small_.size() < N) {
      small_.push_back(std::move(m));
      return;
    }
    if (!big_) {
      heap_.reserve(2 * N);
      for (T& each : small_) heap_.push_back(std::move(each));
      small_.clear();
      big_ = true;
    }
    heap_.push_back(std::move(m));
  }
  void assign(std::size_t n, const T& value) {
    small_.clear();
    heap_.clear();
    big_ = false;
    for (std::size_t i = 0; i < n; ++i) push_back(value);
  }
  void erase(const T* pos) {
    const std::size_t i = static_cast<std::size_t>(pos - begin());
    if (big_) {
      heap_.erase(heap_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      small_.erase(i);
    }
  }

 private:
  InlineVec<T, N> small_;
  std::vector<T> heap_;
  bool big_ = false;
};

// The configuration's bounds (LoadExploreConfig and the command line).
constexpr std::size_t kMaxStores = 4;
constexpr std::size_t kMaxProcs = 8;
constexpr std::size_t kMaxSessions = 8;

// What a store keeps about each process, hashed once per store version (the
// symmetry reduction's sort key).
struct StoreSummary {
  std::array<Fingerprint, kMaxProcs> entry{};
  std::array<bool, kMaxProcs> present{};
};

// Hashes of a store (and of a log) are kept for this many renamings.
constexpr std::size_t kRenamingSlots = 2;
using StoreNode = Cow<core::Store, StoreSummary, kRenamingSlots>;
struct LogChunk;
using LogNode = Cow<LogChunk, std::monostate, kRenamingSlots>;
// A store's log: the records of one step after the log before them (shared
// with every state that has that log), so that a step's append costs its own
// records, not a copy of the log.
struct LogChunk {
  LogNode prev;  // none for the empty log
  std::vector<core::Record> records;
  std::size_t size = 0;                          // records in the whole log
  std::array<std::uint64_t, kMaxSessions> a0{};  // each session's counter after the log
};
// The whole log, oldest record first.
std::vector<core::Record> Flatten(const LogNode& log) {
  std::vector<const LogChunk*> chunks;
  for (const LogNode* n = &log; n->Id() != nullptr; n = &(*n)->prev) chunks.push_back(&**n);
  std::vector<core::Record> records;
  records.reserve(log->size);
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it) {
    records.insert(records.end(), (*it)->records.begin(), (*it)->records.end());
  }
  return records;
}
// Whether the log holds the commit (session, token, seq): tokens are never
// reused, not even across store restarts, so this names one commit.
bool LogHolds(const LogNode& log, core::SessionId session, core::Token token, std::uint64_t seq) {
  for (const LogNode* n = &log; n->Id() != nullptr; n = &(*n)->prev) {
    for (const core::Record& r : (*n)->records) {
      const auto* c = std::get_if<core::CommitRecord>(&r);
      if (c != nullptr && c->session == session && c->token == token && c->seq == seq) return true;
    }
  }
  return false;
}

using AgentNode = Cow<core::ProcessAgent>;

struct World {
  Time now = 0;
  // The nodes are shared between a state and its successors until a step
  // changes them (copy on write): a step touches one or two of them.
  InlineVec<StoreNode, kMaxStores> stores;
  InlineVec<LogNode, kMaxStores> logs;  // what each store persisted
  InlineVec<Time, kMaxStores> store_deadline;
  InlineVec<AgentNode, kMaxProcs> agents;
  InlineVec<Time, kMaxProcs> agent_deadline;
  SmallVec<McThread, 16> threads;  // up to 8 processes x 8 threads
  SmallVec<MessageNode, 8> net;    // in flight, in send order
  std::uint8_t crashes = 0, losses = 0, duplicates = 0, restarts = 0;
  std::uint32_t asks = 0;
  SmallVec<SessionView, 2> view;  // up to kMaxSessions

  World() = default;
  World(const World&) = default;
  World(World&&) = default;
  World& operator=(const World&) = default;
  World& operator=(World&&) = default;
  // A copy that borrows `other`'s nodes (see Cow): valid while `other`
  // lives, or after Adopt.
  struct BorrowTag {};
  World(const World& other, BorrowTag)
      : now(other.now),
        store_deadline(other.store_deadline),
        agent_deadline(other.agent_deadline),
        threads(other.threads),
        crashes(other.crashes),
        losses(other.losses),
        duplicates(other.duplicates),
        restarts(other.restarts),
        asks(other.asks),
        view(other.view) {
    // Every field: the nodes borrowed, the rest copied.
    stores.BorrowFrom(other.stores);
    logs.BorrowFrom(other.logs);
    agents.BorrowFrom(other.agents);
    net.BorrowFrom(other.net);
  }
  void Adopt() {
    stores.Adopt();
    logs.Adopt();
    agents.Adopt();
    net.Adopt();
  }
};

// One node's step, as a key: a 128-bit hash of the node's value (the hash
// the fingerprint uses, which already stands for the value), which node it
// is, what it was given, and the time. The core is deterministic and keeps
// no hidden inputs, so equal keys give equal outcomes: a step met again (the
// same agent state gets the same message in many states that differ
// elsewhere) reuses the outcome, and its new node, instead of stepping again.
struct StepKey {
  Fingerprint node{};       // the node's value (AgentHash, StoreHash)
  Fingerprint input{};      // a message's hash (MessageHash), or a thread's (index, pc)
  std::uint64_t what = 0;   // StepKind | node index << 8, or a message's address kinds
  std::uint64_t extra = 0;  // a message's sender id
  Time now = 0;
  bool operator==(const StepKey&) const = default;
};
struct StepKeyHash {
  std::size_t operator()(const StepKey& k) const {
    return k.node.lo ^ (k.input.lo * 0x9E3779B97F4A7C15ULL) ^ (k.what * 0xC2B2AE3D27D4EB4FULL) ^
           (k.extra << 17) ^ (k.now * 0x165667B19E3779F9ULL);
  }
};
enum StepKind : std::uint64_t { kDeliverStep = 1, kAskStep, kFinishStep, kTickStep };

struct AgentOutcome {
  AgentNode agent;
  std::vector<MessageNode> send;
  std::vector<core::ThreadEvent> wake;
  Time next_deadline = core::kNever;
  std::uint32_t newly_held = 0;  // bit s: session s is Held after the step and was not before
};
struct StoreOutcome {
  StoreNode store;
  std::vector<core::Record> persist;
  std::vector<MessageNode> send;
  Time next_deadline = core::kNever;
};

// Per worker: the outcomes of the node steps taken so far, forgotten when
// there are many.
struct Scratch {
  std::unordered_map<StepKey, AgentOutcome, StepKeyHash> agent_steps;
  std::unordered_map<StepKey, StoreOutcome, StepKeyHash> store_steps;
  // A log after a store outcome's records, by the identities of both (the
  // level's logs stay alive until it is done): forgotten after each level.
  struct Append {
    const void* log;
    const StoreOutcome* outcome;
    bool operator==(const Append&) const = default;
  };
  struct AppendHash {
    std::size_t operator()(const Append& a) const {
      return std::hash<const void*>()(a.log) ^ (std::hash<const void*>()(a.outcome) << 1);
    }
  };
  std::unordered_map<Append, LogNode, AppendHash> appends;

  void EndLevel() {
    appends.clear();
    Trim();
  }
  // Between two states' expansions (no outcome is in use then): forget
  // everything once there is too much to keep.
  void Trim() {
    if (agent_steps.size() + store_steps.size() + appends.size() > kMaxRemembered) {
      agent_steps.clear();
      store_steps.clear();
      appends.clear();  // its keys name outcomes
    }
  }
  static constexpr std::size_t kMaxRemembered = std::size_t{1} << 18;
};

// A set of fingerprints, open addressing (a level's new states).
class FingerprintSet {
 public:
  // Whether `f` was new.
  bool Insert(const Fingerprint& f) {
    if (f == Fingerprint{}) return !std::exchange(has_zero_, true);
    if ((size_ + 1) * 2 > slots_.size()) Grow();
    if (!Place(slots_, f)) return false;
    ++size_;
    return true;
  }
  void Reserve(std::size_t n) {
    while (slots_.size() < 2 * n) Grow();
  }
  // Empty, keeping the table.
  void Clear() {
    std::fill(slots_.begin(), slots_.end(), Fingerprint{});
    size_ = 0;
    has_zero_ = false;
  }

 private:
  static bool Place(std::vector<Fingerprint>& slots, const Fingerprint& f) {
    const std::size_t mask = slots.size() - 1;
    for (std::size_t i = f.lo & mask;; i = (i + 1) & mask) {
      if (slots[i] == f) return false;
      if (slots[i] == Fingerprint{}) {
        slots[i] = f;
        return true;
      }
    }
  }
  void Grow() {
    std::vector<Fingerprint> bigger(slots_.empty() ? 64 : 2 * slots_.size());
    for (const Fingerprint& f : slots_) {
      if (f != Fingerprint{}) Place(bigger, f);
    }
    slots_.swap(bigger);
  }
  std::vector<Fingerprint> slots_;
  std::size_t size_ = 0;
  bool has_zero_ = false;
};

// The 128-bit hasher behind every fingerprint (of states, and of the nodes
// whose hashes a state's hash takes in). Words are taken in pairs, each pair
// at its position in the stream: two lanes, each with its own secret words
// per position, add up the folded 128-bit products (x ^ secret) * (y ^
// secret'), as XXH3 does; every 64 words the lanes are avalanched, so blocks
// do not commute. Two words then cost two multiplies, where the two seeded
// splitmix lanes before cost four multiplies per word. See bench/RESULTS.md
// (issue 6, speed round 3) for the collision argument.
constexpr std::size_t kFingerprintBlock = 64;  // words per block (secret words per lane)
struct FingerprintSecrets {
  std::array<std::uint64_t, kFingerprintBlock> a{}, b{};
};
constexpr FingerprintSecrets MakeFingerprintSecrets() {
  FingerprintSecrets s;
  std::uint64_t x = 0x6C61746368ULL;  // "latch"
  for (std::size_t i = 0; i < kFingerprintBlock; ++i) {
    s.a[i] = core::Splitmix64(x += 0x9E3779B97F4A7C15ULL);
    s.b[i] = core::Splitmix64(x += 0x9E3779B97F4A7C15ULL);
  }
  return s;
}
class FingerprintHasher {
 public:
  // Words are buffered and hashed a block at a time: the loop over a block
  // keeps the lanes in registers.
  void Mix(std::uint64_t word) {
    buf_[n_++] = word;
    if (n_ == kBlock) {
      Absorb(kBlock, a_, b_);
      a_ = Avalanche(a_);
      b_ = Avalanche(b_ ^ kSecrets.b[0]);
      words_ += kBlock;
      n_ = 0;
    }
  }
  Fingerprint value() const {
    std::uint64_t a = a_, b = b_;
    const std::uint32_t pairs = n_ & ~1u;
    Absorb(pairs, a, b);
    if (n_ != pairs) {  // the last word alone; the odd count tells it from a pair ending in 0
      a += Fold(buf_[pairs] ^ kSecrets.a[pairs], kSecrets.a[pairs + 1]);
      b += Fold(buf_[pairs] ^ kSecrets.b[pairs], kSecrets.b[pairs + 1]);
    }
    const std::uint64_t words = words_ + n_;
    return {Avalanche(a ^ (words * 0x9E3779B97F4A7C15ULL)),
            Avalanche(b + (words * 0xC2B2AE3D27D4EB4FULL))};
  }

 private:
  static constexpr std::size_t kBlock = kFingerprintBlock;
  static constexpr FingerprintSecrets kSecrets = MakeFingerprintSecrets();
  // The first `count` (even) buffered words, a pair at a time.
  void Absorb(std::uint32_t count, std::uint64_t& a_out, std::uint64_t& b_out) const {
    std::uint64_t a = a_out, b = b_out;
    for (std::uint32_t i = 0; i < count; i += 2) {
      a += Fold(buf_[i] ^ kSecrets.a[i], buf_[i + 1] ^ kSecrets.a[i + 1]);
      b += Fold(buf_[i] ^ kSecrets.b[i], buf_[i + 1] ^ kSecrets.b[i + 1]);
    }
    a_out = a;
    b_out = b;
  }
  static std::uint64_t Fold(std::uint64_t x, std::uint64_t y) {
    const unsigned __int128 p = static_cast<unsigned __int128>(x) * y;
    return static_cast<std::uint64_t>(p) ^ static_cast<std::uint64_t>(p >> 64);
  }
  // XXH3's avalanche (a bijection).
  static std::uint64_t Avalanche(std::uint64_t h) {
    h ^= h >> 37;
    h *= 0x165667919E3779F9ULL;
    return h ^ (h >> 32);
  }
  std::uint64_t a_ = 0, b_ = 0, words_ = 0;
  std::uint32_t n_ = 0;
  std::uint64_t buf_[kBlock];  // NOLINT: filled before it is read
};

using sim::ParseCounter;

// A step taken, or the reason the path ended in a violation.
struct Failure {
  std::string invariant;
  std::string message;
};

// A step taken, in words and as the simulator's script step that replays it.
struct Step {
  std::string text;
  sim::ScriptStep script;
};

Step Labeled(sim::ScriptKind kind, const char* verb, const core::Envelope& e) {
  nlohmann::json message = sim::EnvelopeToJson(e);
  return Step{verb + message.dump(), {kind, 0, 0, message, {}}};
}

class Model {
 public:
  explicit Model(const ExploreConfig& c) : c_(c) {
    LK_ASSERT(c.processes <= kMaxProcesses && c.threads <= kMaxThreadsPerProcess);
    horizon_ = c.horizon_us != 0 ? c.horizon_us : 3 * c.lease_us;
    for (std::uint32_t kind = 0; kind < 3; ++kind) {
      if (c_.attributes >= 2 && kind == 1) {
        portions_[kind] = core::Portion::Of({"a0", "a1"}, core::Mode::kExclusive);
      } else if (c_.attributes >= 2 && kind == 2) {
        portions_[kind] = core::Portion::Of({"a1"}, core::Mode::kShared);
      } else {
        portions_[kind] = core::Portion::Of({"a0"}, core::Mode::kExclusive);
      }
      counts_[kind] = portions_[kind].Writable("a0");
    }
    for (std::uint32_t a = 0; a < 3; ++a) {
      for (std::uint32_t b = 0; b < 3; ++b)
        conflicts_[a][b] = portions_[a].ConflictsWith(portions_[b]);
    }
  }

  World Initial() const {
    World w;
    for (std::uint32_t i = 0; i < c_.stores; ++i) {
      core::StoreConfig sc;
      sc.node_id = i;
      sc.lease_us = c_.lease_us;
      sc.recall_retry_us = c_.recall_retry_us;
      w.stores.emplace_back(core::Store(sc));
      w.logs.emplace_back(LogChunk{});
      w.store_deadline.push_back(core::kNever);
    }
    for (std::uint32_t p = 0; p < c_.processes; ++p) {
      w.agents.emplace_back(core::ProcessAgent(AgentConfigFor(p, 1)));
      w.agent_deadline.push_back(core::kNever);
    }
    w.threads.assign(c_.processes * c_.threads, McThread{});
    for (McThread& t : w.threads) {
      if (c_.requests_per_thread == 0) t.phase = Phase::kDone;
    }
    w.view.assign(c_.sessions, SessionView{});
    for (std::uint32_t i = 0; i < c_.stores; ++i) {
      StoreOutcome out;
      out.store = w.stores[i];
      core::Effects fx = out.store.Mut().Start(0);
      Collect(out, fx);
      Failure ignored;
      ApplyStore(w, i, nullptr, out, nullptr, ignored);
    }
    return w;
  }

  // Enumerates the successors of `w` in a fixed order, calling
  // emit(successor, label, failure) for each; `failure` is set when the step
  // broke an invariant. Returns the number of successors. With `scratch`,
  // node steps met before in the level are not taken again (see StepKey).
  template <class Emit>
  std::uint32_t Successors(const World& w, Emit&& emit, Scratch* scratch = nullptr) const {
    std::uint32_t n = 0;
    auto each = [&](auto&& make, auto&& label) {
      // In a search (with `scratch`) the successor borrows the parent's
      // nodes; the search adopts the ones it keeps while the parent lives.
      World next = scratch != nullptr ? World(w, World::BorrowTag{}) : World(w);
      Failure f;
      make(next, f);
      // The state invariants read only the agents and the time: when a step
      // changed neither, they hold as they held in `w` (every state but the
      // initial one was checked, and there no thread holds anything).
      if (f.invariant.empty() && AgentsOrTimeChanged(w, next)) Check(next, f);
      emit(std::move(next), label, f);
      ++n;
    };
    // 1. Deliveries (FIFO per link unless reordering is on), and their faults.
    for (std::size_t i = 0; i < w.net.size(); ++i) {
      if (!Deliverable(w, i)) continue;
      each([&](World& x, Failure& f) { Deliver(x, i, f, scratch); },
           [&] { return Labeled(sim::ScriptKind::kDeliver, "deliver ", w.net[i]); });
      if (w.losses < c_.losses) {
        each(
            [&](World& x, Failure&) {
              x.net.erase(x.net.begin() + static_cast<std::ptrdiff_t>(i));
              ++x.losses;
            },
            [&] { return Labeled(sim::ScriptKind::kLose, "lose ", w.net[i]); });
      }
      if (w.duplicates < c_.duplicates) {
        each(
            [&](World& x, Failure&) {
              x.net.push_back(x.net[i]);
              ++x.duplicates;
            },
            [&] { return Labeled(sim::ScriptKind::kDuplicate, "duplicate ", w.net[i]); });
      }
    }
    // 2. Threads.
    for (std::uint32_t t = 0; t < w.threads.size(); ++t) {
      const Phase phase = w.threads[t].phase;
      if (phase == Phase::kIdle) {
        each([&](World& x, Failure& f) { Ask(x, t, f, scratch); },
             [&] {
               return Step{ThreadName(t) + " asks " + PortionText(w.threads[t].pc, t),
                           {sim::ScriptKind::kAsk, t, 0, {}, {}}};
             });
      } else if (phase == Phase::kHolding) {
        each([&](World& x, Failure& f) { Finish(x, t, f, scratch); },
             [&] {
               return Step{ThreadName(t) + " writes and commits",
                           {sim::ScriptKind::kCommit, t, 0, {}, {}}};
             });
      }
    }
    // 3. Time passes to the next deadline. Without the lease-expiry fault
    // the world is never slow next to its leases: time passes only when no
    // message is in flight and no thread can take a step.
    const Time next = NextDeadline(w);
    bool all_done = true;
    for (const McThread& t : w.threads) all_done &= t.phase == Phase::kDone;
    if (all_done && w.net.empty()) return n;  // finished: what follows is only heartbeats
    if (next != core::kNever && next <= horizon_ &&
        (c_.lease_expiry || (w.net.empty() && n == 0))) {
      if (c_.symmetry && AsymmetricAdvance(w, next)) asymmetric_ = true;
      each([&](World& x, Failure& f) { Advance(x, next, f, scratch); },
           [&] {
             return Step{"time passes to " + std::to_string(next) + " us",
                         {sim::ScriptKind::kAdvance, 0, next, {}, {}}};
           });
    }
    // 4. Crashes and restarts.
    if (w.crashes < c_.crashes) {
      for (std::uint32_t p = 0; p < c_.processes; ++p) {
        each([&](World& x, Failure& f) { CrashProcess(x, p, f); },
             [&] {
               return Step{"process p" + std::to_string(p + 1) + " crashes and restarts",
                           {sim::ScriptKind::kCrash, p, 0, {}, {}}};
             });
      }
    }
    if (w.restarts < c_.store_restarts) {
      for (std::uint32_t s = 0; s < c_.stores; ++s) {
        each([&](World& x, Failure& f) { RestartStore(x, s, f); },
             [&] {
               return Step{"store s" + std::to_string(s) + " crashes and recovers from its log",
                           {sim::ScriptKind::kRestartStore, s, 0, {}, {}}};
             });
      }
    }
    return n;
  }

  // The program of thread t of every process, as the simulator's workload.
  std::vector<std::vector<sim::ProgramRequest>> Program() const {
    std::vector<std::vector<sim::ProgramRequest>> program(c_.threads);
    for (std::uint32_t t = 0; t < c_.threads; ++t) {
      for (std::uint32_t k = 0; k < c_.requests_per_thread; ++k) {
        program[t].push_back({SessionOf(k, t), PortionOf(k, t)});
      }
    }
    return program;
  }

  // Checks a state with nothing left to do.
  void CheckTerminal(const World& w, Failure& f) const {
    for (std::uint32_t t = 0; t < w.threads.size(); ++t) {
      if (w.threads[t].phase == Phase::kDone) continue;
      const std::uint32_t p = t / c_.threads;
      const core::SessionId s = SessionOf(w.threads[t].pc, t);
      // Stuck: waiting on a session another process holds and never gives up
      // although the store recalled it (no thread of its own uses it) is a
      // deadlock, as the simulator's checker classifies it; anything else
      // that never finishes is a liveness bug.
      bool held_elsewhere = false, stuck_holder = false;
      const core::StoreState& store = w.stores[core::StoreForSession(s, c_.stores)]->state();
      auto tenure = store.sessions.find(s);
      for (std::uint32_t q = 0; q < c_.processes; ++q) {
        auto it = w.agents[q]->state().sessions.find(s);
        if (q == p || it == w.agents[q]->state().sessions.end() ||
            it->second.state != core::LockState::kHeld)
          continue;
        held_elsewhere = true;
        stuck_holder |= tenure != store.sessions.end() && tenure->second.tenure &&
                        tenure->second.tenure->recalled &&
                        tenure->second.tenure->holder == w.agents[q]->config().self &&
                        it->second.holders.empty() && it->second.commits.empty();
      }
      f.invariant =
          stuck_holder && w.threads[t].phase == Phase::kWaiting ? "no_deadlock" : "liveness";
      f.message = ThreadName(t) + " never finished its request " +
                  std::to_string(w.threads[t].pc + 1) + " on session " + std::to_string(s) + " (" +
                  PhaseName(w.threads[t].phase) + ")" +
                  (held_elsewhere ? ", while another process holds the session and stays" : "") +
                  "; time is at " + std::to_string(w.now) + " us, nothing else can happen";
      return;
    }
    // No lost update: each counter as recovered from the log.
    for (std::uint32_t i = 0; i < c_.stores; ++i) {
      core::Store recovered =
          core::Store::Recover(w.stores[i]->config(), Flatten(w.logs[i]), w.now, nullptr);
      for (core::SessionId s = 0; s < c_.sessions; ++s) {
        if (core::StoreForSession(s, c_.stores) != i) continue;
        std::uint64_t value = 0;
        auto it = recovered.state().sessions.find(s);
        if (it != recovered.state().sessions.end()) {
          auto a0 = it->second.attributes.find("a0");
          if (a0 != it->second.attributes.end()) value = ParseCounter(a0->second);
        }
        const SessionView& v = w.view[s];
        if (value < v.acked || value > v.acked + v.unknown) {
          f.invariant = "no_lost_update";
          f.message = "session " + std::to_string(s) + ": counter " + std::to_string(value) +
                      " after recovery, but " + std::to_string(v.acked) +
                      " increments were acknowledged and " + std::to_string(v.unknown) +
                      " had an unknown outcome";
          return;
        }
      }
    }
  }

  // The fingerprint: a 128-bit hash of the state with its process ids renamed
  // into a canonical order when `symmetry` is on (see Canonical), else as is.
  Fingerprint FingerprintOf(const World& w) const { return FingerprintOf(w, c_.symmetry); }
  Fingerprint FingerprintOf(const World& w, bool symmetry) const {
    const std::uint32_t n = c_.processes;
    // Each process's own part: its agent, its threads, and its entries in
    // the stores; none of it names a process id, so it moves with the
    // process under a renaming.
    std::array<std::uint32_t, kMaxThreadsTotal> rank;  // NOLINT: AskRanks sets each thread's
    AskRanks(w, rank);
    // Every node's own hash is filled in here, by the thread that made the
    // state, before the state is shared (the step keys read them).
    for (const StoreNode& store : w.stores) (void)StoreHash(store);
    // Each process's part as words (hashed in place by Hash, in the
    // renamed order): its agent's hash, its deadline, and one word per
    // thread: phase (8 bits), pc (16), entitled (1), rank (32).
    Parts part;                                  // NOLINT: the first n are set
    std::array<Fingerprint, kMaxProcesses> key;  // NOLINT: the first n are set
    for (std::uint32_t p = 0; p < n; ++p) {
      const Fingerprint& agent = AgentHash(w.agents[p]);
      std::uint64_t* words = part[p].data();
      words[0] = agent.hi;
      words[1] = agent.lo;
      words[2] = w.agent_deadline[p];
      std::uint64_t threads = 0;
      for (std::uint32_t i = 0; i < c_.threads; ++i) {
        const std::uint32_t t = p * c_.threads + i;
        const McThread& th = w.threads[t];
        words[3 + i] = static_cast<std::uint64_t>(th.phase) | (std::uint64_t{th.pc} << 8) |
                       (std::uint64_t{th.entitled} << 24) | (std::uint64_t{rank[t]} << 32);
        threads = (threads ^ words[3 + i]) * 0x9E3779B97F4A7C15ULL;
      }
      if (!symmetry) continue;
      // The sort key: the same words, cheaply mixed, and what the stores
      // keep about the process (already hashed with each store), so that
      // ties (and the permutations tried for them) are rare. Any function
      // of the process's own part will do: tied processes are tried in
      // every order.
      key[p] = {agent.hi ^ (words[2] * 0xC2B2AE3D27D4EB4FULL), agent.lo ^ threads};
      for (std::uint32_t i = 0; i < w.stores.size(); ++i) {
        const StoreSummary& summary = w.stores[i].ExtraOnce(Summarize);
        if (!summary.present[p]) continue;
        key[p].hi ^= std::rotl(summary.entry[p].hi, static_cast<int>(i));
        key[p].lo ^= std::rotl(summary.entry[p].lo, static_cast<int>(i));
      }
    }
    Renaming ids{};
    for (std::uint32_t p = 0; p <= n; ++p) ids[p] = p;
    if (!symmetry || n < 2) return Hash(w, ids, part);
    // Canonical order: processes sorted by their keys. Processes with equal
    // keys are tried in every order and the smallest hash kept; when that
    // would take too many tries the order among them is left as found,
    // which only costs reduction (equal states may then get two
    // fingerprints), never soundness.
    std::array<std::uint32_t, kMaxProcesses> order{};
    for (std::uint32_t p = 0; p < n; ++p) order[p] = p;
    // Insertion sort (a few processes; std::sort costs more here).
    for (std::uint32_t i = 1; i < n; ++i) {
      const std::uint32_t x = order[i];
      std::uint32_t j = i;
      // Ties ascending: see the odometer.
      for (; j > 0 && std::tie(key[x], x) < std::tie(key[order[j - 1]], order[j - 1]); --j)
        order[j] = order[j - 1];
      order[j] = x;
    }
    std::uint64_t tries = 1;
    std::array<std::pair<std::uint32_t, std::uint32_t>, kMaxProcesses> ties{};  // [from, to)
    std::uint32_t tie_count = 0;
    for (std::uint32_t i = 0; i < n;) {
      std::uint32_t j = i + 1;
      while (j < n && key[order[j]] == key[order[i]]) ++j;
      if (j - i > 1) {
        ties[tie_count++] = {i, j};
        for (std::uint32_t k = 2; k <= j - i; ++k) tries *= k;
      }
      i = j;
    }
    auto rename = [&] {
      for (std::uint32_t i = 0; i < n; ++i) ids[order[i] + 1] = i + 1;
    };
    rename();
    if (tie_count == 0 || tries > kMaxTies) return Hash(w, ids, part);
    // Every order within each group of ties: odometer over the groups.
    Fingerprint best = Hash(w, ids, part);
    for (;;) {
      std::uint32_t g = 0;
      for (; g < tie_count; ++g) {
        auto [from, to] = ties[g];
        if (std::next_permutation(order.begin() + from, order.begin() + to)) break;
        // Wrapped around to sorted: carry into the next group.
      }
      if (g == tie_count) break;
      rename();
      best = std::min(best, Hash(w, ids, part));
    }
    return best;
  }

  // Whether time passing to `to` could end two leases at one store that
  // both hold tenures: the store then handles them in process-id order
  // (B1), the one place where the core's behaviour depends on process ids,
  // so a state and its renaming may step to states that are not renamings
  // of each other. Explore starts over without symmetry when this can
  // happen.
  bool AsymmetricAdvance(const World& w, Time to) const {
    for (const auto& store : w.stores) {
      int holders = 0;
      for (const auto& [id, p] : store->state().processes) {
        // Processes that only queue do not count: RunDue drops every expired
        // process's queued requests before it ends any tenure, and a request
        // queues only behind a tenure, so those drops grant nothing.
        holders += !p.held.empty() && p.lease_until <= to;
      }
      if (holders >= 2) return true;
    }
    return false;
  }

 private:
  static constexpr std::uint32_t kMaxProcesses = 8;
  static constexpr std::uint32_t kMaxThreadsTotal = 64;
  static constexpr std::uint32_t kMaxThreadsPerProcess = 8;
  static constexpr std::uint64_t kMaxTies = 24;
  // ids[old process id] = new process id (ids are 1-based).
  using Renaming = std::array<std::uint64_t, kMaxProcesses + 1>;
  // Each process's part of the state as words (see FingerprintOf).
  using Parts = std::array<std::array<std::uint64_t, 3 + kMaxThreadsPerProcess>, kMaxProcesses>;

  using Hasher2 = FingerprintHasher;

  // Asks are ordered only relative to each other: rank the waiting ones.
  void AskRanks(const World& w, std::array<std::uint32_t, kMaxThreadsTotal>& rank) const {
    std::array<std::uint32_t, kMaxThreadsTotal> asks;  // NOLINT: the first `waiting` are set
    std::uint32_t waiting = 0;
    for (std::uint32_t t = 0; t < w.threads.size(); ++t) {
      rank[t] = 0;
      if (w.threads[t].phase == Phase::kWaiting) asks[waiting++] = w.threads[t].asked;
    }
    if (waiting < 2) return;
    const bool few = waiting <= 8;  // then counting beats sorting
    if (!few) std::sort(asks.begin(), asks.begin() + waiting);
    for (std::uint32_t t = 0; t < w.threads.size(); ++t) {
      if (w.threads[t].phase != Phase::kWaiting) continue;
      const std::uint32_t mine = w.threads[t].asked;
      if (few) {
        for (std::uint32_t i = 0; i < waiting; ++i) rank[t] += asks[i] < mine;
      } else {
        rank[t] = static_cast<std::uint32_t>(
            std::lower_bound(asks.begin(), asks.begin() + waiting, mine) - asks.begin());
      }
    }
  }

  static core::Address Renamed(core::Address a, const Renaming& ids) {
    if (a.kind == core::NodeKind::kProcess && a.id < ids.size()) a.id = ids[a.id];
    return a;
  }

  // The whole state, with process p's part at place ids[p + 1] - 1 and every
  // process id renamed by `ids`.
  Fingerprint Hash(const World& w, const Renaming& ids, const Parts& part) const {
    Hasher2 h;
    h.Mix(w.now);
    h.Mix(std::uint64_t{w.crashes} | (std::uint64_t{w.losses} << 8) |
          (std::uint64_t{w.duplicates} << 16) | (std::uint64_t{w.restarts} << 24));
    // Each store's (and log's) hash under this renaming is kept with it.
    std::uint64_t renaming = 0;
    bool identity = true;
    for (std::uint32_t p = 1; p <= c_.processes; ++p) {
      renaming |= ids[p] << (4 * (p - 1));
      identity &= ids[p] == p;
    }
    for (std::uint32_t i = 0; i < w.stores.size(); ++i) {
      const Fingerprint store = identity
                                    ? StoreHash(w.stores[i])
                                    : w.stores[i].HashKeyed(renaming, [&](const core::Store& st) {
                                        Hasher2 sh;
                                        HashStore(sh, st.state(), ids);
                                        return sh.value();
                                      });
      core::HashFields(h, store.hi, store.lo, w.store_deadline[i]);
      // The log matters only to a store that may still restart.
      if (c_.store_restarts > w.restarts) {
        const Fingerprint log = LogHash(w.logs[i], renaming, ids);
        core::HashFields(h, log.hi, log.lo);
      }
    }
    const std::uint32_t n = c_.processes;
    std::array<std::uint32_t, kMaxProcesses> placed;  // NOLINT: the first n are set
    for (std::uint32_t p = 0; p < n; ++p) placed[ids[p + 1] - 1] = p;
    for (std::uint32_t q = 0; q < n; ++q) {
      const std::uint64_t* words = part[placed[q]].data();
      for (std::uint32_t i = 0; i < 3 + c_.threads; ++i) h.Mix(words[i]);
    }
    for (const SessionView& v : w.view) {
      core::HashFields(h, v.max_token, v.tenure, v.acked | (std::uint64_t{v.unknown} << 32));
    }
    // The network: a bag when any message may arrive next, else per-link
    // queues (the interleaving of different links' sends does not matter).
    struct Keyed {
      std::uint64_t link;
      Fingerprint m;
    };
    constexpr std::size_t kOnStack = 16;
    Keyed on_stack[kOnStack];  // NOLINT: the first `count` are set
    std::vector<Keyed> on_heap;
    const std::size_t count = w.net.size();
    if (count > kOnStack) on_heap.resize(count);
    Keyed* keyed = count > kOnStack ? on_heap.data() : on_stack;
    for (std::size_t i = 0; i < count; ++i) {
      // The message and the incarnations: the same under any renaming.
      const MessageNode& e = w.net[i];
      keyed[i] = {LinkKey(Renamed(e->from, ids), Renamed(e->to, ids)), MessageHash(e)};
    }
    // Insertion sort, stable (few messages are in flight).
    auto before = [&](const Keyed& a, const Keyed& b) {
      return c_.reorder ? std::tie(a.link, a.m) < std::tie(b.link, b.m) : a.link < b.link;
    };
    for (std::size_t i = 1; i < count; ++i) {
      const Keyed k = keyed[i];
      std::size_t j = i;
      for (; j > 0 && before(k, keyed[j - 1]); --j) keyed[j] = keyed[j - 1];
      keyed[j] = k;
    }
    h.Mix(count);
    for (std::size_t i = 0; i < count; ++i)
      core::HashFields(h, keyed[i].link, keyed[i].m.hi, keyed[i].m.lo);
    return h.value();
  }

  // A log's hash under a renaming (kept with each chunk): a chain over its
  // records, each hashed with the hash of the records before it, so that it
  // depends on the records only, not on how steps cut them into chunks.
  static Fingerprint LogHash(const LogNode& log, std::uint64_t renaming, const Renaming& ids) {
    return log.HashKeyed(renaming, [&](const LogChunk& chunk) {
      Fingerprint h =
          chunk.prev.Id() != nullptr ? LogHash(chunk.prev, renaming, ids) : Hasher2{}.value();
      for (const core::Record& r : chunk.records) {
        Hasher2 lh;
        core::HashFields(lh, h.hi, h.lo);
        if (const auto* g = std::get_if<core::GrantRecord>(&r)) {
          core::GrantRecord renamed = *g;
          renamed.holder.id = ids[renamed.holder.id];
          lh.Mix(r.index());
          core::HashValue(lh, renamed);
        } else {
          core::HashValue(lh, r);
        }
        h = lh.value();
      }
      return h;
    });
  }

  // What each store keeps about each process, hashed (no process ids in it).
  static StoreSummary Summarize(const core::Store& store) {
    StoreSummary summary;
    for (const auto& [pid, entry] : store.state().processes) {
      if (pid < 1 || pid > kMaxProcs) continue;
      Hasher2 eh;
      core::HashValue(eh, entry);
      summary.entry[pid - 1] = eh.value();
      summary.present[pid - 1] = true;
    }
    return summary;
  }

  // core::HashValue(StoreState) with process ids renamed; the maps keyed by
  // process id are hashed in the order of the new ids.
  static void HashStore(Hasher2& h, const core::StoreState& s, const Renaming& ids) {
    core::HashFields(h, s.epoch, s.last_token, s.grace_until, s.in_grace);
    h.Mix(s.sessions.size());
    std::array<std::pair<std::uint64_t, const core::RequestMark*>, kMaxProcesses> marks{};
    for (const auto& [id, session] : s.sessions) {
      core::HashFields(h, id, session.attributes, session.version);
      h.Mix(session.tenure.has_value());
      if (session.tenure) {
        core::Tenure t = *session.tenure;
        t.holder.id = ids[t.holder.id];
        core::HashValue(h, t);
      }
      h.Mix(session.queue.size());
      for (const core::Waiter& waiter : session.queue) {
        core::HashFields(h, ids[waiter.process.id], waiter.process.incarnation, waiter.request_id,
                         waiter.buffered_at, waiter.cached);
      }
      std::size_t count = 0;
      for (const auto& [pid, mark] : session.last_request) marks[count++] = {ids[pid], &mark};
      std::sort(marks.begin(), marks.begin() + static_cast<std::ptrdiff_t>(count));
      h.Mix(count);
      for (std::size_t i = 0; i < count; ++i) core::HashFields(h, marks[i].first, *marks[i].second);
      core::HashFields(h, session.last_used, session.timer);
    }
    std::array<std::pair<std::uint64_t, const core::ProcessEntry*>, kMaxProcesses> entries{};
    std::size_t count = 0;
    for (const auto& [pid, entry] : s.processes) entries[count++] = {ids[pid], &entry};
    std::sort(entries.begin(), entries.begin() + static_cast<std::ptrdiff_t>(count));
    h.Mix(count);
    for (std::size_t i = 0; i < count; ++i)
      core::HashFields(h, entries[i].first, *entries[i].second);
  }

 public:
  std::string Describe(const World& w) const {
    std::ostringstream out;
    out << "time " << w.now << " us\n";
    for (std::uint32_t i = 0; i < w.stores.size(); ++i) {
      const core::StoreState& s = w.stores[i]->state();
      out << "  store s" << i << " epoch " << s.epoch << " last_token " << s.last_token << "\n";
      for (const auto& [id, session] : s.sessions) {
        out << "    session " << id << ": ";
        if (session.tenure) {
          out << "held by p" << session.tenure->holder.id << "#"
              << session.tenure->holder.incarnation << " token " << session.tenure->token;
        } else {
          out << "free";
        }
        out << ", queue [";
        for (const core::Waiter& q : session.queue) out << " p" << q.process.id;
        out << " ]";
        auto a0 = session.attributes.find("a0");
        if (a0 != session.attributes.end()) out << ", a0=" << a0->second;
        out << "\n";
      }
    }
    for (std::uint32_t p = 0; p < w.agents.size(); ++p) {
      const core::ProcessAgent& a = *w.agents[p];
      out << "  p" << p + 1 << "#" << a.config().self.incarnation << ":";
      for (const auto& [id, s] : a.state().sessions) {
        out << " session " << id << " " << core::LockStateName(s.state) << " token " << s.token
            << (a.Trusts(w.now, id) ? " trusted" : " untrusted") << " holders " << s.holders.size()
            << " waiters " << s.waiters.size() << ";";
      }
      out << "\n";
    }
    for (std::uint32_t t = 0; t < w.threads.size(); ++t) {
      out << "  " << ThreadName(t) << " " << PhaseName(w.threads[t].phase) << ", request "
          << w.threads[t].pc + 1 << "\n";
    }
    out << "  in flight:";
    for (const core::Envelope& e : w.net) out << "\n    " << sim::EnvelopeToJson(e).dump();
    out << "\n";
    return out.str();
  }

 private:
  core::AgentConfig AgentConfigFor(std::uint32_t p, std::uint64_t incarnation) const {
    core::AgentConfig ac;
    ac.self = {p + 1, incarnation};
    ac.store_count = c_.stores;
    ac.lease_us = c_.lease_us;
    ac.drift_ppm = 0;  // one shared clock
    ac.expiry_margin_us = c_.expiry_margin_us;
    ac.retry_us = c_.retry_us;
    ac.idle_release_us = c_.idle_release_us;
    ac.release_when_contended = c_.release_when_contended;
    ac.heartbeat_us = c_.lease_us / 2;  // fewer instants to explore; still renews in time
    return ac;
  }

  // The program: thread t's request k, the same in every process.
  core::SessionId SessionOf(std::uint32_t k, std::uint32_t t) const {
    return (t % c_.threads + k) % c_.sessions;
  }
  std::uint32_t KindOf(std::uint32_t k, std::uint32_t t) const { return (t % c_.threads + k) % 3; }
  const core::Portion& PortionOf(std::uint32_t k, std::uint32_t t) const {
    return portions_[KindOf(k, t)];
  }
  // Whether the request increments the counter a0.
  bool Counts(std::uint32_t k, std::uint32_t t) const { return counts_[KindOf(k, t)]; }
  std::string PortionText(std::uint32_t k, std::uint32_t t) const {
    return sim::PortionToJson(PortionOf(k, t)).dump() + " of session " +
           std::to_string(SessionOf(k, t));
  }
  std::string ThreadName(std::uint32_t t) const {
    return "p" + std::to_string(t / c_.threads + 1) + ".t" + std::to_string(t % c_.threads);
  }
  static const char* PhaseName(Phase p) {
    switch (p) {
      case Phase::kIdle:
        return "idle";
      case Phase::kWaiting:
        return "waiting";
      case Phase::kHolding:
        return "holding";
      case Phase::kCommitting:
        return "committing";
      case Phase::kDone:
        return "done";
    }
    return "?";
  }

  static std::uint64_t LinkKey(const core::Address& from, const core::Address& to) {
    return (static_cast<std::uint64_t>(from.kind) << 56) ^ (from.id << 40) ^
           (static_cast<std::uint64_t>(to.kind) << 32) ^ to.id;
  }
  static std::uint64_t LinkKey(const core::Envelope& e) { return LinkKey(e.from, e.to); }
  bool Deliverable(const World& w, std::size_t i) const {
    if (c_.reorder) return true;
    const std::uint64_t link = LinkKey(w.net[i]);
    for (std::size_t j = 0; j < i; ++j) {
      if (LinkKey(w.net[j]) == link) return false;  // an older message on the link goes first
    }
    return true;
  }
  Time NextDeadline(const World& w) const {
    Time next = core::kNever;
    for (Time d : w.store_deadline) next = std::min(next, d);
    for (Time d : w.agent_deadline) next = std::min(next, d);
    return next == core::kNever ? next : std::max(next, w.now);
  }

  // `w` is a successor being built: its parent holds every node it started
  // with, so the step borrows them (see Cow).
  void Deliver(World& w, std::size_t i, Failure& f, Scratch* scratch) const {
    const MessageNode e(w.net[i], MessageNode::BorrowTag{});
    w.net.erase(w.net.begin() + static_cast<std::ptrdiff_t>(i));
    const Time now = w.now;
    StepKey key{};
    if (scratch != nullptr) {
      const Fingerprint& m = MessageHash(e);
      key.input = m;
      key.what = kDeliverStep | (static_cast<std::uint64_t>(e->from.kind) << 8) |
                 (static_cast<std::uint64_t>(e->to.kind) << 16) | (e->to.id << 24);
      key.extra = e->from.id;
      key.now = now;
    }
    if (e->to.kind == core::NodeKind::kStore) {
      const std::uint32_t s = static_cast<std::uint32_t>(e->to.id);
      const StoreNode before(w.stores[s], StoreNode::BorrowTag{});
      StoreOutcome local;
      const StoreOutcome& out =
          StoreStep(scratch, before, key, local,
                    [&](core::Store& store, core::Effects& fx) { store.OnMessage(now, *e, fx); });
      ApplyStore(w, s, &*before, out, scratch, f);
    } else {
      const std::uint32_t p = static_cast<std::uint32_t>(e->to.id - 1);
      AgentOutcome local;
      const AgentOutcome& out =
          AgentStep(scratch, w.agents[p], key, local,
                    [&](core::ProcessAgent& a, core::Effects& fx) { a.OnMessage(now, *e, fx); });
      ApplyAgent(w, p, out, f, /*progress=*/true);
    }
  }

  void Ask(World& w, std::uint32_t t, Failure& f, Scratch* scratch) const {
    McThread& th = w.threads[t];
    th.phase = Phase::kWaiting;
    th.asked = ++w.asks;
    const std::uint32_t p = t / c_.threads;
    const std::uint32_t pc = th.pc;
    const Time now = w.now;
    AgentOutcome local;
    const AgentOutcome& out = AgentStep(
        scratch, w.agents[p], StepKey{{}, {t, pc}, kAskStep, 0, now}, local,
        [&](core::ProcessAgent& a, core::Effects& fx) {
          a.OnThreadAsk(now, t % c_.threads, SessionOf(pc, t), PortionOf(pc, t), core::kNever,
                        /*try_only=*/false, fx);
        });
    ApplyAgent(w, p, out, f, /*progress=*/false);
  }

  void Finish(World& w, std::uint32_t t, Failure& f, Scratch* scratch) const {
    McThread& th = w.threads[t];
    const std::uint32_t p = t / c_.threads;
    const core::ThreadId id = t % c_.threads;
    const std::uint32_t pc = th.pc;
    const core::SessionId s = SessionOf(pc, t);
    const Time now = w.now;
    th.phase = Phase::kCommitting;
    AgentOutcome local;
    const AgentOutcome& out = AgentStep(
        scratch, w.agents[p], StepKey{{}, {t, pc}, kFinishStep, 0, now}, local,
        [&](core::ProcessAgent& a, core::Effects& fx) {
          if (Counts(pc, t)) {
            // The counter workload's read-modify-write: a lost update shows in its value.
            core::ReadResult r = a.Read(id, s, "a0");
            if (r.reason == core::Reason::kNone) {
              (void)a.Write(id, s, "a0", std::to_string(ParseCounter(r.value.value_or("")) + 1));
            }
          }
          a.OnThreadFinish(now, id, s, /*commit=*/true, fx);
        });
    ApplyAgent(w, p, out, f, /*progress=*/false);
  }

  void Advance(World& w, Time to, Failure& f, Scratch* scratch) const {
    w.now = to;
    for (std::uint32_t i = 0; i < w.stores.size() && f.invariant.empty(); ++i) {
      const StepKey key{{}, {}, kTickStep | (std::uint64_t{i} << 8), 0, to};
      if (w.store_deadline[i] > to) continue;
      const StoreNode before = w.stores[i];
      StoreOutcome local;
      const StoreOutcome& out =
          StoreStep(scratch, before, key, local,
                    [&](core::Store& store, core::Effects& fx) { store.OnTick(to, fx); });
      ApplyStore(w, i, &*before, out, scratch, f);
    }
    for (std::uint32_t p = 0; p < w.agents.size() && f.invariant.empty(); ++p) {
      if (w.agent_deadline[p] > to) continue;
      const StepKey key{{}, {}, kTickStep | (std::uint64_t{p} << 8), 0, to};
      AgentOutcome local;
      const AgentOutcome& out =
          AgentStep(scratch, w.agents[p], key, local,
                    [&](core::ProcessAgent& a, core::Effects& fx) { a.OnTick(to, fx); });
      ApplyAgent(w, p, out, f, /*progress=*/true);
    }
  }

  void CrashProcess(World& w, std::uint32_t p, Failure& f) const {
    ++w.crashes;
    const std::uint64_t incarnation = w.agents[p]->config().self.incarnation + 1;
    for (std::uint32_t t = p * c_.threads; t < (p + 1) * c_.threads; ++t) {
      McThread& th = w.threads[t];
      if (th.phase == Phase::kWaiting || th.phase == Phase::kHolding ||
          th.phase == Phase::kCommitting) {
        // The request is cut; a commit in flight may or may not apply.
        if (th.phase == Phase::kCommitting && Counts(th.pc, t))
          ++w.view[SessionOf(th.pc, t)].unknown;
        NextRequest(th);
      }
    }
    w.agents[p] = core::ProcessAgent(AgentConfigFor(p, incarnation));
    w.agent_deadline[p] = core::kNever;
    (void)f;
  }

  void RestartStore(World& w, std::uint32_t s, Failure& f) const {
    ++w.restarts;
    core::Effects fx;
    StoreOutcome out;
    out.store = core::Store::Recover(w.stores[s]->config(), Flatten(w.logs[s]), w.now, &fx);
    Collect(out, fx);
    ApplyStore(w, s, nullptr, out, nullptr, f);
  }

  void NextRequest(McThread& th) const {
    th.entitled = false;
    ++th.pc;
    th.phase = th.pc >= c_.requests_per_thread ? Phase::kDone : Phase::kIdle;
  }

  static void Collect(StoreOutcome& out, core::Effects& fx) {
    out.persist = std::move(fx.persist);
    out.send.reserve(fx.send.size());
    for (core::Envelope& e : fx.send) out.send.emplace_back(std::move(e));
    out.next_deadline = fx.next_deadline;
  }

  // A store's step on `node`: the outcome met before in this level (with
  // `scratch`), else `step` on a copy of the node, kept in `scratch` or
  // `local`.
  template <class F>
  const StoreOutcome& StoreStep(Scratch* scratch, const StoreNode& node, StepKey key,
                                StoreOutcome& local, F&& step) const {
    if (scratch != nullptr) {
      key.node = StoreHash(node);
      auto it = scratch->store_steps.find(key);
      if (it != scratch->store_steps.end()) return it->second;
    }
    StoreOutcome out;
    out.store = node;
    core::Effects fx;
    step(out.store.Mut(), fx);
    Collect(out, fx);
    if (scratch == nullptr) {
      local = std::move(out);
      return local;
    }
    return scratch->store_steps.emplace(key, std::move(out)).first->second;
  }

  // The same for an agent's step.
  template <class F>
  const AgentOutcome& AgentStep(Scratch* scratch, const AgentNode& node, StepKey key,
                                AgentOutcome& local, F&& step) const {
    if (scratch != nullptr) {
      key.node = AgentHash(node);
      auto it = scratch->agent_steps.find(key);
      if (it != scratch->agent_steps.end()) return it->second;
    }
    AgentOutcome out;
    out.agent = node;
    core::Effects fx;
    step(out.agent.Mut(), fx);
    out.send.reserve(fx.send.size());
    for (core::Envelope& e : fx.send) out.send.emplace_back(std::move(e));
    out.wake = std::move(fx.wake);
    out.next_deadline = fx.next_deadline;
    const LockStateArray before = LockStates(*node), after = LockStates(*out.agent);
    for (core::SessionId s = 0; s < c_.sessions; ++s) {
      if (before[s] != core::LockState::kHeld && after[s] == core::LockState::kHeld)
        out.newly_held |= 1u << s;
    }
    if (scratch == nullptr) {
      local = std::move(out);
      return local;
    }
    return scratch->agent_steps.emplace(key, std::move(out)).first->second;
  }

  // Whether the store had `p` in session s's queue of buffered requests.
  static bool Queued(const core::Store& store, core::SessionId s, const core::ProcessRef& p) {
    auto it = store.state().sessions.find(s);
    if (it == store.state().sessions.end()) return false;
    for (const core::Waiter& waiter : it->second.queue) {
      if (waiter.process == p) return true;
    }
    return false;
  }

  // A store's effects: persist, then send; the checker's view is updated
  // and checked on the way (token validity, queue order, durability).
  // `before` is the store before the step (nullptr: nothing to compare).
  void ApplyStore(World& w, std::uint32_t s, const core::Store* before, const StoreOutcome& out,
                  Scratch* scratch, Failure& f) const {
    const LogNode old_log = w.logs[s];
    const LogChunk& log = *old_log;
    w.stores[s] = out.store;
    const core::Store& after = *out.store;
    for (std::size_t i = 0; i < out.persist.size(); ++i) {
      const core::Record& r = out.persist[i];
      if (const auto* g = std::get_if<core::GrantRecord>(&r)) {
        // Queue order (R4, R5): a buffered request is granted only when every
        // request buffered before it was granted or withdrawn.
        if (before != nullptr && f.invariant.empty()) {
          auto q = before->state().sessions.find(g->session);
          if (q != before->state().sessions.end() && !q->second.queue.empty()) {
            const std::deque<core::Waiter>& order = q->second.queue;
            auto pos = std::find_if(order.begin(), order.end(), [&](const core::Waiter& waiter) {
              return waiter.process == g->holder;
            });
            for (auto it = order.begin(); it != order.end() && it < pos; ++it) {
              if (Queued(after, g->session, it->process)) {
                f = {"queue_order", "store s" + std::to_string(s) + " granted session " +
                                        std::to_string(g->session) + " to p" +
                                        std::to_string(g->holder.id) + " ahead of p" +
                                        std::to_string(it->process.id) +
                                        ", buffered before it (R4, R5)"};
                break;
              }
            }
          }
        }
        SessionView& v = w.view[g->session];
        if (g->token <= v.max_token && f.invariant.empty()) {
          f = {"token_validity", "store s" + std::to_string(s) + " granted session " +
                                     std::to_string(g->session) + " token " +
                                     std::to_string(g->token) + ", not above the highest so far (" +
                                     std::to_string(v.max_token) + ") (B2)"};
        }
        v.max_token = std::max(v.max_token, g->token);
        v.tenure = g->token;
      } else if (const auto* e = std::get_if<core::TenureEndRecord>(&r)) {
        if (w.view[e->session].tenure == e->token) w.view[e->session].tenure = core::kNoToken;
      } else if (const auto* c = std::get_if<core::CommitRecord>(&r)) {
        const SessionView& v = w.view[c->session];
        if (c->token != v.tenure && f.invariant.empty()) {
          f = {"token_validity", "store s" + std::to_string(s) + " applied a commit to session " +
                                     std::to_string(c->session) + " with token " +
                                     std::to_string(c->token) + " but the current tenure is " +
                                     std::to_string(v.tenure) + " (R1)"};
        }
        for (const core::AttributeWrite& aw : c->writes) {
          if (aw.name != "a0" || aw.erase || !f.invariant.empty()) continue;
          // Serializability of the counter: each write follows the one before
          // (the log holds everything up to, not including, this commit).
          std::uint64_t last = log.a0[c->session];
          for (std::size_t j = 0; j < i; ++j) CounterAfter(out.persist[j], c->session, last);
          if (ParseCounter(aw.value) != last + 1) {
            f = {"serializability",
                 "session " + std::to_string(c->session) + ": a commit with token " +
                     std::to_string(c->token) + " wrote a0=" + aw.value +
                     " over a0=" + std::to_string(last) + ": it read a stale value"};
          }
        }
      }
    }
    if (!out.persist.empty()) w.logs[s] = Appended(scratch, old_log, out);
    for (const MessageNode& e : out.send) {
      if (const auto* a = std::get_if<core::CommitAck>(&e->message); a && f.invariant.empty()) {
        bool durable = false;
        auto made = [&](const core::Record& r) {
          const auto* c = std::get_if<core::CommitRecord>(&r);
          if (c && c->session == a->session && c->token == a->token && c->seq == a->seq)
            durable = true;
        };
        for (const core::Record& r : out.persist) made(r);
        for (const LogNode* n = &old_log; !durable && n->Id() != nullptr; n = &(*n)->prev) {
          for (const core::Record& r : (*n)->records) made(r);
        }
        if (!durable) {
          f = {"no_lost_update", "store s" + std::to_string(s) + " acknowledged commit token " +
                                     std::to_string(a->token) + " seq " + std::to_string(a->seq) +
                                     " of session " + std::to_string(a->session) +
                                     " that it never made durable (B3)"};
        }
      }
      w.net.push_back(e);
    }
    w.store_deadline[s] = out.next_deadline;
  }

  // `log` with the outcome's records appended; with `scratch` (where `out`
  // then lives) the same append is made once per level.
  static LogNode Appended(Scratch* scratch, const LogNode& log, const StoreOutcome& out) {
    auto append = [&] {
      LogChunk next;
      next.prev = log;
      next.records = out.persist;
      next.size = log->size + out.persist.size();
      next.a0 = log->a0;
      for (const core::Record& r : out.persist) {
        for (core::SessionId s = 0; s < kMaxSessions; ++s) CounterAfter(r, s, next.a0[s]);
      }
      return LogNode(std::move(next));
    };
    if (scratch == nullptr) return append();
    const Scratch::Append key{log.Id(), &out};
    auto it = scratch->appends.find(key);
    if (it != scratch->appends.end()) return it->second;
    return scratch->appends.emplace(key, append()).first->second;
  }

  // The counter a0 of session s after the record `r`, given its value before.
  static void CounterAfter(const core::Record& r, core::SessionId s, std::uint64_t& value) {
    if (const auto* c = std::get_if<core::CommitRecord>(&r); c && c->session == s) {
      if (c->clear_first) value = 0;
      for (const core::AttributeWrite& aw : c->writes) {
        if (aw.name == "a0") value = aw.erase ? 0 : ParseCounter(aw.value);
      }
    } else if (const auto* d = std::get_if<core::SessionDroppedRecord>(&r); d && d->session == s) {
      value = 0;
    }
  }

  using LockStateArray = std::array<core::LockState, kMaxSessions>;
  LockStateArray LockStates(const core::ProcessAgent& agent) const {
    LockStateArray states{};
    states.fill(core::LockState::kUnlocked);
    for (const auto& [id, s] : agent.state().sessions) {
      if (id < c_.sessions) states[id] = s.state;
    }
    return states;
  }

  // An agent's step: its new node, its sends and wake-ups; with `progress`,
  // the Progress rule (R7) is followed across it.
  void ApplyAgent(World& w, std::uint32_t p, const AgentOutcome& out, Failure& f,
                  bool progress) const {
    // The Progress rule (R7): threads waiting when the process is granted a
    // session are served before the process gives it up, recalled or not.
    if (progress && out.newly_held != 0) {
      for (core::SessionId s = 0; s < c_.sessions; ++s) {
        if ((out.newly_held & (1u << s)) == 0) continue;
        for (std::uint32_t t = p * c_.threads; t < (p + 1) * c_.threads; ++t) {
          if (w.threads[t].phase == Phase::kWaiting && SessionOf(w.threads[t].pc, t) == s)
            w.threads[t].entitled = true;
        }
      }
    }
    CheckLostCommits(w, p, out, f);
    w.agents[p] = out.agent;
    for (const MessageNode& e : out.send) {
      const auto* release = std::get_if<core::Release>(&e->message);
      if (release == nullptr || !f.invariant.empty()) continue;
      // Only a lock given up on purpose (recall, idle): a lost lock (lease,
      // revocation) re-requests for its waiters instead.
      auto session = w.agents[p]->state().sessions.find(release->session);
      if (session == w.agents[p]->state().sessions.end() ||
          session->second.state != core::LockState::kReleasing)
        continue;
      for (std::uint32_t t = p * c_.threads; t < (p + 1) * c_.threads; ++t) {
        const McThread& th = w.threads[t];
        bool woken = false;  // answered in this very step: not left behind
        for (const core::ThreadEvent& ev : out.wake) woken |= ev.thread == t % c_.threads;
        if (!woken && th.entitled && th.phase == Phase::kWaiting &&
            SessionOf(th.pc, t) == release->session) {
          f = {"liveness", "p" + std::to_string(p + 1) + " released session " +
                               std::to_string(release->session) + " while " + ThreadName(t) +
                               ", waiting since before the grant, was never served (the "
                               "Progress rule, R7): requests can starve"};
        }
      }
    }
    for (const MessageNode& e : out.send) w.net.push_back(e);
    w.agent_deadline[p] = out.next_deadline;
    for (const core::ThreadEvent& ev : out.wake) {
      const std::uint32_t t = p * c_.threads + ev.thread;
      McThread& th = w.threads[t];
      const bool counter = Counts(th.pc, t);
      switch (ev.kind) {
        case core::ThreadEventKind::kGranted:
          th.phase = Phase::kHolding;
          th.entitled = false;
          CheckBypass(w, p, t, ev.session, f);
          break;
        case core::ThreadEventKind::kCommitted:
        case core::ThreadEventKind::kRolledBack:
          if (counter && th.phase == Phase::kCommitting) ++w.view[ev.session].acked;
          NextRequest(th);
          break;
        case core::ThreadEventKind::kFailed:
          if (counter && ev.reason == core::Reason::kCommitOutcomeUnknown)
            ++w.view[ev.session].unknown;
          NextRequest(th);
          break;
      }
    }
  }

  // A committing thread told LockLost (not "outcome unknown") learns that its
  // commit did not apply and never will (B5): the store's log must not hold
  // it at that step. A copy applied later (a duplicate still in flight) is
  // left to the terminal states' counter check, which sees it only once the
  // run ends; this one fires on the step, even where the depth bound stops
  // first.
  // Its commit's token and seq are in the agent from before the step.
  void CheckLostCommits(const World& w, std::uint32_t p, const AgentOutcome& out,
                        Failure& f) const {
    for (const core::ThreadEvent& ev : out.wake) {
      if (!f.invariant.empty()) return;
      if (ev.kind != core::ThreadEventKind::kFailed || ev.reason != core::Reason::kLockLost)
        continue;
      const std::uint32_t t = p * c_.threads + ev.thread;
      if (w.threads[t].phase != Phase::kCommitting) continue;
      auto session = w.agents[p]->state().sessions.find(ev.session);
      if (session == w.agents[p]->state().sessions.end()) continue;
      const core::AgentSession& s = session->second;
      for (const core::PendingCommit& c : s.commits) {
        const std::uint32_t store = core::StoreForSession(ev.session, c_.stores);
        if (c.thread != ev.thread || !LogHolds(w.logs[store], ev.session, s.token, c.seq)) continue;
        f = {"no_lost_update",
             ThreadName(t) +
                 " was told its lock was lost, so its commit did not apply, but store s" +
                 std::to_string(store) + " has made it durable (session " +
                 std::to_string(ev.session) + ", token " + std::to_string(s.token) + ", seq " +
                 std::to_string(c.seq) + "): its outcome was unknown"};
        return;
      }
    }
  }

  // Bounded bypass inside a process: a thread granted while an earlier,
  // conflicting ask of the same process still waits has overtaken it.
  void CheckBypass(const World& w, std::uint32_t p, std::uint32_t t, core::SessionId s,
                   Failure& f) const {
    if (!f.invariant.empty()) return;
    const std::uint32_t mine = KindOf(w.threads[t].pc, t);
    for (std::uint32_t u = p * c_.threads; u < (p + 1) * c_.threads; ++u) {
      const McThread& other = w.threads[u];
      if (u == t || other.phase != Phase::kWaiting || other.asked > w.threads[t].asked) continue;
      if (SessionOf(other.pc, u) != s || !conflicts_[KindOf(other.pc, u)][mine]) continue;
      f = {"bounded_bypass", ThreadName(t) + " was granted session " + std::to_string(s) +
                                 " before " + ThreadName(u) +
                                 ", which asked earlier for a conflicting portion"};
      return;
    }
  }

  // The hashes of a node's value, once per node. An agent's and a message's
  // leave out the process ids (they move under a renaming), so a step's key
  // names the process and the message's ends itself.
  static const Fingerprint& AgentHash(const AgentNode& agent) {
    return agent.HashOnce([](const core::ProcessAgent& a) {
      Hasher2 ah;
      core::HashFields(ah, a.state(), a.config().self.incarnation);
      return ah.value();
    });
  }
  static const Fingerprint& MessageHash(const MessageNode& message) {
    return message.HashOnce([](const core::Envelope& x) {
      Hasher2 mh;
      core::HashFields(mh, x.from.incarnation, x.to.incarnation, x.message);
      return mh.value();
    });
  }
  // A store's, as it is (process ids not renamed).
  const Fingerprint& StoreHash(const StoreNode& store) const {
    return store.HashOnce([&](const core::Store& st) {
      Renaming ids{};
      for (std::uint32_t p = 0; p < ids.size(); ++p) ids[p] = p;
      Hasher2 sh;
      HashStore(sh, st.state(), ids);
      return sh.value();
    });
  }

  static bool AgentsOrTimeChanged(const World& before, const World& after) {
    if (before.now != after.now) return true;
    for (std::size_t p = 0; p < after.agents.size(); ++p) {
      if (before.agents[p].Id() != after.agents[p].Id()) return true;
    }
    return false;
  }

  // The online invariants, in every state.
  void Check(const World& w, Failure& f) const {
    for (core::SessionId s = 0; s < c_.sessions && f.invariant.empty(); ++s) {
      std::int64_t trusted_holder = -1;
      for (std::uint32_t p = 0; p < c_.processes; ++p) {
        const auto& sessions = w.agents[p]->state().sessions;
        auto it = sessions.find(s);
        if (it == sessions.end() || it->second.holders.empty()) continue;
        const auto& holders = it->second.holders;
        for (std::size_t i = 0; i < holders.size(); ++i) {
          for (std::size_t j = i + 1; j < holders.size(); ++j) {
            if (holders[i].portion.ConflictsWith(holders[j].portion)) {
              f = {"thread_exclusion",
                   "p" + std::to_string(p + 1) + ".t" + std::to_string(holders[i].thread) +
                       " and t" + std::to_string(holders[j].thread) +
                       " hold conflicting portions of session " + std::to_string(s) + " (R9)"};
              return;
            }
          }
        }
        const bool trusted = w.agents[p]->Trusts(w.now, s);
        bool using_it = false;
        for (const core::ThreadHold& h : holders) using_it |= !h.committing;
        if (!trusted && using_it) {
          f = {"locks_inside_token",
               "p" + std::to_string(p + 1) + ".t" + std::to_string(holders[0].thread) +
                   " holds a portion of session " + std::to_string(s) + " at " +
                   std::to_string(w.now) + " us but its process no longer trusts the lock (B1)"};
          return;
        }
        if (trusted && using_it) {
          if (trusted_holder >= 0) {
            f = {"process_exclusion", "p" + std::to_string(trusted_holder + 1) + " and p" +
                                          std::to_string(p + 1) +
                                          " both have threads inside session " + std::to_string(s) +
                                          ", both trusting their lock"};
            return;
          }
          trusted_holder = p;
        }
      }
    }
  }

  const ExploreConfig& c_;
  Time horizon_ = 0;
  // The three portions of the program (see PortionOf), whether each
  // increments the counter, and which conflict.
  std::array<core::Portion, 3> portions_;
  std::array<bool, 3> counts_{};
  std::array<std::array<bool, 3>, 3> conflicts_{};

 public:
  // Set when a step was met that breaks the process symmetry (see
  // AsymmetricAdvance).
  mutable std::atomic<bool> asymmetric_{false};
};

// An allocator for the large buffers (a level's states, the visited set):
// from 2 MiB on, aligned to and advised for transparent huge pages, so that
// filling a level of tens of thousands of states (over 1 KiB each) takes a
// page fault per 2 MiB instead of per 4 KiB.
template <class T>
struct BigAllocator {
  using value_type = T;
  static constexpr std::size_t kHuge = std::size_t{2} << 20;
  BigAllocator() = default;
  template <class U>
  BigAllocator(const BigAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHuge) return static_cast<T*>(::operator new(bytes));
    const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, rounded);
    if (p == nullptr) throw std::bad_alloc();
    (void)madvise(p, rounded, MADV_HUGEPAGE);  // a hint: without it, 4 KiB pages
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) {
    if (n * sizeof(T) < kHuge) {
      ::operator delete(p);
    } else {
      std::free(p);
    }
  }
  template <class U>
  bool operator==(const BigAllocator<U>&) const {
    return true;
  }
};

std::uint64_t PeakRss() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

struct Parent {
  std::uint32_t parent = 0;   // index in the previous level
  std::uint32_t ordinal = 0;  // which successor of the parent
};

// The visited set: every fingerprint seen, in one sorted array (16 bytes a
// state, no empty slots), and a directory by the top bits of `hi` (about one
// entry per four states): fingerprints are uniform, so a look-up reads one
// directory entry and scans a few neighbouring fingerprints where a binary
// search took about 20 dependent reads. New states come a level at a time.
class VisitedSet {
 public:
  bool Contains(const Fingerprint& f) const {
    const std::size_t b = Bucket(f);
    for (std::uint32_t i = dir_[b], end = dir_[b + 1]; i < end; ++i) {
      if (sorted_[i] == f) return true;
      if (f < sorted_[i]) return false;
    }
    return false;
  }
  std::size_t size() const { return sorted_.size(); }
  std::uint64_t bytes() const {
    return sorted_.size() * sizeof(Fingerprint) + dir_.size() * sizeof(std::uint32_t);
  }
  // Adds `added` (none of them in the set yet, no two equal); uses `scratch`.
  void Add(std::vector<Fingerprint>& added, std::vector<Fingerprint>& scratch) {
    SortUniform(added, scratch);
    // Merged in place from the back: each new fingerprint's place found
    // through the directory (still the old array's), the old ones after it
    // moved up as a block.
    std::size_t i = sorted_.size(), out = i + added.size();
    sorted_.resize(out);
    for (std::size_t k = added.size(); k > 0; --k) {
      const Fingerprint& f = added[k - 1];
      const std::size_t b = Bucket(f);
      const std::size_t lo = std::min<std::size_t>(dir_[b], i);
      const std::size_t hi = std::min<std::size_t>(dir_[b + 1], i);
      const std::size_t at = static_cast<std::size_t>(
          std::upper_bound(sorted_.begin() + lo, sorted_.begin() + hi, f) - sorted_.begin());
      if (at < i) {
        std::memmove(&sorted_[out - (i - at)], &sorted_[at], (i - at) * sizeof(Fingerprint));
        out -= i - at;
        i = at;
      }
      sorted_[--out] = f;
    }
    // The directory: dir_[b] is the first fingerprint in bucket b or after.
    const int bits = std::max(0, static_cast<int>(std::bit_width(sorted_.size())) - 3);
    if (bits != bits_) {
      bits_ = bits;
      dir_.assign((std::size_t{1} << bits_) + 1, 0);
      for (const Fingerprint& f : sorted_) ++dir_[Bucket(f) + 1];
    } else {
      // Only the new ones shift the buckets after theirs.
      counts_.assign(dir_.size(), 0);
      for (const Fingerprint& f : added) ++counts_[Bucket(f) + 1];
      std::uint32_t below = 0;
      for (std::size_t b = 0; b < dir_.size(); ++b) {
        below += counts_[b];
        dir_[b] += below;
      }
      return;
    }
    for (std::size_t b = 1; b < dir_.size(); ++b) dir_[b] += dir_[b - 1];
  }

 private:
  std::size_t Bucket(const Fingerprint& f) const {
    return bits_ == 0 ? 0 : static_cast<std::size_t>(f.hi >> (64 - bits_));
  }
  // Sorts uniformly distributed fingerprints in linear expected time: a
  // counting pass by the top bits, then an insertion sort that has only
  // neighbours in the same bucket to swap.
  static void SortUniform(std::vector<Fingerprint>& v, std::vector<Fingerprint>& tmp) {
    const int bits = std::max(0, static_cast<int>(std::bit_width(v.size())) - 1);
    auto bucket = [&](const Fingerprint& f) {
      return bits == 0 ? std::size_t{0} : static_cast<std::size_t>(f.hi >> (64 - bits));
    };
    std::vector<std::uint32_t> start((std::size_t{1} << bits) + 1, 0);
    for (const Fingerprint& f : v) ++start[bucket(f) + 1];
    for (std::size_t b = 1; b < start.size(); ++b) start[b] += start[b - 1];
    tmp.resize(v.size());
    for (const Fingerprint& f : v) tmp[start[bucket(f)]++] = f;
    for (std::size_t i = 1; i < tmp.size(); ++i) {
      const Fingerprint f = tmp[i];
      std::size_t j = i;
      for (; j > 0 && f < tmp[j - 1]; --j) tmp[j] = tmp[j - 1];
      tmp[j] = f;
    }
    v.swap(tmp);
  }
  std::vector<Fingerprint, BigAllocator<Fingerprint>> sorted_;
  std::vector<std::uint32_t> dir_{0, 0}, counts_;
  int bits_ = 0;
};

}  // namespace

ExploreResult Explore(const ExploreConfig& config,
                      const std::function<void(const ExploreProgress&)>& progress) {
  // Node counts are atomic while this runs with several jobs (see Cow);
  // the guard outlives every node of the search.
  struct ParallelGuard {
    explicit ParallelGuard(bool on) : on(on) {
      if (on) parallel_explores.fetch_add(1);
    }
    ~ParallelGuard() {
      if (on) parallel_explores.fetch_sub(1);
    }
    bool on;
  } parallel(config.jobs > 1);
  const auto start = std::chrono::steady_clock::now();
  ExploreResult result;
  ExploreStats& stats = result.stats;
  Model model(config);
  VisitedSet visited;
  // A state of the next level, with its parent link.
  struct Candidate {
    Fingerprint fp;
    std::uint32_t parent;
    std::uint32_t ordinal;
    World world;
  };
  using Level = std::vector<Candidate, BigAllocator<Candidate>>;
  Level frontier;
  frontier.push_back({{}, 0, 0, model.Initial()});
  frontier[0].fp = model.FingerprintOf(frontier[0].world);
  std::vector<std::vector<Parent>> parents{{Parent{}}};
  std::vector<Fingerprint> added{frontier[0].fp}, sort_buffer;
  visited.Add(added, sort_buffer);
  std::unordered_set<Fingerprint, FingerprintHash> classes;  // config.count_classes
  if (config.count_classes) classes.insert(model.FingerprintOf(frontier[0].world, true));
  stats.distinct = 1;

  // Rebuilds the path to state `index` of level `depth` (+ one more step).
  auto path_to = [&](std::uint32_t depth, std::uint32_t index, std::optional<std::uint32_t> last) {
    std::vector<std::uint32_t> ordinals;
    if (last) ordinals.push_back(*last);
    for (std::uint32_t d = depth; d > 0; --d) {
      ordinals.push_back(parents[d][index].ordinal);
      index = parents[d][index].parent;
    }
    std::reverse(ordinals.begin(), ordinals.end());
    std::vector<std::string> steps;
    std::vector<sim::ScriptStep> script;
    World w = model.Initial();
    for (std::uint32_t ordinal : ordinals) {
      std::uint32_t n = 0;
      std::optional<World> chosen;
      model.Successors(w, [&](World&& next, auto&& label, const Failure&) {
        if (n++ == ordinal) {
          Step step = label();
          if (step.script.message.is_null()) step.script.note = step.text;
          steps.push_back(std::move(step.text));
          script.push_back(std::move(step.script));
          chosen = std::move(next);
        }
      });
      w = std::move(*chosen);
    }
    return std::make_tuple(steps, model.Describe(w), script);
  };

  const unsigned jobs = std::max(1u, config.jobs);
  std::vector<Scratch> scratch(jobs);  // node steps taken, per job
  struct Slice {
    Level next;
    std::uint64_t generated = 0, terminal = 0;
    std::optional<std::tuple<std::uint32_t, std::optional<std::uint32_t>, Failure>> failure;
  };
  // Buffers kept from level to level (a fresh one per level costs a page
  // fault per 4 KiB touched).
  std::vector<Slice> slices(jobs);
  Level merged;  // the slices' new states, with more than one job
  std::vector<FingerprintSet> seen(jobs);
  FingerprintSet level;
  for (std::uint32_t depth = 0; !frontier.empty(); ++depth) {
    if (config.max_depth != 0 && depth >= config.max_depth) break;
    // Expand the level: each job takes a slice; results merge in order, so
    // the search is the same whatever the number of jobs.
    for (Slice& slice : slices) {
      slice.next.clear();
      slice.generated = slice.terminal = 0;
      slice.failure.reset();
    }
    auto expand = [&](unsigned j) {
      Slice& out = slices[j];
      seen[j].Clear();
      const std::size_t from = frontier.size() * j / jobs, to = frontier.size() * (j + 1) / jobs;
      for (std::size_t i = from; i < to && !out.failure; ++i) {
        scratch[j].Trim();
        std::uint32_t ordinal = 0;
        const std::uint32_t n = model.Successors(
            frontier[i].world,
            [&](World&& next, auto&&, const Failure& f) {
              const std::uint32_t o = ordinal++;
              ++out.generated;
              if (out.failure) return;
              if (!f.invariant.empty()) {
                out.failure = {static_cast<std::uint32_t>(i), o, f};
                return;
              }
              Fingerprint fp = model.FingerprintOf(next);
              if (visited.Contains(fp)) return;
              if (!seen[j].Insert(fp)) return;
              out.next.push_back(Candidate{fp, static_cast<std::uint32_t>(i), o, std::move(next)});
            },
            &scratch[j]);
        if (n == 0 && !out.failure) {
          ++out.terminal;
          Failure f;
          model.CheckTerminal(frontier[i].world, f);
          if (!f.invariant.empty()) out.failure = {static_cast<std::uint32_t>(i), std::nullopt, f};
        }
      }
    };
    if (jobs == 1) {
      expand(0);
    } else {
      std::vector<std::thread> workers;
      for (unsigned j = 0; j < jobs; ++j) workers.emplace_back(expand, j);
      for (std::thread& t : workers) t.join();
    }
    // The kept successors borrowed their parents' nodes (see Cow): make
    // them their own while the parents live, on one thread.
    for (Slice& slice : slices) {
      for (Candidate& c : slice.next) c.world.Adopt();
    }
    for (Scratch& each : scratch) each.EndLevel();
    if (model.asymmetric_) break;  // the reduction may not be exact: start over without it
    // The first failure in frontier order: the shortest counterexample.
    for (Slice& slice : slices) {
      stats.generated += slice.generated;
      stats.terminal += slice.terminal;
    }
    stats.transitions = stats.generated;
    for (Slice& slice : slices) {
      if (!slice.failure) continue;
      auto& [index, last, f] = *slice.failure;
      auto [steps, state, script] = path_to(depth, index, last);
      result.violation = ExploreViolation{f.invariant, f.message, steps, state, script};
      break;
    }
    if (result.violation) break;
    // The next level: one slice's new states as they are, or the slices'
    // merged (deduplicated across slices too).
    Level* next = &slices[0].next;
    if (jobs > 1) {
      merged.clear();
      level.Clear();
      std::size_t candidates = 0;
      for (const Slice& slice : slices) candidates += slice.next.size();
      merged.reserve(candidates);
      level.Reserve(candidates);
      for (Slice& slice : slices) {
        for (Candidate& c : slice.next) {
          if (level.Insert(c.fp)) merged.push_back(std::move(c));
        }
      }
      next = &merged;
    }
    added.clear();
    added.reserve(next->size());
    std::vector<Parent> next_parents;
    next_parents.reserve(next->size());
    for (const Candidate& c : *next) {
      added.push_back(c.fp);
      next_parents.push_back({c.parent, c.ordinal});
    }
    visited.Add(added, sort_buffer);
    stats.distinct = visited.size();
    stats.depth = depth + 1;
    if (config.count_classes) {
      for (const Candidate& c : *next) classes.insert(model.FingerprintOf(c.world, true));
    }
    frontier.swap(*next);  // the level before last goes, its buffer stays
    parents.push_back(std::move(next_parents));
    stats.visited_bytes = visited.bytes();
    stats.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) progress({depth + 1, frontier.size(), &stats});
    if (stats.distinct >= config.max_states) break;
  }
  if (model.asymmetric_) {
    ExploreConfig plain = config;
    plain.symmetry = false;
    ExploreResult again = Explore(plain, progress);
    again.stats.symmetry_abandoned = true;
    return again;
  }
  stats.symmetry = config.symmetry;
  stats.classes = classes.size();
  stats.complete = !result.violation && frontier.empty();
  stats.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stats.visited_bytes = visited.bytes();
  stats.peak_rss_bytes = PeakRss();
  return result;
}

std::string ReplayConfig(const ExploreConfig& config, const std::vector<sim::ScriptStep>& script,
                         sim::SimConfig& out) {
  sim::SimConfig c;
  c.stores = config.stores;
  c.servers = config.processes;  // one process per server: crashes are per process
  c.processes_per_server = 1;
  c.threads_per_process = config.threads;
  c.lease_us = config.lease_us;
  c.recall_retry_us = config.recall_retry_us;
  c.retry_us = config.retry_us;
  c.idle_release_us = config.idle_release_us;
  c.release_when_contended = config.release_when_contended;
  c.session_idle_us = core::kNever;
  c.expiry_margin_us = config.expiry_margin_us;
  c.drift_ppm = 0;                       // one shared clock, as explored
  c.heartbeat_us = config.lease_us / 2;  // as the explorer's agents
  c.network = sim::NetworkConfig{};      // no loss, duplication or reordering but the script's
  c.network.latency_min_us = 1;          // after the script: a fast network
  c.network.latency_max_us = std::max<Time>(1, config.lease_us / 20);
  c.workload.sessions = config.sessions;
  c.workload.attributes = config.attributes;
  c.workload.requests_per_thread = config.requests_per_thread;
  c.workload.think_us = config.lease_us / 10;
  c.workload.hold_us = config.lease_us / 10;
  c.workload.wait_timeout_us = core::kNever;  // the explorer's threads wait without a deadline
  c.workload.program = Model(config).Program();
  c.script = script;
  Time last = 0;
  for (const sim::ScriptStep& step : script) {
    if (step.kind == sim::ScriptKind::kAdvance) last = std::max(last, step.to_us);
  }
  // The script runs inside the fault phase; the quiet phase after it gives
  // the checker's liveness bound room (it counts from a few leases after the
  // fault phase).
  c.fault_phase_us = last + 1;
  c.quiet_phase_us = 100 * config.lease_us;
  if (std::string e = sim::ValidateConfig(c); !e.empty()) {
    return "the simulator cannot replay this world: " + e;
  }
  if (c.lease_us < 1'000) {
    return "the simulator cannot replay this world: its lease_us (" + std::to_string(c.lease_us) +
           ") is below the simulator's minimum of 1000";
  }
  out = std::move(c);
  return "";
}

std::optional<std::array<std::uint64_t, 2>> FingerprintAfter(
    const ExploreConfig& config, const std::vector<std::string>& steps) {
  Model model(config);
  World w = model.Initial();
  for (const std::string& step : steps) {
    std::optional<World> chosen;
    model.Successors(w, [&](World&& next, auto&& label, const Failure&) {
      if (!chosen && label().text.find(step) != std::string::npos) chosen = std::move(next);
    });
    if (!chosen) return std::nullopt;
    w = std::move(*chosen);
  }
  const Fingerprint fp = model.FingerprintOf(w);
  return std::array<std::uint64_t, 2>{fp.hi, fp.lo};
}

// ---- configuration ------------------------------------------------------------

namespace {

std::string Field(const json& j, const char* name, std::uint64_t lo, std::uint64_t hi,
                  std::uint64_t& out) {
  auto it = j.find(name);
  if (it == j.end()) return "";
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() < lo || it->get<std::uint64_t>() > hi) {
    return std::string("/") + name + ": expected an integer in [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "], found " + it->dump();
  }
  out = it->get<std::uint64_t>();
  return "";
}

}  // namespace

std::string ApplyFaultList(const std::string& list, ExploreConfig& c) {
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    if (item == "crash") {
      c.crashes = std::max<std::uint32_t>(c.crashes, 1);
    } else if (item == "loss") {
      c.losses = std::max<std::uint32_t>(c.losses, 1);
    } else if (item == "dup") {
      c.duplicates = std::max<std::uint32_t>(c.duplicates, 1);
    } else if (item == "reorder") {
      c.reorder = true;
    } else if (item == "lease-expiry") {
      c.lease_expiry = true;
    } else if (item == "store-restart") {
      c.store_restarts = std::max<std::uint32_t>(c.store_restarts, 1);
    } else if (item == "drift") {
      return "--faults: drift is not modelled by the explorer yet (all nodes share one clock); "
             "the simulator covers drift";
    } else {
      return "--faults: unknown fault \"" + item +
             "\" (expected crash, loss, dup, reorder, lease-expiry, store-restart)";
    }
  }
  return "";
}

std::string LoadExploreConfig(const json& j, ExploreConfig& c) {
  if (!j.is_object()) return "/: expected an object";
  static const std::set<std::string> known = {
      "stores",          "processes",        "threads",
      "sessions",        "attributes",       "requests_per_thread",
      "crashes",         "losses",           "duplicates",
      "store_restarts",  "reorder",          "lease_expiry",
      "lease_us",        "recall_retry_us",  "retry_us",
      "idle_release_us", "expiry_margin_us", "horizon_us",
      "max_depth",       "max_states",       "jobs",
      "faults",          "symmetry",         "release_when_contended"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (known.count(it.key()) == 0) return "/" + it.key() + ": unknown field";
  }
  struct Int {
    const char* name;
    std::uint64_t lo, hi;
    std::function<void(std::uint64_t)> set;
  };
  const std::vector<Int> ints = {
      {"stores", 1, 4, [&](std::uint64_t v) { c.stores = static_cast<std::uint32_t>(v); }},
      {"processes", 1, 8, [&](std::uint64_t v) { c.processes = static_cast<std::uint32_t>(v); }},
      {"threads", 1, 8, [&](std::uint64_t v) { c.threads = static_cast<std::uint32_t>(v); }},
      {"sessions", 1, 8, [&](std::uint64_t v) { c.sessions = static_cast<std::uint32_t>(v); }},
      {"attributes", 1, 8, [&](std::uint64_t v) { c.attributes = static_cast<std::uint32_t>(v); }},
      {"requests_per_thread", 0, 16,
       [&](std::uint64_t v) { c.requests_per_thread = static_cast<std::uint32_t>(v); }},
      {"crashes", 0, 4, [&](std::uint64_t v) { c.crashes = static_cast<std::uint32_t>(v); }},
      {"losses", 0, 4, [&](std::uint64_t v) { c.losses = static_cast<std::uint32_t>(v); }},
      {"duplicates", 0, 4, [&](std::uint64_t v) { c.duplicates = static_cast<std::uint32_t>(v); }},
      {"store_restarts", 0, 4,
       [&](std::uint64_t v) { c.store_restarts = static_cast<std::uint32_t>(v); }},
      {"lease_us", 10, 1'000'000'000, [&](std::uint64_t v) { c.lease_us = v; }},
      {"recall_retry_us", 1, 1'000'000'000, [&](std::uint64_t v) { c.recall_retry_us = v; }},
      {"retry_us", 1, 1'000'000'000, [&](std::uint64_t v) { c.retry_us = v; }},
      {"idle_release_us", 0, 1'000'000'000,
       [&](std::uint64_t v) { c.idle_release_us = v; }},  // or "never"
      {"expiry_margin_us", 0, 1'000'000'000, [&](std::uint64_t v) { c.expiry_margin_us = v; }},
      {"horizon_us", 0, 1'000'000'000'000, [&](std::uint64_t v) { c.horizon_us = v; }},
      {"max_depth", 0, 1'000'000,
       [&](std::uint64_t v) { c.max_depth = static_cast<std::uint32_t>(v); }},
      {"max_states", 1, 1'000'000'000'000, [&](std::uint64_t v) { c.max_states = v; }},
      {"jobs", 1, 256, [&](std::uint64_t v) { c.jobs = static_cast<unsigned>(v); }},
  };
  json copy = j;
  if (copy.contains("idle_release_us") && copy["idle_release_us"] == "never") {
    c.idle_release_us = core::kNever;  // keep locks until recalled (R6)
    copy.erase("idle_release_us");
  }
  const json& jj = copy;
  for (const Int& f : ints) {
    std::uint64_t v = 0;
    if (std::string e = Field(jj, f.name, f.lo, f.hi, v); !e.empty()) return e;
    if (jj.contains(f.name)) f.set(v);
  }
  for (auto [name, field] : {std::pair<const char*, bool*>{"reorder", &c.reorder},
                             {"lease_expiry", &c.lease_expiry},
                             {"symmetry", &c.symmetry},
                             {"release_when_contended", &c.release_when_contended}}) {
    auto it = j.find(name);
    if (it == j.end()) continue;
    if (!it->is_boolean())
      return std::string("/") + name + ": expected true or false, found " + it->dump();
    *field = it->get<bool>();
  }
  if (auto it = j.find("faults"); it != j.end()) {
    if (!it->is_string()) return "/faults: expected a comma-separated string, found " + it->dump();
    if (std::string e = ApplyFaultList(it->get<std::string>(), c); !e.empty())
      return "/faults: " + e;
  }
  if (c.expiry_margin_us >= c.lease_us) return "/expiry_margin_us: must be below lease_us";
  return "";
}

json ExploreConfigToJson(const ExploreConfig& c) {
  return {{"stores", c.stores},
          {"processes", c.processes},
          {"threads", c.threads},
          {"sessions", c.sessions},
          {"attributes", c.attributes},
          {"requests_per_thread", c.requests_per_thread},
          {"crashes", c.crashes},
          {"losses", c.losses},
          {"duplicates", c.duplicates},
          {"store_restarts", c.store_restarts},
          {"reorder", c.reorder},
          {"lease_expiry", c.lease_expiry},
          {"lease_us", c.lease_us},
          {"recall_retry_us", c.recall_retry_us},
          {"retry_us", c.retry_us},
          {"idle_release_us",
           c.idle_release_us == core::kNever ? json("never") : json(c.idle_release_us)},
          {"release_when_contended", c.release_when_contended},
          {"expiry_margin_us", c.expiry_margin_us},
          {"horizon_us", c.horizon_us},
          {"max_depth", c.max_depth},
          {"max_states", c.max_states},
          {"jobs", c.jobs},
          {"symmetry", c.symmetry}};
}

}  // namespace latchkey::checker
