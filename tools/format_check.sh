#!/usr/bin/env bash
# Fails if any C++ source is not formatted per .clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc' 2>/dev/null || find core cli tests sim checker net bench -name '*.h' -o -name '*.cc')
[ ${#files[@]} -eq 0 ] && exit 0
if ! clang-format --dry-run --Werror "${files[@]}" 2>/tmp/latchkey-format.log; then
  echo "format check failed: run clang-format -i on these files:" >&2
  grep -oE '^[^:]+\.(h|cc)' /tmp/latchkey-format.log | sort -u >&2
  exit 1
fi
echo "format check: ${#files[@]} files formatted per .clang-format"
