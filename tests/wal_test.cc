// net/wal: write and recover, torn tails at every byte, corrupt records,
// compaction that preserves Store::Recover's result.
#include "net/wal.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/store.h"
#include "tests/net_gen.h"

namespace latchkey::net {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "latchkey-wal-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<core::Record> SampleRecords() {
  return {
      core::StoreStartedRecord{1},
      core::GrantRecord{7, 1, {3, 1}, 10},
      core::CommitRecord{7, 1, 1, false, {{"cart", "3 items", false}}},
      core::CommitRecord{7, 1, 2, false, {{"cart", "", true}, {"user", "ann", false}}},
      core::TenureEndRecord{7, 1},
      core::SessionDroppedRecord{7},
  };
}

std::unique_ptr<Wal> OpenOrDie(const std::string& dir, RecoveredLog* log,
                               FsyncPolicy policy = FsyncPolicy::kAlways,
                               std::uint64_t reserve = kDefaultReserveBytes) {
  auto wal = Wal::Open(dir, policy, log, DamagePolicy::kRefuse, reserve);
  EXPECT_TRUE(wal.ok()) << wal.status().message();
  return wal.ok() ? std::move(wal.value()) : nullptr;
}

TEST(Wal, WriteThenRecoverEveryPolicy) {
  for (FsyncPolicy policy : {FsyncPolicy::kAlways, FsyncPolicy::kBatch, FsyncPolicy::kNever}) {
    TempDir dir;
    RecoveredLog log;
    {
      auto wal = OpenOrDie(dir.path(), &log, policy);
      EXPECT_TRUE(log.records.empty());
      for (const core::Record& r : SampleRecords()) wal->Append(r);
      ASSERT_TRUE(wal->Flush().ok());
      ASSERT_TRUE(wal->Sync().ok());
      EXPECT_EQ(wal->stats().last_batch_records, SampleRecords().size());
      EXPECT_EQ(wal->stats().fsyncs, 1u);  // group commit: one fsync for the batch
    }
    auto wal = OpenOrDie(dir.path(), &log, policy);
    EXPECT_EQ(log.records, SampleRecords());
    EXPECT_EQ(log.dropped_bytes, 0u);
    EXPECT_TRUE(log.tail_problem.empty());
  }
}

TEST(Wal, RecoversAfterAppendingToARecoveredLog) {
  TempDir dir;
  RecoveredLog log;
  {
    auto wal = OpenOrDie(dir.path(), &log);
    wal->Append(core::StoreStartedRecord{1});
    ASSERT_TRUE(wal->Flush().ok());
  }
  {
    auto wal = OpenOrDie(dir.path(), &log);
    wal->Append(core::StoreStartedRecord{2});
    ASSERT_TRUE(wal->Flush().ok());
  }
  auto wal = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records,
            (std::vector<core::Record>{core::StoreStartedRecord{1}, core::StoreStartedRecord{2}}));
}

// A crash can cut the last write anywhere: every cut recovers exactly the
// records before it, truncates the torn bytes, and the log stays appendable.
TEST(Wal, TornTailAtEveryByteOfTheLastRecord) {
  TempDir source;
  RecoveredLog log;
  std::uint64_t before_last = 0;
  std::uint64_t full = 0;
  {
    auto wal = OpenOrDie(source.path(), &log);
    std::vector<core::Record> records = SampleRecords();
    for (std::size_t i = 0; i + 1 < records.size(); ++i) wal->Append(records[i]);
    ASSERT_TRUE(wal->Flush().ok());
    before_last = wal->file_bytes();
    wal->Append(core::CommitRecord{9, 4, 1, true, {{"big", std::string(40, 'x'), false}}});
    ASSERT_TRUE(wal->Flush().ok());
    full = wal->file_bytes();
  }
  std::string file = source.path() + "/" + Wal::FileName(1);
  fs::resize_file(file, full);  // without the zeros written ahead: smaller copies
  std::vector<core::Record> expected = SampleRecords();
  expected.pop_back();
  for (std::uint64_t cut = before_last; cut < full; ++cut) {
    TempDir dir;
    fs::copy_file(file, dir.path() + "/" + Wal::FileName(1));
    fs::resize_file(dir.path() + "/" + Wal::FileName(1), cut);
    {
      auto wal = OpenOrDie(dir.path(), &log, FsyncPolicy::kAlways, 4096);  // small: fast
      ASSERT_EQ(log.records, expected) << "cut at " << cut;
      EXPECT_EQ(log.valid_bytes, before_last);
      EXPECT_EQ(log.dropped_bytes, cut - before_last);
      EXPECT_EQ(log.tail_problem.empty(), cut == before_last) << log.tail_problem;
      EXPECT_EQ(fs::file_size(dir.path() + "/" + Wal::FileName(1)), before_last);
      wal->Append(core::StoreStartedRecord{5});
      ASSERT_TRUE(wal->Flush().ok());
    }
    auto wal = OpenOrDie(dir.path(), &log);
    ASSERT_EQ(log.records.size(), expected.size() + 1);
    EXPECT_EQ(log.records.back(), core::Record(core::StoreStartedRecord{5}));
  }
}

// Writes the sample records one flush each; returns the file offset after each.
std::vector<std::uint64_t> WriteSampleOneByOne(const std::string& dir) {
  RecoveredLog log;
  std::vector<std::uint64_t> ends;
  auto wal = OpenOrDie(dir, &log);
  for (const core::Record& r : SampleRecords()) {
    wal->Append(r);
    EXPECT_TRUE(wal->Flush().ok());
    ends.push_back(wal->file_bytes());
  }
  return ends;
}

void FlipByte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  f.seekp(static_cast<std::streamoff>(offset));
  c = static_cast<char>(c ^ 0x40);
  f.write(&c, 1);
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A bad record with valid ones after it is damage, not a torn tail: by
// default Open refuses, naming the file, the bad record and the next good one.
TEST(Wal, DamageInTheMiddleIsRefusedByDefault) {
  TempDir dir;
  std::vector<std::uint64_t> ends = WriteSampleOneByOne(dir.path());
  std::string path = dir.path() + "/" + Wal::FileName(1);
  FlipByte(path, ends[1] + kRecordHeaderBytes + 2);  // a payload byte of the third record
  std::string before = FileBytes(path);
  RecoveredLog log;
  auto wal = Wal::Open(dir.path(), FsyncPolicy::kAlways, &log);
  ASSERT_FALSE(wal.ok());
  const std::string& why = wal.status().message();
  EXPECT_NE(why.find(Wal::FileName(1)), std::string::npos) << why;
  EXPECT_NE(why.find("crc mismatch"), std::string::npos) << why;
  EXPECT_NE(why.find("at byte " + std::to_string(ends[1])), std::string::npos) << why;
  EXPECT_NE(why.find("valid record follows at byte " + std::to_string(ends[2])), std::string::npos)
      << why;
  EXPECT_EQ(FileBytes(path), before);  // nothing was changed or dropped
}

// With --wal-damage truncate, the prefix is recovered and the whole damaged
// file is kept next to the log.
TEST(Wal, DamageWithPolicyTruncateKeepsACopyAndRecoversThePrefix) {
  TempDir dir;
  std::vector<std::uint64_t> ends = WriteSampleOneByOne(dir.path());
  std::string path = dir.path() + "/" + Wal::FileName(1);
  FlipByte(path, ends[1] + kRecordHeaderBytes + 2);
  std::string before = FileBytes(path);
  RecoveredLog log;
  auto wal = Wal::Open(dir.path(), FsyncPolicy::kAlways, &log, DamagePolicy::kTruncate);
  ASSERT_TRUE(wal.ok()) << wal.status().message();
  EXPECT_EQ(log.records.size(), 2u);
  EXPECT_EQ(log.valid_bytes, ends[1]);
  EXPECT_EQ(log.valid_record_after_problem, ends[2]);
  EXPECT_NE(log.tail_problem.find("crc mismatch"), std::string::npos) << log.tail_problem;
  ASSERT_FALSE(log.damaged_copy.empty());
  EXPECT_EQ(FileBytes(log.damaged_copy), before);
  EXPECT_EQ(fs::file_size(path), ends[1]);
  // The copy is not mistaken for a generation on the next start.
  wal.value().reset();
  auto again = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records.size(), 2u);
  EXPECT_TRUE(
      fs::exists(dir.path() + "/" + Wal::FileName(1) + ".damaged-" + std::to_string(ends[1])));
}

// Garbage after the last record (a crash while the file grew) is a torn
// tail, recovered without fuss.
TEST(Wal, GarbageAfterTheLastRecordIsATornTail) {
  TempDir dir;
  std::vector<std::uint64_t> ends = WriteSampleOneByOne(dir.path());
  std::string path = dir.path() + "/" + Wal::FileName(1);
  fs::resize_file(path, ends.back());  // without the zeros written ahead
  { std::ofstream(path, std::ios::app | std::ios::binary) << std::string(4096, '\x5a'); }
  RecoveredLog log;
  auto wal = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records, SampleRecords());
  EXPECT_EQ(log.valid_record_after_problem, 0u);
  EXPECT_EQ(log.dropped_bytes, 4096u);
  EXPECT_EQ(log.zero_tail_bytes, 0u);
  EXPECT_FALSE(log.tail_problem.empty());
  EXPECT_EQ(fs::file_size(path), ends.back());
}

// The log writes zeros ahead of its records, so an fdatasync does not also
// have to commit a new file size. The zeros are the log's clean end: kept,
// not reported, and overwritten by the next records.
TEST(Wal, ZerosWrittenAheadAreTheCleanEndAndAreOverwritten) {
  TempDir dir;
  std::vector<std::uint64_t> ends = WriteSampleOneByOne(dir.path());
  std::string path = dir.path() + "/" + Wal::FileName(1);
  std::uint64_t size = fs::file_size(path);
  EXPECT_GE(size, ends.back() + (512u << 10)) << "no zeros were written ahead";
  EXPECT_TRUE(FileBytes(path).substr(ends.back()).find_first_not_of('\0') == std::string::npos);
  RecoveredLog log;
  {
    auto wal = OpenOrDie(dir.path(), &log);
    EXPECT_EQ(log.records, SampleRecords());
    EXPECT_EQ(log.valid_bytes, ends.back());
    EXPECT_EQ(log.dropped_bytes, 0u);
    EXPECT_EQ(log.zero_tail_bytes, size - ends.back());
    EXPECT_TRUE(log.tail_problem.empty()) << log.tail_problem;
    EXPECT_EQ(fs::file_size(path), size);  // nothing truncated
    EXPECT_EQ(wal->file_bytes(), ends.back());
    wal->Append(core::StoreStartedRecord{9});
    ASSERT_TRUE(wal->Flush().ok());
    EXPECT_EQ(fs::file_size(path), size);  // written over the zeros
  }
  auto wal = OpenOrDie(dir.path(), &log);
  std::vector<core::Record> expected = SampleRecords();
  expected.push_back(core::StoreStartedRecord{9});
  EXPECT_EQ(log.records, expected);
}

// Records past the zeros written so far: more are written ahead, as often
// as needed, also for one batch bigger than the amount written at a time.
TEST(Wal, WritesMoreZerosAheadAsTheLogGrows) {
  TempDir dir;
  RecoveredLog log;
  std::vector<core::Record> written;
  std::string path = dir.path() + "/" + Wal::FileName(1);
  constexpr std::uint64_t kChunk = 256u << 10;
  {
    auto wal = OpenOrDie(dir.path(), &log, FsyncPolicy::kAlways, kChunk);
    std::vector<std::uint64_t> sizes;
    for (std::uint64_t seq = 1; seq <= 40; ++seq) {
      core::Record r =
          core::CommitRecord{1, 1, seq, false, {{"k", std::string(16u << 10, 'v'), false}}};
      wal->Append(r);
      written.push_back(r);
      if (seq != 8 && seq != 24 && seq != 40) continue;  // 128 KiB, 256 KiB, then 256 KiB again
      ASSERT_TRUE(wal->Flush().ok());
      std::uint64_t size = fs::file_size(path);
      EXPECT_GT(size, wal->file_bytes());
      EXPECT_LE(size, wal->file_bytes() + kChunk + (256u << 10));
      sizes.push_back(size);
    }
    EXPECT_EQ(sizes[0], kWalHeaderBytes + kChunk);  // one chunk covered the first batch
    EXPECT_GT(sizes[1], sizes[0]);
    EXPECT_GT(sizes[2], sizes[1]);
  }
  auto wal = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records, written);
  EXPECT_TRUE(log.tail_problem.empty()) << log.tail_problem;
}

// With reserve 0, or under policy never (no fsyncs to speed up), the file
// is exactly its records.
TEST(Wal, WritesNoZerosWhenReserveIsOffOrNothingIsFsynced) {
  for (auto [policy, reserve] : {std::pair{FsyncPolicy::kAlways, std::uint64_t{0}},
                                 std::pair{FsyncPolicy::kNever, kDefaultReserveBytes}}) {
    TempDir dir;
    RecoveredLog log;
    auto wal = OpenOrDie(dir.path(), &log, policy, reserve);
    for (const core::Record& r : SampleRecords()) wal->Append(r);
    ASSERT_TRUE(wal->Flush().ok());
    EXPECT_EQ(fs::file_size(dir.path() + "/" + Wal::FileName(1)), wal->file_bytes());
  }
}

// A crash in the middle of a write into the zeros: the record's own bytes
// end early, the zeros follow. Its header is not zero, so it is a torn
// record, dropped; the log is cut back and stays appendable.
TEST(Wal, ARecordTornInsideTheZerosIsATornTail) {
  TempDir dir;
  std::vector<std::uint64_t> ends = WriteSampleOneByOne(dir.path());
  std::string path = dir.path() + "/" + Wal::FileName(1);
  std::uint64_t last = ends[ends.size() - 2];
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(last + kRecordHeaderBytes + 1));
    std::string zeros(ends.back() - last - kRecordHeaderBytes - 1, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  RecoveredLog log;
  {
    auto wal = OpenOrDie(dir.path(), &log);
    std::vector<core::Record> expected = SampleRecords();
    expected.pop_back();
    EXPECT_EQ(log.records, expected);
    EXPECT_EQ(log.valid_bytes, last);
    EXPECT_FALSE(log.tail_problem.empty());
    EXPECT_EQ(log.valid_record_after_problem, 0u);
    EXPECT_EQ(fs::file_size(path), last);
    wal->Append(core::StoreStartedRecord{4});
    ASSERT_TRUE(wal->Flush().ok());
  }
  auto wal = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records.back(), core::Record(core::StoreStartedRecord{4}));
  EXPECT_TRUE(log.tail_problem.empty()) << log.tail_problem;
}

TEST(Wal, RefusesAFileThatIsNotALog) {
  TempDir dir;
  {
    std::ofstream f(dir.path() + "/" + Wal::FileName(3));
    f << "hello, not a log";
  }
  RecoveredLog log;
  auto wal = Wal::Open(dir.path(), FsyncPolicy::kAlways, &log);
  ASSERT_FALSE(wal.ok());
  EXPECT_NE(wal.status().message().find("not a latchkey log"), std::string::npos);
}

TEST(Wal, CompactionStartsANewGenerationAndRemovesTheOld) {
  TempDir dir;
  RecoveredLog log;
  LogState state;
  {
    auto wal = OpenOrDie(dir.path(), &log);
    for (int i = 0; i < 50; ++i) {
      core::Record r = core::CommitRecord{1,
                                          0,
                                          static_cast<std::uint64_t>(i + 1),
                                          false,
                                          {{"k" + std::to_string(i % 3), "v", false}}};
      wal->Append(r);
      state.Apply(r);
    }
    ASSERT_TRUE(wal->Flush().ok());
    std::uint64_t big = wal->file_bytes();
    ASSERT_TRUE(wal->Compact(state.Snapshot()).ok());
    EXPECT_EQ(wal->generation(), 2u);
    EXPECT_LT(wal->file_bytes(), big);
    wal->Append(core::StoreStartedRecord{2});
    ASSERT_TRUE(wal->Flush().ok());
  }
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Wal::FileName(1)));
  // A temp file left by an interrupted compaction is ignored and removed.
  { std::ofstream(dir.path() + "/" + Wal::FileName(3) + ".tmp") << "partial"; }
  auto wal = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.generation, 2u);
  std::vector<core::Record> expected = state.Snapshot();
  expected.push_back(core::StoreStartedRecord{2});
  EXPECT_EQ(log.records, expected);
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Wal::FileName(3) + ".tmp"));
}

// Compaction in steps: the snapshot is written on another thread while the
// log keeps taking records; the new generation holds the snapshot and then
// every record flushed meanwhile. Before FinishCompaction, a crash (here: a
// reopen) recovers the old generation, complete.
TEST(Wal, BackgroundCompactionKeepsRecordsFlushedMeanwhile) {
  TempDir dir;
  RecoveredLog log;
  LogState state;
  auto wal = OpenOrDie(dir.path(), &log);
  auto commit = [](std::uint64_t seq) -> core::Record {
    return core::CommitRecord{1, 0, seq, false, {{"k" + std::to_string(seq % 4), "v", false}}};
  };
  std::vector<core::Record> everything;
  for (std::uint64_t seq = 1; seq <= 40; ++seq) {
    wal->Append(commit(seq));
    state.Apply(commit(seq));
    everything.push_back(commit(seq));
  }
  ASSERT_TRUE(wal->Flush().ok());
  std::vector<core::Record> snapshot = state.Snapshot();
  Result<std::uint64_t> next = wal->BeginCompaction();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next.value(), 2u);
  EXPECT_FALSE(wal->BeginCompaction().ok());  // one at a time
  Status written;
  std::thread writer([&] { written = Wal::WriteSnapshot(dir.path(), next.value(), snapshot); });
  std::vector<core::Record> meanwhile;
  for (std::uint64_t seq = 41; seq <= 60; ++seq) {
    wal->Append(commit(seq));
    ASSERT_TRUE(wal->Flush().ok());
    meanwhile.push_back(commit(seq));
    everything.push_back(commit(seq));
  }
  writer.join();
  ASSERT_TRUE(written.ok()) << written.message();
  {
    // A crash now: the temporary file is ignored, the old generation is whole.
    RecoveredLog before;
    auto read = Wal::Read(dir.path() + "/" + Wal::FileName(1));
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(read.value().records, everything);
    EXPECT_TRUE(fs::exists(dir.path() + "/" + Wal::FileName(2) + ".tmp"));
  }
  ASSERT_TRUE(wal->FinishCompaction().ok());
  EXPECT_EQ(wal->generation(), 2u);
  EXPECT_FALSE(wal->compacting());
  EXPECT_EQ(wal->stats().compactions, 1u);
  EXPECT_EQ(wal->file_bytes(), fs::file_size(dir.path() + "/" + Wal::FileName(2)));
  wal->Append(core::StoreStartedRecord{2});
  ASSERT_TRUE(wal->Flush().ok());
  wal.reset();
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Wal::FileName(1)));
  auto reopened = OpenOrDie(dir.path(), &log);
  std::vector<core::Record> expected = snapshot;
  expected.insert(expected.end(), meanwhile.begin(), meanwhile.end());
  expected.push_back(core::StoreStartedRecord{2});
  EXPECT_EQ(log.records, expected);
}

TEST(Wal, AbandonedCompactionLeavesTheOldGenerationInUse) {
  TempDir dir;
  RecoveredLog log;
  auto wal = OpenOrDie(dir.path(), &log);
  wal->Append(core::StoreStartedRecord{1});
  Result<std::uint64_t> next = wal->BeginCompaction();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(Wal::WriteSnapshot(dir.path(), next.value(), {}).ok());
  wal->AbandonCompaction();
  EXPECT_FALSE(fs::exists(dir.path() + "/" + Wal::FileName(2) + ".tmp"));
  wal->Append(core::StoreStartedRecord{2});
  ASSERT_TRUE(wal->Flush().ok());
  EXPECT_EQ(wal->generation(), 1u);
  wal.reset();
  auto reopened = OpenOrDie(dir.path(), &log);
  EXPECT_EQ(log.records,
            (std::vector<core::Record>{core::StoreStartedRecord{1}, core::StoreStartedRecord{2}}));
}

// The fsync can run on another thread: a SyncJob covers what was written
// when it was prepared, even if more is written (or the file switched by a
// compaction) before it finishes.
TEST(Wal, SyncJobOnAnotherThreadCoversWhatWasWrittenBeforeIt) {
  TempDir dir;
  RecoveredLog log;
  auto wal = OpenOrDie(dir.path(), &log);
  wal->Append(core::StoreStartedRecord{1});
  ASSERT_TRUE(wal->WriteBuffered().ok());
  EXPECT_GT(wal->written_lsn(), wal->synced_lsn());
  Wal::SyncJob job = wal->PrepareSync();
  std::uint64_t covered = wal->written_lsn();
  EXPECT_EQ(job.lsn, covered);
  wal->Append(core::StoreStartedRecord{2});
  ASSERT_TRUE(wal->WriteBuffered().ok());
  std::int64_t micros = -1;
  std::thread syncer([&] { micros = job.Run(); });
  syncer.join();
  ASSERT_GE(micros, 0);
  wal->SyncDone(job.lsn, static_cast<std::uint64_t>(micros));
  EXPECT_EQ(wal->synced_lsn(), covered);  // the second record is not covered
  EXPECT_LT(wal->synced_lsn(), wal->written_lsn());
  EXPECT_EQ(wal->stats().fsyncs, 1u);
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_EQ(wal->synced_lsn(), wal->written_lsn());
}

// A sync thread's job that cannot reopen the log says which call failed and
// why, so latchkeyd's wal_sync_failed line names the cause.
TEST(Wal, ASyncJobThatFailsSaysWhy) {
  TempDir dir;
  RecoveredLog log;
  auto wal = OpenOrDie(dir.path(), &log);
  wal->Append(core::StoreStartedRecord{1});
  ASSERT_TRUE(wal->WriteBuffered().ok());
  fs::remove(dir.path() + "/" + Wal::FileName(wal->generation()));
  Wal::SyncJob job = wal->PrepareSync();
  EXPECT_EQ(job.Run(), -1);
  EXPECT_NE(job.error.find("open " + dir.path() + "/" + Wal::FileName(wal->generation())),
            std::string::npos)
      << job.error;
  EXPECT_NE(job.error.find("No such file or directory"), std::string::npos) << job.error;
}

// The event loop's fsync (Sync) goes through the log's own descriptor: it
// covers what was written, and keeps working after a compaction replaced the
// file (and with it the descriptor).
TEST(Wal, SyncThroughTheLogsOwnDescriptorFollowsACompaction) {
  TempDir dir;
  RecoveredLog log;
  LogState state;
  auto wal = OpenOrDie(dir.path(), &log);
  core::Record first = core::StoreStartedRecord{1};
  wal->Append(first);
  state.Apply(first);
  ASSERT_TRUE(wal->WriteBuffered().ok());
  ASSERT_TRUE(wal->Sync().ok());
  EXPECT_EQ(wal->synced_lsn(), wal->written_lsn());
  ASSERT_TRUE(wal->Compact(state.Snapshot()).ok());
  EXPECT_EQ(wal->generation(), 2u);
  wal->Append(core::StoreStartedRecord{2});
  ASSERT_TRUE(wal->WriteBuffered().ok());
  EXPECT_LT(wal->synced_lsn(), wal->written_lsn());
  ASSERT_TRUE(wal->Sync().ok());  // a stale descriptor would fail (EBADF)
  EXPECT_EQ(wal->synced_lsn(), wal->written_lsn());
  EXPECT_EQ(wal->stats().fsyncs, 2u);
  wal.reset();
  RecoveredLog reopened;
  OpenOrDie(dir.path(), &reopened);
  EXPECT_EQ(reopened.generation, 2u);
  std::vector<core::Record> expected = state.Snapshot();
  expected.push_back(core::StoreStartedRecord{2});
  EXPECT_EQ(reopened.records, expected);
}

// A failed fsync is final: the kernel reports a write-back error once, so a
// later fsync of the same file could succeed over data that never reached
// the disk. Every later write, sync and compaction fails with the first
// error, and nothing more counts as synced.
TEST(Wal, AFailedSyncLeavesTheLogBrokenForGood) {
  TempDir dir;
  RecoveredLog log;
  auto wal = OpenOrDie(dir.path(), &log);
  wal->Append(core::StoreStartedRecord{1});
  ASSERT_TRUE(wal->WriteBuffered().ok());
  std::uint64_t synced = wal->synced_lsn();
  EXPECT_FALSE(wal->broken());
  wal->SyncFailed("fdatasync: Input/output error (planted)");
  EXPECT_TRUE(wal->broken());
  auto fails_naming_the_cause = [](const Status& s) {
    return !s.ok() && s.message().find("Input/output error (planted)") != std::string::npos;
  };
  EXPECT_TRUE(fails_naming_the_cause(wal->Sync()));
  EXPECT_TRUE(fails_naming_the_cause(wal->Flush()));
  wal->Append(core::StoreStartedRecord{2});
  EXPECT_TRUE(fails_naming_the_cause(wal->WriteBuffered()));
  Result<std::uint64_t> next = wal->BeginCompaction();
  ASSERT_FALSE(next.ok());
  EXPECT_TRUE(fails_naming_the_cause(next.status()));
  EXPECT_EQ(wal->synced_lsn(), synced);
  EXPECT_EQ(wal->stats().fsyncs, 0u);
}

// Drives a real Store with random traffic (with restarts), logging what it
// persists, then checks that the compacted log rebuilds the same store.
RC_GTEST_PROP(WalProperty, SnapshotPreservesStoreRecover, ()) {
  core::StoreConfig config;
  config.lease_us = 1000;
  config.recall_retry_us = 100;
  config.session_idle_us = *rc::gen::arbitrary<bool>() ? core::kNever : core::Time{3000};
  std::vector<core::Record> log;
  core::Time now = 1;
  core::Store store(config);
  auto apply = [&](const core::Effects& fx, std::map<std::pair<std::uint64_t, core::SessionId>,
                                                     std::pair<core::Token, std::uint64_t>>& held) {
    for (const core::Record& r : fx.persist) log.push_back(r);
    for (const core::Envelope& e : fx.send) {
      if (const auto* g = std::get_if<core::Granted>(&e.message)) {
        held[{e.to.id, g->session}] = {g->token, 0};
      }
    }
  };
  std::map<std::pair<std::uint64_t, core::SessionId>, std::pair<core::Token, std::uint64_t>> held;
  apply(store.Start(now), held);
  std::map<std::uint64_t, std::uint64_t> incarnation = {{1, 1}, {2, 1}, {3, 1}};
  std::uint64_t request = 0;
  int steps = *rc::gen::inRange(1, 80);
  for (int i = 0; i < steps; ++i) {
    now += *rc::gen::inRange<core::Time>(0, 400);
    std::uint64_t p = *rc::gen::inRange<std::uint64_t>(1, 4);
    core::SessionId s = *rc::gen::inRange<core::SessionId>(1, 4);
    core::Envelope env{core::ProcessAddress({p, incarnation[p]}), store.address(), {}};
    auto& tenure = held[{p, s}];
    switch (*rc::gen::inRange(0, 9)) {
      case 0:
      case 1:
        env.message = core::Acquire{s, ++request, {}, false};
        break;
      case 2:
      case 3:
        env.message = core::Commit{s, tenure.first, ++tenure.second, *rc::gen::arbitrary<bool>(),
                                   latchkey::testing::AnyWrites()};
        break;
      case 4:
        env.message = core::Release{s, tenure.first};
        break;
      case 5:
        env.message = core::Heartbeat{1};
        break;
      case 6:
        env.from = {core::NodeKind::kAdmin, 1, 1};
        env.message = core::AdminInvalidate{s};
        break;
      case 7: {
        apply(store.OnTick(now), held);
        continue;
      }
      default: {
        // Crash and restart the store: it recovers from what it persisted.
        core::Effects fx;
        store = core::Store::Recover(config, log, now, &fx);
        apply(fx, held);
        if (*rc::gen::arbitrary<bool>()) ++incarnation[p];
        continue;
      }
    }
    apply(store.OnMessage(now, env), held);
  }
  LogState state;
  for (const core::Record& r : log) state.Apply(r);
  std::vector<core::Record> snapshot = state.Snapshot();
  RC_ASSERT(snapshot.size() <= log.size() + 2);
  now += 5;
  core::Effects full_fx;
  core::Effects snap_fx;
  core::Store from_full = core::Store::Recover(config, log, now, &full_fx);
  core::Store from_snapshot = core::Store::Recover(config, snapshot, now, &snap_fx);
  RC_ASSERT(from_full == from_snapshot);
  RC_ASSERT(full_fx.persist == snap_fx.persist);
  RC_ASSERT(full_fx.next_deadline == snap_fx.next_deadline);
  // And the snapshot of the snapshot is itself.
  LogState again;
  for (const core::Record& r : snapshot) again.Apply(r);
  RC_ASSERT(again.Snapshot() == snapshot);
}

}  // namespace
}  // namespace latchkey::net
