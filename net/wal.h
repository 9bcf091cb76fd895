// The write-ahead log of latchkeyd: the records the core asks to persist
// (Effects::persist), made durable before the replies that depend on them.
//
// File format (net/PROTOCOL.md, "Log files"): one file per generation,
// `wal-<generation>.log`, holding a 16-byte header (magic "LKWAL001", u64
// generation) and then records, each `u32 length, u32 crc32(payload),
// payload` with the payload in the codec's record encoding. Compaction
// writes the next generation (a snapshot: the minimal records that rebuild
// the same store) to a temporary file, fsyncs it, renames it into place and
// removes the old generation, so a crash at any point leaves one complete
// generation to recover from.
//
// Thread-safety: none; one owner (latchkeyd's loop thread).
//
// Invariants:
//   - every record before `durable_bytes()` was fsync'd (policy always);
//   - recovery returns a prefix of what was appended: it stops at the first
//     torn or corrupt record and truncates the file there;
//   - Store::Recover(LogState(log).Snapshot()) == Store::Recover(log).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/effects.h"
#include "net/metrics.h"
#include "net/status.h"

namespace latchkey::net {

// When appended records reach the disk (the trade-off is in PROTOCOL.md):
//   always: every group commit is fsync'd before its replies are sent;
//   batch:  written at once, fsync'd every `batch_interval`; a power loss may
//           lose acknowledged writes from the last interval (a process crash
//           does not: they are in the page cache);
//   never:  written, never fsync'd by us; the OS decides.
enum class FsyncPolicy { kAlways, kBatch, kNever };
Result<FsyncPolicy> ParseFsyncPolicy(std::string_view text);
std::string_view FsyncPolicyName(FsyncPolicy policy);

// What Open does when a bad record is followed by valid ones: damage inside
// the log (a bad disk block, a stray write), not a torn tail from a crash in
// the middle of a write.
//   refuse:   do not start, and say where (the default: recovering the
//             prefix would silently drop acknowledged writes after the
//             damage);
//   truncate: keep a copy of the whole file as `<name>.damaged-<offset>`,
//             then recover the prefix before the damage, as for a torn tail.
enum class DamagePolicy { kRefuse, kTruncate };
Result<DamagePolicy> ParseDamagePolicy(std::string_view text);

inline constexpr std::uint32_t kMaxRecordBytes = 64u << 20;
inline constexpr std::size_t kWalHeaderBytes = 16;
inline constexpr std::size_t kRecordHeaderBytes = 8;
inline constexpr std::uint64_t kDefaultReserveBytes = 1u << 20;

// Replays records exactly as Store::Recover does and keeps only what it
// needs, so a snapshot of it rebuilds the same store.
class LogState {
 public:
  void Apply(const core::Record& record);
  // The minimal record list with the same Store::Recover result.
  std::vector<core::Record> Snapshot() const;

 private:
  struct Tenure {
    core::ProcessRef holder;
    core::Token token = core::kNoToken;
    std::uint64_t request_id = 0;
    std::uint64_t last_seq = 0;
    bool dropped = false;  // B6: the session was invalidated under this tenure
  };
  struct Session {
    core::AttributeMap attributes;
    core::DataVersion version;
    std::optional<Tenure> tenure;
  };
  std::optional<std::uint64_t> last_epoch_;
  core::GrantRecord last_grant_;  // the grant with the highest token
  std::map<core::SessionId, Session> sessions_;
};

struct RecoveredLog {
  std::vector<core::Record> records;
  std::uint64_t generation = 0;
  std::uint64_t valid_bytes = 0;      // file size after truncation
  std::uint64_t dropped_bytes = 0;    // torn or corrupt tail removed
  std::uint64_t zero_tail_bytes = 0;  // zeros written ahead of the records (Wal::Reserve)
  std::string tail_problem;           // why the tail was dropped; empty if clean
  // Offset of the first valid record after the bad one, or 0: nonzero means
  // the log is damaged, not torn (see DamagePolicy).
  std::uint64_t valid_record_after_problem = 0;
  std::string damaged_copy;  // where Open kept the damaged file (policy truncate)
};

struct WalStats {
  std::uint64_t records = 0;
  std::uint64_t flushes = 0;
  std::uint64_t fsyncs = 0;
  std::uint64_t last_batch_records = 0;
  std::uint64_t fsync_us_total = 0;
  std::uint64_t fsync_us_max = 0;
  std::uint64_t compactions = 0;
  Histogram fsync_seconds = Histogram::Exponential(50e-6, 2, 16);  // 50 us .. 1.6 s
  Histogram batch_records = Histogram::Exponential(1, 2, 14);      // 1 .. 8192 records
};

class Wal {
 public:
  // Opens the newest generation in `dir` (creating the directory and a first
  // generation if there is none), recovers its records into `recovered` and
  // truncates a torn tail; damage inside the log is handled by `damage`.
  // `reserve_bytes`: how far ahead of its records the log writes zeros (see
  // Reserve) under policies always and batch; 0: it does not.
  static Result<std::unique_ptr<Wal>> Open(const std::string& dir, FsyncPolicy policy,
                                           RecoveredLog* recovered,
                                           DamagePolicy damage = DamagePolicy::kRefuse,
                                           std::uint64_t reserve_bytes = kDefaultReserveBytes);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Buffers a record; nothing reaches the file until Flush.
  void Append(const core::Record& record);
  bool has_pending() const { return !pending_.empty(); }
  // Group commit: writes everything appended since the last Flush with one
  // write and, under policy always, one fsync.
  Status Flush();
  // The same write without the fsync, whatever the policy; the owner then
  // syncs (possibly off its thread: SyncJob) before the replies leave.
  Status WriteBuffered();

  // Log positions: bytes ever written, across generations. Records up to
  // synced_lsn() are durable.
  std::uint64_t written_lsn() const { return written_lsn_; }
  std::uint64_t synced_lsn() const { return synced_lsn_; }
  // An fdatasync of the records written so far, runnable on another thread
  // (it holds its own descriptor, so compaction may switch files meanwhile),
  // and alongside other SyncJobs.
  struct SyncJob {
    int fd = -1;  // the current file, opened again; Run closes it
    std::uint64_t lsn = 0;
    std::string error;  // why the open or the fdatasync failed
    // Returns the fdatasync's duration in microseconds, or -1 on failure
    // (with `error` set).
    std::int64_t Run();
  };
  SyncJob PrepareSync() const;
  // On the owner's thread, once a SyncJob has run.
  void SyncDone(std::uint64_t lsn, std::uint64_t micros);
  // On the owner's thread, when a SyncJob failed: the log is broken for good
  // (see broken()).
  void SyncFailed(const std::string& why);
  // Fsyncs whatever was written, on the calling thread through the log's own
  // descriptor (the event loop's sync; the batch policy's timer; shutdown).
  Status Sync();
  // After a failed write or fsync nothing written since the last good fsync
  // can be trusted to be on disk, and a later fsync of the same file may
  // report success because the kernel reports a write-back error only once.
  // So the first failure is kept, and every later write, sync or compaction
  // returns it.
  bool broken() const { return !broken_.empty(); }
  // Starts a new generation holding `snapshot` (see LogState::Snapshot),
  // which must describe every record appended so far. All three steps below
  // on the calling thread.
  Status Compact(const std::vector<core::Record>& snapshot);

  // Compaction in three steps, so the slow part (encoding, writing and
  // fsyncing the snapshot) can run off the owner's thread while the log keeps
  // taking records:
  //   1. BeginCompaction (owner): flushes, and returns the next generation
  //      number; from now on every flushed byte is also kept for step 3.
  //   2. WriteSnapshot (any thread; it touches only the new generation's
  //      temporary file): writes and fsyncs the snapshot, taken at step 1.
  //   3. FinishCompaction (owner): appends the records flushed since step 1
  //      to the temporary file, fsyncs it, renames it into place and switches
  //      to it; or AbandonCompaction if step 2 failed.
  // A crash before the rename leaves the old generation, complete.
  Result<std::uint64_t> BeginCompaction();
  static Status WriteSnapshot(const std::string& dir, std::uint64_t generation,
                              const std::vector<core::Record>& snapshot);
  Status FinishCompaction();
  void AbandonCompaction();
  bool compacting() const { return compacting_; }
  const std::string& dir() const { return dir_; }

  std::uint64_t generation() const { return generation_; }
  std::uint64_t file_bytes() const { return file_bytes_; }  // the records' end, not the zeros'
  FsyncPolicy policy() const { return policy_; }
  const WalStats& stats() const { return stats_; }

  // For tests and tools: reads one log file without changing it.
  static Result<RecoveredLog> Read(const std::string& path);
  // The same over the bytes of a log file; `name` is used in errors.
  static Result<RecoveredLog> Parse(std::string_view bytes, const std::string& name);
  static std::string FileName(std::uint64_t generation);

 private:
  Wal(std::string dir, FsyncPolicy policy) : dir_(std::move(dir)), policy_(policy) {}
  Status SyncFd();
  Status Reserve(std::uint64_t end);
  Status Break(std::string why);
  Status BrokenError() const;

  std::string dir_;
  FsyncPolicy policy_;
  int fd_ = -1;
  std::uint64_t generation_ = 0;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t reserved_bytes_ = 0;  // the file's size: records, then zeros
  std::uint64_t reserve_chunk_ = 0;   // zeros written at a time; 0: none
  bool unsynced_ = false;
  std::uint64_t written_lsn_ = 0;
  std::uint64_t synced_lsn_ = 0;
  std::string broken_;  // the first failed write or fsync; empty while healthy
  std::string pending_;
  std::uint64_t pending_records_ = 0;
  bool compacting_ = false;
  std::string flushed_while_compacting_;
  WalStats stats_;
};

}  // namespace latchkey::net
