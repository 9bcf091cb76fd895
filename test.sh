#!/usr/bin/env bash
# Builds Latchkey and runs every test. Installs missing Debian packages first.
#   ./test.sh              release build with warnings as errors, all tests
#   ./test.sh --sanitize   the same under AddressSanitizer + UBSan (build-sanitize/)
set -euo pipefail
cd "$(dirname "$0")"

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATCHKEY_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
  build_dir=build-sanitize
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DLATCHKEY_WERROR=ON -DLATCHKEY_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
elif [ -n "${1:-}" ]; then
  echo "usage: ./test.sh [--sanitize]" >&2
  exit 2
fi

tools/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build_dir" -G Ninja "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j "$jobs"
tools/format_check.sh
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
