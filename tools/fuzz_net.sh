#!/usr/bin/env bash
# Builds latchkeyd's libFuzzer targets with clang (ASan + UBSan + coverage)
# and runs each for a bounded time:
#   frame_decoder_fuzz  net/codec's FrameDecoder on hostile byte streams
#   wal_reader_fuzz     net/wal's recovery reader on hostile log files
# Usage: tools/fuzz_net.sh [SECONDS_PER_TARGET]   (default 30)
# A finding is saved as build-fuzz/findings/<target>-crash-* and the script
# exits 1; replay it with ./build-fuzz/<target> <file>.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
tools/deps.sh clang libclang-rt-14-dev
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLATCHKEY_FUZZ=ON -DLATCHKEY_MUTANTS=OFF -DLATCHKEY_WERROR=ON >/dev/null
cmake --build build-fuzz --target frame_decoder_fuzz wal_reader_fuzz write_fuzz_seeds
mkdir -p build-fuzz/corpus/frame_decoder_fuzz build-fuzz/corpus/wal_reader_fuzz build-fuzz/findings
./build-fuzz/write_fuzz_seeds build-fuzz/corpus/frame_decoder_fuzz build-fuzz/corpus/wal_reader_fuzz
status=0
for target in frame_decoder_fuzz wal_reader_fuzz; do
  echo "== $target: ${seconds}s =="
  if ! ./build-fuzz/$target -max_total_time="$seconds" -max_len=8192 -timeout=10 \
      -artifact_prefix="build-fuzz/findings/$target-" -print_final_stats=1 \
      "build-fuzz/corpus/$target" 2>build-fuzz/$target.log; then
    status=1
    echo "FAIL: $target found a problem; the input is in build-fuzz/findings/:" >&2
    tail -40 build-fuzz/$target.log >&2
  else
    grep -E "stat::number_of_executed_units|cov:" build-fuzz/$target.log | tail -2
  fi
done
[ $status -eq 0 ] && echo "fuzz: PASS (no crash, no sanitizer report, every oracle held)"
exit $status
