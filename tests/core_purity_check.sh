#!/usr/bin/env bash
# Fails when any file under core/ includes or calls I/O, threads, locks,
# clocks, randomness, sockets or the environment. The core must stay a pure
# function of its inputs so the simulator and model checker can drive it.
set -euo pipefail
core_dir=${1:?usage: core_purity_check.sh CORE_DIR}
forbidden_includes='iostream|istream|ostream|fstream|sstream|cstdio|stdio\.h|print|format|thread|mutex|shared_mutex|condition_variable|future|atomic|semaphore|latch|barrier|stop_token|random|chrono|ctime|time\.h|filesystem|csignal|signal\.h|asio|boost/.*|sys/.*|unistd\.h|fcntl\.h|netinet/.*|arpa/.*|netdb\.h|pthread\.h|spdlog/.*|fmt/.*'
forbidden_calls='std::chrono|steady_clock|system_clock|high_resolution_clock|\bgetenv\b|\bsetenv\b|\brand\(|\bsrand\(|\btime\(|\bclock\(|\bprintf\(|\bfprintf\(|\bputs\(|\bfopen\(|\bstd::cout\b|\bstd::cerr\b|\bstd::thread\b|\bstd::mutex\b|\brandom_device\b|\bmt19937|\bsleep\(|\busleep\(|\bsocket\(|\bgettimeofday\b|\bclock_gettime\b'
status=0
# Comments are stripped before matching so that prose may name these words.
while IFS= read -r -d '' file; do
  code=$(sed -e 's://.*$::' "$file")
  if hits=$(printf '%s\n' "$code" | grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($forbidden_includes)[>\"]"); then
    printf '%s: forbidden include in the pure core:\n%s\n' "$file" "$hits" >&2
    status=1
  fi
  if hits=$(printf '%s\n' "$code" | grep -nE "$forbidden_calls"); then
    printf '%s: forbidden call in the pure core:\n%s\n' "$file" "$hits" >&2
    status=1
  fi
done < <(find "$core_dir" -type f \( -name '*.h' -o -name '*.cc' -o -name '*.hpp' -o -name '*.cpp' \) -print0)
if [ "$status" -eq 0 ]; then
  echo "core purity: $(find "$core_dir" -type f | wc -l) files checked, no I/O, clocks, threads or randomness"
fi
exit $status
