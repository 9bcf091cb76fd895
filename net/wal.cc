#include "net/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <variant>

#include "net/codec.h"

namespace latchkey::net {

namespace {

constexpr char kMagic[8] = {'L', 'K', 'W', 'A', 'L', '0', '0', '1'};

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

std::uint32_t Crc32(std::string_view bytes) {
  return static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

void PutU32(std::string* out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t GetLe(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t{static_cast<std::uint8_t>(p[i])} << (8 * i);
  return v;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// Positional, so the descriptor's offset (and O_APPEND) play no part.
Status PWriteAll(int fd, std::string_view bytes, std::uint64_t offset) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Error(Errno("write"));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
    offset += static_cast<std::uint64_t>(n);
  }
  return Status::Ok();
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Error(Errno("open " + dir));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::Error(Errno("fsync " + dir));
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Error(Errno("open " + path));
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return Status::Error(Errno("read " + path));
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

std::string Header(std::uint64_t generation) {
  std::string h(kMagic, sizeof kMagic);
  PutU64(&h, generation);
  return h;
}

void AppendFramed(const core::Record& record, std::string* out) {
  std::size_t at = out->size();
  out->append(kRecordHeaderBytes, '\0');
  AppendRecord(record, out);
  std::string_view payload(out->data() + at + kRecordHeaderBytes,
                           out->size() - at - kRecordHeaderBytes);
  std::string header;
  PutU32(&header, static_cast<std::uint32_t>(payload.size()));
  PutU32(&header, Crc32(payload));
  out->replace(at, kRecordHeaderBytes, header);
}

std::string TempName(const std::string& dir, std::uint64_t generation) {
  return dir + "/" + Wal::FileName(generation) + ".tmp";
}

// Writes and fsyncs `bytes` as generation `generation`'s temporary file.
Status WriteTemp(const std::string& dir, std::uint64_t generation, std::string_view bytes) {
  std::string tmp = TempName(dir, generation);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Error(Errno("create " + tmp));
  Status s = PWriteAll(fd, bytes, 0);
  if (s.ok() && ::fsync(fd) != 0) s = Status::Error(Errno("fsync " + tmp));
  ::close(fd);
  return s;
}

// Makes generation `generation`'s temporary file the generation: rename,
// then fsync of the directory so the rename survives a crash.
Status PublishTemp(const std::string& dir, std::uint64_t generation) {
  std::string tmp = TempName(dir, generation);
  std::string final_path = dir + "/" + Wal::FileName(generation);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    return Status::Error(Errno("rename " + tmp));
  }
  return SyncDir(dir);
}

// Writes `bytes` as generation `generation` atomically.
Status WriteGeneration(const std::string& dir, std::uint64_t generation, std::string_view bytes) {
  Status s = WriteTemp(dir, generation, bytes);
  return s.ok() ? PublishTemp(dir, generation) : s;
}

// Whether a whole, valid record starts at `pos` of `d`.
bool ValidRecordAt(std::string_view d, std::size_t pos) {
  if (d.size() - pos < kRecordHeaderBytes) return false;
  std::uint32_t length = static_cast<std::uint32_t>(GetLe(d.data() + pos, 4));
  if (length == 0 || length > kMaxRecordBytes || d.size() - pos - kRecordHeaderBytes < length) {
    return false;
  }
  std::string_view payload(d.data() + pos + kRecordHeaderBytes, length);
  std::uint32_t crc = static_cast<std::uint32_t>(GetLe(d.data() + pos + 4, 4));
  return Crc32(payload) == crc && DecodeRecord(payload).ok();
}

}  // namespace

Result<DamagePolicy> ParseDamagePolicy(std::string_view text) {
  if (text == "refuse") return DamagePolicy::kRefuse;
  if (text == "truncate") return DamagePolicy::kTruncate;
  return Status::Error("unknown log damage policy '" + std::string(text) +
                       "' (expected refuse or truncate)");
}

Result<FsyncPolicy> ParseFsyncPolicy(std::string_view text) {
  if (text == "always") return FsyncPolicy::kAlways;
  if (text == "batch") return FsyncPolicy::kBatch;
  if (text == "never") return FsyncPolicy::kNever;
  return Status::Error("unknown fsync policy '" + std::string(text) +
                       "' (expected always, batch or never)");
}

std::string_view FsyncPolicyName(FsyncPolicy policy) {
  switch (policy) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kBatch:
      return "batch";
    case FsyncPolicy::kNever:
      return "never";
  }
  return "?";
}

// ---- LogState ----------------------------------------------------------------

void LogState::Apply(const core::Record& record) {
  std::visit(
      Overloaded{
          [&](const core::StoreStartedRecord& r) {
            last_epoch_ = std::max(last_epoch_.value_or(0), r.epoch);
          },
          [&](const core::GrantRecord& r) {
            sessions_[r.session].tenure = Tenure{r.holder, r.token, r.request_id, 0, false};
            if (r.token >= last_grant_.token) last_grant_ = r;
          },
          [&](const core::TenureEndRecord& r) {
            auto it = sessions_.find(r.session);
            if (it != sessions_.end() && it->second.tenure && it->second.tenure->token == r.token) {
              it->second.tenure.reset();
            }
          },
          [&](const core::CommitRecord& r) {
            Session& s = sessions_[r.session];
            if (r.clear_first) s.attributes.clear();
            for (const core::AttributeWrite& w : r.writes) {
              if (w.erase) {
                s.attributes.erase(w.name);
              } else {
                s.attributes.insert_or_assign(w.name, w.value);
              }
            }
            s.version = {r.token, r.seq};
            if (s.tenure && s.tenure->token == r.token) s.tenure->last_seq = r.seq;
          },
          [&](const core::SessionDroppedRecord& r) {
            auto it = sessions_.find(r.session);
            if (it == sessions_.end()) return;
            it->second.attributes.clear();
            it->second.version = {};
            if (it->second.tenure) it->second.tenure->dropped = true;
          },
      },
      record);
  // A session with no tenure, no data and version {0, 0} is the same as one
  // never created. (Others with no data stay: a later grant keeps their
  // version, as it does in Recover.)
  core::SessionId touched = std::visit(
      [](const auto& r) -> core::SessionId {
        if constexpr (requires { r.session; }) {
          return r.session;
        } else {
          return 0;
        }
      },
      record);
  auto it = sessions_.find(touched);
  if (it != sessions_.end() && !it->second.tenure && it->second.attributes.empty() &&
      it->second.version == core::DataVersion{}) {
    sessions_.erase(it);
  }
}

std::vector<core::Record> LogState::Snapshot() const {
  std::vector<core::Record> out;
  if (last_epoch_) out.push_back(core::StoreStartedRecord{*last_epoch_});
  // B2: tokens continue from the highest ever issued. Recover learns it
  // from grants only, so keep that grant if its tenure is over.
  if (last_grant_.token != core::kNoToken) {
    auto it = sessions_.find(last_grant_.session);
    bool live =
        it != sessions_.end() && it->second.tenure && it->second.tenure->token == last_grant_.token;
    if (!live) {
      out.push_back(last_grant_);
      out.push_back(core::TenureEndRecord{last_grant_.session, last_grant_.token});
    }
  }
  for (const auto& [id, s] : sessions_) {
    // Recover's final Settle erases sessions with no tenure and no data.
    if (!s.tenure && s.attributes.empty()) continue;
    bool seq_commit = false;
    if (s.tenure) {
      out.push_back(core::GrantRecord{id, s.tenure->token, s.tenure->holder, s.tenure->request_id});
      if (s.tenure->last_seq != 0 && s.version.token != s.tenure->token) {
        // The tenure's commits were dropped since: keep its seq (B4).
        out.push_back(core::CommitRecord{id, s.tenure->token, s.tenure->last_seq, true, {}});
        seq_commit = true;
      }
    }
    if (s.version != core::DataVersion{} || !s.attributes.empty()) {
      std::vector<core::AttributeWrite> writes;
      writes.reserve(s.attributes.size());
      for (const auto& [name, value] : s.attributes) writes.push_back({name, value, false});
      out.push_back(
          core::CommitRecord{id, s.version.token, s.version.seq, true, std::move(writes)});
    } else if (seq_commit || (s.tenure && s.tenure->dropped)) {
      // After the grant: Recover then knows the tenure was revoked (B6).
      out.push_back(core::SessionDroppedRecord{id});
    }
  }
  return out;
}

// ---- Wal -------------------------------------------------------------------

std::string Wal::FileName(std::uint64_t generation) {
  char name[64];
  std::snprintf(name, sizeof name, "wal-%020llu.log", static_cast<unsigned long long>(generation));
  return name;
}

Result<RecoveredLog> Wal::Read(const std::string& path) {
  Result<std::string> data = ReadFile(path);
  if (!data.ok()) return data.status();
  return Parse(data.value(), path);
}

Result<RecoveredLog> Wal::Parse(std::string_view d, const std::string& name) {
  if (d.size() < kWalHeaderBytes || std::memcmp(d.data(), kMagic, sizeof kMagic) != 0) {
    return Status::Error(name + ": not a latchkey log (bad or missing header)");
  }
  RecoveredLog log;
  log.generation = GetLe(d.data() + 8, 8);
  std::size_t pos = kWalHeaderBytes;
  while (pos < d.size()) {
    auto problem = [&](const std::string& why) {
      log.tail_problem = "at byte " + std::to_string(pos) + ": " + why;
    };
    if (d.size() - pos < kRecordHeaderBytes) {
      problem("torn record header");
      break;
    }
    std::uint32_t length = static_cast<std::uint32_t>(GetLe(d.data() + pos, 4));
    std::uint32_t crc = static_cast<std::uint32_t>(GetLe(d.data() + pos + 4, 4));
    // The zeros written ahead of the log (see Wal::Reserve): its clean end.
    // No record has length 0, and a torn one has a nonzero header.
    if (length == 0 && crc == 0 && AllZero(d.substr(pos))) {
      log.zero_tail_bytes = d.size() - pos;
      break;
    }
    if (length > kMaxRecordBytes) {
      problem("record length " + std::to_string(length) + " above the maximum");
      break;
    }
    if (d.size() - pos - kRecordHeaderBytes < length) {
      problem("torn record: " + std::to_string(length) + " bytes announced, " +
              std::to_string(d.size() - pos - kRecordHeaderBytes) + " present");
      break;
    }
    std::string_view payload(d.data() + pos + kRecordHeaderBytes, length);
    if (Crc32(payload) != crc) {
      problem("crc mismatch");
      break;
    }
    Result<core::Record> record = DecodeRecord(payload, pos + kRecordHeaderBytes);
    if (!record.ok()) {
      problem("undecodable record: " + record.status().message());
      break;
    }
    log.records.push_back(std::move(record.value()));
    pos += kRecordHeaderBytes + length;
  }
  log.valid_bytes = pos;
  log.dropped_bytes = d.size() - pos - log.zero_tail_bytes;
  if (log.dropped_bytes > 0) {
    // A crash mid-write leaves nothing valid after the tear; a valid record
    // further on means the bytes at `pos` were damaged later.
    for (std::size_t q = pos + 1; q + kRecordHeaderBytes < d.size(); ++q) {
      if (ValidRecordAt(d, q)) {
        log.valid_record_after_problem = q;
        break;
      }
    }
  }
  return log;
}

Result<std::unique_ptr<Wal>> Wal::Open(const std::string& dir, FsyncPolicy policy,
                                       RecoveredLog* recovered, DamagePolicy damage,
                                       std::uint64_t reserve_bytes) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::Error(Errno("mkdir " + dir));
  }
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::Error(Errno("opendir " + dir));
  std::vector<std::uint64_t> generations;
  std::vector<std::string> temps;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    unsigned long long g = 0;
    char tail[8] = {};
    if (std::sscanf(name.c_str(), "wal-%20llu.log%7s", &g, tail) >= 1 &&
        name.size() >= 4 + 20 + 4) {
      if (std::string(tail) == ".tmp") {
        temps.push_back(name);
      } else if (name == FileName(g)) {
        generations.push_back(g);
      }
    }
  }
  ::closedir(d);
  // An interrupted compaction leaves a temp file: it was never renamed, so
  // the previous generation is complete.
  for (const std::string& t : temps) ::unlink((dir + "/" + t).c_str());

  std::unique_ptr<Wal> wal(new Wal(dir, policy));
  RecoveredLog log;
  if (generations.empty()) {
    log.generation = 1;
    Status s = WriteGeneration(dir, 1, Header(1));
    if (!s.ok()) return s;
    log.valid_bytes = kWalHeaderBytes;
  } else {
    std::uint64_t newest = *std::max_element(generations.begin(), generations.end());
    Result<RecoveredLog> read = Read(dir + "/" + FileName(newest));
    if (!read.ok()) return read.status();
    log = std::move(read.value());
    if (log.generation != newest) {
      return Status::Error(FileName(newest) + ": header names generation " +
                           std::to_string(log.generation));
    }
    // Older generations were superseded by a completed compaction.
    for (std::uint64_t g : generations) {
      if (g != newest) ::unlink((dir + "/" + FileName(g)).c_str());
    }
  }
  std::string path = dir + "/" + FileName(log.generation);
  if (log.valid_record_after_problem != 0) {
    std::string where = path + ": bad record " + log.tail_problem +
                        ", but a valid record follows at byte " +
                        std::to_string(log.valid_record_after_problem);
    if (damage == DamagePolicy::kRefuse) {
      return Status::Error(where +
                           ": the log is damaged, not torn; refusing to start rather than drop "
                           "the records after the damage (--wal-damage truncate keeps a copy of "
                           "the file and recovers the " +
                           std::to_string(log.records.size()) + " records before it)");
    }
    log.damaged_copy = path + ".damaged-" + std::to_string(log.valid_bytes);
    std::error_code ec;
    std::filesystem::copy_file(path, log.damaged_copy,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return Status::Error("cannot keep a copy of " + where + ": " + ec.message());
  }
  wal->fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (wal->fd_ < 0) return Status::Error(Errno("open " + path));
  if (log.dropped_bytes > 0) {
    if (::ftruncate(wal->fd_, static_cast<off_t>(log.valid_bytes)) != 0 || ::fsync(wal->fd_) != 0) {
      return Status::Error(Errno("truncate " + path));
    }
  }
  wal->generation_ = log.generation;
  wal->file_bytes_ = log.valid_bytes;
  // Without fsyncs of ours there is nothing to gain, only zeros to write.
  wal->reserve_chunk_ = policy == FsyncPolicy::kNever ? 0 : reserve_bytes;
  wal->reserved_bytes_ = log.valid_bytes + (log.dropped_bytes > 0 ? 0 : log.zero_tail_bytes);
  if (recovered != nullptr) *recovered = std::move(log);
  return wal;
}

Wal::~Wal() {
  if (fd_ >= 0) ::close(fd_);
}

void Wal::Append(const core::Record& record) {
  AppendFramed(record, &pending_);
  ++pending_records_;
  ++stats_.records;
}

Status Wal::Break(std::string why) {
  if (broken_.empty()) broken_ = std::move(why);
  return BrokenError();
}

Status Wal::BrokenError() const {
  return Status::Error("the log is unusable since an earlier failure (" + broken_ + ")");
}

void Wal::SyncFailed(const std::string& why) { Break(why); }

Status Wal::SyncFd() {
  if (broken()) return BrokenError();
  auto start = std::chrono::steady_clock::now();
  if (::fdatasync(fd_) != 0) return Break(Errno("fdatasync"));
  auto us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                           std::chrono::steady_clock::now() - start)
                                           .count());
  ++stats_.fsyncs;
  stats_.fsync_us_total += us;
  stats_.fsync_us_max = std::max(stats_.fsync_us_max, us);
  stats_.fsync_seconds.Observe(static_cast<double>(us) / 1e6);
  unsynced_ = false;
  synced_lsn_ = written_lsn_;
  return Status::Ok();
}

Status Wal::Flush() {
  if (broken()) return BrokenError();
  Status s = WriteBuffered();
  if (!s.ok() || policy_ != FsyncPolicy::kAlways || !unsynced_) return s;
  return SyncFd();
}

// A descriptor of its own, not a dup: write-back errors are reported once
// per open file, so with a shared one, of two fsyncs running at once only
// the first to look would see an error, and the other could return success
// first for data that was lost.
Wal::SyncJob Wal::PrepareSync() const {
  std::string path = dir_ + "/" + FileName(generation_);
  SyncJob job{::open(path.c_str(), O_WRONLY | O_CLOEXEC), written_lsn_, {}};
  if (job.fd < 0) job.error = Errno("open " + path + " for an fsync");
  return job;
}

std::int64_t Wal::SyncJob::Run() {
  if (fd < 0) return -1;
  auto start = std::chrono::steady_clock::now();
  int rc = ::fdatasync(fd);
  if (rc != 0) error = Errno("fdatasync");
  ::close(fd);
  fd = -1;
  if (rc != 0) return -1;
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

void Wal::SyncDone(std::uint64_t lsn, std::uint64_t micros) {
  ++stats_.fsyncs;
  stats_.fsync_us_total += micros;
  stats_.fsync_us_max = std::max(stats_.fsync_us_max, micros);
  stats_.fsync_seconds.Observe(static_cast<double>(micros) / 1e6);
  synced_lsn_ = std::max(synced_lsn_, lsn);
  if (synced_lsn_ == written_lsn_) unsynced_ = false;
}

// Appending to a file changes its size, so each fdatasync of a growing log
// also commits the file system's journal: on ext4 here, 2.2 ms instead of
// 0.15 ms for overwriting blocks already written. So the log writes zeros
// ahead of itself, a chunk at a time, and its records overwrite them; the
// first fsync after a chunk pays for it once. Parse reads the zeros as the
// end of the log.
Status Wal::Reserve(std::uint64_t end) {
  if (end <= reserved_bytes_ || reserve_chunk_ == 0) return Status::Ok();
  std::uint64_t chunk = std::max<std::uint64_t>(reserve_chunk_, end - reserved_bytes_);
  static const std::string zeros(1u << 20, '\0');
  std::uint64_t at = reserved_bytes_;
  for (std::uint64_t left = chunk; left > 0;) {
    std::uint64_t n = std::min<std::uint64_t>(left, zeros.size());
    Status s = PWriteAll(fd_, std::string_view(zeros.data(), n), at);
    if (!s.ok()) return s;
    at += n;
    left -= n;
  }
  reserved_bytes_ = at;
  return Status::Ok();
}

Status Wal::WriteBuffered() {
  if (broken()) return BrokenError();
  if (pending_.empty()) return Status::Ok();
  Status s = Reserve(file_bytes_ + pending_.size());
  if (s.ok()) s = PWriteAll(fd_, pending_, file_bytes_);
  if (!s.ok()) return Break(s.message());
  if (compacting_) flushed_while_compacting_ += pending_;
  written_lsn_ += pending_.size();
  file_bytes_ += pending_.size();
  stats_.last_batch_records = pending_records_;
  stats_.batch_records.Observe(static_cast<double>(pending_records_));
  ++stats_.flushes;
  pending_.clear();
  pending_records_ = 0;
  unsynced_ = true;
  return Status::Ok();
}

Status Wal::Sync() {
  if (broken()) return BrokenError();
  if (!unsynced_) return Status::Ok();
  return SyncFd();
}

Status Wal::Compact(const std::vector<core::Record>& snapshot) {
  Result<std::uint64_t> next = BeginCompaction();
  if (!next.ok()) return next.status();
  Status s = WriteSnapshot(dir_, next.value(), snapshot);
  if (!s.ok()) {
    AbandonCompaction();
    return s;
  }
  return FinishCompaction();
}

Result<std::uint64_t> Wal::BeginCompaction() {
  if (compacting_) return Status::Error("a compaction is already running");
  Status s = Flush();
  if (!s.ok()) return s;
  compacting_ = true;
  flushed_while_compacting_.clear();
  return generation_ + 1;
}

Status Wal::WriteSnapshot(const std::string& dir, std::uint64_t generation,
                          const std::vector<core::Record>& snapshot) {
  std::string bytes = Header(generation);
  for (const core::Record& r : snapshot) AppendFramed(r, &bytes);
  return WriteTemp(dir, generation, bytes);
}

Status Wal::FinishCompaction() {
  if (!compacting_) return Status::Error("no compaction is running");
  Status s = Flush();
  if (!s.ok()) {
    AbandonCompaction();
    return s;
  }
  std::uint64_t next = generation_ + 1;
  std::string tmp = TempName(dir_, next);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) s = Status::Error(Errno("open " + tmp));
  struct stat st {};
  if (s.ok() && ::fstat(fd, &st) != 0) s = Status::Error(Errno("stat " + tmp));
  // The records flushed to the old generation since BeginCompaction.
  if (s.ok()) s = PWriteAll(fd, flushed_while_compacting_, static_cast<std::uint64_t>(st.st_size));
  if (s.ok() && ::fsync(fd) != 0) s = Status::Error(Errno("fsync " + tmp));
  if (s.ok()) s = PublishTemp(dir_, next);
  if (!s.ok()) {
    if (fd >= 0) ::close(fd);
    AbandonCompaction();
    return s;
  }
  ::close(fd_);
  ::unlink((dir_ + "/" + FileName(generation_)).c_str());
  fd_ = fd;
  generation_ = next;
  file_bytes_ = static_cast<std::uint64_t>(st.st_size) + flushed_while_compacting_.size();
  reserved_bytes_ = file_bytes_;
  unsynced_ = false;
  synced_lsn_ = written_lsn_;  // the new file was fsynced with every record
  compacting_ = false;
  flushed_while_compacting_.clear();
  ++stats_.compactions;
  return Status::Ok();
}

void Wal::AbandonCompaction() {
  compacting_ = false;
  flushed_while_compacting_.clear();
  ::unlink(TempName(dir_, generation_ + 1).c_str());
}

}  // namespace latchkey::net
