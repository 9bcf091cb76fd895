// Harness shared by the latchkeyd and client-library tests and bench/net_bench:
// a temporary directory, and a latchkeyd child process on a free loopback port.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace latchkey::net {

inline const char kSecret[] = "test-master-secret";

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "latchkeyd-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A latchkeyd child process on 127.0.0.1 with a free port.
class Daemon {
 public:
  Daemon(const std::string& dir, std::vector<std::string> extra = {},
         std::string binary = LATCHKEYD_PATH)
      : dir_(dir) {
    { std::ofstream(dir_ + "/secret") << kSecret << "\n"; }
    std::string port_file = dir_ + "/port";
    std::filesystem::remove(port_file);
    std::vector<std::string> args = {binary,           "--listen",     "127.0.0.1:0",
                                     "--data-dir",     dir_ + "/data", "--secret-file",
                                     dir_ + "/secret", "--port-file",  port_file};
    for (std::size_t i = 0; i + 1 < extra.size(); ++i) {
      if (extra[i] == "--listen") args[2] = extra[i + 1];  // a fixed port instead of any
    }
    for (std::size_t i = 0; i < extra.size(); ++i) {
      if (extra[i] == "--listen") {
        ++i;
        continue;
      }
      args.push_back(extra[i]);
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      int log = ::open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(log, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 500 && port_ == 0; ++i) {
      std::ifstream in(port_file);
      if (!(in >> port_)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  // Sends `signal` and returns the exit status.
  int Signal(int signal) {
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  std::string Log() const {
    std::ifstream in(dir_ + "/log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace latchkey::net
