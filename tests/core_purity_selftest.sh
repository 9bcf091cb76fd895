#!/usr/bin/env bash
# Shows that core_purity_check.sh can fail: plants one forbidden include and
# one forbidden call in copies of core/ and expects each to be reported.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
core_dir=${1:?usage: core_purity_selftest.sh CORE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
for plant in '#include <thread>' '#include <chrono>' 'auto t = std::chrono::steady_clock::now();' 'const char* home = getenv("HOME");' '#include <iostream>' 'int r = rand();'; do
  rm -rf "$work/core" && cp -r "$core_dir" "$work/core"
  printf '%s\n' "$plant" >> "$work/core/store.cc"
  if "$here/core_purity_check.sh" "$work/core" >/dev/null 2>&1; then
    echo "NOT DETECTED: $plant"
    failures=$((failures + 1))
  else
    echo "detected: $plant"
  fi
done
# A comment that names a forbidden word is not code and must pass.
rm -rf "$work/core" && cp -r "$core_dir" "$work/core"
printf '%s\n' '// no std::thread or <chrono> here' >> "$work/core/store.cc"
if ! "$here/core_purity_check.sh" "$work/core" >/dev/null 2>&1; then
  echo "FALSE ALARM on a comment"
  failures=$((failures + 1))
fi
exit $failures
