// Writes a small seed corpus for the fuzz targets: well-formed frames of
// every type and a well-formed log holding every record kind, so fuzzing
// starts from inputs that get past the headers.
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "net/codec.h"
#include "net/wal.h"

namespace {

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: write_seeds FRAME_CORPUS_DIR WAL_CORPUS_DIR\n";
    return 2;
  }
  namespace core = latchkey::core;
  namespace net = latchkey::net;
  std::vector<net::Frame> frames = {
      net::ChallengeFrame{},
      net::HelloFrame{net::Role::kProcess, 7, 1, {}},
      net::WelcomeFrame{1, 2, 4096, 2000000},
      net::ErrorFrame{net::ErrorCode::kAuthFailed, true, 0xff, 0, "authentication failed"},
      core::Message(core::Acquire{3, 1, {}, false}),
      core::Message(core::Commit{3, 5, 1, false, {{"cart", "3 items", false}, {"x", "", true}}}),
      core::Message(core::Granted{3, 5, 1, {5, 1}, true, {{"a", "1"}, {"b", "2"}}}),
      core::Message(core::Rejected{3, 5, 1, 2, core::Reason::kStaleToken}),
      core::Message(core::Heartbeat{9}),
  };
  std::string all(1, '\x07');  // chunk size 8
  for (std::size_t i = 0; i < frames.size(); ++i) {
    std::string one = net::EncodeFrame(frames[i]);
    Write(std::string(argv[1]) + "/frame-" + std::to_string(i), std::string(1, '\xff') + one);
    all += one;
  }
  Write(std::string(argv[1]) + "/frames-all", all);

  std::string dir = std::string(argv[2]) + "/.seed-log";
  std::vector<core::Record> records = {
      core::StoreStartedRecord{1},
      core::GrantRecord{7, 1, {3, 1}, 10},
      core::CommitRecord{7, 1, 1, false, {{"cart", "3 items", false}}},
      core::TenureEndRecord{7, 1},
      core::SessionDroppedRecord{7},
  };
  {
    net::RecoveredLog ignored;
    auto wal = net::Wal::Open(dir, net::FsyncPolicy::kNever, &ignored);
    if (!wal.ok()) {
      std::cerr << wal.status().message() << "\n";
      return 1;
    }
    for (const core::Record& r : records) wal.value()->Append(r);
    if (!wal.value()->Flush().ok()) return 1;
  }
  std::ifstream in(dir + "/" + net::Wal::FileName(1), std::ios::binary);
  std::string log((std::istreambuf_iterator<char>(in)), {});
  Write(std::string(argv[2]) + "/log", log);
  Write(std::string(argv[2]) + "/log-torn", log.substr(0, log.size() - 3));
  std::remove((dir + "/" + net::Wal::FileName(1)).c_str());
  std::remove(dir.c_str());
  return 0;
}
